"""Inverse problems: forward operators and restoration metrics (solvers to come)."""

from diffvi.inverse.metrics import diversity, feature_distance, psnr, ssim
from diffvi.inverse.operators import (
    OPERATORS,
    AveragePoolSR,
    BicubicSR,
    Blur,
    Denoising,
    Inpainting,
    LinearOperator,
    Operator,
    PhaseRetrieval,
    SVDOperator,
    box_mask,
    build_operator,
    gaussian_kernel,
    half_mask,
    random_mask,
    uniform_kernel,
)

__all__ = [
    "diversity",
    "feature_distance",
    "psnr",
    "ssim",
    "OPERATORS",
    "AveragePoolSR",
    "BicubicSR",
    "Blur",
    "Denoising",
    "Inpainting",
    "LinearOperator",
    "Operator",
    "PhaseRetrieval",
    "SVDOperator",
    "box_mask",
    "build_operator",
    "gaussian_kernel",
    "half_mask",
    "random_mask",
    "uniform_kernel",
]
