"""Diffusion models from a spec: the plain data that rebuilds a :class:`DiffusionModel`, saved
as ``model.json`` beside its weights (``model.safetensors``) by every diffusion export.

A spec is plain data::

    {"kind": "diffusion", "schedule": {"name": "learned", ...}, "denoiser": {"name": "unet", ...},
     "loss_type": "vdm", "image": true, "event_shape": [1, 28, 28], "metadata": {...}}

Saved models load with :func:`diffvi.load` (by folder, run or name: see
:mod:`diffvi.utils.paths`).
"""

from typing import Any

from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.schedules import build_schedule
from diffvi.nn import MLPDenoiser, UNet

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
