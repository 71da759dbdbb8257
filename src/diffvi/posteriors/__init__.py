"""Variational families q(z|x)."""

from diffvi.posteriors.base import Posterior, PosteriorSample
from diffvi.posteriors.diffusion import (
    DiffusionPosterior,
    ReverseChain,
    build_diffusion_posterior,
)
from diffvi.posteriors.gaussian import GaussianPosterior

__all__ = [
    "DiffusionPosterior",
    "GaussianPosterior",
    "Posterior",
    "PosteriorSample",
    "ReverseChain",
    "build_diffusion_posterior",
]
