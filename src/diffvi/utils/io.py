"""Atomic file writes: a kill or an error mid-write never leaves a truncated file behind."""

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
    the temporary file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=path.suffix
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


# Temporary files of atomic_write start with this; remove_stale_temporaries finds them.
TEMP_PREFIX = "."


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
