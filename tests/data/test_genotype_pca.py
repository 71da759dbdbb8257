"""Genotype quality control and streamed PCA."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from diffvi.data.genotype_pca import allele_frequencies, genotype_pcs, quality_control
from diffvi.data.genotypes import MISSING, Genotypes


def make_genotypes(calls: np.ndarray) -> Genotypes:
    calls = np.asarray(calls, dtype=np.int8)
    n, m = calls.shape
    return Genotypes(calls, [f"s{i}" for i in range(n)], [f"v{j}" for j in range(m)])


def random_genotypes(n: int = 40, m: int = 300, seed: int = 0, missing: float = 0.0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, size=m)
    calls = rng.binomial(2, p, size=(n, m)).astype(np.int8)
    calls[rng.random((n, m)) < missing] = MISSING
    return make_genotypes(calls)


def align_signs(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    signs = np.sign(np.sum(ours * reference, axis=0))
    return ours * signs


# --------------------------------------------------------------------------------------------
# quality control

# Ten samples; columns: 0 monomorphic, 1 MAF 0.05, 2 MAF 0.5, 3 MAF 0.25, 4 all missing,
# 5 MAF 0.5 with 30 % missing, 6 MAF 0.1 (alt frequency 0.9), 7 all het (p = 0.5).
QC_CALLS = np.array(
    [
        [0, 1, 1, 2, -1, -1, 2, 1],
        [0, 0, 1, 1, -1, -1, 2, 1],
        [0, 0, 1, 0, -1, -1, 2, 1],
        [0, 0, 1, 0, -1, 1, 2, 1],
        [0, 0, 1, 0, -1, 1, 2, 1],
        [0, 0, 1, 0, -1, 1, 2, 1],
        [0, 0, 1, 1, -1, 1, 2, 1],
        [0, 0, 1, 1, -1, 1, 2, 1],
        [0, 0, 1, 0, -1, 1, 1, 1],
        [0, 0, 1, 0, -1, 1, 1, 1],
    ]
)


def test_allele_frequencies_ignore_missing_calls():
    p, missing_rate = allele_frequencies(make_genotypes(QC_CALLS), chunk_size=3)
    np.testing.assert_allclose(p[[0, 1, 2, 3, 5, 6, 7]], [0, 0.05, 0.5, 0.25, 0.5, 0.9, 0.5])
    assert np.isnan(p[4])
    np.testing.assert_allclose(missing_rate, [0, 0, 0, 0, 1, 0.3, 0, 0])


def test_quality_control_drops_monomorphic_rare_and_all_missing_variants():
    kept = quality_control(make_genotypes(QC_CALLS), maf=0.1, chunk_size=3)
    assert kept.variants == ["v2", "v3", "v5", "v6", "v7"]
    np.testing.assert_array_equal(kept.calls, QC_CALLS[:, [2, 3, 5, 6, 7]])


def test_quality_control_maf_zero_still_drops_monomorphic_variants():
    kept = quality_control(make_genotypes(QC_CALLS), maf=0.0)
    assert kept.variants == ["v1", "v2", "v3", "v5", "v6", "v7"]


def test_quality_control_max_missing_drops_badly_called_variants():
    kept = quality_control(make_genotypes(QC_CALLS), maf=0.1, max_missing=0.2)
    assert kept.variants == ["v2", "v3", "v6", "v7"]


def test_quality_control_thinning_keeps_every_kth_passing_variant():
    kept = quality_control(make_genotypes(QC_CALLS), maf=0.0, thin=2)
    assert kept.variants == ["v1", "v3", "v6"]


@pytest.mark.parametrize(
    "kwargs", [{"maf": -0.1}, {"maf": 0.6}, {"thin": 0}, {"thin": 1.5}, {"max_missing": 1.2}]
)
def test_quality_control_rejects_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        quality_control(make_genotypes(QC_CALLS), **kwargs)


# --------------------------------------------------------------------------------------------
# PCA


@pytest.mark.parametrize("chunk_size", [7, 5000])
def test_genotype_pcs_match_sklearn_pca_up_to_sign(chunk_size: int):
    genotypes = random_genotypes()
    scores, variance = genotype_pcs(genotypes, n_components=10, scale=1.0, chunk_size=chunk_size)
    pca = PCA(n_components=10, svd_solver="full")
    reference = pca.fit_transform(genotypes.calls.astype(np.float64))
    assert scores.shape == (40, 10) and scores.dtype == np.float32
    np.testing.assert_allclose(
        align_signs(scores, reference), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max()
    )
    np.testing.assert_allclose(variance, pca.explained_variance_, rtol=1e-6)


def test_genotype_pcs_standardized_match_sklearn_on_patterson_scaled_matrix():
    genotypes = random_genotypes(seed=1)
    x = genotypes.calls.astype(np.float64)
    p = x.mean(axis=0) / 2
    reference = PCA(n_components=5).fit_transform((x - 2 * p) / np.sqrt(2 * p * (1 - p)))
    scores, _ = genotype_pcs(genotypes, n_components=5, scale=1.0, standardize=True, chunk_size=50)
    np.testing.assert_allclose(
        align_signs(scores, reference), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max()
    )


def test_genotype_pcs_with_missing_calls_equal_pca_of_mean_imputed_matrix():
    genotypes = random_genotypes(seed=2, missing=0.1)
    x = genotypes.calls.astype(np.float64)
    x[genotypes.calls == MISSING] = np.nan
    imputed = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    reference = PCA(n_components=6).fit_transform(imputed)
    scores, _ = genotype_pcs(genotypes, n_components=6, scale=1.0, chunk_size=13)
    np.testing.assert_allclose(
        align_signs(scores, reference), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max()
    )


def test_genotype_pcs_divides_scores_by_scale_and_fixes_signs():
    genotypes = random_genotypes(seed=3)
    raw, _ = genotype_pcs(genotypes, n_components=4, scale=1.0)
    scaled, _ = genotype_pcs(genotypes, n_components=4)  # DDVI's default: divide by 30
    np.testing.assert_allclose(scaled, raw / 30, rtol=1e-6)
    largest = np.abs(raw).argmax(axis=0)
    assert (raw[largest, np.arange(4)] > 0).all()


def test_genotype_pcs_caps_components_at_n_minus_one_with_a_warning():
    genotypes = random_genotypes(n=8, m=50)
    with pytest.warns(UserWarning, match="at most"):
        scores, variance = genotype_pcs(genotypes, n_components=1000)
    assert scores.shape == (8, 7) and variance.shape == (7,)
    assert np.all(np.diff(variance) <= 0)


def test_genotype_pcs_rejects_invalid_arguments():
    genotypes = random_genotypes(n=8, m=50)
    with pytest.raises(ValueError, match="n_components"):
        genotype_pcs(genotypes, n_components=0)
    with pytest.raises(ValueError, match="scale"):
        genotype_pcs(genotypes, scale=0.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        genotype_pcs(make_genotypes(np.zeros((1, 3))))
