"""Inverse problems: forward operators (and their registry), restoration metrics, the
restoration workflow (:func:`restore`, :func:`simulate_measurement`) and, in
``diffvi.inverse.solvers``, the reconstructors: solvers with a diffusion prior and CVDM."""

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
from diffvi.inverse.restore import RestoreResult, restore, simulate_measurement

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
    "RestoreResult",
    "SVDOperator",
    "box_mask",
    "build_operator",
    "gaussian_kernel",
    "half_mask",
    "measurement_image",
    "random_mask",
    "restore",
    "simulate_measurement",
    "uniform_kernel",
]
