"""Genotype readers and writers (PLINK, VCF, tree sequences) and label files."""

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from diffvi.data.genotype_io import (
    PlinkBlocks,
    attach_labels,
    extra_labels,
    read_genotypes,
    read_labels,
    read_plink,
    read_tree_sequence,
    read_vcf,
    write_labels,
    write_plink,
    write_vcf,
)
from diffvi.data.genotypes import MISSING, Genotypes

pytest.importorskip("bed_reader")
pytest.importorskip("cyvcf2")

M_ = MISSING

# --------------------------------------------------------------------------------------------
# PLINK

# Five samples (not a multiple of 4) × three variants, counting the .bim second allele.
HAND_CALLS = np.array(
    [
        [0, 2, 1],
        [1, 2, 0],
        [2, M_, 0],
        [M_, 0, 0],
        [2, 1, M_],
    ],
    dtype=np.int8,
)
# 2-bit codes: 00 hom first allele (0), 01 missing, 10 het (1), 11 hom second allele (2);
# sample 0 in the lowest bits; each variant takes ceil(5 / 4) = 2 bytes, the last padded.
HAND_BED = bytes(
    [0x6C, 0x1B, 0x01]  # magic, SNP-major
    + [0b01_11_10_00, 0b000000_11]  # variant 0: samples 3,2,1,0 | pad, sample 4
    + [0b00_01_11_11, 0b000000_10]  # variant 1
    + [0b00_00_00_10, 0b000000_01]  # variant 2
)


def write_hand_plink(prefix: Path) -> None:
    prefix.with_suffix(".bed").write_bytes(HAND_BED)
    prefix.with_suffix(".fam").write_text("".join(f"fam{i} s{i} 0 0 0 -9\n" for i in range(5)))
    prefix.with_suffix(".bim").write_text(
        "1\trs1\t0\t100\tA\tG\n1\t.\t0\t200\tC\tT\n2\trs3\t0\t300\tG\tA\n"
    )


def test_read_plink_decodes_hand_written_bed_bits_with_padding_and_missing(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    genotypes = read_plink(tmp_path / "hand.bed")
    np.testing.assert_array_equal(genotypes.calls, HAND_CALLS)
    assert genotypes.calls.dtype == np.int8
    assert genotypes.samples == [f"s{i}" for i in range(5)]
    assert genotypes.variants == ["rs1", "1:200", "rs3"]


def test_read_plink_accepts_the_prefix_as_well_as_the_bed(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    np.testing.assert_array_equal(read_plink(tmp_path / "hand").calls, HAND_CALLS)


def test_read_plink_uses_fid_iid_when_iids_repeat(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    (tmp_path / "hand.fam").write_text("".join(f"f{i} x{i % 2} 0 0 0 -9\n" for i in range(5)))
    assert read_plink(tmp_path / "hand").samples == [f"f{i}:x{i % 2}" for i in range(5)]


def random_genotypes(n: int = 7, m: int = 11, seed: int = 0, missing: float = 0.1) -> Genotypes:
    rng = np.random.default_rng(seed)
    calls = rng.integers(0, 3, size=(n, m)).astype(np.int8)
    calls[rng.random((n, m)) < missing] = MISSING
    return Genotypes(calls, [f"s{i}" for i in range(n)], [f"1:{10 * (j + 1)}" for j in range(m)])


def test_write_plink_then_read_plink_round_trips_calls_samples_and_variants(tmp_path: Path):
    genotypes = random_genotypes()
    genotypes.populations = ["A", "B", "A", "B", "A", "B", "A"]
    bed = write_plink(genotypes, tmp_path / "sub" / "out")
    assert bed == tmp_path / "sub" / "out.bed"
    back = read_plink(bed)
    np.testing.assert_array_equal(back.calls, genotypes.calls)
    assert back.samples == genotypes.samples
    assert back.variants == genotypes.variants
    fam = (tmp_path / "sub" / "out.fam").read_text().split()
    assert fam[:2] == ["A", "s0"]  # FID = population, IID = sample
    bim = (tmp_path / "sub" / "out.bim").read_text().splitlines()[1].split()
    assert bim[0] == "1" and bim[3] == "20"  # chromosome and position from the id "1:20"


def test_plink_blocks_read_windows_of_the_calls_as_read_plink_does(tmp_path: Path):
    import pickle

    write_hand_plink(tmp_path / "hand")
    whole = read_plink(tmp_path / "hand.bed")
    blocks = PlinkBlocks(tmp_path / "hand")
    assert (blocks.num_samples, blocks.num_variants) == (5, 3)
    assert blocks.samples == whole.samples and blocks.variants == whole.variants
    np.testing.assert_array_equal(blocks.read(1, 3), whole.calls[:, 1:3])  # MISSING is -1
    rows = blocks.subset(np.array([4, 0, 2]))
    assert rows.samples == ["s4", "s0", "s2"]
    np.testing.assert_array_equal(rows.read(0, 2), HAND_CALLS[[4, 0, 2], :2])
    shipped = pickle.loads(pickle.dumps(rows))  # without its open file: reopened on a read
    np.testing.assert_array_equal(shipped.read(2, 3), HAND_CALLS[[4, 0, 2], 2:])


def test_write_plink_uses_chromosome_1_and_positions_1_to_m_for_plain_ids(tmp_path: Path):
    genotypes = random_genotypes(n=3, m=3)
    genotypes.variants = ["rsA", "rsB", "rsC"]
    write_plink(genotypes, tmp_path / "plain")
    rows = [line.split() for line in (tmp_path / "plain.bim").read_text().splitlines()]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("1", "rsA", "1"),
        ("1", "rsB", "2"),
        ("1", "rsC", "3"),
    ]


def test_read_plink_rejects_fam_bim_count_mismatch(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    with open(tmp_path / "hand.bim", "a") as file:
        file.write("2\trs4\t0\t400\tG\tA\n")
    with pytest.raises(ValueError, match="disagree"):
        read_plink(tmp_path / "hand")


def test_read_plink_rejects_extra_fam_line_that_changes_bytes_per_variant(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    (tmp_path / "hand.fam").write_text("".join(f"f s{i} 0 0 0 -9\n" for i in range(9)))
    with pytest.raises(ValueError, match=r"9 samples .* 3 variants"):
        read_plink(tmp_path / "hand")


def test_read_plink_reports_truncated_bed(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    (tmp_path / "hand.bed").write_bytes(HAND_BED[:-1])
    with pytest.raises(ValueError, match=r"truncated") as info:
        read_plink(tmp_path / "hand")
    assert "8 bytes" in str(info.value) and "= 9 bytes" in str(info.value)


def test_read_plink_rejects_wrong_magic_bytes(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    (tmp_path / "hand.bed").write_bytes(b"\x00\x00\x01" + HAND_BED[3:])
    with pytest.raises(ValueError, match="magic"):
        read_plink(tmp_path / "hand")


def test_read_plink_rejects_individual_major_bed(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    (tmp_path / "hand.bed").write_bytes(HAND_BED[:2] + b"\x00" + HAND_BED[3:])
    with pytest.raises(ValueError, match="individual-major"):
        read_plink(tmp_path / "hand")


def test_read_plink_names_the_missing_bim(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    (tmp_path / "hand.bim").unlink()
    with pytest.raises(FileNotFoundError, match=r"hand\.bim"):
        read_plink(tmp_path / "hand.bed")


# --------------------------------------------------------------------------------------------
# VCF

VCF_TEXT = (
    "##fileformat=VCFv4.2\n"
    "##contig=<ID=1,length=1000>\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3\ts4\n"
    "1\t10\trs1\tA\tC\t.\tPASS\t.\tGT\t0/0\t0|1\t1/1\t./.\n"
    "1\t20\t.\tA\tC\t.\tPASS\t.\tGT\t./1\t0/.\t1|0\t0/0\n"
    "1\t30\trs3\tA\tC,G\t.\tPASS\t.\tGT\t0/2\t0/1\t1/1\t./.\n"
    "1\t40\trs4\tG\tT\t.\tPASS\t.\tGT\t1/1\t0/1\t0/0\t1|1\n"
)
VCF_CALLS = np.array([[0, M_, 2], [1, M_, 1], [2, 1, 0], [M_, 0, 2]], dtype=np.int8)


def test_read_vcf_counts_alt_alleles_and_marks_half_missing_calls_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "calls.vcf"
    path.write_text(VCF_TEXT)
    with caplog.at_level(logging.WARNING, logger="diffvi.data.genotype_io"):
        genotypes = read_vcf(path)
    np.testing.assert_array_equal(genotypes.calls, VCF_CALLS)
    assert genotypes.samples == ["s1", "s2", "s3", "s4"]
    assert genotypes.variants == ["rs1", "1:20", "rs4"]  # multi-allelic rs3 skipped
    assert "skipped 1 multi-allelic" in caplog.text


def test_read_vcf_reads_gzip_compressed_files(tmp_path: Path):
    path = tmp_path / "calls.vcf.gz"
    with gzip.open(path, "wt") as file:
        file.write(VCF_TEXT)
    genotypes = read_genotypes(path)
    np.testing.assert_array_equal(genotypes.calls, VCF_CALLS)
    assert genotypes.variants == ["rs1", "1:20", "rs4"]


def test_read_vcf_rejects_haploid_calls(tmp_path: Path):
    path = tmp_path / "haploid.vcf"
    path.write_text(VCF_TEXT.replace("0/0\t0|1\t1/1\t./.", "0\t1\t1\t."))
    with pytest.raises(ValueError, match="diploid"):
        read_vcf(path)


def _random_bytes(size: int = 5000) -> bytes:
    return np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()


NOT_VCF = {
    "random.vcf": _random_bytes(),
    "random.vcf.gz": _random_bytes(),
    "random-after-gzip-magic.vcf.gz": b"\x1f\x8b" + _random_bytes(),
    "empty.vcf": b"",
    "notes.vcf": b"sample\tpopulation\nHG00096\tGBR\n",
    "notes.vcf.gz": gzip.compress(b"just some text\n"),
    "empty.vcf.gz": gzip.compress(b""),
}


@pytest.mark.parametrize("name", sorted(NOT_VCF))
def test_read_vcf_of_a_file_that_is_not_a_vcf_says_so_in_one_line(tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_bytes(NOT_VCF[name])
    with pytest.raises(ValueError, match=f"{path} is not a VCF file: ") as info:
        read_genotypes(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "damage", ["gzip cut in the header", "gzip cut in the records", "bad record", "short record"]
)
def test_read_vcf_of_a_damaged_file_names_the_file(tmp_path: Path, damage: str):
    calls = np.random.default_rng(0).choice(["0/0", "0/1", "1/1"], (20000, 2))
    rows = "".join(
        f"1\t{i + 1}\t.\tA\tG\t.\tPASS\t.\tGT\t{a}\t{b}\n" for i, (a, b) in enumerate(calls)
    )
    header = VCF_TEXT.split("#CHROM")[0] + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\t"
    header += "FORMAT\ts1\ts2\n"
    if damage.startswith("gzip"):
        data = gzip.compress((header + rows).encode())
        path = tmp_path / "cut.vcf.gz"
        path.write_bytes(data[: 100 if "header" in damage else len(data) // 2])
    else:
        bad = "1\tx\n" if damage == "bad record" else "1\t5\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\n"
        path = tmp_path / "bad.vcf"
        path.write_text(header + rows[:500] + bad + rows[500:1000])
    with pytest.raises(ValueError, match=f"{path} is a damaged VCF file: ") as info:
        read_vcf(path)
    assert "\n" not in str(info.value)
    if damage == "gzip cut in the records":
        assert "record" in str(info.value)


def test_read_tree_sequence_of_random_bytes_says_it_is_not_a_tree_sequence(tmp_path: Path):
    pytest.importorskip("tskit")
    path = tmp_path / "random.trees"
    path.write_bytes(_random_bytes())
    with pytest.raises(ValueError, match=f"{path} is not a tskit tree sequence file"):
        read_genotypes(path)


@pytest.mark.parametrize("name", ["out.vcf", "out.vcf.gz"])
def test_write_vcf_then_read_vcf_round_trips(tmp_path: Path, name: str):
    genotypes = random_genotypes(seed=3)
    path = write_vcf(genotypes, tmp_path / name)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    back = read_vcf(path)
    np.testing.assert_array_equal(back.calls, genotypes.calls)
    assert back.samples == genotypes.samples
    assert back.variants == genotypes.variants


def test_write_vcf_writes_unphased_gt_strings(tmp_path: Path):
    genotypes = Genotypes(np.array([[0, 1, 2, M_]], dtype=np.int8), ["x"], ["a", "b", "c", "d"])
    lines = write_vcf(genotypes, tmp_path / "o.vcf").read_text().splitlines()
    assert lines[0] == "##fileformat=VCFv4.2"
    assert [line.split("\t")[-1] for line in lines[-4:]] == ["0/0", "0/1", "1/1", "./."]
    assert [line.split("\t")[1] for line in lines[-4:]] == ["1", "2", "3", "4"]


# --------------------------------------------------------------------------------------------
# tree sequences


@pytest.fixture(scope="module")
def tree_sequence_file(tmp_path_factory: pytest.TempPathFactory):
    msprime = pytest.importorskip("msprime")
    demography = msprime.Demography.island_model([1000, 1000], migration_rate=1e-3)
    demography.populations[0].name = "A"
    demography.populations[1].name = "B"
    ts = msprime.sim_ancestry(
        samples={"A": 5, "B": 5},
        demography=demography,
        sequence_length=1e5,
        recombination_rate=1e-8,
        random_seed=1,
    )
    ts = msprime.sim_mutations(ts, rate=2e-7, random_seed=1)
    path = tmp_path_factory.mktemp("ts") / "sim.trees"
    ts.dump(path)
    return path, ts


def test_read_tree_sequence_sums_each_individuals_two_haplotypes(tree_sequence_file):
    path, ts = tree_sequence_file
    genotypes = read_tree_sequence(path)
    assert genotypes.num_samples == 10
    assert genotypes.populations == ["A"] * 5 + ["B"] * 5
    assert genotypes.samples == [f"ind_{i}" for i in range(10)]
    biallelic = [v.site.id for v in ts.variants() if len(v.alleles) == 2]
    assert 0 < len(biallelic) <= ts.num_sites
    haplotypes = ts.genotype_matrix()[biallelic].T  # [20 nodes, M]
    nodes = np.array([ts.individual(i).nodes for i in range(10)])  # [10, 2]
    expected = haplotypes[nodes[:, 0]] + haplotypes[nodes[:, 1]]
    np.testing.assert_array_equal(genotypes.calls, expected)
    positions = ts.tables.sites.position[biallelic]
    assert genotypes.variants == [f"1:{int(x)}" for x in positions]


def test_read_tree_sequence_blocks_give_the_same_calls(tree_sequence_file):
    path, _ = tree_sequence_file
    np.testing.assert_array_equal(
        read_tree_sequence(path, block_size=3).calls, read_genotypes(path).calls
    )


def test_read_tree_sequence_rejects_a_tree_sequence_without_individuals(tmp_path: Path):
    msprime = pytest.importorskip("msprime")
    ts = msprime.sim_ancestry(samples=4, ploidy=1, sequence_length=100, random_seed=2)
    tables = ts.dump_tables()
    tables.nodes.individual = np.full_like(tables.nodes.individual, -1)
    tables.individuals.clear()
    tables.tree_sequence().dump(tmp_path / "noind.trees")
    with pytest.raises(ValueError, match="no individuals"):
        read_tree_sequence(tmp_path / "noind.trees")


def test_read_tree_sequence_rejects_haploid_individuals(tmp_path: Path):
    msprime = pytest.importorskip("msprime")
    ts = msprime.sim_ancestry(samples=4, ploidy=1, sequence_length=100, random_seed=2)
    ts.dump(tmp_path / "haploid.trees")
    with pytest.raises(ValueError, match="diploid"):
        read_tree_sequence(tmp_path / "haploid.trees")


# --------------------------------------------------------------------------------------------
# dispatch


def test_read_genotypes_dispatches_plink_prefix_and_bim(tmp_path: Path):
    write_hand_plink(tmp_path / "hand")
    np.testing.assert_array_equal(read_genotypes(tmp_path / "hand").calls, HAND_CALLS)
    np.testing.assert_array_equal(read_genotypes(tmp_path / "hand.bim").calls, HAND_CALLS)


def test_read_genotypes_rejects_unknown_suffix(tmp_path: Path):
    path = tmp_path / "calls.csv"
    path.write_text("x")
    with pytest.raises(ValueError, match="cannot tell the format"):
        read_genotypes(path)


# --------------------------------------------------------------------------------------------
# labels

PANEL = (
    "sample\tpop\tsuper_pop\tgender\t\t\n"
    "HG00096\tGBR\tEUR\tmale\n"
    "HG00097\tGBR\tEUR\tfemale\n"
    "NA18486\tYRI\tAFR\tmale\n"
)


def test_read_labels_parses_the_1000_genomes_panel_file(tmp_path: Path):
    path = tmp_path / "integrated_call_samples_v3.20130502.ALL.panel"
    path.write_text(PANEL)
    assert read_labels(path) == {
        "HG00096": ("GBR", "EUR"),
        "HG00097": ("GBR", "EUR"),
        "NA18486": ("YRI", "AFR"),
    }


def test_read_labels_parses_space_separated_panel(tmp_path: Path):
    path = tmp_path / "panel.txt"
    path.write_text(PANEL.replace("\t\t\n", "\n").replace("\t", "  "))
    assert read_labels(path)["NA18486"] == ("YRI", "AFR")


def test_read_labels_parses_csv_with_iid_and_population_and_no_super_population(tmp_path: Path):
    path = tmp_path / "labels.csv"
    path.write_text("IID,Population\na,X\nb,Y\n")
    assert read_labels(path) == {"a": ("X", None), "b": ("Y", None)}


def test_read_labels_rejects_file_without_population_column(tmp_path: Path):
    path = tmp_path / "labels.tsv"
    path.write_text("sample\tgender\na\tmale\n")
    with pytest.raises(ValueError, match="no population column"):
        read_labels(path)


def test_read_labels_rejects_duplicate_samples(tmp_path: Path):
    path = tmp_path / "labels.tsv"
    path.write_text("sample\tpop\na\tX\na\tY\n")
    with pytest.raises(ValueError, match="more than once"):
        read_labels(path)


def test_write_labels_then_read_labels_round_trips(tmp_path: Path):
    genotypes = random_genotypes(n=3, m=2)
    genotypes.populations = ["P1", "P2", "P1"]
    genotypes.super_populations = ["S1", "S2", "S1"]
    path = write_labels(genotypes, tmp_path / "labels.tsv")
    assert path.read_text().splitlines()[0] == "sample\tpopulation\tsuper_population"
    back = attach_labels(random_genotypes(n=3, m=2), read_labels(path))
    assert back.populations == genotypes.populations
    assert back.super_populations == genotypes.super_populations


def test_attach_labels_sets_populations_in_row_order():
    genotypes = random_genotypes(n=3, m=2)
    labels = {"s2": ("C", "Z"), "s0": ("A", "X"), "s1": ("B", "Y")}
    labelled = attach_labels(genotypes, labels)
    assert labelled.populations == ["A", "B", "C"]
    assert labelled.super_populations == ["X", "Y", "Z"]
    np.testing.assert_array_equal(labelled.calls, genotypes.calls)


def test_attach_labels_rejects_labelled_samples_missing_from_genotypes():
    genotypes = random_genotypes(n=3, m=2)
    labels = {f"s{i}": ("A", None) for i in range(3)}
    labels.update({f"extra{i}": ("B", None) for i in range(7)})
    with pytest.raises(ValueError, match=r"7 labelled samples are not in the genotypes") as info:
        attach_labels(genotypes, labels)
    assert "'extra0'" in str(info.value) and "'extra5'" not in str(info.value)
    assert "ignore_extra_labels=True" in str(info.value)
    assert "--ignore-extra-labels" in str(info.value)


def test_attach_labels_drops_labels_of_missing_samples_when_asked_to_ignore_them():
    genotypes = random_genotypes(n=3, m=2)
    labels = {"extra0": ("B", "Y"), "s2": ("C", "Z"), "s0": ("A", "X"), "s1": ("A", "X")}
    labels["extra1"] = ("B", "Y")
    assert extra_labels(genotypes, labels) == ["extra0", "extra1"]
    labelled = attach_labels(genotypes, labels, ignore_extra_labels=True)
    assert labelled.samples == genotypes.samples
    assert labelled.populations == ["A", "A", "C"]
    assert labelled.super_populations == ["X", "X", "Z"]
    np.testing.assert_array_equal(labelled.calls, genotypes.calls)
    # with drop_unlabelled too: a panel and a genotype file that overlap in part
    del labels["s1"]
    both = attach_labels(genotypes, labels, drop_unlabelled=True, ignore_extra_labels=True)
    assert both.samples == ["s0", "s2"] and both.populations == ["A", "C"]


def test_attach_labels_rejects_unlabelled_samples_unless_asked_to_drop_them():
    genotypes = random_genotypes(n=4, m=2)
    labels = {"s0": ("A", None), "s2": ("B", None)}
    with pytest.raises(ValueError, match="2 genotype samples have no label") as info:
        attach_labels(genotypes, labels)
    assert "drop_unlabelled=True" in str(info.value) and "--drop-unlabelled" in str(info.value)
    kept = attach_labels(genotypes, labels, drop_unlabelled=True)
    assert kept.samples == ["s0", "s2"]
    assert kept.populations == ["A", "B"] and kept.super_populations is None
    np.testing.assert_array_equal(kept.calls, genotypes.calls[[0, 2]])
