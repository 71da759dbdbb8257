"""Where diffvi keeps files of its own on the user's machine, and where it finds saved models.

A saved model is a folder with ``model.json`` (its ``kind`` and how to rebuild it) and
``model.safetensors`` (its weights). Named models (``diffvi.load("mnist")``) are looked up, in
order, in ``$DIFFVI_MODELS``, the ``models/`` folder of a source checkout, ``$DIFFVI_DATA/models``
and the user cache (``~/.cache/diffvi/models``).
"""

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder of diffvi, ``${XDG_CACHE_HOME:-~/.cache}/diffvi``: downloaded and
    converted data files, named models (``models/``), feature classifiers. A relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG specification asks."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "diffvi"


MODEL_SPEC, MODEL_WEIGHTS = "model.json", "model.safetensors"


def model_search_path() -> list[Path]:
    """Folders searched for named models, in order."""
    roots = []
    if os.environ.get("DIFFVI_MODELS"):
        roots.append(Path(os.environ["DIFFVI_MODELS"]))
    checkout = Path(__file__).resolve().parents[3] / "models"
    if checkout.is_dir():
        roots.append(checkout)
    if os.environ.get("DIFFVI_DATA"):
        roots.append(Path(os.environ["DIFFVI_DATA"]) / "models")
    roots.append(cache_dir() / "models")
    return roots


def find_model(name_or_path: str | os.PathLike[str]) -> Path:
    """The folder of a saved model: a folder with ``model.json``, a training run (its
    ``export/``), or a name looked up on :func:`model_search_path`."""
    path = Path(name_or_path)
    for candidate in (path, path / "export"):
        if (candidate / MODEL_SPEC).is_file():
            return candidate
    if path.name == str(name_or_path):  # a bare name
        for root in model_search_path():
            if (root / path / MODEL_SPEC).is_file():
                return root / path
    searched = ", ".join(str(r) for r in model_search_path())
    raise FileNotFoundError(
        f"no model {str(name_or_path)!r}: expected a folder with {MODEL_SPEC} and "
        f"{MODEL_WEIGHTS}, a training run, or a name found in one of: {searched}"
    )
