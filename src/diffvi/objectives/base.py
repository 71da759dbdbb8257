"""The contract shared by every objective."""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from diffvi.utils.validation import check_finite_in


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

    Every objective first checks x with :func:`check_data` (its shape against the model's
    event shape, its values against the likelihood's support; the value check can be switched
    off, :class:`diffvi.validation`).

    ``config_fields`` maps constructor keywords to the fields of a VAE run's config
    (:class:`~diffvi.training.TrainConfig`) they are read from when the objective is trained by
    name; keywords not listed come from the config's ``objective_options`` (or keep their
    defaults). The sample count is ``k`` everywhere. ``diffusion_posterior`` marks objectives
    that train (and are the only ones that can train) a diffusion posterior; ``ddim_chain``
    those that train its chain as the deterministic DDIM map (the official DDVI objectives),
    whose models embed by that map too.
    """

    name: str = "objective"
    config_fields: ClassVar[dict[str, str]] = {"k": "k"}
    # Whether it trains a diffusion posterior (DDVI's auxiliary chain), which needs it.
    diffusion_posterior: ClassVar[bool] = False
    ddim_chain: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput: ...


def data_support(model) -> tuple[float, float]:
    """The closed interval of data values the model's p(x|z) scores: its likelihood's
    ``support`` (a VAE), else the model's own ``support`` attribute (a sigmoid belief net),
    else the real line."""
    likelihood = getattr(model, "likelihood", None)
    support = getattr(likelihood, "support", None) or getattr(model, "support", None)
    return (-math.inf, math.inf) if support is None else support


def check_data(model, x: Tensor) -> None:
    """Check a batch ``x [B, *event_shape]`` at a public entry point (the objectives,
    :func:`~diffvi.evaluation.estimate_log_likelihood`): a ValueError naming the problem and
    what was expected when x's trailing shape is not the model's ``event_shape`` (where the
    model has one), when x holds NaN or infinite values, or values outside the support of the
    model's likelihood (:func:`data_support`; e.g. [0, 1] for a Bernoulli likelihood).

    The shape check is free and always on; the value check is one ``aminmax`` reduction per
    batch and is skipped when :class:`diffvi.validation` is off.
    """
    event_shape = getattr(model, "event_shape", None)
    if event_shape is not None and (x.ndim < 1 or tuple(x.shape[1:]) != tuple(event_shape)):
        expected = ", ".join(["B", *map(str, event_shape)])
        raise ValueError(
            f"expected x of shape [B, *event_shape] = [{expected}] (the model's event shape), "
            f"got {list(x.shape)}"
        )
    support = data_support(model)
    hint = ""
    if support != (-math.inf, math.inf):
        likelihood = getattr(model, "likelihood", None)
        owner = type(model if likelihood is None else likelihood).__name__
        hint = f"the model's {owner} scores values in that range only"
        if support == (0.0, 1.0):
            hint += (
                ": scale x into [0, 1] (8-bit images: divide by 255), or model real-valued "
                "data with a Gaussian likelihood"
            )
    check_finite_in(x, support, "x", hint)


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
