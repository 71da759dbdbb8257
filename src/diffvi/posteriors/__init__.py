"""Variational families q(z|x)."""

from diffvi.posteriors.base import Posterior, PosteriorSample
from diffvi.posteriors.bernoulli import BernoulliPosterior
from diffvi.posteriors.diffusion import (
    DiffusionPosterior,
    ReverseChain,
    TwoStagePosterior,
    build_diffusion_posterior,
)
from diffvi.posteriors.gaussian import GaussianPosterior
from diffvi.posteriors.iaf import MADE, IAFPosterior, MaskedLinear, build_iaf_posterior
from diffvi.posteriors.labelled import (
    LabelConditionedDiffusion,
    LabelConditionedPosterior,
    label_conditioned,
)
from diffvi.posteriors.registry import POSTERIORS, RegisteredPosterior

__all__ = [
    "BernoulliPosterior",
    "DiffusionPosterior",
    "GaussianPosterior",
    "IAFPosterior",
    "LabelConditionedDiffusion",
    "LabelConditionedPosterior",
    "MADE",
    "MaskedLinear",
    "POSTERIORS",
    "Posterior",
    "PosteriorSample",
    "RegisteredPosterior",
    "ReverseChain",
    "TwoStagePosterior",
    "build_diffusion_posterior",
    "build_iaf_posterior",
    "label_conditioned",
]
