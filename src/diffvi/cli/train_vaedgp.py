"""``diffvi train vaedgp``: a VAE-DGP (deep GP latent variable model with an MLP recognition
model, Dai et al. 2016) or a Bayesian GP-LVM on flattened images (Frey faces, MNIST, …)."""

from typing import Annotated, Any

import typer

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
_OPTIM = "Optimisation"


def latent_dims_for(layers: int | None, latent_dims: str | None) -> list[int] | None:
    """``--latent-dims`` as a list (its length must equal ``--layers`` when both are given),
    else the default widths for ``--layers``, else ``None`` (the config's default)."""
    from diffvi.training.families.vaedgp import DEFAULT_LATENT_DIMS

    if latent_dims:
        dims = parse_sizes(latent_dims, "--latent-dims")
        if layers is not None and len(dims) != layers:
            raise ValueError(f"--latent-dims {latent_dims} gives {len(dims)} layers, not {layers}")
        return dims
    if layers is None:
        return None
    if layers not in DEFAULT_LATENT_DIMS:
        raise ValueError(
            f"--layers {layers} has no default widths ({sorted(DEFAULT_LATENT_DIMS)} do); "
            "give --latent-dims"
        )
    return DEFAULT_LATENT_DIMS[layers]


@report_errors
def train_vaedgp(
    dataset: Annotated[
        str | None,
        typer.Option(show_default="frey-faces", help="A registered image data set."),
    ] = None,
    layers: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default="1",
            rich_help_panel=_MODEL,
            help="GP layers; latent widths default to 5 | 10,5 | 20,10,5.",
        ),
    ] = None,
    latent_dims: Annotated[
        str | None,
        typer.Option(rich_help_panel=_MODEL, help="Latent widths bottom first, e.g. 10,5."),
    ] = None,
    num_inducing: Annotated[
        int | None,
        typer.Option(min=1, show_default="50", rich_help_panel=_MODEL, help="Per layer."),
    ] = None,
    recognition_hidden: Annotated[
        str | None,
        typer.Option(
            show_default="200", rich_help_panel=_MODEL, help="Hidden widths of each encoder MLP."
        ),
    ] = None,
    recognition: Annotated[
        bool | None,
        typer.Option(
            rich_help_panel=_MODEL,
            help="Amortise q(X) with MLPs (VAE-DGP); --no-recognition: Bayesian GP-LVM.",
        ),
    ] = None,
    kernel: Annotated[
        str | None, typer.Option(show_default="rbf", rich_help_panel=_MODEL, help="rbf | linear")
    ] = None,
    train_size: Annotated[
        int | None,
        typer.Option(min=2, show_default="all", help="Use the first N training images."),
    ] = None,
    batch_size: batch_size_opt("100") = None,
    lr: lr_opt("1e-2") = None,
    recognition_lr: Annotated[
        float | None,
        typer.Option(min=1e-12, show_default="3e-4", rich_help_panel=_OPTIM),
    ] = None,
    natural_step: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            show_default="0.1",
            rich_help_panel=_OPTIM,
            help="Natural-gradient step on q(U); 0 = Adam.",
        ),
    ] = None,
    max_steps: MaxStepsOpt = None,
    max_epochs: MaxEpochsOpt = None,
    max_minutes: MaxMinutesOpt = None,
    val_every: Annotated[
        int | None,
        typer.Option(min=1, show_default="500", help="Validate and checkpoint every N steps."),
    ] = None,
    run_dir: run_dir_opt("runs/vaedgp-DATASET-DIMS") = None,
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
    """Train a VAE-DGP: deep Gaussian process layers (sparse, closed-form Ψ-statistics bound)
    whose latent inputs get their posterior from MLP recognition models, so the variational
    parameters do not grow with the data. --no-recognition trains a Bayesian GP-LVM instead.

    The run folder holds config.json, checkpoints/last.ckpt (resumable), logs/ (training and
    held-out bound), latents.png (top latent means on their two most relevant dimensions) and
    export/ (loadable with diffvi.load). At the end the imputation
    RMSE of held-out images with half their pixels hidden is printed.

    **Examples**

    ```
    diffvi train vaedgp --dataset frey-faces --layers 2
    diffvi train vaedgp --dataset mnist --train-size 2000 --latent-dims 20,5
    diffvi train vaedgp --dataset frey-faces --no-recognition --latent-dims 5
    diffvi train vaedgp --run-dir runs/vaedgp-frey-faces-10-5 --resume --max-steps 6000
    ```
    """

    given: dict[str, Any] = {
        "dataset": dataset,
        "latent_dims": latent_dims_for(layers, latent_dims),
        "num_inducing": num_inducing,
        "recognition_hidden": (
            parse_sizes(recognition_hidden, "--recognition-hidden") if recognition_hidden else None
        ),
        "recognition": recognition,
        "kernel": kernel,
        "train_size": train_size,
        "batch_size": batch_size,
        "lr": lr,
        "recognition_lr": recognition_lr,
        "natural_step": natural_step,
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
    result = run_training("vaedgp", given, run_dir, resume, hardware, config, None, _run_name)
    if result is None:
        return
    config, run_dir, meta = result
    bound = meta.get("val_bound")
    typer.echo(
        f"Run: {run_dir}  (step {meta['steps']})\n"
        + (f"Held-out bound: {bound:.1f} nats per image\n" if bound is not None else "")
        + f"Imputation RMSE ({config.val_missing:.0%} of pixels hidden): "
        f"{meta['val_impute_rmse']:.4f}\n"
        f"Latent plot: {run_dir / 'latents.png'}\n"
        f"Export: {run_dir / 'export'} (load with diffvi.load)"
    )


def _run_name(config) -> str:
    model = "vaedgp" if config.recognition else "gplvm"
    return f"{model}-{config.dataset}-{'-'.join(map(str, config.latent_dims))}"
