"""``diffvi sample``: a grid of images drawn from a trained model."""

import math
from pathlib import Path
from typing import Annotated

import typer

from diffvi.cli.common import (
    DeviceOpt,
    FlushDenormalOpt,
    RunOrCheckpoint,
    ThreadsOpt,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)


@report_errors
def sample_command(
    run_or_checkpoint: RunOrCheckpoint,
    num: Annotated[int, typer.Option("--num", "-n", min=1, help="Number of samples.")] = 64,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output image (.png).")] = Path(
        "samples.png"
    ),
    nrow: Annotated[
        int | None,
        typer.Option(min=1, help="Images per row.", show_default="ceil(sqrt(num))"),
    ] = None,
    scale: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Integer up-scaling of each image.",
            show_default="4 for 8x8 images, 1 for 28x28",
        ),
    ] = None,
    mean: Annotated[
        bool,
        typer.Option(
            "--mean/--draw", help="Show E[x|z] (the usual sample grid) or a draw x ~ p(x|z)."
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the latent draws.")] = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    flush_denormal: FlushDenormalOpt = True,
) -> None:
    """Draw samples z ~ p(z), x ~ p(x|z) from a trained VAE and save them as an image grid.

    **Examples**

    ```
    diffvi sample runs/mnist-dynamic-iwae-k50 --num 64 --out samples.png
    diffvi sample runs/d/checkpoints/last.ckpt --num 100 --seed 1 -o d.png
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    import torch

    from diffvi.cli.evaluate import load_for_evaluation
    from diffvi.evaluation.plots import save_image_grid

    module, checkpoint, torch_device = load_for_evaluation(run_or_checkpoint, device)
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    images = module.model.sample(num, generator=generator, mean=mean).float().cpu()
    if images.ndim != 4:
        raise ValueError(
            f"sample grids need image-shaped data [C, H, W]; this model's observations have "
            f"shape {list(images.shape[1:])}"
        )
    path = save_image_grid(
        images.clamp(0, 1), out, nrow=nrow or math.ceil(math.sqrt(num)), scale=scale
    )
    typer.echo(f"Wrote {num} samples from {checkpoint} to {path}")
