"""Checkpoints: atomic writes, safe loading (``weights_only=True``), and model export."""

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import save_file

from diffvi.training.module import VAEModule
from diffvi.utils.io import atomic_write, write_json


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, then renames it into
    place, so that a kill mid-write never leaves a truncated checkpoint behind."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def resolve_checkpoint(run_or_checkpoint: str | Path) -> Path:
    """A checkpoint file, or a run folder (then its ``checkpoints/last.ckpt``)."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        candidate = path / "checkpoints" / "last.ckpt"
        if not candidate.exists():
            raise FileNotFoundError(f"no checkpoint at {candidate} (expected a run folder)")
        return candidate
    if not path.exists():
        raise FileNotFoundError(f"{path} is neither a checkpoint file nor a run folder")
    return path


def load_module(run_or_checkpoint: str | Path, map_location: str = "cpu") -> VAEModule:
    """Rebuild a trained ``VAEModule`` from a checkpoint (loaded with ``weights_only=True``)."""
    path = resolve_checkpoint(run_or_checkpoint)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise ValueError(f"{path} is not a readable diffvi checkpoint: {err}") from err
    if "hyper_parameters" not in checkpoint or "config" not in checkpoint["hyper_parameters"]:
        raise ValueError(f"{path} has no diffvi config in its hyper_parameters")
    module = VAEModule(checkpoint["hyper_parameters"]["config"])
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    return module


def export_model(module: VAEModule, folder: str | Path) -> Path:
    """Write ``model.safetensors`` (weights) and ``config.json`` (how to rebuild) to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(tensors, tmp))
    write_json(folder / "config.json", module.config.to_dict())
    return folder / "model.safetensors"
