"""ELBO and IWAE against the exact log p(x) of a linear-Gaussian model (float64)."""

import pytest
import torch

from diffvi.objectives import ELBO, IWAE

# A posterior that is wrong (mean moved by 1.5 posterior std, std 1.5× too wide) but has
# light-tailed weights, so that L_k visibly climbs towards log p(x) within k ≤ 500.
SHIFT, WIDEN = 1.5, 1.5


def test_fixture_posterior_equals_the_exact_gaussian_posterior(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(5)
    # S is diagonal because W has orthogonal columns: a diagonal q can be exact.
    torch.testing.assert_close(lg.S, torch.diag(torch.diagonal(lg.S)), rtol=0, atol=1e-14)
    posterior = lg.posterior()
    torch.testing.assert_close(posterior.expected_latent(x), lg.posterior_mean(x))
    s = posterior.sample(x, 3)
    torch.testing.assert_close(s.extras["log_std"][0], lg.log_std)
    # Bayes: log p(z|x) = log p(x, z) − log p(x) for the exact posterior.
    lp_post = torch.distributions.MultivariateNormal(lg.posterior_mean(x), lg.S).log_prob(s.z)
    torch.testing.assert_close(s.log_q, lp_post, rtol=0, atol=1e-10)


def test_log_weights_under_exact_posterior_are_constant_and_equal_log_px(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(6)
    posterior = lg.posterior()
    s = posterior.sample(x, 64)
    log_w = lg.model.log_joint(x, s.z) - s.log_q
    torch.testing.assert_close(log_w, lg.log_px(x).expand(64, 6), rtol=0, atol=1e-6)


def test_elbo_and_iwae_with_exact_posterior_equal_log_px_for_every_data_point(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(6)
    posterior, log_px = lg.posterior(), lg.log_px(x)
    for objective in (ELBO(k=1), ELBO(k=10), IWAE(k=1), IWAE(k=20)):
        out = objective(lg.model, posterior, x)
        torch.testing.assert_close(out.bound, log_px, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.loss, -log_px.mean(), rtol=0, atol=1e-6)


def test_analytic_kl_elbo_with_exact_posterior_has_expectation_log_px(linear_gaussian):
    # With the analytic KL the per-sample value is no longer constant, but its mean still is
    # the ELBO, which equals log p(x) when q is the exact posterior.
    lg = linear_gaussian
    x = lg.data(3)
    torch.manual_seed(0)
    out = ELBO(k=20_000, analytic_kl=True)(lg.model, lg.posterior(), x)
    torch.testing.assert_close(out.bound, lg.log_px(x), rtol=0, atol=0.03)


def test_expected_iwae_bound_increases_with_k_and_approaches_log_px(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(4)
    log_px = lg.log_px(x)
    posterior = lg.posterior(SHIFT, WIDEN)
    torch.manual_seed(0)
    gaps, ses = [], []
    # repeats: the batch holds R copies of the 4 points; more copies where k is small.
    for k, repeats in [(1, 4000), (5, 2000), (50, 1000), (500, 200)]:
        bound = IWAE(k=k)(lg.model, posterior, x.repeat(repeats, 1)).bound.view(repeats, 4)
        gap = (log_px - bound).mean(1)  # log p(x) − L_k, averaged over the 4 points
        gaps.append(gap.mean())
        ses.append(gap.std() / repeats**0.5)
    gaps, ses = torch.stack(gaps), torch.stack(ses)
    # monotone in k, each step well beyond the Monte Carlo noise
    steps = gaps[:-1] - gaps[1:]
    step_se = (ses[:-1].square() + ses[1:].square()).sqrt()
    assert (steps > 4 * step_se).all(), (gaps, ses)
    # still a lower bound in expectation, and close to log p(x) at k = 500
    assert (gaps > -3 * ses).all(), (gaps, ses)
    assert gaps[0] > 1.0
    assert gaps[-1] < 0.02


def test_closed_form_elbo_equals_log_px_at_the_exact_posterior(linear_gaussian):
    # checks the reference used below: ELBO = log p(x) − KL(q || p(z|x))
    lg = linear_gaussian
    x = lg.data(4)
    mean, log_std = lg.posterior_mean(x), lg.log_std.expand(4, -1)
    torch.testing.assert_close(lg.closed_form_elbo(x, mean, log_std), lg.log_px(x))
    assert (lg.closed_form_elbo(x, mean + 0.3, log_std) < lg.log_px(x)).all()


@pytest.mark.parametrize("analytic_kl", [False, True])
def test_elbo_estimate_is_unbiased_for_the_closed_form_elbo_of_a_wrong_posterior(
    linear_gaussian, analytic_kl
):
    lg = linear_gaussian
    x = lg.data(3)
    posterior = lg.posterior(SHIFT, WIDEN)
    repeats = 5000
    torch.manual_seed(10)
    out = ELBO(k=1, analytic_kl=analytic_kl)(lg.model, posterior, x.repeat(repeats, 1))
    bound = out.bound.view(repeats, 3)
    s = posterior.sample(x, 1)
    exact = lg.closed_form_elbo(x, s.extras["mean"], s.extras["log_std"])
    z_scores = (bound.mean(0) - exact) / (bound.std(0) / repeats**0.5)
    assert z_scores.abs().max() < 4, z_scores
    assert (exact < lg.log_px(x) - 0.5).all()  # the posterior is wrong enough to matter


@pytest.mark.parametrize("analytic_kl", [False, True])
def test_expected_elbo_gradient_equals_gradient_of_closed_form_elbo(linear_gaussian, analytic_kl):
    # Reparameterised ELBO gradients w.r.t. the encoder φ and the decoder θ = (W, b) are
    # unbiased for the gradient of the exact ELBO.
    lg = linear_gaussian
    x = lg.data(2)
    posterior = lg.learnable_posterior(shift=1.0, widen=1.5)
    params = [*posterior.parameters(), *lg.model.parameters()]

    def flat_grad(loss):
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    mean, log_std = posterior.encoders[0](x).chunk(2, -1)
    exact = flat_grad(-lg.closed_form_elbo(x, mean, log_std).mean())
    xr = x.repeat(200, 1)
    torch.manual_seed(11)
    draws = torch.stack(
        [
            flat_grad(ELBO(k=1, analytic_kl=analytic_kl)(lg.model, posterior, xr).loss)
            for _ in range(60)
        ]
    )
    z_scores = (draws.mean(0) - exact) / (draws.std(0) / draws.shape[0] ** 0.5 + 1e-12)
    assert z_scores.abs().max() < 4.5, z_scores
    assert exact.abs().max() > 0.1  # away from the optimum: the gradient is not trivially 0
