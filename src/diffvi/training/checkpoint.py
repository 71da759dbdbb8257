"""Checkpoints and exports: atomic writes, safe loading (``weights_only=True``), one export
format for every family (``model.json`` with ``kind`` + ``model.safetensors``), and
:func:`load`, which rebuilds any of them from a run, an export, a checkpoint or a model name."""

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import load_file, save_file

from diffvi.diffusion.adm import is_adm_source, read_adm_spec
from diffvi.diffusion.hub import is_diffusers_source, open_diffusers_folder
from diffvi.training.family import Family, family_class
from diffvi.training.module import TrainingModule, legacy_kind, upgrade_legacy_checkpoint
from diffvi.utils.io import atomic_write, write_json
from diffvi.utils.model_size import ModelTooLargeError
from diffvi.utils.paths import MODEL_SPEC as SPEC
from diffvi.utils.paths import MODEL_WEIGHTS as WEIGHTS
from diffvi.utils.paths import find_model, is_model_name


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, then renames it into
    place, so that a kill mid-write never leaves a truncated checkpoint behind."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


class RunCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt`` of a run: what :class:`ModelCheckpoint` saves (every
    ``every_n_train_steps`` steps or ``every_n_epochs`` epochs), plus the step at which training
    stops inside an epoch (``max_steps``, ``max_time``), saved at the end of that batch, as an
    interval checkpoint is: a checkpoint taken after ``fit`` returns would have the epoch
    counted as finished, and the resumed run would skip the rest of it."""

    def __init__(self, run_dir: Path, **kwargs: Any) -> None:
        super().__init__(
            dirpath=run_dir / "checkpoints",
            filename="last",
            save_top_k=1,
            enable_version_counter=False,
            **kwargs,
        )
        self.stop_step: int | None = None  # the step saved by the stop inside an epoch

    @property
    def path(self) -> Path:
        return Path(self.dirpath) / "last.ckpt"

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, *args, **kwargs)
        # Checkpoint callbacks run after the others (the Timer's max_time check included).
        steps_done = trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps
        if (steps_done or trainer.should_stop) and self.stop_step != trainer.global_step:
            trainer.save_checkpoint(self.path)
            self.stop_step = trainer.global_step

    # Stopping inside an epoch still runs the epoch-end hooks: they must not overwrite the
    # stop's checkpoint with one that counts the epoch as finished.
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stop_step != trainer.global_step:
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stop_step != trainer.global_step:
            super().on_validation_end(trainer, pl_module)


def resolve_checkpoint(run_or_checkpoint: str | Path) -> Path:
    """A checkpoint file, or a run folder (then its ``checkpoints/last.ckpt``), checked to be a
    whole checkpoint file (``ValueError`` naming it when it is empty or truncated)."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        candidate = path / "checkpoints" / "last.ckpt"
        if not candidate.exists():
            raise FileNotFoundError(f"no checkpoint at {candidate} (expected a run folder)")
        path = candidate
    elif not path.exists():
        raise FileNotFoundError(f"{path} is neither a checkpoint file nor a run folder")
    # A torch checkpoint is a zip archive, whose directory is at the end: an empty or cut-off
    # file has none (checked without reading the weights).
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is not a readable diffvi checkpoint: the file is empty")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a readable diffvi checkpoint: it is truncated or not a torch "
            "checkpoint (a run killed while writing it? its previous checkpoint is lost)"
        )
    try:  # the pickle alone (tensors memory-mapped, not read): refuses code, names the file
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise unreadable_checkpoint(path, err) from None
    return path


def unreadable_checkpoint(path: Path, err: Exception) -> ValueError:
    """A one-line error for a checkpoint ``torch.load(weights_only=True)`` refused: one that
    holds objects other than tensors and plain data (unpickling them could run code), or a
    damaged one."""
    if isinstance(err, pickle.UnpicklingError):
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        return ValueError(
            f"{path} is not a readable diffvi checkpoint: it holds objects other than tensors "
            f"and plain data{what}, refused because loading them could run code"
        )
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ValueError(f"{path} is not a readable diffvi checkpoint: {reason}")


def load_module(run_or_checkpoint: str | Path, map_location: str = "cpu") -> TrainingModule:
    """Rebuild a trained :class:`TrainingModule` (eval mode) from a checkpoint, loaded with
    ``weights_only=True``; checkpoints written before the one training contract load too."""
    path = resolve_checkpoint(run_or_checkpoint)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise unreadable_checkpoint(path, err) from None
    if "config" not in checkpoint.get("hyper_parameters", {}):
        raise ValueError(f"{path} has no diffvi config in its hyper_parameters")
    upgrade_legacy_checkpoint(checkpoint)
    hparams = checkpoint["hyper_parameters"]
    try:
        module = TrainingModule(hparams["kind"], hparams["config"])
    except ModelTooLargeError as err:
        raise err.from_source(str(path)) from None
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def export_model(family: Family, folder: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` (the family's exported weights) and ``model.json`` (its
    :meth:`~Family.export_spec` with ``metadata``) to ``folder``, atomically; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in family.export_state().items()}
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    write_json(folder / SPEC, {**family.export_spec(), "metadata": metadata})
    return folder


def read_spec(name_or_path: str | Path) -> dict[str, Any]:
    """The ``model.json`` of an export, a run's export or a named model; for a diffusers
    folder or ``hf:`` id, or a guided-diffusion checkpoint (``adm:…``, ``.pt``), the spec that
    describes it (:mod:`diffvi.diffusion.hub`, :mod:`diffvi.diffusion.adm`)."""
    if is_diffusers_source(name_or_path):
        return open_diffusers_folder(name_or_path).spec()
    if is_adm_source(name_or_path):
        return read_adm_spec(name_or_path)
    return json.loads((find_model(name_or_path) / SPEC).read_text())


def load(name_or_path: str | Path, device: str | torch.device = "cpu") -> Family:
    """Any trained or shipped diffvi model, in eval mode on ``device``: the
    :class:`~diffvi.training.family.Family` its ``kind`` names, with the model as ``.model``
    (and ``.posterior`` for the VAE and SBN families) and its config as ``.config``.

    ``name_or_path``: an export folder (``model.json`` + ``model.safetensors``), a run folder
    (its ``export/``, else its last checkpoint), a ``.ckpt`` file (the weights that are
    validated: the EMA where kept), or a bare model name (``"mnist"``), looked up on the search
    path of :func:`~diffvi.utils.paths.find_model` only, never in the current directory.
    Exports and checkpoints written before the one training contract load too, and so do
    pretrained diffusers models (a pipeline or ``UNet2DModel`` folder, or ``hf:ORG/NAME``; see
    :mod:`diffvi.diffusion.hub`) and OpenAI guided-diffusion checkpoints
    (``adm:CONFIG:FILE.pt``, ``adm:FILE.pt`` or a ``.pt``/``.pth`` path; see
    :mod:`diffvi.diffusion.adm`): a ``"diffusion"`` family without a config.
    """
    if is_diffusers_source(name_or_path):
        return _from_diffusers(name_or_path).to(device).eval()
    if is_adm_source(name_or_path):  # before names: adm:CONFIG:FILE.pt has no separator
        return _from_adm(name_or_path).to(device).eval()
    if is_model_name(name_or_path):
        return _from_export(find_model(name_or_path)).to(device).eval()
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: expected a run folder, an export folder (model.json), a "
            ".ckpt file or a model name"
        )
    holds_nothing = not (_has_export(path) or (path / "config.json").is_file())
    if path.is_dir() and holds_nothing and not (path / "checkpoints").is_dir():
        raise FileNotFoundError(
            f"{path} holds no model: expected a run folder (export/model.json or "
            "checkpoints/last.ckpt) or an export folder (model.json)"
        )
    legacy = _legacy_vae_export(path)
    if legacy is not None:
        family = legacy
    elif path.suffix == ".ckpt" or (
        path.is_dir() and not _has_export(path) and (path / "checkpoints").is_dir()
    ):
        family = load_module(path).trained
    else:
        family = _from_export(find_model(path))
    return family.to(device).eval()


def _from_export(folder: Path) -> Family:
    """The family an export folder (``model.json`` + ``model.safetensors``) holds; a
    ``model.json`` that asks for a model too large to allocate, or that does not describe one,
    is a ValueError naming it."""
    spec = json.loads((folder / SPEC).read_text())
    try:
        cls = family_class(spec.get("kind", "diffusion"))
    except ValueError as err:
        raise ValueError(f"{folder / SPEC}: {err}") from None
    try:
        family = cls.from_spec(spec)
    except ModelTooLargeError as err:
        raise err.from_source(str(folder / SPEC)) from None
    except (TypeError, KeyError, AttributeError) as err:  # a field missing or of a wrong type
        raise ValueError(
            f"{folder / SPEC} does not describe a model diffvi can build "
            f"({type(err).__name__}: {err})"
        ) from None
    try:
        weights = load_file(folder / WEIGHTS)
    except Exception as err:  # safetensors' own errors: a damaged or hostile header
        raise ValueError(f"{folder / WEIGHTS} is not a readable safetensors file: {err}") from None
    try:
        family.load_export_state(weights)
    except RuntimeError as err:  # missing, unexpected or mis-shaped tensors
        detail = " ".join(str(err).split())
        raise ValueError(
            f"{folder / WEIGHTS} does not hold the weights {folder / SPEC} describes: "
            f"{detail[:300]}{'…' if len(detail) > 300 else ''}"
        ) from None
    return family


def _from_diffusers(source: str | Path) -> Family:
    """A diffusers model as a ``"diffusion"`` family (no config: it samples and scores)."""
    from diffvi.training.families.diffusion import DiffusionFamily

    folder = open_diffusers_folder(source)
    return DiffusionFamily(None, folder.spec(), folder.build())


def _from_adm(source: str | Path) -> Family:
    """A guided-diffusion checkpoint as a ``"diffusion"`` family (no config: it samples and
    scores)."""
    from diffvi.diffusion.adm import adm_spec, load_adm_prior
    from diffvi.training.families.diffusion import DiffusionFamily

    model = load_adm_prior(source)
    return DiffusionFamily(None, adm_spec(model, source), model)


def _has_export(path: Path) -> bool:
    return (path / SPEC).is_file() or (path / "export" / SPEC).is_file()


def _legacy_vae_export(path: Path) -> Family | None:
    """A VAE exported before the one format (``config.json`` + ``model.safetensors``), else
    ``None``."""
    for folder in (path, path / "export"):
        config, weights = folder / "config.json", folder / WEIGHTS
        if weights.is_file() and config.is_file() and not (folder / SPEC).is_file():
            values = json.loads(config.read_text())
            if legacy_kind({"config": values}) != "vae":
                return None
            family = family_class("vae").from_spec({"config": values})
            state = load_file(weights)
            state.pop("_nonfinite_steps", None)
            family.load_export_state(state)
            return family
    return None
