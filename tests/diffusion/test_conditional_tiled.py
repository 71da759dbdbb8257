"""CVDM sampling with tiles: the chain stays whole-image, the networks see tiles, so a draw with
local networks (receptive radius <= overlap // 4) equals the untiled draw of the same seed, and
one tile covering the image is the untiled sampler itself."""

import pytest
import torch
from torch import Tensor, nn

from diffvi.diffusion.conditional import CVDM, ConditionalSchedule, FixedConditionalSchedule
from diffvi.diffusion.schedules import build_schedule


class LocalDenoiser(nn.Module):
    """ε̂ from two 3x3 convolutions (receptive radius 2) with the summary s as a bias."""

    def __init__(self, y_channels: int, cond_channels: int) -> None:
        super().__init__()
        self.first = nn.Conv2d(y_channels + cond_channels, 8, 3, padding=1)
        self.time = nn.Linear(1, 8)
        self.last = nn.Conv2d(8, y_channels, 3, padding=1)

    def forward(self, y: Tensor, s: Tensor, cond: Tensor) -> Tensor:
        h = self.first(torch.cat([y, cond], 1)) + self.time(s[:, None])[:, :, None, None]
        return self.last(torch.tanh(h))


def _model(schedule: str, channels: int = 1) -> CVDM:
    torch.manual_seed(0)
    if schedule == "learned":  # λ-network: three 3x3 convolutions, radius 3
        sched = ConditionalSchedule(channels, channels, hidden=8, time_hidden=8)
    else:
        sched = FixedConditionalSchedule(build_schedule(schedule))
    denoiser = LocalDenoiser(channels, 2 * channels)
    return CVDM(sched, denoiser, channels, channels, image=False, timesteps=8).double()


def _bounds(x: Tensor) -> tuple[Tensor, Tensor]:
    return -1 - x, 1 - x


@pytest.mark.parametrize(
    ("schedule", "size", "tile", "overlap"),
    [("learned", (48, 48), 32, 16), ("learned", (40, 56), 24, 12), ("cosine", (48, 48), 32, 16)],
)
def test_a_tiled_draw_equals_the_untiled_draw_of_the_same_seed(schedule, size, tile, overlap):
    model = _model(schedule)
    x = torch.randn(2, 1, *size, dtype=torch.float64).clamp(-1, 1)

    def draw(**tiles) -> Tensor:
        generator = torch.Generator().manual_seed(3)
        return model.sample(x, steps=6, generator=generator, clip=_bounds, **tiles)

    whole = draw()
    tiled = draw(tile=tile, overlap=overlap, tile_batch=3)
    torch.testing.assert_close(tiled, whole, rtol=1e-9, atol=1e-9)


def test_multichannel_draws_tile_too():
    model = _model("learned", channels=2)
    x = torch.randn(1, 2, 48, 40, dtype=torch.float64).clamp(-1, 1)
    draws = [
        model.sample(x, steps=4, generator=torch.Generator().manual_seed(0), **tiles)
        for tiles in ({}, {"tile": 32, "overlap": 16})
    ]
    torch.testing.assert_close(draws[1], draws[0], rtol=1e-9, atol=1e-9)


def test_one_tile_over_the_whole_image_is_the_untiled_sampler_for_a_unet():
    torch.manual_seed(0)
    model = CVDM.build(1, 1, image_size=16, base_channels=8, channel_mults=(1, 2), image=False,
                       timesteps=5)  # fmt: skip
    for p in model.denoiser.out.parameters():  # zero-initialised: make ε̂ non-trivial
        nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    draws = [
        model.sample(x, generator=torch.Generator().manual_seed(1), clip=_bounds, **tiles)
        for tiles in ({}, {"tile": 16, "overlap": 4}, {"tile": 64})
    ]
    torch.testing.assert_close(draws[1], draws[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(draws[2], draws[0], rtol=0, atol=1e-6)
