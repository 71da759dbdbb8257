"""A kernel-smoothed version of a 2-D partitioned prior: a proper density with tails.

The official DDVI code never evaluates the pinwheel, swiss-roll or square densities exactly: its
``priors.py::BasePrior.evaluate`` scores log p(z) with an equal-weight mixture of five Gaussian
KDEs (bandwidths 0.005, 0.008, 0.01, 0.03, 0.05) fitted on 10,000 prior samples, and every ELBO,
regulariser and baseline of the paper uses that score. The exact densities are far more rugged:
the pinwheel's arms are 0.005 wide, so a latent 0.02 off an arm scores log p(z) ≈ −100, and a
diffusion chain trained on prior samples for 10,000 steps still lands its samples at a mean
log p(z) ≈ −100 (the smallest noise level, std 0.01, is wider than the arms).

:class:`SmoothedPrior` makes that score a prior in its own right: p̃(z) = (1/B) Σ_b (1/N) Σ_i
N(z; c_i, h_b² I), centres c_i drawn once from the exact prior (N/L per partition, so the
partitions keep their equal weights), with ``sample`` drawing from the same mixture (a stored
centre plus kernel noise of a random bandwidth). Bounds computed with it are bounds for the
model whose prior is p̃, and its samples, densities and per-partition densities agree.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from diffvi.distributions.priors import PartitionedPrior

#: The bandwidths of the official DDVI code's prior score (``priors.py::BasePrior.evaluate``).
DDVI_PRIOR_BANDWIDTHS: tuple[float, ...] = (0.005, 0.008, 0.01, 0.03, 0.05)
#: Centres of :class:`SmoothedPrior` by default. The official code uses 10,000; scoring costs
#: B·N kernel evaluations per latent (fwd + bwd of 128 latents: ~0.14 s at 10,000 on one core,
#: ~0.03 s at 2,000), so training defaults to 2,000 (200 per partition).
DEFAULT_CENTRES = 2_000
# Rows of z per block when scoring (memory ~ block · N · 8 bytes per bandwidth).
_BLOCK = 1024


class SmoothedPrior(PartitionedPrior):
    """A Gaussian-kernel mixture around ``num_samples`` draws of a fixed 2-D partitioned prior.

    Args:
        prior: a :class:`~diffvi.distributions.PinwheelPrior`, ``SwissRollPrior`` or
            ``SquarePrior`` (a prior with learnable parameters, e.g. ``MixturePrior``, is
            refused: its stored draws would not follow its training).
        bandwidths: kernel standard deviations h_b > 0, mixed with equal weights.
        num_samples: N, a multiple of ``prior.num_partitions`` (N/L centres per partition).
        seed: the seed of the centres (the same seed gives the same prior).
    """

    def __init__(
        self,
        prior: PartitionedPrior,
        bandwidths: Sequence[float] = DDVI_PRIOR_BANDWIDTHS,
        num_samples: int = DEFAULT_CENTRES,
        seed: int = 0,
    ) -> None:
        if not isinstance(prior, PartitionedPrior):
            raise ValueError(
                f"SmoothedPrior needs a 2-D partitioned prior, got {type(prior).__name__}"
            )
        if any(True for _ in prior.parameters()):
            raise ValueError(
                f"SmoothedPrior needs a fixed prior; {type(prior).__name__} has learnable "
                "parameters (it is smooth already: use it as it is)"
            )
        hs = [float(h) for h in bandwidths]
        if not hs or min(hs) <= 0:
            raise ValueError(f"bandwidths must be a non-empty list of values > 0, got {hs}")
        parts = prior.num_partitions
        if num_samples < parts or num_samples % parts:
            raise ValueError(
                f"num_samples must be a positive multiple of the {parts} partitions, "
                f"got {num_samples}"
            )
        super().__init__(parts, prior.dim)
        self.base_name = type(prior).__name__
        per = num_samples // parts
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(parts).repeat_interleave(per)
        with torch.no_grad():
            centres = prior.cpu().sample((num_samples,), generator=generator, labels=labels)
        self.register_buffer("centres", centres.reshape(parts, per, prior.dim).float())
        self.register_buffer("bandwidths", torch.tensor(hs))

    def extra_repr(self) -> str:
        parts, per, _ = self.centres.shape
        hs = ", ".join(f"{h:g}" for h in self.bandwidths.tolist())
        return f"{self.base_name}, {parts}×{per} centres, bandwidths ({hs})"

    def _sample_given(self, labels: Tensor, generator: torch.Generator | None) -> Tensor:
        per = self.centres.shape[1]
        device = self.centres.device
        index = torch.randint(per, labels.shape, generator=generator, device=device)
        which = torch.randint(
            len(self.bandwidths), labels.shape, generator=generator, device=device
        )
        noise = torch.randn(
            (*labels.shape, self.dim), generator=generator, device=device, dtype=self.centres.dtype
        )
        return self.centres[labels, index] + self.bandwidths[which, None] * noise

    def log_prob_per_partition(self, z: Tensor) -> Tensor:
        """log p̃(z | l) for every l: ``[..., 2] -> [..., L]``."""
        self._check_z(z)
        flat = z.reshape(-1, self.dim)
        centres = self.centres.to(flat.dtype)
        hs = self.bandwidths.to(flat.dtype)
        per = centres.shape[1]
        # log of each kernel's normaliser, (D/2) log(2π h²), plus log N_l and log B.
        log_norm = 0.5 * self.dim * torch.log(2 * math.pi * hs.square()) + math.log(per * len(hs))
        blocks = []
        for block in flat.split(_BLOCK):
            d2 = (block[:, None, None, :] - centres).square().sum(-1)  # [m, L, per]
            scaled = [d2 / (-2 * h * h) for h in hs]
            per_h = torch.stack([torch.logsumexp(a, dim=-1) for a in scaled])  # [B, m, L]
            per_h = per_h - log_norm[:, None, None]
            blocks.append(torch.logsumexp(per_h, dim=0))
        return torch.cat(blocks).reshape(*z.shape[:-1], self.num_partitions)

    def _log_prob_given(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.log_prob_per_partition(z).gather(-1, labels[:, None]).squeeze(-1)


class KernelDensityScore(nn.Module):
    """The official DDVI code's prior score, ``priors.py::BasePrior.evaluate``, as a
    differentiable function of z: an equal-weight mixture over the bandwidths h_b of Gaussian
    kernel density estimates on fixed reference samples c_1 … c_N, each bandwidth's log
    density clamped to [−``clamp``, ``clamp``] before mixing (the official clamp is 1000):

        log p_KDE(z) = logsumexp_b clamp(log (1/N) Σ_i N(z; c_i, h_b² I)) − log B.

    The official ``DiffVAEWarmup`` trains with −log p_KDE(z) of 10,000 prior samples (drawn once)
    and ``DDVI_PRIOR_BANDWIDTHS``. Unlike :class:`SmoothedPrior` it is a score, not a prior: it
    draws nothing and keeps no partitions. The samples are a non-persistent buffer (rebuilt
    from their seed, not saved in checkpoints).

    Args:
        samples: ``[N, D]`` reference samples c_i.
        bandwidths: kernel standard deviations h_b > 0.
        clamp: bound on each bandwidth's log density (``inf``: none).
    """

    samples: Tensor
    bandwidths: Tensor

    def __init__(
        self,
        samples: Tensor,
        bandwidths: Sequence[float] = DDVI_PRIOR_BANDWIDTHS,
        clamp: float = 1000.0,
    ) -> None:
        super().__init__()
        if samples.ndim != 2 or samples.shape[0] < 1:
            raise ValueError(f"samples must be [N, D] with N >= 1, got {list(samples.shape)}")
        hs = [float(h) for h in bandwidths]
        if not hs or min(hs) <= 0:
            raise ValueError(f"bandwidths must be a non-empty list of values > 0, got {hs}")
        if not clamp > 0:
            raise ValueError(f"clamp must be > 0, got {clamp}")
        self.clamp = float(clamp)
        self.register_buffer("samples", samples.detach().clone(), persistent=False)
        self.register_buffer("bandwidths", torch.tensor(hs), persistent=False)

    def extra_repr(self) -> str:
        hs = ", ".join(f"{h:g}" for h in self.bandwidths.tolist())
        return f"{self.samples.shape[0]} samples, bandwidths ({hs}), clamp {self.clamp:g}"

    def forward(self, z: Tensor) -> Tensor:
        """log p_KDE(z): ``[..., D] -> [...]`` (differentiable in z)."""
        dim = self.samples.shape[1]
        if z.shape[-1] != dim:
            raise ValueError(f"z must have shape [..., {dim}], got {list(z.shape)}")
        flat = z.reshape(-1, dim)
        samples = self.samples.to(flat.dtype)
        hs = self.bandwidths.to(flat.dtype)
        # log of each kernel's normaliser (D/2) log(2π h²) and of the 1/N average.
        log_norm = 0.5 * dim * torch.log(2 * math.pi * hs.square()) + math.log(samples.shape[0])
        blocks = []
        for block in flat.split(_BLOCK):
            d2 = (block[:, None, :] - samples).square().sum(-1)  # [m, N]
            per_h = torch.stack([torch.logsumexp(d2 / (-2 * h * h), dim=-1) for h in hs])  # [B, m]
            per_h = (per_h - log_norm[:, None]).clamp(-self.clamp, self.clamp)
            blocks.append(torch.logsumexp(per_h, dim=0) - math.log(len(hs)))
        return torch.cat(blocks).reshape(z.shape[:-1])
