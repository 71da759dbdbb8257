"""``train ddvae`` writes a DD-VAE run; ``embed`` writes one latent row per test image, a plot and
the kNN / latent-NLL figures; inconsistent options fail with one-line errors."""

import csv
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from diffvi.cli.main import app
from diffvi.data import load_dataset

TINY_DDVAE = [
    "train", "ddvae", "--dataset", "digits", "--prior", "pinwheel", "--diffusion-steps", "5",
    "--hidden", "32,32", "--batch-size", "64", "--lr", "3e-3", "--max-epochs", "2",
    "--seed", "0", "--threads", "1", "--no-progress", "--log-every-n-steps", "10",
    "--warmup-steps", "5", "--sleep-trains-chain",
]  # fmt: skip


@pytest.fixture(scope="module")
def ddvae_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddvae") / "run"
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, [*TINY_DDVAE, "--run-dir", str(run_dir)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return run_dir, result


def test_train_ddvae_writes_checkpoint_and_config_with_ddvi_settings(ddvae_run):
    run_dir, result = ddvae_run
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "export" / "model.safetensors").is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["objective"] == "ddvi" and config["posterior"] == "diffusion"
    assert config["prior"] == "pinwheel" and config["latent_dims"] == [2]
    assert config["diffusion_steps"] == 5 and config["hidden"] == [[32, 32]]
    assert config["warmup_steps"] == 5 and config["wake_updates_chain"] is False
    assert config["smooth_prior"] is True and config["beta_reg"] == 1.0  # train ddvae defaults
    assert "Final validation DDVI bound" in result.stdout


def test_embed_writes_one_csv_row_per_test_image_png_and_metrics(cli, ddvae_run, tmp_path):
    run_dir, _ = ddvae_run
    out = tmp_path / "emb"
    result = cli("embed", run_dir, "--out", out, "--seed", "3", "--threads", "1")
    assert result.exit_code == 0, result.output
    with open(out / "latents.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["z1", "z2", "label"]
    test_set = load_dataset("digits", "test")
    assert len(rows) - 1 == len(test_set)
    assert [int(r[2]) for r in rows[1:11]] == test_set.labels[:10].tolist()
    assert (out / "latents.png").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["knn_accuracy"] <= 1.0 and metrics["knn_k"] == 20
    assert math.isfinite(metrics["latent_nll"])
    # The paper's column: the same KDE at the official code's pinwheel samples (seeded by --seed).
    from diffvi.distributions import official_prior_samples
    from diffvi.evaluation import latent_nll

    latents = torch.tensor([[float(r[0]), float(r[1])] for r in rows[1:]], dtype=torch.float64)
    reference = official_prior_samples("pinwheel", 10_000, torch.Generator().manual_seed(3))
    assert metrics["latent_nll_official"] == pytest.approx(latent_nll(latents, reference), rel=1e-5)
    assert metrics["clusters"] == 10
    assert all(0.0 <= metrics[key] <= 1.0 for key in ("purity", "completeness", "nmi"))
    assert "kNN accuracy (k=20" in result.stdout and "Latent NLL" in result.stdout


def test_embed_reports_its_stages_and_batches_on_stderr_unless_no_progress(
    cli, ddvae_run, tmp_path
):
    run_dir, _ = ddvae_run
    shown = cli("embed", run_dir, "--out", tmp_path / "a", "--threads", "1")
    assert shown.exit_code == 0, shown.output
    stages = ["Embedding 360 images of digits (test)", "embed test: 100%", "(train) for kNN",
              "embed train: 100%", "10-component GMM", "Latent NLL"]  # fmt: skip
    assert all(stage in shown.stderr for stage in stages), shown.stderr
    quiet = cli("embed", run_dir, "--out", tmp_path / "b", "--threads", "1", "--no-progress")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and quiet.stdout == shown.stdout.replace(
        str(tmp_path / "a"), str(tmp_path / "b")
    )


def test_train_ddvae_with_2d_prior_and_latent_dim_8_fails_with_one_line_error(cli, tmp_path):
    result = cli(*TINY_DDVAE, "--latent-dim", "8", "--run-dir", tmp_path / "r")
    assert result.exit_code == 1
    assert "pinwheel" in result.stderr and "latent_dims [2]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_vae_with_ddvi_objective_fails_with_one_line_error(cli, tmp_path):
    result = cli("train", "vae", "--dataset", "digits", "--objective", "ddvi",
                 "--run-dir", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 1
    assert "posterior 'diffusion'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_ddvae_recipe_official_runs_both_stages_and_exports_a_model_embed_reads(
    cli, tmp_path
):
    import diffvi

    run_dir = tmp_path / "recipe"
    args = [a for a in TINY_DDVAE if a != "--sleep-trains-chain"]
    result = cli(
        *args, "--recipe", "official", "--max-steps", "12", "--log-every-n-steps", "1",
        "--stage2-option", "kde_samples=1000", "--run-dir", run_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["objective"] == "ddvi-official" and config["conditional"] is False
    assert config["beta_reg"] == 7.84 and config["beta_sleep"] == 784
    stage2 = config["stage2"]  # every official setting is saved
    assert stage2["diffusion_steps"] == 40 and stage2["context_dim"] == 2
    assert stage2["kl_weight"] == stage2["prior_weight"] == pytest.approx(0.003 * 784)
    assert stage2["wake_weight"] == stage2["beta_sleep"] == 784 and stage2["sleep_steps"] == 3
    assert stage2["kde_samples"] == 1000 and stage2["first_fraction"] == 0.5
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        stages = {
            int(r["step"]): r["train/stage"] for r in csv.DictReader(file) if r["train/stage"]
        }
    assert stages == {i: "1.0" if i < 6 else "2.0" for i in range(12)}  # half of 12 steps each
    model = diffvi.load(run_dir)
    assert int(model.posterior.stage) == 2 and model.posterior.num_steps == 40
    assert model.posterior.conditional and not model.posterior.first.conditional
    out = tmp_path / "emb"
    result = cli("embed", run_dir, "--out", out, "--clusters", "0", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert len((out / "latents.csv").read_text().splitlines()) == 1 + 360
    assert json.loads((out / "metrics.json").read_text())["latent_nll_official"] > 0


def test_recipe_options_that_do_not_fit_fail_in_one_line(cli, tmp_path):
    runs = [
        (["--recipe", "bound", "--official"], "--official is --recipe official-stage1"),
        (["--stage2-option", "sleep_steps=2"], "add --recipe official"),
        (["--recipe", "official", "--stage2-option", "context_size=2"], "unknown"),
    ]
    args = [a for a in TINY_DDVAE if a != "--sleep-trains-chain"]
    for extra, message in runs:
        result = cli(*args, *extra, "--run-dir", tmp_path / "r")
        assert result.exit_code == 1 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_train_ddvae_official_sets_the_official_weights_and_embeds(cli, tmp_path):
    run_dir = tmp_path / "official"
    args = [a for a in TINY_DDVAE if a != "--sleep-trains-chain"]
    result = cli(*args, "--official", "--max-epochs", "1", "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["objective"] == "ddvi-official" and config["stage2"] is None  # stage 1 only
    assert config["beta_reg"] == 7.84 and config["beta_sleep"] == 784
    assert config["warmup_steps"] == 5  # the explicit option wins over the official default
    assert "trained with DDIM" in result.stdout
    out = tmp_path / "emb"
    result = cli("embed", run_dir, "--out", out, "--clusters", "0")
    assert result.exit_code == 0, result.output
    assert len((out / "latents.csv").read_text().splitlines()) == 1 + 360  # header + test set
