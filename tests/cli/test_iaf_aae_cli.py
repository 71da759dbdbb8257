"""``train vae --posterior iaf`` and ``--objective aae`` write runs with those settings; an
invalid combination fails with a one-line error."""

import json

TINY = [
    "train", "vae", "--dataset", "digits", "--k", "1", "--batch-size", "64", "--lr", "3e-3",
    "--adam", "torch", "--max-epochs", "1", "--seed", "0", "--threads", "1", "--no-progress",
]  # fmt: skip


def test_train_vae_aae_with_pinwheel_prior_then_resume(cli, tmp_path):
    run_dir = tmp_path / "aae"
    args = ["--objective", "aae", "--prior", "pinwheel", "--latent-dim", "2", "--hidden", "32,32",
            "--adversarial-weight", "0.5", "--discriminator-lr", "1e-3"]  # fmt: skip
    result = cli(*TINY, *args, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["objective"] == "aae" and config["prior"] == "pinwheel"
    assert config["adversarial_weight"] == 0.5 and config["discriminator_lr"] == 1e-3
    assert "Final validation ELBO of q (AAE" in result.stdout and "step 22" in result.stdout
    resumed = cli("train", "vae", "--run-dir", run_dir, "--resume", "--max-epochs", "2",
                  "--threads", "1", "--no-progress")  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert "(2 epochs, step 44)" in resumed.stdout


def test_train_vae_with_iaf_posterior_writes_its_settings(cli, tmp_path):
    run_dir = tmp_path / "iaf"
    args = ["--objective", "elbo", "--posterior", "iaf", "--iaf-flows", "2",
            "--made-hidden", "16,16", "--latent-dim", "4", "--hidden", "32"]  # fmt: skip
    result = cli(*TINY, *args, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["posterior"] == "iaf" and config["iaf_flows"] == 2
    assert config["made_hidden"] == [16, 16]
    assert "Final validation ELBO" in result.stdout


def test_aae_with_iaf_and_deterministic_encoder_fails_with_one_line_error(cli, tmp_path):
    result = cli(*TINY, "--objective", "aae", "--posterior", "iaf", "--deterministic-encoder",
                 "--latent-dim", "2", "--run-dir", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 1
    assert "needs posterior 'gaussian'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_made_hidden_fails_with_one_line_error(cli, tmp_path):
    result = cli(*TINY, "--posterior", "iaf", "--made-hidden", "16,x", "--run-dir", tmp_path / "r")
    assert result.exit_code == 1
    assert "--made-hidden takes comma-separated" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
