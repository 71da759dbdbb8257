"""Your own images for training: a folder of PNG/JPEG/TIFF files, or an array file.

:func:`open_image_data` reads the list of items (and checks every file's header), not the
pixels: an :class:`ImageFileDataset` decodes the items of each batch it is asked for
(``dataset[indices] -> (x [B, C, H, W], y [B])``, the contract of
:func:`~diffvi.data.modules.index_batch_loader`), so a set larger than memory streams from disk.
:meth:`ImageFileDataset.load_into_memory` decodes everything once where the images take at most
a memory budget (:data:`IN_MEMORY_BYTES`); both paths give the same numbers.
:func:`open_image_splits` does both and holds out a seeded fraction for validation.

Sources:

- a folder of ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff`` files (sorted by name, not
  recursive), or a folder of class subfolders of such files (``root/cat/1.png``: the
  subfolders' names, sorted, are the classes 0, 1, …). 8-bit pixels are divided by 255,
  16-bit ones by 65535 (:func:`~diffvi.data.files.decode_image`). The images are grey
  ``[1, H, W]`` when every file is grey, else colour ``[3, H, W]`` (grey files repeated over
  the three channels): colour is kept. Transparent pixels and multi-frame files are refused.
- an array ``[N, C, H, W]`` or ``[N, H, W]`` (then C = 1) in a ``.npy`` (memory-mapped, read
  per batch), ``.npz`` (read whole) or HDF5 file (``.h5``/``.hdf5``, read per batch; needs
  ``h5py``). In an ``.npz`` or HDF5 file the images are the array named ``images`` or ``x``
  (or the only one), and an array named ``labels`` or ``y`` gives the labels. uint8 values
  are divided by 255, uint16 by 65535; floats must lie in [0, 1].

Labels (optional): ``labels=`` a CSV with columns ``file`` and ``label`` (file names relative
to the folder; integer labels ≥ 0, or class names, numbered in sorted order), or a ``.npy`` of
N integer labels in item order. Every image needs one; a name the folder does not hold is an
error.

Size: without ``size`` every image must have the same size. With ``size`` ``(H, W)`` each image
is scaled (bicubic, antialiased; its aspect ratio kept) to cover ``H × W`` and the ``H × W``
window is cut out of it: the centre one, or (``crop="random"``, training only) one drawn per
item and epoch from ``(seed, epoch, item)``, so a resumed run draws the crops of an
uninterrupted one.

Binary pixels (a sigmoid belief net's data): :class:`BinarizedImages` reads the grey levels of
such a set as Bernoulli probabilities and returns binary images, drawn afresh for every item in
every epoch (the dynamic binarisation of the IWAE and VIMCO experiments) from ``(seed, epoch,
item)``, so a resumed run draws the bits of an uninterrupted one; a held-out view draws once, from
a fixed seed and the item alone, so every validation scores the same bits. Images that are
binary already come back unchanged.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from diffvi.data.files import decode_image, image_channels

__all__ = [
    "ARRAY_SUFFIXES",
    "BinarizedImages",
    "CROPS",
    "IN_MEMORY_BYTES",
    "TRAINING_IMAGE_SUFFIXES",
    "Crop",
    "ImageFileDataset",
    "open_image_data",
    "open_image_splits",
    "split_positions",
]

Crop = Literal["center", "random"]
CROPS: tuple[str, ...] = ("center", "random")
TRAINING_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
"""Image files a folder may hold (case-insensitive)."""
ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
"""Array files :func:`open_image_data` reads."""
IN_MEMORY_BYTES = 1 << 30
"""Images (float32, at their final size) that take at most this many bytes are decoded once
and held in memory; larger sets are read from disk batch by batch."""
SPLIT_SALT = 20_20
"""Mixed into the seed of the held-out split, so it is not the first epoch's order."""
BINARIZE_SALT = 1_101
"""Mixed into the seeds of :class:`BinarizedImages`' draws, so they are not the crops' draws."""
HELD_OUT_BINARIZE_SEED = 0
"""Seed of the one-off binarisation of held-out images (:class:`BinarizedImages`)."""

_IMAGE_KEYS = ("images", "x")
_LABEL_KEYS = ("labels", "y")


# --------------------------------------------------------------------------------------------
# Sources: the items of a folder or an array file, read one by one or a batch at once
# --------------------------------------------------------------------------------------------


class _Source:
    """The items of one data file or folder: their count, native sizes and pixels."""

    path: Path
    channels: int

    def __len__(self) -> int:
        raise NotImplementedError

    def native_size(self, item: int) -> tuple[int, int]:
        """``(h, w)`` of item ``item`` as stored."""
        raise NotImplementedError

    def read(self, items: np.ndarray) -> list[Tensor]:
        """Items ``items`` as float32 ``[C, h, w]`` tensors in [0, 1]."""
        raise NotImplementedError

    def describe(self, item: int) -> str:
        """Where item ``item`` comes from, for messages."""
        raise NotImplementedError


class _FolderSource(_Source):
    """Image files, each decoded when read."""

    def __init__(self, path: Path, files: list[Path], sizes: list[tuple[int, int]], channels: int):
        self.path, self.files, self.sizes, self.channels = path, files, sizes, channels

    def __len__(self) -> int:
        return len(self.files)

    def native_size(self, item: int) -> tuple[int, int]:
        return self.sizes[item]

    def read(self, items: np.ndarray) -> list[Tensor]:
        out = []
        for item in items.tolist():
            array = decode_image(self.files[item], self.channels, "this data set")
            if array.shape[1:] != self.sizes[item]:  # the header said otherwise
                raise ValueError(f"{self.files[item]} decodes to another size than its header")
            out.append(torch.from_numpy(array))
        return out

    def describe(self, item: int) -> str:
        return str(self.files[item])


class _ArraySource(_Source):
    """An array ``[N, C, H, W]`` or ``[N, H, W]`` (in memory, memory-mapped or HDF5)."""

    def __init__(self, path: Path, array: Any, scale: float) -> None:
        self.path, self.array, self.scale = path, array, scale
        self.grey = array.ndim == 3
        self.channels = 1 if self.grey else int(array.shape[1])

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def native_size(self, item: int) -> tuple[int, int]:
        return int(self.array.shape[-2]), int(self.array.shape[-1])

    def read(self, items: np.ndarray) -> list[Tensor]:
        if len(items) == 0:
            return []
        order = np.argsort(items, kind="stable")
        wanted = items[order]
        unique, back = np.unique(wanted, return_inverse=True)
        # h5py reads increasing indices only; a memory map reads them faster too.
        block = np.asarray(self.array[unique.tolist() if len(unique) > 1 else int(unique[0])])
        if len(unique) == 1:
            block = block[None]
        block = block.astype(np.float32)
        if self.scale != 1:
            block /= self.scale
        if self.grey:
            block = block[:, None]
        sorted_items = block[back]
        result = np.empty_like(sorted_items)
        result[order] = sorted_items
        self._check_range(result, items)
        return list(torch.from_numpy(result))

    def _check_range(self, values: np.ndarray, items: np.ndarray) -> None:
        if self.scale != 1:
            return  # integers scaled into [0, 1]
        bad = ~(np.isfinite(values) & (values >= 0) & (values <= 1)).reshape(len(values), -1)
        if bad.any():
            first = int(items[int(np.nonzero(bad.any(1))[0][0])])
            raise ValueError(
                f"{self.path} item {first} holds values outside [0, 1] (or NaN/Inf); float "
                "images must lie in [0, 1]"
            )

    def describe(self, item: int) -> str:
        return f"{self.path} item {item}"


def _folder_source(path: Path) -> tuple[_FolderSource, Tensor | None, list[str] | None]:
    """The image files of folder ``path`` (or of its class subfolders), their headers checked;
    the subfolders' labels and class names where the files sit in subfolders."""
    from PIL import Image, UnidentifiedImageError

    def images_in(folder: Path) -> list[Path]:
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in TRAINING_IMAGE_SUFFIXES
        )

    files = images_in(path)
    labels: Tensor | None = None
    classes: list[str] | None = None
    if not files:
        subfolders = sorted(p for p in path.iterdir() if p.is_dir() and images_in(p))
        if not subfolders:
            raise ValueError(
                f"no {'/'.join(TRAINING_IMAGE_SUFFIXES)} files in {path} (nor in subfolders of "
                "it, one per class)"
            )
        classes = [p.name for p in subfolders]
        per_class = [images_in(p) for p in subfolders]
        files = [f for group in per_class for f in group]
        labels = torch.cat(
            [torch.full((len(g),), c, dtype=torch.int64) for c, g in enumerate(per_class)]
        )
    sizes, colour = [], False
    for file in files:
        try:
            with Image.open(file) as image:
                width, height = image.size
                colour = colour or image_channels(image.mode) == 3
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read {file} as an image: {err}") from err
        sizes.append((height, width))
    return _FolderSource(path, files, sizes, 3 if colour else 1), labels, classes


def _named_array(path: Path, names: Sequence[str], arrays: dict[str, Any], what: str) -> Any:
    """The array of ``arrays`` named one of ``names``; for images also the only one there is."""
    for name in names:
        if name in arrays:
            return arrays[name]
    if what == "images":
        others = [k for k in arrays if k not in _LABEL_KEYS]
        if len(others) == 1:
            return arrays[others[0]]
        raise ValueError(
            f"{path} holds the arrays {sorted(arrays)}; name the images 'images' (or 'x') and "
            "the labels 'labels' (or 'y')"
        )
    return None


def _array_source(path: Path) -> tuple[_ArraySource, Tensor | None]:
    """The image array of ``path`` (and the labels stored beside it in an .npz/HDF5 file)."""
    suffix = path.suffix.lower()
    labels = None
    try:
        if suffix == ".npy":
            images = np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                members = {name: archive[name] for name in archive.files}
            images = _named_array(path, _IMAGE_KEYS, members, "images")
            labels = _named_array(path, _LABEL_KEYS, members, "labels")
        else:
            images, labels = _hdf5_arrays(path)
    except (OSError, ValueError, EOFError) as err:
        if isinstance(err, ValueError) and str(err).startswith(str(path)):
            raise
        raise ValueError(f"cannot read {path} as a {suffix} array file: {err}") from err
    shape = tuple(images.shape)
    if len(shape) not in (3, 4) or shape[0] < 1:
        raise ValueError(
            f"{path} holds an array of shape {list(shape)}; expected images [N, C, H, W] or "
            "[N, H, W]"
        )
    if len(shape) == 4 and shape[3] in (1, 3, 4) and shape[1] > 4:  # [N, H, W, C]?
        raise ValueError(
            f"{path} holds an array of shape {list(shape)}, which looks channels-last "
            "[N, H, W, C]; expected [N, C, H, W]: save np.moveaxis(images, -1, 1)"
        )
    dtype = np.dtype(images.dtype)
    if dtype == np.uint8:
        scale = 255.0
    elif dtype == np.uint16:
        scale = 65535.0
    elif dtype.kind in "fb":
        scale = 1.0
    else:
        raise ValueError(
            f"{path} holds {dtype} values; save images as uint8 (0-255), uint16 (0-65535) or "
            "floats in [0, 1]"
        )
    if labels is not None:
        labels = _label_tensor(np.asarray(labels), len(images), path)
    return _ArraySource(path, images, scale), labels


def _hdf5_arrays(path: Path) -> tuple[Any, Any]:
    try:
        import h5py
    except ImportError as err:
        raise ValueError(f"reading {path} needs h5py: pip install h5py") from err
    file = h5py.File(path, "r")
    arrays = {name: item for name, item in file.items() if isinstance(item, h5py.Dataset)}
    images = _named_array(path, _IMAGE_KEYS, arrays, "images")
    labels = _named_array(path, _LABEL_KEYS, arrays, "labels")
    return images, None if labels is None else labels[()]


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def _label_tensor(values: np.ndarray, count: int, path: Path) -> Tensor:
    """Integer labels ``[count]`` >= 0 from ``values``, checked; the message names ``path``."""
    if values.shape != (count,):
        raise ValueError(
            f"{path} holds labels of shape {list(values.shape)}; expected one per image, [{count}]"
        )
    if values.dtype.kind not in "iu" or (count and int(values.min()) < 0):
        raise ValueError(f"{path}: labels must be integers >= 0, got {values.dtype} values")
    return torch.from_numpy(values.astype(np.int64))


def _csv_labels(path: Path, names: list[str], root: Path) -> tuple[Tensor, list[str] | None]:
    """Labels of the files ``names`` (relative to ``root``) from CSV ``path`` (``file,label``);
    class names are numbered in sorted order and returned, integer labels are kept."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read {path} as a CSV of file,label rows: {err}") from err
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if "file" not in header or "label" not in header:
        raise ValueError(f"{path} must start with a header row naming columns file and label")
    file_col, label_col = header.index("file"), header.index("label")
    wanted = {name: i for i, name in enumerate(names)}
    found: dict[int, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(file_col, label_col) or not row[label_col].strip():
            raise ValueError(f"{path} line {line} has no label: {','.join(row)!r}")
        name = Path(row[file_col].strip()).as_posix()
        if name not in wanted:
            raise ValueError(f"{path} line {line} names {name}, which is not an image in {root}")
        if wanted[name] in found:
            raise ValueError(f"{path} line {line} labels {name} a second time")
        found[wanted[name]] = row[label_col].strip()
    missing = [names[i] for i in range(len(names)) if i not in found]
    if missing:
        raise ValueError(
            f"{root / missing[0]} has no label in {path} ({len(missing)} of {len(names)} images "
            "have none); every image needs one"
        )
    texts = [found[i] for i in range(len(names))]
    try:
        values = [int(text) for text in texts]
    except ValueError:
        classes = sorted(set(texts))
        number = {name: i for i, name in enumerate(classes)}
        return torch.tensor([number[t] for t in texts], dtype=torch.int64), classes
    if min(values) < 0:
        raise ValueError(f"{path}: integer labels must be >= 0, got {min(values)}")
    return torch.tensor(values, dtype=torch.int64), None


def _read_labels(path: Path, source: _Source, root: Path) -> tuple[Tensor, list[str] | None]:
    """The labels in file ``path`` for the items of ``source``."""
    if not path.is_file():
        raise FileNotFoundError(f"no such labels file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if not isinstance(source, _FolderSource):
            raise ValueError(
                f"{path}: a CSV of file,label rows labels the files of a folder; label an array "
                "with a .npy of one integer per item"
            )
        names = [f.relative_to(root).as_posix() for f in source.files]
        return _csv_labels(path, names, root)
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"cannot read {path} as a .npy array of labels: {err}") from err
        return _label_tensor(values, len(source), path), None
    raise ValueError(
        f"{path}: labels come as a .csv (file,label) or a .npy of one integer per item"
    )


# --------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------


def _cover_size(native: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The size an ``native`` image is scaled to so that it covers ``target``, aspect kept."""
    (h, w), (th, tw) = native, target
    scale = max(th / h, tw / w)
    return max(th, round(h * scale)), max(tw, round(w * scale))


class ImageFileDataset(Dataset[tuple[Tensor, Tensor]]):
    """Images of a user's folder or array file (:func:`open_image_data`), decoded per batch.

    ``dataset[i]`` gives ``x [C, H, W]``, ``y []``; ``dataset[idx]`` with a 1-D tensor, list or
    array of ``B`` positions (or a slice) gives ``x [B, C, H, W]`` float32 in [0, 1] and ``y
    [B]`` int64 (``-1`` where there are no labels). A view made by :meth:`subset` shares the
    files; :meth:`load_into_memory` decodes its items once.

    Attributes:
        image_shape: ``(C, H, W)`` of every item.
        labels: int64 ``[len]``, or ``None``.
        num_classes: classes of the whole source (``None`` without labels).
        classes: the class names where labels were names or subfolders, else ``None``.
        name: the file or folder's name, for messages and run names.
        crop: ``"center"`` or ``"random"`` (a window drawn per item and epoch).
    """

    def __init__(
        self,
        source: _Source,
        labels: Tensor | None,
        size: tuple[int, int] | None,
        crop: Crop = "center",
        seed: int = 0,
        items: Tensor | None = None,
        classes: list[str] | None = None,
    ) -> None:
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        self.source, self.seed, self.crop, self.classes = source, seed, crop, classes
        self.items = torch.arange(len(source)) if items is None else items.long()
        self._all_labels = labels
        self.labels = None if labels is None else labels[self.items]
        self.num_classes = None if labels is None else int(labels.max()) + 1
        if size is None:
            size = source.native_size(0)
            for item in range(len(source)):
                if source.native_size(item) != size:
                    h, w = source.native_size(item)
                    raise ValueError(
                        f"{source.describe(item)} is {h}x{w} pixels (HxW), but "
                        f"{source.describe(0)} is {size[0]}x{size[1]}: give a size (--size) to "
                        "resize them all to one"
                    )
        self.size = (int(size[0]), int(size[1]))
        self.image_shape = (source.channels, *self.size)
        self.name = Path(os.path.abspath(source.path)).stem or "data"
        self.epoch = 0
        self._images: Tensor | None = None  # final images, where the crop is deterministic
        self._covers: list[Tensor] | None = None  # scaled, uncropped images (random crops)

    # -- views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    @property
    def random_crops(self) -> bool:
        """Whether the window of some item is drawn at random (else every crop is fixed)."""
        if self.crop != "random":
            return False
        return any(self._cover(int(i)) != self.size for i in self.items)

    @property
    def in_memory(self) -> bool:
        """Whether the items were decoded into memory (:meth:`load_into_memory`)."""
        return self._images is not None or self._covers is not None

    @property
    def nbytes(self) -> int:
        """Bytes the items take in memory as float32 at their final size."""
        return len(self) * math.prod(self.image_shape) * 4

    def subset(
        self, positions: Tensor | Sequence[int], crop: Crop | None = None
    ) -> ImageFileDataset:
        """A view of the items at ``positions`` (of this view), with another ``crop`` if given;
        it shares the files, not what :meth:`load_into_memory` holds."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        return ImageFileDataset(
            self.source,
            self._all_labels,
            self.size,
            crop or self.crop,
            self.seed,
            self.items[positions],
            self.classes,
        )

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose random crops the next batches get (the training loader sets it)."""
        self.epoch = int(epoch)

    def load_into_memory(self, budget: int = IN_MEMORY_BYTES) -> bool:
        """Decode every item once and keep it, where they take at most ``budget`` bytes
        (:attr:`nbytes`); returns whether they are now in memory."""
        if self.in_memory:
            return True
        if self.nbytes > budget:
            return False
        if self.random_crops:
            covers: list[Tensor] = []
            for chunk in self.items.split(256):
                covers.extend(self._read_covers(chunk.numpy()))
            self._covers = covers
        else:
            positions = torch.arange(len(self))
            self._images = torch.cat([self._decode(chunk) for chunk in positions.split(256)])
        return True

    # -- reading -----------------------------------------------------------------------------
    def _cover(self, item: int) -> tuple[int, int]:
        native = self.source.native_size(item)
        return native if native == self.size else _cover_size(native, self.size)

    def _read_covers(self, items: np.ndarray) -> list[Tensor]:
        """Items ``items`` scaled to cover the final size (not cropped)."""
        out = []
        for item, image in zip(items.tolist(), self.source.read(items), strict=True):
            cover = self._cover(item)
            if tuple(image.shape[1:]) != cover:
                image = F.interpolate(
                    image[None], size=cover, mode="bicubic", antialias=True, align_corners=False
                )[0].clamp_(0, 1)
            out.append(image)
        return out

    def _window(self, image: Tensor, item: int) -> Tensor:
        """The final ``H × W`` window of a covering image."""
        (h, w), (th, tw) = image.shape[1:], self.size
        if (h, w) == (th, tw):
            return image
        if self.crop == "random":
            rng = np.random.default_rng([self.seed % 2**32, self.epoch, item])
            top, left = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
        else:
            top, left = (h - th) // 2, (w - tw) // 2
        return image[:, top : top + th, left : left + tw]

    def _decode(self, positions: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` of the items at ``positions`` of this view."""
        if self._images is not None:
            return self._images[positions]
        items = self.items[positions]
        if self._covers is not None:
            covers = [self._covers[p] for p in positions.tolist()]
        else:
            covers = self._read_covers(items.numpy())
        windows = [self._window(c, i) for c, i in zip(covers, items.tolist(), strict=True)]
        if not windows:
            return torch.empty((0, *self.image_shape))
        return torch.stack(windows).contiguous()

    def __getitem__(self, index: Any) -> tuple[Tensor, Tensor]:
        """One item (an int) or a batch (a 1-D integer sequence, a boolean mask or a slice)."""
        if isinstance(index, int | np.integer):
            x, y = self[torch.tensor([int(index)])]
            return x[0], y[0]
        if isinstance(index, slice):
            positions = torch.arange(len(self))[index]
        else:
            positions = torch.as_tensor(index)
            if positions.dtype == torch.bool:
                positions = torch.nonzero(positions).squeeze(1)
            elif positions.ndim == 0 and not positions.is_floating_point():
                return self[int(positions)]
            elif positions.numel() == 0:
                positions = positions.long()
            if positions.ndim != 1 or positions.is_floating_point():
                raise TypeError(
                    "index must be an int, a slice or a 1-D integer/boolean sequence, got "
                    f"{positions.dtype} of shape {tuple(positions.shape)}"
                )
        positions = positions.long()
        if positions.numel() and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} items")
        positions = positions % max(len(self), 1)
        x = self._decode(positions)
        if self.labels is None:
            y = torch.full((len(positions),), -1, dtype=torch.int64)
        else:
            y = self.labels[positions]
        return x, y

    def __repr__(self) -> str:
        return (
            f"ImageFileDataset(path={str(self.source.path)!r}, size={len(self)}, "
            f"image_shape={self.image_shape}, labels={self.labels is not None}, "
            f"crop={self.crop!r}, in_memory={self.in_memory})"
        )


def _parse_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    sizes = [size] if isinstance(size, int) else list(size)
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise ValueError(f"size must be one size S or two (H, W), each >= 1; got {sizes}")
    return (int(sizes[0]), int(sizes[-1]))


def open_image_data(
    path: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None = None,
    size: int | Sequence[int] | None = None,
    crop: Crop = "center",
    seed: int = 0,
) -> ImageFileDataset:
    """The images of a folder or an array file (see the module docstring), not yet decoded.

    Args:
        path: a folder of PNG/JPEG/TIFF files (or of class subfolders of them), or a
            ``.npy``/``.npz``/``.h5``/``.hdf5`` array ``[N, C, H, W]`` or ``[N, H, W]``.
        labels: a CSV of ``file,label`` rows (a folder's files) or a ``.npy`` of N integer
            labels; default: the class subfolders, the ``labels``/``y`` array of an .npz or
            HDF5 file, else none.
        size: ``S`` or ``(H, W)``: scale every image to cover it, then cut it out; ``None``:
            the images must share one size.
        crop: which window ``size`` keeps: ``"center"``, or ``"random"`` (per item and epoch).
        seed: seed of the random windows.

    Raises:
        FileNotFoundError: ``path`` or ``labels`` does not exist.
        ValueError: an unreadable or mismatched file, an unknown file type, bad labels; the
            message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image folder or array file: {path}")
    classes: list[str] | None = None
    if path.is_dir():
        source, found_labels, classes = _folder_source(path)
    elif path.suffix.lower() in ARRAY_SUFFIXES:
        source, found_labels = _array_source(path)
    else:
        raise ValueError(
            f"{path} is neither a folder of images nor an array file ({'/'.join(ARRAY_SUFFIXES)})"
        )
    if labels is not None:
        found_labels, classes = _read_labels(Path(labels), source, path)
    return ImageFileDataset(source, found_labels, _parse_size(size), crop, seed, classes=classes)


def split_positions(count: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(train, held_out)``: sorted positions ``0 … count − 1``, ``round(count ·
    val_fraction)`` of them held out, chosen by ``seed`` alone (disjoint, together all)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    held = round(count * val_fraction)
    if held < 1 or held > count - 1:
        raise ValueError(
            f"val_fraction {val_fraction} of {count} images holds out {held}; need at least one "
            "image for validation and one for training"
        )
    order = np.random.default_rng([seed % 2**32, SPLIT_SALT]).permutation(count)
    held_out = torch.from_numpy(np.sort(order[:held]))
    train = torch.from_numpy(np.sort(order[held:]))
    return train, held_out


def open_image_splits(
    path: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None = None,
    size: int | Sequence[int] | None = None,
    crop: Crop = "center",
    val_fraction: float = 0.1,
    seed: int = 0,
    val_size: int | None = None,
    memory_budget: int | None = None,
) -> tuple[ImageFileDataset, ImageFileDataset]:
    """``(train, held_out)`` views of :func:`open_image_data`: a ``val_fraction`` held out by
    ``seed`` (:func:`split_positions`), of which the first ``val_size`` are kept (all when
    ``None``); the held-out views crop at the centre. Each view is decoded into memory where
    it takes at most ``memory_budget`` bytes (default :data:`IN_MEMORY_BYTES`), else it is
    read from disk per batch."""
    data = open_image_data(path, labels, size, crop, seed)
    train_positions, held_positions = split_positions(len(data), val_fraction, seed)
    if val_size is not None:
        held_positions = held_positions[:val_size]
    train = data.subset(train_positions)
    held_out = data.subset(held_positions, crop="center")
    budget = IN_MEMORY_BYTES if memory_budget is None else memory_budget
    for part in (train, held_out):
        part.load_into_memory(budget)
    return train, held_out


class BinarizedImages(Dataset[tuple[Tensor, Tensor]]):
    """Binary images drawn from the grey levels of ``images`` (an :class:`ImageFileDataset`)
    read as Bernoulli probabilities: pixel ``x`` becomes 1 with probability ``x``.

    ``dynamic=True`` (training): item ``i`` of epoch ``e`` is drawn from ``(seed, e, i)``, a
    fresh draw in every epoch that does not depend on the batch it comes in, nor on the global
    random state; ``dynamic=False`` (held out): item ``i`` is drawn once from
    ``(HELD_OUT_BINARIZE_SEED, i)``, the same bits at every access. ``i`` is the item's number
    in its folder or array, so views of one source agree. Pixels at 0 or 1 stay as they are.

    ``view[idx] -> (x [B, C, H, W] in {0, 1}, y [B])`` as :class:`ImageFileDataset` indexes;
    :attr:`grey_levels` is the wrapped data set (the probabilities).
    """

    def __init__(self, images: ImageFileDataset, dynamic: bool, seed: int = 0) -> None:
        self.grey_levels, self.dynamic, self.seed = images, dynamic, int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.grey_levels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.grey_levels.image_shape

    @property
    def labels(self) -> Tensor | None:
        return self.grey_levels.labels

    @property
    def num_classes(self) -> int | None:
        return self.grey_levels.num_classes

    @property
    def name(self) -> str:
        return self.grey_levels.name

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose draws (and random crops) the next batches get."""
        self.epoch = int(epoch)
        self.grey_levels.set_epoch(epoch)

    def _seed(self, item: int) -> list[int]:
        if self.dynamic:
            return [self.seed % 2**32, BINARIZE_SALT, self.epoch, item]
        return [HELD_OUT_BINARIZE_SEED, BINARIZE_SALT, item]

    def __getitem__(self, index: Any) -> tuple[Tensor, Tensor]:
        """One item (an int) or a batch (a 1-D integer sequence, a boolean mask or a slice)."""
        if isinstance(index, int | np.integer):
            x, y = self[torch.tensor([int(index)])]
            return x[0], y[0]
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        positions = torch.as_tensor(index)
        if positions.ndim == 0 and not positions.is_floating_point():
            return self[int(positions)]
        if positions.dtype == torch.bool:
            positions = torch.nonzero(positions).squeeze(1)
        x, y = self.grey_levels[positions]  # checks the index
        positions = positions.long().reshape(-1) % max(len(self), 1)
        items = self.grey_levels.items[positions].tolist()
        probabilities = x.numpy()
        bits = np.empty_like(probabilities)
        for row, item in enumerate(items):
            uniform = np.random.default_rng(self._seed(item)).random(
                probabilities.shape[1:], dtype=np.float32
            )
            bits[row] = uniform < probabilities[row]
        return torch.from_numpy(bits), y

    def __repr__(self) -> str:
        kind = "dynamic" if self.dynamic else "fixed"
        return f"BinarizedImages({self.grey_levels!r}, {kind})"
