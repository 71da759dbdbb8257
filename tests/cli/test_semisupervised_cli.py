"""``train vae/ddvae --labelled N``: the options reach the config, the summary reports the label
accuracies, and a prior without partitions is refused with a one-line error."""

import json

SEMI_VAE = [
    "train", "vae", "--dataset", "digits", "--objective", "elbo", "--k", "1",
    "--prior", "mixture", "--latent-dim", "2", "--hidden", "32", "--batch-size", "64",
    "--labelled", "100", "--labelled-batch", "20", "--label-weight", "0.5",
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
    assert "Final validation accuracy of q(l|x)" in result.stdout
    assert "prior partition of z" in result.stdout


def test_train_ddvae_with_labelled_and_standard_normal_prior_fails_with_one_line_error(cli):
    result = cli("train", "ddvae", "--dataset", "digits", "--prior", "standard-normal",
                 "--labelled", "100", "--max-epochs", "1", "--threads", "1")  # fmt: skip
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "one partition per class" in result.output, result.output
