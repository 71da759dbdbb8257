"""The diffusion family: an image diffusion model (:class:`~diffvi.diffusion.model.
DiffusionModel`: a noise schedule and a UNet denoiser) trained with Adam, a linear warm-up,
gradient clipping and EMA weights; validation scores the EMA's bits/dim.

The export is the EMA model in the spec format of :mod:`diffvi.diffusion.pretrained`, so a
trained model serves as a prior wherever a shipped one does.
"""

from typing import Any

import lightning as L
import torch
from torch import Tensor

from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.pretrained import build_diffusion_model
from diffvi.diffusion.schedules import LEARNABLE_SCHEDULES
from diffvi.training.config import DiffusionConfig
from diffvi.training.family import Family, LossOutput, Metric, adam_with_warmup


class DiffusionFamily(Family):
    """Trains ``model`` (a :class:`~diffvi.diffusion.model.DiffusionModel`) on its loss.

    A family loaded from an export that was not trained here (a shipped or converted prior)
    has ``config`` ``None``: it samples and scores, but does not train. ``model`` is a model
    built elsewhere (a diffusers prior, :mod:`diffvi.diffusion.hub`), which ``spec`` only
    describes."""

    kind = "diffusion"
    exported_module = "model"
    config_class = DiffusionConfig
    progress_metrics = ("loss", "bpd")

    def __init__(
        self,
        config: DiffusionConfig | None,
        spec: dict[str, Any] | None = None,
        model: DiffusionModel | None = None,
    ) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self.spec = spec if spec is not None else config.model_spec()  # type: ignore[union-attr]
        self.model = build_diffusion_model(self.spec) if model is None else model

    @classmethod
    def build_data(cls, config: DiffusionConfig) -> L.LightningDataModule:
        from diffvi.training.families.images import build_image_data

        return build_image_data(config)

    @classmethod
    def fit_config_to_data(cls, config: DiffusionConfig, data: L.LightningDataModule) -> None:
        config.event_shape = list(data.event_shape)
        if len(config.event_shape) != 3:
            raise ValueError(
                f"diffusion training needs images [C, H, W]; {config.data_name} has "
                f"items of shape {config.event_shape}"
            )

    def loss(self, batch: tuple[Tensor, ...]) -> LossOutput:
        loss = self.model.loss(batch[0]).mean()
        metrics = {"loss": loss.detach()}
        if self.config.schedule in LEARNABLE_SCHEDULES:
            metrics["gamma_0"] = self.model.schedule.gamma_0.detach()
            metrics["gamma_1"] = self.model.schedule.gamma_1.detach()
        return LossOutput(loss, metrics)

    def validate(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Metric]:
        x = batch[0]
        generator = torch.Generator(device=x.device).manual_seed(batch_idx)
        return {"bpd": self.model.bound(x, generator=generator).mean()}

    def configure_optimizers(self) -> Any:
        return adam_with_warmup(self.model.parameters(), self.config.lr, self.config.warmup_steps)

    def export_spec(self) -> dict[str, Any]:
        spec = dict(self.spec)
        if self.config is not None:
            spec["config"] = self.config.to_dict()
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "DiffusionFamily":
        """Built from the model spec; the training config rides along where there is one."""
        model_spec = {k: v for k, v in spec.items() if k not in ("config", "metadata")}
        config = DiffusionConfig.from_dict(spec["config"]) if "config" in spec else None
        return cls(config, model_spec)
