"""Diffusion models: noise schedules (more — denoisers, samplers, conditional models — to come)."""

from diffvi.diffusion.schedules import DiscreteSchedule, linear_betas

__all__ = ["DiscreteSchedule", "linear_betas"]
