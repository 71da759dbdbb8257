"""Simulated genotypes: stdpopsim catalog models and a 1000 Genomes-like demography.

Two sources of labelled genotype data with known population structure, both simulated with
msprime (the ``genomics`` extra: ``pip install 'diffvi[genomics]'``, imported lazily):

- :func:`simulate_stdpopsim`: any *Homo sapiens* model of the stdpopsim catalog
  (``OutOfAfrica_3G09``, ``AmericanAdmixture_4B18``, ``PapuansOutOfAfrica_10J19``, ...) on a
  generic contig.
- :func:`simulate_thousand_genomes`: :func:`thousand_genomes_demography`, the 26 populations of
  the 1000 Genomes Project in their 5 continental groups.

:func:`genotypes_from_tree_sequence` turns either tree sequence into
:class:`~diffvi.data.genotypes.Genotypes` with populations and super-populations, and
:func:`write_simulation` writes it as PLINK, VCF or a tree sequence plus a label table.

>>> ts = simulate_thousand_genomes(samples_per_population=2, length=2e5, seed=1)  # doctest: +SKIP
>>> genotypes = genotypes_from_tree_sequence(ts)  # doctest: +SKIP
>>> genotypes.calls.shape, genotypes.super_populations[:2]  # doctest: +SKIP
((52, 1203), ['AFR', 'AFR'])

The 1000 Genomes-like demography
--------------------------------
Times are in generations of 25 years (``GENERATION_TIME``), as in Gravel et al. (2011). The
model is a composite of published estimates where they exist and stated assumptions where
they do not; it has not been fitted to the 1000 Genomes data as a whole, so use it for
realistic structure (a continental tree, recent sub-population splits, admixed groups), not
for inference about human history.

*Continental backbone* — Gravel et al. (2011, PNAS 108:11983), fitted to the 1000 Genomes
pilot data (YRI, CEU, CHB+JPT); the same parameters as stdpopsim's ``AmericanAdmixture_4B18``
(Browning et al. 2018):

========================================  =========================================
ancestral size ``N_A``                    7,310
African expansion (``N_AF``)              14,474 from 5,920 generations (148 kya)
out-of-Africa split, bottleneck ``N_B``   2,040 generations (51 kya), size 1,861
EUR–EAS split                             920 generations (23 kya)
EUR founding size, growth                 1,032, 0.38 % per generation
EAS founding size, growth                 554, 0.48 % per generation
migration AFR–OOA                         1.5e-4 (between 2,040 and 920 generations)
migration AFR–EUR, AFR–EAS, EUR–EAS       2.5e-5, 7.8e-6, 3.11e-5 (from 920 generations)
========================================  =========================================

(Gutenkunst et al. 2009, stdpopsim's ``OutOfAfrica_3G09``, gives a similar tree with older
times — N_AF 12,300 from 220 kya, out of Africa 140 kya, EUR–EAS 21.2 kya — fitted to
resequenced genes; Gravel et al. fitted whole-genome 1000 Genomes data, which is why we use
theirs, and do not mix the two parameter sets.)

*South Asia* (SAS) — South Asians descend from a mixture of "Ancestral North Indians" (ANI),
related to West Eurasians, and "Ancestral South Indians" (ASI), an East-Eurasian-related
lineage (Reich et al. 2009, Nature 461:489; Narasimhan et al. 2019, Science 365:eaat7487).
The ANI lineage splits from EUR at 600 generations (15 kya, assumed: after the EUR–EAS split)
and ASI from EAS at 700 generations (17.5 kya, assumed), both continuing the size trajectory
of their parent; they mix at 160 generations (4 kya), inside the 1.9–4.2 kya window of
Moorjani et al. (2013, AJHG 93:422), with 40 % ASI (ANI ancestry is 39–71 % across Indian
groups in Reich et al. 2009). The five SAS groups split from the mixed population at 76
generations (1.9 kya, the onset of endogamy in Moorjani et al. 2013).

*Native Americans* — the source population (NAT) splits from EAS at 640 generations (16 kya,
the peopling time of the most likely scenario of Gravel et al. 2013, PLoS Genet 9:e1004023;
Raghavan et al. 2015, Science 349:aab3884, put it no earlier than 23 kya) with a founding
size of 1,000 (assumed: a strong founder bottleneck). It splits at 488 generations (12.2
kya, Gravel et al. 2013) into a Mesoamerican source NAT_MX (size 62,000) and a South
American source NAT_SA (size 8,700), the Mexican and Colombian Native-American sizes of
Gravel et al. (2013).

*Sub-populations* — the AFR, EUR and EAS groups split from their continental population at
300 generations (7.5 kya, assumed: Holocene, "a few hundred generations") and continue its
size trajectory (AFR constant 14,474; EUR and EAS growing to 34,039 and 45,852 today), except
FIN, held at a constant 6,000 (assumed) for the Finnish founder history (e.g. Lim et al.
2014, PLoS Genet 10:e1004494). Groups of one continent exchange migrants at 1e-4 per
generation (assumed); the continental rates of Gravel et al. apply between the continental
populations from 300 generations back (more recent inter-continental migration is left out).

*Admixed groups* — each is founded by one admixture pulse with size 30,000 growing 5 % per
generation (the admixed population of Browning et al. 2018). African sources are YRI
(West African), European sources GBR (ASW, ACB) and IBS (AMR: Iberian colonists); Native
American sources NAT_MX (MXL) and NAT_SA (CLM, PUR, PEL). Times: 12 generations (~300 years)
for ASW and ACB (Browning et al. 2018 use 12), 16 generations (~400 years) for the AMR groups.
Proportions (``ADMIXTURE_PROPORTIONS``), rounded from the global-ancestry estimates of the
1000 Genomes admixed groups (Native American ancestry 48 % MXL, 25 % CLM, 13 % PUR: Gravel et
al. 2013; the rest and PEL, ASW, ACB: The 1000 Genomes Project Consortium 2015, Nature
526:68, and Martin et al. 2017, AJHG 100:635):

====  =====  =====  =====
      AFR    EUR    NAT
MXL   0.05   0.47   0.48
CLM   0.09   0.66   0.25
PUR   0.17   0.70   0.13
PEL   0.03   0.20   0.77
ASW   0.76   0.24   –
ACB   0.88   0.12   –
====  =====  =====  =====

The super-population of each group is that of the 1000 Genomes release (``SUPER_POPULATION``;
ASW and ACB are AFR). Every population carries ``super_population`` in its metadata.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from diffvi.data.genotypes import Genotypes

if TYPE_CHECKING:
    import msprime
    import tskit

__all__ = [
    "ADMIXTURE_PROPORTIONS",
    "CATALOG_SUPER_POPULATION",
    "GENERATION_TIME",
    "POPULATION_DESCRIPTIONS",
    "SUPER_POPULATION",
    "genotypes_from_tree_sequence",
    "simulate_stdpopsim",
    "simulate_thousand_genomes",
    "thousand_genomes_demography",
    "write_simulation",
]

_INSTALL_HINT = "pip install 'diffvi[genomics]'"

GENERATION_TIME = 25  # years per generation (Gravel et al. 2011)

# The 26 populations of the 1000 Genomes Project (phase 3), by super-population.
POPULATION_DESCRIPTIONS: dict[str, str] = {
    "YRI": "Yoruba in Ibadan, Nigeria",
    "LWK": "Luhya in Webuye, Kenya",
    "GWD": "Gambian in Western Divisions in the Gambia",
    "MSL": "Mende in Sierra Leone",
    "ESN": "Esan in Nigeria",
    "ASW": "Americans of African Ancestry in SW USA",
    "ACB": "African Caribbeans in Barbados",
    "CEU": "Utah Residents (CEPH) with Northern and Western European Ancestry",
    "TSI": "Toscani in Italia",
    "FIN": "Finnish in Finland",
    "GBR": "British in England and Scotland",
    "IBS": "Iberian Population in Spain",
    "CHB": "Han Chinese in Beijing, China",
    "JPT": "Japanese in Tokyo, Japan",
    "CHS": "Southern Han Chinese",
    "CDX": "Chinese Dai in Xishuangbanna, China",
    "KHV": "Kinh in Ho Chi Minh City, Vietnam",
    "GIH": "Gujarati Indian from Houston, Texas",
    "PJL": "Punjabi from Lahore, Pakistan",
    "BEB": "Bengali from Bangladesh",
    "STU": "Sri Lankan Tamil from the UK",
    "ITU": "Indian Telugu from the UK",
    "MXL": "Mexican Ancestry from Los Angeles USA",
    "PUR": "Puerto Ricans from Puerto Rico",
    "CLM": "Colombians from Medellin, Colombia",
    "PEL": "Peruvians from Lima, Peru",
}

SUPER_POPULATION: dict[str, str] = {
    **dict.fromkeys(("YRI", "LWK", "GWD", "MSL", "ESN", "ASW", "ACB"), "AFR"),
    **dict.fromkeys(("CEU", "TSI", "FIN", "GBR", "IBS"), "EUR"),
    **dict.fromkeys(("CHB", "JPT", "CHS", "CDX", "KHV"), "EAS"),
    **dict.fromkeys(("GIH", "PJL", "BEB", "STU", "ITU"), "SAS"),
    **dict.fromkeys(("MXL", "PUR", "CLM", "PEL"), "AMR"),
}

# Super-populations of the sampled populations of stdpopsim HomSap models, where obvious;
# a population missing here is its own super-population.
CATALOG_SUPER_POPULATION: dict[str, str] = {
    **SUPER_POPULATION,
    "AFR": "AFR",
    "EUR": "EUR",
    "ASIA": "EAS",
    "ADMIX": "AMR",
    "Mbuti": "AFR",
    "Han": "EAS",
    "Sardinian": "EUR",
    "Papuan": "OCE",
    "African_Americans": "AFR",
}

# Admixed groups: (time in generations, {source population: proportion}).
ADMIXTURE_PROPORTIONS: dict[str, tuple[int, dict[str, float]]] = {
    "ASW": (12, {"YRI": 0.76, "GBR": 0.24}),
    "ACB": (12, {"YRI": 0.88, "GBR": 0.12}),
    "MXL": (16, {"YRI": 0.05, "IBS": 0.47, "NAT_MX": 0.48}),
    "CLM": (16, {"YRI": 0.09, "IBS": 0.66, "NAT_SA": 0.25}),
    "PUR": (16, {"YRI": 0.17, "IBS": 0.70, "NAT_SA": 0.13}),
    "PEL": (16, {"YRI": 0.03, "IBS": 0.20, "NAT_SA": 0.77}),
}

# Gravel et al. (2011): sizes, times (generations), growth rates and migration rates.
_N_A, _N_AF, _N_B = 7310, 14474, 1861
_N_EU0, _R_EU, _N_AS0, _R_AS = 1032, 0.0038, 554, 0.0048
_T_AF, _T_OOA, _T_EU_AS = 5920, 2040, 920
_M_AF_B, _M_AF_EU, _M_AF_AS, _M_EU_AS = 1.5e-4, 2.5e-5, 7.8e-6, 3.11e-5
# South Asia (Reich et al. 2009; Moorjani et al. 2013; split times assumed).
_T_ASI, _T_ANI, _T_ANI_ASI, _T_SAS = 700, 600, 160, 76
_ASI_PROPORTION = 0.4
# Native Americans (Gravel et al. 2013; founding size assumed).
_T_NAT, _T_NAT_SPLIT, _N_NAT0, _N_NAT_MX, _N_NAT_SA = 640, 488, 1000, 62_000, 8_700
# Sub-populations and admixed groups (assumed; admixed sizes from Browning et al. 2018).
_T_SUB, _M_WITHIN, _N_FIN = 300, 1e-4, 6000
_N_ADMIX, _R_ADMIX = 30_000, 0.05


def _import(module: str, purpose: str = "simulating genotypes"):
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(f"{purpose} needs the {module!r} package: {_INSTALL_HINT}") from error


def _msprime_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent msprime seeds (1 <= s < 2**32) derived from one integer seed."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    state = np.random.SeedSequence(seed).generate_state(count, dtype=np.uint32)
    return [int(s) % (2**32 - 1) + 1 for s in state]


def _check_sizes(samples_per_population: int, length: float) -> None:
    if samples_per_population < 1:
        raise ValueError(f"samples_per_population must be >= 1, got {samples_per_population}")
    if not length > 0 or not math.isfinite(length):
        raise ValueError(f"length must be a positive number of base pairs, got {length}")


def _name_individuals(ts: tskit.TreeSequence) -> tskit.TreeSequence:
    """``ts`` with individual metadata ``{"name": "<population>_<k>"}`` (k counts from 0 within
    each population), the sample names :func:`genotypes_from_tree_sequence` reads."""
    tskit = _import("tskit")
    tables = ts.dump_tables()
    population_names = [
        (pop.metadata or {}).get("name") or f"pop_{pop.id}" for pop in ts.populations()
    ]
    counts: dict[str, int] = {}
    names = []
    for individual in ts.individuals():
        population = ts.node(individual.nodes[0]).population if len(individual.nodes) else -1
        label = population_names[population] if population >= 0 else "ind"
        names.append({"name": f"{label}_{counts.get(label, 0)}"})
        counts[label] = counts.get(label, 0) + 1
    schema = tskit.MetadataSchema(
        {
            "codec": "json",
            "type": "object",
            "properties": {"name": {"type": "string", "description": "sample identifier"}},
            "additionalProperties": True,
        }
    )
    tables.individuals.metadata_schema = schema
    tables.individuals.packset_metadata([schema.validate_and_encode_row(row) for row in names])
    return tables.tree_sequence()


# --------------------------------------------------------------------------------------------
# stdpopsim catalog


def simulate_stdpopsim(
    model: str,
    samples_per_population: int,
    length: float = 5e6,
    seed: int = 0,
    populations: Sequence[str] | None = None,
    mutation_rate: float | None = None,
) -> tskit.TreeSequence:
    """Simulate a *Homo sapiens* demographic model of the stdpopsim catalog with msprime.

    The contig is generic (``species.get_contig(length=...)``): ``length`` base pairs with the
    species' genome-wide mean recombination rate. The mutation rate is the model's own where it
    has one (the rate its parameters were inferred with, as stdpopsim recommends: with the
    species' rate, diversity would differ from the model's), else the species' rate, unless
    ``mutation_rate`` is given. Sites are those of stdpopsim's msprime engine (discrete genome,
    nucleotide mutations, so a few sites may have more than two alleles; the genotype readers
    skip them).

    Args:
        model: a HomSap model id, e.g. ``OutOfAfrica_3G09``, ``AmericanAdmixture_4B18``,
            ``PapuansOutOfAfrica_10J19``.
        samples_per_population: diploid individuals from each sampled population (ancient
            populations are sampled at their sampling time).
        length: contig length in base pairs.
        seed: random seed (the same seed gives the same tree sequence).
        populations: the populations to sample (default: every population of the model that
            allows samples).
        mutation_rate: per base pair and generation; ``None`` as above.

    Returns:
        A tree sequence with ``samples_per_population`` named diploid individuals per
        population (individual metadata ``name`` = ``<population>_<k>``).

    Raises:
        ValueError: an unknown model id (the message lists the valid ones) or population.
    """
    _check_sizes(samples_per_population, length)
    stdpopsim = _import("stdpopsim")
    species = stdpopsim.get_species("HomSap")
    valid = sorted(m.id for m in species.demographic_models)
    if model not in valid:
        raise ValueError(
            f"unknown stdpopsim HomSap model {model!r}; valid models: {', '.join(valid)}"
        )
    demographic_model = species.get_demographic_model(model)
    sampled = [p.name for p in demographic_model.populations if p.allow_samples]
    if populations is None:
        chosen = sampled
    else:
        chosen = list(populations)
        unknown = [p for p in chosen if p not in sampled]
        if unknown or not chosen:
            raise ValueError(
                f"model {model} cannot sample populations {unknown or chosen}; "
                f"its sampled populations are {sampled}"
            )
    if mutation_rate is None:
        mutation_rate = demographic_model.mutation_rate
    contig = species.get_contig(length=length, mutation_rate=mutation_rate)
    engine = stdpopsim.get_engine("msprime")
    ts = engine.simulate(
        demographic_model,
        contig,
        dict.fromkeys(chosen, samples_per_population),
        seed=_msprime_seeds(seed, 1)[0],
    )
    return _name_individuals(ts)


# --------------------------------------------------------------------------------------------
# the 1000 Genomes-like demography


def thousand_genomes_demography() -> msprime.Demography:
    """An msprime demography of the 26 populations of the 1000 Genomes Project.

    Five continental groups (AFR, EUR, EAS, SAS, AMR) built on the out-of-Africa model of
    Gravel et al. (2011), with a South Asian ANI/ASI mixture, a Native American lineage split
    from East Asia, recent sub-population splits with migration inside each continent, and the
    admixed groups ASW, ACB (AFR + EUR, 12 generations ago) and MXL, CLM, PUR, PEL (AFR + EUR +
    Native American, 16 generations ago). The module docstring lists every parameter and its
    source, and which ones are assumptions.

    The 26 sampled populations come first, in the order of ``POPULATION_DESCRIPTIONS``; the
    ancestral ones (AFR, OOA, EUR, EAS, ANI, ASI, SAS, NAT, NAT_MX, NAT_SA) follow and cannot
    be sampled at time 0. Every population's metadata has ``super_population``.

    Returns:
        An ``msprime.Demography`` (times in generations, sizes diploid) with events sorted.
    """
    msprime = _import("msprime")
    demography = msprime.Demography()

    def add(name: str, size: float, growth: float = 0.0, description: str = "", sp=None) -> None:
        demography.add_population(
            name=name,
            description=description or POPULATION_DESCRIPTIONS.get(name, ""),
            initial_size=size,
            growth_rate=growth,
            extra_metadata={"super_population": sp or SUPER_POPULATION.get(name, "")},
        )

    eur_today = _N_EU0 * math.exp(_R_EU * _T_EU_AS)  # 34,039: EUR size at time 0
    eas_today = _N_AS0 * math.exp(_R_AS * _T_EU_AS)  # 45,852
    by_continent: dict[str, list[str]] = {}
    for code, continent in SUPER_POPULATION.items():
        by_continent.setdefault(continent, []).append(code)
    admixed = set(ADMIXTURE_PROPORTIONS)

    # Sampled populations, in the 1000 Genomes order.
    for code in POPULATION_DESCRIPTIONS:
        continent = SUPER_POPULATION[code]
        if code in admixed:
            time = ADMIXTURE_PROPORTIONS[code][0]
            add(code, _N_ADMIX * math.exp(_R_ADMIX * time), _R_ADMIX)
        elif code == "FIN":
            add(code, _N_FIN)
        elif continent == "AFR":
            add(code, _N_AF)
        elif continent in ("EUR", "SAS"):
            add(code, eur_today, _R_EU)
        else:  # EAS
            add(code, eas_today, _R_AS)

    # Ancestral populations.
    add("AFR", _N_AF, description="African continental population", sp="AFR")
    add("OOA", _N_B, description="Out-of-Africa bottleneck population")
    add("EUR", eur_today, _R_EU, "European continental population", "EUR")
    add("EAS", eas_today, _R_AS, "East Asian continental population", "EAS")
    add("ANI", eur_today, _R_EU, "Ancestral North Indians (West-Eurasian-related)", "SAS")
    add("ASI", eas_today, _R_AS, "Ancestral South Indians (East-Eurasian-related)", "SAS")
    add("SAS", eur_today, _R_EU, "South Asian population after the ANI-ASI mixture", "SAS")
    add("NAT", _N_NAT0, description="Founding Native American population", sp="AMR")
    add("NAT_MX", _N_NAT_MX, description="Mesoamerican Native American source", sp="AMR")
    add("NAT_SA", _N_NAT_SA, description="South American Native American source", sp="AMR")

    # Migration inside each continent among its non-admixed groups (until they split).
    for continent in ("AFR", "EUR", "EAS", "SAS"):
        groups = [c for c in by_continent[continent] if c not in admixed]
        demography.set_symmetric_migration_rate(groups, _M_WITHIN)

    # Admixed groups.
    for code, (time, sources) in ADMIXTURE_PROPORTIONS.items():
        demography.add_admixture(
            time, derived=code, ancestral=list(sources), proportions=list(sources.values())
        )
    # Sub-populations from their continental population.
    for continent in ("AFR", "EUR", "EAS"):
        groups = [c for c in by_continent[continent] if c not in admixed]
        demography.add_population_split(_T_SUB, derived=groups, ancestral=continent)
    demography.add_population_split(_T_SAS, derived=by_continent["SAS"], ancestral="SAS")
    # Continental migration (Gravel et al. 2011) between the continental populations.
    for a, b, rate in (
        ("AFR", "EUR", _M_AF_EU),
        ("AFR", "EAS", _M_AF_AS),
        ("EUR", "EAS", _M_EU_AS),
    ):
        demography.add_symmetric_migration_rate_change(_T_SUB, [a, b], rate)
    # South Asia: ANI-ASI mixture, ANI from EUR, ASI from EAS.
    demography.add_admixture(
        _T_ANI_ASI,
        derived="SAS",
        ancestral=["ANI", "ASI"],
        proportions=[1 - _ASI_PROPORTION, _ASI_PROPORTION],
    )
    demography.add_population_split(_T_ANI, derived=["ANI"], ancestral="EUR")
    demography.add_population_split(_T_ASI, derived=["ASI"], ancestral="EAS")
    # Native Americans: two sources from one founding population, split from EAS.
    demography.add_population_split(_T_NAT_SPLIT, derived=["NAT_MX", "NAT_SA"], ancestral="NAT")
    demography.add_population_split(_T_NAT, derived=["NAT"], ancestral="EAS")
    # Out of Africa (Gravel et al. 2011).
    demography.add_population_split(_T_EU_AS, derived=["EUR", "EAS"], ancestral="OOA")
    demography.add_symmetric_migration_rate_change(_T_EU_AS, ["AFR", "OOA"], _M_AF_B)
    demography.add_population_split(_T_OOA, derived=["OOA"], ancestral="AFR")
    demography.add_population_parameters_change(_T_AF, initial_size=_N_A, population="AFR")
    demography.sort_events()
    return demography


def simulate_thousand_genomes(
    samples_per_population: int = 20,
    length: float = 5e6,
    seed: int = 0,
    mutation_rate: float = 2.36e-8,
    recombination_rate: float = 1e-8,
) -> tskit.TreeSequence:
    """Simulate :func:`thousand_genomes_demography` with msprime: the 26 1000 Genomes groups.

    Ancestry with ``msprime.sim_ancestry`` (diploid individuals, Hudson coalescent, discrete
    genome), then mutations with ``msprime.sim_mutations`` under the binary (0/1) model, so
    every site is biallelic (a site hit twice may revert, and is kept if still polymorphic).

    Args:
        samples_per_population: diploid individuals from each of the 26 groups.
        length: sequence length in base pairs.
        seed: random seed (the same seed gives the same tree sequence).
        mutation_rate: per base pair and generation. The default, 2.36e-8, is the rate with
            which Gravel et al. (2011) turned their scaled estimates into the population
            sizes used here (stdpopsim's ``AmericanAdmixture_4B18`` uses it too); with it,
            diversity matches theirs. A pedigree rate such as 1.25e-8 keeps the structure
            (F_ST) but halves the number of variants per base pair.
        recombination_rate: per base pair and generation (1e-8, about 1 cM/Mb).

    Returns:
        A tree sequence with ``26 * samples_per_population`` individuals named
        ``<population>_<k>``.
    """
    _check_sizes(samples_per_population, length)
    msprime = _import("msprime")
    ancestry_seed, mutation_seed = _msprime_seeds(seed, 2)
    ts = msprime.sim_ancestry(
        samples=dict.fromkeys(POPULATION_DESCRIPTIONS, samples_per_population),
        demography=thousand_genomes_demography(),
        sequence_length=length,
        recombination_rate=recombination_rate,
        discrete_genome=True,
        ploidy=2,
        random_seed=ancestry_seed,
    )
    ts = msprime.sim_mutations(
        ts,
        rate=mutation_rate,
        model=msprime.BinaryMutationModel(),
        discrete_genome=True,
        random_seed=mutation_seed,
    )
    return _name_individuals(ts)


# --------------------------------------------------------------------------------------------
# tree sequence -> Genotypes, and files


def common_sites(ts: tskit.TreeSequence, maf: float) -> tskit.TreeSequence:
    """``ts`` without the sites that :func:`genotypes_from_tree_sequence` would give a
    minor-allele frequency below ``maf`` over the sample haplotypes (or would skip as not
    biallelic). Filtering the tree sequence first keeps memory to the common sites: a 27 Mb
    simulation of 3,458 individuals has ~1.2 million sites, of which ~90,000 have MAF >= 0.01.
    """
    tskit = _import("tskit")
    if not 0 <= maf <= 0.5:
        raise ValueError(f"maf must be in [0, 0.5], got {maf}")
    haplotypes = ts.num_samples
    variant = tskit.Variant(ts)
    drop = []
    for tree in ts.trees():
        for site in tree.sites():
            if len(site.mutations) == 1:  # the common case: count the samples below it
                frequency = tree.num_samples(site.mutations[0].node) / haplotypes
            else:  # recurrent or back mutations: decode the site
                variant.decode(site.id)
                present = np.unique(variant.genotypes[variant.genotypes >= 0])
                if len(present) != 2:
                    drop.append(site.id)
                    continue
                frequency = float((variant.genotypes == present[1]).mean())
            if min(frequency, 1.0 - frequency) < maf:
                drop.append(site.id)
    return ts.delete_sites(drop) if drop else ts


def genotypes_from_tree_sequence(
    ts: tskit.TreeSequence, super_population: Mapping[str, str] | None = None
) -> Genotypes:
    """The diploid genotypes of a simulated tree sequence, with population labels.

    Reads through :func:`diffvi.data.genotype_io.read_tree_sequence` (on a temporary file), so
    the calls (derived-allele counts; sites without exactly two alleles skipped), sample names
    (individual metadata ``name``) and variant ids (``1:<position>``) are those of a ``.trees``
    file read back.

    Args:
        ts: a tree sequence with diploid individuals.
        super_population: population → super-population. Default: the population metadata
            ``super_population`` (set by :func:`thousand_genomes_demography`), else
            ``CATALOG_SUPER_POPULATION``, else the population itself.

    Returns:
        Genotypes ``[N, M]`` with ``populations`` and ``super_populations``.
    """
    from diffvi.data.genotype_io import read_tree_sequence

    with tempfile.TemporaryDirectory(prefix="diffvi-ts-") as folder:
        path = Path(folder) / "simulation.trees"
        ts.dump(str(path))
        genotypes = read_tree_sequence(path)
    from_metadata = {}
    for pop in ts.populations():
        metadata = pop.metadata if isinstance(pop.metadata, Mapping) else {}
        if metadata.get("name") and metadata.get("super_population"):
            from_metadata[str(metadata["name"])] = str(metadata["super_population"])
    mapping = dict(super_population) if super_population is not None else None
    populations = genotypes.populations or []

    def lookup(population: str) -> str:
        if mapping is not None:
            return mapping.get(population, population)
        return from_metadata.get(population) or CATALOG_SUPER_POPULATION.get(population, population)

    genotypes.super_populations = [lookup(p) for p in populations]
    return genotypes


Format = Literal["plink", "vcf", "trees"]


def write_simulation(
    genotypes: Genotypes,
    out_prefix: str | Path,
    format: Format = "plink",  # noqa: A002 - the natural name of the option
    ts: tskit.TreeSequence | None = None,
) -> list[Path]:
    """Write simulated genotypes and their labels; returns the written paths.

    - ``plink``: ``<prefix>.bed``, ``.bim``, ``.fam``
      (:func:`~diffvi.data.genotype_io.write_plink`);
    - ``vcf``: ``<prefix>.vcf.gz`` (:func:`~diffvi.data.genotype_io.write_vcf`);
    - ``trees``: ``<prefix>.trees``, the tree sequence ``ts`` with only the sites of
      ``genotypes`` (after a frequency filter, say), read back by ``read_tree_sequence``;

    and always ``<prefix>.labels.tsv`` (sample, population, super_population). Parent folders
    are created.

    Raises:
        ValueError: an unknown format, ``trees`` without ``ts``, or genotypes without
            populations.
    """
    from diffvi.data.genotype_io import write_labels, write_plink, write_vcf

    formats = ("plink", "vcf", "trees")
    if format not in formats:
        raise ValueError(f"format must be one of {formats}, got {format!r}")
    if genotypes.populations is None:
        raise ValueError("write_simulation needs genotypes with populations (for the labels)")
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if format == "plink":
        bed = write_plink(genotypes, prefix)
        paths = [bed, bed.with_suffix(".bim"), bed.with_suffix(".fam")]
    elif format == "vcf":
        paths = [write_vcf(genotypes, Path(f"{prefix}.vcf.gz"))]
    else:
        if ts is None:
            raise ValueError("format 'trees' needs the tree sequence (ts=...)")
        paths = [_write_trees(ts, genotypes, Path(f"{prefix}.trees"))]
    paths.append(write_labels(genotypes, Path(f"{prefix}.labels.tsv")))
    return paths


def _write_trees(ts: tskit.TreeSequence, genotypes: Genotypes, path: Path) -> Path:
    """Dump ``ts`` keeping only the sites whose variant ids (``1:<pos>``) are in ``genotypes``."""
    positions = ts.tables.sites.position
    ids = [f"1:{int(p)}" for p in positions]
    wanted = set(genotypes.variants)
    drop = [i for i, v in enumerate(ids) if v not in wanted]
    if len(ids) - len(drop) != genotypes.num_variants:
        raise ValueError(
            f"the genotypes' {genotypes.num_variants} variants are not all sites of the tree "
            "sequence (expected ids 1:<position> from genotypes_from_tree_sequence)"
        )
    (ts.delete_sites(drop) if drop else ts).dump(str(path))
    return path
