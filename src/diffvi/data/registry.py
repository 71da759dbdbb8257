"""Data sets by name: ``load_dataset("mnist", "test")``.

Names are matched case-insensitively and ``_`` is read as ``-`` (``"fashion_mnist"`` is
``"fashion-mnist"``). A new data set is one :func:`register_dataset` call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from diffvi.data import images
from diffvi.data.images import ImageDataset

__all__ = [
    "DatasetSpec",
    "available_datasets",
    "dataset_splits",
    "load_dataset",
    "register_dataset",
]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: ``loader(split)`` builds it; ``splits`` are its valid splits."""

    loader: Callable[[str], ImageDataset]
    splits: tuple[str, ...]
    description: str = ""


_REGISTRY: dict[str, DatasetSpec] = {}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_dataset(
    name: str,
    loader: Callable[[str], ImageDataset],
    splits: Sequence[str],
    description: str = "",
    *,
    overwrite: bool = False,
) -> None:
    """Register ``loader`` under ``name``.

    Args:
        name: the data set name (normalised to lower case with ``-``).
        loader: ``loader(split)`` returns the data set of that split.
        splits: the valid splits; the first is not special (``load_dataset`` defaults to
            ``"train"``).
        description: one line shown by tools that list data sets.
        overwrite: replace an existing registration instead of raising ``ValueError``.
    """
    key = _normalise(name)
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"a data set named {key!r} is already registered")
    if not splits:
        raise ValueError(f"data set {key!r} needs at least one split")
    _REGISTRY[key] = DatasetSpec(loader, tuple(splits), description)


def available_datasets() -> list[str]:
    """Names of the registered data sets, sorted."""
    return sorted(_REGISTRY)


def _spec(name: str) -> DatasetSpec:
    key = _normalise(name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; valid names: {available_datasets()}")
    return _REGISTRY[key]


def dataset_splits(name: str) -> tuple[str, ...]:
    """Valid splits of a registered data set, e.g. ``("train", "valid", "test")``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    return _spec(name).splits


def load_dataset(name: str, split: str = "train") -> ImageDataset:
    """Load a registered data set.

    Args:
        name: one of :func:`available_datasets`: ``"mnist"``, ``"fashion-mnist"``,
            ``"mnist-dynamic"``, ``"binarized-mnist"``, ``"frey-faces"``, ``"digits"``.
        split: one of :func:`dataset_splits` for that name.

    Returns:
        The data set; images float32 ``[N, C, H, W]`` in [0, 1], labels int64 ``[N]`` or
        ``None`` (see :class:`~diffvi.data.images.ImageDataset`).

    Raises:
        ValueError: unknown name or split (the message lists the valid ones), or a corrupt
            data file.
        FileNotFoundError: a data file is missing and cannot be downloaded.
    """
    spec = _spec(name)
    if split not in spec.splits:
        raise ValueError(
            f"unknown split {split!r} for data set {_normalise(name)!r}; "
            f"valid splits: {list(spec.splits)}"
        )
    return spec.loader(split)


register_dataset(
    "mnist", images.load_mnist, ("train", "test"), "MNIST grey levels / 255, 28x28, labels"
)
register_dataset(
    "fashion-mnist",
    images.load_fashion_mnist,
    ("train", "test"),
    "Fashion-MNIST grey levels / 255, 28x28, labels",
)
register_dataset(
    "mnist-dynamic",
    images.load_mnist_dynamic,
    ("train", "test"),
    "MNIST, dynamically binarised (train) / binarised once with seed 0 (test)",
)
register_dataset(
    "binarized-mnist",
    images.load_binarized_mnist,
    ("train", "valid", "test"),
    "Larochelle & Murray static binarisation, 28x28, no labels",
)
register_dataset(
    "frey-faces",
    images.load_frey_faces,
    ("train", "test", "all"),
    "Frey faces / 255, 28x20, no labels, seeded 1772/193 split",
)
register_dataset(
    "digits",
    images.load_digits,
    ("train", "test", "all"),
    "scikit-learn digits / 16, 8x8, labels, stratified 1437/360 split",
)
