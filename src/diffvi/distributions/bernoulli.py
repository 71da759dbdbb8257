"""Factorised Bernoulli densities over binary units, shared by the sigmoid belief net
(:mod:`diffvi.models.sbn`) and its layer-wise posterior (:mod:`diffvi.posteriors.bernoulli`)."""

import torch
import torch.nn.functional as F
from torch import Tensor


def bernoulli_log_prob(value: Tensor, logits: Tensor) -> Tensor:
    """Σ over the last axis of log Bernoulli(value; σ(logits)) = v·ℓ − softplus(ℓ):
    ``[..., D] -> [...]``."""
    return -F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


def bernoulli_sample(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Binary draws ``(u < σ(logits))`` as floats, shaped like ``logits``."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    return (u < torch.sigmoid(logits)).to(logits.dtype)
