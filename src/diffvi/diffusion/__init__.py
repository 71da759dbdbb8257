"""Diffusion models: noise schedules, the model (losses, VDM bound, x₀-prediction), samplers."""

from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.samplers import SAMPLERS, ddim_step, sample_chain
from diffvi.diffusion.schedules import (
    SCHEDULES,
    CosineSchedule,
    DiscreteSchedule,
    LearnedSchedule,
    LinearSchedule,
    NoiseSchedule,
    build_schedule,
    linear_betas,
)

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "CosineSchedule",
    "DiffusionModel",
    "DiscreteSchedule",
    "LearnedSchedule",
    "LinearSchedule",
    "NoiseSchedule",
    "build_schedule",
    "ddim_step",
    "linear_betas",
    "sample_chain",
]
