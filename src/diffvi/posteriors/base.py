"""The contract every variational posterior q(z|x) follows."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call


@dataclass
class PosteriorSample:
    """Samples from q(z|x) with their log-densities.

    z: ``[K, B, D]`` (all latent layers concatenated, bottom layer first).
    log_q: ``[K, B]``, or ``None`` where q is only known through auxiliary variables.
    extras: family-specific tensors (e.g. ``mean``/``log_std`` ``[B, D]`` of a Gaussian, the
    standard-normal noise ``eps`` ``[K, B, D]``, or a diffusion posterior's auxiliaries).
    """

    z: Tensor
    log_q: Tensor | None
    extras: dict[str, Tensor] = field(default_factory=dict)


class Posterior(nn.Module, ABC):
    """An amortised variational family q(z|x); x is ``[B, *event_shape]``."""

    latent_dim: int

    @abstractmethod
    def sample(
        self, x: Tensor, k: int = 1, generator: torch.Generator | None = None
    ) -> PosteriorSample:
        """Reparameterised draws ``z: [K, B, D]`` and their ``log_q: [K, B]``."""

    @abstractmethod
    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """log q(z|x) for ``x: [B, ...]`` and ``z: [K, B, D]``; returns ``[K, B]``."""

    def log_prob_stopped(self, x: Tensor, z: Tensor) -> Tensor:
        """log q(z|x) with the variational parameters held fixed (no gradient to them), while
        gradients still flow through ``z`` and ``x``: the ``q(z; stop_grad(φ))`` of the STL
        (Roeder et al. 2017) and DReG (Tucker et al. 2018) estimators. ``[K, B]``."""
        frozen = {name: p.detach() for name, p in self.named_parameters()}
        frozen.update(dict(self.named_buffers()))
        return functional_call(self, frozen, args=(x, z), kwargs={}, strict=False, tie_weights=True)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """``forward`` scores ``z`` (so that ``functional_call`` can freeze parameters)."""
        return self.log_prob(x, z)

    def expected_latent(self, x: Tensor, k: int = 100) -> Tensor:
        """E_q[z|x] ``[B, D]``; Monte Carlo here, closed form where a family knows it."""
        return self.sample(x, k).z.mean(0)
