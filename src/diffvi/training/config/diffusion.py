"""The image diffusion family's config: :class:`DiffusionConfig`."""

from dataclasses import dataclass
from typing import Any

from diffvi.diffusion.model import LOSSES
from diffvi.diffusion.schedules import LEARNABLE_SCHEDULES
from diffvi.diffusion.schedules import SCHEDULES as NOISE_SCHEDULES
from diffvi.training.config.base import (
    MODEL,
    ImageDataConfig,
    RunConfig,
    batch_size_option,
    channel_mults_option,
    dataset_option,
    lr_option,
    option,
    warmup_option,
)


@dataclass
class DiffusionConfig(RunConfig, ImageDataConfig):
    """Everything that defines a diffusion training run (JSON-serialisable).

    The UNet is ``base_channels · channel_mults`` wide per level with ``num_res_blocks`` blocks
    and attention at the ``attention_resolutions``; ``ema_decay`` is the decay of the exported
    weights' moving average. ``event_shape`` is set from the data: a registered ``dataset``, or
    the user's own images, ``data`` (:class:`ImageDataConfig`). Every level of the UNet but
    the last halves the images, so H and W must be divisible by ``2 ** (len(channel_mults) -
    1)``.
    """

    dataset: str | None = dataset_option("mnist")
    schedule: str = option(
        "cosine",
        "Noise schedule γ(t): linear (DDPM), cosine (Nichol & Dhariwal), learned (VDM's "
        "monotone network), learnable-scalar (VDM's linear γ with learned endpoints, its "
        "CIFAR-10/ImageNet configs); the learned ones need --loss vdm.",
        panel=MODEL,
        choices=NOISE_SCHEDULES,
    )
    loss_type: str = option(
        "simple",
        "simple: DDPM's ε-loss; vdm: the VDM continuous-time bound in bits/dim (the default "
        "with a learned schedule).",
        flag="--loss",
        choices=LOSSES,
    )
    base_channels: int = option(32, "UNet width of the first level.", panel=MODEL, min=1)
    channel_mults: list[int] = channel_mults_option()
    num_res_blocks: int = option(1, "Blocks per level.", flag="--res-blocks", panel=MODEL, min=1)
    attention_resolutions: list[int] = option(
        [7],
        "Resolutions with self-attention, e.g. 14,7 ('' for none).",
        flag="--attention",
        panel=MODEL,
    )
    dropout: float = option(0.0, "Dropout in the UNet blocks.", panel=MODEL, min=0, max=0.9)
    batch_size: int = batch_size_option(64)
    lr: float = lr_option(2e-4)
    warmup_steps: int = warmup_option(200)
    grad_clip: float = 1.0
    max_steps: int = 5000
    ema_decay: float | None = 0.999
    val_size: int = 1000
    val_every_n_steps: int | None = 1000
    event_shape: list[int] | None = None

    def __post_init__(self) -> None:
        self.check_run()
        self.check_data()
        if self.schedule not in NOISE_SCHEDULES:
            raise ValueError(
                f"schedule must be one of {sorted(NOISE_SCHEDULES)}, got {self.schedule!r}"
            )
        if self.loss_type not in LOSSES:
            raise ValueError(f"loss_type must be one of {LOSSES}, got {self.loss_type!r}")
        if self.schedule in LEARNABLE_SCHEDULES and self.loss_type != "vdm":
            raise ValueError(
                f"a learned schedule is trained by the VDM bound: use loss_type 'vdm' with "
                f"schedule {self.schedule!r}"
            )
        for name in ("batch_size", "base_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def model_spec(self) -> dict[str, Any]:
        """The spec of :func:`~diffvi.diffusion.pretrained.build_diffusion_model`."""
        if self.event_shape is None:
            raise ValueError("event_shape is set from the data set before the model is built")
        channels, height, width = self.event_shape
        factor = 2 ** (len(self.channel_mults) - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"the UNet's {len(self.channel_mults)} levels (--channel-mults "
                f"{','.join(map(str, self.channel_mults))}) halve the images "
                f"{len(self.channel_mults) - 1} times, so H and W must be divisible by {factor}; "
                f"{self.data_name} has {height}x{width} images: resize them (--size) or use "
                "fewer levels"
            )
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
                "image_size": min(height, width),
            },
            "loss_type": self.loss_type,
            "image": True,
            "event_shape": list(self.event_shape),
        }
