"""The contract shared by every objective."""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ObjectiveOutput:
    """What an objective returns.

    loss: scalar to minimise (a surrogate where the gradient estimator needs one).
    bound: ``[B]`` per-data-point value of the bound, detached: the figure to log.
    metrics: further detached scalars (e.g. ``kl``, ``ess``).
    """

    loss: Tensor
    bound: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


class Objective(ABC):
    """``objective(model, posterior, x) -> ObjectiveOutput``; x is ``[B, *event_shape]``."""

    name: str = "objective"

    @abstractmethod
    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput: ...


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """log (1/K Σ_k exp(log_w_k)) along ``dim``, computed stably."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def effective_sample_size(log_w: Tensor) -> Tensor:
    """(Σw)² / Σw² along the sample axis 0: ``[K, B] -> [B]``."""
    return torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0))
