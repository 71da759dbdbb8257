"""``diffvi train diffusion``: an image diffusion model (schedule + UNet) on a registered data
set, exported as a named, loadable prior."""

from typing import Annotated, Any

import typer

from diffvi.cli import choices
from diffvi.cli.common import (
    AcceleratorOpt,
    ConfigFileOpt,
    DevicesOpt,
    FlushDenormalOpt,
    LogEveryOpt,
    MaxEpochsOpt,
    MaxMinutesOpt,
    MaxStepsOpt,
    NumNodesOpt,
    PrecisionOpt,
    ProgressOpt,
    ResumeOpt,
    SeedOpt,
    StrategyOpt,
    ThreadsOpt,
    batch_size_opt,
    check_dataset,
    dataset_opt,
    lr_opt,
    parse_resolutions,
    parse_sizes,
    report_errors,
    run_dir_opt,
    run_training,
)

_MODEL = "Model"
_OPTIM = "Optimisation"


@report_errors
def train_diffusion(
    dataset: dataset_opt("mnist") = None,
    schedule: Annotated[
        choices.NoiseSchedule | None,
        typer.Option(
            show_default="cosine",
            rich_help_panel=_MODEL,
            help="Noise schedule γ(t): linear (DDPM), cosine (Nichol & Dhariwal), learned (VDM; "
            "needs --loss vdm).",
        ),
    ] = None,
    loss: Annotated[
        choices.DiffusionLoss | None,
        typer.Option(
            show_default="simple (vdm with --schedule learned)",
            help="simple: DDPM's ε-loss; vdm: the VDM continuous-time bound in bits/dim.",
        ),
    ] = None,
    base_channels: Annotated[
        int | None, typer.Option(min=1, show_default="32", rich_help_panel=_MODEL)
    ] = None,
    channel_mults: Annotated[
        str | None,
        typer.Option(show_default="1,2,2", rich_help_panel=_MODEL, help="Width per UNet level."),
    ] = None,
    res_blocks: Annotated[
        int | None,
        typer.Option(min=1, show_default="1", rich_help_panel=_MODEL, help="Blocks per level."),
    ] = None,
    attention: Annotated[
        str | None,
        typer.Option(
            show_default="7",
            rich_help_panel=_MODEL,
            help="Resolutions with self-attention, e.g. 14,7 ('' for none).",
        ),
    ] = None,
    dropout: Annotated[
        float | None, typer.Option(min=0.0, max=0.9, show_default="0", rich_help_panel=_MODEL)
    ] = None,
    batch_size: batch_size_opt("64") = None,
    lr: lr_opt("2e-4") = None,
    warmup_steps: Annotated[
        int | None,
        typer.Option(min=0, show_default="200", rich_help_panel=_OPTIM, help="LR warm-up."),
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(min=0.0, max=0.99999, show_default="0.999", rich_help_panel=_OPTIM),
    ] = None,
    max_steps: MaxStepsOpt = None,
    max_epochs: MaxEpochsOpt = None,
    max_minutes: MaxMinutesOpt = None,
    val_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default="1000",
            help="Validate (bits/dim of the EMA weights) and checkpoint every N steps.",
        ),
    ] = None,
    run_dir: run_dir_opt("runs/DATASET-diffusion-SCHEDULE") = None,
    config: ConfigFileOpt = None,
    resume: ResumeOpt = False,
    seed: SeedOpt = None,
    precision: PrecisionOpt = None,
    accelerator: AcceleratorOpt = "auto",
    devices: DevicesOpt = "auto",
    num_nodes: NumNodesOpt = 1,
    strategy: StrategyOpt = "auto",
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
    progress: ProgressOpt = True,
    log_every_n_steps: LogEveryOpt = 50,
) -> None:
    """Train an image diffusion model: a noise schedule and a UNet noise predictor (Ho et al.
    2020; Kingma et al. 2021), with EMA weights (see docs/methods.md).

    The run folder holds config.json, checkpoints/last.ckpt (resumable), logs/ (training
    loss, validation bits/dim) and export/ (EMA weights + model.json). `diffvi sample RUN`
    draws images from it; copy export/ to a models folder to load it by name.

    **Examples**

    ```
    diffvi train diffusion --dataset mnist --max-steps 5000
    diffvi train diffusion --dataset fashion-mnist --schedule learned --loss vdm
    diffvi train diffusion --dataset digits --base-channels 16 --attention '' --max-steps 300
    diffvi train diffusion --run-dir runs/mnist-diffusion-cosine --resume --max-steps 10000
    ```
    """

    given: dict[str, Any] = {
        "dataset": check_dataset(dataset) if dataset is not None else None,
        "schedule": schedule.value if schedule else None,
        "loss_type": loss.value if loss else None,
        "base_channels": base_channels,
        "channel_mults": parse_sizes(channel_mults, "--channel-mults") if channel_mults else None,
        "num_res_blocks": res_blocks,
        "attention_resolutions": parse_resolutions(attention),
        "dropout": dropout,
        "batch_size": batch_size,
        "lr": lr,
        "warmup_steps": warmup_steps,
        "ema_decay": ema_decay,
        "val_every_n_steps": val_every,
        "seed": seed,
    }
    hardware = dict(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        flush_denormal=flush_denormal, threads=threads, progress=progress,
        log_every_n_steps=log_every_n_steps,
    )  # fmt: skip
    given.update(
        max_steps=max_steps, max_epochs=max_epochs, max_minutes=max_minutes, precision=precision
    )
    result = run_training(
        "diffusion",
        given,
        run_dir,
        resume,
        hardware,
        config,
        {"loss_type": "vdm"} if given.get("schedule") == "learned" else None,
        _run_name,
    )
    if result is None:
        return
    config, run_dir, meta = result
    bpd = meta.get("val_bpd")
    typer.echo(
        f"Run: {run_dir}  (step {meta['steps']})\n"
        + (f"Final validation bits/dim (EMA weights): {bpd:.3f}\n" if bpd else "")
        + f"Next: diffvi sample {run_dir} --steps 50 --sampler ddim --out samples.png"
    )


def _run_name(config) -> str:
    return f"{config.dataset}-diffusion-{config.schedule}"
