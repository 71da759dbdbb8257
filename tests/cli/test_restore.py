"""``restore``: simulate a measurement of clean images, restore them with the shipped MNIST
prior and score them; files or a data-set split as input; clear errors on bad input."""

import json
import math

import numpy as np
import pytest
from PIL import Image

FAST = ["--prior", "mnist", "--steps", "5", "--threads", "1", "--no-progress"]


def _shapes() -> dict[str, np.ndarray]:
    """Three 28×28 grey shapes in {0, 255}: a bar, a cross and a ring (digit-like strokes)."""
    yy, xx = np.mgrid[:28, :28]
    r = np.hypot(yy - 13.5, xx - 13.5)
    shapes = {
        "bar": (abs(xx - 14) < 3) & (yy > 4) & (yy < 24),
        "cross": ((abs(xx - 14) < 2) | (abs(yy - 14) < 2)) & (r < 10),
        "ring": (r > 6) & (r < 10),
    }
    return {name: (mask * 255).astype(np.uint8) for name, mask in shapes.items()}


@pytest.fixture
def shape_folder(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    for name, pixels in _shapes().items():
        Image.fromarray(pixels, "L").save(folder / f"{name}.png")
    return folder


def _read(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_restore_a_folder_of_pngs_by_inpainting(cli, shape_folder, tmp_path):
    out = tmp_path / "out"
    # 10 steps (not 5): the margin over the raw measurement is then a few dB, not a fraction.
    args = ["--task", "inpaint-random", "--solver", "red-diff", "--input", shape_folder]
    # --batch-size 2: two chunks, 2 + 1 images.
    result = cli("restore", *args, "--out", out, *FAST, "--steps", "10", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.stdout and "dB" in result.stdout

    for name, reference in _shapes().items():
        restored = _read(out / "restored" / f"{name}.png")
        assert restored.shape == (28, 28) and restored.dtype == np.uint8
        measured = _read(out / "measured" / f"{name}.png")
        # Inpainting without noise: every pixel is either observed exactly or hidden (0).
        assert np.all((measured == reference) | (measured == 0))
    assert (out / "comparison.png").is_file()

    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["name"] for e in metrics["per_image"]] == ["bar", "cross", "ring"]
    assert all(e["restored"] == f"restored/{e['name']}.png" for e in metrics["per_image"])
    assert metrics["task"] == "inpaint-random" and metrics["solver"] == "red-diff"
    assert metrics["solver_options"]["steps"] == 10 and metrics["nfe"] == 10
    assert metrics["prior"] == "mnist" and metrics["seed"] == 0 and metrics["noise_std"] == 0.0
    assert metrics["seconds"] > 0 and metrics["seconds_per_image"] > 0
    psnr = metrics["summary"]["psnr"]
    assert math.isfinite(psnr)
    assert psnr > metrics["measurement_summary"]["psnr"] + 1.0
    assert "| PSNR (dB) |" in (out / "metrics.md").read_text()


def test_restore_a_single_file_is_reproducible_by_seed(cli, shape_folder, tmp_path):
    runs = []
    for name in ("a", "b"):
        args = ["--task", "denoise", "--noise-std", "0.1", "--input", shape_folder / "ring.png"]
        result = cli("restore", *args, "--out", tmp_path / name, *FAST)
        assert result.exit_code == 0, result.output
        runs.append(_read(tmp_path / name / "restored" / "ring.png"))
    assert np.array_equal(*runs)


def test_restore_a_dataset_split_with_ddrm_on_sr4(cli, tmp_path):
    from diffvi.data import load_dataset

    try:
        load_dataset("mnist", "test")
    except (FileNotFoundError, ValueError) as err:
        pytest.skip(f"MNIST is not available (set DIFFVI_DATA): {err}")
    out = tmp_path / "out"
    args = ["--task", "sr4", "--solver", "ddrm", "--dataset", "mnist", "--split", "test"]
    result = cli("restore", *args, "--count", "2", "--start", "1", "--out", out, *FAST)
    assert result.exit_code == 0, result.output

    names = ["0001", "0002"]
    for name in names:
        assert _read(out / "restored" / f"{name}.png").shape == (28, 28)
        # The 7×7 measurement is shown at 28×28, upsampled by nearest neighbour: 4×4 blocks.
        measured = _read(out / "measured" / f"{name}.png").astype(int)
        blocks = measured.reshape(7, 4, 7, 4)
        assert np.all(blocks == blocks[:, :1, :, :1])
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["name"] for e in metrics["per_image"]] == names
    assert metrics["source"] == {"dataset": "mnist", "split": "test", "start": 1, "count": 2}
    assert metrics["solver_options"] == {
        "steps": 5,
        "eta": 0.85,
        "eta_b": 1.0,
        "clip_denoised": True,
    }
    assert math.isfinite(metrics["summary"]["psnr"]) and metrics["summary"]["images"] == 2


def test_perceptual_scores_with_a_cached_classifier(cli, shape_folder, tmp_path):
    from diffvi.evaluation import sample_quality

    info = sample_quality.default_classifier_cache_dir("mnist") / "classifier.json"
    if not info.is_file() or json.loads(info.read_text()).get("pooled") != sample_quality._POOLED:
        pytest.skip("no cached MNIST feature classifier (training one takes about a minute)")
    out = tmp_path / "out"
    result = cli("restore", "--input", shape_folder, "--out", out, "--perceptual", *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["summary"]["perceptual"] <= 2 and math.isfinite(metrics["summary"]["fid"])
    assert all("perceptual" in e for e in metrics["per_image"])
    assert "classifier-FID" in (out / "metrics.md").read_text()


def test_wrong_image_size_names_the_expected_size(cli, tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 24), np.uint8), "L").save(path)
    result = cli("restore", "--input", path, "--out", tmp_path / "out", *FAST)
    assert result.exit_code != 0
    assert "28x28" in result.output and "small.png" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["both", "neither"])
def test_exactly_one_source_of_images(cli, shape_folder, tmp_path, source):
    extra = ["--input", shape_folder, "--dataset", "mnist"] if source == "both" else []
    result = cli("restore", *extra, "--out", tmp_path / "out", *FAST)
    assert result.exit_code != 0
    assert "exactly one" in result.output and "--input" in result.output


def test_a_knob_the_solver_does_not_take_is_an_error(cli, shape_folder, tmp_path):
    args = ["--solver", "ddrm", "--lr", "0.1", "--input", shape_folder]
    result = cli("restore", *args, "--out", tmp_path / "out", *FAST)
    assert result.exit_code != 0
    assert "--lr does not apply to solver ddrm" in result.output
    assert "--eta" in result.output  # the knobs it does take


def test_solver_options_of_the_papers_code_reach_the_solver(cli, shape_folder, tmp_path):
    """RED-diff's --weighting, --sigma-x0, --misfit-mean and --no-clip-denoised, and ΠGDM's
    --no-replace-observed, land in the solver (recorded in metrics.json)."""
    out = tmp_path / "red"
    args = ["--task", "inpaint-random", "--input", shape_folder, "--weighting", "power2over3"]
    args += ["--sigma-x0", "0.1", "--misfit-mean", "all", "--no-clip-denoised"]
    result = cli("restore", *args, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    options = json.loads((out / "metrics.json").read_text())["solver_options"]
    assert options["weighting"] == "power2over3" and options["sigma_x0"] == 0.1
    assert options["misfit_mean"] == "all" and options["clip_denoised"] is False
    out = tmp_path / "pigdm"
    args = ["--task", "inpaint-box", "--solver", "pigdm", "--input", shape_folder]
    result = cli("restore", *args, "--no-replace-observed", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    options = json.loads((out / "metrics.json").read_text())["solver_options"]
    assert options["replace_observed"] is False and options["clip_denoised"] is True


@pytest.mark.parametrize(
    ("solver", "flag"),
    [("red-diff", "--replace-observed"), ("ddrm", "--sigma-x0=0.1"), ("dps", "--misfit-mean=all")],
)
def test_a_paper_option_of_another_solver_is_an_error(cli, shape_folder, tmp_path, solver, flag):
    args = ["--solver", solver, flag, "--input", shape_folder]
    result = cli("restore", *args, "--out", tmp_path / "out", *FAST)
    assert result.exit_code != 0
    assert f"{flag.split('=')[0]} does not apply to solver {solver}" in result.output


def test_a_solver_that_needs_an_svd_rejects_phase_retrieval(cli, shape_folder, tmp_path):
    args = ["--solver", "ddrm", "--task", "phase-retrieval", "--input", shape_folder]
    result = cli("restore", *args, "--out", tmp_path / "out", *FAST)
    assert result.exit_code != 0
    assert "SVDOperator" in result.output


def test_unknown_task_lists_the_choices(cli, shape_folder, tmp_path):
    result = cli("restore", "--task", "colourise", "--input", shape_folder, *FAST)
    assert result.exit_code != 0
    assert "inpaint-box" in result.output and "sr4" in result.output


def test_help_lists_the_options_and_examples(cli):
    result = cli("restore", "--help")
    assert result.exit_code == 0
    for option in ("--task", "--solver", "--prior", "--input", "--dataset", "--noise-std",
                   "--steps", "--perceptual", "--batch-size", "--seed", "--device"):  # fmt: skip
        assert option in result.stdout
    assert "diffvi restore --task" in result.stdout


@pytest.mark.parametrize(
    ("mode", "fill", "expected"),
    [
        ("RGBA", (200, 200, 200, 128), "transparent pixel"),
        ("RGB", (255, 0, 0), "is a colour image (mode RGB), but the prior takes grey images"),
    ],
)
def test_a_colour_or_transparent_input_is_a_one_line_error_not_made_grey(
    cli, shape_folder, tmp_path, mode, fill, expected
):
    Image.new(mode, (28, 28), fill).save(shape_folder / "zz_odd.png")  # in a folder of greys
    for source in (shape_folder, shape_folder / "zz_odd.png"):
        result = cli("restore", "--input", source, "--out", tmp_path / "out", *FAST)
        assert result.exit_code == 1
        assert expected in result.output and "zz_odd.png" in result.output
        assert len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()


def test_a_grey_image_saved_as_opaque_rgba_is_restored(cli, tmp_path):
    path = tmp_path / "ring.png"
    ring = _shapes()["ring"]
    Image.fromarray(np.dstack([ring, ring, ring, np.full_like(ring, 255)]), "RGBA").save(path)
    out = tmp_path / "out"
    result = cli("restore", "--task", "denoise", "--input", path, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert (out / "restored" / "ring.png").exists()
