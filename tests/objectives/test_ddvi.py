"""DDVI: the auxiliary bound against exact log p(x), its T = 0 reduction to the ELBO, the sleep
term (what it trains and what it leaves alone), and a bimodal posterior a Gaussian cannot fit."""

import math

import numpy as np
import pytest
import torch
from linear_gaussian import AffineGaussianEncoder
from torch import Tensor, nn
from torch.distributions import Normal

from diffvi.diffusion import DiscreteSchedule
from diffvi.distributions import GaussianLikelihood, KernelDensityScore, MixturePrior
from diffvi.models import VAE
from diffvi.nn import MLP
from diffvi.objectives import (
    DDVI,
    ELBO,
    OBJECTIVES,
    OfficialDDVI,
    OfficialDDVIStage2,
    build_objective,
)
from diffvi.objectives.base import log_importance_weights
from diffvi.posteriors import (
    DiffusionPosterior,
    GaussianPosterior,
    PosteriorSample,
    build_diffusion_posterior,
)

F64 = torch.float64


def mean_and_stderr(values: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard error over axis 0."""
    return values.mean(0), values.std(0) / math.sqrt(values.shape[0])


# -- the bound is a lower bound on log p(x) -------------------------------------------------------


class GaussianOracleDenoiser(nn.Module):
    """The Bayes-optimal ε-prediction for y_0 ~ N(m, diag S): E[ε | y_t] =
    √(1−ᾱ_t) (y_t − √ᾱ_t m) / (ᾱ_t S + 1 − ᾱ_t), with m(x) arriving as the context and t
    recovered from the posterior's time features (nearest row)."""

    def __init__(self, posterior_var: Tensor, time_features: Tensor, alpha_bars: Tensor):
        super().__init__()
        self.d, self.e = posterior_var.shape[0], time_features.shape[1]
        self.register_buffer("var", posterior_var)
        self.register_buffer("features", time_features)
        self.register_buffer("alpha_bars", alpha_bars)

    def forward(self, h: Tensor) -> Tensor:
        y, temb, m = h.split([self.d, self.e, self.d], dim=-1)
        t = torch.cdist(temb.reshape(-1, self.e), self.features).argmin(-1).reshape(y.shape[:-1])
        ab = self.alpha_bars[t].unsqueeze(-1)
        return (1 - ab).sqrt() * (y - ab.sqrt() * m) / (ab * self.var + 1 - ab)


def near_exact_posterior(lg, num_steps: int, beta_end: float = 0.02) -> DiffusionPosterior:
    """q(y_T|x) = r(y_T|x) under the exact posterior, and exact reverse means: q(y, z|x) differs
    from p(z|x) r(y|z) only through the fixed reverse variances σ_t² = β_t."""
    schedule = DiscreteSchedule.linear(num_steps, beta_end=beta_end).double()
    ab_T = schedule.alpha_bars[-1]
    var = torch.diagonal(lg.S)
    encoder = AffineGaussianEncoder(
        ab_T.sqrt() * lg.A, ab_T.sqrt() * lg.c, 0.5 * (ab_T * var + 1 - ab_T).log()
    )
    context = nn.Linear(lg.data_dim, lg.latent_dim).double()  # x -> m(x) = A x + c
    with torch.no_grad():
        context.weight.copy_(lg.A)
        context.bias.copy_(lg.c)
    posterior = DiffusionPosterior(
        encoder, nn.Identity(), context, lg.latent_dim, schedule
    ).double()
    posterior.denoiser = GaussianOracleDenoiser(var, posterior.time_features, schedule.alpha_bars)
    return posterior


@pytest.mark.parametrize("beta_end", [0.02, 0.1])
def test_bound_of_a_near_exact_diffusion_posterior_is_below_and_close_to_log_px(
    linear_gaussian, beta_end
):
    lg = linear_gaussian
    x = lg.data(4)
    posterior = near_exact_posterior(lg, num_steps=10, beta_end=beta_end)
    xr = x.repeat(500, 1)  # one chain per copy; DDVI averages its K samples, so K = 1 here
    torch.manual_seed(0)
    with torch.no_grad():
        bound = DDVI(beta_sleep=0)(lg.model, posterior, xr).bound.view(500, 4)
    mean, se = mean_and_stderr(bound)
    log_px = lg.log_px(x)
    assert (mean <= log_px + 3 * se).all(), (mean - log_px, se)
    # not vacuous: the gap is KL(q(y, z|x) ‖ p(z|x) r(y|z)), from σ_t² = β_t alone (< 0.1 nats)
    assert (mean >= log_px - 0.15).all(), (mean - log_px, se)


def test_importance_weighted_auxiliary_bound_tends_to_log_px(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(3)
    posterior = near_exact_posterior(lg, num_steps=10, beta_end=0.1)
    torch.manual_seed(0)
    with torch.no_grad():
        s = posterior.sample(x, 2000)
        log_w = log_importance_weights(lg.model, x, s)  # [K, B]
        bound = DDVI(k=2000, beta_sleep=0)(lg.model, posterior, x).bound
    assert log_w.shape == (2000, 3)
    log_px = lg.log_px(x)
    iw = torch.logsumexp(log_w, 0) - math.log(2000)
    assert (iw > log_w.mean(0)).all()  # Jensen: the IW bound is above the mean bound
    torch.testing.assert_close(iw, log_px, rtol=0, atol=0.01)
    assert (bound < log_px).all()
    bare = PosteriorSample(z=s.z[:2], log_q=None)  # no log_q and no auxiliary densities
    with pytest.raises(ValueError, match="log_q_joint"):
        log_importance_weights(lg.model, x, bare)


@pytest.mark.parametrize("conditional", [True, False])
def test_bound_of_a_random_diffusion_posterior_is_below_log_px(linear_gaussian, conditional):
    lg = linear_gaussian
    x = lg.data(4)
    torch.manual_seed(1)
    posterior = build_diffusion_posterior(
        lg.data_dim,
        lg.latent_dim,
        num_steps=5,
        hidden=(16, 16),
        context_dim=4,
        conditional=conditional,
        beta_end=0.2,
        zero_init_denoiser=False,
    ).double()
    torch.manual_seed(2)
    with torch.no_grad():
        bound = DDVI(beta_sleep=0)(lg.model, posterior, x.repeat(2000, 1)).bound.view(2000, 4)
    mean, se = mean_and_stderr(bound)
    assert (mean <= lg.log_px(x) + 3 * se).all(), (mean - lg.log_px(x), se)


# -- T = 0: DDVI is the ELBO ----------------------------------------------------------------------


def test_with_zero_steps_the_ddvi_bound_equals_the_elbo_on_the_same_samples(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(5)
    torch.manual_seed(0)
    encoder = nn.Linear(lg.data_dim, 2 * lg.latent_dim).double()
    gaussian = GaussianPosterior([encoder], [lg.latent_dim])
    diffusion = DiffusionPosterior(
        encoder, nn.Identity(), None, lg.latent_dim, DiscreteSchedule.linear(0)
    )
    torch.manual_seed(3)
    elbo = ELBO(k=7)(lg.model, gaussian, x)
    torch.manual_seed(3)
    ddvi = DDVI(k=7, beta_sleep=0)(lg.model, diffusion, x)
    torch.testing.assert_close(ddvi.bound, elbo.bound)
    torch.testing.assert_close(ddvi.loss, elbo.loss)
    torch.manual_seed(3)
    with_sleep = DDVI(k=7)(lg.model, diffusion, x)  # the sleep term is 0 when T = 0
    torch.testing.assert_close(with_sleep.bound, elbo.bound)
    assert with_sleep.metrics["sleep"] == 0


# -- the objective's outputs ----------------------------------------------------------------------


def small_problem(conditional: bool = True, num_steps: int = 3):
    """A 2-D latent VAE with a learnable mixture prior and a diffusion posterior."""
    torch.manual_seed(0)
    model = VAE(
        (6,),
        [2],
        MLP(2, [8], 6),
        GaussianLikelihood(0.5, sigmoid_mean=False),
        prior=MixturePrior(num_components=4),
    )
    posterior = build_diffusion_posterior(
        6,
        2,
        num_steps=num_steps,
        hidden=(32, 32),
        context_dim=4,
        conditional=conditional,
        beta_end=0.2,
        zero_init_denoiser=False,
    )
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    return model, posterior, x


def test_output_shapes_metrics_and_registry():
    model, posterior, x = small_problem()
    out = DDVI(k=3)(model, posterior, x)
    assert out.loss.shape == () and out.loss.requires_grad and torch.isfinite(out.loss)
    assert out.bound.shape == (5,) and not out.bound.requires_grad
    assert set(out.metrics) == {"rec", "reg", "sleep"}
    assert all(v.shape == () and not v.requires_grad for v in out.metrics.values())
    torch.testing.assert_close(out.bound.mean(), out.metrics["rec"] + out.metrics["reg"])
    assert OBJECTIVES["ddvi"] is DDVI
    built = build_objective("ddvi", k=2, sleep_steps=3, huber=True)
    assert isinstance(built, DDVI) and built.sleep_steps == 3 and built.huber


def test_beta_reg_weights_the_loss_but_not_the_reported_bound():
    model, posterior, x = small_problem()
    outs = []
    for beta_reg in (1.0, 0.01):
        torch.manual_seed(4)
        outs.append(DDVI(k=2, beta_reg=beta_reg, beta_sleep=0)(model, posterior, x))
    torch.testing.assert_close(outs[0].bound, outs[1].bound)
    rec, reg = outs[1].metrics["rec"], outs[1].metrics["reg"]
    torch.testing.assert_close(outs[1].loss, -(rec + 0.01 * reg))
    torch.testing.assert_close(outs[0].loss, -(rec + reg))


def test_without_wake_updates_the_chain_gets_gradient_from_the_sleep_term_only():
    model, posterior, x = small_problem()
    chain = [*posterior.denoiser.parameters(), *posterior.context.parameters()]
    torch.manual_seed(5)
    live = DDVI(k=2, beta_sleep=0)(model, posterior, x)
    torch.manual_seed(5)
    frozen = DDVI(k=2, beta_sleep=0, wake_updates_chain=False)(model, posterior, x)
    torch.testing.assert_close(live.bound, frozen.bound)  # same values, other gradients
    frozen.loss.backward()
    assert all(p.grad is None for p in chain)
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in posterior.encoder.parameters()
    )
    assert all(p.grad is not None for p in model.decoder.parameters())
    posterior.zero_grad(set_to_none=True)
    DDVI(k=2, wake_updates_chain=False)(model, posterior, x).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in chain)  # from sleep
    assert not posterior._chain_frozen  # the context manager restored the flag


# -- the sleep term -------------------------------------------------------------------------------


class RecordingContext(nn.Module):
    """Wraps a context network and records whether its inputs carry gradient."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.input_requires_grad = net, []

    def forward(self, x: Tensor) -> Tensor:
        self.input_requires_grad.append(x.requires_grad)
        return self.net(x)


def test_sleep_gradient_reaches_the_posterior_and_not_the_model_and_x_hat_is_detached():
    model, posterior, _ = small_problem()
    posterior.context = RecordingContext(posterior.context)
    for sleep_x in ("sample", "mean"):
        model.zero_grad(set_to_none=True)
        posterior.zero_grad(set_to_none=True)
        loss = DDVI(sleep_steps=2, sleep_x=sleep_x).sleep_loss(model, posterior, 16)
        assert loss.shape == () and loss >= 0
        loss.backward()
        assert all(p.grad is None for p in model.parameters())  # decoder and learnable prior
        for net in (posterior.denoiser, posterior.context):
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
        assert all(p.grad is None for p in posterior.encoder.parameters())  # y_T is not slept on
    assert posterior.context.input_requires_grad == [False] * 4


def test_unconditional_sleep_draws_z_from_the_prior_only():
    model, posterior, x = small_problem(conditional=False)
    calls = []
    model.decoder.register_forward_hook(lambda *_: calls.append(1))
    DDVI().sleep_loss(model, posterior, 8)
    assert calls == []  # no fantasy x̂: the reverse steps ignore x
    DDVI()(model, posterior, x)
    assert calls == [1]  # the wake term decodes once


def test_sleep_loss_decreases_when_training_only_on_it():
    model, posterior, _ = small_problem(num_steps=5)
    objective = DDVI(sleep_x="mean")
    opt = torch.optim.Adam(posterior.parameters(), lr=3e-3)

    def held_out() -> float:  # the same fantasy pairs, steps and noise every time
        with torch.no_grad():
            return objective.sleep_loss(
                model, posterior, 512, torch.Generator().manual_seed(0)
            ).item()

    before = held_out()
    for _ in range(150):
        loss = objective.sleep_loss(model, posterior, 64)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out()
    assert 0 <= after < 0.7 * before, (before, after)


# -- bad arguments --------------------------------------------------------------------------------


def test_bad_arguments_raise_value_error(linear_gaussian):
    for options, match in [
        ({"k": 0}, "k"),
        ({"beta_reg": -1.0}, "beta_reg"),
        ({"beta_sleep": -0.5}, "beta_sleep"),
        ({"sleep_steps": 0}, "sleep_steps"),
        ({"sleep_batch": 0}, "sleep_batch"),
        ({"sleep_x": "mode"}, "sleep_x"),
    ]:
        with pytest.raises(ValueError, match=match):
            DDVI(**options)
    model, posterior, x = small_problem()
    with pytest.raises(ValueError, match="batch_size"):
        DDVI().sleep_loss(model, posterior, 0)
    posterior.sampler = "ddim"
    with pytest.raises(ValueError, match="ddim"):
        DDVI()(model, posterior, x)
    lg = linear_gaussian
    with pytest.raises(ValueError, match="DiffusionPosterior"):
        DDVI()(lg.model, lg.posterior(), lg.data(3))


# -- a bimodal posterior --------------------------------------------------------------------------
#
# p(z) = N(0, 1), p(x|z) = N(|z|, σ²): for x well above σ the posterior has two mirror-image modes
# near ±x/(1+σ²) with standard deviation σ/√(1+σ²), and
# p(x) = 2 N(x; 0, 1+σ²) Φ(x / (σ √(1+σ²))). Only q is trained, on data drawn from the model.
#
# σ = 0.5 (modes at ±1.2 for x = 1.5, sd 0.45, density at 0 under 3% of the peak's). With a
# sharper likelihood (σ ≤ 0.2) or the official small-noise schedule (β ≤ 0.02, ᾱ_T ≈ 0.9, where
# r(y_T|z) still remembers the sign of z and a Gaussian q(y_T|x) cannot straddle both), a few
# hundred steps of DDVI also end in one mode: see the module docstring of objectives/ddvi.py.

SIGMA, X_EVAL = 0.5, (1.5, 2.0)


class Abs(nn.Module):
    def forward(self, z: Tensor) -> Tensor:
        return z.abs()


def abs_model() -> VAE:
    return VAE((1,), [1], Abs(), GaussianLikelihood(scale=SIGMA, sigmoid_mean=False))


def abs_log_px(x: Tensor) -> Tensor:
    v = 1 + SIGMA**2
    tail = Normal(0.0, 1.0).cdf(x / (SIGMA * math.sqrt(v)))
    return math.log(2) + Normal(0.0, math.sqrt(v)).log_prob(x) + tail.log()


def train_q(posterior, objective, steps: int = 400, seed: int = 0) -> VAE:
    model = abs_model()
    g = torch.Generator().manual_seed(seed + 100)
    opt = torch.optim.Adam(posterior.parameters(), lr=3e-3)
    for _ in range(steps):
        z = torch.randn(128, 1, generator=g)
        x = z.abs() + SIGMA * torch.randn(128, 1, generator=g)
        loss = objective(model, posterior, x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_abs_toy_log_px_matches_numerical_integration():
    z = torch.linspace(-8, 8, 16_001, dtype=F64)
    for x in X_EVAL:
        x_t = torch.tensor(x, dtype=F64)
        log_joint = Normal(0.0, 1.0).log_prob(z) + Normal(z.abs(), SIGMA).log_prob(x_t)
        numeric = torch.logsumexp(log_joint, 0) + math.log(z[1] - z[0])
        torch.testing.assert_close(abs_log_px(torch.tensor(x, dtype=F64)), numeric)


def best_gaussian_gap(x: float) -> float:
    """min over Gaussians q of KL(q ‖ p(z|x)) = log p(x) − max ELBO, by Gauss-Hermite
    quadrature and L-BFGS from a centred and a one-mode start."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    u, w = torch.tensor(nodes, dtype=F64), torch.tensor(weights / weights.sum(), dtype=F64)
    x_t = torch.tensor(x, dtype=F64)

    def elbo(p: Tensor) -> Tensor:
        z = p[0] + p[1].exp() * u
        log_joint = Normal(0.0, 1.0).log_prob(z) + Normal(z.abs(), SIGMA).log_prob(x_t)
        return (w * log_joint).sum() + p[1] + 0.5 * math.log(2 * math.pi * math.e)

    best = -math.inf
    for start in (0.0, x):
        p = torch.tensor([start, 0.0], dtype=F64, requires_grad=True)
        opt = torch.optim.LBFGS([p], max_iter=100, line_search_fn="strong_wolfe")

        def closure(p=p, opt=opt) -> Tensor:
            opt.zero_grad()
            loss = -elbo(p)
            loss.backward()
            return loss

        opt.step(closure)
        best = max(best, elbo(p).item())
    return abs_log_px(x_t).item() - best


def test_diffusion_posterior_covers_both_modes_where_a_gaussian_posterior_cannot():
    seed = 0  # also checked by hand: seeds 0-9 pass (both-side fractions 0.38-0.77)
    torch.manual_seed(seed)
    diffusion = build_diffusion_posterior(
        1, 1, num_steps=5, hidden=(64, 64), context_dim=8, beta_end=0.5
    )
    model = train_q(diffusion, DDVI(), seed=seed)
    torch.manual_seed(seed)
    gaussian = GaussianPosterior([MLP(1, [64, 64], 2, "silu")], [1])
    train_q(gaussian, ELBO(), seed=seed)

    torch.manual_seed(1)
    with torch.no_grad():
        for x in X_EVAL:
            z = diffusion.sample(torch.tensor([[x]]), 4000).z.flatten()
            positive = (z > 0).float().mean().item()
            assert 0.15 <= positive <= 0.85, (x, positive)
            # A Gaussian keeps one mode, or straddles both with its mass in the valley.
            mean, log_std = gaussian.encoders[0](torch.tensor([[x]])).flatten()
            q = Normal(mean, log_std.exp())
            g_positive = 1 - q.cdf(torch.tensor(0.0)).item()
            valley = (q.cdf(torch.tensor(0.4)) - q.cdf(torch.tensor(-0.4))).item()
            assert min(g_positive, 1 - g_positive) < 0.05 or valley >= 0.15, (x, mean, valley)
    # At x = 1.5 the best Gaussian straddles the modes (KL 0.62 nats); the diffusion posterior's
    # auxiliary bound, which lower-bounds its own ELBO, beats every Gaussian's ELBO.
    x = torch.full((4000, 1), 1.5)
    with torch.no_grad():
        bound, se = mean_and_stderr(DDVI(beta_sleep=0)(model, diffusion, x).bound)
    log_px = abs_log_px(torch.tensor(1.5)).item()
    assert bound <= log_px + 3 * se
    assert log_px - bound < best_gaussian_gap(1.5) - 0.1, (log_px - bound.item(), se)


def test_iwae_and_log_likelihood_estimate_accept_a_diffusion_posterior(linear_gaussian):
    from diffvi.evaluation import estimate_log_likelihood
    from diffvi.objectives import IWAE

    lg = linear_gaussian
    x = lg.data(3)
    posterior = near_exact_posterior(lg, num_steps=10, beta_end=0.1)
    torch.manual_seed(0)
    with torch.no_grad():
        iwae_bound = IWAE(k=200)(lg.model, posterior, x).bound
    estimate = estimate_log_likelihood(lg.model, posterior, x, k=2000, max_rows=500)
    log_px = lg.log_px(x)
    assert (iwae_bound - log_px).abs().max() < 0.05  # k = 200: a bound within a few 0.01 nats
    assert (estimate.log_px - log_px).abs().max() < 4 * estimate.stderr.max() + 0.01


# -- the official code's objective ----------------------------------------------------------------


def test_official_objective_reports_the_ddpm_chain_bound_which_is_below_log_px(linear_gaussian):
    lg = linear_gaussian
    x = lg.data(4)
    torch.manual_seed(1)
    posterior = build_diffusion_posterior(
        lg.data_dim, lg.latent_dim, num_steps=5, hidden=(16, 16), context_dim=4, beta_end=0.2,
        zero_init_denoiser=False,
    ).double()  # fmt: skip
    torch.manual_seed(2)
    with torch.no_grad():
        out = OfficialDDVI(beta_sleep=0)(lg.model, posterior, x.repeat(2000, 1))
    mean, se = mean_and_stderr(out.bound.view(2000, 4))
    assert (mean <= lg.log_px(x) + 3 * se).all()
    assert posterior.sampler == "ddpm"


def test_official_wake_chain_is_deterministic_ddim_and_trains_every_network():
    model, posterior, x = small_problem()
    objective = OfficialDDVI(k=2)
    torch.manual_seed(3)
    a = objective(model, posterior, x)
    torch.manual_seed(3)
    mean, log_std = posterior.encode(x)
    y_T = mean + torch.exp(log_std) * torch.randn(2, 5, 2)
    posterior.sampler = "ddim"
    expected = posterior.reverse(y_T, x).z
    posterior.sampler = "ddpm"
    torch.testing.assert_close(a.z, expected)  # z is the DDIM map of the encoder's draw
    assert set(a.metrics) == {"rec", "kl_y_T", "sleep"} and a.bound.shape == (5,)
    a.loss.backward()
    for net in (posterior.encoder, posterior.denoiser, posterior.context, model.decoder):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert all(p.grad is None for p in model.prior.parameters())  # no log p(z) in this loss
    assert OBJECTIVES["ddvi-official"] is OfficialDDVI
    assert OfficialDDVI().kl_weight == 7.84 and OfficialDDVI().sleep.beta_sleep == 784
    with pytest.raises(ValueError, match="kl_weight must be >= 0"):
        OfficialDDVI(kl_weight=-1)


def test_official_sleep_loss_is_the_huber_mean_over_pairs_and_latent_dims(monkeypatch):
    # The official loss is diff_weight · F.smooth_l1_loss(ε, ε̂), reduction 'mean' over all N·D
    # elements. Tiny input: T = 1, a denoiser whose output is the constant ε̂ = 0, N = D = 2, and
    # the sleep noise fixed at ε = [[0.2, −1.5], [3.0, 0.0]]: Huber(δ=1) per element is
    # 0.02, 1.0, 2.5, 0, so the official loss is 3.52 / 4 = 0.88 (DDVI's sum over D: 1.76).
    model, posterior, x = small_problem(conditional=False, num_steps=1)
    x = x[:2]
    nn.init.zeros_(posterior.denoiser[-1].weight)
    nn.init.zeros_(posterior.denoiser[-1].bias)
    fixed = torch.tensor([[0.2, -1.5], [3.0, 0.0]])
    randn = torch.randn

    def fixed_noise(*size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
        return fixed.clone() if tuple(shape) == (2, 2) else randn(*size, **kwargs)

    monkeypatch.setattr(torch, "randn", fixed_noise)
    official = OfficialDDVI(kl_weight=0.0)
    sleep = official.sleep_loss(model, posterior, 2)
    torch.testing.assert_close(sleep, torch.tensor(0.88))
    torch.testing.assert_close(official.sleep.sleep_loss(model, posterior, 2), torch.tensor(1.76))
    # In the objective: loss(β_sleep = 784) − loss(β_sleep = 0) = 784 · 0.88 on the same draws.
    torch.manual_seed(4)
    with_sleep = official(model, posterior, x)
    torch.manual_seed(4)
    without = OfficialDDVI(kl_weight=0.0, beta_sleep=0)(model, posterior, x)
    torch.testing.assert_close(with_sleep.metrics["sleep"], torch.tensor(0.88))
    torch.testing.assert_close(with_sleep.loss - without.loss, torch.tensor(784 * 0.88))


# -- the official code's second stage (DiffVAEWarmup) -----------------------------------------


def test_official_stage2_wake_loss_is_the_huber_mean_of_the_chain_against_the_forward_mean():
    # The official weird_loss_at_step_t: Huber(μ̃_t(y_t, y_0), y_{t−1}), F.smooth_l1_loss's
    # mean over draws and dimensions. β = (0.5, 0.5); every draw's chain is y_2 = (1, 0),
    # y_1 = (0, 3), y_0 = (1, 1). At t = 2, μ̃ = √2/3 · (y_0 + y_2) = (0.943, 0.471), so the
    # Huber losses are ½ · 8/9 and 3 − √2/3 − ½: their mean is (4/9 + 5/2 − √2/3) / 2; at
    # t = 1, μ̃ = y_0 = y_{t−1}: 0. Summed over the dimensions it would be twice as large.
    schedule = DiscreteSchedule(torch.tensor([0.5, 0.5], dtype=F64)).double()
    states = torch.tensor([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]], dtype=F64)
    chain = states[:, None, None, :].expand(3, 1, 4, 2)  # [T+1, K, B, D]
    loss = OfficialDDVIStage2.wake_loss(schedule, chain, torch.Generator().manual_seed(0))
    t = torch.randint(1, 3, (1, 4), generator=torch.Generator().manual_seed(0))
    at_two = (4 / 9 + 2.5 - math.sqrt(2) / 3) / 2
    assert 0 < int((t == 2).sum()) < 4  # both steps drawn
    torch.testing.assert_close(loss, torch.tensor(at_two * float((t == 2).sum()) / 4, dtype=F64))
    with pytest.raises(ValueError, match="T \\+ 1 = 3 states"):
        OfficialDDVIStage2.wake_loss(schedule, chain[:2])


def test_official_stage2_loss_is_its_weighted_terms_and_trains_every_network():
    model, posterior, x = small_problem()
    objective = OfficialDDVIStage2(k=2)
    assert (objective.kl_weight, objective.prior_weight) == (0.003 * 784, 0.003 * 784)
    assert (objective.wake_weight, objective.beta_sleep, objective.sleep_steps) == (784, 784, 3)
    torch.manual_seed(3)
    out = objective(model, posterior, x)
    m = out.metrics
    assert set(m) == {"rec", "kl_y_T", "log_prior", "wake"} and out.bound.shape == (5,)
    expected = -m["rec"] + 2.352 * m["kl_y_T"] - 2.352 * m["log_prior"] + 784 * m["wake"]
    torch.testing.assert_close(out.loss.detach(), expected)
    torch.manual_seed(3)  # z is the DDIM map of the encoder's draw, as in the first stage
    mean, log_std = posterior.encode(x)
    y_T = mean + torch.exp(log_std) * torch.randn(2, 5, 2)
    posterior.sampler = "ddim"
    torch.testing.assert_close(out.z, posterior.reverse(y_T, x).z)
    posterior.sampler = "ddpm"
    torch.testing.assert_close(m["log_prior"], model.log_prior(out.z).mean().detach())
    out.loss.backward()
    for net in (posterior.encoder, posterior.denoiser, posterior.context, model.decoder):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert all(p.grad.abs().sum() > 0 for p in model.prior.parameters())  # the −log p(z) term


def test_official_stage2_prior_term_is_the_kde_score_at_its_weight():
    model, posterior, x = small_problem()
    centres = torch.randn(50, 2, generator=torch.Generator().manual_seed(7))
    score = KernelDensityScore(centres, bandwidths=(0.3, 1.0))
    weighted = OfficialDDVIStage2(prior_weight=5.0, prior_score=score)
    torch.manual_seed(4)
    a = weighted(model, posterior, x)
    torch.manual_seed(4)
    b = OfficialDDVIStage2(prior_weight=0.0, prior_score=score)(model, posterior, x)
    torch.testing.assert_close(a.metrics["log_prior"], score(a.z).mean().detach())
    torch.testing.assert_close(a.loss - b.loss, -5.0 * a.metrics["log_prior"])
    a.loss.backward()
    assert all(p.grad is None for p in model.prior.parameters())  # the KDE replaces log p(z)
    with pytest.raises(ValueError, match="wake_weight must be >= 0"):
        OfficialDDVIStage2(wake_weight=-1)


def test_official_stage2_sleep_loss_is_one_unweighted_batch_averaged_over_latent_dims():
    model, posterior, x = small_problem()
    stage2 = OfficialDDVIStage2(beta_sleep=784, sleep_steps=3)
    first = OfficialDDVI(sleep_steps=1)  # its sleep loss: the Huber mean over N·D
    a = stage2.sleep_loss(model, posterior, 6, torch.Generator().manual_seed(2))
    b = first.sleep_loss(model, posterior, 6, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert 0 < float(a.detach()) < 5  # per element, unweighted
