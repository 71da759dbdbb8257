"""Variational families q(z|x)."""

from diffvi.posteriors.base import Posterior, PosteriorSample
from diffvi.posteriors.gaussian import GaussianPosterior

__all__ = ["GaussianPosterior", "Posterior", "PosteriorSample"]
