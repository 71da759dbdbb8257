"""``diffvi train …``: one sub-command per model family (``vae`` now; ``ddvi`` etc. later)."""

from pathlib import Path
from typing import Annotated, Any

import typer

from diffvi.cli import choices
from diffvi.cli.common import (
    check_dataset,
    parse_devices,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)
from diffvi.data import available_datasets

train_app = typer.Typer(
    help="Train a model; one sub-command per model family.",
    no_args_is_help=True,
)

# TrainConfig fields that may change when a run is resumed; the others define the run.
RESUMABLE_FIELDS = ("max_epochs", "max_steps", "flush_denormal")

_HARDWARE = "Hardware (passed to Lightning's Trainer)"
_MODEL = "Model"
_OPTIM = "Optimisation"


def final_metrics_callback() -> Any:
    """A Lightning callback that keeps the last validation figures (``.metrics``), the final
    step and epoch, and whether this process is global rank 0 (built here so that importing
    this module does not import Lightning)."""
    from lightning.pytorch.callbacks import Callback

    class FinalMetrics(Callback):
        def __init__(self) -> None:
            self.metrics: dict[str, float] = {}
            self.is_global_zero = True
            self.global_step = 0
            self.epoch = 0

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            for name, value in trainer.callback_metrics.items():
                if name.startswith("val/"):
                    self.metrics[name] = float(value)

        def on_train_end(self, trainer, pl_module) -> None:
            self.is_global_zero = trainer.is_global_zero
            self.global_step = trainer.global_step
            self.epoch = trainer.current_epoch

    return FinalMetrics()


def _resolve_config(explicit: dict[str, Any], run_dir: Path | None, resume: bool):
    """``(config, run_dir)`` of this run. A new run: the command-line values over the
    ``TrainConfig`` defaults, in ``run_dir`` or ``runs/DATASET-OBJECTIVE-kK``. ``--resume``:
    the saved ``config.json`` of ``run_dir`` (only ``RESUMABLE_FIELDS`` may change)."""
    from diffvi.training import TrainConfig

    given = {name: value for name, value in explicit.items() if value is not None}
    if not resume:
        config = TrainConfig(**given)
        if run_dir is None:
            run_dir = Path("runs") / f"{config.dataset}-{config.objective}-k{config.k}"
        if (run_dir / "checkpoints" / "last.ckpt").exists():
            raise ValueError(
                f"{run_dir} already holds a run (checkpoints/last.ckpt); pass --resume to "
                "continue it, or choose another --run-dir"
            )
        return config, run_dir
    if run_dir is None:
        raise ValueError("--resume needs the --run-dir of the run to continue")
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"cannot resume: no config.json in {run_dir}")
    import json

    saved = TrainConfig.from_dict(json.loads(config_path.read_text()))
    clashes = {
        name: (value, getattr(saved, name))
        for name, value in given.items()
        if name not in RESUMABLE_FIELDS and value != getattr(saved, name)
    }
    if clashes:
        detail = ", ".join(
            f"{n}: given {new!r}, run has {old!r}" for n, (new, old) in clashes.items()
        )
        raise ValueError(
            f"--resume continues {run_dir} with its saved config; these options differ ({detail}). "
            "Drop them, or start a new --run-dir"
        )
    for name in RESUMABLE_FIELDS:
        if name in given:
            setattr(saved, name, given[name])
    return saved, run_dir


def _parse_hidden(hidden: list[str] | None) -> list[list[int]] | None:
    if not hidden:
        return None
    layers = []
    for spec in hidden:
        try:
            sizes = [int(part) for part in spec.split(",") if part.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise ValueError(
                f"--hidden takes comma-separated positive sizes such as 200,200, got {spec!r}"
            )
        layers.append(sizes)
    return layers


@train_app.command("vae")
@report_errors
def train_vae(
    dataset: Annotated[
        str | None,
        typer.Option(
            help=f"Data set: {', '.join(available_datasets())}.", show_default="mnist-dynamic"
        ),
    ] = None,
    objective: Annotated[
        choices.Objective | None, typer.Option(help="Training objective.", show_default="iwae")
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "--k",
            "-k",
            min=1,
            show_default="50",
            help="Samples per data point: IWAE's k, or the ELBO's sample count.",
        ),
    ] = None,
    estimator: Annotated[
        choices.Estimator | None,
        typer.Option(help="IWAE gradient estimator for q's parameters.", show_default="standard"),
    ] = None,
    analytic_kl: Annotated[
        bool | None,
        typer.Option(
            "--analytic-kl/--sampled-kl",
            show_default="sampled",
            help="ELBO only: closed-form KL (one latent layer).",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    architecture: Annotated[
        choices.Architecture | None,
        typer.Option(help="Network preset.", show_default="iwae-1", rich_help_panel=_MODEL),
    ] = None,
    latent_dim: Annotated[
        list[int] | None,
        typer.Option(
            min=1,
            show_default="the architecture's",
            rich_help_panel=_MODEL,
            help="Latent size; repeat for several stochastic layers, bottom first.",
        ),
    ] = None,
    hidden: Annotated[
        list[str] | None,
        typer.Option(
            show_default="the architecture's",
            rich_help_panel=_MODEL,
            help="Hidden sizes of one stochastic layer's MLPs, e.g. 256,256; repeat per layer.",
        ),
    ] = None,
    activation: Annotated[
        choices.Activation | None,
        typer.Option(show_default="tanh", rich_help_panel=_MODEL, help="MLP activation."),
    ] = None,
    likelihood: Annotated[
        choices.Likelihood | None,
        typer.Option(
            help="Observation model p(x|z).", show_default="bernoulli", rich_help_panel=_MODEL
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, show_default="20", rich_help_panel=_OPTIM)
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(min=1e-12, show_default="1e-3", rich_help_panel=_OPTIM, help="Learning rate."),
    ] = None,
    adam: Annotated[
        choices.Adam | None,
        typer.Option(
            show_default="iwae-paper",
            rich_help_panel=_OPTIM,
            help="Adam betas/eps preset: IWAE paper, IWAE code, or PyTorch's.",
        ),
    ] = None,
    schedule: Annotated[
        choices.Schedule | None,
        typer.Option(
            show_default="constant",
            rich_help_panel=_OPTIM,
            help="Learning-rate schedule; iwae = 3^i epochs at lr·10^(-i/7).",
        ),
    ] = None,
    max_epochs: Annotated[
        int | None, typer.Option(min=1, show_default="10", rich_help_panel=_OPTIM)
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            min=-1,
            show_default="-1 (no limit)",
            rich_help_panel=_OPTIM,
            help="Stop after this many optimiser steps.",
        ),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            show_default="runs/DATASET-OBJECTIVE-kK",
            help="Folder of the run: config.json, checkpoints/, logs/, export/.",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the run in --run-dir from checkpoints/last.ckpt with its "
            "saved config (only --max-epochs/--max-steps may change)."
        ),
    ] = False,
    seed: Annotated[
        int | None, typer.Option(show_default="0", help="Seed of weights, noise and data order.")
    ] = None,
    accelerator: Annotated[
        str, typer.Option(help="cpu, gpu, auto …", rich_help_panel=_HARDWARE)
    ] = "auto",
    devices: Annotated[
        str, typer.Option(help="auto, a count (2) or ids (0,1).", rich_help_panel=_HARDWARE)
    ] = "auto",
    num_nodes: Annotated[int, typer.Option(min=1, rich_help_panel=_HARDWARE)] = 1,
    strategy: Annotated[str, typer.Option(help="auto, ddp …", rich_help_panel=_HARDWARE)] = "auto",
    flush_denormal: Annotated[
        bool,
        typer.Option(
            help="Flush denormal floats to zero on the CPU (much faster IWAE steps).",
            rich_help_panel=_HARDWARE,
        ),
    ] = True,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CPU threads for torch.",
            show_default="torch's default",
            rich_help_panel=_HARDWARE,
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    log_every_n_steps: Annotated[
        int, typer.Option(min=1, help="Write training metrics to logs/ every N steps.")
    ] = 50,
) -> None:
    """Train a VAE with the ELBO or the IWAE bound (Burda et al. 2016).

    The run folder gets config.json, checkpoints/last.ckpt (written every epoch),
    logs/ (metrics.csv) and export/ (model.safetensors + config.json).

    **Examples**

    ```
    diffvi train vae --dataset mnist-dynamic --objective iwae --k 50
    diffvi train vae --dataset digits --objective elbo --k 1 --run-dir runs/d
    diffvi train vae --run-dir runs/d --resume --max-epochs 200
    diffvi train vae --dataset mnist --strategy ddp --devices 4
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    if dataset is not None:
        check_dataset(dataset)
    explicit: dict[str, Any] = {
        "dataset": dataset,
        "objective": objective.value if objective else None,
        "k": k,
        "estimator": estimator.value if estimator else None,
        "analytic_kl": analytic_kl,
        "architecture": architecture.value if architecture else None,
        "latent_dims": list(latent_dim) if latent_dim else None,
        "hidden": _parse_hidden(hidden),
        "activation": activation.value if activation else None,
        "likelihood": likelihood.value if likelihood else None,
        "batch_size": batch_size,
        "lr": lr,
        "adam": adam.value if adam else None,
        "schedule": schedule.value if schedule else None,
        "max_epochs": max_epochs,
        "max_steps": max_steps,
        "seed": seed,
    }
    config, run_dir = _resolve_config(explicit, run_dir, resume)
    config.flush_denormal = flush_denormal
    check_dataset(config.dataset)

    from diffvi.training import fit

    tracker = final_metrics_callback()
    fit(
        config,
        run_dir,
        resume=resume,
        accelerator=accelerator,
        devices=parse_devices(devices),
        num_nodes=num_nodes,
        strategy=strategy,
        progress_bar=progress,
        callbacks=[tracker],
        log_every_n_steps=log_every_n_steps,
    )
    if not tracker.is_global_zero:
        return
    summary = [f"Run: {run_dir}  (epoch {tracker.epoch}, step {tracker.global_step})"]
    if "val/bound" in tracker.metrics:
        name = "ELBO" if config.objective == "elbo" else f"IWAE bound (k={config.k})"
        summary.append(f"Final validation {name}: {tracker.metrics['val/bound']:.3f}")
    if "val/iwae" in tracker.metrics:
        summary.append(
            f"Final validation IWAE bound (k={config.val_k}): {tracker.metrics['val/iwae']:.3f}"
        )
    if not tracker.metrics:
        summary.append("No validation ran (training stopped before the end of an epoch).")
    summary.append(f"Next: diffvi evaluate {run_dir}")
    typer.echo("\n".join(summary))
