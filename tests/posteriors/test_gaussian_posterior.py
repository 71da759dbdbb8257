"""GaussianPosterior: shape contract, exact log-densities, stopped-gradient scoring."""

import pytest
import torch
from torch import nn

from diffvi.distributions.gaussian import diagonal_normal_log_prob
from diffvi.models import build_vae
from diffvi.posteriors import GaussianPosterior, PosteriorSample

K, B = 5, 3


def small_posterior(layers: int) -> tuple[GaussianPosterior, tuple[int, ...]]:
    torch.manual_seed(0)
    if layers == 1:
        event_shape = (6,)
        _, posterior = build_vae(event_shape, "iwae-1", latent_dims=[2], hidden=[[8]])
    elif layers == 2:
        event_shape = (1, 28, 28)
        _, posterior = build_vae(event_shape, "iwae-2", latent_dims=[4, 3], hidden=[[16], [8]])
    else:
        event_shape = (6,)
        _, posterior = build_vae(event_shape, latent_dims=[3, 2, 2], hidden=[[8], [4], [4]])
    return posterior.double(), event_shape


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_sample_has_z_k_b_d_and_log_q_k_b(layers):
    posterior, event_shape = small_posterior(layers)
    x = torch.rand(B, *event_shape, dtype=torch.float64)
    s = posterior.sample(x, K)
    assert isinstance(s, PosteriorSample)
    assert s.z.shape == (K, B, posterior.latent_dim)
    assert s.log_q.shape == (K, B)
    assert s.z.dtype == s.log_q.dtype == torch.float64
    first = posterior.latent_dims[0]
    assert s.extras["mean"].shape == (B, first)
    assert s.extras["log_std"].shape == (B, first)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_sample_log_q_equals_log_prob_of_the_same_z(layers):
    posterior, event_shape = small_posterior(layers)
    x = torch.rand(B, *event_shape, dtype=torch.float64)
    s = posterior.sample(x, K)
    torch.testing.assert_close(s.log_q, posterior.log_prob(x, s.z), rtol=0, atol=1e-8)


def test_two_layer_log_prob_is_sum_of_bottom_and_conditional_top_layer_densities():
    posterior, event_shape = small_posterior(2)
    x = torch.rand(B, *event_shape, dtype=torch.float64)
    z = posterior.sample(x, K).z
    z1, z2 = z.split(posterior.latent_dims, dim=-1)
    m1, s1 = posterior.encoders[0](x.flatten(1)).chunk(2, -1)
    m2, s2 = posterior.encoders[1](z1).chunk(2, -1)
    expected = diagonal_normal_log_prob(z1, m1, s1) + diagonal_normal_log_prob(z2, m2, s2)
    torch.testing.assert_close(posterior.log_prob(x, z), expected, rtol=0, atol=1e-10)


def test_single_layer_samples_have_encoder_mean_and_std():
    posterior, event_shape = small_posterior(1)
    x = torch.rand(1, *event_shape, dtype=torch.float64)
    torch.manual_seed(1)
    s = posterior.sample(x, 40_000)
    mean, log_std = posterior.encoders[0](x).chunk(2, -1)
    torch.testing.assert_close(
        s.z.mean(0), mean.detach(), atol=4 * log_std.exp().max().item() / 200, rtol=0
    )
    torch.testing.assert_close(s.z.std(0), log_std.exp().detach(), rtol=0.02, atol=0)


def test_expected_latent_of_single_layer_is_the_encoder_mean():
    posterior, event_shape = small_posterior(1)
    x = torch.rand(B, *event_shape, dtype=torch.float64)
    mean = posterior.encoders[0](x).chunk(2, -1)[0]
    torch.testing.assert_close(posterior.expected_latent(x), mean)


def test_expected_latent_of_two_layers_has_shape_b_d_and_matches_monte_carlo_mean():
    posterior, event_shape = small_posterior(2)
    x = torch.rand(B, *event_shape, dtype=torch.float64)
    torch.manual_seed(2)
    out = posterior.expected_latent(x, k=20_000)
    assert out.shape == (B, posterior.latent_dim)
    # bottom layer: its mean is exactly the encoder's mean
    m1 = posterior.encoders[0](x.flatten(1)).chunk(2, -1)[0]
    torch.testing.assert_close(out[:, : posterior.latent_dims[0]], m1.detach(), atol=0.05, rtol=0)


@pytest.mark.parametrize("layers", [1, 2])
def test_log_prob_stopped_equals_log_prob_in_value(layers):
    posterior, event_shape = small_posterior(layers)
    x = torch.rand(B, *event_shape, dtype=torch.float64)
    z = posterior.sample(x, K).z.detach()
    torch.testing.assert_close(
        posterior.log_prob_stopped(x, z), posterior.log_prob(x, z), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("layers", [1, 2])
def test_log_prob_stopped_gives_no_gradient_to_parameters_but_passes_gradient_to_z(layers):
    posterior, event_shape = small_posterior(layers)
    x = torch.rand(B, *event_shape, dtype=torch.float64)
    z = posterior.sample(x, K).z.detach().requires_grad_()
    posterior.zero_grad()
    posterior.log_prob_stopped(x, z).sum().backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in posterior.parameters())
    grad_stopped = z.grad.clone()
    # the gradient to z equals that of the un-stopped density
    z.grad = None
    posterior.log_prob(x, z).sum().backward()
    torch.testing.assert_close(grad_stopped, z.grad, rtol=0, atol=1e-12)
    assert grad_stopped.abs().sum() > 0
    # while the un-stopped density does reach the parameters
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in posterior.parameters())


def test_log_prob_stopped_keeps_the_path_derivative_through_z():
    # Total derivative of log q(z(φ); φ) = path derivative (through z, what log_prob_stopped
    # keeps) + score ∇φ log q(z; φ) at fixed z. For z = μ + σε it is −∇φ Σ log σ.
    posterior, event_shape = small_posterior(1)
    x = torch.rand(B, *event_shape, dtype=torch.float64)
    params = list(posterior.parameters())
    s = posterior.sample(x, K)
    path = torch.autograd.grad(posterior.log_prob_stopped(x, s.z).sum(), params, retain_graph=True)
    score = torch.autograd.grad(posterior.log_prob(x, s.z.detach()).sum(), params)
    total = torch.autograd.grad(posterior.log_prob(x, s.z).sum(), params, retain_graph=True)
    closed_form = torch.autograd.grad(-K * s.extras["log_std"].sum(), params, allow_unused=True)
    for g_path, g_score, g_total, g_closed in zip(path, score, total, closed_form, strict=True):
        torch.testing.assert_close(g_path + g_score, g_total, rtol=1e-8, atol=1e-10)
        g_closed = torch.zeros_like(g_total) if g_closed is None else g_closed
        torch.testing.assert_close(g_total, g_closed, rtol=1e-8, atol=1e-10)
    assert any(g.abs().sum() > 0 for g in path)


def test_sample_with_zero_samples_raises_value_error():
    posterior, event_shape = small_posterior(1)
    with pytest.raises(ValueError, match="k must"):
        posterior.sample(torch.rand(B, *event_shape, dtype=torch.float64), 0)


def test_log_prob_with_wrong_latent_dimension_raises_value_error():
    posterior, event_shape = small_posterior(1)
    x = torch.rand(B, *event_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match="last dimension"):
        posterior.log_prob(x, torch.zeros(K, B, posterior.latent_dim + 1, dtype=torch.float64))


def test_constructor_with_mismatched_encoders_and_latent_dims_raises_value_error():
    with pytest.raises(ValueError):
        GaussianPosterior([nn.Linear(4, 4)], [2, 1])
    with pytest.raises(ValueError):
        GaussianPosterior([], [])
