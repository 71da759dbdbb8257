"""Closed-form Gaussian densities, the KL to N(0, I) and the standard-normal prior."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from diffvi.distributions import StandardNormal, diagonal_normal_log_prob, kl_to_standard_normal
from diffvi.distributions.gaussian import standard_normal_log_prob


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_diagonal_normal_log_prob_equals_torch_normal_summed_over_last_axis(gen):
    z = torch.randn(5, 3, 4, generator=gen, dtype=torch.float64)
    mean = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    log_std = 0.5 * torch.randn(3, 4, generator=gen, dtype=torch.float64)
    out = diagonal_normal_log_prob(z, mean, log_std)
    assert out.shape == (5, 3)
    expected = Normal(mean, log_std.exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_standard_normal_log_prob_equals_diagonal_normal_at_zero_mean_unit_scale(gen):
    z = torch.randn(7, 2, 3, generator=gen, dtype=torch.float64)
    zeros = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(
        standard_normal_log_prob(z), diagonal_normal_log_prob(z, zeros, zeros)
    )


def test_gradcheck_diagonal_normal_log_prob_in_all_arguments_float64(gen):
    z = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    mean = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    log_std = (0.3 * torch.randn(3, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(diagonal_normal_log_prob, (z, mean, log_std))


def test_kl_to_standard_normal_matches_torch_kl_divergence(gen):
    mean = 2 * torch.randn(6, 5, generator=gen, dtype=torch.float64)
    log_std = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    out = kl_to_standard_normal(mean, log_std)
    zero, one = torch.zeros_like(mean), torch.ones_like(mean)
    expected = kl_divergence(Normal(mean, log_std.exp()), Normal(zero, one)).sum(-1)
    assert out.shape == (6,)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_kl_to_standard_normal_is_zero_at_the_prior_and_positive_elsewhere(gen):
    zeros = torch.zeros(3, 4, dtype=torch.float64)
    torch.testing.assert_close(
        kl_to_standard_normal(zeros, zeros), torch.zeros(3, dtype=torch.float64)
    )
    mean = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    assert (kl_to_standard_normal(mean, zeros) > 0).all()


def test_kl_to_standard_normal_equals_monte_carlo_mean_of_log_q_minus_log_p(gen):
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    log_std = torch.tensor([-0.5, 0.2, 0.0], dtype=torch.float64)
    z = mean + log_std.exp() * torch.randn(200_000, 3, generator=gen, dtype=torch.float64)
    diff = diagonal_normal_log_prob(z, mean, log_std) - standard_normal_log_prob(z)
    se = diff.std() / diff.numel() ** 0.5
    assert abs(diff.mean() - kl_to_standard_normal(mean, log_std)) < 4 * se


def test_standard_normal_prior_log_prob_shape_dtype_and_sample_moments():
    prior = StandardNormal(3).double()
    z = prior.sample((4, 2))
    assert z.shape == (4, 2, 3) and z.dtype == torch.float64
    torch.testing.assert_close(
        prior.log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1), rtol=1e-12, atol=1e-12
    )
    big = prior.sample((50_000,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(big.mean(0), torch.zeros(3, dtype=torch.float64), atol=0.02, rtol=0)
    torch.testing.assert_close(big.std(0), torch.ones(3, dtype=torch.float64), atol=0.02, rtol=0)


def test_standard_normal_prior_with_zero_dimension_raises_value_error():
    with pytest.raises(ValueError):
        StandardNormal(0)
