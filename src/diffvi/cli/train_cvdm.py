"""``diffvi train cvdm``: a conditional diffusion model with a learned per-pixel schedule (CVDM,
della Maggiora et al. 2024), or an SR3-style / regression baseline, on a paired restoration
task (super-resolution, microscopy, phase imaging), exported as a loadable model."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from diffvi.cli import choices
from diffvi.cli.common import (
    FlushDenormalOpt,
    ThreadsOpt,
    fresh_run_dir,
    parse_devices,
    quiet_lightning,
    report_errors,
    resumed_step_config,
    set_threads,
    setup_numerics,
)
from diffvi.cli.train import (
    AcceleratorOpt,
    DevicesOpt,
    LogEveryOpt,
    ProgressOpt,
    ResumeOpt,
    SeedOpt,
    _parse_hidden,
    batch_size_opt,
    lr_opt,
    run_dir_opt,
)
from diffvi.cli.train_diffusion import _attention

_MODEL = "Model"
_OPTIM = "Optimisation"
_DATA = "Data"


@report_errors
def train_cvdm(
    task: Annotated[
        choices.PairedTask | None,
        typer.Option(
            show_default="microscopy-sr",
            rich_help_panel=_DATA,
            help="Paired task: mnist-sr4 / fashion-mnist-sr4 (4x super-resolution), "
            "microscopy-sr (simulated widefield -> SIM), phase (two defocused intensities -> "
            "phase).",
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            min=2,
            show_default="64",
            rich_help_panel=_DATA,
            help="Target image size of microscopy-sr (even).",
        ),
    ] = None,
    train_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default="the whole split (microscopy: 4096)",
            rich_help_panel=_DATA,
            help="Training pairs.",
        ),
    ] = None,
    val_size: Annotated[
        int | None,
        typer.Option(min=1, show_default="64", rich_help_panel=_DATA, help="Validation pairs."),
    ] = None,
    schedule: Annotated[
        choices.CVDMSchedule | None,
        typer.Option(
            show_default="learned",
            rich_help_panel=_MODEL,
            help="learned: CVDM's per-pixel schedule; linear / cosine: fixed schedules "
            "(SR3-style); regression: a deterministic UNet trained with L2.",
        ),
    ] = None,
    base_channels: Annotated[
        int | None, typer.Option(min=1, show_default="32", rich_help_panel=_MODEL)
    ] = None,
    channel_mults: Annotated[
        str | None,
        typer.Option(show_default="1,2,2", rich_help_panel=_MODEL, help="Width per UNet level."),
    ] = None,
    attention: Annotated[
        str | None,
        typer.Option(
            show_default="''",
            rich_help_panel=_MODEL,
            help="Resolutions with self-attention, e.g. 16,8 ('' for none).",
        ),
    ] = None,
    timesteps: Annotated[
        int | None,
        typer.Option(
            min=2,
            show_default="200",
            rich_help_panel=_MODEL,
            help="T: boundary times 1/T, 1-1/T of the loss and default sampling steps.",
        ),
    ] = None,
    batch_size: batch_size_opt("16") = None,
    lr: lr_opt("1e-4") = None,
    warmup_steps: Annotated[
        int | None,
        typer.Option(min=0, show_default="200", rich_help_panel=_OPTIM, help="LR warm-up."),
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(min=0.0, max=0.99999, show_default="0.999", rich_help_panel=_OPTIM),
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(min=1, show_default="5000", rich_help_panel=_OPTIM, help="Training steps."),
    ] = None,
    val_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default="500",
            help="Validate (loss, and sample PSNR of the EMA weights) and checkpoint every N "
            "steps.",
        ),
    ] = None,
    sample_steps: Annotated[
        int | None,
        typer.Option(min=2, show_default="50", help="Sampling steps of the validation samples."),
    ] = None,
    run_dir: run_dir_opt("runs/TASK-cvdm-SCHEDULE") = None,
    resume: ResumeOpt = False,
    seed: SeedOpt = None,
    accelerator: AcceleratorOpt = "auto",
    devices: DevicesOpt = "auto",
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
    progress: ProgressOpt = True,
    log_every_n_steps: LogEveryOpt = 50,
) -> None:
    """Train a conditional variational diffusion model (CVDM): a UNet noise predictor
    conditioned on the observation, with a per-pixel noise schedule learned jointly from it;
    EMA weights. Baselines: fixed linear / cosine schedules, and L2 regression.

    The run folder holds config.json, checkpoints/last.ckpt (resumable), logs/ (each loss
    term, the learned schedule's end points, validation loss and PSNR) and export/ (EMA
    weights + model.json).

    **Examples**

    ```
    diffvi train cvdm --task microscopy-sr --schedule learned --max-steps 5000
    diffvi train cvdm --task mnist-sr4 --schedule cosine --max-steps 2000
    diffvi train cvdm --task microscopy-sr --size 16 --base-channels 8 --max-steps 50
    diffvi train cvdm --run-dir runs/microscopy-sr-cvdm-learned --resume --max-steps 10000
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    from diffvi.training.cvdm_module import CVDMConfig, fit_cvdm

    task_name = task.value if task else None
    if size is not None and (task_name or "microscopy-sr") != "microscopy-sr":
        raise ValueError("--size applies to --task microscopy-sr only")
    given: dict[str, Any] = {
        "task": task_name,
        "task_options": {"size": size} if size is not None else None,
        "schedule": schedule.value if schedule else None,
        "train_size": train_size,
        "val_size": val_size,
        "base_channels": base_channels,
        "channel_mults": _parse_hidden([channel_mults], "--channel-mults")[0]
        if channel_mults
        else None,
        "attention_resolutions": _attention(attention),
        "timesteps": timesteps,
        "batch_size": batch_size,
        "lr": lr,
        "warmup_steps": warmup_steps,
        "ema_decay": ema_decay,
        "max_steps": max_steps,
        "val_every_n_steps": val_every,
        "sample_steps": sample_steps,
        "seed": seed,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if resume:
        config = resumed_step_config(run_dir, given, CVDMConfig, "cvdm")
    else:
        config = CVDMConfig(**given)
        run_dir = run_dir or Path("runs") / f"{config.task}-cvdm-{config.schedule}"
        fresh_run_dir(run_dir)
    config.flush_denormal = flush_denormal
    module = fit_cvdm(
        config,
        run_dir,
        resume=resume,
        accelerator=accelerator,
        devices=parse_devices(devices),
        progress_bar=progress,
        log_every_n_steps=log_every_n_steps,
    )
    if module.global_rank == 0:
        spec = json.loads((run_dir / "export" / "model.json").read_text())
        psnr = spec["metadata"].get("val_psnr")
        typer.echo(
            f"Run: {run_dir}  (step {spec['metadata']['steps']})\n"
            + (f"Final validation PSNR (EMA weights, one sample): {psnr:.2f} dB\n" if psnr else "")
            + f"Export: {run_dir / 'export'} (load with diffvi.training.cvdm_module.load_cvdm)"
        )
