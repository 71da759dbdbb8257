"""Observation models p(x|z), parameterised by a decoder's output.

A decoder maps latents ``[K, B, D]`` to parameters ``[K, B, num_params(F)]``; the likelihood
scores flattened data ``x: [B, F]`` against them and returns ``[K, B]`` (summed over the F
observed dimensions, broadcast over the K samples).
"""

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.distributions.gaussian import LOG_2PI


class Likelihood(nn.Module, ABC):
    """Base class: ``log_prob(x [B, F], params [K, B, P]) -> [K, B]``.

    ``support`` is the closed interval ``(low, high)`` of the values x it scores; the
    objectives check data against it (:mod:`diffvi.utils.validation`), since ``log_prob`` gives
    a finite but meaningless number outside it.
    """

    support: tuple[float, float] = (-math.inf, math.inf)

    @abstractmethod
    def num_params(self, data_dim: int) -> int:
        """How many decoder outputs the likelihood needs for ``data_dim`` observed values."""

    @abstractmethod
    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x|z) summed over the data axis."""

    @abstractmethod
    def mean(self, params: Tensor) -> Tensor:
        """E[x|z]: ``[..., P] -> [..., F]``."""

    @abstractmethod
    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x ~ p(x|z): ``[..., P] -> [..., F]``."""


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels with logits from the decoder (binary or grey-level data
    in [0, 1])."""

    support = (0.0, 1.0)

    def num_params(self, data_dim: int) -> int:
        return data_dim

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        # x·l − softplus(l), fused and numerically stable; x is broadcast over the sample axis.
        bce = F.binary_cross_entropy_with_logits(params, x.expand_as(params), reduction="none")
        return -bce.sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params), generator=generator)


class GaussianLikelihood(Likelihood):
    """Diagonal Gaussian p(x|z) = N(μ(z), σ²) for real-valued data (AEVB's Frey-faces model).

    ``scale="learned"``: the decoder outputs μ and log σ per pixel (AEVB App. C.2, P = 2F);
    ``scale=<float>``: fixed σ (P = F). ``sigmoid_mean`` squashes μ into (0, 1) as AEVB does.
    ``min_scale`` > 0 floors a learned σ smoothly, σ = σ_min + exp(output): without it the
    likelihood is unbounded on pixels that never vary (MNIST's borders) and training diverges.
    """

    def __init__(
        self, scale: str | float = "learned", sigmoid_mean: bool = True, min_scale: float = 0.0
    ) -> None:
        super().__init__()
        if isinstance(scale, str) and scale != "learned":
            raise ValueError(f"scale must be 'learned' or a float, got {scale!r}")
        if not isinstance(scale, str) and scale <= 0:
            raise ValueError(f"a fixed scale must be > 0, got {scale}")
        if min_scale < 0:
            raise ValueError(f"min_scale must be >= 0, got {min_scale}")
        self.scale = scale
        self.sigmoid_mean = sigmoid_mean
        self.min_scale = min_scale

    def num_params(self, data_dim: int) -> int:
        return 2 * data_dim if self.scale == "learned" else data_dim

    def _mean_and_log_std(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if self.scale == "learned":
            mean, log_std = params.chunk(2, dim=-1)
            if self.min_scale > 0:
                floor = torch.full_like(log_std, math.log(self.min_scale))
                log_std = torch.logaddexp(log_std, floor)  # σ = σ_min + exp(output)
        else:
            mean, log_std = params, torch.full_like(params, math.log(float(self.scale)))
        if self.sigmoid_mean:
            mean = torch.sigmoid(mean)
        return mean, log_std

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        return self.elementwise_log_prob(x, params).sum(-1)

    def elementwise_log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log N(x_f | μ_f, σ_f²) per dimension ``[..., F]`` (e.g. to score observed pixels)."""
        mean, log_std = self._mean_and_log_std(params)
        scaled = (x - mean) * torch.exp(-log_std)
        return -0.5 * (scaled.square() + LOG_2PI) - log_std

    def mean(self, params: Tensor) -> Tensor:
        return self._mean_and_log_std(params)[0]

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mean, log_std = self._mean_and_log_std(params)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(log_std) * noise


class RealGaussianLikelihood(GaussianLikelihood):
    """N(μ(z), σ(z)²) with an unbounded mean and a learned scale per dimension, for real-valued
    features such as principal components (``GaussianLikelihood`` squashes μ into (0, 1))."""

    def __init__(self, scale: str | float = "learned", min_scale: float = 0.0) -> None:
        super().__init__(scale, sigmoid_mean=False, min_scale=min_scale)


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,  # per-pixel learned scale, mean in (0, 1)
    "real-gaussian": RealGaussianLikelihood,  # learned scale, unbounded mean
}


def build_likelihood(name: str, scale: float | None = None, min_scale: float = 0.0) -> Likelihood:
    """A likelihood by name: ``"bernoulli"``, ``"gaussian"`` (per-pixel learned scale, mean in
    (0, 1), for images) or ``"real-gaussian"`` (learned scale, unbounded mean, for features).
    ``scale`` fixes a Gaussian's σ instead of learning it; ``min_scale`` floors a learned σ."""
    if name not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {sorted(LIKELIHOODS)}, got {name!r}")
    cls = LIKELIHOODS[name]
    if scale is None and min_scale == 0:
        return cls()
    if not issubclass(cls, GaussianLikelihood):
        raise ValueError(f"a scale or min_scale needs a Gaussian likelihood, got {name!r}")
    if scale is None:
        return cls(min_scale=min_scale)
    return cls(scale=scale)
