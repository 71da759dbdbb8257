"""``diffvi demo``: train a small VAE on scikit-learn's 8x8 digits, evaluate it and plot it."""

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from diffvi.cli.common import (
    FlushDenormalOpt,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)
from diffvi.utils.io import write_json

# The demo model: one stochastic layer of 8 units, MLPs 64-256-256-16 (tanh), trained with the
# single-sample ELBO and Adam at lr 1e-3 (PyTorch's betas). Bernoulli likelihood on the grey
# levels (values k/16), as is usual for this data set. Full: ~2 min on 2 CPU cores (one torch
# thread: ~0.3 s per epoch of 22 steps, ~12 s for log p(x) with k = 5000 on the 360 test points).
DEMO_MODEL: dict[str, Any] = {
    "dataset": "digits",
    "architecture": "iwae-1",
    "latent_dims": [8],
    "hidden": [[256, 256]],
    "activation": "tanh",
    "likelihood": "bernoulli",
    "objective": "elbo",
    "k": 1,
    "batch_size": 64,
    "lr": 1e-3,
    "adam": "torch",
    "schedule": "constant",
    "val_k": 50,
}
FULL = {"max_epochs": 300, "k": 5000}
QUICK = {"max_epochs": 5, "k": 500}


@report_errors
def demo_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the run, the plots and metrics.json.")
    ] = Path("runs/demo"),
    max_epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Training epochs (22 steps each).",
            show_default=f"{FULL['max_epochs']}, or {QUICK['max_epochs']} with --quick",
        ),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "--k",
            "-k",
            min=1,
            help="Importance samples per point for log p(x).",
            show_default=f"{FULL['k']}, or {QUICK['k']} with --quick",
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="A ~15 s version (few epochs, fewer samples) for tests and CI.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of training, evaluation and plots.")] = 0,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            help="CPU threads for torch. This model is too small to gain from "
            "more than one, and on busy shared cores extra threads make it slower.",
        ),
    ] = 1,
    flush_denormal: FlushDenormalOpt = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train, evaluate and plot a VAE on 8x8 digits in about two minutes.

    Trains on scikit-learn's digits (2 CPU cores suffice), prints the test ELBO, IWAE bound,
    importance-sampled log-likelihood and active units, and writes reconstructions.png,
    samples.png, latent.png (posterior means coloured by digit) and metrics.json to --out.

    **Examples**

    ```
    diffvi demo
    diffvi demo --quick --out /tmp/demo
    diffvi demo --max-epochs 200 --seed 1 --out runs/demo-long
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    settings = QUICK if quick else FULL
    epochs = max_epochs or settings["max_epochs"]
    is_k = k or settings["k"]

    import torch

    from diffvi.cli.train import final_metrics_callback
    from diffvi.data import load_dataset
    from diffvi.evaluation.plots import (
        save_image_grid,
        save_latent_scatter,
        save_reconstructions,
    )
    from diffvi.evaluation.report import evaluate_module, format_table
    from diffvi.training import TrainConfig, fit

    config = TrainConfig(**DEMO_MODEL, max_epochs=epochs, seed=seed, flush_denormal=flush_denormal)
    typer.echo(
        f"Training a VAE (latent dim 8, MLP 256-256, ELBO) on digits for {epochs} epochs "
        f"into {out} ..."
    )
    started = time.perf_counter()
    tracker = final_metrics_callback()
    module = fit(
        config,
        out,
        progress_bar=progress,
        callbacks=[tracker],
        log_every_n_steps=10,
        checkpoint_every_n_epochs=25,
    )
    train_seconds = time.perf_counter() - started
    module = module.cpu().eval()

    test = load_dataset("digits", "test")
    x, labels = test.images, test.labels
    started = time.perf_counter()
    metrics = evaluate_module(module, x, k=is_k, show_progress=progress, seed=seed)
    eval_seconds = time.perf_counter() - started

    model, posterior = module.model, module.posterior
    with torch.no_grad():
        x_hat = model.reconstruct(x[:16], posterior)
        samples = model.sample(64, generator=torch.Generator().manual_seed(seed))
        z_mean = posterior.expected_latent(x)
    paths = [
        save_reconstructions(x[:16], x_hat.clamp(0, 1), out / "reconstructions.png"),
        save_image_grid(samples.clamp(0, 1), out / "samples.png", nrow=8),
        save_latent_scatter(
            z_mean,
            labels,
            out / "latent.png",
            title="digits test set: posterior means E[z|x]",
        ),
    ]
    payload = {
        **metrics,
        "dataset": "digits",
        "split": "test",
        "seed": seed,
        "max_epochs": epochs,
        "quick": quick,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "final_val": tracker.metrics,
        "checkpoint": str(out / "checkpoints" / "last.ckpt"),
        "config": config.to_dict(),
    }
    paths.append(write_json(out / "metrics.json", payload))
    typer.echo(
        f"Trained in {train_seconds:.0f} s, evaluated in {eval_seconds:.0f} s "
        f"(torch threads: {torch.get_num_threads()})."
    )
    typer.echo(format_table(metrics, title="VAE on digits, test set"))
    typer.echo("Wrote " + ", ".join(str(p) for p in paths))
