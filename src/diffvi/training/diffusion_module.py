"""Training an image diffusion model: its run configuration and Lightning module (Adam with a
linear warm-up, gradient clipping, EMA weights, validation bits/dim)."""

from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from diffvi.diffusion.model import LOSSES
from diffvi.diffusion.pretrained import build_diffusion_model
from diffvi.diffusion.schedules import SCHEDULES
from diffvi.training.config import JSONConfig


@dataclass
class DiffusionConfig(JSONConfig):
    """Everything that defines a diffusion training run (JSON-serialisable).

    The UNet is ``base_channels · channel_mults`` wide per level with ``num_res_blocks`` blocks
    and attention at the ``attention_resolutions``; ``ema_decay`` is the decay of the exported
    weights' moving average (warmed up as min(decay, (1 + n) / (10 + n)) after n updates).
    """

    dataset: str = "mnist"
    schedule: str = "cosine"
    loss_type: str = "simple"
    base_channels: int = 32
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2])
    num_res_blocks: int = 1
    attention_resolutions: list[int] = field(default_factory=lambda: [7])
    dropout: float = 0.0
    batch_size: int = 64
    lr: float = 2e-4
    warmup_steps: int = 200
    grad_clip: float = 1.0
    max_steps: int = 5000
    ema_decay: float = 0.999
    seed: int = 0
    val_size: int = 1000
    val_every_n_steps: int = 1000
    flush_denormal: bool = True
    event_shape: list[int] | None = None

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}")
        if self.loss_type not in LOSSES:
            raise ValueError(f"loss_type must be one of {LOSSES}, got {self.loss_type!r}")
        if self.schedule == "learned" and self.loss_type != "vdm":
            raise ValueError("a learned schedule is trained by the VDM bound: use loss_type 'vdm'")
        for name in ("batch_size", "max_steps", "base_channels", "val_every_n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def model_spec(self) -> dict[str, Any]:
        """The spec of :func:`~diffvi.diffusion.pretrained.build_diffusion_model`."""
        if self.event_shape is None:
            raise ValueError("event_shape is set from the data set before the model is built")
        channels, height, _ = self.event_shape
        return {
            "kind": "diffusion",
            "schedule": {"name": self.schedule},
            "denoiser": {
                "name": "unet",
                "in_channels": channels,
                "base_channels": self.base_channels,
                "channel_mults": list(self.channel_mults),
                "num_res_blocks": self.num_res_blocks,
                "attention_resolutions": list(self.attention_resolutions),
                "dropout": self.dropout,
                "image_size": height,
            },
            "loss_type": self.loss_type,
            "image": True,
            "event_shape": list(self.event_shape),
        }


def ema_average(decay: float):
    """``multi_avg_fn`` for :class:`AveragedModel`: EMA with decay min(decay, (1+n)/(10+n))."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        n = int(num_averaged)
        rate = min(decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(averaged, current, 1 - rate)

    return update


class DiffusionModule(L.LightningModule):
    """Trains ``model`` (a :class:`~diffvi.diffusion.model.DiffusionModel`) and keeps ``ema``,
    its exponential moving average, which validation scores and export saves."""

    def __init__(self, config: DiffusionConfig | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = DiffusionConfig.from_dict(config)
        self.config = config
        self.save_hyperparameters({"config": config.to_dict()})
        self.model = build_diffusion_model(config.model_spec())
        self.ema = AveragedModel(
            self.model, multi_avg_fn=ema_average(config.ema_decay), use_buffers=True
        )
        self.ema.requires_grad_(False)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss = self.model.loss(batch[0]).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()} at step {self.global_step}; stopping "
                "before writing a checkpoint. Try a lower learning rate."
            )
        self.log("train/loss", loss, prog_bar=True)
        if self.config.schedule == "learned":
            schedule = self.model.schedule
            self.log("train/gamma_0", schedule.gamma_0.detach())
            self.log("train/gamma_1", schedule.gamma_1.detach())
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ema.update_parameters(self.model)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x = batch[0]
        generator = torch.Generator(device=x.device).manual_seed(batch_idx)
        bpd = self.ema.module.bound(x, generator=generator).mean()
        self.log("val/bpd", bpd, prog_bar=True, batch_size=x.shape[0])

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        warmup = max(self.config.warmup_steps, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def exported_spec(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The spec saved beside the EMA weights, with ``metadata`` (data set, steps, …)."""
        return {**self.config.model_spec(), "metadata": metadata}
