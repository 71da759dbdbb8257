"""Continuous-time noise schedules: γ(t) monotone with the set endpoints, q(z_t | x) moments,
discrete views, and the interpolated table of a pretrained network."""

import math

import pytest
import torch

from diffvi.diffusion import (
    CosineSchedule,
    DiscreteSchedule,
    InterpolatedSchedule,
    LearnableScalarSchedule,
    LearnedSchedule,
    LinearSchedule,
    build_diffusion_model,
    build_schedule,
)

GRID = torch.linspace(0, 1, 2001, dtype=torch.float64)


@pytest.mark.parametrize("name", ["linear", "cosine", "learned", "learnable-scalar"])
def test_gamma_is_non_decreasing_on_a_fine_grid(name):
    gamma = build_schedule(name).gamma(GRID).detach()
    assert torch.isfinite(gamma).all()
    assert (gamma.diff() >= -1e-9).all()
    assert gamma[-1] - gamma[0] > 10


def test_learned_schedule_starts_at_the_vdm_endpoints_and_keeps_set_endpoints_after_training():
    schedule = LearnedSchedule(gamma_min=-13.3, gamma_max=5.0, hidden=64)
    assert schedule.gamma_min == pytest.approx(-13.3, abs=1e-5)
    assert schedule.gamma_max == pytest.approx(5.0, abs=1e-5)
    # Scramble the network and move the endpoints: γ stays monotone between the new endpoints.
    with torch.no_grad():
        for p in schedule.parameters():
            p.add_(torch.randn_like(p))
        schedule.gamma_0.fill_(-7.0)
        schedule.gamma_1.fill_(3.0)
    gamma = schedule.gamma(GRID.float()).detach()
    assert gamma[0].item() == pytest.approx(-7.0, abs=1e-4)
    assert gamma[-1].item() == pytest.approx(3.0, abs=1e-4)
    assert (gamma.diff() >= -1e-5).all()


def test_learnable_scalar_schedule_is_linear_between_vdms_initial_endpoints():
    # VDM's NoiseSchedule_Scalar: γ(t) = b + |w| t, b = γ_min = −13.3, w = γ_max − γ_min = 18.3.
    schedule = build_schedule("learnable-scalar").double()
    assert isinstance(schedule, LearnableScalarSchedule)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    expected = torch.tensor([-13.3, -8.725, -4.15, 5.0], dtype=torch.float64)
    # (b and w are initialised in float32: −13.3 and 18.3 to within 1e-6.)
    torch.testing.assert_close(schedule.gamma(t), expected, rtol=0, atol=2e-6)
    assert schedule.gamma_min == pytest.approx(-13.3, abs=1e-6)
    assert schedule.gamma_max == pytest.approx(5.0, abs=2e-6)
    gamma, slope = schedule.gamma_and_derivative(t)
    torch.testing.assert_close(
        slope, torch.full((4,), 18.3, dtype=torch.float64), atol=1e-6, rtol=0
    )
    # α² = sigmoid(−γ): at t = 1, 1/(1 + e⁵) = 0.0066929; at t = 0, 1/(1 + e^−13.3) ≈ 1 − 1.7e-6.
    alpha, sigma = schedule.alpha_sigma(t[[0, 3]])
    assert alpha[1].item() ** 2 == pytest.approx(1 / (1 + math.exp(5.0)), rel=1e-5)
    assert sigma[0].item() ** 2 == pytest.approx(1 / (1 + math.exp(13.3)), rel=1e-5)
    # Any w gives a non-decreasing γ: w = −4, b = −2 is γ(t) = −2 + 4 t.
    with torch.no_grad():
        schedule.start.fill_(-2.0)
        schedule.slope.fill_(-4.0)
    torch.testing.assert_close(schedule.gamma(t), -2 + 4 * t)
    assert schedule.gamma_1.item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="gamma_min < gamma_max"):
        LearnableScalarSchedule(gamma_min=1.0, gamma_max=1.0)


def test_learnable_scalar_schedule_passes_gradients_to_both_endpoints():
    # L = γ(0.5) + 3 γ'(0.2) = b + |w|/2 + 3|w|: ∂L/∂b = 1, ∂L/∂w = sign(w) (1/2 + 3) = 3.5 at
    # w = 18.3 and −3.5 at w = −4 (the derivative reaches w through the VDM loss's γ'(t)).
    schedule = LearnableScalarSchedule().double()
    for w, dw in ((18.3, 3.5), (-4.0, -3.5)):
        with torch.no_grad():
            schedule.slope.fill_(w)
        gamma = schedule.gamma(torch.tensor(0.5, dtype=torch.float64))
        _, slope = schedule.gamma_and_derivative(torch.tensor([0.2], dtype=torch.float64))
        db, dw_got = torch.autograd.grad(gamma + 3 * slope.sum(), [schedule.start, schedule.slope])
        assert db.item() == pytest.approx(1.0) and dw_got.item() == pytest.approx(dw)


def test_learnable_scalar_schedule_survives_the_spec_and_state_dict_round_trip():
    spec = {
        "kind": "diffusion", "schedule": {"name": "learnable-scalar"}, "loss_type": "vdm",
        "denoiser": {"name": "mlp", "dim": 2, "hidden": [8], "time_dim": 8},
        "image": False,
    }  # fmt: skip
    trained = build_diffusion_model(spec)
    with torch.no_grad():
        trained.schedule.start.fill_(-11.0)
        trained.schedule.slope.fill_(15.5)
    rebuilt = build_diffusion_model(spec)
    assert rebuilt.schedule.gamma_max == pytest.approx(5.0, abs=1e-6)  # a fresh initialisation
    rebuilt.load_state_dict(trained.state_dict())
    assert sorted(k for k in trained.state_dict() if k.startswith("schedule.")) == [
        "schedule.slope", "schedule.start",
    ]  # fmt: skip
    assert rebuilt.schedule.gamma_min == pytest.approx(-11.0)
    assert rebuilt.schedule.gamma_max == pytest.approx(4.5)


def test_linear_schedule_endpoints_are_ddpm_first_and_last_steps():
    schedule = LinearSchedule()
    assert schedule.gamma_min == pytest.approx(math.log(1e-4 / (1 - 1e-4)), abs=1e-3)
    ddpm = DiscreteSchedule.linear(1000)
    view = schedule.discretize(1000)
    # First order in β: ᾱ agrees with Π(1 − β) to within Σβ²/2 ≈ 0.07 in log space.
    log_ratio = (view.alpha_bars.log() - ddpm.alpha_bars.log()).abs()
    assert log_ratio.max() < 0.08
    assert view.betas[0].item() == pytest.approx(1e-4, rel=1e-3)
    assert view.betas[-1].item() == pytest.approx(0.02, rel=0.05)


def test_cosine_view_matches_nichol_dhariwal_alpha_bar_formula():
    T, s = 1000, 0.008
    view = CosineSchedule(s=s, num_steps=T).discretize(T)
    steps = torch.arange(1, T, dtype=torch.float64)
    f = torch.cos((steps / T + s) / (1 + s) * math.pi / 2) ** 2
    expected = f / math.cos(s / (1 + s) * math.pi / 2) ** 2
    got = view.alpha_bars[:-1].double()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert view.betas[-1].item() == pytest.approx(0.999, abs=1e-4)  # the clipped last β


@pytest.mark.parametrize("name", ["linear", "cosine", "learned", "learnable-scalar"])
def test_gamma_derivative_matches_finite_differences(name):
    schedule = build_schedule(name).double()
    t = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=torch.float64)
    _, slope = schedule.gamma_and_derivative(t)
    h = 1e-6
    numeric = (schedule.gamma(t + h) - schedule.gamma(t - h)) / (2 * h)
    assert torch.allclose(slope.detach(), numeric.detach(), rtol=1e-5)


def test_learned_schedule_derivative_carries_gradient_to_its_parameters():
    schedule = LearnedSchedule(hidden=16)
    _, slope = schedule.gamma_and_derivative(torch.rand(8))
    slope.sum().backward()
    assert schedule.l2.weight.grad is not None and schedule.l2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["linear", "cosine", "learned", "learnable-scalar"])
def test_q_zt_given_x_has_mean_alpha_x_and_variance_sigma_squared(name):
    schedule = build_schedule(name, **({"hidden": 32} if name == "learned" else {}))
    gen = torch.Generator().manual_seed(0)
    n, x0 = 200_000, 1.7
    t = torch.full((n,), 0.6)
    z = schedule.add_noise(torch.full((n, 1), x0), t, torch.randn(n, 1, generator=gen))
    gamma = schedule.gamma(torch.tensor(0.6)).detach()
    alpha2, sigma2 = torch.sigmoid(-gamma).item(), torch.sigmoid(gamma).item()
    assert alpha2 + sigma2 == pytest.approx(1.0)  # variance preserving
    se = math.sqrt(sigma2 / n)
    assert z.mean().item() == pytest.approx(math.sqrt(alpha2) * x0, abs=5 * se)
    assert z.var().item() == pytest.approx(sigma2, rel=0.02)


def test_discretize_gives_a_valid_discrete_schedule_with_matching_alpha_bars():
    schedule = build_schedule("learned")
    view = schedule.discretize(10)
    t = torch.linspace(0, 1, 10)
    expected = torch.sigmoid(-schedule.gamma(t)).detach()
    assert torch.allclose(view.alpha_bars, expected, rtol=1e-5, atol=1e-9)
    assert ((view.betas > 0) & (view.betas < 1)).all()


def test_bad_schedule_arguments_raise_value_error():
    with pytest.raises(ValueError, match="schedule must be one of"):
        build_schedule("sigmoid")
    with pytest.raises(ValueError, match="gamma_min < gamma_max"):
        LearnedSchedule(gamma_min=5.0, gamma_max=-1.0)
    with pytest.raises(ValueError, match="t must have shape"):
        LinearSchedule().add_noise(torch.zeros(3, 2), torch.zeros(2), torch.zeros(3, 2))


def test_interpolated_schedule_hits_the_table_at_every_training_step_and_is_monotone():
    alpha_bars = DiscreteSchedule.linear(1000).alpha_bars.double()
    schedule = InterpolatedSchedule(alpha_bars)
    assert schedule.num_steps == 1000
    n = torch.arange(1000, dtype=torch.float64)
    alpha, _ = schedule.alpha_sigma(n / 999)
    assert torch.allclose(alpha**2, alpha_bars, rtol=1e-12)
    gamma = schedule.gamma(GRID)
    assert (gamma.diff() > 0).all()
    # Linear in γ between two steps: the midpoint of steps 10 and 11 is the mean of their γs.
    mid = schedule.gamma(torch.tensor(10.5 / 999, dtype=torch.float64))
    assert mid.item() == pytest.approx(schedule.gammas[10:12].mean().item(), rel=1e-12)
    # It rebuilds from a spec, and its γ'(t) is (N − 1) Δγ_n between the steps.
    rebuilt = build_schedule("interpolated", alphas_cumprod=alpha_bars.tolist())
    assert torch.allclose(rebuilt.gamma(GRID), gamma)
    _, slope = schedule.gamma_and_derivative(torch.tensor([10.5 / 999], dtype=torch.float64))
    expected = 999 * (schedule.gammas[11] - schedule.gammas[10])
    assert slope.item() == pytest.approx(expected.item(), rel=1e-9)


def test_interpolated_schedule_refuses_tables_that_are_not_a_noising_schedule():
    with pytest.raises(ValueError, match=r"shape \[N\] with N >= 2"):
        InterpolatedSchedule(torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"lie in \(0, 1\)"):
        InterpolatedSchedule(torch.tensor([0.9, 0.5, 0.0]))  # zero terminal SNR
    with pytest.raises(ValueError, match="strictly decreasing"):
        InterpolatedSchedule(torch.tensor([0.9, 0.95, 0.5]))
