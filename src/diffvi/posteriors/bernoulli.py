"""Layer-wise Bernoulli posteriors for sigmoid belief networks (the recognition networks of NVIL,
VIMCO and reweighted wake-sleep): the generative SBN run upwards,

    q(h | x) = q(h_1 | x) ∏_{l>1} q(h_l | h_{l−1}),
    q(h_l | h_{l−1}) = ∏ Bernoulli(σ(V_l h_{l−1} + d_l)).

Draws are binary and carry no gradient (nothing to reparameterise): estimators use the score
∇_φ log q(h | x), per layer where they want local learning signals.
"""

from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor, nn

from diffvi.distributions.bernoulli import bernoulli_log_prob, bernoulli_sample
from diffvi.posteriors.base import Posterior, PosteriorSample


def check_layers(layers: Sequence[int]) -> tuple[int, ...]:
    """The layer sizes ``D_1, …, D_L`` of a sigmoid belief net and of its posterior as a
    tuple, each an int >= 1 (at least one layer)."""
    layers = tuple(layers)
    if not layers or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in layers):
        raise ValueError(f"layers must be one or more ints >= 1, got {list(layers)}")
    return layers


class BernoulliPosterior(Posterior):
    """q(h_1 | x) ∏ q(h_l | h_{l−1}) with linear-sigmoid layers.

    Args:
        event_shape: shape of one observation, e.g. ``(1, 28, 28)``.
        layers: ``D_1, …, D_L`` bottom layer first (those of the model).

    ``sample`` returns ``z [K, B, D]`` (layers concatenated bottom first), ``log_q [K, B]`` and
    ``extras["log_q_layers"] [L, K, B]``, the per-layer factors.
    """

    def __init__(self, event_shape: Sequence[int], layers: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.data_dim = prod(self.event_shape)
        self.latent_dims = list(check_layers(layers))
        self.latent_dim = sum(self.latent_dims)
        below = [self.data_dim, *self.latent_dims[:-1]]
        # encoders[l]: h_l -> logits of h_{l+1} (h_0 = x).
        self.encoders = nn.ModuleList(
            nn.Linear(size_in, size) for size_in, size in zip(below, self.latent_dims, strict=True)
        )

    def _flat_x(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.event_shape))}], "
                f"got {list(x.shape)}"
            )
        return x.flatten(1)

    def sample(
        self, x: Tensor, k: int = 1, generator: torch.Generator | None = None
    ) -> PosteriorSample:
        """``k`` = K ancestral draws per item: ``z [K, B, D]`` (no gradient),
        ``log_q [K, B]`` and ``extras["log_q_layers"] [L, K, B]`` (with gradient to φ)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        below = self._flat_x(x).expand(k, -1, -1)
        layers, log_q = [], []
        for encoder in self.encoders:
            logits = encoder(below)
            h = bernoulli_sample(logits.detach(), generator)
            log_q.append(bernoulli_log_prob(h, logits))
            layers.append(h)
            below = h
        log_q_layers = torch.stack(log_q)
        return PosteriorSample(
            torch.cat(layers, -1), log_q_layers.sum(0), {"log_q_layers": log_q_layers}
        )

    def log_prob_layers(self, x: Tensor, z: Tensor) -> Tensor:
        """The factors log q(h_l | h_{l−1}), ``[L, K, B]``, for ``x [B, …]``, ``z [K, B, D]``."""
        flat = self._flat_x(x)
        if z.ndim != 3 or z.shape[1:] != (flat.shape[0], self.latent_dim):
            raise ValueError(
                f"z must have shape [K, {flat.shape[0]}, {self.latent_dim}], got {list(z.shape)}"
            )
        hs = z.split(self.latent_dims, dim=-1)
        below = [flat.expand(z.shape[0], -1, -1), *hs[:-1]]
        return torch.stack(
            [
                bernoulli_log_prob(h, encoder(b))
                for h, encoder, b in zip(hs, self.encoders, below, strict=True)
            ]
        )

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """log q(h | x): ``[K, B]``."""
        return self.log_prob_layers(x, z).sum(0)
