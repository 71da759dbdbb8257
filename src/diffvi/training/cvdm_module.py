"""Training a conditional diffusion model (CVDM, della Maggiora et al. 2024) or its baselines on a
paired restoration task (:mod:`diffvi.data.paired`): run configuration, data, Lightning module
and the fit entry point.

Schedules: ``"learned"`` (CVDM's per-pixel schedule, :class:`~diffvi.diffusion.conditional.
ConditionalSchedule`), ``"linear"`` / ``"cosine"`` (SR3-style fixed schedules through the same
code path), and ``"regression"``: a deterministic UNet of the same widths trained with L2 to
predict y₀ from x (the non-generative baseline). Models are built with ``image=False``: the
paired tasks already give conditions and targets in model space.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, TensorDataset

from diffvi.data.paired import PairedData, load_paired, paired_task
from diffvi.diffusion.conditional import CVDM
from diffvi.diffusion.pretrained import SPEC, WEIGHTS, find_diffusion, save_diffusion
from diffvi.diffusion.schedules import build_schedule
from diffvi.nn.unet import UNet
from diffvi.training.checkpoint import resolve_checkpoint
from diffvi.training.config import JSONConfig
from diffvi.training.data import IndexBatchSampler, index_batch_loader
from diffvi.training.diffusion_module import ema_average
from diffvi.training.trainer import _last_metric, fit_by_steps
from diffvi.utils.runtime import configure_numerics

CVDM_SCHEDULES = ("learned", "linear", "cosine", "regression")
VAL_BATCH = 64


@dataclass
class CVDMConfig(JSONConfig):
    """Everything that defines a CVDM training run (JSON-serialisable).

    ``task`` is a :data:`~diffvi.data.paired.PAIRED_TASKS` name built with ``task_options``
    (e.g. ``{"size": 32}`` for ``microscopy-sr``) from ``train_size`` training pairs (``None``:
    the task's default) and ``val_size`` held-out pairs (``valid`` split where the task has one,
    else ``test``), both drawn with ``data_seed``; ``seed`` seeds the weights, noise and batch
    order. The denoiser UNet (and the regression UNet) is ``base_channels · channel_mults``
    wide with attention at ``attention_resolutions``; ``timesteps`` is CVDM's T (boundary times
    of the loss, default sampling steps). Validation every ``val_every_n_steps`` steps scores
    the EMA weights: the loss on the held-out pairs, and the image MSE / PSNR of one sample
    (``sample_steps`` steps) for the first ``val_sample_size`` of them. ``x_channels``,
    ``y_channels`` and ``image_size`` are set from the data.
    """

    task: str = "microscopy-sr"
    schedule: str = "learned"
    task_options: dict[str, Any] = field(default_factory=dict)
    train_size: int | None = None
    base_channels: int = 32
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2])
    attention_resolutions: list[int] = field(default_factory=list)
    num_groups: int = 8
    timesteps: int = 200
    batch_size: int = 16
    lr: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 1.0
    max_steps: int = 5000
    ema_decay: float = 0.999
    seed: int = 0
    data_seed: int = 0
    val_size: int = 64
    val_every_n_steps: int = 500
    sample_steps: int = 50
    val_sample_size: int = 16
    flush_denormal: bool = True
    x_channels: int | None = None
    y_channels: int | None = None
    image_size: int | None = None

    def __post_init__(self) -> None:
        task = paired_task(self.task)  # ValueError listing the valid tasks
        unknown = set(self.task_options) - set(task.options)
        if unknown:
            raise ValueError(
                f"unknown task_options {sorted(unknown)} for {self.task!r}; valid: "
                f"{sorted(task.options)}"
            )
        if self.schedule not in CVDM_SCHEDULES:
            raise ValueError(
                f"schedule must be one of {list(CVDM_SCHEDULES)}, got {self.schedule!r}"
            )
        for name in ("batch_size", "max_steps", "base_channels", "val_every_n_steps", "val_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size is not None and self.train_size < self.batch_size:
            raise ValueError(
                f"train_size ({self.train_size}) must be >= batch_size ({self.batch_size})"
            )
        if self.timesteps < 2 or self.sample_steps < 2:
            raise ValueError(
                f"timesteps and sample_steps must be >= 2, got {self.timesteps}, "
                f"{self.sample_steps}"
            )
        if self.val_sample_size < 0:
            raise ValueError(f"val_sample_size must be >= 0, got {self.val_sample_size}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def model_spec(self) -> dict[str, Any]:
        """The spec of :func:`build_cvdm_model` (saved as ``export/model.json``)."""
        if None in (self.x_channels, self.y_channels, self.image_size):
            raise ValueError("x_channels, y_channels and image_size are set from the data first")
        return {
            "kind": "cvdm",
            "task": self.task,
            "task_options": dict(self.task_options),
            "schedule": self.schedule,
            "x_channels": self.x_channels,
            "y_channels": self.y_channels,
            "image_size": self.image_size,
            "base_channels": self.base_channels,
            "channel_mults": list(self.channel_mults),
            "attention_resolutions": list(self.attention_resolutions),
            "num_groups": self.num_groups,
            "timesteps": self.timesteps,
        }


class RegressionUNet(nn.Module):
    """The deterministic baseline: ``ŷ₀ = UNet(x)``, ``x [B, C_x, H, W] -> [B, C_y, H, W]``
    (our UNet with its time input fixed at 0), trained with the per-pixel L2 loss.

    It has :class:`~diffvi.diffusion.conditional.CVDM`'s ``loss`` / ``sample`` interface, so
    training and evaluation code treat both alike (``sample`` is the prediction)."""

    def __init__(
        self,
        x_channels: int,
        y_channels: int,
        image_size: int,
        base_channels: int = 32,
        channel_mults: list[int] | tuple[int, ...] = (1, 2, 2),
        attention_resolutions: list[int] | tuple[int, ...] = (),
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        self.x_channels, self.y_channels = x_channels, y_channels
        self.unet = UNet(
            in_channels=x_channels,
            out_channels=y_channels,
            base_channels=base_channels,
            channel_mults=channel_mults,
            attention_resolutions=attention_resolutions,
            num_groups=num_groups,
            image_size=image_size,
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C_x, H, W] -> ŷ₀ [B, C_y, H, W]``."""
        return self.unet(x, x.new_zeros(x.shape[0]))

    def loss(self, y0: Tensor, x: Tensor, **_: Any) -> dict[str, Tensor]:
        """Per-item ``{"mse": ‖y₀ − ŷ₀‖² / pixels, "total": the same}``, each ``[B]``."""
        if y0.shape[0] != x.shape[0] or y0.shape[1] != self.y_channels:
            raise ValueError(
                f"y0 must have shape [{x.shape[0]}, {self.y_channels}, H, W], got {list(y0.shape)}"
            )
        mse = (self(x) - y0).pow(2).flatten(1).mean(1)
        return {"mse": mse, "total": mse}

    @torch.no_grad()
    def sample(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The prediction ``ŷ₀ [B, C_y, H, W]`` (deterministic; sampler arguments ignored)."""
        return self(x)


def build_cvdm_model(spec: dict[str, Any]) -> CVDM | RegressionUNet:
    """A freshly initialised model from a spec (:meth:`CVDMConfig.model_spec`)."""
    if spec.get("kind") != "cvdm":
        raise ValueError(f"not a CVDM spec (kind={spec.get('kind')!r})")
    schedule = spec["schedule"]
    net = {
        "base_channels": spec["base_channels"],
        "channel_mults": list(spec["channel_mults"]),
        "attention_resolutions": list(spec["attention_resolutions"]),
        "num_groups": spec["num_groups"],
    }
    if schedule == "regression":
        return RegressionUNet(spec["x_channels"], spec["y_channels"], spec["image_size"], **net)
    if schedule not in CVDM_SCHEDULES:
        raise ValueError(f"schedule must be one of {list(CVDM_SCHEDULES)}, got {schedule!r}")
    return CVDM.build(
        y_channels=spec["y_channels"],
        x_channels=spec["x_channels"],
        image_size=spec["image_size"],
        schedule="learned" if schedule == "learned" else build_schedule(schedule),
        image=False,
        timesteps=spec["timesteps"],
        **net,
    )


def load_cvdm(
    name_or_path: str | Path, device: str | torch.device = "cpu"
) -> tuple[CVDM | RegressionUNet, dict[str, Any]]:
    """Load an exported CVDM (a run folder, its ``export/``, or a named model; eval mode) and
    its spec."""
    folder = find_diffusion(name_or_path)
    spec = json.loads((folder / SPEC).read_text())
    model = build_cvdm_model(spec)
    model.load_state_dict(load_file(folder / WEIGHTS, device=str(device)))
    return model.to(device).eval(), spec


class PairedDataModule(L.LightningDataModule):
    """Train and validation loaders of a paired task: ``(condition [B, C_x, H, W], target
    [B, C_y, H, W])`` batches, whole index batches drawn by
    :class:`~diffvi.training.data.IndexBatchSampler` (sharded across DDP ranks, reproducible
    order on resume)."""

    def __init__(
        self,
        task: str,
        batch_size: int,
        seed: int = 0,
        val_size: int = 64,
        train_size: int | None = None,
        data_seed: int = 0,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        options = dict(options or {})
        self.batch_size, self.seed = batch_size, seed
        self.train_data: PairedData = load_paired(task, "train", train_size, data_seed, **options)
        held_out = "valid" if "valid" in paired_task(task).splits else "test"
        self.val_data: PairedData = load_paired(task, held_out, val_size, data_seed, **options)
        if len(self.train_data) < batch_size:
            raise ValueError(
                f"{task} has {len(self.train_data)} training pairs, fewer than one batch "
                f"({batch_size})"
            )
        self.train_set = TensorDataset(self.train_data.condition, self.train_data.target)
        self.val_set = TensorDataset(self.val_data.condition, self.val_data.target)

    def train_dataloader(self) -> DataLoader:
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        sampler = IndexBatchSampler(
            len(self.train_set), self.batch_size, True, self.seed, rank, world, drop_last=True
        )
        return index_batch_loader(self.train_set, sampler)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=VAL_BATCH, shuffle=False)


class CVDMModule(L.LightningModule):
    """Trains ``model`` (a :class:`~diffvi.diffusion.conditional.CVDM`, or a
    :class:`RegressionUNet` for ``schedule="regression"``) and keeps ``ema``, its exponential
    moving average, which validation scores and export saves."""

    def __init__(self, config: CVDMConfig | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = CVDMConfig.from_dict(config)
        self.config = config
        self.save_hyperparameters({"config": config.to_dict()})
        self.model = build_cvdm_model(config.model_spec())
        self.ema = AveragedModel(
            self.model, multi_avg_fn=ema_average(config.ema_decay), use_buffers=True
        )
        self.ema.requires_grad_(False)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y0 = batch[0], batch[1]
        terms = self.model.loss(y0, x)
        loss = terms["total"].mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()} at step {self.global_step}; stopping "
                "before writing a checkpoint. Try a lower learning rate."
            )
        self.log("train/loss", loss, prog_bar=True)
        for name, value in terms.items():
            if name != "total":
                self.log(f"train/{name}", value.detach().mean())
        if self.config.schedule == "learned":
            t0, t_end = self.boundary_gamma_bar(x)
            self.log("train/gamma_bar_t0", t0)
            self.log("train/gamma_bar_tT", t_end)
        return loss

    @torch.no_grad()
    def boundary_gamma_bar(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean over pixels and items of the learned γ̄(t₀, x) and γ̄(t_T, x), t₀ = 1/T,
        t_T = 1 − 1/T (CVDM's boundary targets: 1 and 0)."""
        steps = self.config.timesteps
        schedule = self.model.schedule
        ends = [x.new_full((x.shape[0],), t) for t in (1 / steps, 1 - 1 / steps)]
        return tuple(schedule.gamma_bar(t, x).mean() for t in ends)  # type: ignore[return-value]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ema.update_parameters(self.model)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x, y0 = batch[0], batch[1]
        model = self.ema.module
        generator = torch.Generator(device=x.device).manual_seed(batch_idx)
        loss = model.loss(y0, x, generator=generator)["total"].mean()
        self.log("val/loss", loss, prog_bar=True, batch_size=x.shape[0])
        count = min(self.config.val_sample_size - batch_idx * VAL_BATCH, x.shape[0])
        if count <= 0:
            return
        xs, ys = x[:count], y0[:count]
        task = paired_task(self.config.task)
        sample = model.sample(
            xs, steps=self.config.sample_steps, generator=generator, clip=task.target_bounds
        )
        mse = (task.to_image(xs, sample) - task.to_image(xs, ys)).pow(2).flatten(1).mean(1)
        psnr = -10 * torch.log10(mse.clamp_min(1e-10))
        self.log("val/mse", mse.mean(), batch_size=count)
        self.log("val/psnr", psnr.mean(), prog_bar=True, batch_size=count)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        warmup = max(self.config.warmup_steps, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def exported_spec(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The spec saved beside the EMA weights, with ``metadata`` (steps, scores, …)."""
        return {**self.config.model_spec(), "metadata": metadata}


def fit_cvdm(
    config: CVDMConfig,
    run_dir: str | Path,
    resume: bool = False,
    accelerator: str = "auto",
    devices: int | str = "auto",
    progress_bar: bool = True,
    callbacks: tuple[Callback, ...] | list[Callback] = (),
    log_every_n_steps: int = 50,
) -> CVDMModule:
    """Train a CVDM (or a baseline) as ``config`` says and write the run to ``run_dir``:
    ``config.json`` (``{"kind": "cvdm", …}``), ``checkpoints/last.ckpt`` (every
    ``val_every_n_steps`` steps and at the end, atomically), ``logs/version_N/metrics.csv``
    (each loss term, γ̄ at t₀ and t_T for the learned schedule, validation loss / MSE / PSNR
    of the EMA weights) and ``export/`` (EMA weights as ``model.safetensors`` + ``model.json``,
    loadable with :func:`load_cvdm`).

    ``resume=True`` continues from ``run_dir/checkpoints/last.ckpt`` (optimiser, EMA, step and
    random state restored) up to ``config.max_steps`` in total. A non-finite training loss stops
    the run with ``FloatingPointError`` before any further checkpoint or export.
    """
    run_dir = Path(run_dir)
    configure_numerics(config.flush_denormal)
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = PairedDataModule(
        config.task,
        config.batch_size,
        config.seed,
        config.val_size,
        config.train_size,
        config.data_seed,
        config.task_options,
    )
    config.x_channels = data.train_data.x_channels
    config.y_channels = data.train_data.y_channels
    config.image_size = data.train_data.image_size
    ckpt_path = str(resolve_checkpoint(run_dir)) if resume else None
    module = CVDMModule(config)
    trainer, seconds = fit_by_steps(
        module,
        data,
        run_dir,
        {"kind": "cvdm", **config.to_dict()},
        ckpt_path,
        max_steps=config.max_steps,
        val_every_n_steps=config.val_every_n_steps,
        grad_clip=config.grad_clip,
        accelerator=accelerator,
        devices=devices,
        progress_bar=progress_bar,
        callbacks=callbacks,
        log_every_n_steps=log_every_n_steps,
        # The learned schedule differentiates γ̄ in t during validation too (autograd inside
        # no_grad works; inside inference_mode it does not).
        inference_mode=False,
    )
    if trainer.is_global_zero:
        metadata = {
            "task": config.task,
            "steps": int(trainer.global_step),
            "train_seconds_this_session": round(seconds, 1),
            "val_loss": _last_metric(trainer, "val/loss"),
            "val_psnr": _last_metric(trainer, "val/psnr"),
        }
        save_diffusion(module.ema.module, module.exported_spec(metadata), run_dir / "export")
    return module
