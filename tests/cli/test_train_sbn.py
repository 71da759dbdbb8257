"""``train sbn``: trains a sigmoid belief net from the command line and reports its bound."""

import json


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
