"""Diffusion models as files: a JSON spec (how to rebuild) + safetensors (the weights), loadable
by folder or by name.

A spec is plain data::

    {"kind": "diffusion", "schedule": {"name": "learned", ...}, "denoiser": {"name": "unet", ...},
     "loss_type": "vdm", "image": true, "event_shape": [1, 28, 28], "metadata": {...}}

Named models (``load_diffusion("mnist")``) are looked up, in order, in ``$DIFFVI_MODELS``, the
``models/`` folder of a source checkout, ``$DIFFVI_DATA/models`` and the user cache
(``~/.cache/diffvi/models``); each is a folder ``<name>/`` holding ``model.safetensors`` and
``model.json``.
"""

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.schedules import build_schedule
from diffvi.nn import MLPDenoiser, UNet
from diffvi.utils.io import atomic_write, write_json
from diffvi.utils.paths import cache_dir

DENOISERS = {"unet": UNet, "mlp": MLPDenoiser}
WEIGHTS, SPEC = "model.safetensors", "model.json"


def build_diffusion_model(spec: dict[str, Any]) -> DiffusionModel:
    """A freshly initialised :class:`DiffusionModel` from a spec (see the module docstring)."""
    if spec.get("kind") != "diffusion":
        raise ValueError(f"not a diffusion-model spec (kind={spec.get('kind')!r})")
    schedule_args = dict(spec["schedule"])
    denoiser_args = dict(spec["denoiser"])
    name = denoiser_args.pop("name")
    if name not in DENOISERS:
        raise ValueError(f"denoiser must be one of {sorted(DENOISERS)}, got {name!r}")
    return DiffusionModel(
        build_schedule(schedule_args.pop("name"), **schedule_args),
        DENOISERS[name](**denoiser_args),
        loss_type=spec.get("loss_type", "simple"),
        image=spec.get("image", True),
    )


def save_diffusion(model: DiffusionModel, spec: dict[str, Any], folder: str | Path) -> Path:
    """Write ``model.safetensors`` and ``model.json`` to ``folder`` (atomically); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    write_json(folder / SPEC, spec)
    return folder


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


def find_diffusion(name_or_path: str | Path) -> Path:
    """The folder of a saved model: a folder with ``model.json``, a training run (its
    ``export/``), or a name looked up on :func:`model_search_path`."""
    path = Path(name_or_path)
    for candidate in (path, path / "export"):
        if (candidate / SPEC).is_file():
            return candidate
    if path.name == str(name_or_path):  # a bare name
        for root in model_search_path():
            if (root / path / SPEC).is_file():
                return root / path
    searched = ", ".join(str(r) for r in model_search_path())
    raise FileNotFoundError(
        f"no diffusion model {str(name_or_path)!r}: expected a folder with {SPEC} and {WEIGHTS}, "
        f"a training run, or a name found in one of: {searched}"
    )


def load_diffusion(
    name_or_path: str | Path, device: str | torch.device = "cpu"
) -> tuple[DiffusionModel, dict[str, Any]]:
    """Load a saved model (in eval mode) and its spec; see :func:`find_diffusion`."""
    folder = find_diffusion(name_or_path)
    spec = json.loads((folder / SPEC).read_text())
    model = build_diffusion_model(spec)
    model.load_state_dict(load_file(folder / WEIGHTS, device=str(device)))
    return model.to(device).eval(), spec
