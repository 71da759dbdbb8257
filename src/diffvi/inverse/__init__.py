"""Inverse problems: forward operators (and their registry), restoration metrics and (in
``diffvi.inverse.solvers``) solvers with a diffusion prior."""

from diffvi.evaluation.restoration import (
    diversity,
    feature_distance,
    psnr,
    restoration_scores,
    ssim,
    summarise_restorations,
)
from diffvi.inverse.operators import (
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
    gaussian_kernel,
    half_mask,
    measurement_image,
    random_mask,
    uniform_kernel,
)
from diffvi.inverse.phase import (
    DefocusIntensity,
    fresnel_propagate,
    tie_phase,
    tie_reconstruct,
)
from diffvi.inverse.registry import OPERATORS, build_operator

__all__ = [
    "DefocusIntensity",
    "fresnel_propagate",
    "tie_phase",
    "tie_reconstruct",
    "diversity",
    "feature_distance",
    "psnr",
    "restoration_scores",
    "ssim",
    "summarise_restorations",
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
    "measurement_image",
    "random_mask",
    "uniform_kernel",
]
