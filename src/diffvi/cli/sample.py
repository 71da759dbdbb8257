"""``diffvi sample``: a grid of images drawn from a trained model."""

import math
from pathlib import Path
from typing import Annotated

import typer

from diffvi.cli.options import (
    DeviceOpt,
    FlushDenormalOpt,
    ThreadsOpt,
    choice,
    ensure_writable,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)
from diffvi.diffusion.samplers import REVERSE_VARIANCES, SAMPLERS
from diffvi.nn.adm import ADM_CONFIGS
from diffvi.utils.text import plural

# Every form of model `diffvi.load` takes (training/checkpoint.py), for the help text.
MODEL_FORMS = (
    "a run folder, its export/ (model.json), a .ckpt file, a named model (mnist, "
    "fashion-mnist, or one in $DIFFVI_MODELS; a folder of the current directory is ./NAME), a "
    "diffusers folder (a DDPMPipeline or DDIMPipeline folder, or a UNet2DModel folder with "
    "scheduler_config.json beside its config.json), hf:ORG/NAME[@REV] (downloaded from "
    "the Hugging Face Hub; both need pip install 'diffvi[hub]'), or a guided-diffusion (ADM) "
    f"checkpoint: adm:CONFIG:FILE.pt (CONFIG {', '.join(sorted(ADM_CONFIGS))}), adm:FILE.pt or "
    "FILE.pt/.pth (config recognised from the file)"
)
ModelArg = Annotated[
    str,
    typer.Argument(metavar="RUN_OR_CKPT", help=f"The model: {MODEL_FORMS}.", show_default=False),
]


@report_errors
def sample_command(
    run_or_checkpoint: ModelArg,
    num: Annotated[int, typer.Option("--num", "-n", min=1, help="Number of samples.")] = 64,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output image grid (.png), or a folder (a name without suffix, such as "
            "digits/) that gets one PNG per sample at the model's size, 000.png … (the input "
            "of `diffvi restore --input`).",
        ),
    ] = Path("samples.png"),
    nrow: Annotated[
        int | None,
        typer.Option(min=1, help="Images per row of the grid.", show_default="ceil(sqrt(num))"),
    ] = None,
    scale: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Integer up-scaling of each image of the grid.",
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
    steps: Annotated[
        int, typer.Option(min=2, help="Diffusion models: network evaluations of the sampler.")
    ] = 1000,
    sampler: Annotated[
        choice(SAMPLERS), typer.Option(help="Diffusion models: ancestral DDPM or DDIM.")
    ] = "ddpm",
    eta: Annotated[
        float | None,
        typer.Option(min=0.0, help="Diffusion models: DDIM's η.", show_default="1 ddpm, 0 ddim"),
    ] = None,
    clip: Annotated[
        bool | None,
        typer.Option(
            "--clip/--no-clip",
            help="Diffusion models: clamp the x0 estimate at every step (to [-1, 1], or a "
            "diffusers scheduler's clip_sample_range) and recompute the noise from it.",
            show_default="the model's: on for diffvi's and ADM image models, a diffusers "
            "scheduler config's clip_sample",
        ),
    ] = None,
    variance: Annotated[
        choice(REVERSE_VARIANCES) | None,
        typer.Option(
            help="Diffusion models, --sampler ddpm: variance of each step's noise: the "
            "network's learned one (a learned-range network, such as ADM's), fixed_small "
            "(the posterior variance) or fixed_large (beta).",
            show_default="the model's: learned where it has one, else its scheduler's fixed one",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    flush_denormal: FlushDenormalOpt = True,
    progress: Annotated[
        bool, typer.Option(help="Show a progress bar (diffusion models' sampling steps).")
    ] = True,
) -> None:
    """Draw samples from a trained model and save them as an image grid (or one PNG each in a
    folder): z ~ p(z), x ~ p(x|z) from a VAE; the reverse chain of a diffusion model with
    --steps/--sampler/--eta. A pretrained prior samples as its own scheduler does (its
    clip_sample, and a learned variance in the ddpm sampler); --clip/--no-clip and --variance
    override that.

    RUN_OR_CKPT: a run folder, its export/, a .ckpt file, a named model (mnist,
    fashion-mnist), a diffusers folder, hf:ORG/NAME[@REVISION], or a guided-diffusion
    checkpoint adm:CONFIG:FILE.pt (see its help below).

    **Examples**

    ```
    diffvi sample runs/mnist-dynamic-iwae-k50 --num 64 --out samples.png
    diffvi sample runs/d/checkpoints/last.ckpt --num 100 --seed 1 -o d.png
    diffvi sample mnist --steps 50 --sampler ddim -o digits.png
    diffvi sample mnist --steps 50 --sampler ddim --num 8 -o digits/
    diffvi sample runs/mnist-diffusion-cosine --steps 1000 --num 16
    diffvi sample hf:google/ddpm-cifar10-32 --steps 50 --sampler ddim -o cifar.png
    diffvi sample path/to/ddpm-cifar10-32 --steps 1000 --num 4 -o cifar/
    diffvi sample adm:ffhq256:models/ffhq_10m.pt --steps 100 --num 4 -o faces/
    diffvi sample adm:ffhq256:models/ffhq_10m.pt --steps 100 --variance fixed_small -o f.png
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    ensure_writable(out, folder=not out.suffix)
    import torch

    from diffvi.evaluation.plots import save_image_grid
    from diffvi.training import load
    from diffvi.utils.runtime import resolve_device

    torch_device = resolve_device(device)
    family = load(run_or_checkpoint, torch_device)
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    if family.kind == "diffusion":
        shape = (num, *family.spec["event_shape"])
        images = family.model.sample(
            shape, steps=steps, sampler=sampler, eta=eta, generator=generator, progress=progress,
            clip=clip, variance=variance,
        )  # fmt: skip
    elif family.kind == "vae":
        images = family.model.sample(num, generator=generator, mean=mean)
    else:
        raise ValueError(
            f"sample draws from VAEs and diffusion models; {run_or_checkpoint} holds a "
            f"{family.kind!r} model"
        )
    images = images.float().cpu()
    if images.ndim != 4:
        raise ValueError(
            f"sample grids need image-shaped data [C, H, W]; this model's observations have "
            f"shape {list(images.shape[1:])}"
        )
    if out.suffix:
        path = save_image_grid(
            images.clamp(0, 1), out, nrow=nrow or math.ceil(math.sqrt(num)), scale=scale
        )
    else:
        path = _write_folder(images, out)
    typer.echo(f"Wrote {plural(num, 'sample')} from {run_or_checkpoint} to {path}")


def _write_folder(images, folder: Path) -> Path:
    """One PNG per image ``[N, C, H, W]``, at its own size: ``folder/000.png`` …"""
    from diffvi.utils.io import write_png

    width = max(3, len(str(len(images) - 1)))
    for i, image in enumerate(images):
        write_png(folder / f"{i:0{width}d}.png", image)
    return folder
