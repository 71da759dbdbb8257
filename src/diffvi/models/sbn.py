"""Sigmoid belief networks (Neal 1992) with 1–3 layers of binary units, the models of NVIL (Mnih &
Gregor 2014), VIMCO (Mnih & Rezende 2016) and reweighted wake-sleep (Bornschein & Bengio 2015):

    p(x, h) = p(h_L) ∏_{l<L} p(h_l | h_{l+1}) · p(x | h_1),
    p(h_L) = ∏ Bernoulli(σ(b)),   p(h_l | h_{l+1}) = ∏ Bernoulli(σ(W_l h_{l+1} + c_l)),

with x = h_0 the visible units. The latent sample ``z: [K, B, D]`` concatenates the layers bottom
first (``D = D_1 + … + D_L``), as the layer-wise posterior
(:class:`~diffvi.posteriors.bernoulli.BernoulliPosterior`) draws it.
"""

from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor, nn

from diffvi.distributions.bernoulli import bernoulli_log_prob, bernoulli_sample
from diffvi.posteriors.bernoulli import check_layers


class SigmoidBeliefNet(nn.Module):
    """The generative SBN p(h_L) ∏ p(h_l | h_{l+1}) p(x | h_1).

    Args:
        event_shape: shape of one binary observation, e.g. ``(1, 28, 28)``.
        layers: ``D_1, …, D_L`` bottom layer first, e.g. ``(200, 200, 200)``.
        visible_bias: initial logits of p(x | h_1)'s bias, ``[prod(event_shape)]`` (e.g. the
            logit of the training-set pixel means, as the papers do), else zeros.
    """

    # The values x its Bernoulli visible units score (checked by the objectives).
    support = (0.0, 1.0)

    def __init__(
        self,
        event_shape: Sequence[int],
        layers: Sequence[int],
        visible_bias: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.data_dim = prod(self.event_shape)
        self.latent_dims = list(check_layers(layers))
        self.latent_dim = sum(self.latent_dims)
        below = [self.data_dim, *self.latent_dims[:-1]]
        # decoders[l]: h_{l+1} -> logits of h_l (h_0 = x).
        self.decoders = nn.ModuleList(
            nn.Linear(above, size) for above, size in zip(self.latent_dims, below, strict=True)
        )
        self.top_logits = nn.Parameter(torch.zeros(self.latent_dims[-1]))
        if visible_bias is not None:
            if visible_bias.shape != (self.data_dim,):
                raise ValueError(
                    f"visible_bias must have shape [{self.data_dim}], got "
                    f"{list(visible_bias.shape)}"
                )
            with torch.no_grad():
                self.decoders[0].bias.copy_(visible_bias)

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    def _check_x(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.event_shape))}], "
                f"got {list(x.shape)}"
            )
        return x.flatten(1)

    def split(self, z: Tensor) -> list[Tensor]:
        """The layers ``[h_1, …, h_L]`` of ``z [..., D]``, each ``[..., D_l]``."""
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape [K, B, {self.latent_dim}], got {list(z.shape)}")
        return list(z.split(self.latent_dims, dim=-1))

    def log_joint_terms(self, x: Tensor, z: Tensor) -> Tensor:
        """The factors of log p(x, h), ``[L + 1, K, B]``: row 0 is log p(x | h_1), row l
        (1 ≤ l < L) log p(h_l | h_{l+1}), row L log p(h_L). ``x [B, *event_shape]``,
        ``z [K, B, D]``."""
        flat = self._check_x(x)
        hs = self.split(z)
        if z.ndim != 3 or z.shape[1] != flat.shape[0]:
            raise ValueError(
                f"z must have shape [K, {flat.shape[0]}, {self.latent_dim}], got {list(z.shape)}"
            )
        below = [flat.expand(z.shape[0], *flat.shape), *hs[:-1]]
        terms = [
            bernoulli_log_prob(value, decoder(h))
            for value, decoder, h in zip(below, self.decoders, hs, strict=True)
        ]
        terms.append(bernoulli_log_prob(hs[-1], self.top_logits.expand_as(hs[-1])))
        return torch.stack(terms)

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(h_1, …, h_L): ``[K, B, D] -> [K, B]``."""
        hs = self.split(z)
        total = bernoulli_log_prob(hs[-1], self.top_logits.expand_as(hs[-1]))
        for layer in range(1, self.num_layers):
            total = total + bernoulli_log_prob(hs[layer - 1], self.decoders[layer](hs[layer]))
        return total

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | h_1): ``x [B, *event_shape]``, ``z [K, B, D] -> [K, B]``."""
        flat = self._check_x(x)
        h1 = self.split(z)[0]
        return bernoulli_log_prob(flat.expand(*h1.shape[:-1], -1), self.decoders[0](h1))

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, h): ``[K, B]``."""
        return self.log_joint_terms(x, z).sum(0)

    def sample_latent(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral draw of all layers, ``[num, D]`` (bottom first)."""
        top = self.top_logits.expand(num, -1)
        layers = [bernoulli_sample(top, generator)]
        for decoder in reversed(self.decoders[1:]):
            layers.insert(0, bernoulli_sample(decoder(layers[0]), generator))
        return torch.cat(layers, dim=-1)

    @torch.no_grad()
    def sample(
        self, num: int, generator: torch.Generator | None = None, mean: bool = True
    ) -> Tensor:
        """Observations ``[num, *event_shape]``: p(x | h_1)'s means, or binary draws."""
        h1 = self.split(self.sample_latent(num, generator))[0]
        logits = self.decoders[0](h1)
        x = torch.sigmoid(logits) if mean else bernoulli_sample(logits, generator)
        return x.reshape(num, *self.event_shape)

    def sample_joint(
        self, num: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(x [num, *event_shape], z [num, D])`` drawn from p(x, h) (the sleep phase's
        "dreams"); no gradient."""
        with torch.no_grad():
            z = self.sample_latent(num, generator)
            x = bernoulli_sample(self.decoders[0](self.split(z)[0]), generator)
        return x.reshape(num, *self.event_shape), z
