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


def test_sample_to_a_folder_writes_one_png_per_sample_at_the_model_size(cli, trained_run, tmp_path):
    folder = tmp_path / "digits"
    result = cli("sample", trained_run[0], "-n", "3", "-o", folder)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["000.png", "001.png", "002.png"]
    assert mpimg.imread(folder / "001.png").shape[:2] == (8, 8)  # no up-scaling, no padding
    assert f"Wrote 3 samples from {trained_run[0]} to {folder}" in result.stdout


def test_one_sample_is_reported_in_the_singular(cli, trained_run, tmp_path):
    result = cli("sample", trained_run[0], "-n", "1", "-o", tmp_path / "one.png")
    assert result.exit_code == 0, result.output
    assert "Wrote 1 sample from" in result.stdout


def test_sample_no_progress_silences_the_diffusion_progress_bar(cli, tmp_path):
    args = ["sample", "mnist", "-n", "2", "--steps", "3", "--sampler", "ddim", "--threads", "1"]
    shown = cli(*args, "-o", tmp_path / "a.png")
    assert shown.exit_code == 0, shown.output
    assert "sampling: 100%" in shown.stderr  # tqdm's bar over the sampler's steps
    quiet = cli(*args, "-o", tmp_path / "b.png", "--no-progress")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""


def test_a_sampled_folder_is_restore_input(cli, tmp_path):
    """The README's `sample mnist ... -o digits/` then `restore --input digits/`."""
    digits = tmp_path / "digits"
    args = ["--steps", "3", "--threads", "1", "--no-progress"]
    sampled = cli("sample", "mnist", "-n", "2", "--sampler", "ddim", "-o", digits, *args)
    assert sampled.exit_code == 0, sampled.output
    out = tmp_path / "r"
    restored = cli("restore", "--task", "inpaint-box", "--solver", "red-diff", "--input", digits,
                   "--out", out, *args)  # fmt: skip
    assert restored.exit_code == 0, restored.output
    assert sorted(p.name for p in (out / "restored").iterdir()) == ["000.png", "001.png"]
