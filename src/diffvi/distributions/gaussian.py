"""Closed-form diagonal-Gaussian densities shared by priors, posteriors and conditionals."""

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def diagonal_normal_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(z; mean, diag(exp(log_std)^2)) summed over the last axis: ``[..., D] -> [...]``."""
    scaled = (z - mean) * torch.exp(-log_std)
    return -0.5 * (scaled.square() + LOG_2PI).sum(-1) - log_std.sum(-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last axis: ``[..., D] -> [...]``."""
    return -0.5 * (z.square() + LOG_2PI).sum(-1)


def kl_to_standard_normal(mean: Tensor, log_std: Tensor) -> Tensor:
    """KL(N(mean, diag σ²) || N(0, I)) summed over the last axis (AEVB, Kingma & Welling App. B)."""
    return 0.5 * (mean.square() + torch.exp(2 * log_std) - 1 - 2 * log_std).sum(-1)
