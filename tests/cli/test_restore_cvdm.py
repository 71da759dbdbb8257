"""``restore --solver cvdm``: a trained conditional model restores simulated pairs (scored) or
measurement files (PNG, multi-frame TIFF), writing the mean and the uncertainty map as PNG and
float TIFF; wrong flags and wrong files are clear errors."""

import json

import numpy as np
import pytest
from PIL import Image, ImageSequence

from diffvi.data.paired import load_paired
from diffvi.training import CVDMConfig, fit
from diffvi.utils.io import write_float_tiff

FAST = ["--solver", "cvdm", "--samples", "3", "--steps", "4", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def microscopy_model(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cvdm") / "run"
    config = CVDMConfig(
        task="microscopy-sr", task_options={"size": 16}, train_size=32, val_size=4,
        base_channels=8, channel_mults=[1, 2], batch_size=16, timesteps=20, sample_steps=3,
        val_sample_size=2, max_steps=4, val_every_n_steps=4, warmup_steps=1,
    )  # fmt: skip
    fit(config, run_dir, progress_bar=False, accelerator="cpu")
    return run_dir


def _frames(path) -> list[np.ndarray]:
    with Image.open(path) as image:
        return [np.asarray(frame, dtype=np.float32) for frame in ImageSequence.Iterator(image)]


def test_simulated_pairs_are_restored_scored_and_written_as_png_and_tiff(
    cli, microscopy_model, tmp_path
):
    out = tmp_path / "out"
    args = ["--model", microscopy_model, "--dataset", "microscopy-sr", "--count", "3"]
    result = cli("restore", *args, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.stdout and "Spearman" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "microscopy-sr" and metrics["images"] == 3
    assert {"psnr", "ssim", "spearman", "coverage", "psnr_baseline"} <= set(metrics["summary"])
    for name in ("0000", "0001", "0002"):
        mean = _frames(out / "restored" / f"{name}.tif")
        std = _frames(out / "uncertainty" / f"{name}.tif")
        assert len(mean) == len(std) == 1 and mean[0].shape == (16, 16)
        assert mean[0].min() >= 0 and mean[0].max() <= 1 and std[0].min() >= 0
        png = np.asarray(Image.open(out / "uncertainty" / f"{name}.png"))
        # The PNG is the TIFF's std over the shared scale, in 8 bits.
        expected = np.round(std[0] / metrics["uncertainty_png_scale"] * 255)
        assert np.abs(png.astype(float) - expected).max() <= 1
        assert (out / "input" / f"{name}.png").is_file()
    assert (out / "comparison.png").is_file() and (out / "metrics.md").is_file()


def test_measurement_files_are_restored(cli, microscopy_model, tmp_path):
    # The widefield inputs of two simulated pairs, as a float TIFF and an 8-bit PNG (8x8).
    low = load_paired("microscopy-sr", "test", 2, 0, size=16).measurements()
    folder = tmp_path / "widefield"
    write_float_tiff(folder / "a.tif", low[0])
    Image.fromarray((low[1, 0].numpy() * 255).round().astype(np.uint8)).save(folder / "b.png")
    out = tmp_path / "out"
    result = cli("restore", "--model", microscopy_model, "--input", folder, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["name"] for e in metrics["per_image"]] == ["a", "b"] and "summary" not in metrics
    assert _frames(out / "restored" / "a.tif")[0].shape == (16, 16)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "microscopy-sr", "--noise-std", "0.1"], "--noise-std does not apply"),
        (["--dataset", "microscopy-sr", "--lr", "0.1"], "do not apply to --solver cvdm"),
        (["--dataset", "mnist-sr4"], "trained on task 'microscopy-sr'"),
        ([], "exactly one source"),
    ],
)
def test_wrong_flags_are_clear_errors(cli, microscopy_model, tmp_path, extra, message):
    result = cli("restore", "--model", microscopy_model, *extra, "--out", tmp_path, *FAST)
    assert result.exit_code != 0 and message in result.output


def test_a_missing_model_and_a_wrong_sized_input_are_clear_errors(cli, microscopy_model, tmp_path):
    result = cli("restore", "--dataset", "microscopy-sr", "--out", tmp_path, *FAST)
    assert result.exit_code != 0 and "needs --model" in result.output
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "big.png")
    result = cli("restore", "--model", microscopy_model, "--input", tmp_path / "big.png", *FAST)
    assert result.exit_code != 0 and "expects 8x8 measurements" in result.output
