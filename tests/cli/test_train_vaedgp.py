"""``train vaedgp``: trains a VAE-DGP from the command line and reports bound and imputation."""

import json


def test_cli_trains_a_two_layer_vae_dgp_and_reports(cli, tmp_path):
    run = tmp_path / "run"
    result = cli(
        "train", "vaedgp", "--dataset", "frey-faces", "--layers", "2", "--train-size", "100",
        "--num-inducing", "8", "--recognition-hidden", "16", "--batch-size", "50",
        "--max-steps", "4", "--val-every", "2", "--run-dir", run, "--threads", "1",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Held-out bound" in result.stdout and "Imputation RMSE" in result.stdout
    assert (run / "export" / "model.json").is_file() and (run / "latents.png").is_file()
    assert json.loads((run / "config.json").read_text())["latent_dims"] == [10, 5]


def test_layers_and_latent_dims_must_agree(cli, tmp_path):
    result = cli(
        "train", "vaedgp", "--layers", "2", "--latent-dims", "5", "--run-dir", tmp_path / "r",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "--latent-dims 5 gives 1 layers, not 2" in result.output
