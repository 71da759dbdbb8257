"""Inverse problems: forward operators (and, later, solvers and metrics)."""

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
