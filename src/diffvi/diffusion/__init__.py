"""Diffusion models: noise schedules, the model (losses, VDM bound, x₀-prediction), samplers,
CVDM's conditional model with a learned per-pixel schedule, and pretrained discrete-time
networks (diffusers, ADM) wrapped to the same contract (:mod:`diffvi.diffusion.discrete`;
diffusers folders and ``hf:`` ids load with :mod:`diffvi.diffusion.hub`, guided-diffusion
``.pt`` checkpoints with :mod:`diffvi.diffusion.adm`)."""

from diffvi.diffusion.adm import load_adm_prior
from diffvi.diffusion.conditional import CVDM, ConditionalSchedule, FixedConditionalSchedule
from diffvi.diffusion.discrete import (
    DiscreteTimeDenoiser,
    discrete_diffusion_model,
    discrete_times,
    named_betas,
)
from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.pretrained import (
    build_diffusion_model,
)
from diffvi.diffusion.samplers import SAMPLERS, ddim_step, sample_chain
from diffvi.diffusion.schedules import (
    SCHEDULES,
    CosineSchedule,
    DiscreteSchedule,
    InterpolatedSchedule,
    LearnableScalarSchedule,
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
    "DiscreteTimeDenoiser",
    "InterpolatedSchedule",
    "LearnableScalarSchedule",
    "LearnedSchedule",
    "LinearSchedule",
    "NoiseSchedule",
    "build_diffusion_model",
    "build_schedule",
    "ddim_step",
    "discrete_diffusion_model",
    "discrete_times",
    "linear_betas",
    "load_adm_prior",
    "named_betas",
    "sample_chain",
]
