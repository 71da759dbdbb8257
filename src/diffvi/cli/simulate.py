"""``diffvi simulate``: simulated data sets. ``simulate genotypes`` writes the genotypes of a
simulated human demography (the 1000 Genomes-like model or a stdpopsim catalog model) as PLINK,
VCF or a tree sequence, with a label table (:mod:`diffvi.data.genotype_simulation`)."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from diffvi.cli.options import ensure_writable, report_errors

THOUSAND_GENOMES = "thousand-genomes"

simulate_app = typer.Typer(
    help="Simulate data sets: `simulate genotypes` (human demographic models, msprime).",
    no_args_is_help=True,
)


class GenotypeFormat(StrEnum):
    plink = "plink"
    vcf = "vcf"
    trees = "trees"


_SIMULATION = "Simulation"
_OUTPUT = "Output"


@simulate_app.command("genotypes")
@report_errors
def simulate_genotypes(
    out: Annotated[
        Path,
        typer.Option(
            help="Output prefix: PREFIX.bed/.bim/.fam, PREFIX.vcf.gz or PREFIX.trees, and "
            "PREFIX.labels.tsv.",
            show_default=False,
            rich_help_panel=_OUTPUT,
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            rich_help_panel=_SIMULATION,
            help="thousand-genomes (the 26 populations of the 1000 Genomes Project), or a "
            "stdpopsim HomSap model id such as OutOfAfrica_3G09, AmericanAdmixture_4B18, "
            "PapuansOutOfAfrica_10J19.",
        ),
    ] = THOUSAND_GENOMES,
    samples_per_population: Annotated[
        int,
        typer.Option(min=1, rich_help_panel=_SIMULATION, help="Diploid samples per population."),
    ] = 20,
    length: Annotated[
        float,
        typer.Option(min=1, rich_help_panel=_SIMULATION, help="Sequence length in base pairs."),
    ] = 5e6,
    seed: Annotated[int, typer.Option(min=0, rich_help_panel=_SIMULATION, help="Random seed.")] = 0,
    populations: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=_SIMULATION,
            show_default="all sampled populations",
            help="stdpopsim models: comma-separated populations to sample, e.g. YRI,CEU.",
        ),
    ] = None,
    mutation_rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            rich_help_panel=_SIMULATION,
            show_default="the model's",
            help="Mutation rate per base pair and generation.",
        ),
    ] = None,
    format: Annotated[  # noqa: A002 - the option is --format
        GenotypeFormat, typer.Option(rich_help_panel=_OUTPUT, help="Genotype file format.")
    ] = GenotypeFormat.plink,
    maf: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.5,
            rich_help_panel=_OUTPUT,
            help="Keep variants with minor allele frequency >= MAF (0 keeps all).",
        ),
    ] = 0.0,
) -> None:
    """Simulate human genotypes with msprime and write them with their population labels.

    `thousand-genomes` simulates the 26 populations of the 1000 Genomes Project in their five
    continental groups (AFR, EUR, EAS, SAS, AMR): the out-of-Africa model of Gravel et al.
    (2011), a South Asian mixture, a Native American lineage, recent sub-population splits and
    the admixed groups (ASW, ACB, MXL, PUR, CLM, PEL); see diffvi.data.genotype_simulation for
    every parameter and its source. Any other value is a stdpopsim HomSap catalog model,
    simulated on a generic contig of --length base pairs.

    Writes PREFIX.bed/.bim/.fam (plink), PREFIX.vcf.gz (vcf) or PREFIX.trees (trees), and
    PREFIX.labels.tsv (sample, population, super_population) for
    `diffvi embed genotypes --labels`.

    **Examples**

    ```
    diffvi simulate genotypes --out data/sim1kg
    diffvi simulate genotypes --samples-per-population 50 --length 2e7 --maf 0.01 --out data/sim1kg
    diffvi simulate genotypes --model OutOfAfrica_3G09 --format vcf --out data/ooa
    diffvi simulate genotypes --model AmericanAdmixture_4B18 --format trees --out data/admix
    ```
    """
    ensure_writable(f"{out}.labels.tsv")  # and the genotype files beside it
    from diffvi.data.genotype_simulation import (
        common_sites,
        genotypes_from_tree_sequence,
        simulate_stdpopsim,
        simulate_thousand_genomes,
        write_simulation,
    )

    chosen = [p.strip() for p in populations.split(",") if p.strip()] if populations else None
    if model == THOUSAND_GENOMES:
        if chosen is not None:
            raise ValueError(
                "--populations selects populations of a stdpopsim model; "
                f"{THOUSAND_GENOMES} always samples its 26 populations"
            )
        rate = {} if mutation_rate is None else {"mutation_rate": mutation_rate}
        ts = simulate_thousand_genomes(samples_per_population, length, seed, **rate)
    else:
        ts = simulate_stdpopsim(
            model, samples_per_population, length, seed, chosen, mutation_rate=mutation_rate
        )
    simulated = ts.num_sites
    genotypes = genotypes_from_tree_sequence(common_sites(ts, maf))
    paths = write_simulation(genotypes, out, format.value, ts=ts)
    groups = sorted(set(genotypes.populations or []))
    kept = f" ({simulated} sites before the MAF >= {maf} filter)" if maf > 0 else ""
    typer.echo(
        f"Simulated {model}: {genotypes.num_samples} samples, {genotypes.num_variants} "
        f"variants{kept}, {len(groups)} populations ({', '.join(groups)})\n"
        + "\n".join(f"Wrote {path}" for path in paths)
    )
