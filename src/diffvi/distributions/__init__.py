"""Priors p(z) and likelihoods p(x|z)."""

from diffvi.distributions.gaussian import diagonal_normal_log_prob, kl_to_standard_normal
from diffvi.distributions.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    build_likelihood,
)
from diffvi.distributions.priors import StandardNormal

__all__ = [
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "Likelihood",
    "StandardNormal",
    "build_likelihood",
    "diagonal_normal_log_prob",
    "kl_to_standard_normal",
]
