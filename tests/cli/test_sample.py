"""``sample`` writes a grid PNG of the expected pixel size, reproducible by seed."""

import matplotlib.image as mpimg
import numpy as np

from diffvi.evaluation.plots import grid_size


def test_sample_writes_a_png_of_the_expected_pixel_size(cli, trained_run, tmp_path):
    out = tmp_path / "samples.png"
    result = cli("sample", trained_run[0], "--num", "10", "--nrow", "5", "--out", out)
    assert result.exit_code == 0, result.output
    pixels = mpimg.imread(out)
    # 8x8 digits are scaled 4x, with 1 pixel of padding: 2 rows of 5.
    assert pixels.shape[:2] == grid_size(10, 8, 8, nrow=5, scale=4) == (67, 166)
    assert str(out) in result.stdout


def test_sample_default_grid_is_square_for_64_samples(cli, trained_run, tmp_path):
    out = tmp_path / "s.png"
    assert cli("sample", trained_run[0], "--out", out).exit_code == 0
    height, width = mpimg.imread(out).shape[:2]
    assert height == width == 8 * 33 + 1


def test_sample_is_reproducible_by_seed(cli, trained_run, tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    for path, seed in zip(paths, (0, 0, 1), strict=True):
        assert cli("sample", trained_run[0], "-n", "4", "-o", path, "--seed", seed).exit_code == 0
    a, b, c = (mpimg.imread(p) for p in paths)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
