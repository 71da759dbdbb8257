"""``embed genotypes --clustering heads`` (and ``heads-official``, the official loop): DD-VAE with
the official code's learned cluster heads trains that model and reports its nearest-head
clusters beside the GMM's; the flag is refused for other methods and unknown names."""

import json

import pytest

pytest.importorskip("msprime")
pytest.importorskip("stdpopsim")

from diffvi.data.genotype_simulation import (  # noqa: E402
    genotypes_from_tree_sequence,
    simulate_stdpopsim,
    write_simulation,
)


@pytest.fixture(scope="module")
def plink(tmp_path_factory):
    ts = simulate_stdpopsim("OutOfAfrica_3G09", 15, length=1e6, seed=1)
    prefix = tmp_path_factory.mktemp("genotypes") / "ooa"
    write_simulation(genotypes_from_tree_sequence(ts), prefix, "plink")
    return prefix


def embed(cli, prefix, out, *options):
    return cli(
        "embed", "genotypes", "--input", f"{prefix}.bed", "--labels", f"{prefix}.labels.tsv",
        "--out", out, "--clusters", "3", "--no-progress", "--threads", "1", "--components",
        "10", "--hidden", "16", "--batch-size", "15", "--likelihood-scale", "0.3", *options,
    )  # fmt: skip


@pytest.mark.parametrize(
    "clustering, objective", [("heads", "ddvi-heads"), ("heads-official", "ddvi-heads-official")]
)
def test_clustering_heads_trains_the_heads_model_and_scores_its_nearest_head(
    cli, plink, tmp_path, clustering, objective
):
    result = embed(cli, plink, tmp_path / "h", "--method", "ddvae", "--clustering", clustering,
                   "--epochs", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "h" / "metrics.json").read_text())
    own = metrics["details"]["model_cluster_scores"]["populations"]
    assert 0 <= own["nmi"] <= 1 and "nmi" in metrics["scores"]["populations"]
    assert "Nearest head" in result.output
    config = json.loads((tmp_path / "h" / "run" / "config.json").read_text())
    assert (config["objective"], config["prior"]) == (objective, "cluster-heads")


def test_clustering_heads_is_refused_for_other_methods_and_unknown_names(cli, plink, tmp_path):
    result = embed(cli, plink, tmp_path / "p", "--method", "pca", "--clustering", "heads")
    assert result.exit_code != 0 and "DD-VAE's" in result.output
    result = embed(cli, plink, tmp_path / "k", "--method", "ddvae", "--clustering", "kmeans")
    assert result.exit_code != 0 and "kmeans" in result.output
