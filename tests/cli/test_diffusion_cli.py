"""``diffvi train diffusion`` and ``diffvi sample`` on a diffusion run."""

import json

from PIL import Image

TINY = [
    "train", "diffusion", "--dataset", "digits", "--base-channels", "8", "--channel-mults", "1,2",
    "--attention", "", "--max-steps", "20", "--val-every", "10", "--batch-size", "32",
    "--threads", "1", "--no-progress",
]  # fmt: skip


def test_train_then_sample_writes_a_grid_and_resume_extends_the_run(cli, tmp_path):
    run_dir = tmp_path / "run"
    result = cli(*TINY, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    assert "Final validation bits/dim" in result.output
    out = tmp_path / "grid.png"
    result = cli("sample", run_dir, "--num", "4", "--steps", "5", "--sampler", "ddim", "-o", out)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] > 8
    result = cli("train", "diffusion", "--run-dir", run_dir, "--resume", "--max-steps", "25")
    assert result.exit_code == 0, result.output
    assert "step 25" in result.output


def test_evaluate_reports_bits_per_dim_and_fid_with_its_floor(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the FID classifier's cache
    run_dir = tmp_path / "run"
    assert cli(*TINY, "--run-dir", run_dir).exit_code == 0
    out = tmp_path / "m.json"
    result = cli(
        "evaluate", run_dir, "--limit", "60", "--fid", "40", "--sample-steps", "3", "--json", out
    )
    assert result.exit_code == 0, result.output
    assert "bits/dim" in result.output and "real-vs-real floor" in result.output
    metrics = json.loads(out.read_text())
    assert metrics["dataset"] == "digits" and metrics["num_points"] == 60
    assert metrics["bpd"] > 0 and metrics["fid"] > metrics["fid_floor"] >= 0


def test_existing_run_without_resume_and_clashing_resume_options_are_errors(cli, tmp_path):
    run_dir = tmp_path / "run"
    assert cli(*TINY, "--run-dir", run_dir).exit_code == 0
    result = cli(*TINY, "--run-dir", run_dir)
    assert result.exit_code != 0 and "--resume" in result.output
    result = cli("train", "diffusion", "--run-dir", run_dir, "--resume", "--lr", "0.1")
    assert result.exit_code != 0 and "lr" in result.output


def test_learned_schedule_with_the_simple_loss_is_refused(cli, tmp_path):
    result = cli(*TINY, "--schedule", "learned", "--loss", "simple", "--run-dir", tmp_path / "r")
    assert result.exit_code != 0 and "VDM bound" in result.output


def test_sample_with_an_unknown_model_name_lists_where_it_looked(cli, tmp_path):
    result = cli("sample", "no-such-model", "-o", tmp_path / "x.png")
    assert result.exit_code != 0 and "no model 'no-such-model'" in result.output
