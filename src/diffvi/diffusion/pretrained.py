"""Diffusion models from a spec: the plain data that rebuilds a :class:`DiffusionModel`, saved
as ``model.json`` beside its weights (``model.safetensors``) by every diffusion export.

A spec is plain data::

    {"kind": "diffusion", "schedule": {"name": "learned", ...}, "denoiser": {"name": "unet", ...},
     "loss_type": "vdm", "image": true, "event_shape": [1, 28, 28], "metadata": {...}}

Saved models load with :func:`diffvi.load` (by folder, run or name: see
:mod:`diffvi.utils.paths`).
"""

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.schedules import build_schedule
from diffvi.nn import MLPDenoiser, UNet
from diffvi.utils.paths import MODEL_SPEC as SPEC
from diffvi.utils.paths import MODEL_WEIGHTS as WEIGHTS
from diffvi.utils.paths import find_model

DENOISERS = {"unet": UNet, "mlp": MLPDenoiser}


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


def load_diffusion(
    name_or_path: str | Path, device: str | torch.device = "cpu"
) -> tuple[DiffusionModel, dict[str, Any]]:
    """A saved diffusion model (in eval mode) and its spec (see :func:`~diffvi.utils.paths.
    find_model`)."""
    folder = find_model(name_or_path)
    spec = json.loads((folder / SPEC).read_text())
    model = build_diffusion_model(spec)
    model.load_state_dict(load_file(folder / WEIGHTS, device=str(device)))
    return model.to(device).eval(), spec
