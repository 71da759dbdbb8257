"""``embed table``: real single-cell data (scanpy's bundled pbmc68k_reduced, 700 cells, no
download) written as .h5ad and embedded end to end; a CSV without labels; bad tables give
one-line errors naming the file."""

import csv
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def pbmc(tmp_path_factory):
    """scanpy's pbmc68k_reduced (700 cells × 765 genes, obs 'bulk_labels': 10 cell types),
    shipped inside the scanpy package, written to an .h5ad."""
    scanpy = pytest.importorskip("scanpy")
    path = tmp_path_factory.mktemp("pbmc") / "pbmc68k_reduced.h5ad"
    scanpy.datasets.pbmc68k_reduced().write_h5ad(path)
    return path


def embed(cli, path, out, *options):
    return cli("embed", "table", path, "--out", out, "--no-progress", "--threads", "1", *options)


def test_vae_on_pbmc68k_reduced_writes_every_output(cli, pbmc, tmp_path):
    out = tmp_path / "vae"
    result = embed(
        cli, pbmc, out, "--labels", "bulk_labels", "--method", "vae", "--pca", "20",
        "--epochs", "2", "--hidden", "16",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "700 rows × 765 features" in result.output and "20 principal components" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["format"] == "h5ad" and metrics["num_samples"] == 700
    assert metrics["pca"] == 20 and metrics["clusters"] == 10  # one per cell type
    assert len(metrics["label_names"]) == 10 and metrics["unlabelled"] == 0
    scores = metrics["scores"]["bulk_labels"]
    assert 0 <= scores["nmi"] <= 1 and 0 <= scores["knn_accuracy"] <= 1
    assert scores["knn_k"] == 20 and scores["labelled"] == 700
    assert metrics["details"]["epochs"] == 2
    with open(out / "embedding.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 700 and list(rows[0]) == ["sample", "bulk_labels", "z1", "z2", "cluster"]
    assert rows[0]["sample"].endswith("-1")  # the cell barcodes
    assert "CD14+ Monocyte" in {row["bulk_labels"] for row in rows}
    assert np.isfinite([float(row["z1"]) for row in rows]).all()
    assert (out / "embedding.png").stat().st_size > 10_000
    assert (out / "run" / "export" / "model.safetensors").exists()
    assert "kNN (k=20, leave-one-out)" in result.output


def test_pca_separates_the_pbmc_cell_types(cli, pbmc, tmp_path):
    # PCA of the standardised genes + GMM(10): NMI 0.58, kNN 0.72 at this seed.
    result = embed(cli, pbmc, tmp_path / "pca", "--labels", "bulk_labels", "--method", "pca")
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "pca" / "metrics.json").read_text())["scores"]["bulk_labels"]
    assert scores["nmi"] > 0.5 and scores["knn_accuracy"] > 0.65


def test_an_unlabelled_csv_is_embedded_and_clustered(cli, tmp_path):
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(c, 0.3, (20, 4)) for c in (0.0, 5.0)])
    path = tmp_path / "blobs.csv"
    lines = ["id,a,b,c,d"] + [f"s{i}," + ",".join(map(str, row)) for i, row in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")
    result = embed(cli, path, tmp_path / "o", "--method", "pca", "--clusters", "2")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["scores"] == {} and metrics["label_column"] is None
    with open(tmp_path / "o" / "embedding.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["sample", "z1", "z2", "cluster"] and rows[0]["sample"] == "s0"
    assert {row["cluster"] for row in rows[:20]} != {row["cluster"] for row in rows[20:]}


def test_a_missing_label_column_names_the_columns_it_has(cli, pbmc, tmp_path):
    result = embed(cli, pbmc, tmp_path / "x", "--labels", "cell_type", "--method", "pca")
    assert result.exit_code == 1
    assert "has no obs column 'cell_type'" in result.output and "'bulk_labels'" in result.output
    assert "Traceback" not in result.output


def test_a_corrupt_table_is_an_error_naming_it(cli, tmp_path):
    path = tmp_path / "cells.h5ad"
    path.write_bytes(b"not an HDF5 file" * 10)
    pytest.importorskip("anndata")
    result = embed(cli, path, tmp_path / "x", "--method", "pca")
    assert result.exit_code == 1
    assert "cannot read" in result.output and "cells.h5ad" in result.output
    one = tmp_path / "one.csv"
    one.write_text("a\n1\n2\n3\n")
    result = embed(cli, one, tmp_path / "y", "--method", "pca")
    assert result.exit_code == 1 and "at least 3 rows and 2 features" in result.output
