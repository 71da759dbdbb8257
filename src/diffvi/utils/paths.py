"""Where diffvi keeps files of its own on the user's machine, and where it finds saved models.

A saved model is a folder with ``model.json`` (its ``kind`` and how to rebuild it) and
``model.safetensors`` (its weights). Named models (``diffvi.load("mnist")``) are looked up, in
order, in ``$DIFFVI_MODELS``, the models shipped inside the package (``diffvi/shipped_models``:
the MNIST and Fashion-MNIST priors), ``<each $DIFFVI_DATA folder>/models`` and the user cache
(``~/.cache/diffvi/models``), and never in the current directory: a folder named ``mnist/``
where the user stands does not replace the shipped prior (``./mnist`` names it explicitly).
"""

import os
from importlib import resources
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder of diffvi, ``${XDG_CACHE_HOME:-~/.cache}/diffvi``: downloaded and
    converted data files, named models (``models/``), feature classifiers. A relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG specification asks."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "diffvi"


MODEL_SPEC, MODEL_WEIGHTS = "model.json", "model.safetensors"


def shipped_models_dir() -> Path:
    """The folder of the models installed with the package (package data, the same in a
    checkout and in an installed wheel)."""
    return Path(str(resources.files("diffvi") / "shipped_models"))


def model_search_path() -> list[Path]:
    """Folders searched for named models, in order."""
    roots = [Path(p) for p in os.environ.get("DIFFVI_MODELS", "").split(os.pathsep) if p]
    roots.append(shipped_models_dir())
    data = os.environ.get("DIFFVI_DATA", "")
    roots += [Path(p) / "models" for p in data.split(os.pathsep) if p]
    roots.append(cache_dir() / "models")
    return roots


def is_model_name(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether ``name_or_path`` is a bare model name, looked up on :func:`model_search_path`
    only: a string with no path separator that neither starts with ``.`` nor ends with
    ``.ckpt``. ``Path`` objects and everything else are paths."""
    if not isinstance(name_or_path, str):
        return False
    separators = [s for s in (os.sep, os.altsep, "/") if s]
    return not (
        name_or_path.startswith(".")
        or name_or_path.endswith(".ckpt")
        or any(s in name_or_path for s in separators)
    )


def find_model(name_or_path: str | os.PathLike[str]) -> Path:
    """The folder of a saved model: for a path, a folder with ``model.json`` or a training run
    (its ``export/``); for a bare name (:func:`is_model_name`), the first ``<root>/<name>`` on
    :func:`model_search_path` that holds one."""
    if is_model_name(name_or_path):
        for root in model_search_path():
            if (root / name_or_path / MODEL_SPEC).is_file():
                return root / name_or_path
        searched = ", ".join(str(r) for r in model_search_path())
        raise FileNotFoundError(
            f"no model {name_or_path!r} in {searched} (a folder of the current directory is "
            f"named by its path: ./{name_or_path})"
        )
    path = Path(name_or_path)
    for candidate in (path, path / "export"):
        if (candidate / MODEL_SPEC).is_file():
            return candidate
    raise FileNotFoundError(
        f"no model at {str(name_or_path)!r}: expected a folder with {MODEL_SPEC} and "
        f"{MODEL_WEIGHTS}, or a training run (its export/)"
    )
