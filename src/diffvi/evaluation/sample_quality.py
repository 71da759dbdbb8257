"""Sample quality for image diffusion models: a classifier FID, its real-vs-real floor, and
nearest-training-neighbour distances.

The FID here is *not* the Inception FID: the features are the 128-unit penultimate layer of a
small CNN (:class:`FeatureClassifier`) trained on the same data set (MNIST, Fashion-MNIST).
Numbers are only comparable between runs that use the same classifier weights (dataset,
epochs, seed) and the same sample size, so report :func:`real_vs_real_floor` beside them:
it is what a perfect generator would score at that sample size.

:func:`nearest_neighbour_summary` checks that samples are not copies of training images: a
copying generator has sample-to-train distances near 0, far below the distances of held-out
real images to the training set.

Images everywhere are float tensors ``[N, C, H, W]`` with values in [0, 1].
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from diffvi.utils.io import atomic_write, write_json
from diffvi.utils.progress import progress as progress_bar

__all__ = [
    "FeatureClassifier",
    "classifier_accuracy",
    "classifier_features",
    "classifier_fid",
    "default_classifier_cache_dir",
    "frechet_distance",
    "load_or_train_feature_classifier",
    "nearest_neighbour_distances",
    "nearest_neighbour_summary",
    "nearest_neighbours",
    "real_vs_real_floor",
    "train_feature_classifier",
]

FEATURE_DIM = 128
_POOLED = 7  # spatial size after adaptive pooling: identity for 28x28, any H, W >= 4 works


class FeatureClassifier(nn.Module):
    """A small CNN classifier whose 128-unit penultimate layer is the FID feature space.

    conv3x3(32) - ReLU - maxpool2 - conv3x3(64) - ReLU - maxpool2 - adaptive avg-pool to 7x7 -
    linear(128) - ReLU (the features) - linear(num_classes) (the logits). The adaptive pooling
    makes it accept any ``H, W >= 4`` (28x28 MNIST, 32x32 padded MNIST, 8x8 digits).

    Args:
        num_classes: number of output classes.
        in_channels: image channels (1 for grayscale).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.info: dict[str, object] = {}  # cache metadata, set by load_or_train_...
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc = nn.Linear(64 * _POOLED * _POOLED, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations: ``x [N, C, H, W]`` in [0, 1] -> ``[N, 128]``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images [N, {self.in_channels}, H, W], got shape {tuple(x.shape)}"
            )
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.adaptive_avg_pool2d(h, _POOLED).flatten(1)
        return F.relu(self.fc(h))

    def forward(self, x: Tensor) -> Tensor:
        """Logits: ``x [N, C, H, W]`` -> ``[N, num_classes]``."""
        return self.head(self.features(x))


def _check_images_labels(images: Tensor, labels: Tensor) -> None:
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"expected float images [N, C, H, W], got {images.dtype} of shape {tuple(images.shape)}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"expected labels [{images.shape[0]}], got shape {tuple(labels.shape)}")


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_feature_classifier(
    images: Tensor,
    labels: Tensor,
    num_classes: int = 10,
    epochs: int = 2,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
    lr: float = 1e-3,
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` with Adam and cross-entropy.

    Deterministic given ``seed`` (on a fixed device and thread count): the weights are
    initialised under ``torch.manual_seed(seed)`` inside a forked RNG (the global RNG is left
    untouched) and batches are shuffled with a ``torch.Generator`` seeded with ``seed``.

    Args:
        images: float ``[N, C, H, W]`` in [0, 1]; the model is trained on their device.
        labels: int64 ``[N]`` in ``[0, num_classes)``.
        num_classes: number of classes.
        epochs: passes over the data.
        batch_size: mini-batch size.
        seed: initialisation and shuffling seed.
        progress: show a progress bar over the batches.
        lr: Adam learning rate.

    Returns:
        The trained model, in eval mode.
    """
    _check_images_labels(images, labels)
    device = images.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureClassifier(num_classes, in_channels=images.shape[1]).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    labels = labels.to(device)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        starts = range(0, n, batch_size)
        for start in progress_bar(starts, desc=f"classifier epoch {epoch + 1}", enable=progress):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    model.eval()
    return model


@torch.no_grad()
def classifier_accuracy(
    model: FeatureClassifier, images: Tensor, labels: Tensor, batch_size: int = 500
) -> float:
    """Fraction of ``images [N, C, H, W]`` whose argmax logit equals ``labels [N]``."""
    _check_images_labels(images, labels)
    was_training = model.training
    model.eval()
    device = _device_of(model)
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        correct += int((model(x).argmax(dim=1) == y).sum())
    model.train(was_training)
    return correct / images.shape[0]


def default_classifier_cache_dir(dataset: str, epochs: int = 2, seed: int = 0) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/diffvi/classifiers/<dataset>-e<epochs>-s<seed>``."""
    from diffvi.utils.paths import cache_dir

    name = dataset.strip().lower().replace("_", "-")
    return cache_dir() / "classifiers" / f"{name}-e{epochs}-s{seed}"


def load_or_train_feature_classifier(
    dataset: str,
    cache_dir: Path | str | None = None,
    epochs: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> FeatureClassifier:
    """The feature classifier for ``dataset``: loaded from ``cache_dir`` when cached there,
    otherwise trained on the ``"train"`` split, scored on the ``"test"`` split, and cached.

    The cache is ``model.safetensors`` (weights) and ``classifier.json`` (dataset, epochs,
    seed, num_classes, in_channels, test accuracy, training seconds), both written atomically;
    a cache that is unreadable or whose JSON names another dataset, epochs or seed is trained
    over.

    Args:
        dataset: a labelled data set of :func:`diffvi.data.load_dataset` with ``"train"`` and
            ``"test"`` splits (``"mnist"``, ``"fashion-mnist"``, ``"digits"``).
        cache_dir: folder for this classifier; default
            :func:`default_classifier_cache_dir` ``(dataset, epochs, seed)``.
        epochs: training epochs.
        seed: training seed.
        progress: progress bar while training.

    Returns:
        The classifier on the CPU, in eval mode; its metadata dict is at ``model.info``.
    """
    from diffvi.data import load_dataset

    folder = (
        Path(cache_dir)
        if cache_dir is not None
        else default_classifier_cache_dir(dataset, epochs, seed)
    )
    weights_path = folder / "model.safetensors"
    info_path = folder / "classifier.json"
    key = dataset.strip().lower().replace("_", "-")
    if weights_path.is_file() and info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
            wanted = (key, epochs, seed, _POOLED)
            if (info["dataset"], info["epochs"], info["seed"], info["pooled"]) == wanted:
                model = FeatureClassifier(info["num_classes"], info["in_channels"])
                model.load_state_dict(load_file(weights_path))
                model.eval()
                model.info = info
                return model
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            pass  # an unreadable or foreign cache is trained over

    train = load_dataset(key, "train")
    test = load_dataset(key, "test")
    if train.labels is None or test.labels is None:
        raise ValueError(f"data set {key!r} has no labels; a feature classifier needs them")
    num_classes = int(train.num_classes or int(train.labels.max()) + 1)
    began = time.perf_counter()
    model = train_feature_classifier(
        train.images, train.labels, num_classes, epochs=epochs, seed=seed, progress=progress
    )
    seconds = time.perf_counter() - began
    accuracy = classifier_accuracy(model, test.images, test.labels)
    info = {
        "dataset": key,
        "epochs": epochs,
        "seed": seed,
        "num_classes": num_classes,
        "in_channels": int(train.images.shape[1]),
        "pooled": _POOLED,
        "test_accuracy": accuracy,
        "train_seconds": round(seconds, 2),
        "torch_threads": torch.get_num_threads(),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights_path, lambda tmp: save_file(tensors, tmp))
    write_json(info_path, info)
    model.info = info
    return model


def frechet_distance(feats_a: Tensor, feats_b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``||μa - μb||² + tr(Σa) + tr(Σb) - 2 tr((Σa Σb)^{1/2})`` with unbiased covariances, all in
    float64. ``tr((Σa Σb)^{1/2})`` is the sum of the square roots of the eigenvalues (clamped
    at 0) of the symmetric ``Σa^{1/2} Σb Σa^{1/2}``, which has the same eigenvalues as
    ``Σa Σb``; ``Σa^{1/2}`` comes from ``torch.linalg.eigh``. The result is clamped at 0.

    Args:
        feats_a: ``[N, D]`` with ``N >= 2``.
        feats_b: ``[M, D]`` with ``M >= 2``.

    Raises:
        ValueError: not 2-D, fewer than 2 rows, different ``D``, or non-finite values.
    """
    for name, f in (("feats_a", feats_a), ("feats_b", feats_b)):
        if f.ndim != 2 or f.shape[0] < 2 or f.shape[1] < 1:
            raise ValueError(f"expected {name} of shape [N >= 2, D], got {tuple(f.shape)}")
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(
            f"expected feats_b [M, {feats_a.shape[1]}] to match feats_a's D, got "
            f"{tuple(feats_b.shape)}"
        )
    a = feats_a.detach().to(torch.float64)
    b = feats_b.detach().to(torch.float64)
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("features contain NaN or infinite values")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = torch.cov(a.T).reshape(a.shape[1], a.shape[1])
    cov_b = torch.cov(b.T).reshape(b.shape[1], b.shape[1])
    evals, evecs = torch.linalg.eigh(cov_a)
    sqrt_a = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
    middle = sqrt_a @ cov_b @ sqrt_a
    middle = (middle + middle.T) / 2
    tr_sqrt = torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return max(float(fd), 0.0)


@torch.no_grad()
def classifier_features(
    classifier: FeatureClassifier, images: Tensor, batch_size: int = 500
) -> Tensor:
    """``classifier.features`` in eval mode over ``images [N, C, H, W]`` in batches ->
    float32 ``[N, 128]`` on the CPU."""
    if images.ndim != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
    was_training = classifier.training
    classifier.eval()
    device = _device_of(classifier)
    out = [
        classifier.features(images[s : s + batch_size].to(device, torch.float32)).cpu()
        for s in range(0, images.shape[0], batch_size)
    ]
    classifier.train(was_training)
    return torch.cat(out)


def classifier_fid(
    classifier: FeatureClassifier, samples: Tensor, reference: Tensor, batch_size: int = 500
) -> float:
    """FID in the classifier's feature space between ``samples [N, C, H, W]`` and
    ``reference [M, C, H, W]`` (both in [0, 1]). Depends on ``N``: compare it with
    :func:`real_vs_real_floor` at the same size."""
    return frechet_distance(
        classifier_features(classifier, samples, batch_size),
        classifier_features(classifier, reference, batch_size),
    )


def real_vs_real_floor(
    classifier: FeatureClassifier, images_a: Tensor, images_b: Tensor, batch_size: int = 500
) -> float:
    """Classifier FID between two disjoint sets of real images of equal size.

    This is the score a perfect generator would get at that sample size (the finite-sample
    bias of the FID), so pass sets as large as the sample set whose FID it accompanies.

    Args:
        images_a: ``[N, C, H, W]`` real images, e.g. from the test split.
        images_b: ``[N, C, H, W]`` other real images, e.g. from the train split.

    Raises:
        ValueError: the two sets differ in size.
    """
    if images_a.shape[0] != images_b.shape[0]:
        raise ValueError(
            f"expected two sets of the same size, got {images_a.shape[0]} and {images_b.shape[0]}"
        )
    return classifier_fid(classifier, images_a, images_b, batch_size)


@torch.no_grad()
def nearest_neighbours(
    samples: Tensor, train: Tensor, batch_size: int = 1000
) -> tuple[Tensor, Tensor]:
    """Nearest training image (L2 in pixel space) of each sample.

    Both sets are flattened and compared in ``batch_size x batch_size`` blocks with
    ``torch.cdist``, so memory stays ``O(batch_size²)``. The search uses the fast matmul form
    of ``cdist``; the returned distance is then recomputed directly against the chosen
    neighbour, so a sample that *is* a training image gets exactly 0.

    Args:
        samples: ``[N, ...]``.
        train: ``[M, ...]`` with the same trailing size as ``samples``.
        batch_size: block size along both ``N`` and ``M``.

    Returns:
        ``(distances [N], indices [N])``: float32 distances and int64 indices into ``train``.
    """
    if samples.ndim < 1 or train.ndim < 1 or train.shape[0] == 0:
        raise ValueError(
            f"expected samples [N, ...] and non-empty train [M, ...], got "
            f"{tuple(samples.shape)} and {tuple(train.shape)}"
        )
    s = samples.reshape(samples.shape[0], -1).float()
    t = train.reshape(train.shape[0], -1).float()
    if s.shape[1] != t.shape[1]:
        raise ValueError(
            f"expected train [M, {s.shape[1]} values per item], got {t.shape[1]} per item"
        )
    t = t.to(s.device)
    best_d = torch.full((s.shape[0],), float("inf"), device=s.device)
    best_i = torch.zeros(s.shape[0], dtype=torch.long, device=s.device)
    for i in range(0, s.shape[0], batch_size):
        block = s[i : i + batch_size]
        d_best = best_d[i : i + batch_size]
        i_best = best_i[i : i + batch_size]
        for j in range(0, t.shape[0], batch_size):
            d, k = torch.cdist(block, t[j : j + batch_size]).min(dim=1)
            better = d < d_best
            d_best[better] = d[better]
            i_best[better] = k[better] + j
    exact = (s - t[best_i]).norm(dim=1)
    return exact, best_i


def nearest_neighbour_distances(samples: Tensor, train: Tensor, batch_size: int = 1000) -> Tensor:
    """L2 pixel distance ``[N]`` from each of ``samples [N, ...]`` to its nearest image in
    ``train [M, ...]``; see :func:`nearest_neighbours`."""
    return nearest_neighbours(samples, train, batch_size)[0]


def nearest_neighbour_summary(
    samples: Tensor, train: Tensor, held_out: Tensor, batch_size: int = 1000
) -> dict[str, float]:
    """Median and mean nearest-training-neighbour distances of the samples, beside those of
    held-out real images as the reference.

    A generator that copies training images has sample distances near 0, far below the
    held-out reference; a generator that generalises has distances comparable to it.

    Args:
        samples: ``[N, C, H, W]`` generated images in [0, 1].
        train: ``[M, C, H, W]`` training images.
        held_out: ``[K, C, H, W]`` real images not in ``train`` (e.g. the test split).

    Returns:
        ``{"sample_median", "sample_mean", "held_out_median", "held_out_mean",
        "median_ratio"}`` where ``median_ratio = sample_median / held_out_median``.
    """
    d_s = nearest_neighbour_distances(samples, train, batch_size)
    d_h = nearest_neighbour_distances(held_out, train, batch_size)
    held_median = float(d_h.median())
    sample_median = float(d_s.median())
    return {
        "sample_median": sample_median,
        "sample_mean": float(d_s.mean()),
        "held_out_median": held_median,
        "held_out_mean": float(d_h.mean()),
        "median_ratio": sample_median / held_median if held_median > 0 else float("inf"),
    }
