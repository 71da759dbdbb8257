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
#: B·N kernel evaluations per latent (fwd + bwd of 128 latents on one core: ~0.03 s at 10,000,
#: ~0.007 s at 2,000; 0.14 and 0.03 s before issue 23), so training defaults to 2,000 (200 per
#: partition).
DEFAULT_CENTRES = 2_000


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
        scales = [-0.5 / (h * h) for h in hs.tolist()]
        per_h = torch.stack(
            [_KernelLogSums.apply(flat, part, scales) for part in centres.unbind(0)], dim=-1
        )  # [B, m, L]
        per_h = per_h - log_norm[:, None, None]
        return torch.logsumexp(per_h, dim=0).reshape(*z.shape[:-1], self.num_partitions)

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
        scales = [-0.5 / (h * h) for h in hs.tolist()]
        per_h = _KernelLogSums.apply(flat, samples, scales)  # [B, m]
        per_h = (per_h - log_norm[:, None]).clamp(-self.clamp, self.clamp)
        return (torch.logsumexp(per_h, dim=0) - math.log(len(hs))).reshape(z.shape[:-1])


# Elements of a [rows, N] block of _KernelLogSums (1 MiB in float32: it stays in L2).
_SCORE_BLOCK = 1 << 18


class _KernelLogSums(torch.autograd.Function):
    """log Σ_i exp(a_b |z_m − c_i|²) for each scale a_b < 0 and row z_m: ``[B, m]``, with its
    gradient in z, Σ_i softmax_i · 2 a_b (z_m − c_i) (autograd's, taken in the forward pass).

    The numbers of ``torch.logsumexp(a_b · d², -1)`` under autograd (to rounding; the gradient
    more accurately in float32), at a fraction of the cost: the differences and d² are built
    once for all bandwidths ([D, m, N], no [m, N, D] tensor), each bandwidth's weights are
    exponentiated once (autograd's logsumexp exponentiates again in its backward) and reduced
    against the differences right away, and exponents below the smallest normal float's log
    are raised to it: exp of such an argument takes a slow path (~12× per element on this CPU,
    even with denormals flushed) and its value, < 1.2e-38 beside the nearest sample's
    exp(0) = 1, does not change the sum in float32 or float64.
    """

    @staticmethod
    def forward(ctx, z: Tensor, samples: Tensor, scales: list[float]) -> Tensor:
        floor = math.log(torch.finfo(z.dtype).tiny) + 0.5
        columns = samples.t().contiguous()  # [D, N]
        out = z.new_empty(len(scales), z.shape[0])
        slopes = z.new_empty(len(scales), *z.shape)  # Σ_i softmax_i (z − c_i), per bandwidth
        size = max(1, _SCORE_BLOCK // samples.shape[0])  # rows per block
        for lo in range(0, z.shape[0], size):
            rows = z[lo : lo + size]
            diffs = rows.t()[:, :, None] - columns[:, None, :]  # [D, m, N]
            d2 = diffs[0].square()
            for j in range(1, z.shape[1]):
                d2.addcmul_(diffs[j], diffs[j])
            d2_min = d2.amin(-1, keepdim=True)
            shifted = d2.sub_(d2_min)  # ≥ 0, 0 at the nearest sample
            weights, product = torch.empty_like(shifted), torch.empty_like(shifted)
            for b, a in enumerate(scales):
                torch.mul(shifted, a, out=weights).clamp_(min=floor).exp_()
                total = weights.sum(-1)  # ≥ 1
                out[b, lo : lo + size] = total.log() + a * d2_min[:, 0]
                if ctx.needs_input_grad[0]:
                    for j in range(z.shape[1]):
                        moment = torch.mul(weights, diffs[j], out=product).sum(-1)
                        slopes[b, lo : lo + size, j] = moment / total
        ctx.save_for_backward(slopes)
        ctx.scales = scales
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (slopes,) = ctx.saved_tensors
        scales = torch.tensor(ctx.scales, dtype=slopes.dtype, device=slopes.device)
        return ((2 * scales[:, None, None] * grad[..., None]) * slopes).sum(0), None, None
