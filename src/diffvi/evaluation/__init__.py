"""Evaluation: importance-sampled log-likelihood, representation metrics, plots."""

from diffvi.evaluation.likelihood import LikelihoodEstimate, estimate_log_likelihood
from diffvi.evaluation.representation import (
    DDVI_LATENT_NLL_BANDWIDTHS,
    active_units,
    clustering_scores,
    embed_latents,
    gmm_cluster,
    kde_log_density,
    knn_accuracy,
    latent_nll,
    mmd,
)

__all__ = [
    "DDVI_LATENT_NLL_BANDWIDTHS",
    "LikelihoodEstimate",
    "active_units",
    "clustering_scores",
    "embed_latents",
    "estimate_log_likelihood",
    "gmm_cluster",
    "kde_log_density",
    "knn_accuracy",
    "latent_nll",
    "mmd",
]
