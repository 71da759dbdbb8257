"""``diffvi embed table``: a feature table in (CSV/TSV, Parquet, ``.npy``, AnnData ``.h5ad``), a
2-D embedding, its clusters and their scores against a label column out.

The table is read by :func:`diffvi.data.tables.load_table`, its columns standardised and
optionally reduced to principal components; the embedding, the GMM clustering and the scores
are :func:`diffvi.training.embedding.embed_labelled`, as for ``diffvi embed genotypes``.
"""

from pathlib import Path
from typing import Annotated, Literal

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
    embedding_options,
)
from diffvi.cli.options import (
    DeviceOpt,
    FlushDenormalOpt,
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
        float | None,
        typer.Option(
            min=1e-6,
            help="σ of the variational methods' Gaussian likelihood, in std(PC 1) with --pca, "
            "else in the median std of the features [default: the median std of the "
            "features, their noise level].",
        ),
    ] = None,
    device: DeviceOpt = "auto",
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
    in OUT/run.

    **Examples**

    ```
    diffvi embed table cells.h5ad --labels cell_type --pca 50 --method ddvae --out emb
    diffvi embed table data.csv --labels species --method vae --out emb-vae
    diffvi embed table X.npy --labels -1 --method umap --out emb-umap
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    ensure_writable(out, folder=True)
    from diffvi.data.tables import load_table, principal_components
    from diffvi.data.tables import standardise as standardise_columns
    from diffvi.training.embedding import Labelling, embed_labelled, write_embedding

    names = [name.strip() for text in columns or [] for name in text.split(",") if name.strip()]
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
    labellings = []
    if table.label_column is not None:  # a .npy's column number made non-negative
        name = table.label_column
        column = name if name not in _CSV_COLUMNS else f"label_{name}"
        labellings.append(Labelling(column, table.label_strings(""), key=name))
    if clusters is None:
        clusters = len(table.label_names) if labels is not None and table.label_names else 10
    options = embedding_options(
        epochs, batch_size, lr, hidden, likelihood_scale, seed, device, progress
    )
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


def _describe(table, standardised: bool, explained) -> str:
    """One line on what is embedded."""
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
        parts.append("standardised")
    if explained is not None:
        parts.append(
            f"{len(explained)} principal components ({explained.sum():.0%} of the variance)"
        )
    return "; ".join(parts)
