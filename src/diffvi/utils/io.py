"""Atomic file writes: a kill or an error mid-write never leaves a truncated file behind; and
:func:`ensure_writable`, the check that a command's outputs can be written, made before the
long work that produces them."""

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temporary file next to ``path`` (same suffix, so writers that
    choose the format from the name still work), then rename it onto ``path``. If ``write``
    raises, the temporary file is removed and ``path`` is left as it was. The file is flushed to
    disk before the rename and the folder after it, so a power loss leaves the old file or the
    new one, never an empty one; it gets the mode of a newly created file (the umask's), not
    the temporary file's 0600. A write that fails for an outside cause (no permission, a
    read-only or full file system) raises :class:`NotWritableError` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=path.suffix
        )
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        # the folder that refused: where a file or a folder was being created
        raise write_failure(err, path, Path(err.filename or path).parent) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
            raise write_failure(err, path, path.parent) from None
        raise
    _fsync_folder(path.parent)
    return path


# Temporary files of atomic_write start with this; remove_stale_temporaries finds them.
TEMP_PREFIX = "."


class NotWritableError(OSError):
    """An output that cannot be written: a folder without write permission, a read-only or
    full file system, a file where a folder should be. Its message names the path and why, in
    one line."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
"""The errnos of an output that cannot be written for a cause outside the program: no
permission, a read-only file system, a full disk or quota."""


def write_failure(
    err: OSError,
    path: str | os.PathLike[str] | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> NotWritableError:
    """``err``, raised while writing ``path`` (``err.filename`` where not given) into
    ``folder``, as a :class:`NotWritableError` whose one-line message names the path and the
    cause."""
    target = path if path is not None else err.filename
    place = f"{folder}" if folder is not None else "it"
    why = {
        errno.EACCES: f"{place} is not writable (permission denied)",
        errno.EPERM: f"{place} is not writable (operation not permitted)",
        errno.EROFS: f"{place} is on a read-only file system",
        errno.ENOSPC: "the disk is full (no space left on device)",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.ENOTDIR: "a part of its path is a file, not a folder",
        errno.EISDIR: "it is a folder, not a file",
    }.get(err.errno or 0, err.strerror or str(err))
    failure = NotWritableError(
        f"cannot write {target if target is not None else 'the output'}: {why}"
    )
    failure.errno, failure.filename = err.errno, target
    return failure


def ensure_writable(path: str | os.PathLike[str], folder: bool = False) -> Path:
    """Check that ``path`` can be written, before the work that produces it starts: a file
    (``folder=False``; it may exist, and is replaced) or a folder that files go into
    (``folder=True``; it may exist). A test file is created (and removed) in the nearest folder
    of ``path`` that exists; nothing else is created, so a command that fails later for
    another reason leaves no empty folder behind.

    Raises:
        NotWritableError: the path is a folder where a file is wanted (or a file where a folder
            is), sits under a file, or its folder takes no new file (no permission, a read-only
            or full file system); the message names the path and the cause.
    """
    path = Path(path)
    existing = path
    try:
        if not folder and path.is_dir():
            raise NotWritableError(f"cannot write {path}: it is a folder, not a file")
        existing = path if folder else path.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise NotWritableError(
                f"cannot write {path}: {existing} is a file, not a folder"
                if existing != path
                else f"cannot write into {path}: it is a file, not a folder"
            )
        fd, probe = tempfile.mkstemp(dir=existing, prefix=f"{TEMP_PREFIX}diffvi-write-test.")
        try:
            os.write(fd, b"diffvi")
        finally:
            os.close(fd)
            os.unlink(probe)
    except NotWritableError:
        raise
    except OSError as err:
        raise write_failure(err, path, existing) from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without folder handles (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike[str], name: str) -> list[Path]:
    """Delete what a kill during :func:`atomic_write` of ``folder/name`` left behind (its
    temporary files); returns them."""
    folder = Path(folder)
    stale = sorted(folder.glob(f"{TEMP_PREFIX}{name}.*")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))


def write_float_tiff(path: str | os.PathLike[str], image: Any) -> Path:
    """Save ``image`` (``[C, H, W]`` or ``[H, W]`` array or tensor) as a float32 TIFF, one
    frame per channel, atomically; float values are kept exactly (no rescaling)."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"image must be [C, H, W] or [H, W], got shape {list(array.shape)}")
    frames = [Image.fromarray(np.ascontiguousarray(a)) for a in array]  # float32: mode F

    def write(tmp: Path) -> None:
        frames[0].save(tmp, format="TIFF", save_all=True, append_images=frames[1:])

    return atomic_write(path, write)


def write_png(path: str | os.PathLike[str], image: Any) -> Path:
    """Save one image ``[C, H, W]`` in [0, 1] (a tensor; values outside are clipped) as an 8-bit
    grey (C = 1) or RGB (C = 3) PNG, atomically."""
    import numpy as np
    import torch
    from PIL import Image

    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    array = array[0] if array.shape[0] == 1 else np.ascontiguousarray(array.transpose(1, 2, 0))
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def write_csv(path: str | os.PathLike[str], header: list[str], rows: Any) -> Path:
    """Write ``header`` and ``rows`` (sequences of values) as CSV, atomically."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))
