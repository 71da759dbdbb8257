"""``train sbn``: trains a sigmoid belief net from the command line and reports its bound."""


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
