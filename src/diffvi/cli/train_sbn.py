"""``diffvi train sbn``: a sigmoid belief network with binary latent layers, trained with a
score-function estimator (REINFORCE, NVIL, VIMCO, reweighted wake-sleep) on binary images."""

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
    lr_opt,
    parse_sizes,
    report_errors,
    run_dir_opt,
    run_training,
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
    max_steps: MaxStepsOpt = None,
    max_epochs: MaxEpochsOpt = None,
    max_minutes: MaxMinutesOpt = None,
    val_every: Annotated[
        int | None,
        typer.Option(min=1, show_default="1000", help="Validate and checkpoint every N steps."),
    ] = None,
    val_k: Annotated[
        int | None,
        typer.Option(min=1, show_default="100", help="Samples of the validation bound."),
    ] = None,
    run_dir: run_dir_opt("runs/sbn-LAYERS-ESTIMATOR-kK") = None,
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
    """Train a sigmoid belief network (binary latent layers) with a score-function estimator:
    REINFORCE, NVIL (baselines, centring, variance normalisation, local signals), VIMCO
    (multi-sample bound, leave-one-out baselines) or reweighted wake-sleep.

    The run folder holds config.json, checkpoints/last.ckpt (resumable), logs/ (training bound,
    validation ELBO and K-sample bound) and export/ (model.safetensors + model.json, loadable
    with diffvi.load).

    **Examples**

    ```
    diffvi train sbn --layers 200,200,200 --estimator vimco --k 5
    diffvi train sbn --layers 200 --estimator nvil --max-steps 50000
    diffvi train sbn --layers 200,200 --estimator rws --k 5 --rws-sleep
    diffvi train sbn --run-dir runs/sbn-200-nvil-k1 --resume --max-steps 100000
    ```
    """

    given: dict[str, Any] = {
        "dataset": dataset,
        "layers": parse_sizes(layers, "--layers") if layers else None,
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
        "val_every_n_steps": val_every,
        "val_k": val_k,
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
    result = run_training("sbn", given, run_dir, resume, hardware, config, None, _run_name)
    if result is None:
        return
    config, run_dir, meta = result
    bound = meta.get(f"val_bound_k{config.val_k}")
    typer.echo(
        f"Run: {run_dir}  (step {meta['steps']})\n"
        + (f"Validation bound (K = {config.val_k}): {bound:.2f} nats\n" if bound else "")
        + f"Export: {run_dir / 'export'} (load with diffvi.load)"
    )


def _run_name(config) -> str:
    return f"sbn-{'-'.join(map(str, config.layers))}-{config.estimator}-k{config.k}"
