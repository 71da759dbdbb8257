"""Image data sets held in memory: MNIST, Fashion-MNIST, binarised MNIST, Frey faces, digits.

Every loader returns an :class:`ImageDataset` whose images are float32 ``[N, C, H, W]`` in
[0, 1] (the public image convention of diffvi) and whose labels, where the data set has them,
are int64 ``[N]``. Files are found through :mod:`diffvi.data.files` (``$DIFFVI_DATA``, then
the user cache, then a download); parsed arrays are cached in-process, so loading twice is
cheap.

Data sets (see ``shared/data/*/SOURCE.md`` for provenance and citations):

- MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao et al. 2017): the original gzipped IDX
  files, train 60000 / test 10000, grey levels divided by 255, ``[N, 1, 28, 28]``, labels 0..9.
- Dynamically binarised MNIST (Burda et al. 2016, IWAE): MNIST grey levels with a fresh
  Bernoulli draw at every access for training; the test split is binarised once, with a
  ``torch.Generator`` seeded with :data:`DYNAMIC_TEST_SEED` (0), so evaluations are
  reproducible (IWAE evaluates on a stochastically binarised test set).
- Statically binarised MNIST (Larochelle & Murray 2011): train/valid/test 50000/10000/10000,
  values in {0, 1}, no labels. The image order is that of the original ``.amat`` files; it
  cannot be lined up with the IDX files.
- Frey faces (Frey et al. 1998): 1965 grey images ``[N, 1, 28, 20]`` divided by 255, no
  labels; a fixed permutation (seed 0) gives train (first 1772) and test (last 193).
- scikit-learn's digits: 1797 images ``[N, 1, 8, 8]`` with values 0..16 divided by 16, labels
  0..9; a stratified split (``train_test_split(test_size=0.2, random_state=0)``) gives train
  1437 / test 360.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from diffvi.data.files import SHA256SUMS, Source, fetch, fetch_derived

__all__ = [
    "BINARIZED_MNIST_SOURCES",
    "DYNAMIC_TEST_SEED",
    "FASHION_MNIST_URL",
    "FREY_FACES_CONTENT_SHA256",
    "FREY_FACES_SOURCE",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "MNIST_URL",
    "SPLIT_SEED",
    "Binarize",
    "ImageDataset",
    "batch_loader",
    "clear_caches",
    "load_binarized_mnist",
    "load_digits",
    "load_fashion_mnist",
    "load_frey_faces",
    "load_mnist",
    "load_mnist_dynamic",
    "read_idx",
]

Binarize = Literal["none", "dynamic"]
IndexLike = int | slice | Sequence[int] | Tensor | np.ndarray

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
"""Base URL of the original MNIST ``.gz`` files."""
FASHION_MNIST_URL = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
)
"""Base URL of the original Fashion-MNIST ``.gz`` files: the copies in Zalando's repository,
over HTTPS (its S3 website, ``fashion-mnist.s3-website.eu-central-1.amazonaws.com``, speaks
plain HTTP only). The files are checked against :data:`~diffvi.data.files.SHA256SUMS`."""

_LAROCHELLE_URL = "https://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
BINARIZED_MNIST_SOURCES: dict[str, Source] = {
    split: Source(
        f"binarized_mnist/binarized_mnist_{split}.amat",
        f"{_LAROCHELLE_URL}binarized_mnist_{split}.amat",
        sha,
    )
    for split, sha in (
        ("train", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
        ("valid", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
        ("test", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
    )
}
"""The original Larochelle & Murray ``.amat`` text files (SHA-256 as recorded by TFDS)."""

FREY_FACES_SOURCE = Source(
    "frey_faces/frey_rawface.mat", "https://cs.nyu.edu/~roweis/data/frey_rawface.mat", None
)
"""Sam Roweis' ``frey_rawface.mat`` (variable ``ff``, uint8 ``[560, 1965]``). No checksum of
the file is published; what it holds is pinned instead, by :data:`FREY_FACES_CONTENT_SHA256`."""

FREY_FACES_CONTENT_SHA256 = "2438ba4f0d2a6bd8bac43de756141eaa33c8d248dd613d464bdb1210d9b7af78"
"""SHA-256 of the Frey faces themselves: the bytes of the uint8 array ``[1965, 28, 20]`` (C
order) of the published ``frey_faces.npz`` (``SHA256SUMS``; from jmtomczak/vae_vampprior's
``freyfaces.pkl``). A downloaded ``frey_rawface.mat`` whose faces differ is refused."""

IDX_IMAGES_MAGIC = 2051
"""IDX magic number of an unsigned-byte 3-D array (images)."""
IDX_LABELS_MAGIC = 2049
"""IDX magic number of an unsigned-byte 1-D array (labels)."""

DYNAMIC_TEST_SEED = 0
"""Seed of the one-off binarisation of the ``mnist-dynamic`` test split."""
SPLIT_SEED = 0
"""Seed of the fixed train/test splits of Frey faces and digits."""

_FREY_TRAIN_SIZE = 1772
_FREY_SIZE = 1965
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


# --------------------------------------------------------------------------------------------
# Data set type and loader
# --------------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class ImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """An in-memory image data set that indexes whole batches at once.

    ``dataset[i]`` with an int gives one image ``x: [C, H, W]`` and label ``y: []``;
    ``dataset[idx]`` with a 1-D tensor, list or array of ``B`` indices (or a slice) gives the
    batch ``x: [B, C, H, W]``, ``y: [B]`` by fancy indexing, so a
    :class:`~torch.utils.data.DataLoader` over a :class:`~torch.utils.data.BatchSampler` needs
    no per-item collation (see :func:`batch_loader`).

    Attributes:
        images: float ``[N, C, H, W]`` with values in [0, 1] (float32 from the loaders).
        labels: int64 ``[N]``, or ``None`` for unlabelled data. Unlabelled data sets return
            ``y`` filled with ``-1`` (int64, shape ``[]`` or ``[B]``), so ``x, y = batch``
            works the same way for every data set.
        binarize: ``"none"`` returns ``images`` as they are; ``"dynamic"`` returns a fresh
            Bernoulli draw with the grey levels as probabilities at every access (the IWAE
            training protocol).
        name: data set name, e.g. ``"mnist"``.
        split: split name, e.g. ``"train"``.
        num_classes: number of classes; inferred as ``max(labels) + 1`` when labels are given
            and it is not; ``None`` for unlabelled data.
        generator: random generator for ``binarize="dynamic"`` (the global torch RNG when
            ``None``); it must live on the device of ``images``. Leave it ``None`` with
            DataLoader workers: each worker gets a copy and they would all draw the same bits.
    """

    images: Tensor
    labels: Tensor | None = None
    binarize: Binarize = "none"
    name: str = ""
    split: str = ""
    num_classes: int | None = None
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
            got = (
                f"{images.dtype} tensor of shape {tuple(images.shape)}"
                if isinstance(images, Tensor)
                else type(images).__name__
            )
            raise ValueError(f"images must be a float tensor [N, C, H, W], got a {got}")
        if images.numel():
            lo, hi = torch.aminmax(images)
            if lo < 0 or hi > 1:
                raise ValueError(f"images must lie in [0, 1], got [{lo.item()}, {hi.item()}]")
        if self.binarize not in ("none", "dynamic"):
            raise ValueError(f"binarize must be 'none' or 'dynamic', got {self.binarize!r}")
        if self.labels is not None:
            labels = self.labels
            if (
                not isinstance(labels, Tensor)
                or labels.ndim != 1
                or labels.is_floating_point()
                or labels.is_complex()
                or labels.dtype == torch.bool
            ):
                got = (
                    f"{labels.dtype} tensor of shape {tuple(labels.shape)}"
                    if isinstance(labels, Tensor)
                    else type(labels).__name__
                )
                raise ValueError(f"labels must be an integer tensor [N], got a {got}")
            if labels.shape[0] != images.shape[0]:
                raise ValueError(
                    f"labels must have one entry per image: expected {images.shape[0]}, "
                    f"got {labels.shape[0]}"
                )
            self.labels = labels.to(torch.int64)
            if self.num_classes is None:
                self.num_classes = int(self.labels.max()) + 1 if len(self.labels) else 0

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(C, H, W)``."""
        c, h, w = self.images.shape[1:]
        return (c, h, w)

    def __getitem__(self, index: IndexLike) -> tuple[Tensor, Tensor]:
        """One image or a batch.

        Args:
            index: an int (one image), or a 1-D int tensor / list / array of ``B`` indices, a
                boolean mask ``[N]`` or a slice (a batch).

        Returns:
            ``(x, y)``: ``x`` float ``[C, H, W]`` or ``[B, C, H, W]`` in [0, 1] (in {0, 1} when
            ``binarize="dynamic"``, drawn afresh on each call); ``y`` int64 ``[]`` or ``[B]``,
            ``-1`` where the data set has no labels.
        """
        idx: int | slice | Tensor
        if isinstance(index, int | np.integer):
            idx = int(index)
        elif isinstance(index, slice):
            idx = index
        else:
            idx = torch.as_tensor(index, device=self.images.device)
            if idx.ndim == 1 and idx.numel() == 0:
                idx = idx.to(torch.int64)  # [] is a float tensor to torch
            elif idx.ndim == 0 and not idx.is_floating_point() and idx.dtype != torch.bool:
                idx = int(idx)
            elif idx.ndim != 1 or idx.is_floating_point() or idx.is_complex():
                raise TypeError(
                    "index must be an int, a slice or a 1-D integer/boolean sequence, got "
                    f"{idx.dtype} of shape {tuple(idx.shape)}"
                )
        x = self.images[idx]
        if self.binarize == "dynamic":
            x = torch.bernoulli(x, generator=self.generator)
        if self.labels is None:
            y = torch.full(x.shape[:-3], -1, dtype=torch.int64, device=x.device)
        else:
            y = self.labels[idx]
        return x, y

    def to(self, device: torch.device | str) -> ImageDataset:
        """A copy whose tensors live on ``device`` (indexing on a GPU avoids host copies)."""
        labels = None if self.labels is None else self.labels.to(device)
        return dataclasses.replace(self, images=self.images.to(device), labels=labels)

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, size={len(self)}, "
            f"image_shape={self.image_shape}, labels={self.labels is not None}, "
            f"num_classes={self.num_classes}, binarize={self.binarize!r})"
        )


def batch_loader(
    dataset: ImageDataset,
    batch_size: int,
    shuffle: bool,
    seed: int | None = None,
    drop_last: bool = False,
    **kwargs: Any,
) -> DataLoader[tuple[Tensor, Tensor]]:
    """A DataLoader that fetches each batch with one fancy-indexing call.

    It wraps a :class:`~torch.utils.data.BatchSampler` (over a
    :class:`~torch.utils.data.RandomSampler` when ``shuffle``, else a sequential one) and
    sets ``batch_size=None``, so ``dataset[list_of_indices]`` is called once per batch and no
    per-item collation happens.

    Args:
        dataset: any data set whose ``__getitem__`` accepts a list of indices, e.g.
            :class:`ImageDataset`.
        batch_size: images per batch ``B``.
        shuffle: draw a new random order each epoch.
        seed: seed of the shuffling generator (reproducible order: the same seed gives the
            same sequence of epochs); ``None`` draws from the global torch RNG.
        drop_last: drop the last, smaller batch.
        **kwargs: passed on to :class:`~torch.utils.data.DataLoader` (``num_workers``,
            ``pin_memory``, ...).

    Returns:
        A DataLoader yielding ``(x: [B, C, H, W], y: [B])``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if shuffle:
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        sampler: RandomSampler | SequentialSampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(dataset, sampler=batches, batch_size=None, **kwargs)


# --------------------------------------------------------------------------------------------
# File formats
# --------------------------------------------------------------------------------------------


def _file_key(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    path = Path(path)
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def clear_caches() -> None:
    """Forget the arrays parsed from data files (they are cached in-process by path)."""
    _read_idx_cached.cache_clear()
    _read_npz_cached.cache_clear()
    _digits.cache_clear()


def _read_maybe_gzip(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(
            f"{path}: not a valid gzip file, it is truncated or corrupt "
            f"({type(err).__name__}: {err})"
        ) from err


def read_idx(path: str | os.PathLike[str], expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped when its name ends in ``.gz``).

    Args:
        path: the file.
        expected_magic: the magic number the file must have, e.g. :data:`IDX_IMAGES_MAGIC`
            (2051) or :data:`IDX_LABELS_MAGIC` (2049); ``None`` accepts any valid IDX type.

    Returns:
        A read-only array with the declared shape and dtype (cached in-process by path, size
        and modification time), e.g. uint8 ``[N, 28, 28]`` for MNIST images.

    Raises:
        ValueError: the gzip stream is truncated or corrupt, the magic number is not the
            expected one or not an IDX one, or the payload length does not match the declared
            dimensions. The message names the file and what was expected vs. found.
    """
    return _read_idx_cached(*_file_key(path), expected_magic)


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, size: int, mtime_ns: int, expected: int | None) -> np.ndarray:
    data = _read_maybe_gzip(Path(path))
    if len(data) < 4:
        raise ValueError(
            f"{path}: truncated IDX header: expected at least 4 bytes, found {len(data)}"
        )
    magic = int.from_bytes(data[:4], "big")
    if expected is not None and magic != expected:
        raise ValueError(
            f"{path}: wrong IDX magic number: expected {expected} (0x{expected:08x}), "
            f"found {magic} (0x{magic:08x})"
        )
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path}: not an IDX file: magic number {magic} (0x{magic:08x}) is not "
            "0x0000TTDD with a known type TT and DD >= 1 dimensions"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: truncated IDX header: expected {header} bytes for {ndim} dimensions, "
            f"found {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected_bytes = math.prod(shape) * dtype.itemsize
    found_bytes = len(data) - header
    if found_bytes != expected_bytes:
        raise ValueError(
            f"{path}: IDX payload does not match its declared shape {shape} ({dtype}): "
            f"expected {expected_bytes} bytes, found {found_bytes}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive (read-only, cached in-process)."""
    return _read_npz_cached(*_file_key(path))


@functools.lru_cache(maxsize=8)
def _read_npz_cached(path: str, size: int, mtime_ns: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, EOFError, zlib.error, OSError) as err:
        raise ValueError(
            f"{path}: not a readable .npz archive ({type(err).__name__}: {err})"
        ) from err
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


def _npz_array(path: Path, key: str, ndim: int, tail: tuple[int, ...]) -> np.ndarray:
    arrays = _read_npz(path)
    if key not in arrays:
        raise ValueError(f"{path}: expected an array named {key!r}, found {sorted(arrays)}")
    array = arrays[key]
    if array.dtype != np.uint8 or array.ndim != ndim or array.shape[1:] != tail:
        raise ValueError(
            f"{path}: array {key!r} must be uint8 [N, {', '.join(map(str, tail))}], "
            f"found {array.dtype} {array.shape}"
        )
    return array


def _to_images(array: np.ndarray, scale: float) -> Tensor:
    """uint8 ``[N, H, W]`` -> float32 ``[N, 1, H, W]`` divided by ``scale``."""
    n, h, w = array.shape
    return torch.from_numpy(array.reshape(n, 1, h, w).astype(np.float32)).div_(scale)


def _check_split(name: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise ValueError(f"unknown split {split!r} for {name!r}; valid splits: {list(splits)}")


# --------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX)
# --------------------------------------------------------------------------------------------

_IDX_SPLITS = {"train": ("train", 60000), "test": ("t10k", 10000)}


def _load_idx_split(folder: str, base_url: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[N, 28, 28]`` and labels ``[N]`` of one split of an MNIST-like set."""
    stem, n = _IDX_SPLITS[split]
    paths = []
    for kind in ("images-idx3", "labels-idx1"):
        rel = f"{folder}/{stem}-{kind}-ubyte.gz"
        paths.append(fetch(rel, base_url + rel.rsplit("/", 1)[1], SHA256SUMS.get(rel)))
    images = read_idx(paths[0], IDX_IMAGES_MAGIC)
    labels = read_idx(paths[1], IDX_LABELS_MAGIC)
    if images.shape != (n, 28, 28):
        raise ValueError(
            f"{paths[0]}: expected images of shape {(n, 28, 28)}, found {images.shape}"
        )
    if labels.shape != (n,) or labels.max() > 9:
        raise ValueError(
            f"{paths[1]}: expected {n} labels in 0..9, found shape {labels.shape} "
            f"with maximum {labels.max()}"
        )
    return images, labels


def _load_mnist_like(name: str, folder: str, base_url: str, split: str) -> ImageDataset:
    _check_split(name, split, tuple(_IDX_SPLITS))
    images, labels = _load_idx_split(folder, base_url, split)
    return ImageDataset(
        images=_to_images(images, 255.0),
        labels=torch.from_numpy(labels.astype(np.int64)),
        name=name,
        split=split,
        num_classes=10,
    )


def load_mnist(split: str = "train") -> ImageDataset:
    """MNIST grey levels: images float32 ``[N, 1, 28, 28]`` = pixel / 255, labels ``[N]`` 0..9.

    Args:
        split: ``"train"`` (N = 60000) or ``"test"`` (N = 10000).
    """
    return _load_mnist_like("mnist", "mnist", MNIST_URL, split)


def load_fashion_mnist(split: str = "train") -> ImageDataset:
    """Fashion-MNIST: images float32 ``[N, 1, 28, 28]`` = pixel / 255, labels ``[N]`` 0..9.

    Args:
        split: ``"train"`` (N = 60000, 6000 per class) or ``"test"`` (N = 10000).
    """
    return _load_mnist_like("fashion-mnist", "fashion_mnist", FASHION_MNIST_URL, split)


def load_mnist_dynamic(split: str = "train") -> ImageDataset:
    """Dynamically binarised MNIST (IWAE protocol), images ``[N, 1, 28, 28]`` in {0, 1}.

    The ``"train"`` split holds MNIST grey levels with ``binarize="dynamic"``: each access
    returns a fresh Bernoulli draw. The ``"test"`` split is binarised once with
    ``torch.Generator().manual_seed(DYNAMIC_TEST_SEED)`` (seed 0) and returned as it is
    (``binarize="none"``), so every evaluation sees the same binary test set.

    Args:
        split: ``"train"`` (N = 60000) or ``"test"`` (N = 10000).
    """
    dataset = _load_mnist_like("mnist-dynamic", "mnist", MNIST_URL, split)
    if split == "train":
        dataset.binarize = "dynamic"
    else:
        generator = torch.Generator().manual_seed(DYNAMIC_TEST_SEED)
        dataset.images = torch.bernoulli(dataset.images, generator=generator)
    return dataset


# --------------------------------------------------------------------------------------------
# Statically binarised MNIST
# --------------------------------------------------------------------------------------------

_BINARIZED_REL = "binarized_mnist/binarized_mnist.npz"
_BINARIZED_SPLITS = ("train", "valid", "test")


def _parse_amat(path: Path) -> np.ndarray:
    """One Larochelle ``.amat`` file (784 space-separated 0/1 per line) -> uint8 ``[N, 784]``."""
    raw = np.fromfile(path, dtype=np.uint8)
    width = 2 * 784
    if raw.size == 0 or raw.size % width:
        raise ValueError(
            f"{path}: expected lines of 784 space-separated 0/1 values ({width} bytes each), "
            f"found {raw.size} bytes"
        )
    rows = raw.reshape(-1, width)
    values, separators = rows[:, 0::2] - ord("0"), rows[:, 1::2]
    if (
        values.max() > 1
        or (separators[:, :-1] != ord(" ")).any()
        or (separators[:, -1] != 10).any()
    ):
        raise ValueError(f"{path}: expected lines of 784 space-separated 0/1 values")
    return values


def _build_binarized_mnist(sources: list[Path], out: Path) -> None:
    arrays = {split: _parse_amat(p) for split, p in zip(_BINARIZED_SPLITS, sources, strict=True)}
    with open(out, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_binarized_mnist(split: str = "train") -> ImageDataset:
    """Statically binarised MNIST (Larochelle & Murray), images float32 ``[N, 1, 28, 28]``.

    Values are exactly 0 or 1; there are no labels (``y`` is ``-1``).

    Args:
        split: ``"train"`` (N = 50000), ``"valid"`` (N = 10000) or ``"test"`` (N = 10000).
    """
    _check_split("binarized-mnist", split, _BINARIZED_SPLITS)
    path = fetch_derived(
        _BINARIZED_REL,
        SHA256SUMS[_BINARIZED_REL],
        [BINARIZED_MNIST_SOURCES[s] for s in _BINARIZED_SPLITS],
        _build_binarized_mnist,
    )
    array = _npz_array(path, split, 2, (784,))
    if array.max(initial=0) > 1:
        raise ValueError(f"{path}: array {split!r} must hold only 0 and 1, found {array.max()}")
    return ImageDataset(
        images=_to_images(array.reshape(-1, 28, 28), 1.0), name="binarized-mnist", split=split
    )


# --------------------------------------------------------------------------------------------
# Frey faces
# --------------------------------------------------------------------------------------------

_FREY_REL = "frey_faces/frey_faces.npz"
_FREY_SPLITS = ("train", "test", "all")


def _build_frey_faces(sources: list[Path], out: Path) -> None:
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise ImportError(
            "converting frey_rawface.mat into frey_faces.npz needs scipy (pip install scipy); "
            f"or place {_FREY_REL} under $DIFFVI_DATA"
        ) from err
    ff = loadmat(sources[0])["ff"]
    if ff.dtype != np.uint8 or ff.shape != (28 * 20, _FREY_SIZE):
        raise ValueError(
            f"{sources[0]}: expected variable 'ff' uint8 of shape {(28 * 20, _FREY_SIZE)}, "
            f"found {ff.dtype} {ff.shape}"
        )
    faces = np.ascontiguousarray(ff.T.reshape(-1, 28, 20))
    digest = hashlib.sha256(faces.tobytes()).hexdigest()
    if digest != FREY_FACES_CONTENT_SHA256:
        raise ValueError(
            f"{FREY_FACES_SOURCE.url} does not hold the published Frey faces: SHA-256 of its "
            f"images {digest}, expected {FREY_FACES_CONTENT_SHA256}. Nothing was saved; place "
            f"{_FREY_REL} under $DIFFVI_DATA instead"
        )
    with open(out, "wb") as f:
        np.savez_compressed(f, images=faces)


def load_frey_faces(split: str = "train") -> ImageDataset:
    """Frey faces: images float32 ``[N, 1, 28, 20]`` = pixel / 255, no labels (``y`` is -1).

    A fixed permutation ``torch.randperm(1965, generator=torch.Generator().manual_seed(0))``
    splits the 1965 faces: ``"train"`` is its first 1772 entries (about 90 %), ``"test"``
    the remaining 193, both in permutation order; ``"all"`` gives the 1965 faces in file order.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"``.
    """
    _check_split("frey-faces", split, _FREY_SPLITS)
    path = fetch_derived(_FREY_REL, SHA256SUMS[_FREY_REL], [FREY_FACES_SOURCE], _build_frey_faces)
    array = _npz_array(path, "images", 3, (28, 20))
    if array.shape[0] != _FREY_SIZE:
        raise ValueError(f"{path}: expected {_FREY_SIZE} images, found {array.shape[0]}")
    images = _to_images(array, 255.0)
    if split != "all":
        perm = torch.randperm(_FREY_SIZE, generator=torch.Generator().manual_seed(SPLIT_SEED))
        images = images[perm[:_FREY_TRAIN_SIZE] if split == "train" else perm[_FREY_TRAIN_SIZE:]]
    return ImageDataset(images=images, name="frey-faces", split=split)


# --------------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------------

_DIGITS_SPLITS = ("train", "test", "all")


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    target = np.asarray(bunch.target, dtype=np.int64)
    index = np.arange(len(target))
    train, test = train_test_split(index, test_size=0.2, stratify=target, random_state=SPLIT_SEED)
    for array in (images, target):
        array.flags.writeable = False
    return images, target, {"train": train, "test": test, "all": index}


def load_digits(split: str = "train") -> ImageDataset:
    """scikit-learn's 8x8 digits: images float32 ``[N, 1, 8, 8]`` = value / 16, labels 0..9.

    Ships with scikit-learn (no download). The splits come from
    ``train_test_split(test_size=0.2, stratify=labels, random_state=0)``.

    Args:
        split: ``"train"`` (N = 1437), ``"test"`` (N = 360) or ``"all"`` (N = 1797).
    """
    _check_split("digits", split, _DIGITS_SPLITS)
    images, target, splits = _digits()
    index = splits[split]
    return ImageDataset(
        images=torch.from_numpy(images[index][:, None]),
        labels=torch.from_numpy(target[index]),
        name="digits",
        split=split,
        num_classes=10,
    )
