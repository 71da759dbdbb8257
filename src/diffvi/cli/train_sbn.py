"""``diffvi train sbn``: a sigmoid belief network with binary latent layers, trained with a
score-function estimator (REINFORCE, NVIL, VIMCO, reweighted wake-sleep) on binary images."""

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

_MODEL = "Model"
_ESTIMATOR = "Estimator"
_OPTIM = "Optimisation"


@report_errors
def train_sbn(
    dataset: Annotated[
        str | None,
        typer.Option(
            show_default="binarized-mnist",
            help="binarized-mnist (static, Larochelle) or mnist-dynamic (resampled each epoch).",
        ),
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(
            show_default="200",
            rich_help_panel=_MODEL,
            help="Binary layers bottom first, e.g. 200,200,200.",
        ),
    ] = None,
    estimator: Annotated[
        choices.SBNEstimator | None,
        typer.Option(show_default="nvil", rich_help_panel=_ESTIMATOR),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default="1",
            rich_help_panel=_ESTIMATOR,
            help="Samples per data point (VIMCO: >= 2; the papers: NVIL 1, VIMCO 5 or 50, RWS 5).",
        ),
    ] = None,
    nvil_baseline: Annotated[
        bool | None,
        typer.Option(rich_help_panel=_ESTIMATOR, help="NVIL: input-dependent baselines."),
    ] = None,
    nvil_centering: Annotated[
        bool | None,
        typer.Option(rich_help_panel=_ESTIMATOR, help="NVIL: moving-average centring."),
    ] = None,
    nvil_normalise: Annotated[
        bool | None,
        typer.Option(rich_help_panel=_ESTIMATOR, help="NVIL: variance normalisation."),
    ] = None,
    nvil_local_signals: Annotated[
        bool | None,
        typer.Option(rich_help_panel=_ESTIMATOR, help="NVIL: per-layer learning signals."),
    ] = None,
    vimco_mean: Annotated[
        str | None,
        typer.Option(
            show_default="geometric",
            rich_help_panel=_ESTIMATOR,
            help="VIMCO: geometric (paper) or arithmetic leave-one-out mean.",
        ),
    ] = None,
    rws_sleep: Annotated[
        bool | None,
        typer.Option(rich_help_panel=_ESTIMATOR, help="RWS: add the sleep-phase q update."),
    ] = None,
    batch_size: batch_size_opt("24") = None,
    lr: lr_opt("3e-4") = None,
    max_steps: Annotated[
        int | None,
        typer.Option(min=1, show_default="10000", rich_help_panel=_OPTIM, help="Training steps."),
    ] = None,
    val_every: Annotated[
        int | None,
        typer.Option(min=1, show_default="1000", help="Validate and checkpoint every N steps."),
    ] = None,
    val_k: Annotated[
        int | None,
        typer.Option(min=1, show_default="100", help="Samples of the validation bound."),
    ] = None,
    run_dir: run_dir_opt("runs/sbn-LAYERS-ESTIMATOR-kK") = None,
    resume: ResumeOpt = False,
    seed: SeedOpt = None,
    accelerator: AcceleratorOpt = "auto",
    devices: DevicesOpt = "auto",
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
    progress: ProgressOpt = True,
    log_every_n_steps: LogEveryOpt = 50,
) -> None:
    """Train a sigmoid belief network (binary latent layers) with a score-function estimator:
    REINFORCE, NVIL (baselines, centring, variance normalisation, local signals), VIMCO
    (multi-sample bound, leave-one-out baselines) or reweighted wake-sleep.

    The run folder holds config.json, checkpoints/last.ckpt (resumable), logs/ (training bound,
    validation ELBO and K-sample bound) and export/ (model.safetensors + model.json, loadable
    with diffvi.training.sbn_module.load_sbn).

    **Examples**

    ```
    diffvi train sbn --layers 200,200,200 --estimator vimco --k 5
    diffvi train sbn --layers 200 --estimator nvil --max-steps 50000
    diffvi train sbn --layers 200,200 --estimator rws --k 5 --rws-sleep
    diffvi train sbn --run-dir runs/sbn-200-nvil-k1 --resume --max-steps 100000
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    from diffvi.training.sbn_module import SBNConfig, fit_sbn

    given: dict[str, Any] = {
        "dataset": dataset,
        "layers": _parse_hidden([layers], "--layers")[0] if layers else None,
        "estimator": estimator.value if estimator else None,
        "k": k,
        "nvil_baseline": nvil_baseline,
        "nvil_centering": nvil_centering,
        "nvil_normalise": nvil_normalise,
        "nvil_local_signals": nvil_local_signals,
        "vimco_mean": vimco_mean,
        "rws_sleep": rws_sleep,
        "batch_size": batch_size,
        "lr": lr,
        "max_steps": max_steps,
        "val_every_n_steps": val_every,
        "val_k": val_k,
        "seed": seed,
    }
    given = {key: v for key, v in given.items() if v is not None}
    if resume:
        config = resumed_step_config(run_dir, given, SBNConfig, "sbn")
    else:
        config = SBNConfig(**given)
        name = "-".join(map(str, config.layers))
        run_dir = run_dir or Path("runs") / f"sbn-{name}-{config.estimator}-k{config.k}"
        fresh_run_dir(run_dir)
    config.flush_denormal = flush_denormal
    module = fit_sbn(
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
        meta = spec["metadata"]
        bound = meta.get(f"val_bound_k{config.val_k}")
        typer.echo(
            f"Run: {run_dir}  (step {meta['steps']})\n"
            + (f"Validation bound (K = {config.val_k}): {bound:.2f} nats\n" if bound else "")
            + f"Export: {run_dir / 'export'} (load with diffvi.training.sbn_module.load_sbn)"
        )
