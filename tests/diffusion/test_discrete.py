"""Pretrained discrete-time networks as continuous-time denoisers, without diffusers: the
network is called at its own integer timesteps on the grid t = n / (N − 1); ε-, x₀- and
v-predictions all give the true ε for an oracle network; a learned variance is split off and
interpolates log β and log β̃; DDIM on diffusers' timesteps is the discrete DDIM loop."""

import math

import pytest
import torch
from torch import Tensor, nn

from diffvi.diffusion import (
    DiscreteSchedule,
    DiscreteTimeDenoiser,
    InterpolatedSchedule,
    discrete_diffusion_model,
    discrete_times,
    linear_betas,
    named_betas,
)

N = 1000
ALPHA_BARS = torch.cumprod(1 - linear_betas(N), 0)  # float64


class Oracle(nn.Module):
    """Returns, at integer timesteps, the exact target of ``prediction`` for the x₀ and ε that
    made its input (and ``values`` as learned-range channels); records the timesteps."""

    def __init__(self, x0: Tensor, eps: Tensor, prediction: str, values: Tensor | None = None):
        super().__init__()
        self.x0, self.eps, self.prediction, self.values = x0, eps, prediction, values
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        self.seen.append(timesteps)
        a_bar = ALPHA_BARS[timesteps.long()].view(-1, 1, 1, 1).to(x.dtype)
        alpha, sigma = a_bar.sqrt(), (1 - a_bar).sqrt()
        target = {
            "epsilon": self.eps,
            "sample": self.x0,
            "v_prediction": alpha * self.eps - sigma * self.x0,
        }[self.prediction]
        return target if self.values is None else torch.cat([target, self.values], 1)


def noisy(n: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """x₀, ε and x_n = √ᾱ_n x₀ + √(1 − ᾱ_n) ε for steps ``n [B]`` (float64 images 3×4×4)."""
    x0 = torch.rand(len(n), 3, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn(len(n), 3, 4, 4, generator=generator, dtype=torch.float64)
    a_bar = ALPHA_BARS[n].view(-1, 1, 1, 1)
    return x0, eps, a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * eps


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_every_prediction_type_gives_the_true_noise_at_the_networks_own_timesteps(prediction):
    g = torch.Generator().manual_seed(0)
    n = torch.tensor([0, 1, 250, 998, 999])
    x0, eps, z = noisy(n, g)
    oracle = Oracle(x0, eps, prediction)
    model = discrete_diffusion_model(oracle, ALPHA_BARS, prediction)
    t = (n / (N - 1)).float()  # float32 times: the network still sees exactly n
    got = model.predict_noise(z, t.double())
    assert torch.equal(oracle.seen[-1], n.float())
    assert torch.allclose(got, eps, atol=1e-6)
    model.predict_noise(z, t)
    assert torch.equal(oracle.seen[-1], n.float())
    assert torch.allclose(model.predict_x0(z, t.double()), x0, atol=1e-4)


def test_a_learned_variance_is_split_off_and_interpolates_beta_and_beta_tilde():
    g = torch.Generator().manual_seed(1)
    n = torch.tensor([1, 10, 500, 999])
    x0, eps, z = noisy(n, g)
    values = torch.rand(4, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    model = discrete_diffusion_model(
        Oracle(x0, eps, "epsilon", values), ALPHA_BARS, "epsilon", True
    )
    t = n.double() / (N - 1)
    assert torch.allclose(model.predict_noise(z, t), eps)
    noise, got_values = model.denoiser.predict(z, t)
    assert torch.equal(noise, eps) and torch.equal(got_values, values)
    # One training step n → n − 1: v = 1 gives log β_n, v = −1 gives log β̃_n (DDPM's two;
    # the reference keeps them in float32).
    reference = DiscreteSchedule(linear_betas(N))
    s = (n - 1).double() / (N - 1)
    ones = torch.ones(4, 1, 1, 1, dtype=torch.float64)
    upper = model.denoiser.reverse_log_variance(ones, t, s).flatten()
    lower = model.denoiser.reverse_log_variance(-ones, t, s).flatten()
    assert torch.allclose(upper, reference.betas.double()[n].log(), rtol=1e-6)
    assert torch.allclose(lower, reference.posterior_variances.double()[n].log(), rtol=1e-6)
    middle = model.denoiser.reverse_log_variance(0 * ones, t, s).flatten()
    assert torch.allclose(middle, (upper + lower) / 2)


def test_variance_types_name_the_ancestral_variance_and_diffusers_learned_is_sigma_itself():
    schedule = InterpolatedSchedule(ALPHA_BARS)
    expected = {
        "fixed_small": "fixed_small", "fixed_small_log": "fixed_small",
        "fixed_large": "fixed_large", "fixed_large_log": "fixed_large",
        "learned": "learned", "learned_range": "learned",
    }  # fmt: skip
    for variance_type, reverse in expected.items():
        denoiser = DiscreteTimeDenoiser(Toy(), schedule, variance_type=variance_type)
        assert denoiser.reverse_variance == reverse, variance_type
        assert denoiser.learned_variance == (reverse == "learned")
    assert DiscreteTimeDenoiser(Toy(), schedule, learned_variance=True).variance_type == (
        "learned_range"
    )
    # diffusers' "learned": the values are Σ (DDPMScheduler._get_variance returns them).
    learned = DiscreteTimeDenoiser(Toy(), schedule, variance_type="learned")
    values = torch.tensor([1e-4, 0.02, 0.5], dtype=torch.float64).view(3, 1, 1, 1)
    t, s = torch.full((3,), 0.5, dtype=torch.float64), torch.full((3,), 0.4, dtype=torch.float64)
    assert torch.allclose(learned.reverse_log_variance(values, t, s), values.log())
    with pytest.raises(ValueError, match="variance_type must be one of"):
        DiscreteTimeDenoiser(Toy(), schedule, variance_type="large")
    with pytest.raises(ValueError, match="learned_variance=True needs a learned variance_type"):
        DiscreteTimeDenoiser(Toy(), schedule, learned_variance=True, variance_type="fixed_large")


class Toy(nn.Module):
    """A smooth deterministic network of (x, timesteps)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        return torch.tanh(self.conv(x)) * torch.cos(timesteps / 300).view(-1, 1, 1, 1)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_ddim_on_diffusers_leading_timesteps_is_the_discrete_ddim_loop(prediction):
    torch.manual_seed(0)
    net = Toy().double()
    model = discrete_diffusion_model(net, ALPHA_BARS, prediction)
    steps = 10
    times = discrete_times(steps, N)
    taus = [int(round(v)) for v in (times * (N - 1)).tolist()]
    assert taus == list(range(900, -1, -100))
    noise = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    ours = model.sample(noise.shape, steps, "ddim", noise=noise, clip=False, times=times)
    # DDIM (Song et al. 2021, eq. 12, η = 0) on the table; the last step lands on ᾱ = 1.
    x = noise
    with torch.no_grad():
        for k, tau in enumerate(taus):
            a_bar = ALPHA_BARS[tau]
            prev = ALPHA_BARS[taus[k + 1]] if k + 1 < len(taus) else torch.tensor(1.0)
            out = net(x, torch.full((2,), float(tau), dtype=torch.float64))
            # v = α ε − σ x₀ and x = α x₀ + σ ε give ε = α v + σ x.
            v_eps = a_bar.sqrt() * out + (1 - a_bar).sqrt() * x
            eps = out if prediction == "epsilon" else v_eps
            x0 = (x - (1 - a_bar).sqrt() * eps) / a_bar.sqrt()
            x = prev.sqrt() * x0 + (1 - prev).sqrt() * eps
    assert torch.allclose(ours, ((x + 1) / 2).clamp(0, 1), atol=1e-10)


def test_fractional_times_call_the_network_between_its_steps():
    model = discrete_diffusion_model(Toy(), ALPHA_BARS)
    assert torch.allclose(
        model.denoiser.network_timesteps(torch.tensor([0.5, 1.0, 0.0])),
        torch.tensor([499.5, 999.0, 0.0]),
    )


def test_spacings_and_named_betas():
    assert torch.equal(discrete_times(4, 10, "linspace") * 9, torch.tensor([9.0, 6, 3, 0]))
    assert torch.equal(
        (discrete_times(4, 10, "trailing") * 9).round(), torch.tensor([9.0, 7, 4, 1])
    )
    assert torch.equal(discrete_times(3, 10, "leading", offset=1) * 9, torch.tensor([7.0, 4, 1]))
    with pytest.raises(ValueError, match="spacing must be one of"):
        discrete_times(4, 10, "even")
    with pytest.raises(ValueError, match=r"steps must be in \[2, 10\]"):
        discrete_times(11, 10)
    assert torch.equal(named_betas("linear", N), linear_betas(N))
    assert named_betas("scaled_linear", 3, 0.01, 0.09).tolist() == pytest.approx([0.01, 0.04, 0.09])
    cosine = named_betas("squaredcos_cap_v2", N)
    f = [math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2 for tau in (0, 1 / N)]
    assert cosine[-1].item() == 0.999 and cosine[0].item() == pytest.approx(1 - f[1] / f[0])
    with pytest.raises(ValueError, match="beta schedule must be one of"):
        named_betas("quadratic", N)


def test_bad_networks_and_arguments_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="prediction must be one of"):
        DiscreteTimeDenoiser(Toy(), InterpolatedSchedule(ALPHA_BARS), "score")
    model = discrete_diffusion_model(Toy(), ALPHA_BARS, learned_variance=True)
    with pytest.raises(ValueError, match=r"must return shape \[2, 6, 4, 4\], got \[2, 3, 4, 4\]"):
        model.predict_noise(torch.zeros(2, 3, 4, 4), torch.full((2,), 0.5))
