"""``demo --quick`` trains, evaluates and writes its three plots and metrics.json."""

import json

import matplotlib.image as mpimg


def test_demo_quick_writes_plots_metrics_and_prints_the_table(cli, tmp_path):
    out = tmp_path / "demo"
    result = cli("demo", "--quick", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    for name in ("reconstructions.png", "samples.png", "latent.png", "latents_vae_vs_ddvae.png"):
        assert mpimg.imread(out / name).ndim == 3, name
    # 64 samples of 8x8 digits, 8 per row, scaled 4x with 1 pixel padding.
    assert mpimg.imread(out / "samples.png").shape[:2] == (8 * 33 + 1, 8 * 33 + 1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "digits" and metrics["quick"] is True
    assert metrics["num_points"] == 360
    assert metrics["elbo"] <= metrics["iwae_bound"] + 0.05
    assert metrics["latent_dim"] == 8
    assert (out / "checkpoints" / "last.ckpt").is_file()
    for row in ("ELBO (", "IWAE bound", "importance-sampled", "active units"):
        assert row in result.stdout

    comparison = metrics["latent_comparison"]
    for name in ("vae", "ddvae"):
        assert 0.0 <= comparison[name]["knn_accuracy"] <= 1.0
        assert comparison[name]["latent_nll"] > 0  # a KDE density below 1 on the prior's support
    assert (out / "latent-ddvae" / "checkpoints" / "last.ckpt").is_file()
    assert "DD-VAE (diffusion q" in result.stdout
    # The shipped MNIST prior (package data) gives the last plot.
    if "diffusion_samples" in metrics:
        assert mpimg.imread(out / "diffusion_samples.png").ndim == 3
        assert metrics["diffusion_samples"]["steps"] == 10
