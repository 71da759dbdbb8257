"""The divergence guard: training that blew up stops before its weights are saved.

A run diverges when the optimiser's steps grow the weights until the model is far worse than
even an untrained one (a learning rate far too high; Adam moves every weight by about ``lr``
per step whatever the gradient's size). Score-function estimators (NVIL, VIMCO, RWS) then often
keep finite losses, so a NaN check alone misses it: ``train sbn --lr 1e6`` ran to the end with
a bound of −2e8 nats per image. Two symptoms are watched:

**The training figure** ``x_t`` (the negative bound per item where the family logs a bound,
since a score-function surrogate is no bound; else the loss), tracked on the device with no
host sync per step (:class:`DivergenceGuard`):

- ``s_t``, its exponential moving average at rate ``rate`` (0.1: about the last ten steps), so
  that a single bad batch counts a tenth;
- ``best_t = min_{u ≤ t} s_u``, the best smoothed figure so far;
- ``scale = max(|x_0|, |best_t|, 1)``: the size of the figure of the weights this session
  started from (untrained, or as resumed) or of the best one, whichever is larger, and at least
  one unit (a nat per item where the figure is a bound).

Training has diverged once ``s_t − best_t > factor · scale`` (``factor`` = 100). This is scale
aware: it measures the rise above the best in units of the figure's own size, so it holds for
figures of any sign and size (a VAE-DGP's or CVDM's negative losses, a diffusion loss of 0.03,
an SBN's 30 nats, a VAE's 500). It cannot fire on a healthy run: falling fast early only lowers
``best`` and ``s`` together; losses with noise stay within a few times their scale of the best;
even returning all the way to the untrained model's figure rises by at most ``2·scale``, and a
rise of 100 times that is what a blow-up looks like (``--lr 1e6`` on an SBN: 10⁶ times the
untrained figure after one step; ``--lr 100``: 300 times). The first step where it happened is
latched with the figures it had, so the message can name them.

**The weights** (checked with a host sync, at the checkpoint points only,
:func:`weight_trouble`): a weight that became NaN or infinite (say by the update after the last
loss was computed), or one that grew beyond ``10⁴`` times the largest weight the session
started with (at least 1). The weights of these families are O(1)–O(100) by construction
(logits, log-scales, inducing inputs in data units); growing the largest of them ten
thousandfold takes steps that compound like a blow-up, while one Adam step of ``--lr 1e6``
gets there at once.
"""

import math

import torch
from torch import Tensor, nn

# The smoothed figure's rise above its best, in units of the figure's scale, that is divergence.
RISE_FACTOR = 100.0
# The EMA rate of the smoothed figure.
SMOOTHING = 0.1
# The growth of the largest weight, over the largest initial one (at least 1), that is divergence.
WEIGHT_GROWTH = 1e4


class DivergenceGuard(nn.Module):
    """Device-side record of the training figure (see the module docstring): call
    :meth:`update` every step (no host sync), :meth:`diverged` where a sync is fine.

    Its buffers are not persistent: a checkpoint does not hold them and a resumed run starts a
    new record from its first step.
    """

    def __init__(self, factor: float = RISE_FACTOR, rate: float = SMOOTHING) -> None:
        super().__init__()
        if not (factor > 0 and 0 < rate <= 1):
            raise ValueError(f"need factor > 0 and rate in (0, 1], got {factor}, {rate}")
        self.factor, self.rate = factor, rate
        for name in ("smoothed", "best", "scale", "diverged_value", "diverged_best"):
            self.register_buffer(name, torch.zeros(()), persistent=False)
        self.register_buffer("count", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("diverged_at", torch.full((), -1, dtype=torch.long), persistent=False)

    @torch.no_grad()
    def update(self, figure: Tensor, step: int) -> None:
        """Record the scalar ``figure`` of training step ``step`` (lower is better; NaN and
        infinite figures are skipped: the NaN check reports them)."""
        figure = figure.detach()
        finite = torch.isfinite(figure)
        # A finite float64 figure beyond float32's range is enormous, not skipped.
        x = figure.float().clamp(-3e38, 3e38).to(self.smoothed)
        started = self.count > 0
        smoothed = torch.where(started, self.smoothed + self.rate * (x - self.smoothed), x)
        best = torch.where(started, torch.minimum(self.best, smoothed), smoothed)
        scale = torch.where(started, self.scale, x.abs().clamp_min(1.0))
        self.smoothed.copy_(torch.where(finite, smoothed, self.smoothed))
        self.best.copy_(torch.where(finite, best, self.best))
        self.scale.copy_(torch.where(finite, scale, self.scale))
        self.count.add_(finite.long())
        margin = self.factor * torch.maximum(self.scale, self.best.abs())
        new = finite & (self.smoothed - self.best > margin) & (self.diverged_at < 0)
        self.diverged_at.copy_(torch.where(new, step, self.diverged_at))
        self.diverged_value.copy_(torch.where(new, self.smoothed, self.diverged_value))
        self.diverged_best.copy_(torch.where(new, self.best, self.diverged_best))

    def diverged(self) -> tuple[int, float, float] | None:
        """``(step, smoothed figure, best smoothed figure)`` when divergence was first seen,
        else ``None`` (one host sync)."""
        step = int(self.diverged_at)
        if step < 0:
            return None
        return step, float(self.diverged_value), float(self.diverged_best)


@torch.no_grad()
def largest_weight(module: nn.Module) -> float:
    """The largest absolute value of ``module``'s floating-point parameters (NaN where one is
    NaN; 0 without any)."""
    values = [
        p.detach().abs().amax().float()
        for p in module.parameters()
        if p.numel() and p.is_floating_point()
    ]
    if not values:
        return 0.0
    return float(torch.stack(values).amax())


def weight_trouble(largest: float, initial: float | None) -> str | None:
    """What is wrong with weights whose largest absolute value is ``largest``, given the
    ``initial`` one of the session (``None``: unknown; only non-finite weights count); else
    ``None``."""
    if not math.isfinite(largest):
        return "a weight became NaN or infinite"
    if initial is not None:
        limit = WEIGHT_GROWTH * max(initial, 1.0)
        if largest > limit:
            return (
                f"the largest weight grew to {largest:.3g}, from {max(initial, 1.0):.3g} at the "
                "start"
            )
    return None
