"""CVDMReconstructor on images of any size: a model of your own pairs restores tile by tile
(uncertainty maps of whole-image draws, sides padded where the UNet needs it), one tile over the
whole image is the untiled reconstructor, and bad tiles are clear errors."""

import pytest
import torch
from torch import nn

from diffvi.diffusion.conditional import CVDM
from diffvi.inverse.solvers.cvdm import CVDMReconstructor
from diffvi.training.families.cvdm import build_cvdm_model


def _spec(channels: int = 1, schedule: str = "learned", task: str = "pairs") -> dict:
    options = {"factor": 2} if task == "pairs" else {"size": 16}
    return {
        "kind": "cvdm", "task": task, "task_options": options, "schedule": schedule,
        "x_channels": channels, "y_channels": channels, "image_size": 16, "base_channels": 8,
        "channel_mults": [1, 2], "attention_resolutions": [], "num_groups": 8, "timesteps": 4,
    }  # fmt: skip


def _model(spec: dict) -> nn.Module:
    torch.manual_seed(0)
    model = build_cvdm_model(spec)
    if isinstance(model, CVDM):  # its UNet's last conv starts at zero: make ε̂ non-trivial
        for p in model.denoiser.out.parameters():
            nn.init.normal_(p, std=0.1)
    return model


def _restore(spec: dict, y: torch.Tensor, **options) -> object:
    options = {"samples": 3, "generator": torch.Generator().manual_seed(0), **options}
    return CVDMReconstructor(_model(spec), spec, **options)(y)


@pytest.mark.parametrize(
    ("channels", "size", "mults"),
    [(1, (20, 28), [1, 2]), (2, (13, 11), [1, 2]), (1, (5, 40), [1, 2, 2])],  # 10 rows: padded
)
def test_a_pairs_model_restores_any_size_and_channels_tile_by_tile(channels, size, mults):
    y = torch.rand(2, channels, *size, generator=torch.Generator().manual_seed(1))
    spec = {**_spec(channels), "channel_mults": mults}
    result = _restore(spec, y, tile=16, overlap=4, batch_size=5)
    shape = (2, channels, 2 * size[0], 2 * size[1])
    assert result.x.shape == shape and result.samples.shape == (3, *shape)
    assert torch.isfinite(result.samples).all() and (result.std > 0).any()
    assert result.x.min() >= 0 and result.x.max() <= 1


def test_one_tile_over_the_whole_image_is_the_untiled_reconstructor():
    spec = _spec(task="microscopy-sr")
    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    untiled = _restore(spec, y)
    tiled = _restore(spec, y, tile=32)
    torch.testing.assert_close(tiled.samples, untiled.samples, rtol=0, atol=1e-6)


def test_the_trained_size_is_the_default_tile_and_a_quarter_of_it_the_overlap():
    spec = _spec()
    reconstructor = CVDMReconstructor(_model(spec), spec)
    assert (reconstructor.tile, reconstructor.overlap, reconstructor.factor) == (16, 4, 2)
    assert CVDMReconstructor(_model(_spec(task="mnist-sr4")), _spec(task="mnist-sr4")).tile is None


def test_a_regression_model_restores_tile_by_tile():
    spec = _spec(schedule="regression")
    result = _restore(spec, torch.rand(1, 1, 24, 12), tile=16, overlap=8)
    assert result.x.shape == (1, 1, 48, 24) and not result.stochastic


@pytest.mark.parametrize(
    ("mults", "options", "message"),
    [
        ([1, 2, 2, 2], {"tile": 12}, "--tile must be a multiple of 8"),
        ([1, 2], {"tile": 16, "overlap": 9}, r"--overlap must be in \[0, tile // 2 = 8\]"),
    ],
)
def test_bad_tiles_are_clear_errors(mults, options, message):
    spec = {**_spec(), "channel_mults": mults}
    with pytest.raises(ValueError, match=message):
        CVDMReconstructor(_model(spec), spec, **options)


def test_overlap_without_tile_and_a_wrong_channel_count_are_errors():
    spec = _spec(task="microscopy-sr")
    with pytest.raises(ValueError, match="give --tile too"):
        CVDMReconstructor(_model(spec), spec, overlap=4)
    with pytest.raises(ValueError, match=r"takes measurements \[B, 2, h, w\]"):
        _restore(_spec(2), torch.rand(1, 1, 8, 8))
