"""The contract shared by every objective."""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor


@dataclass
class ObjectiveOutput:
    """What an objective returns.

    loss: scalar to minimise (a surrogate where the gradient estimator needs one).
    bound: ``[B]`` per-data-point value of the bound, detached: the figure to log.
    metrics: further detached scalars (e.g. ``kl``, ``ess``).
    z: the ``[K, B, D]`` latent draws the bound used (with gradient), for wrappers that add
        per-draw terms (e.g. :class:`~diffvi.objectives.SemiSupervised`); ``None`` where the
        objective does not expose them (set by ELBO and DDVI).
    """

    loss: Tensor
    bound: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    z: Tensor | None = None


class Objective(ABC):
    """``objective(model, posterior, x) -> ObjectiveOutput``; x is ``[B, *event_shape]``.

    ``config_fields`` maps constructor keywords to the fields of a VAE run's config
    (:class:`~diffvi.training.TrainConfig`) they are read from when the objective is trained by
    name; keywords not listed come from the config's ``objective_options`` (or keep their
    defaults). The sample count is ``k`` everywhere. ``diffusion_posterior`` marks objectives
    that train (and are the only ones that can train) a diffusion posterior.
    """

    name: str = "objective"
    config_fields: ClassVar[dict[str, str]] = {"k": "k"}
    # Whether it trains a diffusion posterior (DDVI's auxiliary chain), which needs it.
    diffusion_posterior: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput: ...


def log_density_ratio(model, sample) -> Tensor:
    """log q(z|x) − log p(z) per draw, ``[K, B]``.

    For a posterior known only through auxiliary variables y (``log_q is None``, e.g. DDVI's
    diffusion posterior), the extended-space ratio log q(y, z|x) − log r(y|z) − log p(z): its
    negative mean is L_reg, and p(x, z) r(y|z) / q(y, z|x) is still an unbiased weight for p(x).
    """
    if sample.log_q is not None:
        return sample.log_q - model.log_prior(sample.z)
    extras = sample.extras
    if "log_q_joint" in extras and "log_r" in extras:
        return extras["log_q_joint"] - extras["log_r"] - model.log_prior(sample.z)
    raise ValueError(
        "the posterior sample has neither log_q nor the auxiliary densities log_q_joint and "
        "log_r; importance weights need one of them (a DiffusionPosterior with sampler='ddim' "
        "has neither)"
    )


def log_importance_weights(model, x: Tensor, sample) -> Tensor:
    """log w = log p(x|z) − (log q − log p(z)) per draw: ``[K, B]`` (see ``log_density_ratio``)."""
    return model.log_likelihood(x, sample.z) - log_density_ratio(model, sample)


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """log (1/K Σ_k exp(log_w_k)) along ``dim``, computed stably."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def effective_sample_size(log_w: Tensor) -> Tensor:
    """(Σw)² / Σw² along the sample axis 0: ``[K, B] -> [B]``."""
    return torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0))
