"""``diffvi evaluate --data``: a VAE, an SBN or a diffusion model trained on images of one's own
is scored on other images (a folder or an array, scaled to the training --size; an SBN's grey
levels drawn once as bits) with the bound the library gives for the same images; without
--data and --dataset, on the held-out part of the files it trained on; images of another shape
are a one-line error naming the folder and both shapes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from diffvi.cli.main import app
from diffvi.data.image_folders import BinarizedImages, open_image_data, split_positions
from diffvi.evaluation.report import evaluate_diffusion, evaluate_module
from diffvi.training import load

QUICK = ["--max-steps", "3", "--batch-size", "8", "--threads", "1", "--no-progress", "--seed", "0"]
SCORE = ["--k", "8", "--iwae-k", "4", "--elbo-samples", "2", "--threads", "1", "--no-progress"]
LIBRARY = dict(k=8, iwae_k=4, elbo_samples=2, batch_size=100, seed=0)


def write_pngs(folder, count, shape, seed):
    """``count`` random PNGs of ``shape`` (H, W) or (H, W, 3)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Training PNGs (24 grey 12x12), new ones (10 grey 10x10) and colour ones (6 of 10x10)."""
    root = tmp_path_factory.mktemp("evaluate-data")
    return {
        "train": write_pngs(root / "train", 24, (12, 12), 0),
        "new": write_pngs(root / "new", 10, (10, 10), 1),
        "colour": write_pngs(root / "colour", 6, (10, 10, 3), 2),
    }


def train(kind, folder, run_dir, *options):
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, [str(a) for a in [
            "train", kind, "--data", folder, "--size", "8", "--val-fraction", "0.25",
            *options, *QUICK, "--run-dir", run_dir,
        ]])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def vae_run(folders, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("vae") / "run"
    options = ["--objective", "elbo", "--latent-dim", "3", "--hidden", "16", "--k", "1"]
    return train("vae", folders["train"], run_dir, *options)


def scored(cli, run_dir, json_path, *options):
    result = cli("evaluate", run_dir, *SCORE, "--json", json_path, *options)
    assert result.exit_code == 0, result.output
    return json.loads(json_path.read_text())


def images_of(folder, size=8):
    data = open_image_data(folder, size=size)
    return data[torch.arange(len(data))][0]


def test_evaluate_data_on_a_folder_gives_the_librarys_bound(cli, vae_run, folders, tmp_path):
    metrics = scored(cli, vae_run, tmp_path / "m.json", "--data", folders["new"])
    # the 10x10 images scaled to the training --size 8, as the library reads them
    expected = evaluate_module(load(vae_run), images_of(folders["new"]), **LIBRARY)
    assert metrics["num_points"] == 10 and metrics["data"] == str(folders["new"])
    for key in ("elbo", "iwae_bound", "log_px"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-6), key


def test_evaluate_without_data_scores_the_runs_held_out_images(cli, vae_run, folders, tmp_path):
    metrics = scored(cli, vae_run, tmp_path / "m.json")
    _, held_out = split_positions(24, 0.25, 0)
    images = images_of(folders["train"])[held_out]
    expected = evaluate_module(load(vae_run), images, **LIBRARY)
    assert metrics["num_points"] == 6 and metrics["split"] == "test"
    assert metrics["elbo"] == pytest.approx(expected["elbo"], rel=1e-6)
    train_part = scored(cli, vae_run, tmp_path / "t.json", "--split", "train", "--limit", "5")
    assert train_part["num_points"] == 5


def test_images_of_another_shape_are_a_one_line_error(cli, vae_run, folders):
    result = cli("evaluate", vae_run, *SCORE, "--data", folders["colour"])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and str(folders["colour"]) in line
    assert "[3, 8, 8]" in line and "expects [1, 8, 8]" in line


def test_data_that_does_not_fit_the_model_or_the_options_is_refused(
    cli, vae_run, folders, tmp_path
):
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n3,4\n")
    result = cli("evaluate", vae_run, *SCORE, "--data", table)
    assert result.exit_code == 1 and "t.csv is a table" in result.output
    result = cli("evaluate", vae_run, "--data", folders["new"], "--dataset", "digits")
    assert result.exit_code == 1 and "both name the data" in result.output


def test_an_sbn_scores_the_bits_drawn_from_the_grey_levels(cli, folders, tmp_path):
    run_dir = train("sbn", folders["train"], tmp_path / "sbn", "--layers", "6", "--k", "2")
    metrics = scored(cli, run_dir, tmp_path / "m.json", "--data", folders["new"])
    bits = BinarizedImages(open_image_data(folders["new"], size=8), dynamic=False)
    images = bits[torch.arange(10)][0]
    assert set(images.unique().tolist()) == {0.0, 1.0}
    expected = evaluate_module(load(run_dir), images, **LIBRARY)
    assert metrics["elbo"] == pytest.approx(expected["elbo"], rel=1e-6)


def test_a_diffusion_model_scores_its_held_out_images(cli, folders, tmp_path):
    unet = ["--base-channels", "8", "--channel-mults", "1,2", "--attention", ""]
    run_dir = train("diffusion", folders["train"], tmp_path / "d", *unet, "--warmup-steps", "1")
    metrics = scored(cli, run_dir, tmp_path / "m.json")
    assert metrics["num_points"] == 6
    _, held_out = split_positions(24, 0.25, 0)
    images = images_of(folders["train"])[held_out]
    expected = evaluate_diffusion(load(run_dir).model, images, batch_size=100, seed=0)
    assert metrics["bpd"] == pytest.approx(expected["bpd"], rel=1e-6)
    result = cli("evaluate", run_dir, "--data", folders["new"], "--fid", "4")
    assert result.exit_code == 1 and "--fid" in result.output
