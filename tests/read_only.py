"""A folder that refuses to be written, for the tests of outputs that cannot be written.

``chmod 555`` makes one for every user but root, whom permissions do not stop. Under root
(containers, CI) the writes under the folder are refused as a read-only file system refuses
them (``EROFS``), by wrapping the calls that create files and folders: ``os.open`` with a write
flag (``tempfile.mkstemp`` too), ``os.mkdir`` (``Path.mkdir``) and ``open`` in a writing mode
(``Path.open``, ``Path.write_text``).
"""

import builtins
import errno
import io
import os
from pathlib import Path

import pytest

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def make_read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Create ``folder`` and make everything under it unwritable; undo with
    :func:`make_writable` (the monkeypatches end with the test)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return folder
    root = os.path.abspath(folder)

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return False
        try:
            return os.path.abspath(os.fsdecode(path)).startswith(root + os.sep)  # type: ignore[arg-type]
        except TypeError:
            return False

    def refuse(path: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))  # type: ignore[arg-type]

    real_os_open, real_mkdir, real_open = os.open, os.mkdir, builtins.open

    def os_open(path, flags, *args, **kwargs):
        if flags & _WRITE_FLAGS and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if inside(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    return folder


def make_writable(folder: Path) -> None:
    """Give ``folder`` its write permission back (so that pytest can remove it)."""
    folder.chmod(0o755)
