"""``diffvi embed table``: a feature table in (CSV/TSV, Parquet, ``.npy``, AnnData ``.h5ad``), a
2-D embedding, its clusters and their scores against a label column out.

The table is read by :func:`diffvi.data.tables.load_table`, its columns standardised and
optionally reduced to principal components; the embedding, the GMM clustering and the scores
are :func:`diffvi.training.embedding.embed_labelled`, as for ``diffvi embed genotypes``. With
``--model`` a model trained on a table before (a VAE, DD-VAE or VAE-DGP) embeds the rows instead
(:meth:`~diffvi.training.families.tables.TableInputs.table_inputs`,
:func:`~diffvi.training.embedding.embed_with_model`).
"""

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer

from diffvi.cli.embed_options import (
    BatchSizeOpt,
    EpochsOpt,
    HiddenOpt,
    KnnOpt,
    LrOpt,
    MethodOpt,
    ProgressOpt,
    SeedOpt,
    distributed,
    embedding_options,
    features_key,
    share_features,
)
from diffvi.cli.options import (
    DeviceOpt,
    DevicesOpt,
    FlushDenormalOpt,
    NumNodesOpt,
    StrategyOpt,
    ThreadsOpt,
    ensure_writable,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)
from diffvi.utils.text import plural

# embedding.csv's own columns, which a label column may not shadow
_CSV_COLUMNS = ("sample", "z1", "z2", "cluster")


@report_errors
def embed_table(
    path: Annotated[
        Path,
        typer.Argument(
            help="Table: .csv, .tsv (optionally .gz), .parquet, .npy or AnnData .h5ad; one row "
            "per sample or cell.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for embedding.csv/png, metrics.json and the run.", show_default=False
        ),
    ],
    labels: Annotated[
        str | None,
        typer.Option(
            help="Label column (an obs column of an .h5ad, a column number of an .npy): "
            "colours the plot, scores the clusters and the kNN classifier; not a feature.",
            show_default="none",
        ),
    ] = None,
    columns: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAMES",
            help="Feature columns (var_names of an .h5ad), comma-separated; repeats add up.",
            show_default="every numeric column but the labels",
        ),
    ] = None,
    drop_non_numeric: Annotated[
        bool,
        typer.Option(
            "--drop-non-numeric", help="Leave text columns out (without it they are an error)."
        ),
    ] = False,
    impute: Annotated[
        Literal["none", "mean"],
        typer.Option(help="Missing values: an error (none) or their column's mean."),
    ] = "none",
    standardise: Annotated[
        bool, typer.Option(help="Scale every feature to mean 0 and standard deviation 1.")
    ] = True,
    pca: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Embed the first N principal components of the (standardised) features "
            "(50 is usual for single-cell data).",
            show_default="the features themselves",
        ),
    ] = None,
    method: MethodOpt = "ddvae",
    model: Annotated[
        str | None,
        typer.Option(
            metavar="RUN_OR_EXPORT",
            help="Embed with this trained model instead of training one: a run of `train "
            "vae|ddvae|vaedgp --data TABLE` (or its export or a checkpoint). It reads its own "
            "feature columns by name and standardises them with its training mean and std; "
            "--method, --columns, --pca and the training options do not apply.",
            show_default=False,
        ),
    ] = None,
    clusters: Annotated[
        int | None,
        typer.Option(min=1, help="GMM components on the embedding."),
    ] = None,
    knn_k: KnnOpt = 20,
    epochs: EpochsOpt = 200,
    hidden: HiddenOpt = 256,
    lr: LrOpt = 1e-3,
    batch_size: BatchSizeOpt = 128,
    likelihood_scale: Annotated[
        str | None,
        typer.Option(
            help="σ of the variational methods' Gaussian likelihood, in std(PC 1) with --pca, "
            "else in the median std of the features: a number; 'median', the median std of "
            "the features (called 'auto' before); 'select', chosen by short pilot runs over "
            "a grid scored by the held-out log-likelihood (about twice the training of a "
            "fixed σ; no labels used; docs/methods.md).",
            show_default="median",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    devices: DevicesOpt = "1",
    num_nodes: NumNodesOpt = 1,
    strategy: StrategyOpt = "auto",
    seed: SeedOpt = 0,
    progress: ProgressOpt = True,
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
) -> None:
    """Embed a table's rows in 2-D, cluster the embedding and score it against a label column.

    Reads PATH (rows are samples or cells; a first column of distinct names, or pandas'
    unnamed index, names the rows; an .h5ad's X with its obs_names and var_names), keeps the
    numeric --columns, standardises them, optionally takes --pca principal components, embeds
    them with --method, fits a GMM with --clusters components (default: one per label class,
    else 10) and scores it against --labels (purity, completeness, NMI) together with a
    leave-one-out kNN classifier (k = --knn-k). Rows without a label are embedded, not scored.

    Writes OUT/embedding.csv (sample, the label, z1, z2, cluster), OUT/embedding.png (coloured
    by label, else by cluster), OUT/metrics.json and, for variational methods, the training run
    in OUT/run. --strategy ddp --devices D (--num-nodes N under torchrun or SLURM) trains on
    D × N processes; rank 0 alone reads the table, hands the features to the others in
    OUT/features.npz (OUT on a shared file system) and writes the outputs (docs/methods.md).

    With --model, a model trained on a table before (`diffvi train vae|ddvae|vaedgp --data
    TABLE`) embeds PATH instead: the model's feature columns are read by name (in any order; a
    missing one is an error naming it), standardised with its training mean and std, and each
    row gets one posterior draw (a VAE-DGP: its top-layer latent means). Writes
    OUT/latents.csv (sample, the label, z1 … zd), OUT/embedding.csv and OUT/embedding.png (the
    latents, or their first two principal components when d > 2) and OUT/metrics.json (the
    GMM and kNN scores on the d-dimensional latents).

    **Examples**

    ```
    diffvi embed table cells.h5ad --labels cell_type --pca 50 --method ddvae --out emb
    diffvi embed table data.csv --labels species --method vae --out emb-vae
    diffvi embed table X.npy --labels -1 --method umap --out emb-umap
    diffvi embed table new-cells.h5ad --model runs/cells-vae --labels cell_type --out emb-new
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    ensure_writable(out, folder=True)
    from diffvi.data.tables import load_table, principal_components
    from diffvi.data.tables import standardise as standardise_columns
    from diffvi.training.embedding import embed_labelled, write_embedding
    from diffvi.utils.runtime import launcher_rank

    names = [name.strip() for text in columns or [] for name in text.split(",") if name.strip()]
    if model is not None:
        if names or pca is not None or not standardise:
            raise ValueError(
                "--columns, --pca and --no-standardise do not apply with --model: the model "
                "reads its own feature columns and standardises them with its training mean "
                "and std"
            )
        _embed_with_model(
            path, model, out, labels, impute, clusters, knn_k, batch_size, device, seed, progress
        )
        return
    options = embedding_options(
        epochs, batch_size, lr, hidden, likelihood_scale, seed, device, progress,
        devices, num_nodes, strategy,
    )  # fmt: skip
    key = None
    if distributed(options):  # rank 0 reads the table, the other ranks load its features
        arguments = [labels, names, drop_non_numeric, impute, standardise, pca, seed]
        key, rank = features_key(path, {"table": arguments}), launcher_rank()
        if rank != 0:
            shared = share_features(out, key, rank, dict)
            embed_labelled(
                shared["features"], method, (), options, out / "run", knn_k=knn_k,
                components=bool(shared["components"]),
            )  # fmt: skip
            return
    table = load_table(
        path, labels, names or None, drop_non_numeric=drop_non_numeric,
        impute=None if impute == "none" else impute,
    )  # fmt: skip
    if table.num_samples < 3 or table.num_features < 2:
        raise ValueError(
            f"{path}: {plural(table.num_samples, 'row')} × {plural(table.num_features, 'feature')}"
            "; an embedding needs at least 3 rows and 2 features"
        )
    features = table.features
    if standardise:
        features = standardise_columns(features)[0]
    explained = None
    if pca is not None:
        features, explained = principal_components(features, pca, seed=seed)
    typer.echo(_describe(table, standardise, explained))
    labellings = _labellings(table)
    if clusters is None:
        clusters = len(table.label_names) if labels is not None and table.label_names else 10
    if key is not None:
        shared = {"features": features, "components": np.array(explained is not None)}
        share_features(out, key, 0, lambda: shared)
    result = embed_labelled(
        features, method, labellings, options, out / "run",
        num_clusters=clusters, knn_k=knn_k, components=explained is not None,
    )  # fmt: skip
    metrics = {
        "input": str(path),
        "format": table.format,
        "num_features_read": table.num_features,
        "dropped_columns": table.dropped_columns,
        "imputed": table.imputed,
        "standardise": standardise,
        "pca": None if explained is None else len(explained),
        "explained_variance": None if explained is None else float(explained.sum()),
        "explained_variance_top10": None if explained is None else explained[:10].tolist(),
        "label_column": table.label_column,
        "label_names": table.label_names,
        "unlabelled": int((table.labels < 0).sum()),
        "seed": seed,
    }
    lines = write_embedding(
        out, result, table.samples, labellings, metrics, title=f"{method}: {path.name}"
    )
    typer.echo("\n".join(lines))


def _labellings(table) -> list:
    """The table's label column as a :class:`~diffvi.training.embedding.Labelling` (none
    without one)."""
    from diffvi.training.embedding import Labelling

    if table.label_column is None:
        return []
    name = table.label_column  # a .npy's column number made non-negative
    column = name if name not in _CSV_COLUMNS else f"label_{name}"
    return [Labelling(column, table.label_strings(""), key=name)]


def _embed_with_model(
    path: Path,
    model: str,
    out: Path,
    labels: str | None,
    impute: str,
    clusters: int | None,
    knn_k: int,
    batch_size: int,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """``embed table PATH --model RUN``: embed the rows with a model trained on a table."""
    from diffvi.training import load
    from diffvi.training.embedding import embed_with_model, write_embedding, write_latents
    from diffvi.utils.runtime import resolve_device

    family = load(model, resolve_device(device))
    if family.kind not in ("vae", "vaedgp"):
        raise ValueError(
            f"--model must be a VAE or VAE-DGP trained on a table (train vae|ddvae|vaedgp "
            f"--data TABLE); {model} holds a {family.kind!r} model"
        )
    if family.kind == "vaedgp":
        family.check_encoder()  # a GP-LVM has none
    x, table = family.table_inputs(path, labels, impute=None if impute == "none" else impute)
    typer.echo(_describe(table, f"standardised by the training mean and std of {model}", None))
    labellings = _labellings(table)
    if clusters is None:
        clusters = len(table.label_names) if labels is not None and table.label_names else 10
    result, latents = embed_with_model(
        family, x, labellings, num_clusters=clusters, knn_k=knn_k, seed=seed,
        batch_size=batch_size, progress=progress,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_latents(out / "latents.csv", latents, table.samples, labellings)
    metrics = {
        "input": str(path),
        "format": table.format,
        "model": str(model),
        "num_features_read": table.num_features,
        "imputed": table.imputed,
        "latent_dim": int(latents.shape[1]),
        "label_column": table.label_column,
        "label_names": table.label_names,
        "unlabelled": int((table.labels < 0).sum()),
        "seed": seed,
    }
    lines = write_embedding(
        out, result, table.samples, labellings, metrics, title=f"{Path(model).name}: {path.name}"
    )
    lines[0] = lines[0].replace("Wrote ", f"Wrote {out / 'latents.csv'}, ")
    typer.echo("\n".join(lines))


def _describe(table, standardised: bool | str, explained) -> str:
    """One line on what is embedded (``standardised``: whether, or how, the features were)."""
    parts = [
        f"{plural(table.num_samples, 'row')} × {plural(table.num_features, 'feature')} of "
        f"{table.path.name}"
    ]
    if table.label_column is not None:
        unlabelled = int((table.labels < 0).sum())
        parts.append(
            f"labels {table.label_column!r}: {plural(len(table.label_names), 'class', 'classes')}"
            + (f", {unlabelled} rows without a label" if unlabelled else "")
        )
    if table.dropped_columns:
        parts.append(f"{plural(len(table.dropped_columns), 'text column')} left out")
    if table.imputed:
        parts.append(f"{plural(table.imputed, 'missing value')} imputed by the column mean")
    if standardised:
        parts.append(standardised if isinstance(standardised, str) else "standardised")
    if explained is not None:
        parts.append(
            f"{len(explained)} principal components ({explained.sum():.0%} of the variance)"
        )
    return "; ".join(parts)
