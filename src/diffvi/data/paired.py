"""Paired conditional-restoration tasks for CVDM: ``load_paired("mnist-sr4", "train")``.

Each task gives a condition ``x [N, C_x, H, W]`` and a target ``y₀ [N, C_y, H, W]`` of the same
``H × W``, both in the **model space** of a :class:`~diffvi.diffusion.conditional.CVDM` built
with ``image=False`` (roughly [−1, 1]; nothing is rescaled inside the model), plus
:meth:`PairedData.to_image` turning a (sampled) target back into an image in [0, 1] and
:meth:`PairedData.baseline`, the classical estimate of that image from the condition alone.

Tasks (:data:`PAIRED_TASKS`):

- ``"mnist-sr4"``, ``"fashion-mnist-sr4"``: 4× super-resolution of 28×28 grey images ``hr`` in
  [0, 1]. Low resolution ``lr = avg_pool(hr, 4)`` (7×7, kept in ``extra["low_res"]``);
  ``up = interpolate(lr, 28×28, mode="bicubic", align_corners=False)`` (``upsample="nearest"``
  for nearest neighbour). Condition ``x = 2 up − 1``; target the **residual** in the [−1, 1]
  image space, ``y₀ = (2 hr − 1) − x = 2 (hr − up)`` (SR3's / CVDM's ``diff_inp`` convention;
  :data:`RESIDUAL_SCALE` = 2: on MNIST y₀ has standard deviation about 0.38 and |y₀| stays
  below about 2.1, bicubic overshoot included).
  ``to_image(x, y₀) = clamp((x + y₀ + 1) / 2, 0, 1)``, which is ``hr`` again for the true
  residual (up to float rounding); the baseline is ``up`` itself (``y₀ = 0``). Labels: the
  digit / clothing classes.
- ``"microscopy-sr"``: the simulated BioSR-like pairs of
  :func:`~diffvi.data.microscopy.make_microscopy_dataset` (target = noise-free SIM image over
  its maximum, input = noisy widefield image at half the resolution, both in [0, 1]). The input
  is upsampled to the target size (bicubic by default) and everything else is as for the MNIST
  tasks: ``x = 2 up − 1``, ``y₀ = (2 target − 1) − x``, the residual. This is the official CVDM
  convention for BioSR (``scripts/train.py`` of casus/cvdm trains ``biosr_sr`` with
  ``diff_inp=True``, i.e. ``y − x`` on images mapped to [−1, 1]; their per-image min–max
  normalisation is replaced here by the simulator's own normalisation). Labels: the structure
  class (an index into :data:`~diffvi.data.microscopy.STRUCTURES`); ``extra["photon_level"]``
  ``[N]`` the photon level of each pair, for per-class / per-SNR evaluation.
- ``"phase"``: quantitative phase imaging from two defocused intensities. MNIST grey images
  (``source="fashion-mnist"`` for Fashion-MNIST) are blurred by a Gaussian of ``blur_sigma``
  pixels (default 1: TIE, the classical baseline, needs smooth objects) and min–max normalised
  per image to ``p ∈ [0, 1]`` (as the official ``Phase2ShotDataloader``); the phase is
  ``φ = phase_max · p`` (3.5 rad) and the intensities
  ``I = defocus_intensities(φ) + noise_std · n`` ``[N, 2, H, W]`` (``(−dz, +dz)``, λ = 521 nm,
  0.21 µm pixels, dz = 1 µm; Gaussian camera noise of ``noise_std`` = 0.02 of the in-focus
  intensity by default, seeded per split). Condition
  ``x = (I − 1) / INTENSITY_SCALE`` (a fixed affine map, :data:`INTENSITY_SCALE` = 2: a unit
  amplitude phase object has mean intensity 1; on blurred MNIST ``I − 1`` has standard
  deviation about 0.6 and reaches about 10 at caustics; the official per-image min–max
  rescaling would lose the absolute intensity TIE needs). Target: the phase image **directly**,
  ``y₀ = 2 p − 1`` in [−1, 1] (not a residual). ``to_image(x, y₀) = clamp((y₀ + 1) / 2, 0, 1)``
  = ``φ / phase_max``; the baseline is :func:`~diffvi.data.optics.tie_phase_image` on the
  intensities recovered from ``x``.

Every task is deterministic given ``(split, count, seed)``.

Your own pairs (:data:`PAIRS_TASK` ``"pairs"``, not in :data:`PAIRED_TASKS`: it has no data
of its own; :mod:`diffvi.data.paired_files` reads the files, ``diffvi train cvdm --pairs LOW
HIGH``): the SR convention above for ``C`` channels and an integer scale ``factor`` (a task
option, inferred from the files), ``x = 2 up − 1`` and ``y₀ = (2 high − 1) − x`` with ``up``
the low-resolution image (after ``normalize``: ``"none"``, or ``"minmax"`` per image and
channel) upsampled ``factor`` times; any image size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from diffvi.data.optics import check_positive, defocus_intensities, tie_phase_image

__all__ = [
    "INTENSITY_SCALE",
    "NORMALIZATIONS",
    "PAIRED_TASKS",
    "PAIRS_TASK",
    "RESIDUAL_SCALE",
    "UPSAMPLING",
    "PairedData",
    "PairedTask",
    "available_paired_tasks",
    "load_paired",
    "normalize_images",
    "paired_task",
    "upsample",
    "upsample_window",
]

RESIDUAL_SCALE = 2.0
"""SR targets are ``RESIDUAL_SCALE · (hr − up)``: the residual in the [−1, 1] image space."""
INTENSITY_SCALE = 2.0
"""Phase conditions are ``(I − 1) / INTENSITY_SCALE`` of the defocused intensities ``I``."""
UPSAMPLING = ("bicubic", "nearest")
NORMALIZATIONS = ("none", "minmax")
"""How your own pairs' images are scaled: as read, or min–max per image and channel."""
PAIRS_TASK = "pairs"
"""The task of your own pairs (:mod:`diffvi.data.paired_files`)."""
# Low-resolution pixels around a window that bicubic interpolation reads (4 taps: -1 … +2).
_BICUBIC_REACH = 2
PHASE_SOURCES = ("mnist", "fashion-mnist")
PHASE_NOISE_SPLITS = {"train": 1, "test": 2}
# Default number of simulated microscopy pairs per split (``count=None``).
MICROSCOPY_COUNTS = {"train": 4096, "valid": 512, "test": 512}


@dataclass(eq=False)
class PairedData:
    """``N`` (condition, target) pairs of a task, in model space.

    Attributes:
        task: the task name, e.g. ``"mnist-sr4"``.
        split: the split, e.g. ``"train"``.
        condition: float32 ``[N, C_x, H, W]``, the model's ``x``.
        target: float32 ``[N, C_y, H, W]``, the model's ``y₀``.
        labels: int64 ``[N]`` (class of each item) or ``None``.
        extra: further per-item tensors ``[N, …]`` (``"low_res"``, ``"photon_level"``, …).
        options: the task options it was built with (see :func:`load_paired`).
    """

    task: str
    split: str
    condition: Tensor
    target: Tensor
    labels: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.condition.shape[0]

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> PairedData:
        """The sub-set at ``index`` (an int keeps the batch dimension, ``N = 1``)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        return dataclasses.replace(
            self,
            condition=self.condition[index],
            target=self.target[index],
            labels=None if self.labels is None else self.labels[index],
            extra={k: v[index] for k, v in self.extra.items()},
        )

    @property
    def x_channels(self) -> int:
        return self.condition.shape[1]

    @property
    def y_channels(self) -> int:
        return self.target.shape[1]

    @property
    def image_size(self) -> int:
        """``H`` (= ``W``) of conditions and targets."""
        return self.condition.shape[-1]

    @property
    def residual(self) -> bool:
        """Whether the target is a residual added to the condition (the SR tasks)."""
        return paired_task(self.task).residual

    def to_image(self, condition: Tensor, y0: Tensor) -> Tensor:
        """``condition [B, C_x, H, W]``, ``y0 [B, C_y, H, W]`` (true or sampled target) →
        image ``[B, C_y, H, W]`` in [0, 1] (high-res image or phase / phase_max)."""
        return paired_task(self.task).to_image(condition, y0)

    def baseline(self, condition: Tensor) -> Tensor:
        """The classical estimate of the image from ``condition [B, C_x, H, W]`` alone,
        ``[B, C_y, H, W]`` in [0, 1] (the upsampled input, or TIE for ``"phase"``)."""
        return paired_task(self.task).baseline(condition, self.options)

    def target_bounds(self, condition: Tensor) -> tuple[Tensor, Tensor]:
        """``(low, high)``, each ``[B, C_y, H, W]``: the targets y₀ whose image is in [0, 1]
        given ``condition [B, C_x, H, W]`` (``[−1 − x, 1 − x]`` for residuals, ``[−1, 1]``
        for phase) — what a sampler clips its x̂₀ to."""
        return paired_task(self.task).target_bounds(condition)

    def condition_from(self, measurement: Tensor) -> Tensor:
        """The condition ``[B, C_x, H, W]`` of measurements ``[B, C_m, H / f, W / f]`` (see
        :attr:`PairedTask.from_measurement`), with this data's task options."""
        return paired_task(self.task).from_measurement(measurement, self.options)

    def measurements(self) -> Tensor:
        """What the instrument recorded for each pair: the low-resolution image ``[N, 1, h,
        w]`` in [0, 1] (SR tasks) or the two intensities ``1 + INTENSITY_SCALE · x`` (phase)."""
        if "low_res" in self.extra:
            return self.extra["low_res"]
        return 1 + INTENSITY_SCALE * self.condition

    def images(self) -> Tensor:
        """The ground-truth images ``to_image(condition, target)``, ``[N, C_y, H, W]``."""
        return self.to_image(self.condition, self.target)


@dataclass(frozen=True)
class PairedTask:
    """A registered task: ``build(split, count, seed, options) -> PairedData``.

    Attributes:
        to_image, baseline: see :meth:`PairedData.to_image` and :meth:`PairedData.baseline`.
        target_bounds: ``condition [B, C_x, H, W] -> (low, high)``, the range of targets
            whose image lies in [0, 1] (a sampler's clip; see
            :data:`~diffvi.diffusion.conditional.Bounds`).
        from_measurement: ``(measurement [B, measurement_channels, H / factor, W / factor],
            options) -> condition [B, C_x, H, W]``: what the model is conditioned on, from
            what an instrument records (the low-resolution image in [0, 1]; the two
            defocused intensities).
        measurement_channels, factor: channels of a measurement and how much smaller it is.
        splits: valid splits.
        residual: the target is a residual (``to_image`` adds the condition back).
        options: the task's keyword options and their defaults.
        description: one line.
    """

    build: Callable[[str, int | None, int, dict[str, Any]], PairedData]
    to_image: Callable[[Tensor, Tensor], Tensor]
    baseline: Callable[[Tensor, dict[str, Any]], Tensor]
    target_bounds: Callable[[Tensor], tuple[Tensor, Tensor]]
    from_measurement: Callable[[Tensor, dict[str, Any]], Tensor]
    measurement_channels: int
    factor: int
    splits: tuple[str, ...]
    residual: bool
    options: dict[str, Any]
    description: str = ""


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _check_count(count: int | None, available: int | None = None) -> None:
    if count is None:
        return
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1 or None, got {count!r}")
    if available is not None and count > available:
        raise ValueError(f"count={count} exceeds the {available} items of this split")


def _subset(n: int, count: int | None, seed: int) -> Tensor:
    """Indices of ``count`` items out of ``n``: all in order (``None``) or a seeded subset."""
    _check_count(count, n)
    if count is None:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count]


def _upsample(low: Tensor, size: int | tuple[int, int], mode: str) -> Tensor:
    """``low [N, C, h, w] -> [N, C, size, size]`` (or ``size`` ``(H, W)``) by bicubic
    (``align_corners=False``) or nearest-neighbour interpolation."""
    if mode not in UPSAMPLING:
        raise ValueError(f"upsample must be one of {list(UPSAMPLING)}, got {mode!r}")
    size = (size, size) if isinstance(size, int) else size
    if mode == "nearest":
        return F.interpolate(low, size=size, mode="nearest")
    return F.interpolate(low, size=size, mode="bicubic", align_corners=False)


def upsample(low: Tensor, factor: int, mode: str = "bicubic") -> Tensor:
    """``low [N, C, h, w] -> [N, C, factor · h, factor · w]``, bicubic (``align_corners=False``)
    or nearest-neighbour."""
    return _upsample(low, (low.shape[-2] * factor, low.shape[-1] * factor), mode)


def upsample_window(
    low: Tensor, factor: int, mode: str, top: int, left: int, height: int, width: int
) -> Tensor:
    """Rows ``top … top + height − 1`` and columns ``left … left + width − 1`` of
    ``upsample(low, factor, mode)`` ``[N, C, height, width]``, computed from the
    low-resolution pixels around the window only (two on each side, what bicubic reads; the
    image border clamps as for the whole image), so equal to cropping the whole upsampled image
    at a fraction of its cost. ``top``, ``left``, ``height``, ``width`` are multiples of
    ``factor`` (windows on the low-resolution grid)."""
    if any(v % factor for v in (top, left, height, width)):
        raise ValueError(
            f"window ({top}, {left}, {height}, {width}) must lie on the low-resolution grid "
            f"(multiples of factor {factor})"
        )
    h, w = low.shape[-2:]
    row, col = top // factor, left // factor
    r0, c0 = max(row - _BICUBIC_REACH, 0), max(col - _BICUBIC_REACH, 0)
    r1 = min(row + height // factor + _BICUBIC_REACH, h)
    c1 = min(col + width // factor + _BICUBIC_REACH, w)
    up = upsample(low[..., r0:r1, c0:c1], factor, mode)
    dr, dc = (row - r0) * factor, (col - c0) * factor
    return up[..., dr : dr + height, dc : dc + width]


def normalize_images(images: Tensor, mode: str) -> Tensor:
    """``images [N, C, H, W]`` as they are (``"none"``) or min–max scaled to [0, 1] per image
    and channel (``"minmax"``; a constant channel becomes 0)."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {mode!r}")
    if mode == "none":
        return images
    low = images.amin(dim=(-2, -1), keepdim=True)
    span = images.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (images - low) / span.clamp_min(1e-30), 0.0)


def _residual_pair(up: Tensor, hr: Tensor) -> tuple[Tensor, Tensor]:
    """``(x, y₀) = (2 up − 1, (2 hr − 1) − x)``: condition and residual in [−1, 1] space."""
    condition = 2 * up - 1
    return condition, (2 * hr - 1) - condition


def _residual_to_image(condition: Tensor, y0: Tensor) -> Tensor:
    _check_pair(condition, y0)
    return ((condition + y0 + 1) / 2).clamp(0, 1)


def _residual_baseline(condition: Tensor, options: dict[str, Any]) -> Tensor:
    _check_condition(condition, 1)
    return ((condition + 1) / 2).clamp(0, 1)


def _residual_bounds(condition: Tensor) -> tuple[Tensor, Tensor]:
    # 2 hr − 1 = x + y₀ ∈ [−1, 1]  ⇔  y₀ ∈ [−1 − x, 1 − x].
    _check_condition(condition, 1)
    return -1 - condition, 1 - condition


def _sr_condition(factor: int) -> Callable[[Tensor, dict[str, Any]], Tensor]:
    def from_measurement(low: Tensor, options: dict[str, Any]) -> Tensor:
        _check_condition(low, 1, "measurement")
        return 2 * upsample(low, factor, options["upsample"]) - 1

    return from_measurement


def _check_condition(condition: Tensor, channels: int, name: str = "condition") -> None:
    if condition.ndim != 4 or condition.shape[1] != channels:
        raise ValueError(
            f"{name} must have shape [B, {channels}, H, W], got {list(condition.shape)}"
        )


def _check_pair(condition: Tensor, y0: Tensor) -> None:
    if condition.ndim != 4 or y0.ndim != 4 or condition.shape[0] != y0.shape[0]:
        raise ValueError(
            "condition and y0 must be [B, C, H, W] with the same B, got "
            f"{list(condition.shape)} and {list(y0.shape)}"
        )
    if condition.shape[2:] != y0.shape[2:]:
        raise ValueError(
            f"condition and y0 must have the same H × W, got {list(condition.shape)} and "
            f"{list(y0.shape)}"
        )


def _load_images(name: str, split: str):
    from diffvi.data.registry import load_dataset

    return load_dataset(name, split)


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def _sr4(source: str) -> Callable[[str, int | None, int, dict[str, Any]], PairedData]:
    def build(split: str, count: int | None, seed: int, options: dict[str, Any]) -> PairedData:
        data = _load_images(source, split)
        keep = _subset(len(data), count, seed)
        hr = data.images[keep].float()
        low = F.avg_pool2d(hr, 4)
        condition, target = _residual_pair(_upsample(low, hr.shape[-1], options["upsample"]), hr)
        labels = None if data.labels is None else data.labels[keep]
        return PairedData(
            f"{source}-sr4", split, condition, target, labels, {"low_res": low}, options
        )

    return build


def _microscopy(split: str, count: int | None, seed: int, options: dict[str, Any]) -> PairedData:
    from diffvi.data.microscopy import SPLIT_SEEDS, make_microscopy_dataset

    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; valid splits: {list(SPLIT_SEEDS)}")
    _check_count(count)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    n = MICROSCOPY_COUNTS[split] if count is None else count
    # seed 0 is the split's own seed; other seeds stay distinct across splits (mod 3).
    generator_seed = SPLIT_SEEDS[split] + len(SPLIT_SEEDS) * seed
    sim_options = {k: v for k, v in options.items() if k != "upsample"}
    sim_options["photon_range"] = tuple(sim_options["photon_range"])
    dataset = make_microscopy_dataset(n, split, seed=generator_seed, **sim_options)
    pairs = dataset.pairs
    up = _upsample(pairs.input, pairs.target.shape[-1], options["upsample"])
    condition, target = _residual_pair(up, pairs.target)
    extra = {"low_res": pairs.input, "photon_level": pairs.photon_level}
    return PairedData("microscopy-sr", split, condition, target, pairs.labels, extra, options)


def _gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``[N, 1, H, W]`` with reflecting borders (``sigma`` px)."""
    if sigma == 0:
        return images
    radius = min(math.ceil(3 * sigma), min(images.shape[-2:]) - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    out = F.pad(images, (radius,) * 4, mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


def phase_objects(images: Tensor, blur_sigma: float = 1.0) -> Tensor:
    """Grey images ``[N, 1, H, W]`` → phase images ``p [N, 1, H, W]`` in [0, 1]: Gaussian blur
    of ``blur_sigma`` pixels, then per-image min–max normalisation (constant images give 0)."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape [N, 1, H, W], got {list(images.shape)}")
    if not (math.isfinite(blur_sigma) and blur_sigma >= 0):
        raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma!r}")
    blurred = _gaussian_blur(images.float(), float(blur_sigma))
    low = blurred.amin(dim=(1, 2, 3), keepdim=True)
    span = blurred.amax(dim=(1, 2, 3), keepdim=True) - low
    return torch.where(span > 0, (blurred - low) / span.clamp_min(1e-12), 0.0).clamp(0, 1)


def phase_condition(
    phase: Tensor,
    phase_max: float = 3.5,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Condition of the ``"phase"`` task for phase images ``phase [N, 1, H, W]`` in [0, 1]:
    ``(I − 1) / INTENSITY_SCALE``, ``[N, 2, H, W]``, with ``I = defocus_intensities(φ) +
    noise_std · n`` for ``φ = phase_max · phase``, n ~ N(0, 1) per pixel (``noise_std`` in
    units of the in-focus intensity, 1 for a pure-phase object)."""
    if phase.ndim != 4 or phase.shape[1] != 1 or phase.shape[2] != phase.shape[3]:
        raise ValueError(f"phase must have shape [N, 1, H, H], got {list(phase.shape)}")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
    check_positive(phase_max=phase_max)
    with torch.no_grad():
        intensities = defocus_intensities(float(phase_max) * phase)
    if noise_std > 0:
        noise = torch.randn(intensities.shape, generator=generator, dtype=intensities.dtype)
        intensities = intensities + noise_std * noise
    return (intensities - 1) / INTENSITY_SCALE


def _phase(split: str, count: int | None, seed: int, options: dict[str, Any]) -> PairedData:
    source = options["source"]
    if source not in PHASE_SOURCES:
        raise ValueError(f"source must be one of {list(PHASE_SOURCES)}, got {source!r}")
    phase_max = options["phase_max"]
    if not (isinstance(phase_max, int | float) and math.isfinite(phase_max) and phase_max > 0):
        raise ValueError(f"phase_max must be > 0, got {phase_max!r}")
    data = _load_images(source, split)
    keep = _subset(len(data), count, seed)
    phase = phase_objects(data.images[keep], options["blur_sigma"])
    # Noise seeded by (split, seed): the same pairs every time, different across splits.
    generator = torch.Generator().manual_seed(1_000_003 * seed + PHASE_NOISE_SPLITS[split])
    condition = phase_condition(phase, phase_max, options["noise_std"], generator)
    labels = None if data.labels is None else data.labels[keep]
    return PairedData("phase", split, condition, 2 * phase - 1, labels, {}, options)


def _phase_from_measurement(intensities: Tensor, options: dict[str, Any]) -> Tensor:
    _check_condition(intensities, 2, "measurement")
    return (intensities - 1) / INTENSITY_SCALE


def _phase_to_image(condition: Tensor, y0: Tensor) -> Tensor:
    _check_pair(condition, y0)
    return ((y0 + 1) / 2).clamp(0, 1)


def _phase_bounds(condition: Tensor) -> tuple[Tensor, Tensor]:
    _check_condition(condition, 2)
    ones = condition.new_ones(condition.shape[0], 1, *condition.shape[2:])
    return -ones, ones


def _phase_baseline(condition: Tensor, options: dict[str, Any]) -> Tensor:
    """TIE (:func:`~diffvi.data.optics.tie_phase_image`) on ``I = 1 + INTENSITY_SCALE · x``."""
    _check_condition(condition, 2)
    if condition.shape[2] != condition.shape[3]:
        raise ValueError(f"condition must be square, got {list(condition.shape)}")
    return tie_phase_image(1 + INTENSITY_SCALE * condition, float(options["phase_max"]))


def _pairs_build(split: str, count: int | None, seed: int, options: dict[str, Any]) -> PairedData:
    raise ValueError(
        f"task {PAIRS_TASK!r} holds no data: it trains on your own files (diffvi train cvdm "
        "--pairs LOW HIGH; diffvi.data.paired_files.read_pairs)"
    )


def _check_images(v: Tensor, name: str) -> None:
    if v.ndim != 4:
        raise ValueError(f"{name} must have shape [B, C, H, W], got {list(v.shape)}")


def _pairs_condition(low: Tensor, options: dict[str, Any]) -> Tensor:
    _check_images(low, "measurement")
    factor = options.get("factor")
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"task option factor must be an int >= 1, got {factor!r}")
    low = normalize_images(low, options["normalize"])
    return 2 * upsample(low, factor, options["upsample"]) - 1


def _pairs_baseline(condition: Tensor, options: dict[str, Any]) -> Tensor:
    _check_images(condition, "condition")
    return ((condition + 1) / 2).clamp(0, 1)


def _pairs_bounds(condition: Tensor) -> tuple[Tensor, Tensor]:
    _check_images(condition, "condition")
    return -1 - condition, 1 - condition


PAIRS = PairedTask(
    _pairs_build,
    _residual_to_image,
    _pairs_baseline,
    _pairs_bounds,
    _pairs_condition,
    0,
    0,
    ("train",),
    True,
    {"upsample": "bicubic", "normalize": "none", "factor": None},
    "your own (low, high) image pairs of any size and channels; residual target",
)
"""The task of :data:`PAIRS_TASK`: ``measurement_channels`` and ``factor`` 0 mean the model's
channels and the ``factor`` option."""

_SR_OPTIONS = {"upsample": "bicubic"}
PAIRED_TASKS: dict[str, PairedTask] = {
    "mnist-sr4": PairedTask(
        _sr4("mnist"),
        _residual_to_image,
        _residual_baseline,
        _residual_bounds,
        _sr_condition(4),
        1,
        4,
        ("train", "test"),
        True,
        dict(_SR_OPTIONS),
        "MNIST 28x28 from 4x average-pooled 7x7; residual target",
    ),
    "fashion-mnist-sr4": PairedTask(
        _sr4("fashion-mnist"),
        _residual_to_image,
        _residual_baseline,
        _residual_bounds,
        _sr_condition(4),
        1,
        4,
        ("train", "test"),
        True,
        dict(_SR_OPTIONS),
        "Fashion-MNIST 28x28 from 4x average-pooled 7x7; residual target",
    ),
    "microscopy-sr": PairedTask(
        _microscopy,
        _residual_to_image,
        _residual_baseline,
        _residual_bounds,
        _sr_condition(2),
        1,
        2,
        ("train", "valid", "test"),
        True,
        {
            **_SR_OPTIONS,
            "size": 64,
            "photon_range": (15.0, 600.0),
            "structures": ("ccps", "er", "f-actin", "microtubules"),
            "noise": True,
        },
        "simulated BioSR-like widefield -> SIM (2x), photon level and structure per item",
    ),
    "phase": PairedTask(
        _phase,
        _phase_to_image,
        _phase_baseline,
        _phase_bounds,
        _phase_from_measurement,
        2,
        1,
        ("train", "test"),
        False,
        {"source": "mnist", "blur_sigma": 1.0, "phase_max": 3.5, "noise_std": 0.02},
        "phase images from two defocused intensities (MNIST objects); TIE baseline",
    ),
}
"""The paired tasks by name."""


def available_paired_tasks() -> list[str]:
    """Names of the paired tasks, sorted."""
    return sorted(PAIRED_TASKS)


def paired_task(name: str) -> PairedTask:
    """The registered task ``name``, or :data:`PAIRS` for ``"pairs"`` (your own files).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name == PAIRS_TASK:
        return PAIRS
    if name not in PAIRED_TASKS:
        raise ValueError(f"unknown paired task {name!r}; valid tasks: {available_paired_tasks()}")
    return PAIRED_TASKS[name]


def load_paired(
    name: str, split: str = "train", count: int | None = None, seed: int = 0, **options: Any
) -> PairedData:
    """Build the pairs of task ``name``.

    Args:
        name: one of :data:`PAIRED_TASKS` (``"mnist-sr4"``, ``"fashion-mnist-sr4"``,
            ``"microscopy-sr"``, ``"phase"``).
        split: one of the task's splits (``"train"``/``"test"``; microscopy also ``"valid"``).
        count: number of items ``N``; ``None`` = the whole split (microscopy: 4096 train, 512
            valid / test simulated pairs). For the image tasks a ``count`` picks a seeded
            random subset; for microscopy it is the number of pairs simulated.
        seed: chooses the subset (image tasks) or the simulation (microscopy; ``0`` = the
            split's own seed).
        **options: task options, see :attr:`PairedTask.options`: ``upsample`` (``"bicubic"``
            or ``"nearest"``; SR tasks), ``size``, ``photon_range``, ``structures``, ``noise``
            (microscopy), ``source``, ``blur_sigma``, ``phase_max``, ``noise_std`` (phase).

    Returns:
        :class:`PairedData` with ``condition [N, C_x, H, W]`` and ``target [N, C_y, H, W]``.

    Raises:
        ValueError: unknown task, split or option, or a bad count.
        FileNotFoundError: the MNIST / Fashion-MNIST files are missing (see ``DIFFVI_DATA``).
    """
    task = paired_task(name)
    if split not in task.splits:
        raise ValueError(
            f"unknown split {split!r} for paired task {name!r}; valid splits: {list(task.splits)}"
        )
    unknown = set(options) - set(task.options)
    if unknown:
        raise ValueError(
            f"unknown options {sorted(unknown)} for paired task {name!r}; valid options: "
            f"{sorted(task.options)}"
        )
    return task.build(split, count, seed, {**task.options, **options})
