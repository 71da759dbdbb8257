"""RED-diff's default λ and learning rate as functions of the noise level σ_y and the operator.

The paper's objective weighs the data term by 1/σ_v² (eq. 9); the official code
(NVlabs/RED-diff ``algos/reddiff.py``) drops that factor and minimises
``obs_weight · mean(e²)/2 + grad_term_weight · w(t) · mean(⟨sg(ε̂ − ε), x₀⟩)``, ``sigma_y``
unused in the loss. Multiplying the paper's objective by σ_v² gives the code's, so

    λ_code = λ_paper · σ_v²   (up to the M/D of the two means),

and a λ tuned at one σ_y is the wrong one at another: with a fixed λ the data term wins as σ_y
grows and the restoration keeps the measurement noise (the official scripts raise
``grad_term_weight`` from 0.25 to 1.0 for their noisy, σ_y = 0.1, inpainting by hand).

:func:`red_diff_defaults` makes that dependence a rule, by operator class
(:func:`operator_class`):

    λ(σ_y) = λ₀ + κ · σ_y^p,        lr(σ_y) = lr₀ · exp(−σ_y / s),

σ_y in the units of ``y`` ([0, 1] images). The constants (:data:`RULES`) were fitted by
``benchmarks/red_diff_defaults.py``: a grid of λ × lr at 100 steps on 16 held-out MNIST and
Fashion-MNIST test images per task and σ_y, the rule's parameters chosen to minimise the
root-mean-square PSNR gap to each cell's best grid point over the class's cells (see
docs/methods.md and docs/results.md for the fit and its check on the benchmark's scored
images). Operators outside the four classes (the identity, phase retrieval, any other) take
the rule fitted on every task together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from diffvi.inverse.operators import (
    AveragePoolSR,
    BicubicSR,
    Blur,
    Denoising,
    Inpainting,
    Operator,
    SeparableBlur,
)

__all__ = ["OPERATOR_CLASSES", "RULES", "DefaultsRule", "operator_class", "red_diff_defaults"]

OPERATOR_CLASSES = ("box-inpainting", "inpainting", "super-resolution", "deblurring", "other")
"""The operator classes with a rule of their own (``other``: fitted on every task)."""


@dataclass(frozen=True)
class DefaultsRule:
    """``λ(σ) = reg_weight0 + reg_weight_slope · σ^power``, ``lr(σ) = lr0 · exp(−σ/lr_scale)``
    (``lr_scale = inf``: a constant lr)."""

    reg_weight0: float
    reg_weight_slope: float
    power: float
    lr0: float
    lr_scale: float = math.inf

    def reg_weight(self, noise_std: float) -> float:
        """λ at σ_y = ``noise_std``."""
        return self.reg_weight0 + self.reg_weight_slope * noise_std**self.power

    def lr(self, noise_std: float) -> float:
        """Adam's learning rate at σ_y = ``noise_std``."""
        return self.lr0 * math.exp(-noise_std / self.lr_scale)


# Fitted by benchmarks/red_diff_defaults.py (grid λ 0.01…3 × lr 0.02…0.25, 100 NFE, 16 held-out
# MNIST and Fashion-MNIST test images per task and σ_y ∈ {0, 0.05, 0.1, 0.2}): the smallest
# root-mean-square gap to each cell's best grid point over the class's cells (docs/results.md).
# λ₀ = 0.01 sits at the grid's lower edge.
RULES: dict[str, DefaultsRule] = {
    "box-inpainting": DefaultsRule(0.0313, 56.2, 2, 0.0247),
    "inpainting": DefaultsRule(0.01, 0.0, 2, 0.108),
    "super-resolution": DefaultsRule(0.0979, 56.2, 2, 0.164, 0.1),
    "deblurring": DefaultsRule(0.01, 5.62, 2, 0.164, 0.1),
    "other": DefaultsRule(0.0177, 17.8, 2, 0.164, 0.1),
}
"""The fitted rule of each operator class."""


def operator_class(operator: Operator) -> str:
    """The class of :data:`OPERATOR_CLASSES` whose rule ``operator`` takes: for a mask
    (:class:`~diffvi.inverse.operators.Inpainting`, the identity excluded) ``box-inpainting``
    when its hidden pixels form one rectangle (``inpaint-box``, ``inpaint-half``: a region the
    prior must fill alone), else ``inpainting`` (scattered masks, ``inpaint-random``);
    ``super-resolution`` for average-pool and bicubic down-sampling, ``deblurring`` for the
    blurs, ``other`` for every other operator."""
    if isinstance(operator, Inpainting) and not isinstance(operator, Denoising):
        return "box-inpainting" if _one_rectangle(operator.mask == 0) else "inpainting"
    if isinstance(operator, AveragePoolSR | BicubicSR):
        return "super-resolution"
    if isinstance(operator, Blur | SeparableBlur):
        return "deblurring"
    return "other"


def _one_rectangle(hidden: Tensor) -> bool:
    """Whether the True entries of ``hidden [C, H, W]`` fill one rectangle (the same in every
    channel) and nothing else."""
    if not bool(hidden.any()):
        return False
    rows = hidden.any(dim=2).any(dim=0).nonzero()
    cols = hidden.any(dim=1).any(dim=0).nonzero()
    box = hidden[:, int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1]
    return bool(box.all())


def red_diff_defaults(operator: Operator, noise_std: float) -> dict[str, float]:
    """RED-diff's default ``{"lr": ..., "reg_weight": ...}`` for ``operator`` at σ_y =
    ``noise_std`` (units of ``y``: [0, 1] for images), from :data:`RULES`."""
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    rule = RULES[operator_class(operator)]
    return {"lr": rule.lr(noise_std), "reg_weight": rule.reg_weight(noise_std)}
