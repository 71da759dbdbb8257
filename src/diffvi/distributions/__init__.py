"""Priors p(z) and likelihoods p(x|z)."""

from diffvi.distributions.bernoulli import bernoulli_log_prob, bernoulli_sample
from diffvi.distributions.cluster_heads import ClusterHeadsPrior
from diffvi.distributions.gaussian import diagonal_normal_log_prob, kl_to_standard_normal
from diffvi.distributions.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    build_likelihood,
)
from diffvi.distributions.priors import (
    PRIORS,
    PartitionedPrior,
    Prior,
    StandardNormal,
    build_prior,
    register_prior,
)
from diffvi.distributions.smoothed import (
    DDVI_PRIOR_BANDWIDTHS,
    KernelDensityScore,
    SmoothedPrior,
)
from diffvi.distributions.toy2d import (
    OFFICIAL_REFERENCE_PRIORS,
    MixturePrior,
    PinwheelPrior,
    SquarePrior,
    SwissRollPrior,
    official_prior_samples,
)

__all__ = [
    "DDVI_PRIOR_BANDWIDTHS",
    "BernoulliLikelihood",
    "ClusterHeadsPrior",
    "GaussianLikelihood",
    "KernelDensityScore",
    "Likelihood",
    "MixturePrior",
    "OFFICIAL_REFERENCE_PRIORS",
    "PRIORS",
    "PartitionedPrior",
    "PinwheelPrior",
    "Prior",
    "SmoothedPrior",
    "SquarePrior",
    "StandardNormal",
    "SwissRollPrior",
    "bernoulli_log_prob",
    "bernoulli_sample",
    "build_likelihood",
    "build_prior",
    "diagonal_normal_log_prob",
    "kl_to_standard_normal",
    "official_prior_samples",
    "register_prior",
]
