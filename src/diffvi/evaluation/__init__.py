"""Evaluation: importance-sampled log-likelihood, representation metrics, plots."""

from diffvi.evaluation.likelihood import (
    LikelihoodEstimate,
    diffusion_bits_per_dim,
    estimate_log_likelihood,
)
from diffvi.evaluation.representation import (
    DDVI_LATENT_NLL_BANDWIDTHS,
    active_units,
    clustering_scores,
    embed_latents,
    gmm_cluster,
    kde_log_density,
    knn_accuracy,
    knn_accuracy_loo,
    latent_nll,
    mmd,
)
from diffvi.evaluation.sample_quality import (
    FeatureClassifier,
    classifier_accuracy,
    classifier_fid,
    frechet_distance,
    load_or_train_feature_classifier,
    nearest_neighbour_distances,
    nearest_neighbour_summary,
    nearest_neighbours,
    real_vs_real_floor,
    train_feature_classifier,
)

__all__ = [
    "DDVI_LATENT_NLL_BANDWIDTHS",
    "FeatureClassifier",
    "LikelihoodEstimate",
    "active_units",
    "classifier_accuracy",
    "classifier_fid",
    "clustering_scores",
    "embed_latents",
    "diffusion_bits_per_dim",
    "estimate_log_likelihood",
    "frechet_distance",
    "gmm_cluster",
    "kde_log_density",
    "knn_accuracy",
    "knn_accuracy_loo",
    "latent_nll",
    "load_or_train_feature_classifier",
    "mmd",
    "nearest_neighbour_distances",
    "nearest_neighbour_summary",
    "nearest_neighbours",
    "real_vs_real_floor",
    "train_feature_classifier",
]
