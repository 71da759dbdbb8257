"""The cluster-head prior of the official DDVI code's clustering model (GitHub topwasu/DDVI,
``algorithms/vaes/diff_vae.py``: ``AutoClusteringDiffVAE`` with its ``ClusteringPrior``).

K learnable heads h_1 … h_K ∈ R^D (the official ``cluster_layer``, a bias-free linear map of a
one-hot head choice) carry a fixed isotropic Gaussian:

    p(z) = (1/K) Σ_k N(z; h_k, s² I),    sampling: k ~ U{1, …, K}, z = h_k + s ε,

equal weights (the official ``sample_categorical`` draws uniform one-hot heads) and one fixed
s (the base prior's ``gauss_std``: the official genotype runs used ``tiny_gauss``, s = 0.125,
per ``get_all_results.py``). Sampling is reparameterised in the
heads, so a loss on prior samples (the official code trains the heads with the reverse chain's
denoising loss on them) reaches h. Heads start uniform in [0, 0.1)^D as in the official code.

Besides :class:`~diffvi.distributions.PartitionedPrior`'s methods (exact log density,
responsibilities), the prior has the official code's head losses (``_calc_cluster_loss``):

    repulsion(η) = (1/K²) Σ_{a ≠ b} max(0, η − √(‖h_a − h_b‖² + 10⁻⁶))
    box_penalty(c) = (1/(K D)) Σ_{k, d} max(0, |h_kd| − c)

— the expectations over uniformly drawn head pairs of the official stochastic versions (pairs
a = b add a constant without gradient and are left out) — and ``assign(z)``, the nearest head
(the official ``eval_label``), which with equal weights and one s is argmax_k p(k | z).
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from diffvi.distributions.priors import DEFAULT_PARTITIONS, PartitionedPrior, Prior, register_prior

HEAD_STD = 0.125
"""Default s, the standard deviation around each head (the official genotype runs' prior,
``tiny_gauss``)."""
HEAD_INIT = 0.1
"""Heads start uniform in [0, HEAD_INIT)^D (official: ``torch.rand(K, D) * 0.1``)."""
HEAD_SPEED = 10.0
"""Default ``speed``: the heads are stored divided by it, so that the model's Adam moves them
``speed`` times as fast as the other weights (official: their own Adam at lr 10⁻², 100× the
model's 10⁻⁴; here 10× the embedding's default lr 10⁻³ gives the same 10⁻²)."""
_DISTANCE_EPS = 1e-6  # inside the square root of the repulsion's distance, as the official code


@register_prior("cluster-heads")
class ClusterHeadsPrior(PartitionedPrior):
    """p(z) = (1/K) Σ_k N(z; h_k, s² I) with learnable heads ``heads [K, D]`` (an
    ``nn.Parameter``) and fixed ``std`` s; see the module docstring.

    Args:
        num_heads: K (``num_partitions``).
        dim: D.
        std: s > 0.
        speed: the heads are the parameter ``scaled_heads`` times ``speed`` > 0: an optimiser
            that moves every weight by about its learning rate per step (Adam) moves the heads
            ``speed`` times as fast (:data:`HEAD_SPEED`).
        generator: randomness of the heads' initial values, U[0, ``HEAD_INIT``)^D.
    """

    def __init__(
        self,
        num_heads: int = DEFAULT_PARTITIONS,
        dim: int = 2,
        std: float = HEAD_STD,
        speed: float = HEAD_SPEED,
        generator: torch.Generator | None = None,
    ) -> None:
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        if not 0 < speed < float("inf"):
            raise ValueError(f"speed must be finite and > 0, got {speed}")
        super().__init__(num_heads, dim=dim)
        self.std = float(std)
        self.speed = float(speed)
        initial = torch.rand(num_heads, dim, generator=generator) * HEAD_INIT
        self.scaled_heads = nn.Parameter(initial / self.speed)
        self._frozen = False

    @property
    def heads(self) -> Tensor:
        """h, ``[K, D]`` (differentiable, except inside :meth:`frozen_heads`)."""
        heads = self.scaled_heads * self.speed
        return heads.detach() if self._frozen else heads

    @contextmanager
    def frozen_heads(self, frozen: bool = True) -> Iterator[None]:
        """Within this context no gradient reaches the heads where ``frozen`` (through
        ``log_prob``, ``sample``, the losses: everything reads :attr:`heads`); ``False``
        lets it through even inside an outer frozen context."""
        previous, self._frozen = self._frozen, bool(frozen)
        try:
            yield
        finally:
            self._frozen = previous

    @classmethod
    def with_defaults(cls, dim: int, num_components: int = DEFAULT_PARTITIONS) -> Prior:
        return cls(num_components, dim=dim)

    @property
    def num_heads(self) -> int:
        return self.num_partitions

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_partitions}, dim={self.dim}, std={self.std:g}, speed={self.speed:g}"
        )

    def _sample_given(self, labels: Tensor, generator: torch.Generator | None) -> Tensor:
        eps = torch.randn(
            (labels.shape[0], self.dim),
            generator=generator,
            device=self.scaled_heads.device,
            dtype=self.scaled_heads.dtype,
        )
        return self.heads[labels] + self.std * eps

    def _log_prob_given(self, z: Tensor, labels: Tensor) -> Tensor:
        return _isotropic_log_prob(z, self.heads[labels], self.std)

    def log_prob_per_partition(self, z: Tensor) -> Tensor:
        """log N(z; h_k, s² I) for every head: ``[..., D] -> [..., K]``."""
        self._check_z(z)
        return _isotropic_log_prob(z[..., None, :], self.heads.to(z.dtype), self.std)

    def assign(self, z: Tensor) -> Tensor:
        """The nearest head of each point (the official ``eval_label``): ``[..., D] ->
        [...]`` int64, = argmax_k p(k | z)."""
        self._check_z(z)
        heads = self.heads.detach().to(z.dtype)
        return (z[..., None, :] - heads).square().sum(-1).argmin(-1)

    @torch.no_grad()
    def min_gap(self) -> Tensor:
        """The smallest distance between two heads, a scalar (0 with one head)."""
        if self.num_partitions < 2:
            return self.heads.new_zeros(())
        gaps = torch.cdist(self.heads, self.heads)
        return gaps.fill_diagonal_(float("inf")).min()

    def repulsion(self, eta: float) -> Tensor:
        """The η-margin repulsion of the heads (module docstring), a scalar ≥ 0: zero once every
        pair is at least η apart, else its gradient pushes the closer pairs apart."""
        if not eta >= 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        k, heads = self.num_partitions, self.heads
        if k < 2:
            return heads.sum() * 0
        diff = heads[:, None, :] - heads[None, :, :]  # [K, K, D]
        distance = torch.sqrt(diff.square().sum(-1) + _DISTANCE_EPS)
        off = ~torch.eye(k, dtype=torch.bool, device=heads.device)
        return torch.clamp(eta - distance[off], min=0).sum() / k**2

    def box_penalty(self, bound: float) -> Tensor:
        """Mean over heads and coordinates of max(0, |h_kd| − ``bound``): a scalar ≥ 0 that
        keeps the heads in [−bound, bound]^D (official: 2.5, weight 100)."""
        if not bound > 0:
            raise ValueError(f"bound must be > 0, got {bound}")
        return torch.clamp(self.heads.abs() - bound, min=0).mean()


def _isotropic_log_prob(z: Tensor, mean: Tensor, std: float) -> Tensor:
    """log N(z; mean, std² I) summed over the last axis (broadcasting ``z`` and ``mean``)."""
    d = z.shape[-1]
    log_norm = d * (math.log(std) + 0.5 * math.log(2 * math.pi))
    return -0.5 * ((z - mean) / std).square().sum(-1) - log_norm
