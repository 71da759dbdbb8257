"""``embed genotypes``: simulated populations in, embedding.csv/png and metrics.json out; PCA +
GMM and DD-VAE recover well-separated populations; bad inputs give one-line errors."""

import csv
import json

import pytest

pytest.importorskip("msprime")
pytest.importorskip("stdpopsim")


# Out of Africa (YRI, CEU, CHB; Gutenkunst et al. 2009), 30 individuals each, 2 Mb: three
# well-separated populations (PCA + GMM: NMI ≈ 0.93 at this seed).
NMI_THRESHOLD_PCA = 0.8
NMI_THRESHOLD_DDVAE = 0.8


def embed(cli, prefix, out, *options):
    return cli(
        "embed", "genotypes", "--input", f"{prefix}.bed", "--labels", f"{prefix}.labels.tsv",
        "--out", out, "--clusters", "3", "--no-progress", "--threads", "1", *options,
    )  # fmt: skip


def test_pca_gmm_recovers_the_populations_and_writes_every_output(cli, easy_plink, tmp_path):
    result = embed(cli, easy_plink, tmp_path / "pca", "--method", "pca")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "pca" / "metrics.json").read_text())
    assert metrics["num_samples"] == 90 and metrics["components"] == 89
    assert metrics["scores"]["populations"]["nmi"] > NMI_THRESHOLD_PCA
    with open(tmp_path / "pca" / "embedding.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 90
    assert set(rows[0]) == {"sample", "population", "super_population", "z1", "z2", "cluster"}
    assert {row["population"] for row in rows} == {"YRI", "CEU", "CHB"}
    float(rows[0]["z1"])  # plain numbers
    assert (tmp_path / "pca" / "embedding.png").stat().st_size > 10_000
    assert "NMI" in result.output


@pytest.mark.slow
def test_ddvae_recovers_the_populations(cli, easy_plink, tmp_path):
    # 600 steps of batch 30 on 20 PCs (~30 s on one core).
    result = embed(
        cli, easy_plink, tmp_path / "dd", "--method", "ddvae", "--components", "20",
        "--epochs", "200", "--lr", "3e-3", "--hidden", "64", "--batch-size", "30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "dd" / "metrics.json").read_text())
    assert metrics["scores"]["populations"]["nmi"] > NMI_THRESHOLD_DDVAE
    assert (tmp_path / "dd" / "run" / "export" / "model.safetensors").exists()


def test_a_labelled_sample_missing_from_the_genotypes_is_an_error(cli, easy_plink, tmp_path):
    labels = tmp_path / "labels.tsv"
    text = (easy_plink.parent / "ooa.labels.tsv").read_text()
    labels.write_text(text + "NOT_THERE\tYRI\tAFR\n")
    result = cli(
        "embed", "genotypes", "--input", f"{easy_plink}.bed", "--labels", labels,
        "--out", tmp_path / "x", "--method", "pca",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "NOT_THERE" in result.output and "Traceback" not in result.output
    assert "--ignore-extra-labels" in result.output  # the error says how to go on


def test_ignore_extra_labels_drops_labels_of_samples_not_genotyped_with_a_note(
    cli, easy_plink, tmp_path
):
    # A full panel (the 1000 Genomes format: sample pop super_pop gender) against a subset.
    rows = (easy_plink.parent / "ooa.labels.tsv").read_text().splitlines()[1:]
    panel = tmp_path / "full.panel"
    panel.write_text(
        "sample\tpop\tsuper_pop\tgender\n"
        + "".join(f"{row}\tfemale\n" for row in rows)
        + "".join(f"EXTRA{i}\tYRI\tAFR\tmale\n" for i in range(7))
    )
    result = embed(cli, easy_plink, tmp_path / "e", "--method", "pca", "--ignore-extra-labels")
    assert result.exit_code == 0, result.output  # the plain labels: nothing extra, no note
    assert "dropped the labels" not in result.output
    args = ["embed", "genotypes", "--input", f"{easy_plink}.bed", "--labels", panel,
            "--method", "pca", "--clusters", "3", "--no-progress", "--threads", "1"]  # fmt: skip
    refused = cli(*args, "--out", tmp_path / "x")
    assert refused.exit_code == 1 and "7 labelled samples are not in the genotypes" in (
        refused.output
    )
    result = cli(*args, "--ignore-extra-labels", "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "dropped the labels" in line]
    assert len(notes) == 1 and "7 samples" in notes[0]
    metrics = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert metrics["num_samples"] == 90
    assert metrics["scores"]["populations"]["nmi"] > NMI_THRESHOLD_PCA
    alone = cli("embed", "genotypes", "--input", f"{easy_plink}.bed", "--ignore-extra-labels",
                "--out", tmp_path / "n")  # fmt: skip
    assert alone.exit_code == 1 and "--labels" in alone.output


def test_a_truncated_bed_file_is_an_error(cli, easy_plink, tmp_path):
    prefix = tmp_path / "cut"
    for suffix in (".bim", ".fam"):
        (tmp_path / f"cut{suffix}").write_bytes(easy_plink.with_suffix(suffix).read_bytes())
    data = easy_plink.with_suffix(".bed").read_bytes()
    (tmp_path / "cut.bed").write_bytes(data[: len(data) // 2])
    result = cli("embed", "genotypes", "--input", f"{prefix}.bed", "--out", tmp_path / "y")
    assert result.exit_code == 1
    assert "truncated" in result.output


def test_a_filter_that_leaves_no_variant_is_an_error(cli, easy_plink, tmp_path):
    result = embed(cli, easy_plink, tmp_path / "z", "--method", "pca", "--thin", "1000000")
    assert result.exit_code == 1
    assert "1 variants left" in result.output


def test_likelihood_scale_reaches_the_training_run_and_defaults_to_the_librarys(
    cli, easy_plink, tmp_path
):
    import inspect

    from diffvi.cli.embed_genotypes import embed_genotypes
    from diffvi.training.embedding import EmbeddingOptions

    default = inspect.signature(embed_genotypes).parameters["likelihood_scale"].default
    assert default is None and EmbeddingOptions().likelihood_scale == "median"  # None → it
    result = embed(
        cli, easy_plink, tmp_path / "vae", "--method", "vae", "--components", "10",
        "--epochs", "1", "--hidden", "8", "--likelihood-scale", "0.05",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "vae" / "run" / "config.json").read_text())
    assert config["likelihood_scale"] == 0.05
    metrics = json.loads((tmp_path / "vae" / "metrics.json").read_text())
    assert metrics["details"]["likelihood_scale"] == 0.05 and metrics["details"]["epochs"] == 1
