"""SmoothedPrior: the kernel-smoothed 2-D priors the official DDVI code scores with."""

import math

import numpy as np
import pytest
import torch
from test_toy2d_priors import _cell_tv

from diffvi.distributions import (
    KernelDensityScore,
    MixturePrior,
    PinwheelPrior,
    SmoothedPrior,
    SquarePrior,
    SwissRollPrior,
    official_prior_samples,
)


@pytest.mark.parametrize("base", [PinwheelPrior, SwissRollPrior, SquarePrior])
def test_histogram_of_samples_matches_the_smoothed_density(base):
    prior = SmoothedPrior(base(), num_samples=200, bandwidths=(0.05, 0.1)).double()
    z = prior.sample((60_000,), torch.Generator().manual_seed(0))
    lim = 3.6 if base is SwissRollPrior else 1.6
    edges = np.linspace(-lim, lim, round(2 * lim / 0.2) + 1)
    tv, floor, mass = _cell_tv(z, prior.log_prob, edges, edges, sub=4)
    assert abs(mass - 1) < 0.02
    assert tv < floor + 0.01


def test_log_prob_is_the_kernel_mixture_written_out():
    prior = SmoothedPrior(SquarePrior(), num_samples=20, bandwidths=(0.1, 0.3)).double()
    z = torch.tensor([[0.9, 0.2], [-1.0, -0.95]], dtype=torch.float64)
    centres = prior.centres.reshape(-1, 2)  # 2 per partition, 20 in all
    terms = []
    for h in (0.1, 0.3):
        d2 = (z[:, None, :] - centres).square().sum(-1)
        terms.append(torch.logsumexp(-d2 / (2 * h * h), 1) - math.log(2 * math.pi * h * h))
    expected = torch.logsumexp(torch.stack(terms), 0) - math.log(20 * 2)
    torch.testing.assert_close(prior.log_prob(z), expected)
    per = prior.log_prob_per_partition(z)
    torch.testing.assert_close(torch.logsumexp(per - math.log(10), -1), prior.log_prob(z))
    labels = torch.tensor([3, 7])
    torch.testing.assert_close(prior.log_prob_given_label(z, labels), per[[0, 1], labels])


def test_smoothing_gives_the_thin_pinwheel_arms_tails_without_moving_them():
    exact = PinwheelPrior().double()
    smooth = SmoothedPrior(PinwheelPrior(), num_samples=2000).double()
    z = exact.sample((500,), torch.Generator().manual_seed(1))
    assert smooth.log_prob(z).mean() > exact.log_prob(z).mean() - 1.5  # on the arms: similar
    off = z + torch.tensor([0.0, 0.1], dtype=torch.float64)
    assert (smooth.log_prob(off) - exact.log_prob(off)).median() > 50  # between arms: tails


def test_same_seed_same_centres_and_gradients_reach_z():
    a, b = SmoothedPrior(PinwheelPrior(), seed=3), SmoothedPrior(PinwheelPrior(), seed=3)
    assert torch.equal(a.centres, b.centres) and "centres" in a.state_dict()
    z = torch.randn(4, 5, 2, requires_grad=True)
    a.log_prob(z).sum().backward()
    assert a.log_prob(z).shape == (4, 5) and torch.isfinite(z.grad).all()


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="fixed prior"):
        SmoothedPrior(MixturePrior())
    with pytest.raises(ValueError, match="partitioned prior"):
        SmoothedPrior(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="bandwidths"):
        SmoothedPrior(PinwheelPrior(), bandwidths=(0.1, 0.0))
    with pytest.raises(ValueError, match="multiple of the 10 partitions"):
        SmoothedPrior(PinwheelPrior(), num_samples=25)


def test_kernel_density_score_by_hand_and_its_clamp():
    # The official BasePrior.evaluate: per bandwidth log (1/N) Σ_i N(z; c_i, h² I), clamped to
    # [−1000, 1000], mixed with equal weights. Centres (0, 0) and (1, 0), h = 1, at z = (0, 0):
    # log(½ (1 + e^{−1/2}) / (2π)).
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    score = KernelDensityScore(centres, bandwidths=(1.0,))
    expected = math.log(0.5 * (1 + math.exp(-0.5)) / (2 * math.pi))
    z = torch.zeros(3, 1, 2, dtype=torch.float64)
    torch.testing.assert_close(score(z), torch.full((3, 1), expected, dtype=torch.float64))
    # Two bandwidths: log(½ p_1 + ½ p_2); at (0, 0) with h = 2: log(½ (1 + e^{−1/8}) / (8π)).
    two = KernelDensityScore(centres, bandwidths=(1.0, 2.0))
    wide = math.log(0.5 * (1 + math.exp(-1 / 8)) / (8 * math.pi))
    mixed = math.log(0.5 * math.exp(expected) + 0.5 * math.exp(wide))
    torch.testing.assert_close(two(z[0, 0]), torch.tensor(mixed, dtype=torch.float64))
    # Far from every centre at h = 0.005 the log density is about −4·10⁶: clamped to −1000, so
    # with one bandwidth the score is −1000 and its gradient zero.
    far = torch.tensor([10.0, 10.0], dtype=torch.float64, requires_grad=True)
    sharp = KernelDensityScore(centres, bandwidths=(0.005,))
    value = sharp(far)
    value.backward()
    assert float(value.detach()) == -1000.0 and float(far.grad.abs().sum()) == 0.0
    assert not dict(score.state_dict())  # the samples are not saved with the weights
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        KernelDensityScore(torch.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        score(torch.zeros(4, 3))


def _kde_by_autograd(score: KernelDensityScore, z: torch.Tensor) -> torch.Tensor:
    """KernelDensityScore as it was before issue 23: the broadcast [m, N, D] distances and one
    autograd logsumexp per bandwidth."""
    flat = z.reshape(-1, score.samples.shape[1])
    samples, hs = score.samples.to(flat.dtype), score.bandwidths.to(flat.dtype)
    log_norm = torch.log(2 * math.pi * hs.square()) + math.log(samples.shape[0])  # D = 2
    d2 = (flat[:, None, :] - samples).square().sum(-1)
    per_h = torch.stack([torch.logsumexp(d2 / (-2 * h * h), dim=-1) for h in hs])
    per_h = (per_h - log_norm[:, None]).clamp(-score.clamp, score.clamp)
    return (torch.logsumexp(per_h, dim=0) - math.log(len(hs))).reshape(z.shape[:-1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_density_score_equals_the_autograd_formulation(dtype):
    # The official bandwidths and 2,000 pinwheel samples; latents on the arms, just off them,
    # and far away (clamped at -1000 for the sharp bandwidths): values and gradients agree with
    # the plain autograd formulation (float64 to 1e-10, float32 to rounding).
    generator = torch.Generator().manual_seed(0)
    samples = official_prior_samples("pinwheel", 2000, generator, dtype=dtype)
    score = KernelDensityScore(samples)
    near = samples[:50] + 0.01 * torch.randn(50, 2, generator=generator, dtype=dtype)
    z = torch.cat([near, 3 * torch.randn(70, 2, generator=generator, dtype=dtype)])
    z = z.reshape(2, 60, 2).requires_grad_()
    weights = torch.rand(2, 60, generator=generator, dtype=dtype)
    fast = score(z)
    (grad_fast,) = torch.autograd.grad((fast * weights).sum(), z)
    slow = _kde_by_autograd(score, z)
    (grad_slow,) = torch.autograd.grad((slow * weights).sum(), z)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-3}
    torch.testing.assert_close(fast, slow, **tol)
    torch.testing.assert_close(grad_fast, grad_slow, **tol)
    assert (slow.detach() == -1000).any() or (slow.detach() < -100).any()


def _per_partition_by_autograd(prior: SmoothedPrior, z: torch.Tensor) -> torch.Tensor:
    """SmoothedPrior.log_prob_per_partition as it was before issue 23 (one block)."""
    flat = z.reshape(-1, 2)
    centres, hs = prior.centres.to(flat.dtype), prior.bandwidths.to(flat.dtype)
    per = centres.shape[1]
    log_norm = torch.log(2 * math.pi * hs.square()) + math.log(per * len(hs))
    d2 = (flat[:, None, None, :] - centres).square().sum(-1)  # [m, L, per]
    per_h = torch.stack([torch.logsumexp(d2 / (-2 * h * h), dim=-1) for h in hs])
    per_h = per_h - log_norm[:, None, None]
    return torch.logsumexp(per_h, dim=0).reshape(*z.shape[:-1], prior.num_partitions)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_smoothed_prior_densities_equal_the_autograd_formulation(dtype):
    prior = SmoothedPrior(PinwheelPrior(), num_samples=500).to(dtype)
    generator = torch.Generator().manual_seed(1)
    near = prior.centres.reshape(-1, 2)[::10] + 0.01 * torch.randn(50, 2, generator=generator)
    z = torch.cat([near, 3 * torch.randn(30, 2, generator=generator)]).to(dtype)
    z = z.reshape(4, 20, 2).requires_grad_()
    weights = torch.rand(4, 20, 10, generator=generator).to(dtype)
    fast = prior.log_prob_per_partition(z)
    (grad_fast,) = torch.autograd.grad((fast * weights).sum(), z)
    slow = _per_partition_by_autograd(prior, z)
    (grad_slow,) = torch.autograd.grad((slow * weights).sum(), z)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-3}
    torch.testing.assert_close(fast, slow, **tol)
    torch.testing.assert_close(grad_fast, grad_slow, **tol)
