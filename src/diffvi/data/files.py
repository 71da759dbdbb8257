"""Locate, download and verify data files.

Every data file has a *relative path* such as ``mnist/train-images-idx3-ubyte.gz``; the
layout is the one of the shared data folder, so ``DIFFVI_DATA=/path/to/shared/data`` just
works. A file is looked up, in order, in

1. ``$DIFFVI_DATA/<relative_path>`` (``DIFFVI_DATA`` may hold several folders separated by
   ``os.pathsep``),
2. the user cache ``${XDG_CACHE_HOME:-~/.cache}/diffvi/<relative_path>``,

and only then downloaded into the user cache (unless ``DIFFVI_OFFLINE`` is set to a true
value such as ``1``). Downloads are written atomically: the bytes go to a temporary file in
the destination folder, are checked against the known SHA-256 digest, and only then is the
file moved into place with :func:`os.replace`, so a failed or corrupt download leaves nothing
behind.

Files found locally are checked against the known digest too. The check is remembered
in-process, keyed by (path, size, mtime), so loading a data set twice costs one hash.

Some files are not distributed in our layout (the statically binarised MNIST ``.npz`` and the
Frey faces ``.npz``); :func:`fetch_derived` downloads their original sources and converts them
in the cache. A converted file cannot be byte-identical to the published one (the zip
container holds time stamps), so its digest is recorded next to it in ``<file>.sha256`` at
conversion time; a file whose digest matches such a record is accepted as well, but only in the
user cache, where diffvi itself converts. A record anywhere else (e.g. in a shared
``$DIFFVI_DATA`` that others can write) is ignored: there the published digest wins.

:func:`read_image_files` reads the user's own PNG/JPEG files (a file or a folder of them) into
an image batch, for commands such as ``diffvi restore``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from diffvi.utils.paths import cache_dir

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image
    from torch import Tensor

__all__ = [
    "ENV_DATA",
    "ENV_OFFLINE",
    "SHA256SUMS",
    "Source",
    "cache_dir",
    "decode_image",
    "fetch",
    "fetch_derived",
    "find_file",
    "image_channels",
    "is_offline",
    "read_image_files",
    "resize_cover",
    "search_dirs",
    "sha256_file",
    "verify_file",
]

ENV_DATA = "DIFFVI_DATA"
"""Environment variable naming folder(s) that hold the data files (searched first)."""

ENV_OFFLINE = "DIFFVI_OFFLINE"
"""Environment variable; a true value (``1``, ``true``, ``yes``, ``on``) forbids downloads."""

SHA256SUMS: dict[str, str] = {
    "binarized_mnist/binarized_mnist.npz": (
        "350243cb824d66d022e0c3e87cac231231668817ff03f5f6d7b6533017d56b4b"
    ),
    "fashion_mnist/t10k-images-idx3-ubyte.gz": (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
    ),
    "fashion_mnist/t10k-labels-idx1-ubyte.gz": (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
    ),
    "fashion_mnist/train-images-idx3-ubyte.gz": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
    ),
    "fashion_mnist/train-labels-idx1-ubyte.gz": (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
    ),
    "frey_faces/frey_faces.npz": (
        "3c70375e0a9c4751ad49ad5f1f692bd094c46f133cf4aa8ea77d1cb14e1efcd1"
    ),
    "mnist/t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "mnist/t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
    "mnist/train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "mnist/train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
}
"""SHA-256 of every published data file, keyed by relative path (``shared/data/SHA256SUMS``)."""

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
_SIDECAR_SUFFIX = ".sha256"

# (resolved path, size, mtime_ns) -> hex digest of the file's content.
_DIGESTS: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class Source:
    """One original file a derived file is built from.

    Attributes:
        relative_path: where the file lives in the data layout (searched like any file).
        url: where to download it from.
        sha256: its expected SHA-256 digest, or ``None`` when no published digest exists.
    """

    relative_path: str
    url: str
    sha256: str | None


def is_offline() -> bool:
    """Whether downloads are forbidden (``DIFFVI_OFFLINE`` set to a true value)."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def search_dirs() -> list[Path]:
    """Folders searched for data files, in order: each ``$DIFFVI_DATA`` entry, then the cache."""
    dirs = [Path(p).expanduser() for p in os.environ.get(ENV_DATA, "").split(os.pathsep) if p]
    return [*dirs, cache_dir()]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 hex digest of a file, remembered in-process by (path, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        _DIGESTS[key] = digest
    return digest


def _recorded_digest(path: Path) -> str | None:
    """The digest recorded in ``<path>.sha256`` when diffvi converted the file in the user
    cache; ``None`` for files elsewhere, whose record nobody vouches for."""
    if not path.resolve().is_relative_to(cache_dir().resolve()):
        return None
    sidecar = path.with_name(path.name + _SIDECAR_SUFFIX)
    try:
        text = sidecar.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return text[0].lower() if text else None


def verify_file(path: str | os.PathLike[str], sha256: str | None) -> Path:
    """Check a file's SHA-256 digest.

    Args:
        path: the file.
        sha256: the expected hex digest; ``None`` skips the check.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the digest differs from ``sha256`` (and, in the user cache, from the digest
            recorded in ``<path>.sha256`` by a local conversion). The message names the
            file, the expected and the actual digest.
    """
    path = Path(path)
    if sha256 is None:
        return path
    actual = sha256_file(path)
    if actual == sha256.lower():
        return path
    recorded = _recorded_digest(path)
    if recorded is not None and actual == recorded:
        return path
    extra = f" (nor the digest {recorded} recorded at conversion)" if recorded else ""
    raise ValueError(
        f"SHA-256 mismatch for {path}: expected {sha256.lower()}{extra}, found {actual}. "
        "The file is corrupt or a different version; delete it or point "
        f"{ENV_DATA} to a good copy."
    )


def _check_relative(relative_path: str) -> PurePosixPath:
    rel = PurePosixPath(relative_path)
    if not relative_path or rel.is_absolute() or ".." in rel.parts:
        raise ValueError(
            f"relative_path must be a relative path inside the data folder, got {relative_path!r}"
        )
    return rel


def _candidates(relative_path: str) -> list[Path]:
    rel = _check_relative(relative_path)
    return [d.joinpath(*rel.parts) for d in search_dirs()]


def find_file(relative_path: str, sha256: str | None = None) -> Path | None:
    """Find a data file locally (``$DIFFVI_DATA``, then the cache); never downloads.

    Args:
        relative_path: path in the data layout, e.g. ``"mnist/t10k-labels-idx1-ubyte.gz"``.
        sha256: expected digest of the file; checked when given.

    Returns:
        The first existing file, or ``None`` when there is none.

    Raises:
        ValueError: the first file found has the wrong digest (see :func:`verify_file`).
    """
    for path in _candidates(relative_path):
        if path.is_file():
            return verify_file(path, sha256)
    return None


def _not_found(relative_path: str, urls: Sequence[str], reason: str) -> FileNotFoundError:
    places = ", ".join(str(p) for p in _candidates(relative_path))
    env = "" if os.environ.get(ENV_DATA) else f" ({ENV_DATA} is not set)"
    links = ", ".join(urls)
    return FileNotFoundError(
        f"data file {relative_path!r} not found. Searched{env}: {places}. Download from: "
        f"{links}. {reason}. Set {ENV_DATA} to a folder holding {relative_path}, or allow the "
        f"download (unset {ENV_OFFLINE})."
    )


class _Progress:
    """A one-line download progress report on stderr (updated in place on a terminal)."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label = label
        self.total = total
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.done = 0
        self._write(f"Downloading {label}" + (f" ({total / 1e6:.1f} MB)" if total else ""))

    def _write(self, text: str, end: str = "\n") -> None:
        sys.stderr.write(text + end)
        sys.stderr.flush()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.last > 0.2:
            self.last = now
            pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
            self._write(f"\r  {self.done / 1e6:8.1f} MB{pct}", end="")

    def close(self) -> None:
        prefix = "\r" if self.tty else ""
        self._write(f"{prefix}  {self.done / 1e6:8.1f} MB done: {self.label}")


def _download(url: str, dest: Path, sha256: str | None) -> Path:
    """Download ``url`` to ``dest`` atomically, checking the digest before moving into place.

    Raises:
        urllib.error.URLError, OSError: network or file-system errors (nothing is left behind).
        ValueError: the downloaded bytes have the wrong digest (nothing is left behind).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "diffvi"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=_TIMEOUT_S) as r:
            headers = getattr(r, "headers", None)
            length = headers.get("Content-Length") if headers is not None else None
            progress = _Progress(url, int(length) if length and length.isdigit() else None)
            while chunk := r.read(_CHUNK):
                out.write(chunk)
                h.update(chunk)
                progress.update(len(chunk))
            progress.close()
        actual = h.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise ValueError(
                f"SHA-256 mismatch for {dest.name} downloaded from {url}: "
                f"expected {sha256.lower()}, found {actual}. The file was not saved."
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def fetch(relative_path: str, url: str, sha256: str | None) -> Path:
    """Find a data file locally, or download it into the user cache.

    Looks in ``$DIFFVI_DATA/<relative_path>``, then in
    ``${XDG_CACHE_HOME:-~/.cache}/diffvi/<relative_path>``, and only then downloads ``url``
    there (atomically, checking ``sha256``).

    Args:
        relative_path: path in the data layout, e.g. ``"mnist/train-images-idx3-ubyte.gz"``.
        url: where to download the file from.
        sha256: the expected SHA-256 hex digest, or ``None`` when unknown (no check).

    Returns:
        The path of a verified local copy.

    Raises:
        ValueError: a file (found or downloaded) has the wrong digest; the message names the
            file, the expected and the actual digest.
        FileNotFoundError: the file is nowhere locally and cannot be downloaded
            (``DIFFVI_OFFLINE`` set, or a network error); the message lists every folder
            searched and the URL.
    """
    found = find_file(relative_path, sha256)
    if found is not None:
        return found
    if is_offline():
        raise _not_found(relative_path, [url], f"Downloads are disabled ({ENV_OFFLINE} is set)")
    dest = _candidates(relative_path)[-1]
    try:
        return _download(url, dest, sha256)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise _not_found(relative_path, [url], f"The download failed: {err}") from err


def fetch_derived(
    relative_path: str,
    sha256: str | None,
    sources: Sequence[Source],
    build: Callable[[list[Path], Path], None],
) -> Path:
    """Find a derived data file locally, or build it in the cache from downloaded sources.

    Used for files whose published form differs from ours (e.g. text ``.amat`` or ``.mat``
    originals of an ``.npz``). The lookup is the one of :func:`fetch`. When the file is
    missing, each source is found locally or downloaded (into a temporary folder in the cache,
    removed afterwards), ``build(source_paths, out_path)`` writes the derived file to a
    temporary path, its digest is recorded in ``<file>.sha256`` and the file is moved into
    place atomically.

    Args:
        relative_path: path of the derived file in the data layout.
        sha256: digest of the published derived file (a locally built one is accepted through
            its recorded digest instead), or ``None``.
        sources: the original files, in the order ``build`` expects them.
        build: ``build(source_paths, out_path)`` writes the derived file to ``out_path``.

    Returns:
        The path of a verified local copy.

    Raises:
        ValueError: a file has the wrong digest, or ``build`` rejected a source.
        FileNotFoundError: the file is missing and a source cannot be found or downloaded.
    """
    found = find_file(relative_path, sha256)
    if found is not None:
        return found
    urls = [s.url for s in sources]
    if is_offline():
        raise _not_found(relative_path, urls, f"Downloads are disabled ({ENV_OFFLINE} is set)")
    dest = _candidates(relative_path)[-1]
    dest.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".build", dir=dest.parent))
    try:
        paths = []
        for src in sources:
            path = find_file(src.relative_path, src.sha256)
            if path is None:
                name = PurePosixPath(src.relative_path).name
                try:
                    path = _download(src.url, workdir / name, src.sha256)
                except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                    raise _not_found(relative_path, urls, f"The download failed: {err}") from err
            paths.append(path)
        out = workdir / dest.name
        build(paths, out)
        digest = sha256_file(out)
        sidecar = workdir / (dest.name + _SIDECAR_SUFFIX)
        sidecar.write_text(f"{digest}  {dest.name}\n", encoding="ascii")
        os.replace(sidecar, dest.with_name(dest.name + _SIDECAR_SUFFIX))
        os.replace(out, dest)
        stat = dest.stat()
        _DIGESTS[(str(dest.resolve()), stat.st_size, stat.st_mtime_ns)] = digest
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return dest


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File types :func:`read_image_files` reads (case-insensitive)."""


def read_image_files(
    path: str | os.PathLike[str], image_shape: Sequence[int], resize: bool = False
) -> tuple[Tensor, list[str]]:
    """Read a PNG/JPEG file, or every such file of a folder (sorted by name, not recursive),
    as float32 images ``[N, C, H, W]`` in [0, 1].

    Args:
        path: an image file or a folder of them.
        image_shape: ``(C, H, W)`` wanted: C = 1 grey levels, C = 3 RGB (a grey file is
            repeated over the three channels). Nothing is lost silently: a colour file for
            C = 1 is refused (unless its three channels are equal, a grey image stored as
            RGB), and so is a file with transparent pixels (an alpha channel that is fully
            opaque is dropped).
        resize: bring every file to ``H × W`` with :func:`resize_cover` (scaled, aspect kept,
            to cover ``H × W``; the centre window kept). Without it the files must already be
            ``H × W`` pixels.

    Returns:
        ``(images, names)``: the images and each file's name without its suffix (the full
        name, dots as dashes, where two files share a stem).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no image files, an unreadable file, a file of another size, a colour
            file for C = 1, a file with transparent pixels, or C not in {1, 3}; the message
            names the file and says how to convert it.
    """
    import numpy as np
    import torch

    channels, height, width = (int(s) for s in image_shape)
    if channels not in (1, 3):
        raise ValueError(f"can read grey (C = 1) or RGB (C = 3) images, not C = {channels}")
    files = _image_files(path, IMAGE_SUFFIXES)
    arrays = []
    for file in files:
        array = decode_image(file, channels)
        if resize and array.shape[1:] != (height, width):
            array = resize_cover(torch.from_numpy(array), (height, width)).numpy()
        if array.shape[1:] != (height, width):
            raise ValueError(
                f"{file} is {array.shape[1]}x{array.shape[2]} pixels (HxW), but the prior "
                f"expects {height}x{width} images; resize or crop it first, or let restore do "
                f"it (--resize {height},{width})"
            )
        arrays.append(array)
    return torch.from_numpy(np.stack(arrays)), _file_names(files)


def resize_cover(image: Tensor, size: Sequence[int]) -> Tensor:
    """``image [C, h, w]`` in [0, 1] as ``[C, H, W]`` for ``size = (H, W)``: scaled (bicubic,
    antialiased, aspect ratio kept) to the smallest size that covers ``H × W``, then the
    centre ``H × W`` window (the rule of :mod:`diffvi.data.image_folders`' centre crops)."""
    import torch.nn.functional as F

    (h, w), (th, tw) = image.shape[-2:], (int(size[0]), int(size[1]))
    if (h, w) == (th, tw):
        return image
    scale = max(th / h, tw / w)
    cover = (max(th, round(h * scale)), max(tw, round(w * scale)))
    if cover != (h, w):
        image = F.interpolate(
            image[None], size=cover, mode="bicubic", antialias=True, align_corners=False
        )[0].clamp_(0, 1)
    top, left = (cover[0] - th) // 2, (cover[1] - tw) // 2
    return image[:, top : top + th, left : left + tw].contiguous()


def image_channels(mode: str) -> int:
    """Channels an image of PIL ``mode`` reads as: 1 for grey modes (with or without alpha),
    3 for every other (colour, and palettes, which may hold colours)."""
    return 1 if mode in _GREY_MODES or mode in ("LA", "La", "I;16N") else 3


def decode_image(
    file: str | os.PathLike[str], channels: int, reader: str = "the prior"
) -> np.ndarray:
    """One image file's pixels as float32 ``[channels, H, W]`` in [0, 1].

    8-bit pixels are divided by 255, 16-bit ones (PIL modes ``I;16…``, and ``I`` with values
    up to 65535) by 65535; float pixels (mode ``F``) are kept and must lie in [0, 1]. A grey
    file is repeated over three channels for ``channels`` 3; for ``channels`` 1 a colour file
    is refused unless its channels are equal, and so is a file with transparent pixels (what
    ``reader`` takes is named in that message), or one of several frames.

    Raises:
        ValueError: the file is unreadable, truncated or of such a kind; the message names it.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    file = Path(file)
    try:
        with Image.open(file) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise ValueError(
                    f"{file} holds {frames} frames, one image is read per file: split the "
                    "stack into files, or save it as an array [N, H, W] (.npy)"
                )
            image.load()
            if image.mode.startswith("I") or image.mode == "F":
                array = _wide_pixels(image, file)
            else:
                array = _pixels(image, channels, file, reader).astype(np.float32) / 255
    except Image.DecompressionBombError as err:
        raise ValueError(
            f"{file} is too large to decode ({err}); a real image this size must be tiled "
            "or downscaled first"
        ) from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read {file} as an image: {err}") from err
    if array.ndim == 2:
        array = array[None] if channels == 1 else np.repeat(array[None], 3, axis=0)
    else:
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array, dtype=np.float32)


def _wide_pixels(image: Image.Image, file: Path) -> np.ndarray:
    """The grey pixels of a 16-bit (``I;16…``, or ``I`` up to 65535) or float (``F``) image
    as float32 ``[H, W]`` in [0, 1]."""
    import numpy as np

    array = np.asarray(image, dtype=np.float32)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if image.mode == "F":
        if not (np.isfinite(array).all() and low >= 0 and high <= 1):
            raise ValueError(
                f"{file} holds float pixels in [{low:g}, {high:g}]; float images must lie in "
                "[0, 1] (8-bit and 16-bit files are scaled)"
            )
        return array
    if low < 0 or high > 65535:
        raise ValueError(
            f"{file} holds 32-bit integer pixels in [{low:g}, {high:g}]; save it as an 8-bit "
            "or 16-bit image"
        )
    return array / 65535


# PIL modes that hold one grey channel and no alpha.
_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")


def _pixels(image: Image.Image, channels: int, file: Path, reader: str = "the prior") -> np.ndarray:
    """The pixels of a PIL image as uint8 ``[H, W]`` (``channels`` 1) or ``[H, W, 3]`` (3);
    a ValueError, naming ``file``, what ``reader`` takes and the fix, where converting would
    lose information: a transparent pixel, or colour for a grey (``channels`` 1) reader."""
    import numpy as np

    mode = image.mode
    has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        transparent = int((rgba[..., 3] < 255).sum())
        if transparent:
            raise ValueError(
                f"{file} has {transparent} transparent pixel(s) (alpha < 255), which would be "
                "dropped: flatten it onto a background first, e.g. in Python: "
                "Image.alpha_composite(Image.new('RGBA', im.size, 'black'), "
                "im.convert('RGBA')).convert('RGB')"
            )
        image = image.convert("RGB")  # a fully opaque alpha channel carries nothing
    if channels == 3:
        return np.asarray(image.convert("RGB"))
    if image.mode in _GREY_MODES:
        return np.asarray(image.convert("L"))
    rgb = np.asarray(image.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0]  # a grey image stored as colour: nothing is lost
    raise ValueError(
        f"{file} is a colour image (mode {mode}), but {reader} takes grey images "
        "(1 channel); convert it to grey first if that is what you want, e.g. in Python: "
        "Image.open(path).convert('L').save(new_path) (luminance)"
    )


def _image_files(path: str | os.PathLike[str], suffixes: Sequence[str]) -> list[Path]:
    """``path`` itself, or the files of folder ``path`` with one of ``suffixes``, sorted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image file or folder: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        if not files:
            raise ValueError(f"no {'/'.join(suffixes)} files in {path}")
        return files
    if path.suffix.lower() in suffixes:
        return [path]
    raise ValueError(f"{path} is not a {'/'.join(suffixes)} file")


def _file_names(files: list[Path]) -> list[str]:
    """Each file's name without its suffix (the full name, dots as dashes, on a clash)."""
    stems = [f.stem for f in files]
    return stems if len(set(stems)) == len(stems) else [f.name.replace(".", "-") for f in files]


MEASUREMENT_SUFFIXES = (".png", ".tif", ".tiff")
"""File types :func:`read_measurement_files` reads (case-insensitive)."""
# Integer pixel modes and the value that maps to 1.0.
_FULL_SCALE = {"1": 1.0, "L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0}


def read_measurement_files(
    path: str | os.PathLike[str], channels: int, height: int, width: int
) -> tuple[Tensor, list[str]]:
    """Read measurements — a grey PNG/TIFF per item, or a TIFF of ``channels`` frames (e.g.
    the two defocused intensities of phase imaging) — as float32 ``[N, channels, height,
    width]``. 8-bit and 16-bit pixels are scaled to [0, 1]; float TIFF pixels (mode ``F``, e.g.
    as :func:`~diffvi.utils.io.write_float_tiff` writes) are taken as they are.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no such files, an unreadable file, a file with another number of frames
            or another size (the message says what was expected).
    """
    import numpy as np
    import torch
    from PIL import Image, ImageSequence, UnidentifiedImageError

    files = _image_files(path, MEASUREMENT_SUFFIXES)
    items = []
    for file in files:
        try:
            with Image.open(file) as image:
                frames = []
                for frame in ImageSequence.Iterator(image):
                    if frame.mode in ("F", "I"):
                        frames.append(np.asarray(frame, dtype=np.float32))
                    elif frame.mode in _FULL_SCALE:
                        array = np.asarray(frame, dtype=np.float32)
                        frames.append(array / _FULL_SCALE[frame.mode])
                    else:  # colour, palette or alpha: refused where grey would lose anything
                        grey = _pixels(frame, 1, file, "this model")
                        frames.append(grey.astype(np.float32) / 255)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read {file} as an image: {err}") from err
        if len(frames) != channels:
            raise ValueError(
                f"{file} has {len(frames)} frame(s); this model expects {channels} per "
                "measurement (one grey image, or a multi-frame TIFF)"
            )
        if frames[0].shape != (height, width):
            raise ValueError(
                f"{file} is {frames[0].shape[0]}x{frames[0].shape[1]} pixels (HxW), but this "
                f"model expects {height}x{width} measurements; nothing is resized here"
            )
        items.append(np.stack(frames))
    return torch.from_numpy(np.stack(items).astype(np.float32)), _file_names(files)
