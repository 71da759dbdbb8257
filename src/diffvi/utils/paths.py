"""Where diffvi keeps files of its own on the user's machine."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder of diffvi, ``${XDG_CACHE_HOME:-~/.cache}/diffvi``: downloaded and
    converted data files, named models (``models/``), feature classifiers. A relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG specification asks."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "diffvi"
