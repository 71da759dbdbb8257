"""The family contract: what one model family gives the training loop.

A family (VAE, diffusion, CVDM, SBN, VAE-DGP) is an ``nn.Module`` built from its config alone.
It says how to load its data, what one training step minimises (:meth:`Family.loss`), what
validation measures (:meth:`Family.validate`), how it optimises and what it exports. The one
Lightning module (:class:`~diffvi.training.module.TrainingModule`) and the one
:func:`~diffvi.training.trainer.fit` do the rest for every family alike: seeding, the budget,
atomic checkpoints and exact resume, the NaN/Inf stop, EMA weights, precision, devices,
logging and export. A new family is one file with a :class:`Family` subclass and one line in
:data:`FAMILIES`.
"""

from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn

from diffvi.training.config import RunConfig
from diffvi.utils.model_size import check_model_size, measuring

# A logged value, optionally with the number of items it averages (for epoch means).
Metric = Tensor | tuple[Tensor, int]


@dataclass
class LossOutput:
    """What a training step minimises and what it logs.

    Attributes:
        loss: the scalar to minimise (a surrogate where the estimator needs one).
        metrics: logged as ``train/<name>``: the bound, never the surrogate, and any terms.
        batch_size: items in the batch (weights the epoch averages).
    """

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    batch_size: int | None = None


class Family(nn.Module):
    """One model family, trained by :class:`~diffvi.training.module.TrainingModule`.

    Subclasses set ``kind`` and ``config_class`` and implement :meth:`build_data`,
    :meth:`loss`, :meth:`validate`, :meth:`configure_optimizers` and :meth:`export_spec`; the
    other methods have defaults that most families keep.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type[RunConfig]]
    # Metrics shown in the progress bar (train/ and val/ names without the prefix).
    progress_metrics: ClassVar[tuple[str, ...]] = ("bound", "loss")
    # Prefixes of parameters and buffers that only training needs (left out of the export).
    training_only: ClassVar[tuple[str, ...]] = ()
    # Families that step their optimisers themselves implement :meth:`manual_step`.
    manual_optimization: ClassVar[bool] = False
    # The submodule exported alone, under its own names (``"model"``: the model without the
    # family around it, loadable where the bare model is expected); ``None``: the whole family.
    exported_module: ClassVar[str | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> "Family":
        """Before anything is allocated, refuse a model larger than the limit of
        :func:`~diffvi.utils.model_size.check_model_size` (a hand-edited ``config.json`` or
        ``model.json`` asking for 10⁹ channels): the family is built first with its large
        tensors on the meta device, which takes no memory. (A copy or an unpickling passes no
        arguments and is not checked.)"""
        if (args or kwargs) and not measuring():
            check_model_size(lambda: cls(*args, **kwargs), cls.kind, [args, kwargs])
        return super().__new__(cls)

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config

    # -- data -----------------------------------------------------------------------------
    @classmethod
    def build_data(cls, config: RunConfig) -> L.LightningDataModule:
        """The training and validation data ``config`` names."""
        raise NotImplementedError

    @classmethod
    def fit_config_to_data(cls, config: RunConfig, data: L.LightningDataModule) -> None:
        """Set the config's data-derived fields (shapes, sizes) before the family is built."""

    def attach_data(self, data: L.LightningDataModule, resumed: bool) -> None:
        """Check the data against the model and, on a new run (not ``resumed``), initialise
        from it before the first step."""

    # -- training -------------------------------------------------------------------------
    def loss(self, batch: Any) -> LossOutput:
        """The loss of one training batch and the figures to log."""
        raise NotImplementedError

    def manual_step(self, batch: Any, optimizers: list[Any], backward: Any) -> LossOutput:
        """One training step with the family's own optimiser steps (``manual_optimization``)."""
        raise NotImplementedError

    def on_train_epoch_start(self, optimizers: list[Any], epoch: int) -> None:
        """Called at the start of every epoch of a ``manual_optimization`` family (Lightning
        steps no schedule for it)."""

    @torch.no_grad()
    def validate(self, batch: Any, batch_idx: int) -> dict[str, Metric]:
        """Figures of one held-out batch, logged as ``val/<name>`` (epoch means)."""
        raise NotImplementedError

    def configure_optimizers(self) -> Any:
        """Optimisers (and schedules) in any form Lightning's ``configure_optimizers`` takes."""
        raise NotImplementedError

    def callbacks(self, progress_bar: bool) -> list[L.Callback]:
        """Extra Lightning callbacks this family's runs need."""
        return []

    def divergence_advice(self) -> str:
        """What to change when training diverges, naming the config's current values: one
        sentence for the NaN and divergence messages."""
        lr = getattr(self.config, "lr", None)
        if lr is None:
            return "Try a lower learning rate."
        return f"Try a lower learning rate (--lr, now {format_number(lr)})."

    # -- export ---------------------------------------------------------------------------
    def export_spec(self) -> dict[str, Any]:
        """JSON-serialisable ``{"kind": …, …}`` that rebuilds the exported model
        (:meth:`from_spec`); ``metadata`` is added by ``fit``."""
        return {"kind": self.kind, "config": self.config.to_dict()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "Family":
        """A freshly initialised family from an export spec."""
        return cls(cls.config_class.from_dict(spec["config"]))

    def export_state(self) -> dict[str, Tensor]:
        """The tensors exported as ``model.safetensors``: those of ``exported_module``, else all
        but ``training_only``."""
        if self.exported_module is not None:
            return getattr(self, self.exported_module).state_dict()
        state = self.state_dict()
        return {k: v for k, v in state.items() if not k.startswith(self.training_only)}

    def load_export_state(self, state: dict[str, Tensor]) -> None:
        """Load what :meth:`export_state` wrote; training-only entries may be absent."""
        if self.exported_module is not None:
            getattr(self, self.exported_module).load_state_dict(state)
            return
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(self.training_only)]
        if missing or unexpected:
            raise ValueError(
                f"exported weights do not fit this {self.kind} model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )

    def on_fit_end(self, run_dir: Path, data: L.LightningDataModule) -> dict[str, Any]:
        """Figures (and files in ``run_dir``) made once training ends, on rank 0, with the
        exported weights loaded; the returned dict joins the export's metadata."""
        return {}


# kind -> "module:Class" of every family; imported on first use (Lightning is heavy).
FAMILIES: dict[str, str] = {
    "vae": "diffvi.training.families.vae:VAEFamily",
    "diffusion": "diffvi.training.families.diffusion:DiffusionFamily",
    "cvdm": "diffvi.training.families.cvdm:CVDMFamily",
    "sbn": "diffvi.training.families.sbn:SBNFamily",
    "vaedgp": "diffvi.training.families.vaedgp:VAEDGPFamily",
}


def family_class(kind: str) -> type[Family]:
    """The :class:`Family` subclass registered as ``kind``."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(FAMILIES)}")
    module, name = FAMILIES[kind].split(":")
    return getattr(import_module(module), name)


def kind_of(config: RunConfig) -> str:
    """The family kind whose config class ``config`` is."""
    for kind in FAMILIES:
        if type(config) is family_class(kind).config_class:
            return kind
    raise ValueError(f"{type(config).__name__} is not the config of a registered family")


def format_number(value: float) -> str:
    """``value`` as a command line would take it: ``1e6``, ``0.0003``, ``2.5e-05`` → ``2.5e-5``."""
    text = f"{value:g}"
    mantissa, sep, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if sep else text


def adam_with_warmup(parameters: Any, lr: float, warmup_steps: int) -> dict[str, Any]:
    """Adam at ``lr`` with the rate ramped linearly over the first ``warmup_steps`` steps."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    warmup = max(warmup_steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
