"""estimate_log_likelihood against the exact log p(x) of a linear-Gaussian model (float64)."""

import math

import pytest
import torch

from diffvi.distributions.gaussian import diagonal_normal_log_prob
from diffvi.evaluation import LikelihoodEstimate, estimate_log_likelihood
from diffvi.objectives.base import log_mean_exp
from diffvi.posteriors import GaussianPosterior, PosteriorSample

# A wrong but light-tailed proposal: mean moved by 1.5 posterior std, std 1.5× too wide.
SHIFT, WIDEN = 1.5, 1.5


class ReplayPosterior(GaussianPosterior):
    """The same q, but its noise comes in order from a fixed pool ``[K_total, B, D]``, so that
    any chunking of the K draws sees exactly the same samples."""

    def __init__(self, posterior: GaussianPosterior, pool: torch.Tensor) -> None:
        super().__init__(list(posterior.encoders), posterior.latent_dims)
        self.pool, self.cursor = pool, 0

    def sample(self, x, k=1, generator=None):
        eps = self.pool[self.cursor : self.cursor + k]
        assert eps.shape[0] == k, "pool exhausted"
        self.cursor += k
        mean, log_std = self.encoders[0](x.flatten(1)).chunk(2, -1)
        z = mean + log_std.exp() * eps
        return PosteriorSample(z=z, log_q=diagonal_normal_log_prob(z, mean, log_std))


def test_estimate_with_5000_samples_agrees_with_exact_log_px_within_4_stderr(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(6)
    torch.manual_seed(0)
    est = estimate_log_likelihood(lg.model, lg.posterior(SHIFT, WIDEN), x, k=5000)
    assert isinstance(est, LikelihoodEstimate)
    assert est.log_px.shape == est.stderr.shape == (6,)
    assert est.log_px.dtype == torch.float64
    assert (est.stderr > 0).all() and (est.stderr < 0.1).all()
    z_scores = (est.log_px - lg.log_px(x)) / est.stderr
    assert z_scores.abs().max() < 4, z_scores


def test_reported_stderr_matches_empirical_std_over_independent_repeats(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(6)
    repeats = 60  # 60 copies of each point: 60 independent estimates per point in one call
    torch.manual_seed(1)
    est = estimate_log_likelihood(
        lg.model,
        lg.posterior(SHIFT, WIDEN),
        x.repeat(repeats, 1),
        k=1000,
        batch_size=1000,
        max_rows=10**6,
    )
    log_px, stderr = est.log_px.view(repeats, 6), est.stderr.view(repeats, 6)
    ratio = log_px.std(0) / stderr.mean(0)
    assert ((ratio > 1 / 1.7) & (ratio < 1.7)).all(), ratio
    pooled = (log_px.var(0).mean() / stderr.square().mean()).sqrt()
    assert 1 / 1.3 < pooled < 1.3, pooled
    # and the estimates are centred on the exact value
    centre = (log_px.mean(0) - lg.log_px(x)) / (log_px.std(0) / repeats**0.5)
    assert centre.abs().max() < 4, centre


def test_estimate_with_exact_posterior_is_exact_with_zero_stderr(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(4)
    est = estimate_log_likelihood(lg.model, lg.posterior(), x, k=50)
    torch.testing.assert_close(est.log_px, lg.log_px(x), rtol=0, atol=1e-6)
    assert (est.stderr < 1e-5).all()


@pytest.mark.parametrize("max_rows", [7 * 5, 64 * 5, 10**6])
def test_chunked_estimate_equals_unchunked_and_manual_values_on_identical_draws(
    linear_gaussian, max_rows
):
    # max_rows = 35 gives chunks of 7 draws (1000 = 142·7 + 6, an uneven last chunk).
    lg = linear_gaussian
    x = lg.data(5)
    k = 1000
    pool = torch.randn(
        k, 5, lg.latent_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    posterior = lg.posterior(SHIFT, WIDEN)
    est = estimate_log_likelihood(
        lg.model, ReplayPosterior(posterior, pool), x, k=k, max_rows=max_rows
    )
    # manual values from all k draws at once
    s = ReplayPosterior(posterior, pool).sample(x, k)
    log_w = lg.model.log_joint(x, s.z) - s.log_q
    torch.testing.assert_close(est.log_px, log_mean_exp(log_w), rtol=0, atol=1e-10)
    w = torch.exp(log_w - log_w.max(0).values)  # Var[log p̂] ≈ Var(w) / (k E[w]²)
    rel_var = w.var(0, unbiased=False) / w.mean(0).square()
    torch.testing.assert_close(est.stderr, (rel_var / k).sqrt(), rtol=1e-8, atol=1e-12)


def test_chunked_and_unchunked_estimates_agree_statistically_with_the_default_sampler(
    linear_gaussian,
):
    lg = linear_gaussian
    x = lg.data(5)
    posterior = lg.posterior(SHIFT, WIDEN)
    torch.manual_seed(3)
    whole = estimate_log_likelihood(lg.model, posterior, x, k=2000)
    torch.manual_seed(3)
    chunked = estimate_log_likelihood(lg.model, posterior, x, k=2000, max_rows=5 * 7)
    both = (whole.stderr.square() + chunked.stderr.square()).sqrt()
    assert ((whole.log_px - chunked.log_px).abs() < 4 * both).all()


def test_batch_size_splitting_equals_separate_calls_in_the_same_order(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(7)
    posterior = lg.posterior(SHIFT, WIDEN)
    torch.manual_seed(4)
    split = estimate_log_likelihood(lg.model, posterior, x, k=300, batch_size=3)
    torch.manual_seed(4)
    parts = [estimate_log_likelihood(lg.model, posterior, xb, k=300) for xb in x.split(3)]
    torch.testing.assert_close(split.log_px, torch.cat([p.log_px for p in parts]), rtol=0, atol=0)
    torch.testing.assert_close(split.stderr, torch.cat([p.stderr for p in parts]), rtol=0, atol=0)


def test_iterable_of_x_y_batches_gives_the_same_estimate_as_a_tensor(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(6)
    posterior = lg.posterior(SHIFT, WIDEN)
    torch.manual_seed(5)
    from_tensor = estimate_log_likelihood(lg.model, posterior, x, k=200, batch_size=4)
    batches = [(xb, torch.zeros(len(xb))) for xb in x.split(4)]
    torch.manual_seed(5)
    from_pairs = estimate_log_likelihood(lg.model, posterior, batches, k=200)
    torch.testing.assert_close(from_pairs.log_px, from_tensor.log_px, rtol=0, atol=0)


def test_estimate_restores_training_mode_of_model_and_posterior(linear_gaussian):
    lg = linear_gaussian
    posterior = lg.posterior(SHIFT, WIDEN)
    lg.model.train()
    posterior.eval()
    estimate_log_likelihood(lg.model, posterior, lg.data(2), k=10)
    assert lg.model.training and not posterior.training


def test_estimate_with_zero_samples_raises_value_error(linear_gaussian):
    lg = linear_gaussian
    with pytest.raises(ValueError, match="k must"):
        estimate_log_likelihood(lg.model, lg.posterior(), lg.data(2), k=0)


def test_summary_mean_and_mean_stderr_combine_per_point_values():
    est = LikelihoodEstimate(
        log_px=torch.tensor([-1.0, -3.0, -2.0, -6.0]), stderr=torch.tensor([0.3, 0.4, 0.0, 0.0])
    )
    assert math.isclose(est.mean, -3.0)
    assert math.isclose(est.mean_stderr, 0.5 / 4, rel_tol=1e-6)
