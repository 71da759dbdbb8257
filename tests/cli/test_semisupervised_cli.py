"""``train vae/ddvae --labelled N``: the options reach the config, the summary reports the label
accuracies, the default label-conditioned DD-VAE improves its bound and exports a model that
``embed`` reads, and options that do not fit are refused with one-line errors."""

import csv
import json

SEMI_VAE = [
    "train", "vae", "--dataset", "digits", "--objective", "elbo", "--k", "1",
    "--prior", "mixture", "--latent-dim", "2", "--hidden", "32", "--batch-size", "64",
    "--labelled", "100", "--labelled-batch", "20", "--semi-posterior", "factorised",
    "--label-weight", "0.5",
    "--classifier-weight", "2", "--max-epochs", "1", "--seed", "0", "--threads", "1",
    "--no-progress",
]  # fmt: skip


def test_train_vae_with_labelled_writes_semisupervised_config_and_reports_accuracy(cli, tmp_path):
    run_dir = tmp_path / "run"
    result = cli(*SEMI_VAE, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["num_labelled"] == 100 and config["labelled_batch"] == 20
    assert config["label_weight"] == 0.5 and config["classifier_weight"] == 2.0
    assert config["semi_posterior"] == "factorised"
    assert "Final validation accuracy of q(l|x)" in result.stdout
    assert "prior partition of z" in result.stdout


def test_train_ddvae_with_labelled_and_standard_normal_prior_fails_with_one_line_error(cli):
    result = cli("train", "ddvae", "--dataset", "digits", "--prior", "standard-normal",
                 "--labelled", "100", "--max-epochs", "1", "--threads", "1")  # fmt: skip
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "one partition per class" in result.output, result.output


def test_train_ddvae_labelled_defaults_to_the_label_conditioned_posterior_and_embeds(cli, tmp_path):
    run_dir = tmp_path / "run"
    result = cli(
        "train", "ddvae", "--dataset", "digits", "--prior", "mixture", "--diffusion-steps", "5",
        "--hidden", "64,64", "--batch-size", "64", "--lr", "1e-2", "--max-epochs", "4",
        "--warmup-steps", "20", "--labelled", "100", "--labelled-batch", "32", "--seed", "0",
        "--threads", "1", "--no-progress", "--log-every-n-steps", "5", "--run-dir", run_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["semi_posterior"] == "conditional" and config["num_labelled"] == 100
    assert config["classifier_weight"] == 78.4 and config["entropy_weight"] == 0.001
    assert "Final validation accuracy of q(l|x)" in result.stdout
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        bounds = [float(r["val/bound"]) for r in csv.DictReader(file) if r["val/bound"]]
    assert len(bounds) == 4 and bounds[-1] > bounds[0], bounds
    out = tmp_path / "emb"
    result = cli("embed", run_dir, "--out", out, "--clusters", "0", "--threads", "1",
                 "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len((out / "latents.csv").read_text().splitlines()) == 1 + 360
    assert json.loads((out / "metrics.json").read_text())["knn_accuracy"] > 0.3


def test_semi_posterior_options_that_do_not_fit_fail_in_one_line(cli, tmp_path):
    base = ["train", "ddvae", "--dataset", "digits", "--prior", "mixture", "--max-epochs", "1",
            "--threads", "1", "--run-dir", tmp_path / "r"]  # fmt: skip
    for extra, message in (
        (["--semi-posterior", "conditional"], "set num_labelled"),
        (["--labelled", "100", "--label-weight", "2"], "weight of the other"),
    ):
        result = cli(*base, *extra)
        assert result.exit_code != 0
        assert message in result.output and "Traceback" not in result.output, result.output
