"""``diffvi train vae|ddvae|diffusion --data …``: every image family trains on a folder of the
user's images or an array file and exports a model of the data's shape; bad input is a one-line
error."""

import json

import numpy as np
import pytest
from PIL import Image

from diffvi.training import load

QUICK = ["--max-steps", "5", "--batch-size", "8", "--threads", "1", "--no-progress", "--seed", "0"]
SMALL_VAE = ["--latent-dim", "4", "--hidden", "32", "--k", "2"]
SMALL_UNET = ["--base-channels", "8", "--channel-mults", "1,2", "--attention", ""]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """40 PNGs of 20x24 and 24x20 pixels, a third of them grey, with a labels CSV beside."""
    folder = tmp_path_factory.mktemp("own") / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = ["file,label"]
    for i in range(40):
        shape = (20, 24) if i % 2 else (24, 20)
        pixels = rng.integers(0, 256, shape if i % 3 == 0 else (*shape, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        rows.append(f"{i:02d}.png,{'cat' if i % 2 else 'dog'}")
    (folder.parent / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def _spec(run_dir):
    return json.loads((run_dir / "export" / "model.json").read_text())


def test_train_vae_on_a_folder_exports_a_colour_model_of_the_chosen_size(cli, photos, tmp_path):
    run_dir = tmp_path / "vae"
    result = cli(
        "train", "vae", "--data", photos, "--size", "16", "--objective", "elbo",
        *SMALL_VAE, *QUICK, "--run-dir", run_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = _spec(run_dir)["config"]
    assert config["event_shape"] == [3, 16, 16]
    assert config["data"] == str(photos) and config["dataset"] is None
    assert load(run_dir).config.event_shape == [3, 16, 16]
    assert f"Next: diffvi sample {run_dir}" in result.output
    # evaluate scores the held-out part of the folder (tests/cli/test_evaluate_data.py)
    scored = cli("evaluate", run_dir, "--k", "2", "--iwae-k", "2", "--no-progress")
    assert scored.exit_code == 0 and "photos (test)" in scored.output


def test_train_diffusion_on_an_npy_array_exports_its_shape(cli, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, 3, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "arr.npy", images)
    run_dir = tmp_path / "diffusion"
    result = cli(
        "train", "diffusion", "--data", tmp_path / "arr.npy", *SMALL_UNET, *QUICK,
        "--warmup-steps", "2", "--run-dir", run_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _spec(run_dir)["event_shape"] == [3, 16, 16]


def test_train_ddvae_on_a_labelled_folder_runs_and_names_its_run_after_the_folder(
    cli, photos, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = cli(
        "train", "ddvae", "--data", photos, "--labels", photos.parent / "labels.csv",
        "--size", "16", "--crop", "random", "--hidden", "32", "--diffusion-steps", "3",
        "--warmup-steps", "2", *QUICK,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "photos-ddvae-pinwheel"
    assert _spec(run_dir)["config"]["event_shape"] == [3, 16, 16]


def test_semi_supervised_training_uses_the_labels_csv(cli, photos, tmp_path):
    result = cli(
        "train", "vae", "--data", photos, "--labels", photos.parent / "labels.csv",
        "--size", "8", "--objective", "elbo", "--prior", "mixture", "--labelled", "10",
        "--labelled-batch", "4", *SMALL_VAE, *QUICK, "--val-every", "5",
        "--run-dir", tmp_path / "semi",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "accuracy of q(l|x)" in result.output


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--dataset", "digits"], "--dataset and --data both name the training data"),
        (["--size", "10", "--channel-mults", "1,2,2"], "divisible by 4"),
        (["--crop", "middle"], "crop"),
    ],
)
def test_bad_combinations_are_one_line_errors(cli, photos, arguments, expected, tmp_path):
    result = cli("train", "diffusion", "--data", photos, *arguments, *QUICK, "--run-dir", tmp_path)
    assert result.exit_code != 0
    assert expected in result.output


def test_data_options_without_data_are_refused(cli, tmp_path):
    result = cli("train", "vae", "--dataset", "digits", "--size", "8", *QUICK)
    assert result.exit_code == 1
    assert "size apply to data of your own (--data)" in result.output


def test_a_corrupt_file_stops_training_with_one_line_naming_it(cli, photos, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes((photos / "01.png").read_bytes())
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = cli("train", "vae", "--data", folder, "--size", "8", *QUICK, "--run-dir", tmp_path)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(folder / "c.png") in lines[0], result.output
