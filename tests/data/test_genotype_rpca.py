"""Streaming randomised PCA: agreement with the exact PCA, independence of the window size,
the exact path's filter and standardisation, reads only in windows, errors, and Dask."""

import pickle

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from diffvi.data.genotype_pca import centred_block, genotype_pcs, quality_control
from diffvi.data.genotype_rpca import (
    AUTO_SAMPLES,
    choose_pca,
    default_chunk_size,
    randomized_pcs,
    select_variants,
)
from diffvi.data.genotypes import MISSING, Genotypes


def in_memory(calls: np.ndarray) -> Genotypes:
    """Calls ``[N, M]`` as genotypes in memory (a ``VariantBlocks``)."""
    n, m = calls.shape
    return Genotypes(calls, [f"s{i}" for i in range(n)], [f"v{j}" for j in range(m)])


def structured_genotypes(
    n: int = 240, m: int = 3000, populations: int = 5, seed: int = 0, missing: float = 0.01
) -> Genotypes:
    """Calls of ``populations`` groups with their own allele frequencies (Balding-Nichols,
    F_ST 0.1): a rank ``populations - 1`` structure plus binomial noise, some rare variants
    and missing calls."""
    rng = np.random.default_rng(seed)
    ancestral = rng.uniform(0.02, 0.98, size=m)
    f = 0.1
    a, b = ancestral * (1 - f) / f, (1 - ancestral) * (1 - f) / f
    frequencies = rng.beta(a, b, size=(populations, m))
    group = np.arange(n) % populations
    calls = rng.binomial(2, frequencies[group]).astype(np.int8)
    calls[:, :50] = (rng.random((n, 50)) < 0.004).astype(np.int8)  # rare: maf < 0.01 mostly
    calls[rng.random((n, m)) < missing] = MISSING
    return Genotypes(
        calls,
        [f"s{i}" for i in range(n)],
        [f"v{j}" for j in range(m)],
        populations=[f"p{g}" for g in group],
    )


def max_angle_degrees(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(subspace_angles(a.astype(np.float64), b.astype(np.float64)).max()))


class WindowedReader:
    """A reader that refuses any read wider than ``limit`` columns and records each read."""

    def __init__(self, calls: np.ndarray, limit: int) -> None:
        self.calls, self.limit, self.reads = calls, limit, []

    @property
    def num_samples(self) -> int:
        return self.calls.shape[0]

    @property
    def num_variants(self) -> int:
        return self.calls.shape[1]

    def read(self, start: int, stop: int) -> np.ndarray:
        assert 0 < stop - start <= self.limit, (start, stop)
        self.reads.append((start, stop))
        return self.calls[:, start:stop].copy()


@pytest.fixture(scope="module")
def cohort() -> Genotypes:
    return structured_genotypes()


def test_top_subspace_and_variances_match_the_exact_pca(cohort):
    k = 4  # the structure of 5 populations
    kept = quality_control(cohort, maf=0.01)
    exact, exact_var = genotype_pcs(kept, n_components=k, scale=1.0)
    blocks = cohort
    selection = select_variants(blocks, maf=0.01)
    scores, var = randomized_pcs(
        blocks, k, scale=1.0, selection=selection, oversampling=10, n_iter=3, dtype="float64"
    )
    assert scores.shape == (cohort.num_samples, k) and var.shape == (k,)
    assert max_angle_degrees(exact, scores) < 0.5
    np.testing.assert_allclose(var, exact_var, rtol=1e-3)  # within 0.1 %
    assert np.all(var <= exact_var * (1 + 1e-9))  # the Nyström values never exceed the exact
    # same sign convention: each column's largest entry positive, so columns agree one to one
    np.testing.assert_allclose(scores, exact, atol=2e-2 * np.abs(exact).max())


def test_float32_windows_agree_with_float64(cohort):
    blocks = cohort
    single, var32 = randomized_pcs(blocks, 4, n_iter=3, dtype="float32")
    double, var64 = randomized_pcs(blocks, 4, n_iter=3, dtype="float64")
    np.testing.assert_allclose(var32, var64, rtol=1e-5)
    np.testing.assert_allclose(single, double, atol=1e-4 * np.abs(double).max())


def test_window_size_does_not_change_the_result(cohort):
    blocks = cohort
    selection = select_variants(blocks, maf=0.05, thin=2, chunk_size=7)
    runs = [
        randomized_pcs(blocks, 6, selection=selection, n_iter=2, dtype="float64", chunk_size=c)
        for c in (7, 256, cohort.num_variants)
    ]
    for scores, var in runs[1:]:
        np.testing.assert_allclose(scores, runs[0][0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(var, runs[0][1], rtol=1e-10)
    assert select_variants(blocks, maf=0.05, thin=2, chunk_size=1000).index.tolist() == (
        selection.index.tolist()
    )


def test_the_same_seed_gives_the_same_numbers_and_another_seed_the_same_subspace(cohort):
    blocks = cohort
    a = randomized_pcs(blocks, 4, n_iter=3, seed=3)
    b = randomized_pcs(blocks, 4, n_iter=3, seed=3)
    c = randomized_pcs(blocks, 4, n_iter=3, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert max_angle_degrees(a[0], c[0]) < 1.0


@pytest.mark.parametrize("standardize", [False, True])
def test_filter_and_standardisation_are_the_exact_paths(standardize):
    # With l = k + p = N the sketch spans every sample direction, so the Nyström step is exact:
    # any difference in the variants kept or in their centring/scaling would show.
    cohort = structured_genotypes(n=40, m=600, seed=2, missing=0.05)
    kept = quality_control(cohort, maf=0.05, thin=3)
    exact, exact_var = genotype_pcs(kept, n_components=30, standardize=standardize)
    blocks = cohort
    selection = select_variants(blocks, maf=0.05, thin=3, chunk_size=64)
    assert [cohort.variants[i] for i in selection.index] == kept.variants
    scores, var = randomized_pcs(
        blocks, 30, selection=selection, oversampling=10, n_iter=1, dtype="float64",
        standardize=standardize, chunk_size=50,
    )  # fmt: skip
    np.testing.assert_allclose(var, exact_var, rtol=1e-8)
    np.testing.assert_allclose(scores[:, :5], exact[:, :5], atol=1e-5)


def test_the_calls_are_only_ever_read_in_windows(cohort):
    chunk = 128
    reader = WindowedReader(cohort.calls, limit=chunk)
    selection = select_variants(reader, maf=0.01, chunk_size=chunk)
    counting_reads = len(reader.reads)
    randomized_pcs(reader, 4, selection=selection, n_iter=3, chunk_size=chunk)
    windows = -(-cohort.num_variants // chunk)
    assert counting_reads == windows
    assert len(reader.reads) == windows * (1 + 3)  # one read of each window per pass


def test_default_window_takes_about_256_mib():
    assert default_chunk_size(100_000) == 536  # 100k × 536 × (1 + 4) bytes ≈ 256 MiB
    assert default_chunk_size(10) == 16384 and default_chunk_size(10**8) == 64


def test_invalid_arguments_are_one_line_errors(cohort):
    blocks = in_memory(cohort.calls[:30])
    with pytest.raises(ValueError, match=r"n_components \+ oversampling = 25 \+ 10 = 35 <= "):
        randomized_pcs(blocks, 25, oversampling=10)
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        randomized_pcs(blocks, 2, n_iter=0)
    with pytest.raises(ValueError, match="dtype must be"):
        randomized_pcs(blocks, 2, dtype="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        randomized_pcs(blocks, 2, chunk_size=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        randomized_pcs(in_memory(cohort.calls[:1]), 1)
    with pytest.raises(ValueError, match="maf must be in"):
        select_variants(blocks, maf=0.7)


def test_auto_takes_the_randomized_pca_for_many_samples_or_too_little_memory():
    assert choose_pca("auto", AUTO_SAMPLES, 10**5, memory_bytes=10**12) == "exact"
    assert choose_pca("auto", AUTO_SAMPLES + 1, 10**5, memory_bytes=10**12) == "randomized"
    assert choose_pca("auto", 10_000, 10**6, memory_bytes=8 * 10**9) == "randomized"
    assert choose_pca("exact", 10**6, 10) == "exact"
    with pytest.raises(ValueError, match="pca must be one of"):
        choose_pca("fast", 10, 10)


def test_array_blocks_pickle():
    blocks = in_memory(np.zeros((3, 4), dtype=np.int8))
    assert pickle.loads(pickle.dumps(blocks)).read(1, 3).shape == (3, 2)


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_dask_local_cluster_gives_the_local_numbers(cohort, tmp_path, processes):
    # Two workers (threads, or processes that unpickle the reader and reopen the .bed).
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("bed_reader")
    from diffvi.data.genotype_io import PlinkBlocks, write_plink
    from diffvi.data.genotype_rpca import dask_client

    blocks = PlinkBlocks(write_plink(cohort, tmp_path / "cohort"))
    selection = select_variants(blocks, maf=0.01, chunk_size=200)
    local = randomized_pcs(
        blocks, 4, selection=selection, n_iter=2, dtype="float64", chunk_size=200
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None
    ) as cluster, dask_client(cluster.scheduler_address) as client:  # fmt: skip
        assert len(client.scheduler_info()["workers"]) == 2
        remote_selection = select_variants(blocks, maf=0.01, chunk_size=200, client=client)
        np.testing.assert_array_equal(remote_selection.index, selection.index)
        np.testing.assert_array_equal(remote_selection.frequency, selection.frequency)
        remote = randomized_pcs(
            blocks, 4, selection=selection, n_iter=2, dtype="float64", chunk_size=200,
            client=client,
        )  # fmt: skip
    np.testing.assert_allclose(remote[0], local[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(remote[1], local[1], rtol=1e-10)


def test_dask_client_refuses_unknown_schedulers():
    from diffvi.data.genotype_rpca import dask_client

    assert dask_client("local") is None
    with pytest.raises(ValueError, match="scheduler must be 'local', 'dask-local' or"):
        dask_client("spark://host:7077")


def test_plink_windows_decode_into_one_reused_buffer(cohort, tmp_path):
    # read(out=) fills a caller's buffer (garbage before) with the calls read() returns, for
    # all rows and for a subset; the passes keep one buffer for every window, and their
    # numbers are bit-identical to reading each window into a fresh array.
    pytest.importorskip("bed_reader")
    from diffvi.data.genotype_io import PlinkBlocks, write_plink
    from diffvi.data.genotype_rpca import _Buffers, _gram_product, _selected_windows

    blocks = PlinkBlocks(write_plink(cohort, tmp_path / "cohort"))
    for reader in (blocks, blocks.subset(np.arange(0, cohort.num_samples, 3))):
        out = np.full((reader.num_samples, 300), 99, dtype=np.int8, order="F")
        for start, stop in ((0, 300), (1000, 1123)):
            calls = reader.read(start, stop, out=out)
            assert np.shares_memory(calls, out)
            np.testing.assert_array_equal(calls, reader.read(start, stop))
    np.testing.assert_array_equal(blocks.read(0, cohort.num_variants), cohort.calls)
    out = np.full((cohort.num_samples, 64), 99, dtype=np.int8, order="C")  # public read + copy
    np.testing.assert_array_equal(blocks.read(10, 74, out=out), cohort.calls[:, 10:74])

    selection = select_variants(blocks, maf=0.01, chunk_size=256)
    windows = _selected_windows(selection, 256)
    assert any(w.columns is not None for w in windows)  # kept columns go through a buffer too
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((cohort.num_samples, 12)))[0]
    q = q.astype(np.float32)
    buffers = _Buffers()
    reused = _gram_product(blocks, windows[:1], q, False, buffers)
    arrays = dict(buffers._arrays)
    reused += _gram_product(blocks, windows[1:], q, False, buffers)
    assert all(buffers._arrays[name] is a for name, a in arrays.items())  # nothing reallocated
    fresh = np.zeros_like(reused)
    for w in windows:  # the unbuffered formula, a new array for every window
        calls = blocks.read(w.start, w.stop)
        calls = calls if w.columns is None else calls[:, w.columns]
        x = centred_block(calls, w.frequency, False, np.float32)
        fresh += x @ (x.T @ q)
    np.testing.assert_array_equal(reused, fresh)
    np.testing.assert_array_equal(
        randomized_pcs(blocks, 4, selection=selection, n_iter=2, chunk_size=256)[0],
        randomized_pcs(cohort, 4, selection=selection, n_iter=2,
                       chunk_size=256)[0],
    )  # fmt: skip
