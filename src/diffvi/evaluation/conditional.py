"""Restorations and uncertainty maps of a conditional model (CVDM or its baselines) on a paired
task (:mod:`diffvi.data.paired`), and how well the uncertainty tells where the errors are.

The paper's uncertainty map (della Maggiora et al. 2024, §4) is the pixel-wise standard
deviation over ``n`` samples (20 by default); the restoration is their pixel-wise mean. Both are
taken here in image space (after :meth:`PairedData.to_image`), where errors are measured.
"""

import torch
from torch import Tensor, nn

from diffvi.data.paired import PairedData, paired_task
from diffvi.evaluation.restoration import restoration_scores
from diffvi.utils.progress import progress

COVERAGE_TOLERANCE = 1e-6
"""Absolute error (image units) that :func:`uncertainty_scores` counts as covered even at std 0."""


def sample_images(
    model: nn.Module,
    condition: Tensor,
    task: str,
    n: int = 20,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    show_progress: bool = False,
    *,
    tile: int | None = None,
    overlap: int = 0,
    tile_batch: int = 16,
) -> Tensor:
    """``n`` restorations per condition as images in [0, 1]: ``condition [B, C_x, H, W]`` →
    ``[n, B, C_y, H, W]``.

    Diffusion models sample with ``steps`` steps (default: the model's T) and clip x̂₀ to the
    task's :meth:`~diffvi.data.paired.PairedTask.target_bounds`; a deterministic model (one
    without ``timesteps``, e.g. the regression UNet) is evaluated once and repeated. At most
    ``batch_size`` chains run at once. ``tile``, ``overlap``, ``tile_batch``: the networks see
    tiles (``model.sample``'s tiling, e.g. :meth:`~diffvi.diffusion.conditional.CVDM.sample`).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    spec = paired_task(task)
    stochastic = hasattr(model, "timesteps")
    draws = n if stochastic else 1
    jobs = [(k, start) for k in range(draws) for start in range(0, condition.shape[0], batch_size)]
    images: list[list[Tensor]] = [[] for _ in range(draws)]
    tiles = {} if tile is None else {"tile": tile, "overlap": overlap, "tile_batch": tile_batch}
    for k, start in progress(jobs, desc="sampling", enable=show_progress):
        x = condition[start : start + batch_size]
        with torch.no_grad():
            y0 = model.sample(x, steps=steps, generator=generator, clip=spec.target_bounds, **tiles)
        images[k].append(spec.to_image(x, y0))
    out = torch.stack([torch.cat(chunks) for chunks in images])
    return out if stochastic else out.expand(n, *out.shape[1:])


def _average_ranks(values: Tensor) -> Tensor:
    """Ranks 0 … N−1 of ``values [N]``, ties given their average rank (float64)."""
    ordered, order = values.sort()
    _, inverse, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0)
    average = (ends - counts + ends - 1).double() / 2
    ranks = torch.empty(values.shape, dtype=torch.float64, device=values.device)
    ranks[order] = average[inverse]
    return ranks


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation of two equally long vectors (ties averaged), a 0-d float64
    tensor; NaN when either is constant."""
    if a.shape != b.shape or a.ndim != 1 or a.numel() < 2:
        raise ValueError(
            f"expected two vectors [N >= 2] of the same shape, got {list(a.shape)} and "
            f"{list(b.shape)}"
        )
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = (ra.pow(2).sum() * rb.pow(2).sum()).sqrt()
    if denominator == 0:
        return torch.tensor(float("nan"), dtype=torch.float64)
    return (ra * rb).sum() / denominator


def uncertainty_scores(mean: Tensor, std: Tensor, reference: Tensor) -> dict[str, Tensor]:
    """How well a predicted standard deviation tells where the mean is wrong, per image ``[N]``
    for ``mean``, ``std``, ``reference`` ``[N, C, H, W]``:

    - ``spearman``: Spearman correlation over the pixels of the image between ``std`` and the
      absolute error ``|mean − reference|`` (NaN for an image with constant std or error);
    - ``coverage``: the fraction of pixels whose reference lies within ``mean ± 2 std`` (0.954
      for a calibrated Gaussian predictive distribution; a float32 rounding error of at most
      :data:`COVERAGE_TOLERANCE` counts as covered, so an exact mean with std 0 covers);
    - ``mean_std``: the mean predicted standard deviation.
    """
    if not (mean.shape == std.shape == reference.shape) or mean.ndim != 4:
        raise ValueError(
            "mean, std and reference must be [N, C, H, W] of one shape, got "
            f"{list(mean.shape)}, {list(std.shape)}, {list(reference.shape)}"
        )
    if bool((std < 0).any()):
        raise ValueError("std must be >= 0")
    error = (mean - reference).abs().flatten(1).double().cpu()
    sd = std.flatten(1).double().cpu()
    return {
        "spearman": torch.stack([spearman(s, e) for s, e in zip(sd, error, strict=True)]),
        "coverage": (error <= 2 * sd + COVERAGE_TOLERANCE).double().mean(1),
        "mean_std": sd.mean(1),
    }


def score_samples(samples: Tensor, data: PairedData, stochastic: bool = True) -> dict[str, Tensor]:
    """Per-item scores ``{name: [N]}`` of restorations ``samples [n, N, C_y, H, W]`` (images in
    [0, 1]) of the pairs ``data``: ``psnr`` and ``ssim`` of their mean, ``psnr_sample`` /
    ``ssim_sample`` of the first alone, ``psnr_baseline`` / ``ssim_baseline`` of the task's
    classical estimate (upsampling or TIE) and, for ``stochastic`` samples with n > 1, the
    :func:`uncertainty_scores` of their spread."""
    if samples.ndim != 5 or samples.shape[1:] != data.target.shape:
        raise ValueError(
            f"samples must have shape [n, {', '.join(map(str, data.target.shape))}], got "
            f"{list(samples.shape)}"
        )
    truth = data.images()
    mean = samples.mean(0)
    out = {
        **restoration_scores(mean, truth),
        **{f"{k}_sample": v for k, v in restoration_scores(samples[0], truth).items()},
        **{
            f"{k}_baseline": v
            for k, v in restoration_scores(data.baseline(data.condition), truth).items()
        },
    }
    if stochastic and samples.shape[0] > 1:
        out.update(uncertainty_scores(mean, samples.std(0, correction=0), truth))
    return out


def evaluate_restorations(
    model: nn.Module,
    data: PairedData,
    n: int = 20,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    show_progress: bool = False,
) -> dict[str, Tensor]:
    """:func:`score_samples` of ``n`` :func:`sample_images` of ``model`` on the pairs ``data``."""
    samples = sample_images(
        model, data.condition, data.task, n, steps, generator, batch_size, show_progress
    )
    return score_samples(samples, data, stochastic=hasattr(model, "timesteps"))
