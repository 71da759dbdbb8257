"""Diffusion models: noise schedules, the model (losses, VDM bound, x₀-prediction), samplers,
and CVDM's conditional model with a learned per-pixel schedule."""

from diffvi.diffusion.conditional import CVDM, ConditionalSchedule, FixedConditionalSchedule
from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.pretrained import (
    build_diffusion_model,
)
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
    "CVDM",
    "ConditionalSchedule",
    "FixedConditionalSchedule",
    "SAMPLERS",
    "SCHEDULES",
    "CosineSchedule",
    "DiffusionModel",
    "DiscreteSchedule",
    "LearnedSchedule",
    "LinearSchedule",
    "NoiseSchedule",
    "build_diffusion_model",
    "build_schedule",
    "ddim_step",
    "linear_betas",
    "sample_chain",
]
