"""DDVI's latent-space metrics: kNN accuracy, latent NLL (KDE), clustering scores, GMM, MMD."""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from sklearn.neighbors import KernelDensity

from diffvi.evaluation import (
    DDVI_LATENT_NLL_BANDWIDTHS,
    clustering_scores,
    gmm_cluster,
    kde_log_density,
    knn_accuracy,
    knn_accuracy_loo,
    latent_nll,
    mmd,
)


def normal(n: int, d: int = 2, seed: int = 0, shift: float = 0.0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


def blobs(n_per: int, seed: int = 0, spread: float = 0.1):
    """Three tight 2-D blobs at distance ≥ 4 from each other, labels 0, 1, 2."""
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    z = torch.cat([normal(n_per, seed=seed + i, scale=spread) + c for i, c in enumerate(centres)])
    return z, torch.arange(3).repeat_interleave(n_per)


# ----------------------------------------------------------------------------- kNN


def test_knn_accuracy_is_one_on_well_separated_labelled_clusters():
    train_z, train_y = blobs(50, seed=0)
    test_z, test_y = blobs(30, seed=10)
    assert knn_accuracy(train_z, train_y, test_z, test_y, k=20) == 1.0


def test_knn_accuracy_is_near_chance_on_random_labels():
    rng = np.random.default_rng(0)
    train_z, test_z = rng.normal(size=(2000, 2)), rng.normal(size=(1000, 2))
    train_y, test_y = rng.integers(0, 5, 2000), rng.integers(0, 5, 1000)
    # chance = 0.2; the test accuracy's sd is ~0.013
    assert abs(knn_accuracy(train_z, train_y, test_z, test_y) - 0.2) < 0.06


def test_knn_accuracy_accepts_numpy_and_torch_alike():
    train_z, train_y = blobs(20, seed=0, spread=2.0)
    test_z, test_y = blobs(20, seed=5, spread=2.0)
    a = knn_accuracy(train_z, train_y, test_z, test_y, k=5)
    b = knn_accuracy(train_z.numpy(), train_y.numpy(), test_z.numpy(), test_y.numpy(), k=5)
    assert a == b


# ----------------------------------------------------------------------------- latent NLL


def test_kde_log_density_equals_the_direct_sum_and_sklearn_kernel_density():
    data, points, h = normal(300, d=3, seed=0), normal(200, d=3, seed=1), 0.4
    ours = kde_log_density(points, data, h, chunk_size=37)
    d2 = ((points[:, None] - data[None]) ** 2).sum(-1)
    log_norm = math.log(300) + 1.5 * math.log(2 * math.pi * h * h)  # N (2π h²)^(D/2), D = 3
    direct = torch.logsumexp(-d2 / (2 * h * h), 1) - log_norm
    torch.testing.assert_close(ours, direct, rtol=0, atol=1e-12)
    # sklearn's tree sums are exact only to ~1e-9 in the far tail
    ref = KernelDensity(kernel="gaussian", bandwidth=h).fit(data.numpy()).score_samples(points)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-8, atol=1e-8)


def test_latent_nll_default_is_ddvi_fit_and_score_kde_on_latents_scoring_prior_samples():
    """DDVI run.py: KDEs at 5 bandwidths fitted on the latents, logsumexp − log 5, negated mean."""
    latents, prior = normal(400, seed=0, scale=0.7), normal(300, seed=1)
    scores = [
        KernelDensity(kernel="gaussian", bandwidth=h).fit(latents.numpy()).score_samples(prior)
        for h in DDVI_LATENT_NLL_BANDWIDTHS
    ]
    expected = -np.mean(logsumexp(np.asarray(scores), 0) - np.log(len(scores)))
    assert latent_nll(latents, prior) == pytest.approx(expected, abs=1e-8)
    assert latent_nll(latents.numpy(), prior.numpy(), bandwidth=None, chunk_size=64) == (
        pytest.approx(expected, abs=1e-8)
    )
    # direction matters: swapping the roles gives another number
    assert abs(latent_nll(prior, latents) - expected) > 1e-3


def test_latent_nll_of_standard_normal_latents_approaches_the_smoothed_cross_entropy():
    """KDE of N(0, I) with bandwidth h → N(0, (1+h²) I); scoring N(0, I) samples under it gives
    the cross-entropy log(2π(1+h²)) + 1/(1+h²) in 2-D (→ log 2πe ≈ 2.838 as h → 0)."""
    h = 0.5
    s2 = 1 + h * h
    latents, prior = normal(4000, seed=1), normal(4000, seed=2)
    value = latent_nll(latents, prior, bandwidth=h)
    analytic = math.log(2 * math.pi * s2) + 1 / s2
    # control variate: the exact smoothed density at the same prior samples (removes MC noise)
    same_samples = float((math.log(2 * math.pi * s2) + prior.square().sum(1) / (2 * s2)).mean())
    assert abs(value - same_samples) < 0.03
    assert abs(value - analytic) < 0.06


def test_latent_nll_is_higher_for_an_embedding_that_does_not_cover_the_prior():
    prior = normal(2000, seed=2)
    matched = latent_nll(normal(2000, seed=1), prior, bandwidth=0.3)
    shifted = latent_nll(normal(2000, seed=1, shift=2.0, scale=0.5), prior, bandwidth=0.3)
    assert shifted > matched + 1.0


# ----------------------------------------------------------------------------- clustering


def test_clustering_scores_are_one_for_a_perfect_clustering_and_a_relabelled_one():
    y = np.repeat(np.arange(4), 25)
    relabelled = np.array([7, 3, 9, 0])[y]
    for clusters in (y, relabelled):
        scores = clustering_scores(y, clusters)
        for key in ("purity", "completeness", "nmi", "homogeneity", "v_measure"):
            assert scores[key] == pytest.approx(1.0), key


def test_single_cluster_has_purity_of_the_majority_class_and_zero_nmi():
    y = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    scores = clustering_scores(y, torch.zeros(10, dtype=torch.long))
    assert scores["purity"] == pytest.approx(0.6)
    assert scores["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert scores["homogeneity"] == pytest.approx(0.0, abs=1e-12)
    assert scores["completeness"] == pytest.approx(1.0)


def test_purity_matches_a_hand_computation():
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    c = np.array([5, 5, 1, 1, 1, 2, 2, 2, 2, 5])
    # cluster 5: {0, 0, 2} -> 2; cluster 1: {0, 1, 1} -> 2; cluster 2: {1, 2, 2, 2} -> 3
    assert clustering_scores(y, c)["purity"] == pytest.approx((2 + 2 + 3) / 10)


# ----------------------------------------------------------------------------- GMM


def test_gmm_cluster_recovers_three_separated_blobs_and_is_reproducible_under_a_seed():
    z, y = blobs(60, seed=3, spread=0.3)
    labels = gmm_cluster(z, num_clusters=3, seed=0)
    assert labels.shape == (180,)
    assert clustering_scores(y, labels)["nmi"] > 0.95
    np.testing.assert_array_equal(labels, gmm_cluster(z.numpy(), num_clusters=3, seed=0))


def tight_grid(seed: int = 0):
    """Ten clusters of 50 points, sd 0.025 around the centres of a 5 × 2 grid of spacing 0.3:
    the scale of PCs divided by 30 (issue 23), where reg_covar = 1e-2 (sd floor 0.1) on the raw
    latents merges clusters."""
    rng = np.random.default_rng(seed)
    centres = np.array([(0.3 * i, 0.3 * j) for i in range(5) for j in range(2)])
    y = np.repeat(np.arange(10), 50)
    return centres[y] + 0.025 * rng.standard_normal((500, 2)), y


def test_gmm_cluster_is_scale_free_and_recovers_tight_clusters_at_any_scale():
    z, y = tight_grid()
    labels = gmm_cluster(z, num_clusters=10, seed=0)
    assert clustering_scores(y, labels)["nmi"] > 0.99
    for factor, offset in ((1e-3, 0.0), (1e3, 0.0), (1.0, 50.0)):
        scaled = gmm_cluster(z * factor + offset, num_clusters=10, seed=0)
        assert clustering_scores(y, scaled)["nmi"] == pytest.approx(
            clustering_scores(y, labels)["nmi"]
        )
        np.testing.assert_array_equal(scaled, labels)


def test_gmm_cluster_on_raw_latents_depends_on_their_scale():
    # The old protocol (DDVI's, on unscaled latents): the sd floor of √1e-2 = 0.1 merges the
    # tight clusters at scale 1 and everything at 1e-3; only a large scale escapes it.
    z, y = tight_grid()
    nmi = {}
    for factor in (1e-3, 1.0, 1e3):
        labels = gmm_cluster(z * factor, 10, 0, n_init=3, standardize=False)
        nmi[factor] = clustering_scores(y, labels)["nmi"]
    assert nmi[1e-3] < 0.1 and nmi[1.0] < 0.9 and nmi[1e3] > 0.99


def test_gmm_cluster_standardises_constant_latents_without_dividing_by_zero():
    labels = gmm_cluster(np.full((6, 2), 3.0), num_clusters=1, seed=0)
    np.testing.assert_array_equal(labels, np.zeros(6, dtype=np.int64))


# ----------------------------------------------------------------------------- MMD


def brute_force_unbiased_mmd2(x: torch.Tensor, y: torch.Tensor, hs) -> float:
    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs)

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    off_xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    off_yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(off_xx + off_yy - 2 * k(x, y).mean())


def test_mmd_equals_the_unbiased_formula_and_does_not_depend_on_chunking():
    x, y = normal(40, d=3, seed=0), normal(55, d=3, seed=1, shift=0.3)
    expected = brute_force_unbiased_mmd2(x, y, (0.5, 1.0, 2.0))
    for chunk in (7, 1024):
        assert mmd(x, y, bandwidths=(0.5, 1.0, 2.0), chunk_size=chunk) == pytest.approx(
            expected, abs=1e-12
        )


def test_mmd_is_near_zero_for_one_distribution_and_clearly_positive_for_a_shift():
    x, y = normal(300, seed=0), normal(300, seed=1)
    same = mmd(x, y)  # null sd ≈ 0.004 at n = 300 (median heuristic, 3 kernels)
    shifted = mmd(x, normal(300, seed=1, shift=1.0))
    assert abs(same) < 0.02
    assert shifted > 0.2


def test_mmd_is_symmetric_with_fixed_and_median_bandwidths():
    x, y = normal(120, seed=0), normal(90, seed=1, shift=0.5)
    assert mmd(x, y) == pytest.approx(mmd(y, x), abs=1e-12)
    assert mmd(x, y, bandwidths=1.0) == pytest.approx(mmd(y, x, bandwidths=1.0), abs=1e-12)


def test_unbiased_mmd_averages_to_zero_under_the_null_and_can_be_negative():
    values = np.array([mmd(normal(40, seed=2 * s), normal(40, seed=2 * s + 1)) for s in range(20)])
    assert values.min() < 0  # an unbiased estimator of a zero quantity must dip below zero
    assert abs(values.mean()) < 3 * values.std() / math.sqrt(len(values)) + 1e-3


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call",
    [
        lambda: knn_accuracy(np.zeros(10), np.zeros(10), np.zeros((5, 1)), np.zeros(5)),
        lambda: knn_accuracy(np.zeros((10, 2)), np.zeros(10), np.zeros((5, 3)), np.zeros(5)),
        lambda: knn_accuracy(np.zeros((10, 2)), np.zeros(9), np.zeros((5, 2)), np.zeros(5)),
        lambda: knn_accuracy(np.zeros((10, 2)), np.zeros(10), np.zeros((5, 2)), np.zeros(5), k=11),
        lambda: latent_nll(np.zeros((10, 2, 1)), np.zeros((5, 2))),
        lambda: latent_nll(np.zeros((10, 2)), np.zeros((5, 3))),
        lambda: latent_nll(np.zeros((10, 2)), np.zeros((5, 2)), bandwidth=0.0),
        lambda: latent_nll(np.full((10, 2), np.nan), np.zeros((5, 2))),
        lambda: clustering_scores(np.zeros(10), np.zeros(9)),
        lambda: clustering_scores(np.zeros((10, 1)), np.zeros(10)),
        lambda: gmm_cluster(np.zeros(10), num_clusters=2),
        lambda: gmm_cluster(np.zeros((5, 2)), num_clusters=6),
        lambda: mmd(np.zeros((10, 2)), np.zeros((10, 3))),
        lambda: mmd(np.zeros((1, 2)), np.zeros((10, 2))),
        lambda: mmd(np.zeros((10, 2)), np.zeros((10, 2)), bandwidths=[1.0, -1.0]),
        lambda: mmd([[0.0, 1.0]], np.zeros((10, 2))),
    ],
)
def test_bad_shapes_and_arguments_raise_value_error(call):
    with pytest.raises(ValueError, match="expected"):
        call()


def test_embed_latents_draws_one_posterior_sample_per_image_reproducibly_under_a_generator():
    from tiny_vae import small_vae

    from diffvi.evaluation import embed_latents

    _, posterior, x = small_vae(batch=7)
    a = embed_latents(posterior, x, torch.Generator().manual_seed(3), batch_size=2)
    b = embed_latents(posterior, x, torch.Generator().manual_seed(3), batch_size=7)
    assert a.shape == (7, 2)
    torch.testing.assert_close(a, b)  # batching does not change the draws' distribution ...
    mean = posterior.sample(x, 1).extras["mean"]
    assert not torch.allclose(a.double(), mean.double())  # ... and they are draws, not means
    with pytest.raises(ValueError, match="batch_size"):
        embed_latents(posterior, x, batch_size=0)


def test_leave_one_out_knn_leaves_each_point_out_of_its_own_vote():
    # Two pairs far apart, labels crossed within each pair: every point's nearest OTHER point
    # has the other label, so leave-one-out 1-NN is always wrong (scoring a point against a
    # set that holds it would always be right).
    z = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.1, 0.0]])
    y = np.array([0, 1, 0, 1])
    assert knn_accuracy_loo(z, y, k=1) == 0.0
    assert knn_accuracy(z, y, z, y, k=1) == 1.0
    train_z, train_y = blobs(30, seed=0)
    assert knn_accuracy_loo(train_z, train_y, k=20) == 1.0
    with pytest.raises(ValueError, match=r"k: expected an int in \[1, 89\]"):
        knn_accuracy_loo(train_z, train_y, k=90)
