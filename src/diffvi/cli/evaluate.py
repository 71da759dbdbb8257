"""``diffvi evaluate``: test ELBO, IWAE bound, importance-sampled log p(x) and active units of a
VAE or a sigmoid belief net; test bits/dim (and optionally classifier-FID) of a diffusion
model."""

from pathlib import Path
from typing import Annotated

import typer

from diffvi.cli.options import (
    DeviceOpt,
    FlushDenormalOpt,
    RunOrCheckpoint,
    ThreadsOpt,
    ensure_writable,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)
from diffvi.data.image_files import load_images
from diffvi.utils.io import write_json


@report_errors
def evaluate_command(
    run_or_checkpoint: RunOrCheckpoint,
    k: Annotated[
        int, typer.Option("--k", "-k", min=1, help="Importance samples per point for log p(x).")
    ] = 5000,
    iwae_k: Annotated[int, typer.Option(min=1, help="k of the reported IWAE bound.")] = 50,
    elbo_samples: Annotated[
        int, typer.Option(min=1, help="Samples per point averaged in the ELBO estimate.")
    ] = 10,
    dataset: Annotated[
        str | None,
        typer.Option(help="Data set to evaluate on.", show_default="the run's data set"),
    ] = None,
    split: Annotated[str, typer.Option(help="Split of the data set.")] = "test",
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Evaluate on the first N points only.", show_default="all"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Data points per batch.")] = 100,
    fid: Annotated[
        int,
        typer.Option(
            min=0,
            help="Diffusion models: classifier-FID of this many DDIM samples (0: skip).",
        ),
    ] = 0,
    sample_steps: Annotated[
        int, typer.Option(min=2, help="Diffusion models: DDIM steps of the FID samples.")
    ] = 50,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write the metrics (and settings) to this JSON file.",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the Monte Carlo estimates.")] = 0,
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Evaluate a trained VAE, sigmoid belief net or diffusion model on held-out data.

    Prints the test ELBO, the IWAE bound (k = --iwae-k), the importance-sampled log p(x) with
    k = --k samples (IWAE §5 uses 5000) and its Monte Carlo standard error, the NLL and the
    number of active units. On average ELBO <= IWAE bound <= log p(x) estimate.

    For a diffusion model (a run, an export folder or a model name): the test bits/dim from
    its VDM bound, and with --fid N the classifier-FID of N DDIM samples beside the FID of N
    real training images (the floor), and nearest-training-neighbour distances.

    **Examples**

    ```
    diffvi evaluate runs/mnist-dynamic-iwae-k50 --k 5000 --limit 1000
    diffvi evaluate runs/d/checkpoints/last.ckpt --k 1000 --json m.json
    diffvi evaluate runs/sbn-200-200-200-vimco-k5 --k 1000   # a train sbn run
    diffvi evaluate mnist --fid 1000       # the named MNIST diffusion prior
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    if json_path is not None:
        ensure_writable(json_path)  # before the evaluation, which may take hours
    import torch

    from diffvi.evaluation.report import (
        evaluate_diffusion,
        evaluate_module,
        format_diffusion_table,
        format_table,
    )
    from diffvi.training import load, read_spec
    from diffvi.utils.runtime import resolve_device

    torch_device = resolve_device(device)
    family = load(run_or_checkpoint, torch_device)
    if family.kind not in ("vae", "sbn", "diffusion"):
        raise ValueError(
            f"evaluate scores VAEs, SBNs and diffusion models; {run_or_checkpoint} holds a "
            f"{family.kind!r} model (its scores are in its export's model.json)"
        )
    if family.config is not None:
        trained_on = family.config.dataset
    else:  # a shipped prior: its export names its data set
        trained_on = read_spec(run_or_checkpoint).get("metadata", {}).get("dataset")
    name = dataset or trained_on
    if name is None:
        raise ValueError(f"{run_or_checkpoint} does not name its data set; pass --dataset")
    shape = family.spec["event_shape"] if family.kind == "diffusion" else family.config.event_shape
    images, _ = load_images(name, split, shape, limit, seed)
    images = images.float().to(torch_device)
    if family.kind == "diffusion":
        train, classifier = None, None
        if fid:
            from diffvi.data import load_dataset
            from diffvi.evaluation.sample_quality import load_or_train_feature_classifier

            train = load_dataset(name, "train").images.to(torch_device)
            classifier = load_or_train_feature_classifier(name).to(torch_device)
        metrics = evaluate_diffusion(
            family.model, images, train, fid, sample_steps, classifier, batch_size, seed
        )
        table = format_diffusion_table
    else:
        with torch.no_grad():
            metrics = evaluate_module(
                family, images, k=k, elbo_samples=elbo_samples, iwae_k=iwae_k,
                batch_size=batch_size, show_progress=progress, seed=seed,
            )  # fmt: skip
        table = format_table
    metrics.update(model=str(run_or_checkpoint), dataset=name, split=split, seed=seed,
                   device=str(torch_device))  # fmt: skip
    typer.echo(table(metrics, title=f"{name} ({split})"))
    if json_path is not None:
        write_json(json_path, metrics)
        typer.echo(f"Wrote {json_path}")
