"""``embed genotypes --pca``: the randomized PCA streams the .bed and gives the exact PCA's
embedding, with labels that drop samples too; its option errors are one line."""

import csv
import json

import numpy as np
import pytest

pytest.importorskip("msprime")
pytest.importorskip("bed_reader")


@pytest.fixture(scope="module")
def plink(easy_plink):
    return easy_plink


def embed(cli, prefix, out, *options, labels=None):
    return cli(
        "embed", "genotypes", "--input", f"{prefix}.bed",
        "--labels", labels or f"{prefix}.labels.tsv", "--out", out, "--clusters", "3",
        "--no-progress", "--threads", "1", "--method", "pca", "--components", "10", *options,
    )  # fmt: skip


def coordinates(folder):
    with open(folder / "embedding.csv") as f:
        rows = list(csv.DictReader(f))
    return [row["sample"] for row in rows], np.array(
        [[float(r["z1"]), float(r["z2"])] for r in rows]
    )


@pytest.mark.slow
def test_randomized_pca_gives_the_exact_pcas_embedding(cli, plink, tmp_path):
    exact = embed(cli, plink, tmp_path / "exact", "--pca", "exact")
    fast = embed(cli, plink, tmp_path / "fast", "--pca", "randomized")
    assert exact.exit_code == 0 and fast.exit_code == 0, exact.output + fast.output
    assert "(randomized PCA)" in fast.output
    metrics = json.loads((tmp_path / "fast" / "metrics.json").read_text())
    assert metrics["pca"] == "randomized" and metrics["pca_iterations"] == 8
    exact_metrics = json.loads((tmp_path / "exact" / "metrics.json").read_text())
    assert metrics["num_variants"] == exact_metrics["num_variants"]
    assert exact_metrics["pca"] == "exact"
    samples, z = coordinates(tmp_path / "fast")
    exact_samples, exact_z = coordinates(tmp_path / "exact")
    assert samples == exact_samples
    np.testing.assert_allclose(z, exact_z, atol=1e-3 * np.abs(exact_z).max())
    np.testing.assert_allclose(
        metrics["explained_variance_top10"][:2], exact_metrics["explained_variance_top10"][:2],
        rtol=1e-4,
    )  # fmt: skip


def test_randomized_pca_reads_only_the_labelled_samples_with_drop_unlabelled(cli, plink, tmp_path):
    lines = (plink.parent / "ooa.labels.tsv").read_text().splitlines()
    labels = tmp_path / "some.tsv"
    labels.write_text("\n".join([lines[0], *lines[1::2]]) + "\n")  # every other sample
    result = embed(
        cli, plink, tmp_path / "some", "--pca", "randomized", "--drop-unlabelled",
        labels=labels,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    samples, _ = coordinates(tmp_path / "some")
    assert samples == [line.split("\t")[0] for line in lines[1::2]]
    assert json.loads((tmp_path / "some" / "metrics.json").read_text())["num_samples"] == 45


def test_pca_option_errors_are_one_line(cli, plink, tmp_path):
    result = embed(cli, plink, tmp_path / "a", "--pca", "exact", "--scheduler", "dask-local")
    assert result.exit_code == 1 and "runs the randomized PCA" in result.output
    result = embed(cli, plink, tmp_path / "b", "--pca", "randomized", "--components", "1000")
    assert result.exit_code == 1 and "n_components + oversampling" in result.output
    result = embed(cli, plink, tmp_path / "c", "--pca", "fast")
    assert result.exit_code == 2
