"""The deterministic baseline of the paired restoration tasks: a UNet regressing the target."""

from typing import Any

import torch
from torch import Tensor, nn

from diffvi.nn.tiling import Tiling
from diffvi.nn.unet import UNet


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
    def sample(
        self,
        x: Tensor,
        *args: Any,
        tile: int | None = None,
        overlap: int = 0,
        tile_batch: int = 16,
        **kwargs: Any,
    ) -> Tensor:
        """The prediction ``ŷ₀ [B, C_y, H, W]`` (deterministic; sampler arguments ignored);
        with ``tile``, the UNet sees ``tile × tile`` crops, ``tile_batch`` at a time, blended
        over ``overlap`` pixels (:class:`~diffvi.nn.tiling.Tiling`)."""
        if tile is None:
            return self(x)
        tiling = Tiling(x.shape[-2], x.shape[-1], tile, overlap)
        return tiling.apply(lambda _, crop: self(crop), x, batch_size=tile_batch)
