"""Analytic-KL and sampled-KL ELBO estimate the same bound."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from diffvi.distributions.gaussian import standard_normal_log_prob
from diffvi.models import build_vae
from diffvi.objectives import ELBO

B = 3


def small_vae():
    torch.manual_seed(0)
    model, posterior = build_vae((6,), "iwae-1", "bernoulli", latent_dims=[2], hidden=[[8]])
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((B, 6), 0.3, dtype=torch.float64), generator=g)
    return model.double(), posterior.double(), x


def test_analytic_and_sampled_kl_elbo_have_the_same_expectation():
    model, posterior, x = small_vae()
    repeats = 20_000  # one draw per copy of x: the mean over copies estimates E[ELBO estimate]
    xr = x.repeat(repeats, 1)
    torch.manual_seed(1)
    analytic = ELBO(k=1, analytic_kl=True)(model, posterior, xr).bound.view(repeats, B)
    torch.manual_seed(1)
    sampled = ELBO(k=1)(model, posterior, xr).bound.view(repeats, B)
    diff = analytic - sampled  # same draws: only the KL term differs
    se = diff.std(0) / repeats**0.5
    assert (diff.mean(0).abs() < 4 * se).all(), (diff.mean(0), se)


def test_sampled_kl_term_is_mean_of_log_q_minus_log_prior_on_the_same_draws():
    model, posterior, x = small_vae()
    torch.manual_seed(2)
    sampled = ELBO(k=50)(model, posterior, x)
    torch.manual_seed(2)
    analytic = ELBO(k=50, analytic_kl=True)(model, posterior, x)
    torch.manual_seed(2)
    s = posterior.sample(x, 50)
    kl_sampled = (s.log_q - standard_normal_log_prob(s.z)).mean(0)
    q = Normal(s.extras["mean"], s.extras["log_std"].exp())
    kl_exact = kl_divergence(q, Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(
        sampled.bound - analytic.bound, (kl_exact - kl_sampled).detach(), rtol=0, atol=1e-10
    )
    torch.testing.assert_close(analytic.metrics["kl"], kl_exact.mean().detach())
    torch.testing.assert_close(sampled.metrics["kl"], kl_sampled.mean().detach())


def test_analytic_kl_elbo_on_a_two_layer_model_raises_value_error():
    torch.manual_seed(0)
    model, posterior = build_vae((1, 4, 4), "iwae-2", latent_dims=[3, 2], hidden=[[8], [4]])
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="analytic_kl"):
        ELBO(analytic_kl=True)(model, posterior, x)
    # the sampled form is the one to use there
    assert ELBO()(model, posterior, x).bound.shape == (2,)
