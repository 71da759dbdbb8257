"""DDPM and DDIM with an exact denoiser reproduce N(m, Σ); DDIM with η = 0 is deterministic;
the VDM bound of the exact model is the Gaussian's entropy."""

import math

import pytest
import torch
from gaussian_data import COV, MEAN, ExactGaussianDenoiser

from diffvi.diffusion import DiffusionModel, build_schedule, ddim_step


def exact_model(schedule_name: str = "cosine") -> DiffusionModel:
    schedule = build_schedule(schedule_name).double()
    return DiffusionModel(schedule, ExactGaussianDenoiser(schedule), image=False)


@pytest.mark.parametrize(
    ("schedule", "sampler", "steps"),
    [("linear", "ddpm", 1000), ("cosine", "ddpm", 250), ("cosine", "ddim", 100)],
)
def test_exact_denoiser_samples_match_the_gaussian_mean_and_covariance(schedule, sampler, steps):
    model = exact_model(schedule)
    n = 20_000
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    x = model.sample((n, 2), steps=steps, sampler=sampler, generator=gen, noise=noise)
    # Standard errors: mean √(Σ_ii / n) ≈ 0.007; covariance entries ≈ √(2/n) Σ_ii ≈ 0.01.
    assert torch.allclose(x.mean(0), MEAN, atol=0.03)
    assert torch.allclose(torch.cov(x.T), COV, atol=0.04)


def test_ddim_with_eta_zero_is_deterministic_given_the_starting_noise():
    model = exact_model()
    noise = torch.randn(64, 2, dtype=torch.float64)
    a = model.sample(
        (64, 2), steps=20, sampler="ddim", generator=torch.Generator().manual_seed(0), noise=noise
    )
    b = model.sample(
        (64, 2), steps=20, sampler="ddim", generator=torch.Generator().manual_seed(9), noise=noise
    )
    assert torch.equal(a, b)
    c = model.sample(
        (64, 2), steps=20, sampler="ddpm", generator=torch.Generator().manual_seed(9), noise=noise
    )
    assert not torch.allclose(a, c)


def test_ddpm_sampling_reproduces_with_the_same_seed():
    model = exact_model()
    a = model.sample((16, 2), steps=10, generator=torch.Generator().manual_seed(3))
    b = model.sample((16, 2), steps=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_eta_one_step_has_the_forward_posterior_moments():
    """From z_t with the true x, the η = 1 step draws from q(z_s | z_t, x)."""
    schedule = build_schedule("linear").double()
    t, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    (a_t, s_t), (a_s, s_s) = schedule.alpha_sigma(t), schedule.alpha_sigma(s)
    x, eps = torch.tensor(0.8, dtype=torch.float64), torch.tensor(-0.3, dtype=torch.float64)
    z_t = a_t * x + s_t * eps
    n = 200_000
    z = z_t.expand(n, 1).clone()
    out = ddim_step(
        schedule, z, eps.expand(n, 1), t, s, eta=1.0, generator=torch.Generator().manual_seed(0)
    )
    # q(z_s | z_t, x): α_{t|s} = α_t/α_s, σ²_{t|s} = σ_t² − α²_{t|s} σ_s² (VDM App. A).
    a_ts = a_t / a_s
    v_ts = s_t**2 - a_ts**2 * s_s**2
    mean = (a_ts * s_s**2 / s_t**2) * z_t + (a_s * v_ts / s_t**2) * x
    var = v_ts * s_s**2 / s_t**2
    assert out.mean().item() == pytest.approx(mean.item(), abs=5 * math.sqrt(var / n))
    assert out.var().item() == pytest.approx(var.item(), rel=0.02)


def test_vdm_bound_of_the_exact_model_is_close_to_the_gaussian_entropy():
    model = exact_model("learned")  # γ from −13.3 to 5: both endpoint gaps are small
    gen = torch.Generator().manual_seed(0)
    x = (
        MEAN
        + torch.randn(20_000, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(COV).T
    )
    nats = model.bound(x, generator=gen).mean().item() * 2 * math.log(2)
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * COV).item()
    assert nats >= entropy - 0.05  # a bound (up to Monte Carlo error)
    assert nats == pytest.approx(entropy, abs=0.1)


def test_sampling_rejects_bad_arguments():
    model = exact_model()
    with pytest.raises(ValueError, match="sampler must be one of"):
        model.sample((2, 2), sampler="euler")
    with pytest.raises(ValueError, match="steps must be >= 2"):
        model.sample((2, 2), steps=1)
    with pytest.raises(ValueError, match="noise must have shape"):
        model.sample((2, 2), noise=torch.zeros(3, 2, dtype=torch.float64))


def test_a_custom_time_grid_is_used_and_validated():
    model = exact_model()
    noise = torch.randn(8, 2, dtype=torch.float64)
    even = model.sample((8, 2), steps=5, sampler="ddim", noise=noise)
    same = model.sample((8, 2), steps=5, sampler="ddim", noise=noise, times=torch.linspace(1, 0, 5))
    other = model.sample(
        (8, 2), steps=5, sampler="ddim", noise=noise, times=torch.tensor([1.0, 0.9, 0.5, 0.1, 0.0])
    )
    assert torch.allclose(even, same) and not torch.allclose(even, other)
    with pytest.raises(ValueError, match="decreasing"):
        model.sample((8, 2), steps=3, times=torch.tensor([0.0, 0.5, 1.0]))
