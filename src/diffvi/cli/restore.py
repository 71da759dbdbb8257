"""``diffvi restore``: simulate a measurement of clean images, restore them with a diffusion
prior (RED-diff, DPS, ΠGDM, DDRM) or a trained CVDM and score the restorations against the
originals. The work is :func:`diffvi.inverse.restore`'s; the files are
:func:`diffvi.inverse.report.write_restoration`'s."""

from pathlib import Path
from typing import Annotated, Any

import typer

from diffvi.cli.operator_options import operator_options, parse_size
from diffvi.cli.options import (
    DeviceOpt,
    FlushDenormalOpt,
    ThreadsOpt,
    choice,
    ensure_writable,
    report_errors,
    set_threads,
    setup_numerics,
)
from diffvi.inverse.registry import OPERATORS
from diffvi.inverse.restore import NOISE_UNITS
from diffvi.inverse.solvers import SOLVERS as SOLVER_REGISTRY
from diffvi.inverse.solvers.red_diff import MISFIT_MEANS, WEIGHTINGS
from diffvi.nn.adm import ADM_CONFIGS

# The registries' names; "cvdm" restores with a trained conditional model (`train cvdm`)
# instead of a prior.
TASKS = tuple(OPERATORS)
SOLVERS = (*SOLVER_REGISTRY, "cvdm")

# RED-diff's lr and λ when not given (diffvi.inverse.solvers.red_diff_defaults).
RULE_DEFAULT = "by σ_y and operator, see docs/methods.md"

# Solver knobs of the command line: option name -> constructor keyword.
KNOBS = {
    "--lr": "lr",
    "--reg-weight": "reg_weight",
    "--weighting": "weighting",
    "--sigma-x0": "sigma_x0",
    "--misfit-mean": "misfit_mean",
    "--scale": "scale",
    "--eta": "eta",
    "--clip-denoised": "clip_denoised",
    "--replace-observed": "replace_observed",
}


@report_errors
@operator_options
def restore_command(
    task: Annotated[
        choice(TASKS), typer.Option(help="Forward operator A of the measurement y = A(x) + noise.")
    ] = "inpaint-box",
    solver: Annotated[choice(SOLVERS), typer.Option(help="Restoration algorithm.")] = "red-diff",
    prior: Annotated[
        str,
        typer.Option(
            help="Diffusion prior: a named model (mnist, fashion-mnist, or one in "
            "$DIFFVI_MODELS), a `train diffusion` run folder or its export/ (model.json), a "
            "diffusers folder (a DDPMPipeline or DDIMPipeline folder, or a UNet2DModel folder with "
            "scheduler_config.json beside its config.json), hf:ORG/NAME[@REV] (from the "
            "Hugging Face Hub; both need pip install 'diffvi[hub]'), or a guided-diffusion (ADM) "
            f"checkpoint: adm:CONFIG:FILE.pt (CONFIG {', '.join(sorted(ADM_CONFIGS))}), "
            "adm:FILE.pt or FILE.pt/.pth (config recognised from the file)."
        ),
    ] = "mnist",
    model: Annotated[
        Path | None,
        typer.Option(
            help="cvdm: the trained conditional model (a `train cvdm` run folder or its export).",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, help="cvdm: samples per item for the mean and uncertainty map.")
    ] = 20,
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Clean reference image (PNG/JPEG) or a folder of them, of the prior's size "
            "(or see --resize), grey or colour as the prior is; "
            "cvdm: the measurements (low-resolution PNG/TIFF, or a 2-frame TIFF of defocused "
            "intensities for phase).",
            show_default=False,
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Take the clean images from this data set instead of --input; cvdm: the "
            "model's task (simulated pairs, scored against the truth)."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="With --dataset: its split.")] = "test",
    count: Annotated[int, typer.Option(min=1, help="With --dataset: number of images.")] = 16,
    start: Annotated[int, typer.Option(min=0, help="With --dataset: index of the first.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("restored"),
    noise_std: Annotated[
        float,
        typer.Option(min=0.0, help="σ_y of the Gaussian measurement noise, in --noise-units."),
    ] = 0.0,
    noise_units: Annotated[
        choice(NOISE_UNITS),
        typer.Option(
            help="Units of --noise-std: unit = of images in [0, 1] (as here, and as the DDRM and "
            "RED-diff code state σ_y: they double it for their [-1, 1] images); symmetric = of "
            "images in [-1, 1] (as DPS states σ_y: its 0.05 is 0.025 in unit)."
        ),
    ] = "unit",
    resize: Annotated[
        str | None,
        typer.Option(
            metavar="H[,W]",
            help="Bring every --input image to H x W pixels first (scaled, aspect ratio kept, "
            "to cover H x W, then the centre window); it must be the prior's size.",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="Solver steps (NFE per image).", show_default="the solver's"),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="red-diff: Adam's learning rate.", show_default=RULE_DEFAULT),
    ] = None,
    reg_weight: Annotated[
        float | None,
        typer.Option(help="red-diff: weight λ of the prior.", show_default=RULE_DEFAULT),
    ] = None,
    weighting: Annotated[
        choice(WEIGHTINGS) | None,
        typer.Option(help="red-diff: the regulariser's weight w(t) over time.", show_default="snr"),
    ] = None,
    sigma_x0: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="red-diff: σ of q(x0|y) = N(μ, σ²I); each step is taken at a draw "
            "μ + σn (the official code's sigma_x0).",
            show_default="0",
        ),
    ] = None,
    misfit_mean: Annotated[
        choice(MISFIT_MEANS) | None,
        typer.Option(
            help="red-diff: average the data misfit over the observed entries of y (λ means the "
            "same for every task) or over all of y (inpainting: hidden zeros too, as the "
            "official code's full-size masks).",
            show_default="observed",
        ),
    ] = None,
    scale: Annotated[
        float | None, typer.Option(help="dps, pigdm: guidance scale.", show_default="1")
    ] = None,
    eta: Annotated[
        float | None,
        typer.Option(help="dps, pigdm, ddrm: DDIM's η.", show_default="1; ddrm 0.85"),
    ] = None,
    clip_denoised: Annotated[
        bool | None,
        typer.Option(
            "--clip-denoised/--no-clip-denoised",
            help="red-diff, dps, pigdm, ddrm: clamp the prior's x0 estimate to the image range "
            "(as DPS's code does; RED-diff's code, with its ΠGDM and DDRM, does not).",
            show_default="clip",
        ),
    ] = None,
    replace_observed: Annotated[
        bool | None,
        typer.Option(
            "--replace-observed/--no-replace-observed",
            help="pigdm, inpainting: keep y at the observed pixels and guide only the hidden "
            "ones (the official code).",
            show_default="replace",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images restored at once (tiled cvdm: tiles at once).")
    ] = 64,
    tile: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="cvdm: restore images of any size, the networks on TILE x TILE tiles, "
            "blended (always for a model of your own --pairs; default: its training size): "
            "their memory grows with the tile, not the image.",
            show_default=False,
        ),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            min=0, help="cvdm: overlap of neighbouring tiles in pixels.", show_default="tile/4"
        ),
    ] = None,
    perceptual: Annotated[
        bool,
        typer.Option(
            help="Also score a perceptual distance and classifier-FID (trains and caches a "
            "small classifier of the prior's data set the first time, about a minute)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the mask, the noise and the solver.")] = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    flush_denormal: FlushDenormalOpt = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    operator_params: dict[str, Any] | None = None,
) -> None:
    """Restore images with a diffusion prior: simulate y = A(x) + σ_y·n from clean images
    (--input files or a --dataset split), restore x with --solver, and score it (PSNR, SSIM).

    Writes to --out: `restored/NAME.png`, `measured/NAME.png` (y as an image, SR upsampled by
    nearest neighbour; none for phase retrieval), `comparison.png` (rows labelled truth,
    measurement and the solver), `metrics.json` (per image and summary) and `metrics.md`.

    **Examples**

    ```
    diffvi restore --task inpaint-box --solver red-diff --prior mnist --input digits/ -o r
    diffvi restore --task sr4 --solver dps --prior fashion-mnist --dataset fashion-mnist -o r
    diffvi restore --task deblur-gaussian --solver ddrm --noise-std 0.05 --dataset mnist -o r
    diffvi restore --task sr4-bicubic --solver ddrm --prior RGB_PRIOR --input photos/ --resize 64
    diffvi restore --task sr4-bicubic --prior adm:ffhq256:models/ffhq_10m.pt --input faces/ -o r
    diffvi restore --task inpaint-random --solver dps --prior hf:google/ddpm-cifar10-32 --input c/
    diffvi restore --task inpaint-random --missing 0.5 --noise-std 0.05 --noise-units symmetric ...
    diffvi restore --task deblur-gaussian --blur-size 9 --blur-sigma 2 --boundary reflect ...
    diffvi restore --solver cvdm --model runs/cvdm --input widefield/ -o r
    diffvi restore --solver cvdm --model runs/cvdm --dataset microscopy-sr --count 8 -o r
    diffvi restore --solver cvdm --model runs/my-pairs --input big/ --tile 64 --overlap 16 -o r
    ```

    Every task's parameters are options (panel "Operator (--task) parameters"), its preset's
    values the defaults; the papers' operators at 256 px are sr4-bicubic, inpaint-box (a
    128x128 hole), inpaint-random (70 % missing) and deblur-gaussian-dps (61x61, σ 3 px).
    Colour is kept: a colour prior restores colour images.

    With `--solver cvdm` the measurement and its task are the model's own (no --task, --prior
    or --noise-std): --out gets `restored/NAME.{png,tif}` (mean of --samples samples),
    `uncertainty/NAME.{png,tif}` (their standard deviation; the PNGs share one scale, given in
    metrics.json), `input/NAME.png` (upsampled input or TIE phase) and `comparison.png`.
    """
    setup_numerics(flush_denormal)
    set_threads(threads)
    knobs = {
        "--lr": lr, "--reg-weight": reg_weight, "--weighting": weighting, "--sigma-x0": sigma_x0,
        "--misfit-mean": misfit_mean, "--scale": scale, "--eta": eta,
        "--clip-denoised": clip_denoised, "--replace-observed": replace_observed,
    }  # fmt: skip
    if solver == "cvdm":
        _check_cvdm_flags(model, noise_std, perceptual, knobs)
    else:
        _check_knobs(solver, knobs)
    ensure_writable(out, folder=True)
    from diffvi.inverse.prepare import prepare_restoration
    from diffvi.inverse.report import summary_line, write_restoration

    job = prepare_restoration(
        solver, task=task, prior=prior, model=model,
        options={KNOBS[flag]: v for flag, v in knobs.items() if v is not None},
        input_path=input_path, dataset=dataset, split=split, start=start, count=count,
        samples=samples, steps=steps, noise_std=noise_std, seed=seed, device=device,
        noise_units=noise_units, operator_options=operator_params,
        resize=parse_size(resize, "--resize"),
        batch_size=batch_size, perceptual=perceptual, progress=progress, tile=tile,
        overlap=overlap,
    )  # fmt: skip
    metrics = write_restoration(out, job.names, job.run(), job.settings)
    typer.echo(f"{summary_line(metrics)} -> {out}")


def _check_cvdm_flags(
    model: Path | None, noise_std: float, perceptual: bool, knobs: dict[str, Any]
) -> None:
    """``--solver cvdm`` needs ``--model`` and takes none of the prior solvers' options."""
    if model is None:
        raise ValueError("--solver cvdm needs --model (a `diffvi train cvdm` run folder)")
    if noise_std > 0:
        raise ValueError(
            "--noise-std does not apply to --solver cvdm: the noise is part of its task"
        )
    if perceptual:
        raise ValueError("--perceptual does not apply to --solver cvdm")
    if any(v is not None for v in knobs.values()):
        raise ValueError(
            f"{', '.join(KNOBS)} do not apply to --solver cvdm; its options "
            "are --model, --samples, --steps, --batch-size, --tile, --overlap and --seed"
        )


def _check_knobs(name: str, knobs: dict[str, Any]) -> None:
    """A knob that solver ``name`` does not take is an error naming the knobs it takes."""
    from diffvi.inverse.solvers import solver_defaults

    accepted = solver_defaults(name)
    for flag, value in knobs.items():
        if value is not None and KNOBS[flag] not in accepted:
            takes = [f for f, keyword in KNOBS.items() if keyword in accepted]
            raise ValueError(
                f"{flag} does not apply to solver {name}; its options are --steps"
                + "".join(f", {f}" for f in takes)
            )
