"""Inverse autoregressive flow posterior (Kingma et al. 2016, "Improving Variational Inference
with Inverse Autoregressive Flow", arXiv 1606.04934).

The encoder gives the base Gaussian and a context ``h(x)``; T autoregressive steps follow:

    z_0 = μ(x) + σ(x) ⊙ ε,                 ε ~ N(0, I)
    [m_t, s_t] = MADE_t(z_{t−1}, h),         σ_t = sigmoid(s_t)
    z_t = σ_t ⊙ z_{t−1} + (1 − σ_t) ⊙ m_t    (the paper's numerically stable step, eq. 14)
    log q(z_T|x) = log N(ε; 0, I) − Σ_i log σ_i(x) − Σ_t Σ_i log σ_{t,i}      (eq. 15)

The variable order is reversed between steps (step t uses ``range(D)`` for even t, its reverse
for odd t). The forget-gate bias of s starts at ``forget_bias`` (default 2, σ ≈ 0.88, as in the
paper), so every step starts close to, but not exactly at, the identity.

Sampling and log q of the samples take one pass per step. ``log_prob(x, z)`` for an arbitrary z
inverts each step with D sequential MADE passes (exact after D passes; gradients through the
passes are those of the exact inverse), which STL/DReG-style estimators and tests need.

Why our own MADE and not zuko (``zuko.flows.MaskedAutoregressiveTransform``; zuko 1.6 installs
cleanly): (1) zuko's affine step is ``exp(a)·z + b`` with a soft-clipped log-scale, not the
sigmoid-gated step of eq. 14 with its forget-gate bias; getting eq. 14 means a custom
univariate ``Transform`` written against zuko's internals. (2) zuko concatenates the context to
every sample (``broadcast(x, c)``), so the context part of the first layer is recomputed for
each of the K samples; here ``W_h h(x)`` is computed once per data point and broadcast.
(3) the base must be the conditional Gaussian N(μ(x), σ(x)), while a zuko flow's base is
unconditional, so the flow would be split across zuko and this module anyway. (4) a new
dependency for ~60 lines of masked linear layers. The MADE follows Germain et al. 2015: with
positions 1 … D in the step's order, a hidden unit of degree d ∈ {0, …, D−1} sees the inputs
at positions ≤ d (degree-0 units see only the context), and the outputs of the variable at
position p see hidden units of degree < p; the context enters the first hidden layer unmasked.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.distributions.gaussian import LOG_2PI, diagonal_normal_log_prob
from diffvi.nn.activations import ACTIVATIONS
from diffvi.nn.mlp import MLP
from diffvi.posteriors.base import Posterior, PosteriorSample, with_label


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 ``mask [out, in]``."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor) -> None:
        super().__init__(in_features, out_features)
        if mask.shape != (out_features, in_features):
            raise ValueError(
                f"mask must have shape {(out_features, in_features)}, got {tuple(mask.shape)}"
            )
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder for one IAF step: ``z [..., D]`` (+ context term) -> ``(m, s)``.

    Output ``i`` depends only on the inputs that come before ``i`` in ``order`` (a permutation
    of ``range(D)``; ``order[i]`` is the position of variable ``i``), and on the context.

    Args:
        dim: D.
        hidden: hidden-layer widths.
        context_dim: width of the context ``h`` (0: none).
        order: ``[D]`` int64 permutation.
        activation: a name from ``diffvi.nn.activations.ACTIVATIONS``.
        forget_bias: initial bias of the gate pre-activation ``s``.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        context_dim: int,
        order: Tensor,
        activation: str = "tanh",
        forget_bias: float = 2.0,
        num_labels: int = 0,
    ) -> None:
        super().__init__()
        if num_labels < 0 or num_labels == 1:
            raise ValueError(f"num_labels must be 0 or >= 2, got {num_labels}")
        self.num_labels = num_labels
        if not hidden:
            raise ValueError("MADE needs at least one hidden layer")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        order = torch.as_tensor(order, dtype=torch.long).clone()  # flows must not share it
        if sorted(order.tolist()) != list(range(dim)):
            raise ValueError(f"order must be a permutation of range({dim}), got {order.tolist()}")
        self.dim = dim
        self.register_buffer("order", order)
        in_degree = order + 1  # 1 … D
        degrees = [in_degree]
        layers: list[nn.Module] = []
        prev = dim
        for width in hidden:
            deg = torch.arange(width) % dim  # 0 … D−1; degree 0 sees only the context
            layers.append(MaskedLinear(prev, width, (deg[:, None] >= degrees[-1][None, :]).float()))
            degrees.append(deg)
            prev = width
        out_degree = in_degree.repeat(2)  # (m, s) for each variable
        self.out = MaskedLinear(prev, 2 * dim, (out_degree[:, None] > degrees[-1][None, :]).float())
        self.hidden = nn.ModuleList(layers)
        self.act = ACTIVATIONS[activation]()
        self.context = nn.Linear(context_dim, hidden[0], bias=False) if context_dim > 0 else None
        with torch.no_grad():
            self.out.bias[dim:].fill_(forget_bias)

    def context_term(self, h: Tensor | None) -> Tensor | None:
        """``W_h h``: ``[B, C] -> [B, H_1]``, computed once per data point."""
        if self.context is None or h is None:
            return None
        return self.context(h)

    def forward(self, z: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        """``z [K, B, D]``, ``ctx [B, H_1]`` (from ``context_term``) -> ``m, s [K, B, D]``."""
        a = self.hidden[0](z)
        if ctx is not None:
            a = a + ctx
        a = self.act(a)
        for layer in self.hidden[1:]:
            a = self.act(layer(a))
        m, s = self.out(a).chunk(2, dim=-1)
        return m, s


class IAFPosterior(Posterior):
    """q(z|x): a diagonal-Gaussian base from ``encoder`` followed by ``num_flows`` IAF steps.

    Args:
        encoder: ``x`` flattened ``[B, F] -> [B, 2·D + C]`` = (mean, log σ, context h).
        latent_dim: D.
        context_dim: C (0: the MADEs see no context).
        num_flows: T.
        made_hidden: hidden widths of each MADE.
        activation: MADE activation (a name from ``diffvi.nn.activations.ACTIVATIONS``).
        forget_bias: initial bias of each gate pre-activation s (σ = sigmoid(s)).
        num_labels: L > 0 for a label-conditioned q(z|x, l): the encoder reads ``[B, F + L]``
            (x and the one-hot label, so the base and the flows' context see l), and
            ``sample``/``log_prob`` take ``label`` (int64 ``[B]``); 0 (default) for q(z|x).
    """

    def __init__(
        self,
        encoder: nn.Module,
        latent_dim: int,
        context_dim: int = 0,
        num_flows: int = 4,
        made_hidden: Sequence[int] = (128, 128, 128),
        activation: str = "tanh",
        forget_bias: float = 2.0,
        num_labels: int = 0,
    ) -> None:
        super().__init__()
        if num_labels < 0 or num_labels == 1:
            raise ValueError(f"num_labels must be 0 or >= 2, got {num_labels}")
        self.num_labels = num_labels
        if latent_dim < 1 or context_dim < 0 or num_flows < 0:
            raise ValueError(
                f"need latent_dim >= 1, context_dim >= 0, num_flows >= 0; got {latent_dim}, "
                f"{context_dim}, {num_flows}"
            )
        self.encoder = encoder
        self.latent_dim = latent_dim
        self.latent_dims = [latent_dim]
        self.context_dim = context_dim
        ascending = torch.arange(latent_dim)
        self.flows = nn.ModuleList(
            MADE(
                latent_dim,
                made_hidden,
                context_dim,
                ascending if t % 2 == 0 else ascending.flip(0),
                activation,
                forget_bias,
            )
            for t in range(num_flows)
        )

    def _encode(
        self, x: Tensor, label: Tensor | None = None
    ) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        out = self.encoder(with_label(x.flatten(1), label, self.num_labels))
        expected = 2 * self.latent_dim + self.context_dim
        if out.shape[-1] != expected:
            raise ValueError(f"encoder must output {expected} features, got {out.shape[-1]}")
        mean, log_std, h = out.split([self.latent_dim, self.latent_dim, self.context_dim], -1)
        ctx = [made.context_term(h) for made in self.flows]
        return mean, log_std, ctx

    @staticmethod
    def _step(made: MADE, z: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        """One IAF step (eq. 14): ``z_{t−1} -> (z_t, Σ_i log σ_{t,i})``."""
        m, s = made(z, ctx)
        gate = torch.sigmoid(s)
        return gate * z + torch.sigmoid(-s) * m, F.logsigmoid(s).sum(-1)

    @staticmethod
    def _inverse_step(made: MADE, z: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        """``z_t -> (z_{t−1}, Σ_i log σ_{t,i})`` by D sequential passes: after pass k the first
        k variables (in the step's order) of z_{t−1} are exact."""
        prev = torch.zeros_like(z)
        log_gate = z.new_zeros(z.shape[:-1])
        for _ in range(made.dim):
            m, s = made(prev, ctx)
            prev = (z - torch.sigmoid(-s) * m) * torch.exp(-F.logsigmoid(s))
            log_gate = F.logsigmoid(s).sum(-1)
        return prev, log_gate

    def sample(
        self,
        x: Tensor,
        k: int = 1,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> PosteriorSample:
        """``z [K, B, D]``, ``log_q [K, B]``; extras: ``base_mean``/``base_log_std`` ``[B, D]``
        (the Gaussian z_0, not q's moments), ``eps`` and ``z0`` ``[K, B, D]``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        mean, log_std, ctx = self._encode(x, label)
        eps = torch.randn(
            (k, *mean.shape), generator=generator, device=mean.device, dtype=mean.dtype
        )
        z0 = mean + torch.exp(log_std) * eps
        log_q = -0.5 * (eps.square() + LOG_2PI).sum(-1) - log_std.sum(-1)
        z = z0
        for made, c in zip(self.flows, ctx, strict=True):
            z, log_gate = self._step(made, z, c)
            log_q = log_q - log_gate
        extras = {"base_mean": mean, "base_log_std": log_std, "eps": eps, "z0": z0}
        return PosteriorSample(z=z, log_q=log_q, extras=extras)

    def log_prob(self, x: Tensor, z: Tensor, label: Tensor | None = None) -> Tensor:
        """log q(z|x) for ``z [K, B, D]`` by inverting the flow: ``[K, B]`` (D passes a step)."""
        if z.ndim != 3 or z.shape[-1] != self.latent_dim or z.shape[1] != x.shape[0]:
            raise ValueError(
                f"z must have shape [K, {x.shape[0]}, {self.latent_dim}], got {list(z.shape)}"
            )
        mean, log_std, ctx = self._encode(x, label)
        log_det = z.new_zeros(z.shape[:-1])
        for made, c in zip(reversed(self.flows), reversed(ctx), strict=True):
            z, log_gate = self._inverse_step(made, z, c)
            log_det = log_det + log_gate
        return diagonal_normal_log_prob(z, mean, log_std) - log_det


def build_iaf_posterior(
    data_dim: int,
    latent_dim: int,
    hidden: Sequence[int] = (200, 200),
    num_flows: int = 4,
    made_hidden: Sequence[int] = (128, 128, 128),
    context_dim: int = 64,
    activation: str = "tanh",
    forget_bias: float = 2.0,
    num_labels: int = 0,
) -> IAFPosterior:
    """An IAF posterior with an MLP encoder ``data_dim (+ num_labels) -> hidden -> 2·D + C``.

    Defaults: 4 steps of MADE 128-128-128 with a 64-wide encoder context (tanh throughout,
    as the IWAE-style encoders of :func:`diffvi.models.build_vae`). ``num_labels`` > 0: a
    label-conditioned q(z|x, l) (:class:`IAFPosterior`).
    """
    encoder = MLP(data_dim + num_labels, hidden, 2 * latent_dim + context_dim, activation)
    return IAFPosterior(
        encoder,
        latent_dim,
        context_dim,
        num_flows,
        made_hidden,
        activation,
        forget_bias,
        num_labels=num_labels,
    )
