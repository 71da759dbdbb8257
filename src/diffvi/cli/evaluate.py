"""``diffvi evaluate``: test ELBO, IWAE bound, importance-sampled log p(x) and active units of a
VAE or a sigmoid belief net; test bits/dim (and optionally classifier-FID) of a diffusion
model."""

from pathlib import Path
from typing import Annotated, Any

import typer

from diffvi.cli.options import (
    DeviceOpt,
    FlushDenormalOpt,
    RunOrCheckpoint,
    ThreadsOpt,
    diffusion_folder,
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
    from diffvi.evaluation.report import format_diffusion_table, format_table

    is_sbn = _is_sbn_run(run_or_checkpoint)
    folder = None if is_sbn else diffusion_folder(run_or_checkpoint)
    if folder is not None:
        metrics = run_diffusion_evaluation(
            folder, dataset, split, limit, batch_size, fid, sample_steps, device, seed
        )
        table = format_diffusion_table
    else:
        run = run_sbn_evaluation if is_sbn else run_evaluation
        metrics = run(
            run_or_checkpoint, k, iwae_k, elbo_samples, dataset, split, limit, batch_size,
            device, seed, progress,
        )  # fmt: skip
        table = format_table
    typer.echo(table(metrics, title=f"{metrics['dataset']} ({metrics['split']})"))
    if json_path is not None:
        write_json(json_path, metrics)
        typer.echo(f"Wrote {json_path}")


def _is_sbn_run(target: Path) -> bool:
    """Whether ``target`` is a ``train sbn`` run folder or its export."""
    import json

    for spec in (target / "config.json", target / "model.json", target / "export" / "model.json"):
        if spec.is_file():
            return json.loads(spec.read_text()).get("kind") == "sbn"
    return False


def run_sbn_evaluation(
    run: Path,
    k: int,
    iwae_k: int,
    elbo_samples: int,
    dataset: str | None,
    split: str,
    limit: int | None,
    batch_size: int,
    device: str,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """The VAE metrics (ELBO, IWAE bound, importance-sampled log p(x), active units) of an
    exported sigmoid belief net."""
    import torch

    from diffvi.evaluation.report import evaluate_module
    from diffvi.training import load
    from diffvi.utils.runtime import resolve_device

    torch_device = resolve_device(device)
    sbn = load(run, torch_device)
    name = dataset or sbn.config.dataset
    images, _ = load_images(name, split, sbn.config.event_shape, limit, seed)
    with torch.no_grad():
        metrics = evaluate_module(
            sbn, images.float().to(torch_device), k=k, elbo_samples=elbo_samples, iwae_k=iwae_k,
            batch_size=batch_size, show_progress=progress, seed=seed,
        )  # fmt: skip
    return {
        **metrics,
        "model": str(run),
        "dataset": name,
        "split": split,
        "seed": seed,
        "device": str(torch_device),
    }


def run_evaluation(
    run_or_checkpoint: Path,
    k: int,
    iwae_k: int,
    elbo_samples: int,
    dataset: str | None,
    split: str,
    limit: int | None,
    batch_size: int,
    device: str,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """Load, evaluate, and return the metrics plus the settings that produced them."""
    import torch

    from diffvi.evaluation.report import evaluate_module
    from diffvi.training import load_checkpoint

    module, checkpoint, torch_device = load_checkpoint(run_or_checkpoint, device)
    name = dataset or module.config.dataset
    images, _ = load_images(name, split, module.config.event_shape, limit, seed)
    with torch.no_grad():
        metrics = evaluate_module(
            module, images.to(torch_device), k=k, elbo_samples=elbo_samples, iwae_k=iwae_k,
            batch_size=batch_size, show_progress=progress, seed=seed,
        )  # fmt: skip
    return {
        **metrics,
        "checkpoint": str(checkpoint),
        "dataset": name,
        "split": split,
        "seed": seed,
        "device": str(torch_device),
    }


def run_diffusion_evaluation(
    folder: Path,
    dataset: str | None,
    split: str,
    limit: int | None,
    batch_size: int,
    fid: int,
    sample_steps: int,
    device: str,
    seed: int,
) -> dict[str, Any]:
    """Load a saved diffusion model, score it on a split, and return metrics and settings."""
    from diffvi.diffusion.pretrained import load_diffusion
    from diffvi.evaluation.report import evaluate_diffusion
    from diffvi.utils.runtime import resolve_device

    torch_device = resolve_device(device)
    model, spec = load_diffusion(folder, torch_device)
    name = dataset or spec.get("metadata", {}).get("dataset")
    if name is None:
        raise ValueError(f"{folder} does not name its data set; pass --dataset")
    images, _ = load_images(name, split, spec["event_shape"], limit, seed)
    train, classifier = None, None
    if fid:
        from diffvi.data import load_dataset
        from diffvi.evaluation.sample_quality import load_or_train_feature_classifier

        train = load_dataset(name, "train").images.to(torch_device)
        classifier = load_or_train_feature_classifier(name).to(torch_device)
    metrics = evaluate_diffusion(
        model, images.to(torch_device), train, fid, sample_steps, classifier, batch_size, seed
    )
    return {**metrics, "model": str(folder), "dataset": name, "split": split, "seed": seed,
            "device": str(torch_device)}  # fmt: skip
