"""DDPM and DDIM with an exact denoiser reproduce N(m, Σ); DDIM with η = 0 is deterministic;
the VDM bound of the exact model is the Gaussian's entropy; a step log-variance changes only
the ancestral step's noise; the model's clip_sample, clip_range and variance options."""

import math

import pytest
import torch
from gaussian_data import COV, MEAN, ExactGaussianDenoiser

from diffvi.diffusion import DiffusionModel, build_schedule, ddim_step, sample_chain
from diffvi.diffusion.samplers import step_log_betas


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


def test_a_step_log_variance_replaces_only_the_noise_of_the_ancestral_step():
    schedule = build_schedule("cosine").double()
    t, s = torch.full((3,), 0.6, dtype=torch.float64), torch.full((3,), 0.45, dtype=torch.float64)
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def step(log_variance=None):
        gen = torch.Generator().manual_seed(2)
        return ddim_step(schedule, z, eps, t, s, 1.0, gen, log_variance=log_variance)

    log_beta, log_beta_tilde = step_log_betas(schedule.gamma(t), schedule.gamma(s))
    assert torch.allclose(step(log_beta_tilde), step(), rtol=0, atol=1e-14)  # β̃ is η = 1's c²
    assert log_beta.gt(log_beta_tilde).all()
    # Four times the variance: the mean stays, the noise doubles.
    doubled = step(log_beta_tilde + math.log(4))
    mean = 2 * step() - doubled
    assert torch.allclose(step(log_beta_tilde + math.log(9)), mean + 3 * (step() - mean))
    with pytest.raises(ValueError, match="log_variance needs the ancestral step"):
        ddim_step(schedule, z, eps, t, s, 0.5, log_variance=log_beta)
    with pytest.raises(ValueError, match="step_log_variance needs the ancestral sampler"):
        sample_chain(schedule, lambda z, t: (z, None), z, 3, 0.0, step_log_variance=print)


def test_sample_clamps_by_the_models_clip_sample_and_checks_its_variance_option():
    model = exact_model()
    assert not model.clip_sample and model.reverse_variance == "fixed_small"
    image_model = DiffusionModel(model.schedule, model.denoiser)
    assert image_model.clip_sample and image_model.clip_range == 1.0
    noise = 3 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    free = model.sample((64, 2), steps=5, sampler="ddim", noise=noise)
    assert free.abs().max() > 0.5
    half = DiffusionModel(model.schedule, model.denoiser, image=False, clip_sample=True,
                          clip_range=0.5)  # fmt: skip
    clipped = half.sample((64, 2), steps=5, sampler="ddim", noise=noise)
    assert clipped.abs().max() <= 0.5 and not torch.allclose(clipped, free)
    assert torch.equal(half.sample((64, 2), 5, "ddim", noise=noise, clip=False), free)
    with pytest.raises(ValueError, match="clip_range must be > 0"):
        DiffusionModel(model.schedule, model.denoiser, clip_range=0)
    with pytest.raises(ValueError, match=r"variance must be one of \['fixed_small'"):
        model.sample((2, 2), steps=3, variance="large")
    with pytest.raises(ValueError, match="needs a network with a learned variance"):
        model.sample((2, 2), steps=3, variance="learned")
    with pytest.raises(ValueError, match="'fixed_large' is the ancestral step's"):
        model.sample((2, 2), steps=3, sampler="ddim", variance="fixed_large")
    # β instead of β̃: the same draws, wider steps (diffusers' fixed_large: tests/diffusion/
    # test_hub.py).
    draws = [
        model.sample((64, 2), 4, noise=noise, generator=torch.Generator().manual_seed(5),
                     variance=variance)
        for variance in ("fixed_small", "fixed_large", None)
    ]  # fmt: skip
    assert torch.equal(draws[0], draws[2]) and not torch.allclose(draws[0], draws[1])
