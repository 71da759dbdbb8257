"""Amortised diagonal-Gaussian posteriors, with one or several stochastic layers.

One layer: q(z|x) = N(μ(x), diag σ(x)²) (AEVB). Several layers, as in the IWAE paper's
two-layer model: q(z_1|x) q(z_2|z_1)…, each a diagonal Gaussian whose parameters an MLP
computes from the layer below; the sample ``z`` concatenates ``[z_1, z_2, …]`` on its last axis.

Label-conditioned (``num_labels = L > 0``): q(z|x, l), the bottom encoder reading x and the
one-hot label l side by side (M2's encoder, Kingma et al. 2014); ``sample``, ``log_prob`` and
``expected_latent`` then take ``label`` (int64 ``[B]``).
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from diffvi.distributions.gaussian import LOG_2PI, diagonal_normal_log_prob
from diffvi.posteriors.base import Posterior, PosteriorSample, with_label


class GaussianPosterior(Posterior):
    """Diagonal-Gaussian q(z|x) from a stack of encoders.

    Args:
        encoders: encoder ``l`` maps the layer below (``x`` flattened to ``[B, F]`` for
            ``l = 0``, else ``z_l: [K, B, D_l]``) to ``[..., 2·D_{l+1}]`` = (mean, log σ).
        latent_dims: ``D_1, …, D_L``, bottom layer first.
        num_labels: L > 0 for q(z|x, l): encoder 0 then reads ``[B, F + L]`` (x and the
            one-hot label); 0 (the default) for q(z|x).
    """

    def __init__(
        self, encoders: Sequence[nn.Module], latent_dims: Sequence[int], num_labels: int = 0
    ) -> None:
        super().__init__()
        if len(encoders) != len(latent_dims) or not encoders:
            raise ValueError(
                f"need one encoder per latent layer, got {len(encoders)} encoders "
                f"for latent_dims={list(latent_dims)}"
            )
        self.encoders = nn.ModuleList(encoders)
        self.latent_dims = list(latent_dims)
        self.latent_dim = sum(self.latent_dims)
        if num_labels < 0 or num_labels == 1:
            raise ValueError(f"num_labels must be 0 or >= 2, got {num_labels}")
        self.num_labels = num_labels

    def _params(self, h: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        mean, log_std = self.encoders[layer](h).chunk(2, dim=-1)
        return mean, log_std

    def sample(
        self,
        x: Tensor,
        k: int = 1,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> PosteriorSample:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        h: Tensor = with_label(x.flatten(1), label, self.num_labels)
        zs, log_q = [], None
        extras: dict[str, Tensor] = {}
        for layer in range(len(self.encoders)):
            mean, log_std = self._params(h, layer)
            shape = (k, *mean.shape) if layer == 0 else mean.shape
            eps = torch.randn(shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(log_std) * eps
            # log N(μ + σε; μ, σ) = −½ε² − log σ − ½log 2π: exact, and cheaper than re-scoring z.
            layer_log_q = -0.5 * (eps.square() + LOG_2PI).sum(-1) - log_std.sum(-1)
            log_q = layer_log_q if log_q is None else log_q + layer_log_q
            if layer == 0:
                extras.update(mean=mean, log_std=log_std)
            zs.append(z)
            h = z
        z_all = zs[0] if len(zs) == 1 else torch.cat(zs, dim=-1)
        return PosteriorSample(z=z_all, log_q=log_q, extras=extras)

    def log_prob(self, x: Tensor, z: Tensor, label: Tensor | None = None) -> Tensor:
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have last dimension {self.latent_dim}, got {tuple(z.shape)}")
        h: Tensor = with_label(x.flatten(1), label, self.num_labels)
        total = None
        for layer, z_layer in enumerate(z.split(self.latent_dims, dim=-1)):
            mean, log_std = self._params(h, layer)
            lp = diagonal_normal_log_prob(z_layer, mean, log_std)
            total = lp if total is None else total + lp
            h = z_layer
        return total

    def expected_latent(self, x: Tensor, k: int = 100, label: Tensor | None = None) -> Tensor:
        """E_q[z|x] ``[B, D]``: exact for the bottom layer; for layer l > 1 the Monte Carlo mean
        of its conditional mean μ_l(z_{l−1}) over draws of the layer below (exact for units
        whose mean does not depend on the layer below, e.g. collapsed ones)."""
        mean, log_std = self._params(with_label(x.flatten(1), label, self.num_labels), 0)
        means = [mean]
        z = mean + torch.exp(log_std) * torch.randn(
            (k, *mean.shape), dtype=mean.dtype, device=mean.device
        )
        for layer in range(1, len(self.encoders)):
            mean, log_std = self._params(z, layer)
            means.append(mean.mean(0))
            z = mean + torch.exp(log_std) * torch.randn_like(mean)
        return means[0] if len(means) == 1 else torch.cat(means, dim=-1)
