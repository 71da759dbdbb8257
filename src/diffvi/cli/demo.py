"""``diffvi demo``: train a small VAE on scikit-learn's 8x8 digits, evaluate it and plot it."""

from pathlib import Path
from typing import Annotated

import typer

from diffvi.cli.options import (
    FlushDenormalOpt,
    ensure_writable,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)


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
            show_default="300, or 5 with --quick",
        ),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "--k",
            "-k",
            min=1,
            help="Importance samples per point for log p(x).",
            show_default="5000, or 500 with --quick",
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
    """Train, evaluate and plot a VAE, then a VAE and a DD-VAE with 2-D latents, on 8x8 digits
    (about 6 minutes on 2 CPU cores).

    Trains on scikit-learn's digits (2 CPU cores suffice), prints the test ELBO, IWAE bound,
    importance-sampled log-likelihood and active units, and writes reconstructions.png,
    samples.png, latent.png (posterior means coloured by digit) and metrics.json to --out.
    Then trains a VAE and a DD-VAE (diffusion posterior, DDVI) with 2-D latents under the
    pinwheel prior, prints their kNN accuracy and latent NLL, and draws their test latents side
    by side in latents_vae_vs_ddvae.png. Last, draws 16 images from the shipped MNIST diffusion
    prior with DDIM (diffusion_samples.png).

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
    ensure_writable(out, folder=True)
    from diffvi.training.demo import run_demo

    run_demo(out, quick, max_epochs, k, seed, flush_denormal, progress, echo=typer.echo)
