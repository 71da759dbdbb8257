"""``train sbn``: trains a sigmoid belief net from the command line and reports its bound, on a
registered data set or on a folder of the user's images; bad data is a one-line error."""

import csv
import json

import numpy as np
import torch
from PIL import Image

from diffvi.training import load


def test_cli_trains_and_reports_the_bound(cli, tmp_path):
    run = tmp_path / "cli-run"
    result = cli(
        "train", "sbn", "--dataset", "digits", "--layers", "6", "--estimator", "vimco",
        "--k", "3", "--max-steps", "6", "--val-every", "3", "--val-k", "5", "--run-dir", run,
        "--threads", "1", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Validation bound (K = 5)" in result.stdout
    assert (run / "export" / "model.json").is_file()


def test_evaluate_reports_ordered_bounds_of_an_sbn_run(cli, tmp_path):
    run = tmp_path / "run"
    result = cli(
        "train", "sbn", "--dataset", "digits", "--layers", "6", "--estimator", "rws",
        "--k", "3", "--max-steps", "20", "--val-every", "20", "--val-k", "5", "--run-dir", run,
        "--threads", "1", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "m.json"
    result = cli(
        "evaluate", run, "--k", "500", "--iwae-k", "20", "--elbo-samples", "50", "--limit", "40",
        "--json", out, "--threads", "1", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["dataset"] == "digits" and metrics["num_points"] == 40
    assert metrics["elbo"] < metrics["iwae_bound"] < metrics["log_px"] + 0.05


def _bars(folder):
    """200 binary 8x8 PNGs, each one horizontal or vertical bar (16 patterns, log 16 nats)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(200):
        pixels = np.zeros((8, 8), dtype=np.uint8)
        where = int(rng.integers(0, 8))
        if i % 2:
            pixels[where, :] = 255
        else:
            pixels[:, where] = 255
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


def _val_bounds(run_dir, k):
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        return [float(r[f"val/bound_k{k}"]) for r in csv.DictReader(file) if r[f"val/bound_k{k}"]]


def test_an_sbn_trained_on_a_folder_of_bars_improves_its_bound_and_exports(
    cli, tmp_path, monkeypatch
):
    bars = _bars(tmp_path / "bars")
    monkeypatch.chdir(tmp_path)
    result = cli(
        "train", "sbn", "--data", bars, "--layers", "8", "--estimator", "vimco", "--k", "5",
        "--lr", "0.03", "--batch-size", "20", "--max-steps", "150", "--val-every", "50",
        "--val-k", "20", "--threads", "1", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "sbn-bars-8-vimco-k5"  # named after the folder
    bounds = _val_bounds(run_dir, 20)
    assert len(bounds) == 3 and bounds[-1] > bounds[0] + 4, bounds  # about -21 -> -13 nats
    family = load(run_dir)
    assert family.kind == "sbn" and family.config.event_shape == [1, 8, 8]
    assert family.config.data == str(bars) and family.config.dataset is None
    x = torch.from_numpy(np.asarray(Image.open(bars / "000.png")) / 255.0).float()
    with torch.no_grad():
        assert family.importance_bound(x[None, None], 20).item() > bounds[0]


def test_bad_data_for_an_sbn_is_a_one_line_error(cli, tmp_path):
    bars = _bars(tmp_path / "bars")
    table = tmp_path / "cells.csv"
    table.write_text("a,b\n1,2\n3,4\n")
    quick = ["--max-steps", "2", "--threads", "1", "--no-progress", "--run-dir", tmp_path / "r"]
    cases = [
        (["--data", tmp_path / "nowhere"], str(tmp_path / "nowhere")),
        (["--data", bars, "--dataset", "digits"], "both name the training data"),
        (["--data", table], f"{table} is neither a folder of images nor an array file"),
        (["--data", bars, "--labels", tmp_path / "no.csv"], str(tmp_path / "no.csv")),
        (["--dataset", "digits", "--val-fraction", "0.2"], "apply to data of your own"),
    ]
    for arguments, expected in cases:
        result = cli("train", "sbn", *arguments, *quick)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert expected in lines[0], result.output
