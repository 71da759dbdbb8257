"""Likelihoods p(x|z) against manual formulas and torch.distributions (float64)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from diffvi.distributions import BernoulliLikelihood, GaussianLikelihood, build_likelihood

K, B, NUM_F = 3, 4, 5


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_bernoulli_log_prob_equals_manual_sum_of_x_log_sigmoid_plus_one_minus_x_log_one_minus(
    gen,
):
    logits = 3 * torch.randn(K, B, NUM_F, generator=gen, dtype=torch.float64)
    x = torch.bernoulli(torch.full((B, NUM_F), 0.5, dtype=torch.float64), generator=gen)
    p = torch.sigmoid(logits)
    manual = (x * torch.log(p) + (1 - x) * torch.log1p(-p)).sum(-1)
    out = BernoulliLikelihood().log_prob(x, logits)
    assert out.shape == (K, B)
    torch.testing.assert_close(out, manual, rtol=1e-10, atol=1e-10)


def test_bernoulli_log_prob_accepts_grey_levels_as_x_log_p_plus_one_minus_x_log_one_minus_p(gen):
    logits = torch.randn(K, B, NUM_F, generator=gen, dtype=torch.float64)
    x = torch.rand(B, NUM_F, generator=gen, dtype=torch.float64)
    manual = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(-1)
    torch.testing.assert_close(BernoulliLikelihood().log_prob(x, logits), manual)


def test_bernoulli_log_prob_is_finite_for_extreme_logits():
    logits = torch.tensor([[[-800.0, 800.0, 0.0]]], dtype=torch.float64)
    x = torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float64)
    out = BernoulliLikelihood().log_prob(x, logits)
    torch.testing.assert_close(out, torch.tensor([[-math.log(2)]], dtype=torch.float64))


def test_bernoulli_mean_is_sigmoid_of_logits_and_samples_are_binary(gen):
    logits = torch.randn(B, NUM_F, generator=gen, dtype=torch.float64)
    lik = BernoulliLikelihood()
    torch.testing.assert_close(lik.mean(logits), torch.sigmoid(logits))
    draw = lik.sample(logits, generator=gen)
    assert draw.shape == (B, NUM_F)
    assert set(draw.unique().tolist()) <= {0.0, 1.0}
    assert lik.num_params(NUM_F) == NUM_F


@pytest.mark.parametrize("sigma", [0.1, 1.0, 2.5])
def test_fixed_scale_gaussian_log_prob_equals_torch_normal_summed_over_features(gen, sigma):
    mean = torch.randn(K, B, NUM_F, generator=gen, dtype=torch.float64)
    x = torch.randn(B, NUM_F, generator=gen, dtype=torch.float64)
    lik = GaussianLikelihood(scale=sigma, sigmoid_mean=False)
    expected = Normal(mean, sigma).log_prob(x).sum(-1)
    out = lik.log_prob(x, mean)
    assert out.shape == (K, B)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    assert lik.num_params(NUM_F) == NUM_F


def test_learned_scale_gaussian_log_prob_equals_torch_normal_with_mean_and_log_std_halves(gen):
    params = torch.randn(K, B, 2 * NUM_F, generator=gen, dtype=torch.float64)
    x = torch.rand(B, NUM_F, generator=gen, dtype=torch.float64)
    mean, log_std = params.chunk(2, dim=-1)
    lik = GaussianLikelihood()  # learned scale, sigmoid mean (AEVB)
    expected = Normal(torch.sigmoid(mean), log_std.exp()).log_prob(x).sum(-1)
    torch.testing.assert_close(lik.log_prob(x, params), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lik.mean(params), torch.sigmoid(mean))
    assert lik.num_params(NUM_F) == 2 * NUM_F


def test_fixed_scale_gaussian_samples_have_the_requested_mean_and_scale():
    gen = torch.Generator().manual_seed(1)
    lik = GaussianLikelihood(scale=0.5, sigmoid_mean=False)
    params = torch.tensor([1.0, -2.0], dtype=torch.float64).expand(20_000, 2)
    draws = lik.sample(params, generator=gen)
    assert draws.dtype == torch.float64
    torch.testing.assert_close(draws.mean(0), params[0], atol=0.02, rtol=0)
    torch.testing.assert_close(
        draws.std(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.01, rtol=0
    )


def test_gradcheck_bernoulli_log_prob_in_float64(gen):
    logits = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.rand(3, 4, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda lg: BernoulliLikelihood().log_prob(x, lg), (logits,))


def test_gradcheck_gaussian_log_prob_in_float64(gen):
    params = torch.randn(2, 3, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.rand(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    lik = GaussianLikelihood()
    assert torch.autograd.gradcheck(lambda xx, pp: lik.log_prob(xx, pp), (x, params))


@pytest.mark.parametrize("scale", ["fixed", 0.0, -1.0])
def test_gaussian_likelihood_rejects_bad_scale_with_value_error(scale):
    with pytest.raises(ValueError):
        GaussianLikelihood(scale=scale)


def test_build_likelihood_maps_names_and_rejects_unknown_name():
    assert isinstance(build_likelihood("bernoulli"), BernoulliLikelihood)
    gauss = build_likelihood("gaussian")
    assert isinstance(gauss, GaussianLikelihood) and gauss.scale == "learned"
    with pytest.raises(ValueError, match="likelihood"):
        build_likelihood("poisson")


def test_real_gaussian_has_an_unbounded_mean_and_a_fixed_scale_when_asked():
    from diffvi.distributions.likelihoods import RealGaussianLikelihood

    params = torch.tensor([[[-3.0, 5.0]]])  # [K=1, B=1, P=2]: fixed scale, P = F
    lik = build_likelihood("real-gaussian", scale=0.5)
    assert isinstance(lik, RealGaussianLikelihood) and lik.num_params(2) == 2
    torch.testing.assert_close(lik.mean(params), params)
    x = torch.tensor([[-3.0, 5.0]])
    expected = torch.distributions.Normal(params, 0.5).log_prob(x).sum(-1)
    torch.testing.assert_close(lik.log_prob(x, params), expected)
    assert build_likelihood("real-gaussian").num_params(2) == 4  # learned scale
    with pytest.raises(ValueError, match="needs a Gaussian likelihood"):
        build_likelihood("bernoulli", scale=0.5)


def test_min_scale_floors_a_learned_sigma_so_a_constant_pixel_has_a_bounded_likelihood():
    x = torch.zeros(1, 2)  # a pixel that never varies, predicted exactly
    mean_logit = torch.full((1, 1, 2), -100.0)  # sigmoid(−100) ≈ 0
    tiny = torch.full((1, 1, 2), -40.0)  # log σ → −40: unbounded without the floor
    params = torch.cat([mean_logit, tiny], dim=-1)
    floored = build_likelihood("gaussian", min_scale=0.01)
    bound = -2 * (0.5 * math.log(2 * math.pi) + math.log(0.01))  # log N(0 | 0, 0.01²) × 2
    assert build_likelihood("gaussian").log_prob(x, params).item() > 70
    floored_value = floored.log_prob(x, params)
    torch.testing.assert_close(floored_value, torch.tensor([[bound]]), atol=1e-4, rtol=0)
    large = torch.cat([mean_logit, torch.zeros(1, 1, 2)], dim=-1)  # σ = 1 + 0.01
    expected = torch.distributions.Normal(torch.sigmoid(mean_logit), 1.01).log_prob(x).sum(-1)
    torch.testing.assert_close(floored.log_prob(x, large), expected)
    with pytest.raises(ValueError, match="min_scale"):
        GaussianLikelihood(min_scale=-1.0)
    with pytest.raises(ValueError, match="needs a Gaussian likelihood"):
        build_likelihood("bernoulli", min_scale=0.01)


def test_support_is_zero_one_for_bernoulli_and_the_real_line_for_gaussians():
    assert BernoulliLikelihood().support == (0.0, 1.0)
    for name in ("gaussian", "real-gaussian"):
        assert build_likelihood(name).support == (-math.inf, math.inf)
