"""Evaluation: importance-sampled log-likelihood, active units, plots."""

from diffvi.evaluation.likelihood import LikelihoodEstimate, estimate_log_likelihood
from diffvi.evaluation.representation import active_units

__all__ = ["LikelihoodEstimate", "active_units", "estimate_log_likelihood"]
