"""The restoration workflow: simulate measurements of clean images (or take measured ones),
restore them batch by batch with any :class:`~diffvi.inverse.solvers.base.Reconstructor`, and
score the restorations against the references.

>>> from diffvi import load
>>> from diffvi.inverse import build_operator, restore
>>> from diffvi.inverse.solvers import build_solver
>>> prior = load("mnist").model                                        # doctest: +SKIP
>>> operator = build_operator("sr4", (1, 28, 28))                        # doctest: +SKIP
>>> method = build_solver("red-diff", steps=100).bind(prior, noise_std=0.05)  # doctest: +SKIP
>>> result = restore(method, operator, reference=images, noise_std=0.05)  # doctest: +SKIP
>>> result.summary["psnr"], result.scores["ssim"]  # mean PSNR; SSIM per image  # doctest: +SKIP

Writing the restorations and reports to files is :mod:`diffvi.inverse.report`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from diffvi.evaluation.conditional import uncertainty_scores
from diffvi.evaluation.restoration import restoration_scores, summarise_restorations
from diffvi.evaluation.sample_quality import FeatureClassifier
from diffvi.inverse.operators import Operator
from diffvi.inverse.solvers.base import Reconstructor

__all__ = [
    "NOISE_UNITS",
    "RestoreResult",
    "noise_std_in_unit_range",
    "restore",
    "simulate_measurement",
]

NOISE_UNITS: dict[str, float] = {"unit": 1.0, "symmetric": 0.5}
"""The units σ_y may be stated in, as the factor to [0, 1] units: ``unit`` ([0, 1] images, as
here; also the σ_y of the DDRM and RED-diff code, which doubles it for its [−1, 1] images) and
``symmetric`` ([−1, 1] images, as DPS states σ_y: its 0.05 is 0.025 here)."""


def noise_std_in_unit_range(noise_std: float, units: str = "unit") -> float:
    """σ_y stated in ``units`` (a key of :data:`NOISE_UNITS`) as σ_y in [0, 1] units, the
    units of :func:`simulate_measurement` and the solvers. The one place where units change."""
    if units not in NOISE_UNITS:
        raise ValueError(f"expected noise units in {sorted(NOISE_UNITS)}, got {units!r}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    return float(noise_std) * NOISE_UNITS[units]


def simulate_measurement(
    x: Tensor,
    operator: Operator,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``y = A(x) + σ_y·n``, ``n ~ N(0, I)``: a measurement ``[B, *operator.output_shape]`` of
    images ``x [B, C, H, W]`` (no gradient).

    The noise is drawn on ``generator``'s device (the CPU without one, from torch's global
    generator) in ``y``'s dtype, then moved to ``y``'s device, so a CPU generator gives the same
    measurement on any device. It is drawn even when ``noise_std`` is 0, so the generator
    advances the same way for every σ_y.
    """
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    with torch.no_grad():
        y = operator(x)
    device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=device)
    return y + noise_std * noise.to(y.device)


@dataclass
class RestoreResult:
    """What :func:`restore` returns; tensors are on the CPU, ``N`` items.

    Attributes:
        restored: restorations ``[N, C, H, W]`` (float32, [0, 1]).
        measurement: the measurements ``y [N, …]`` they were restored from.
        reference: the clean images ``[N, C, H, W]``, or ``None`` when not known.
        baseline: the reconstructor's classical estimate ``[N, C, H, W]``
            (:meth:`~diffvi.inverse.solvers.base.Reconstructor.baseline`: the measurement as
            images for the solvers, the upsampled input or TIE for CVDM), or ``None``.
        samples: the draws ``[S, N, C, H, W]`` of a sampling reconstructor (CVDM), else
            ``None``.
        nfe: denoiser evaluations per item.
        seconds: time spent in the reconstructor (all batches, without scoring).
        peak_memory: the largest batch's peak in bytes (``None`` where not measured).
        scores: per-item scores ``{name: [N]}`` against ``reference`` (empty without one):
            ``psnr``, ``ssim`` (and ``perceptual`` with a classifier) of ``restored``; with
            ``samples``, ``psnr_sample``/``ssim_sample`` of the first draw; with a
            ``baseline``, ``psnr_baseline``/``ssim_baseline``; for stochastic samples
            (S > 1), ``spearman``, ``coverage`` and ``mean_std`` of their spread
            (:func:`~diffvi.evaluation.conditional.uncertainty_scores`).
        summary: :func:`~diffvi.evaluation.restoration.summarise_restorations` of
            ``restored`` (means, standard errors, ``images`` and, with a classifier,
            ``fid``), or ``None`` without a reference.
        baseline_summary: the same for ``baseline``, or ``None``.
    """

    restored: Tensor
    measurement: Tensor
    reference: Tensor | None
    baseline: Tensor | None
    samples: Tensor | None
    nfe: int
    seconds: float
    peak_memory: int | None
    scores: dict[str, Tensor]
    summary: dict[str, float] | None
    baseline_summary: dict[str, float] | None

    def __len__(self) -> int:
        return self.restored.shape[0]

    @property
    def std(self) -> Tensor | None:
        """Pixel-wise standard deviation of :attr:`samples` ``[N, C, H, W]`` (the uncertainty
        map), or ``None``."""
        return None if self.samples is None else self.samples.std(0, correction=0)


def restore(
    reconstructor: Reconstructor,
    operator: Operator | None = None,
    *,
    reference: Tensor | None = None,
    measurement: Tensor | None = None,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    classifier: FeatureClassifier | None = None,
) -> RestoreResult:
    """Restore ``N`` items, ``batch_size`` at a time, and score them.

    Either ``measurement`` is given (``y [N, …]``, e.g. read from files; ``reference``, when
    known, is scored against), or it is simulated from ``reference`` batch by batch with
    :func:`simulate_measurement` (``operator``, ``noise_std``, ``generator``).

    Args:
        reconstructor: the method, e.g. ``build_solver(name).bind(prior, noise_std)`` or a
            :class:`~diffvi.inverse.solvers.cvdm.CVDMReconstructor`.
        operator: the forward model A (``None`` for a model trained on one task, CVDM).
        reference: clean images ``[N, C, H, W]`` in [0, 1].
        measurement: measurements ``[N, …]``.
        noise_std: σ_y of the simulated measurement noise ([0, 1] units).
        generator: random numbers of the simulated noise (see :func:`simulate_measurement`).
        batch_size: items restored at once.
        device: where the batches are restored (default: where the inputs are).
        classifier: also score a perceptual distance and classifier-FID with this feature
            classifier (:func:`~diffvi.evaluation.load_or_train_feature_classifier`).

    Raises:
        ValueError: neither or mismatched inputs, or a simulation without an operator.
    """
    if reference is None and measurement is None:
        raise ValueError("give the clean images (reference) or the measurements to restore")
    if measurement is None and operator is None:
        raise ValueError("simulating measurements of the reference needs an operator")
    if reference is not None and measurement is not None and len(reference) != len(measurement):
        raise ValueError(
            f"expected as many references as measurements, got {len(reference)} and "
            f"{len(measurement)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count = len(measurement if measurement is not None else reference)
    ys, xs, draws = [], [], []
    seconds, nfe, peak, stochastic = 0.0, 0, None, True
    for first in range(0, count, batch_size):
        if measurement is None:
            x = reference[first : first + batch_size].to(device)
            y = simulate_measurement(x, operator, noise_std, generator)
        else:
            y = measurement[first : first + batch_size].to(device)
        result = reconstructor(y, operator)
        ys.append(y.cpu())
        xs.append(result.x.float().cpu())
        if result.samples is not None:
            draws.append(result.samples.float().cpu())
            stochastic = result.stochastic
        seconds += result.seconds
        nfe = result.nfe
        if result.peak_memory is not None:
            peak = max(peak or 0, result.peak_memory)
    y_all, restored = torch.cat(ys), torch.cat(xs)
    samples = torch.cat(draws, dim=1) if draws else None
    baseline = reconstructor.baseline(y_all, operator)
    if baseline is not None:
        baseline = baseline.float().cpu()
    scores: dict[str, Tensor] = {}
    summary = baseline_summary = None
    if reference is not None:
        reference = reference.detach().float().cpu()
        scores = restoration_scores(restored, reference, classifier)
        summary = summarise_restorations(restored, reference, classifier, scores=scores)
        if samples is not None:
            first_draw = restoration_scores(samples[0], reference)
            scores.update({f"{k}_sample": v for k, v in first_draw.items()})
        if baseline is not None:
            baseline_scores = restoration_scores(baseline, reference)
            baseline_summary = summarise_restorations(baseline, reference, scores=baseline_scores)
            scores.update({f"{k}_baseline": v for k, v in baseline_scores.items()})
        if samples is not None and stochastic and samples.shape[0] > 1:
            scores.update(uncertainty_scores(restored, samples.std(0, correction=0), reference))
    return RestoreResult(
        restored, y_all, reference, baseline, samples, nfe, seconds, peak, scores, summary,
        baseline_summary,
    )  # fmt: skip
