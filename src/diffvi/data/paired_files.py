"""Your own image pairs for CVDM: low-resolution inputs and high-resolution targets read from
files, of any size and any number of channels, for ``diffvi train cvdm --pairs LOW HIGH``.

Sources (:func:`read_pairs`):

- two folders of ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff`` files, paired by file name
  without its suffix (``low/cell1.tif`` with ``high/cell1.tif``; ``cell1.png`` would pair as
  well). Every file must have a partner, and no name may appear twice in a folder. A file is
  one image: PNG/JPEG grey or RGB (:func:`~diffvi.data.files.read_image_files`), TIFF
  ``[H, W]``, ``[C, H, W]`` (frames or pages are channels) or ``[H, W, S]`` (RGB samples).
- two TIFF stacks, item ``i`` of one paired with item ``i`` of the other: ``[N, H, W]`` (N grey
  images), ``[N, C, H, W]`` or ``[N, H, W, S]``; a 2-D TIFF is one image.

TIFFs are read with ``tifffile`` (``pip install 'diffvi[microscopy]'``). Pixel values: 8-bit
divided by 255, 16-bit by 65535, floats as they are; other integer types are refused. With
``normalize="none"`` every value must then lie in [0, 1]; ``"minmax"`` scales each image and
channel to [0, 1] (:func:`~diffvi.data.paired.normalize_images`, the official CVDM code's
per-image min–max), what a restoration applies to its inputs too.

Scale: the high image of every pair must be ``f`` times the low one along both axes, ``f`` an
integer, the same for every pair (inferred, or checked against ``factor``); the channels must
agree. Each error names the file or the pair and what was expected.

Training data (:class:`PairFilesDataModule`): with ``patch`` P every training item is a random
``P × P`` crop of a target (P a multiple of f) and the matching ``P / f`` crop of its input, the
condition ``2 up − 1`` of the crop computed from the input pixels around it alone
(:func:`~diffvi.data.paired.upsample_window`, equal to cropping the upsampled whole image); an
epoch draws ``max(1, round(area / P²))`` crops of each pair (at least a batch in all). A crop is
a function of ``(seed, epoch, item)`` only, so a run resumed at any step draws the crops of an
uninterrupted one. Without ``patch`` every image must have the same size and is used whole.
Pairs whose images take at most :data:`IN_MEMORY_BYTES` (float32) are decoded once and kept;
larger sets are read from disk as their crops are drawn (TIFF stacks memory-mapped where
``tifffile`` can). Validation: ``val_size`` fixed crops (whole images without ``patch``) of the
held-out pairs — a seeded tenth of them from 10 pairs on — else of the training pairs (the
validation figures then are not held-out ones).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from diffvi.data.files import image_channels, read_image_files
from diffvi.data.modules import PAIRED_VAL_BATCH, index_batch_loader, rank_batches
from diffvi.data.paired import normalize_images, upsample, upsample_window

__all__ = [
    "IN_MEMORY_BYTES",
    "PAIR_SUFFIXES",
    "ImagePairs",
    "PairCrops",
    "PairFilesDataModule",
    "held_out_pairs",
    "read_image_set",
    "read_pairs",
]

PAIR_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
"""Files a pair folder may hold (case-insensitive)."""
TIFF_SUFFIXES = (".tif", ".tiff")
IN_MEMORY_BYTES = 1 << 30
"""Pairs whose images (float32) take at most this many bytes are decoded once and kept."""
MIN_HELD_OUT = 10
"""From this many pairs on, a tenth of them (at least one) is held out for validation."""
VAL_SALT = 104_729
"""Mixed into the seeds of the held-out choice and of the validation crops."""


# --------------------------------------------------------------------------------------------
# Reading one image
# --------------------------------------------------------------------------------------------


def _tifffile() -> Any:
    try:
        import tifffile
    except ImportError as err:  # pragma: no cover - the microscopy extra
        raise ImportError(
            "reading TIFF files needs tifffile: pip install 'diffvi[microscopy]'"
        ) from err
    return tifffile


def _scale(array: np.ndarray, where: str) -> np.ndarray:
    """Pixels as float32: 8-bit / 255, 16-bit / 65535, floats and booleans as they are."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise ValueError(
        f"{where} holds {array.dtype} pixels; save it as 8-bit, 16-bit or float images"
    )


def _tiff_array(path: Path, stack: bool) -> tuple[Any, str]:
    """``(array, axes)`` of the first series of a TIFF (memory-mapped for a stack where it
    can be), checked to decode."""
    tifffile = _tifffile()
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            axes = series.axes
            if stack:
                try:
                    return tifffile.memmap(path, mode="r"), axes
                except (ValueError, OSError):
                    pass  # compressed or not contiguous: read it whole
            return series.asarray(), axes
    except Exception as err:  # tifffile raises many kinds on a corrupt file
        raise ValueError(f"cannot read {path} as a TIFF image: {err}") from err


def _chw_shape(shape: Sequence[int], axes: str, where: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of one image stored as ``[H, W]``, ``[C, H, W]`` or ``[H, W, S]``."""
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    if len(shape) == 3:
        return (shape[2], shape[0], shape[1]) if axes.endswith("S") else tuple(shape)  # type: ignore[return-value]
    raise ValueError(
        f"{where} holds a {len(shape)}-D array {list(shape)}; one image per file is "
        "[H, W], [C, H, W] or [H, W, S] (pass two TIFF stacks to pair stacks)"
    )


def _as_chw(array: np.ndarray, axes: str, where: str) -> np.ndarray:
    """One image ``[H, W]``, ``[C, H, W]`` or ``[H, W, S]`` as ``[C, H, W]``."""
    _chw_shape(array.shape, axes, where)
    if array.ndim == 2:
        return array[None]
    return np.moveaxis(array, -1, 0) if axes.endswith("S") else array


def _stack_nchw(array: Any, axes: str, path: Path) -> Any:
    """A stack ``[N, H, W]``, ``[N, C, H, W]`` or ``[N, H, W, S]`` (or one image) as
    ``[N, C, H, W]`` (a view where it can be)."""
    if array.ndim == 2 or (array.ndim == 3 and axes.endswith("S")):
        return _as_chw(np.asarray(array), axes, str(path))[None]
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4:
        return np.moveaxis(array, -1, 1) if axes.endswith("S") else array
    raise ValueError(
        f"{path} holds a {array.ndim}-D array {list(array.shape)}; a stack is [N, H, W], "
        "[N, C, H, W] or [N, H, W, S]"
    )


def _pil_shape(path: Path) -> tuple[int, int, int]:
    """``(C, H, W)`` of a PNG/JPEG from its header (C as :func:`~diffvi.data.files.decode_image`
    reads it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return (image_channels(image.mode), image.size[1], image.size[0])
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read {path} as an image: {err}") from err


@dataclass(frozen=True)
class _Source:
    """One image of a pair: a file, or item ``index`` of a stack file."""

    path: Path
    index: int | None = None

    def describe(self) -> str:
        return str(self.path) if self.index is None else f"{self.path}[{self.index}]"


class _Reader:
    """Decodes the images of :class:`_Source` s; holds the arrays of the stacks it opened."""

    def __init__(self, normalize: str | None) -> None:
        self.normalize = normalize
        self.stacks: dict[Path, Any] = {}

    def open_stack(self, path: Path) -> Any:
        """The stack ``[N, C, H, W]`` of a TIFF file (memory-mapped where it can be)."""
        if path not in self.stacks:
            if path.suffix.lower() not in TIFF_SUFFIXES:
                raise ValueError(f"{path} is not a TIFF stack (.tif/.tiff)")
            self.stacks[path] = _stack_nchw(*_tiff_array(path, stack=True), path)
        return self.stacks[path]

    def shape(self, source: _Source) -> tuple[int, int, int]:
        """``(C, H, W)`` from the file's header (stacks: from the opened array)."""
        if source.index is not None:
            return tuple(self.open_stack(source.path).shape[1:])  # type: ignore[return-value]
        if source.path.suffix.lower() in TIFF_SUFFIXES:
            tifffile = _tifffile()
            try:
                with tifffile.TiffFile(source.path) as tiff:
                    series = tiff.series[0]
                    shape, axes = tuple(series.shape), series.axes
            except Exception as err:
                raise ValueError(f"cannot read {source.path} as a TIFF image: {err}") from err
            return _chw_shape(shape, axes, str(source.path))
        return _pil_shape(source.path)

    def read(self, source: _Source) -> Tensor:
        """The image ``[C, H, W]``, float32, normalised and checked."""
        where = source.describe()
        if source.index is not None:
            array = _scale(np.asarray(self.open_stack(source.path)[source.index]), where)
        elif source.path.suffix.lower() in TIFF_SUFFIXES:
            array = _scale(_as_chw(*_tiff_array(source.path, stack=False), where), where)
        else:
            images, _ = read_image_files(source.path, self.shape(source))
            array = images[0].numpy()
        image = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if not bool(torch.isfinite(image).all()):
            raise ValueError(f"{where} holds NaN or infinite pixels")
        if self.normalize == "none":
            low, high = float(image.min()), float(image.max())
            if low < 0 or high > 1:
                raise ValueError(
                    f"{where} has values in [{low:.4g}, {high:.4g}]; float pixels must lie in "
                    "[0, 1]: rescale the files, or scale each image with --task-option "
                    "normalize=minmax"
                )
        if self.normalize is None:
            return image
        return normalize_images(image[None], self.normalize)[0]


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------


def _files_by_name(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in PAIR_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            raise ValueError(
                f"{files[path.stem]} and {path} share the name {path.stem!r}; pairs are matched "
                "by file name, so each name may appear once per folder"
            )
        files[path.stem] = path
    if not files:
        raise ValueError(f"no {'/'.join(PAIR_SUFFIXES)} files in {folder}")
    return files


def _match_folders(low: Path, high: Path) -> tuple[list[str], list[_Source], list[_Source]]:
    lows, highs = _files_by_name(low), _files_by_name(high)
    for mine, other, folder in ((lows, highs, high), (highs, lows, low)):
        lonely = [mine[name] for name in mine if name not in other]
        if lonely:
            more = f" and {len(lonely) - 3} more" if len(lonely) > 3 else ""
            raise ValueError(
                f"{', '.join(map(str, lonely[:3]))}{more} ha{'s' if len(lonely) == 1 else 've'} "
                f"no partner of the same name in {folder}; pairs are matched by file name"
            )
    names = sorted(lows)
    return names, [_Source(lows[n]) for n in names], [_Source(highs[n]) for n in names]


def _match_stacks(
    low: Path, high: Path, reader: _Reader
) -> tuple[list[str], list[_Source], list[_Source]]:
    n_low, n_high = len(reader.open_stack(low)), len(reader.open_stack(high))
    if n_low != n_high:
        raise ValueError(
            f"{low} holds {n_low} images and {high} holds {n_high}; paired stacks need as many"
        )
    names = [f"{low.stem}-{i:04d}" for i in range(n_low)]
    return names, [_Source(low, i) for i in range(n_low)], [_Source(high, i) for i in range(n_low)]


class ImagePairs:
    """``N`` (low, high) image pairs: ``low [C, h, w]`` and ``high [C, f·h, f·w]``, float32,
    normalised (see the module docstring); made by :func:`read_pairs`.

    Attributes:
        names: one name per pair (the file name, or ``<stack>-<index>``).
        factor: the scale ``f``.
        channels: ``C``.
        low_shapes: ``(h, w)`` of each pair's low image.
    """

    def __init__(
        self,
        names: list[str],
        lows: list[_Source],
        highs: list[_Source],
        low_shapes: list[tuple[int, int]],
        factor: int,
        channels: int,
        reader: _Reader,
    ) -> None:
        self.names, self.factor, self.channels = names, factor, channels
        self.low_shapes = low_shapes
        self._lows, self._highs, self._reader = lows, highs, reader
        self._memory: list[tuple[Tensor, Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def high_shape(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of pair ``index``'s high image."""
        h, w = self.low_shapes[index]
        return h * self.factor, w * self.factor

    @property
    def nbytes(self) -> int:
        """Bytes of every image as float32."""
        area = sum(h * w for h, w in self.low_shapes)
        return 4 * self.channels * area * (1 + self.factor**2)

    @property
    def in_memory(self) -> bool:
        return self._memory is not None

    def describe(self, index: int) -> str:
        """The files of pair ``index``, for messages."""
        return f"{self._lows[index].describe()} and {self._highs[index].describe()}"

    def load_into_memory(self, budget: int = IN_MEMORY_BYTES) -> bool:
        """Decode every pair once and keep it, if they take at most ``budget`` bytes."""
        if self._memory is None and self.nbytes <= budget:
            self._memory = [self._decode(i) for i in range(len(self))]
        return self._memory is not None

    def check(self) -> None:
        """Decode every pair once (errors name the file), keeping nothing."""
        for i in range(len(self)):
            self._decode(i)

    def _decode(self, index: int) -> tuple[Tensor, Tensor]:
        low = self._reader.read(self._lows[index])
        high = self._reader.read(self._highs[index])
        return low, high

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """``(low [C, h, w], high [C, f·h, f·w])`` of pair ``index``."""
        if self._memory is not None:
            return self._memory[index]
        return self._decode(index)


def read_pairs(
    low: str | os.PathLike[str],
    high: str | os.PathLike[str],
    normalize: str = "none",
    factor: int | None = None,
) -> ImagePairs:
    """The pairs of two folders (matched by file name) or two TIFF stacks; headers are read
    and checked, pixels only when asked for (:meth:`ImagePairs.load_into_memory`,
    :meth:`ImagePairs.check`, indexing).

    Args:
        low, high: folders, or TIFF stack files, of the inputs and the targets.
        normalize: ``"none"`` or ``"minmax"`` (see the module docstring).
        factor: the expected scale (``None``: inferred).

    Raises:
        FileNotFoundError: ``low`` or ``high`` does not exist.
        ValueError: unmatched or duplicated names, stacks of different lengths, an unreadable
            file, a pair whose scale is not an integer, differs from the others' or from
            ``factor``, or whose channels differ; the message names the file or pair.
    """
    from diffvi.data.paired import NORMALIZATIONS

    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {normalize!r}")
    low, high = Path(low), Path(high)
    for path in (low, high):
        if not path.exists():
            raise FileNotFoundError(f"no such folder or TIFF stack: {path}")
    if low.is_dir() != high.is_dir():
        raise ValueError(
            f"pairs are two folders or two TIFF stacks, got {low} "
            f"({'a folder' if low.is_dir() else 'a file'}) and {high} "
            f"({'a folder' if high.is_dir() else 'a file'})"
        )
    reader = _Reader(normalize)
    if low.is_dir():
        names, lows, highs = _match_folders(low, high)
    else:
        names, lows, highs = _match_stacks(low, high, reader)
    shapes: list[tuple[int, int]] = []
    channels = first = None
    for lo, hi in zip(lows, highs, strict=True):
        (c, h, w), (ch, hh, ww) = reader.shape(lo), reader.shape(hi)
        pair = f"{lo.describe()} ({c}x{h}x{w}, CxHxW) and {hi.describe()} ({ch}x{hh}x{ww})"
        if c != ch:
            raise ValueError(f"{pair}: the low and high images need the same channels")
        if channels is not None and c != channels:
            raise ValueError(f"{pair}: {c} channel(s), but the first pair has {channels}")
        if hh % h or ww % w or hh // h != ww // w:
            raise ValueError(
                f"{pair}: the high image must be an integer multiple of the low one, the same "
                "along both axes"
            )
        scale = hh // h
        expected = factor if factor is not None else first
        if expected is not None and scale != expected:
            origin = "the task option factor" if factor is not None else "the first pair"
            raise ValueError(f"{pair}: scale {scale}, but {origin} has scale {expected}")
        channels, first = c, scale
        shapes.append((h, w))
    assert channels is not None and first is not None
    return ImagePairs(names, lows, highs, shapes, first, channels, reader)


def read_image_set(
    path: str | os.PathLike[str], channels: int, normalize: str | None = "none"
) -> tuple[Tensor, list[str]]:
    """Images to restore — one file, or every PNG/JPEG/TIFF file of a folder (sorted by name),
    each one image as in :func:`read_pairs` — as float32 ``[N, channels, H, W]``, of any size
    but the same for all; normalised and checked as training pairs are (so ``"none"``
    refuses values outside [0, 1]; ``None`` takes the values as they are).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no such files, an unreadable file, or a file of other channels or another
            size than the first (restore those separately); the message names it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image file or folder: {path}")
    if path.is_dir():
        files = list(_files_by_name(path).values())
    elif path.suffix.lower() in PAIR_SUFFIXES:
        files = [path]
    else:
        raise ValueError(f"{path} is not a {'/'.join(PAIR_SUFFIXES)} file")
    reader = _Reader(normalize)
    images: list[Tensor] = []
    for file in files:
        c, h, w = reader.shape(_Source(file))
        if c != channels:
            raise ValueError(f"{file} has {c} channel(s); this model takes {channels}")
        if images and (h, w) != tuple(images[0].shape[-2:]):
            raise ValueError(
                f"{file} is {h}x{w} pixels (HxW) but {files[0]} is "
                f"{images[0].shape[-2]}x{images[0].shape[-1]}: one call restores images of "
                "one size, restore the others separately"
            )
        images.append(reader.read(_Source(file)))
    names = [f.stem for f in files]
    return torch.stack(images), names


# --------------------------------------------------------------------------------------------
# Training items
# --------------------------------------------------------------------------------------------


def _residual(up: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    condition = 2 * up - 1
    return condition, (2 * high - 1) - condition


class PairCrops(Dataset[tuple[Tensor, Tensor]]):
    """Training items of :class:`ImagePairs`: ``dataset[indices]`` (int64 ``[B]``) gives
    ``(condition [B, C, P, P], target [B, C, P, P])`` in model space (whole ``[B, C, H, W]``
    images without ``patch``).

    Item ``i`` is a crop of pair ``pairs_used[i % len(pairs_used)]`` at a position drawn from
    ``(seed, epoch, i)``, the epoch set by :meth:`set_epoch` (the training loader's,
    :func:`~diffvi.data.modules.index_batch_loader`); there are ``repeats`` items per pair.
    """

    def __init__(
        self,
        pairs: ImagePairs,
        pairs_used: Sequence[int],
        patch: int | None,
        seed: int,
        upsample_mode: str,
        repeats: int = 1,
    ) -> None:
        self.pairs, self.pairs_used = pairs, list(pairs_used)
        self.patch, self.seed, self.upsample_mode = patch, seed, upsample_mode
        self.repeats = repeats
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose crops the items are."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs_used) * self.repeats

    @property
    def x_channels(self) -> int:
        return self.pairs.channels

    @property
    def y_channels(self) -> int:
        return self.pairs.channels

    @property
    def image_size(self) -> int:
        """The side the model trains on: ``patch``, else the smaller side of the images."""
        if self.patch is not None:
            return self.patch
        return min(self.pairs.high_shape(self.pairs_used[0]))

    def crop(self, pair: int, position: np.random.Generator) -> tuple[Tensor, Tensor]:
        """``(condition [C, P, P], target [C, P, P])`` of ``pair`` at a position drawn from
        ``position`` (the whole pair without ``patch``)."""
        low, high = self.pairs[pair]
        factor = self.pairs.factor
        if self.patch is None:
            up = upsample(low[None], factor, self.upsample_mode)[0]
            return _residual(up, high)
        side = self.patch // factor
        row = int(position.integers(0, low.shape[-2] - side + 1))
        col = int(position.integers(0, low.shape[-1] - side + 1))
        top, left = row * factor, col * factor
        up = upsample_window(
            low[None], factor, self.upsample_mode, top, left, self.patch, self.patch
        )[0]
        return _residual(up, high[:, top : top + self.patch, left : left + self.patch])

    def __getitem__(self, indices: Tensor | Sequence[int] | int) -> tuple[Tensor, Tensor]:
        rows = torch.as_tensor(indices, dtype=torch.long).reshape(-1).tolist()
        items = [
            self.crop(
                self.pairs_used[item % len(self.pairs_used)],
                np.random.default_rng([self.seed, self.epoch, item]),
            )
            for item in rows
        ]
        return torch.stack([c for c, _ in items]), torch.stack([t for _, t in items])


def _check_patch(pairs: ImagePairs, patch: int | None) -> None:
    if patch is None:
        sizes = {pairs.high_shape(i) for i in range(len(pairs))}
        if len(sizes) > 1:
            odd = next(i for i in range(len(pairs)) if pairs.high_shape(i) != pairs.high_shape(0))
            raise ValueError(
                f"{pairs.describe(odd)}: target {pairs.high_shape(odd)} differs from "
                f"{pairs.high_shape(0)} of the first pair; whole images must share one size, "
                "train on crops with --patch"
            )
        return
    if patch % pairs.factor:
        raise ValueError(f"--patch {patch} must be a multiple of the scale factor {pairs.factor}")
    small = [i for i in range(len(pairs)) if min(pairs.high_shape(i)) < patch]
    if small:
        i = small[0]
        raise ValueError(
            f"{pairs.describe(i)}: the target is {pairs.high_shape(i)[0]}x"
            f"{pairs.high_shape(i)[1]} pixels, smaller than --patch {patch}"
        )


def held_out_pairs(count: int, seed: int) -> tuple[list[int], list[int] | None]:
    """``(train, held_out)`` pair indices: a seeded tenth (at least one) held out from
    :data:`MIN_HELD_OUT` pairs on, else all for training and ``None``."""
    if count < MIN_HELD_OUT:
        return list(range(count)), None
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed + VAL_SALT))
    held = sorted(order[: math.ceil(count / 10)].tolist())
    return [i for i in range(count) if i not in set(held)], held


class PairFilesDataModule(L.LightningDataModule):
    """Train and validation loaders over your own pairs (see the module docstring).

    Args:
        low, high: folders or TIFF stacks (:func:`read_pairs`).
        batch_size, seed: of the training batches (order and crops).
        val_size: validation crops (whole images without ``patch``: at most that many).
        patch: crop side P of the targets, or ``None`` for whole images.
        data_seed: the held-out pairs and the validation crops.
        options: the ``pairs`` task options (``upsample``, ``normalize``, ``factor``).
        in_memory_bytes: decode and keep the pairs when they take at most this many bytes.
    """

    def __init__(
        self,
        low: str | os.PathLike[str],
        high: str | os.PathLike[str],
        batch_size: int,
        seed: int = 0,
        val_size: int = 64,
        patch: int | None = None,
        data_seed: int = 0,
        options: dict[str, Any] | None = None,
        in_memory_bytes: int = IN_MEMORY_BYTES,
    ) -> None:
        super().__init__()
        options = {"upsample": "bicubic", "normalize": "none", "factor": None, **(options or {})}
        self.batch_size, self.seed = batch_size, seed
        self.pairs = read_pairs(low, high, options["normalize"], options["factor"])
        _check_patch(self.pairs, patch)
        if not self.pairs.load_into_memory(in_memory_bytes):
            self.pairs.check()
        train, held = held_out_pairs(len(self.pairs), data_seed)
        repeats = 1
        if patch is not None:
            area = sum(math.prod(self.pairs.high_shape(i)) for i in train) / len(train)
            repeats = max(1, round(area / patch**2))
        repeats = max(repeats, math.ceil(batch_size / len(train)) if patch is not None else 1)
        if patch is None and len(train) < batch_size:
            raise ValueError(
                f"{len(train)} training pairs, fewer than one batch ({batch_size}); lower "
                "--batch-size, or train on crops with --patch"
            )
        mode = options["upsample"]
        self.train_data = PairCrops(self.pairs, train, patch, seed, mode, repeats)
        val_pairs = held if held is not None else train
        val = PairCrops(self.pairs, val_pairs, patch, data_seed + VAL_SALT, mode)
        count = val_size if patch is not None else min(val_size, len(val_pairs))
        items = [
            val.crop(val_pairs[j % len(val_pairs)], np.random.default_rng([val.seed, j]))
            for j in range(count)
        ]
        self.val_set = TensorDataset(
            torch.stack([c for c, _ in items]), torch.stack([t for _, t in items])
        )
        self.held_out = held is not None

    @property
    def factor(self) -> int:
        return self.pairs.factor

    def train_dataloader(self) -> DataLoader:
        return index_batch_loader(self.train_data, rank_batches(self, len(self.train_data)))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=PAIRED_VAL_BATCH, shuffle=False)
