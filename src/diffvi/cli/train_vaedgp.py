"""``diffvi train vaedgp``: a VAE-DGP (deep GP latent variable model with an MLP recognition
model, Dai et al. 2016) or a Bayesian GP-LVM on flattened images (Frey faces, MNIST, …, or one's
own folder or array) or on the standardised rows of one's own table."""

from typing import Annotated, Any

import typer

from diffvi.cli.options import RunOptions, train_command
from diffvi.training.config import DEFAULT_LATENT_DIMS, MODEL, VAEDGPConfig


def latent_dims_for(layers: int | None, latent_dims: list[int] | None) -> list[int] | None:
    """``--latent-dims`` (its length must equal ``--layers`` when both are given), else the
    default widths for ``--layers``, else ``None`` (the config's default)."""
    if latent_dims:
        if layers is not None and len(latent_dims) != layers:
            text = ",".join(map(str, latent_dims))
            raise ValueError(f"--latent-dims {text} gives {len(latent_dims)} layers, not {layers}")
        return latent_dims
    if layers is None:
        return None
    if layers not in DEFAULT_LATENT_DIMS:
        raise ValueError(
            f"--layers {layers} has no default widths ({sorted(DEFAULT_LATENT_DIMS)} do); "
            "give --latent-dims"
        )
    return DEFAULT_LATENT_DIMS[layers]


@train_command(VAEDGPConfig)
def train_vaedgp(
    given: dict[str, Any],
    run: RunOptions,
    layers: Annotated[
        int | None,
        typer.Option(
            min=1,
            rich_help_panel=MODEL,
            help="GP layers, with the latent widths "
            f"{' | '.join(','.join(map(str, d)) for d in DEFAULT_LATENT_DIMS.values())}.",
        ),
    ] = None,
) -> None:
    """Train a VAE-DGP: deep Gaussian process layers (sparse, closed-form Ψ-statistics bound)
    whose latent inputs get their posterior from MLP recognition models, so the variational
    parameters do not grow with the data. --no-recognition trains a Bayesian GP-LVM instead.

    The run folder holds config.json, checkpoints/last.ckpt (resumable), logs/ (training and
    held-out bound), latents.png (top latent means on their two most relevant dimensions) and
    export/ (loadable with diffvi.load). At the end the imputation
    RMSE of held-out images with half their pixels hidden is printed.

    --data trains on your own data instead of --dataset: images (a folder of PNG/JPEG/TIFF
    files or a .npy/.npz/.h5 array, flattened, values in [0, 1]; --size resizes them) or a
    table (.csv/.tsv/.parquet/.h5ad or a 2-D .npy, one row per sample; each column
    standardised by the training rows' mean and std). --val-fraction of it is held out (chosen
    by --seed) for the held-out bound and the imputation RMSE; --labels (a labels file for
    images, the label column of a table) colours latents.png, its legend naming the classes.
    A VAE-DGP trained on a table keeps its feature columns and their training mean and std:
    `diffvi embed table NEW.csv --model RUN` embeds new rows (columns matched by name) at
    their top-layer latent means.

    **Examples**

    ```
    diffvi train vaedgp --dataset frey-faces --layers 2
    diffvi train vaedgp --dataset mnist --train-size 2000 --latent-dims 20,5
    diffvi train vaedgp --dataset frey-faces --no-recognition --latent-dims 5
    diffvi train vaedgp --run-dir runs/vaedgp-frey-faces-10-5 --resume --max-steps 6000
    diffvi train vaedgp --data cells.csv --labels cell_type --latent-dims 5
    diffvi embed table new-cells.csv --model runs/vaedgp-cells-5 --labels cell_type --out emb
    diffvi train vaedgp --data faces/ --size 28 --no-recognition --train-size 1000
    ```
    """
    given["latent_dims"] = latent_dims_for(layers, given["latent_dims"])
    result = run.train("vaedgp", given, run_name=_run_name)
    if result is None:
        return
    config, run_dir, meta = result
    from diffvi.training.families.tables import uses_table

    table = uses_table(config)
    item, entries = ("row", "values") if table else ("image", "pixels")
    units = "; in standard deviations" if table else ""
    bound = meta.get("val_bound")
    lines = [
        f"Run: {run_dir}  (step {meta['steps']})",
        *([f"Held-out bound: {bound:.1f} nats per {item}"] if bound is not None else []),
        f"Imputation RMSE ({config.val_missing:.0%} of {entries} hidden{units}): "
        f"{meta['val_impute_rmse']:.4f}",
        f"Latent plot: {run_dir / 'latents.png'}",
        f"Export: {run_dir / 'export'} (load with diffvi.load)",
    ]
    if table and config.recognition:  # a GP-LVM has no encoder for new rows
        from diffvi.cli.train import table_model_hints

        lines.extend(table_model_hints(run_dir, config.data, evaluate=False))
    typer.echo("\n".join(lines))


def _run_name(config) -> str:
    model = "vaedgp" if config.recognition else "gplvm"
    return f"{model}-{config.data_name}-{'-'.join(map(str, config.latent_dims))}"
