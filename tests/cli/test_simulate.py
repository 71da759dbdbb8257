"""``simulate genotypes``: simulates, writes genotype + label files that read back, reports."""

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

pytest.importorskip("msprime")
pytest.importorskip("stdpopsim")

from diffvi.cli.simulate import simulate_app  # noqa: E402
from diffvi.data.genotype_io import attach_labels, read_labels, read_plink, read_vcf  # noqa: E402

app = typer.Typer()
app.add_typer(simulate_app, name="simulate")


def run(*args):
    return CliRunner().invoke(app, ["simulate", "genotypes", *map(str, args)])


def test_thousand_genomes_plink_files_and_labels_read_back(tmp_path):
    out = tmp_path / "sim" / "kg"
    result = run("--samples-per-population", 2, "--length", 1e5, "--seed", 1, "--out", out)
    assert result.exit_code == 0, result.output
    for suffix in (".bed", ".bim", ".fam", ".labels.tsv"):
        assert (tmp_path / "sim" / f"kg{suffix}").is_file()
    genotypes = attach_labels(read_plink(f"{out}.bed"), read_labels(f"{out}.labels.tsv"))
    assert genotypes.num_samples == 52
    assert len(set(genotypes.populations)) == 26
    assert set(genotypes.super_populations) == {"AFR", "EUR", "EAS", "SAS", "AMR"}
    assert set(np.unique(genotypes.calls)) <= {0, 1, 2}
    assert f"52 samples, {genotypes.num_variants} variants, 26 populations" in result.stdout
    assert f"{out}.bed" in result.stdout and f"{out}.labels.tsv" in result.stdout


def test_catalog_model_as_vcf_with_a_maf_filter(tmp_path):
    out = tmp_path / "ooa"
    result = run(
        "--model", "OutOfAfrica_3G09", "--samples-per-population", 3, "--length", 1e5,
        "--format", "vcf", "--maf", 0.1, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    genotypes = read_vcf(f"{out}.vcf.gz")
    assert genotypes.num_samples == 9 and genotypes.num_variants > 0
    frequency = genotypes.calls.mean(axis=0) / 2
    assert np.minimum(frequency, 1 - frequency).min() >= 0.1 - 1e-9
    assert "before the MAF >= 0.1 filter" in result.stdout
    assert set(read_labels(f"{out}.labels.tsv")) == set(genotypes.samples)


def test_unknown_model_is_a_one_line_error(tmp_path):
    result = run("--model", "NoSuchModel_1X00", "--out", tmp_path / "x")
    assert result.exit_code == 1
    assert "unknown stdpopsim HomSap model" in result.output
    assert "Traceback" not in result.output


def test_help_shows_the_options_and_an_example():
    result = CliRunner().invoke(app, ["simulate", "genotypes", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--samples-per-population", "--length", "--format", "--maf"):
        assert option in result.stdout
    assert "diffvi simulate genotypes" in result.stdout
