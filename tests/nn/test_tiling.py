"""Tiled application with overlap blending: the tiles cover the image, every pixel has weight,
and a local network applied tile by tile equals the network on the whole image."""

import pytest
import torch
from torch import nn

from diffvi.nn.tiling import Tiling, tile_starts


@pytest.mark.parametrize(("size", "tile", "overlap"), [(48, 32, 16), (100, 32, 8), (32, 32, 0)])
def test_tiles_cover_the_axis_overlap_by_at_least_overlap_and_end_flush(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == size
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    assert tile_starts(20, 32, 8) == [0]


@pytest.mark.parametrize("size", range(33, 130, 7))
def test_every_pixel_has_weight_and_shared_edges_have_none_within_the_margin(size):
    tiling = Tiling(size, size + 5, 32, 16)
    assert tiling.margin == 4
    for k, (top, left) in enumerate(tiling.boxes()):
        w = tiling.weight(k)
        assert w.min() >= 0 and w.max() <= 1
        if top > 0:
            assert w[:4].abs().max() == 0
        if left > 0:
            assert w[:, :4].abs().max() == 0
        if top + 32 < size:
            assert w[-4:].abs().max() == 0
        if top == 0:
            assert w[0, :].max() > 0  # the image's own border keeps its weight


def test_blending_the_identity_gives_the_input_back():
    x = torch.rand(2, 3, 70, 45, dtype=torch.float64)
    out = Tiling(70, 45, 32, 12).apply(lambda _, crop: crop, x, batch_size=5)
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


def test_a_local_network_tiled_equals_the_network_on_the_whole_image():
    torch.manual_seed(0)
    # Two 3x3 convolutions: receptive radius 2 <= margin (overlap 8 -> margin 2).
    net = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 1, 3, padding=1))
    net = net.double()
    x = torch.randn(3, 2, 57, 81, dtype=torch.float64)
    with torch.no_grad():
        whole = net(x)
        tiled = Tiling(57, 81, 24, 8).apply(lambda _, crop: net(crop), x, batch_size=4)
    torch.testing.assert_close(tiled, whole, rtol=1e-10, atol=1e-10)


def test_the_function_learns_which_image_each_crop_comes_from():
    x = torch.zeros(3, 1, 40, 40)
    bias = torch.tensor([1.0, 2.0, 3.0])
    out = Tiling(40, 40, 16, 4).apply(lambda items, crop: crop + bias[items].view(-1, 1, 1, 1), x)
    torch.testing.assert_close(out[:, 0, 7, 30], bias)


@pytest.mark.parametrize(
    ("args", "message"),
    [((10, 10, 0, 0), "tile must be"), ((10, 10, 8, 5), "overlap must be"),
     ((10, 10, 8, 4, 3), "margin must be"), ((0, 10, 8, 2), "image size")],
)  # fmt: skip
def test_bad_tilings_are_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        Tiling(*args)
