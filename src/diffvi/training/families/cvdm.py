"""The CVDM family: a conditional diffusion model (CVDM, della Maggiora et al. 2024) or a
baseline trained on a paired restoration task (:mod:`diffvi.data.paired`).

Schedules: ``"learned"`` (CVDM's per-pixel schedule, :class:`~diffvi.diffusion.conditional.
ConditionalSchedule`), ``"linear"`` / ``"cosine"`` (SR3-style fixed schedules through the same
code path), and ``"regression"``: a deterministic UNet of the same widths trained with L2 to
predict y₀ from x (:class:`~diffvi.models.regression.RegressionUNet`, the non-generative
baseline). Models are built with ``image=False``: the paired tasks already give conditions and
targets in model space. Validation scores the EMA weights: the loss on the held-out pairs and
the image MSE / PSNR of one sample for the first ``val_sample_size`` of them; the learned
schedule also logs γ̄ at t₀ and t_T.
"""

from typing import Any

import lightning as L
import torch
from torch import Tensor

from diffvi.data.modules import PAIRED_VAL_BATCH, PairedDataModule
from diffvi.data.paired import paired_task
from diffvi.diffusion.conditional import CVDM
from diffvi.diffusion.schedules import build_schedule
from diffvi.models.regression import RegressionUNet
from diffvi.training.config import CVDM_SCHEDULES, CVDMConfig
from diffvi.training.family import Family, LossOutput, Metric, adam_with_warmup


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
        prior_kl=spec.get("prior_kl", "paper"),  # exports from before the option: the same loss
        **net,
    )


class CVDMFamily(Family):
    """Trains ``model`` (a :class:`~diffvi.diffusion.conditional.CVDM`, or a
    :class:`~diffvi.models.regression.RegressionUNet` for ``schedule="regression"``)."""

    kind = "cvdm"
    exported_module = "model"
    config_class = CVDMConfig
    progress_metrics = ("loss", "psnr")

    def __init__(self, config: CVDMConfig) -> None:
        super().__init__(config)
        self.model = build_cvdm_model(config.model_spec())

    @classmethod
    def build_data(cls, config: CVDMConfig) -> L.LightningDataModule:
        if config.pairs is not None:
            from diffvi.data.paired_files import PairFilesDataModule

            low, high = config.pairs
            return PairFilesDataModule(
                low,
                high,
                config.batch_size,
                config.seed,
                config.val_size,
                config.patch,
                config.data_seed,
                config.task_options,
            )
        return PairedDataModule(
            config.task,
            config.batch_size,
            config.seed,
            config.val_size,
            config.train_size,
            config.data_seed,
            config.task_options,
        )

    @classmethod
    def fit_config_to_data(cls, config: CVDMConfig, data: L.LightningDataModule) -> None:
        config.x_channels = data.train_data.x_channels
        config.y_channels = data.train_data.y_channels
        config.image_size = data.train_data.image_size
        if config.pairs is not None:  # the scale of your own pairs, found in the files
            config.task_options = {**config.task_options, "factor": data.factor}

    def loss(self, batch: tuple[Tensor, ...]) -> LossOutput:
        x, y0 = batch[0], batch[1]
        terms = self.model.loss(y0, x)
        loss = terms["total"].mean()
        metrics = {"loss": loss.detach()}
        metrics.update({k: v.detach().mean() for k, v in terms.items() if k != "total"})
        if self.config.schedule == "learned":
            metrics["gamma_bar_t0"], metrics["gamma_bar_tT"] = self.boundary_gamma_bar(x)
        return LossOutput(loss, metrics)

    @torch.no_grad()
    def boundary_gamma_bar(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean over pixels and items of the learned γ̄(t₀, x) and γ̄(t_T, x), t₀ = 1/T,
        t_T = 1 − 1/T (CVDM's boundary targets: 1 and 0)."""
        steps = self.config.timesteps
        schedule = self.model.schedule
        ends = [x.new_full((x.shape[0],), t) for t in (1 / steps, 1 - 1 / steps)]
        return tuple(schedule.gamma_bar(t, x).mean() for t in ends)  # type: ignore[return-value]

    def validate(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Metric]:
        x, y0 = batch[0], batch[1]
        generator = torch.Generator(device=x.device).manual_seed(batch_idx)
        loss = self.model.loss(y0, x, generator=generator)["total"].mean()
        metrics: dict[str, Metric] = {"loss": loss}
        count = min(self.config.val_sample_size - batch_idx * PAIRED_VAL_BATCH, x.shape[0])
        if count <= 0:
            return metrics
        xs, ys = x[:count], y0[:count]
        task = paired_task(self.config.task)
        sample = self.model.sample(
            xs, steps=self.config.sample_steps, generator=generator, clip=task.target_bounds
        )
        mse = (task.to_image(xs, sample) - task.to_image(xs, ys)).pow(2).flatten(1).mean(1)
        psnr = -10 * torch.log10(mse.clamp_min(1e-10))
        metrics["mse"] = (mse.mean(), count)
        metrics["psnr"] = (psnr.mean(), count)
        return metrics

    def configure_optimizers(self) -> Any:
        return adam_with_warmup(self.model.parameters(), self.config.lr, self.config.warmup_steps)

    def export_spec(self) -> dict[str, Any]:
        return {**self.config.model_spec(), "config": self.config.to_dict()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "CVDMFamily":
        """Built from the training config where the export has it, else from the model spec
        (exports written before configs were saved with them)."""
        if "config" in spec:
            return cls(CVDMConfig.from_dict(spec["config"]))
        names = ("task", "task_options", "schedule", "x_channels", "y_channels", "image_size",
                 "base_channels", "channel_mults", "attention_resolutions", "num_groups",
                 "timesteps")  # fmt: skip
        given = {name: spec[name] for name in names}
        return cls(CVDMConfig(**given, prior_kl=spec.get("prior_kl", "paper")))
