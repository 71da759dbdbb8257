"""Restoration metrics, defined in :mod:`diffvi.evaluation.restoration` and kept importable
from here (``diffvi.inverse.metrics``) for existing code."""

from diffvi.evaluation.restoration import (
    PSNR_CAP,
    diversity,
    feature_distance,
    psnr,
    restoration_scores,
    ssim,
    summarise_restorations,
)

__all__ = [
    "PSNR_CAP",
    "diversity",
    "feature_distance",
    "psnr",
    "restoration_scores",
    "ssim",
    "summarise_restorations",
]
