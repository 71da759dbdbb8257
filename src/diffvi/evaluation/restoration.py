"""Quality of restored images: PSNR and SSIM (torchmetrics), a perceptual distance in the
feature space of our classifier (LPIPS weights cannot be downloaded here), and the diversity of
restorations across seeds. Images are ``[N, C, H, W]`` in [0, 1]; every metric is per image.
PSNR and SSIM take another ``data_range`` (e.g. 255 for 8-bit values); the reference images
must lie in [0, data_range] (checked once per call, unless :class:`diffvi.validation` is off):
scores of images on another scale than the range assumed are meaningless (8-bit images scored
with data_range 1 give a PSNR of about −43 dB). The restorations are not checked: a solver's
output may stray outside the range, and is scored as it is.

Used by the inverse-problem solvers (:mod:`diffvi.inverse`, which re-exports these names) and by
the conditional models' evaluation (:mod:`diffvi.evaluation.conditional`)."""

import math

import torch
from torch import Tensor

from diffvi.evaluation.sample_quality import (
    FeatureClassifier,
    classifier_features,
    classifier_fid,
)
from diffvi.utils.validation import check_finite_in


def _check_pair(restored: Tensor, reference: Tensor) -> None:
    if restored.ndim != 4 or restored.shape != reference.shape:
        raise ValueError(
            f"expected two image batches [N, C, H, W] of the same shape, got "
            f"{list(restored.shape)} and {list(reference.shape)}"
        )


def _check_range(reference: Tensor, data_range: float | None) -> None:
    """The reference images must be finite and lie in [0, data_range] (``None``: [0, 1], the
    only range accepted)."""
    if data_range is not None and not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    hint = "scale the images into [0, 1] (8-bit values: divide by 255)"
    if data_range is not None:
        hint = f"{hint} or pass the images' own data_range (255 for 8-bit values)"
    high = 1.0 if data_range is None else float(data_range)
    check_finite_in(reference, (0.0, high), "the reference images", hint)


def psnr(restored: Tensor, reference: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR in dB per image ``[N]`` (``inf`` for an exact restoration): 10 log10(data_range² /
    MSE). ``reference`` must lie in [0, ``data_range``] (1 for images in [0, 1], 255 for 8-bit
    values); ValueError otherwise."""
    _check_pair(restored, reference)
    _check_range(reference, data_range)
    from torchmetrics.functional.image import peak_signal_noise_ratio  # ~1 s: on first use

    return peak_signal_noise_ratio(
        restored, reference, data_range=float(data_range), reduction="none", dim=(1, 2, 3)
    )


def ssim(
    restored: Tensor, reference: Tensor, kernel_size: int = 7, data_range: float = 1.0
) -> Tensor:
    """SSIM per image ``[N]`` (Gaussian window σ = 1.5, ``kernel_size`` taps; 7 suits 28×28).
    ``reference`` must lie in [0, ``data_range``]; ValueError otherwise."""
    _check_pair(restored, reference)
    _check_range(reference, data_range)
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        restored, reference, data_range=float(data_range), kernel_size=kernel_size,
        reduction="none",
    )  # fmt: skip


def feature_distance(classifier: FeatureClassifier, restored: Tensor, reference: Tensor) -> Tensor:
    """Perceptual distance per image ``[N]``: the L2 distance between the classifier's
    unit-normalised features of the two images (0 for identical images, at most 2). The
    classifier reads images in [0, 1]: ``reference`` must lie there (ValueError otherwise)."""
    _check_pair(restored, reference)
    _check_range(reference, None)
    a = torch.nn.functional.normalize(classifier_features(classifier, restored), dim=1)
    b = torch.nn.functional.normalize(classifier_features(classifier, reference), dim=1)
    return (a - b).norm(dim=1)


def diversity(restorations: Tensor) -> Tensor:
    """Mean per-pixel standard deviation across seeds: ``[S, N, C, H, W] -> [N]`` (0 when
    every seed gives the same restoration)."""
    if restorations.ndim != 5 or restorations.shape[0] < 2:
        raise ValueError(
            f"expected restorations [S >= 2, N, C, H, W], got {list(restorations.shape)}"
        )
    return restorations.std(dim=0).flatten(1).mean(1)


# PSNR of an exact restoration is infinite; summaries cap it here.
PSNR_CAP = 100.0


def restoration_scores(
    restored: Tensor, reference: Tensor, classifier: FeatureClassifier | None = None
) -> dict[str, Tensor]:
    """Per-image scores ``{name: [N]}`` of ``restored`` against ``reference`` (both
    ``[N, C, H, W]`` in [0, 1], any device): ``psnr`` (dB, capped at :data:`PSNR_CAP`),
    ``ssim`` and, with a classifier, ``perceptual`` (:func:`feature_distance`)."""
    restored, reference = restored.detach().float().cpu(), reference.detach().float().cpu()
    scores = {
        "psnr": psnr(restored, reference).clamp(max=PSNR_CAP),
        "ssim": ssim(restored, reference),
    }
    if classifier is not None:
        scores["perceptual"] = feature_distance(classifier, restored, reference)
    return scores


def summarise_restorations(
    restored: Tensor,
    reference: Tensor,
    classifier: FeatureClassifier | None = None,
    scores: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """Means and standard errors of :func:`restoration_scores` (``psnr``, ``psnr_sem``, …)
    and, with a classifier and at least two images, ``fid``: the classifier-FID between the
    restored set and the reference set. ``scores``: the :func:`restoration_scores` of the same
    images when already computed (they are not computed again)."""
    if scores is None:
        scores = restoration_scores(restored, reference, classifier)
    count = restored.shape[0]
    summary: dict[str, float] = {"images": float(count)}
    for name, values in scores.items():
        summary[name] = values.mean().item()
        summary[f"{name}_sem"] = values.std().item() / math.sqrt(count) if count > 1 else 0.0
    if classifier is not None and count > 1:
        summary["fid"] = classifier_fid(
            classifier, restored.detach().float().cpu(), reference.detach().float().cpu()
        )
    return summary
