"""``train vae`` writes a complete run; ``evaluate`` reports bounds in the right order."""

import json
import shutil

import pytest
import torch


def test_train_vae_writes_checkpoint_config_export_and_summary(trained_run):
    run_dir, result = trained_run
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "export" / "model.safetensors").is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "digits"
    assert config["objective"] == "elbo"
    assert config["latent_dims"] == [4]
    assert config["hidden"] == [[64]]
    assert config["max_epochs"] == 3
    assert config["event_shape"] == [1, 8, 8]
    assert str(run_dir) in result.stdout
    assert "Final validation ELBO" in result.stdout


def test_train_vae_refuses_to_overwrite_an_existing_run_without_resume(cli, trained_run):
    run_dir, _ = trained_run
    result = cli("train", "vae", "--dataset", "digits", "--run-dir", run_dir, "--no-progress")
    assert result.exit_code == 1
    assert "--resume" in result.stderr and str(run_dir) in result.stderr


def test_resume_rejects_options_that_differ_from_the_saved_run(cli, trained_run):
    run_dir, _ = trained_run
    result = cli("train", "vae", "--run-dir", run_dir, "--resume", "--objective", "iwae")
    assert result.exit_code == 1
    assert "objective" in result.stderr and "'elbo'" in result.stderr


def test_resume_continues_a_run_to_more_epochs(cli, trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    result = cli(
        "train", "vae", "--run-dir", run_dir, "--resume", "--max-epochs", "4", "--threads", "1",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(4 epochs, step" in result.stdout
    assert json.loads((run_dir / "config.json").read_text())["max_epochs"] == 4


@pytest.fixture(scope="module")
def evaluation(trained_run, tmp_path_factory):
    """``evaluate --k 5000 --json`` on the tiny run (first 200 test points)."""
    from typer.testing import CliRunner

    from diffvi.cli.main import app

    out = tmp_path_factory.mktemp("eval") / "metrics.json"
    args = ["evaluate", str(trained_run[0]), "--k", "5000", "--limit", "200", "--json", str(out)]
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, [*args, "--threads", "1", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result


def test_evaluate_json_records_metrics_and_settings(evaluation, trained_run):
    metrics, result = evaluation
    assert metrics["k"] == 5000
    assert metrics["iwae_k"] == 50
    assert metrics["num_points"] == 200
    assert metrics["dataset"] == "digits" and metrics["split"] == "test"
    assert metrics["seed"] == 0
    assert metrics["model"] == str(trained_run[0])
    assert metrics["nll"] == pytest.approx(-metrics["log_px"])
    assert 0 <= metrics["active_units"] <= metrics["latent_dim"] == 4
    for row in ("ELBO (", "IWAE bound (k=50)", "k=5000", "active units"):
        assert row in result.stdout


def test_evaluate_bounds_are_ordered_elbo_iwae50_log_px5000(evaluation):
    # On average ELBO <= IWAE(k=50) <= IS estimate with k=5000 (the IWAE bound at k=5000);
    # the tolerance covers the Monte Carlo noise of 200 test points.
    metrics, _ = evaluation
    noise = 3 * metrics["log_px_stderr"] + 0.01
    assert metrics["elbo"] <= metrics["iwae_bound"] + noise
    assert metrics["iwae_bound"] <= metrics["log_px"] + noise
    assert metrics["log_px"] < 0  # a probability of grey-level pixels (Bernoulli) is < 1
    assert metrics["log_px_stderr"] < 0.5


def test_evaluate_with_the_same_seed_gives_the_same_numbers(cli, trained_run, tmp_path):
    common = ["evaluate", trained_run[0], "--k", "100", "--limit", "50", "--no-progress"]
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert cli(*common, "--json", first).exit_code == 0
    assert cli(*common, "--json", second).exit_code == 0
    assert json.loads(first.read_text()) == json.loads(second.read_text())


def test_evaluate_accepts_a_checkpoint_file_as_well_as_a_run_folder(cli, trained_run):
    ckpt = trained_run[0] / "checkpoints" / "last.ckpt"
    result = cli("evaluate", ckpt, "--k", "10", "--limit", "20", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "data points" in result.stdout
