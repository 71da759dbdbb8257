"""``diffvi evaluate``: test ELBO, IWAE bound, importance-sampled log p(x) and active units of a
VAE or a sigmoid belief net; test bits/dim (and optionally classifier-FID) of a diffusion
model. The data is a registered data set's split (``--dataset``), the user's own images or, for
a VAE trained on a table, a table (``--data``), or by default the data the run trained on: its
registered data set, or the held-out part of its own files."""

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
    data: Annotated[
        Path | None,
        typer.Option(
            help="Evaluate on your own data: a folder of images or a .npy/.npz/.h5 array (scaled "
            "with the run's --size as in training; an SBN's grey levels drawn once as bits), or, "
            "for a VAE trained on a table, a table with its columns (standardised with the "
            "model's training mean and std).",
            show_default="the run's data: its data set, or the held-out part of its --data",
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            help="Split of the data set; for a run trained on its own --data, test (the held-out "
            "part) or train."
        ),
    ] = "test",
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

    The data: --dataset (a registered data set, --split), --data (your own images, at the
    shape the model was trained on, or a table for a VAE trained on one), else the run's own:
    its data set, or, for a run trained on --data, the held-out part of those files or rows
    (the --val-fraction chosen by its --seed; --split train for the rest).

    **Examples**

    ```
    diffvi evaluate runs/mnist-dynamic-iwae-k50 --k 5000 --limit 1000
    diffvi evaluate runs/d/checkpoints/last.ckpt --k 1000 --json m.json
    diffvi evaluate runs/sbn-200-200-200-vimco-k5 --k 1000   # a train sbn run
    diffvi evaluate mnist --fid 1000       # the named MNIST diffusion prior
    diffvi evaluate runs/photos-vae --data more-photos/   # your own images
    diffvi evaluate runs/cells-vae --data new-cells.csv   # a VAE trained on a table
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
    if data is not None and dataset is not None:
        raise ValueError(f"--data {data} and --dataset {dataset} both name the data; pass one")
    config = family.config
    own_data = data is not None or (dataset is None and getattr(config, "data", None))
    if own_data:
        if fid:
            raise ValueError(
                "--fid compares samples with a registered data set's classifier; it does not "
                "apply to data of your own (--data)"
            )
        images, name = _own_data(family, run_or_checkpoint, data, split, limit)
        if data is not None:
            split = "all"
    else:
        if config is not None:
            trained_on = config.dataset
        else:  # a shipped prior: its export names its data set
            trained_on = read_spec(run_or_checkpoint).get("metadata", {}).get("dataset")
        name = dataset or trained_on
        if name is None:
            raise ValueError(
                f"{run_or_checkpoint} does not name its data set; pass --dataset or --data"
            )
        images, _ = load_images(name, split, _event_shape(family), limit, seed)
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
    if own_data:
        metrics["data"] = str(data if data is not None else config.data)
    typer.echo(table(metrics, title=f"{name} ({split})"))
    if json_path is not None:
        write_json(json_path, metrics)
        typer.echo(f"Wrote {json_path}")


def _event_shape(family) -> list[int]:
    """The shape of one item the model scores: ``[C, H, W]``, or ``[D]`` for a table."""
    if family.kind == "diffusion":
        return list(family.spec["event_shape"])
    return list(family.config.event_shape)


def _own_data(family, model, data: Path | None, split: str, limit: int | None):
    """``(items [N, ...], name)``: the user's ``data`` (images, or a table for a VAE trained on
    one), else the ``split`` of the files or the table the run trained on (``--data``)."""
    from diffvi.data.tables import is_table
    from diffvi.training.families.images import own_split_images, read_own_images
    from diffvi.training.families.tables import held_out_rows

    config = family.config
    features = family.table_features if family.kind == "vae" else None
    binarize = family.kind == "sbn"
    if data is None:  # the run's own files: its held-out part (or --split train)
        if features is not None:
            rows = held_out_rows(config, split)[0]
            return rows[:limit], Path(config.data).name
        return own_split_images(config, split, binarize, limit), Path(config.data).name
    if is_table(data):
        if features is None:
            raise ValueError(
                f"{data} is a table, but {model} was trained on images; evaluate it on images "
                "(a folder or an array file)"
            )
        rows = family.table_inputs(data)[0]
        return rows[:limit], data.name
    if features is not None:
        raise ValueError(
            f"{model} was trained on a table; --data must be a table with its columns, got {data}"
        )
    size = getattr(config, "size", None)
    images = read_own_images(data, _event_shape(family), size, binarize, limit, str(model))
    return images, data.name
