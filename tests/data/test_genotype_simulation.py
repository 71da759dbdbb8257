"""Simulated genotypes: the 1000 Genomes-like demography, stdpopsim models, files."""

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("msprime")
pytest.importorskip("stdpopsim")

from diffvi.data.genotype_io import (  # noqa: E402
    read_labels,
    read_plink,
    read_tree_sequence,
    read_vcf,
)
from diffvi.data.genotype_simulation import (  # noqa: E402
    ADMIXTURE_PROPORTIONS,
    POPULATION_DESCRIPTIONS,
    SUPER_POPULATION,
    common_sites,
    genotypes_from_tree_sequence,
    simulate_stdpopsim,
    simulate_thousand_genomes,
    thousand_genomes_demography,
    write_simulation,
)

CODES = {
    "AFR": ["YRI", "LWK", "GWD", "MSL", "ESN", "ASW", "ACB"],
    "EUR": ["CEU", "TSI", "FIN", "GBR", "IBS"],
    "EAS": ["CHB", "JPT", "CHS", "CDX", "KHV"],
    "SAS": ["GIH", "PJL", "BEB", "STU", "ITU"],
    "AMR": ["MXL", "PUR", "CLM", "PEL"],
}


@pytest.fixture(scope="module")
def tiny():
    """2 samples from each of the 26 groups on 200 kb: (tree sequence, genotypes)."""
    ts = simulate_thousand_genomes(samples_per_population=2, length=2e5, seed=1)
    return ts, genotypes_from_tree_sequence(ts)


def test_demography_has_the_26_1000_genomes_populations_with_their_super_populations():
    demography = thousand_genomes_demography()
    assert len(SUPER_POPULATION) == len(POPULATION_DESCRIPTIONS) == 26
    for continent, codes in CODES.items():
        for code in codes:
            population = demography[code]
            assert SUPER_POPULATION[code] == continent
            assert population.extra_metadata["super_population"] == continent
            assert population.description == POPULATION_DESCRIPTIONS[code]


def test_demography_passes_msprime_debug_and_coalesces_in_one_ancestral_population():
    demography = thousand_genomes_demography()
    debugger = demography.debug()  # raises on an inconsistent model
    last = debugger.epochs[-1]
    active = [pop.name for pop in last.populations if pop.state == 1]  # msprime ACTIVE
    assert active == ["AFR"]
    assert last.populations[demography["AFR"].id].start_size == 7310


def test_admixture_proportions_sum_to_one():
    for _time, sources in ADMIXTURE_PROPORTIONS.values():
        assert sum(sources.values()) == pytest.approx(1.0)


def test_tiny_simulation_gives_labelled_diploid_genotypes(tiny):
    _, genotypes = tiny
    assert genotypes.num_samples == 26 * 2
    assert genotypes.num_variants > 100
    assert genotypes.calls.dtype == np.int8
    assert set(np.unique(genotypes.calls)) <= {0, 1, 2}
    assert Counter(genotypes.populations) == dict.fromkeys(POPULATION_DESCRIPTIONS, 2)
    assert genotypes.super_populations == [SUPER_POPULATION[p] for p in genotypes.populations]
    assert genotypes.samples[:2] == ["YRI_0", "YRI_1"]
    assert all(
        s.startswith(p) for s, p in zip(genotypes.samples, genotypes.populations, strict=True)
    )


def test_same_seed_gives_the_same_calls_and_another_seed_different_ones(tiny):
    _, genotypes = tiny
    again = genotypes_from_tree_sequence(simulate_thousand_genomes(2, length=2e5, seed=1))
    other = genotypes_from_tree_sequence(simulate_thousand_genomes(2, length=2e5, seed=2))
    np.testing.assert_array_equal(again.calls, genotypes.calls)
    assert again.variants == genotypes.variants
    assert other.variants != genotypes.variants


def test_africans_and_east_asians_differ_more_than_east_asians_among_themselves():
    genotypes = genotypes_from_tree_sequence(simulate_thousand_genomes(3, length=1e6, seed=3))
    calls = genotypes.calls.astype(np.float64)
    superpops = np.array(genotypes.super_populations)
    afr = calls[superpops == "AFR"]
    eas = calls[superpops == "EAS"]

    def mean_distance(a, b):
        return np.abs(a[:, None, :] - b[None, :, :]).sum(-1).mean()

    within = np.abs(eas[:, None, :] - eas[None, :, :]).sum(-1)
    within_eas = within[np.triu_indices(len(eas), 1)].mean()
    assert mean_distance(afr, eas) > 1.2 * within_eas


def test_catalog_model_simulates_with_super_populations():
    ts = simulate_stdpopsim("OutOfAfrica_3G09", samples_per_population=2, length=1e5, seed=1)
    genotypes = genotypes_from_tree_sequence(ts)
    assert genotypes.populations == ["YRI"] * 2 + ["CEU"] * 2 + ["CHB"] * 2
    assert genotypes.super_populations == ["AFR"] * 2 + ["EUR"] * 2 + ["EAS"] * 2
    assert genotypes.num_variants > 0
    assert set(np.unique(genotypes.calls)) <= {0, 1, 2}


def test_catalog_model_samples_only_the_chosen_populations():
    ts = simulate_stdpopsim("OutOfAfrica_3G09", 1, length=5e4, seed=1, populations=["CEU"])
    assert genotypes_from_tree_sequence(ts).populations == ["CEU"]
    with pytest.raises(ValueError, match="cannot sample populations"):
        simulate_stdpopsim("OutOfAfrica_3G09", 1, length=5e4, populations=["XYZ"])


def test_unknown_catalog_model_is_a_value_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown stdpopsim HomSap model.*OutOfAfrica_3G09"):
        simulate_stdpopsim("OutOfAfrica_9Z99", samples_per_population=2)


def test_bad_sizes_are_value_errors():
    with pytest.raises(ValueError, match="samples_per_population"):
        simulate_thousand_genomes(samples_per_population=0)
    with pytest.raises(ValueError, match="length"):
        simulate_thousand_genomes(samples_per_population=1, length=-5)


def _check_labels(path, genotypes):
    labels = read_labels(path)
    assert list(labels) == genotypes.samples
    expected = zip(genotypes.populations, genotypes.super_populations, strict=True)
    assert list(labels.values()) == list(expected)


def test_write_simulation_plink_and_vcf_read_back(tiny, tmp_path):
    _, genotypes = tiny
    paths = write_simulation(genotypes, tmp_path / "plink" / "sim", "plink")
    assert [p.name for p in paths] == ["sim.bed", "sim.bim", "sim.fam", "sim.labels.tsv"]
    back = read_plink(paths[0])
    np.testing.assert_array_equal(back.calls, genotypes.calls)
    assert back.samples == genotypes.samples
    _check_labels(paths[-1], genotypes)

    paths = write_simulation(genotypes, tmp_path / "sim", "vcf")
    assert [p.name for p in paths] == ["sim.vcf.gz", "sim.labels.tsv"]
    np.testing.assert_array_equal(read_vcf(paths[0]).calls, genotypes.calls)


def test_write_simulation_trees_keeps_the_sites_of_the_genotypes(tiny, tmp_path):
    ts, genotypes = tiny
    subset = genotypes.select_variants(np.arange(0, genotypes.num_variants, 3))
    paths = write_simulation(subset, tmp_path / "sim", "trees", ts=ts)
    assert [p.name for p in paths] == ["sim.trees", "sim.labels.tsv"]
    back = read_tree_sequence(paths[0])
    np.testing.assert_array_equal(back.calls, subset.calls)
    assert back.samples == subset.samples and back.populations == subset.populations
    with pytest.raises(ValueError, match="needs the tree sequence"):
        write_simulation(genotypes, tmp_path / "x", "trees")
    with pytest.raises(ValueError, match="format must be one of"):
        write_simulation(genotypes, tmp_path / "x", "bgen")  # type: ignore[arg-type]


def test_common_sites_keeps_exactly_the_sites_that_pass_the_maf_filter(tiny):
    ts, genotypes = tiny
    filtered = genotypes_from_tree_sequence(common_sites(ts, 0.05))
    frequency = genotypes.calls.sum(axis=0) / (2 * genotypes.num_samples)
    expected = np.minimum(frequency, 1 - frequency) >= 0.05
    kept = [v for v, keep in zip(genotypes.variants, expected, strict=True) if keep]
    assert filtered.variants == kept
    np.testing.assert_array_equal(filtered.calls, genotypes.calls[:, expected])
    with pytest.raises(ValueError, match="maf"):
        common_sites(ts, 0.7)
