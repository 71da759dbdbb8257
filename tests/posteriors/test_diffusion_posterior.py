"""DiffusionPosterior (DDVI's q): shape contract, exact auxiliary densities, the T = 0 Gaussian
limit, the unconditional variant, the denoising loss; with its schedule and time embedding."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from diffvi.diffusion import DiscreteSchedule, linear_betas
from diffvi.nn import MLP, TimeEmbedding, sinusoidal_embedding
from diffvi.posteriors import (
    DiffusionPosterior,
    GaussianPosterior,
    PosteriorSample,
    TwoStagePosterior,
    build_diffusion_posterior,
)

K, B, F, D = 4, 3, 5, 2
F64 = torch.float64


def make_posterior(num_steps=3, conditional=True, **options) -> DiffusionPosterior:
    torch.manual_seed(0)
    options.setdefault("zero_init_denoiser", False)
    posterior = build_diffusion_posterior(
        F,
        D,
        num_steps=num_steps,
        hidden=(16, 16),
        context_dim=4,
        conditional=conditional,
        beta_end=0.2,
        **options,
    )
    return posterior.double()


def data(n=B, seed=1) -> torch.Tensor:
    return torch.randn(n, F, generator=torch.Generator().manual_seed(seed), dtype=F64)


# -- shapes and densities -----------------------------------------------------------------------


@pytest.mark.parametrize("conditional", [True, False])
def test_sample_returns_z_k_b_d_no_log_q_and_k_b_auxiliaries(conditional):
    posterior = make_posterior(conditional=conditional)
    s = posterior.sample(data(), K)
    assert isinstance(s, PosteriorSample)
    assert s.z.shape == (K, B, D) and s.z.dtype == F64
    assert s.log_q is None
    assert s.extras["log_q_joint"].shape == (K, B)
    assert s.extras["log_r"].shape == (K, B)
    assert s.extras["y_T"].shape == (K, B, D)
    assert s.extras["y_T_mean"].shape == s.extras["y_T_log_std"].shape == (B, D)
    assert "mean" not in s.extras  # y_T's Gaussian is not q(z|x) when T > 0
    assert torch.isfinite(s.extras["log_q_joint"]).all() and torch.isfinite(s.extras["log_r"]).all()


@pytest.mark.parametrize("reverse_variance", ["beta", "posterior"])
def test_log_q_joint_and_log_r_equal_the_rescored_chain(reverse_variance):
    posterior = make_posterior(num_steps=4, reverse_variance=reverse_variance)
    x = data()
    s = posterior.sample(x, K, generator=torch.Generator().manual_seed(5))
    # Replay the same draws to get the whole chain, then score it with torch.distributions.
    g = torch.Generator().manual_seed(5)
    mean, log_std = posterior.encode(x)
    y_T = mean + log_std.exp() * torch.randn((K, B, D), generator=g, dtype=F64)
    chain = posterior.reverse(y_T, x, generator=g).chain
    assert chain.shape == (5, K, B, D)
    torch.testing.assert_close(chain[-1], s.z)
    sch, c = posterior.schedule, posterior.context(x).expand(K, B, -1)
    var = sch.reverse_variances(reverse_variance)
    log_q = Normal(mean, log_std.exp()).log_prob(chain[0]).sum(-1)
    log_r = torch.zeros(K, B, dtype=F64)
    for i, t in enumerate(range(4, 0, -1)):
        y_t, y_prev = chain[i], chain[i + 1]
        temb = posterior.time_embedding(torch.full((K, B), t))
        eps_hat = posterior.predict_noise(y_t, temb, c)
        a, ab, beta = sch.alphas[t - 1], sch.alpha_bars[t - 1], sch.betas[t - 1]
        mu = (y_t - beta / (1 - ab).sqrt() * eps_hat) / a.sqrt()
        log_q = log_q + Normal(mu, var[t - 1].sqrt()).log_prob(y_prev).sum(-1)
        log_r = log_r + Normal(a.sqrt() * y_prev, beta.sqrt()).log_prob(y_t).sum(-1)
    torch.testing.assert_close(s.extras["log_q_joint"], log_q)
    torch.testing.assert_close(s.extras["log_r"], log_r)


def test_with_zero_steps_the_posterior_is_exactly_the_gaussian_encoder():
    torch.manual_seed(0)
    encoder = MLP(F, [8], 2 * D).double()
    gaussian = GaussianPosterior([encoder], [D])
    diffusion = DiffusionPosterior(
        encoder, MLP(D + 16, [8], D), None, D, DiscreteSchedule.linear(0)
    ).double()
    x = data()
    sg = gaussian.sample(x, K, generator=torch.Generator().manual_seed(3))
    sd = diffusion.sample(x, K, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sd.z, sg.z, rtol=0, atol=0)
    torch.testing.assert_close(sd.log_q, sg.log_q)
    torch.testing.assert_close(sd.extras["log_q_joint"], gaussian.log_prob(x, sd.z))
    torch.testing.assert_close(sd.extras["log_r"], torch.zeros(K, B, dtype=F64))
    torch.testing.assert_close(sd.extras["mean"], sg.extras["mean"])
    torch.testing.assert_close(sd.extras["log_std"], sg.extras["log_std"])
    assert diffusion.denoising_loss(sd.z[0], x).eq(0).all()


def test_log_prob_is_not_available_and_points_to_the_auxiliary_bound():
    posterior = make_posterior()
    x = data()
    z = posterior.sample(x, 2).z
    with pytest.raises(NotImplementedError, match="auxiliary"):
        posterior.log_prob(x, z)
    assert posterior.expected_latent(x, k=10).shape == (B, D)


def test_samples_are_reproducible_with_a_generator_and_differentiable():
    posterior = make_posterior()
    x = data()
    a = posterior.sample(x, K, generator=torch.Generator().manual_seed(9))
    b = posterior.sample(x, K, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a.z, b.z, rtol=0, atol=0)
    (a.z.sum() + a.extras["log_q_joint"].sum() + a.extras["log_r"].sum()).backward()
    for name in ["encoder", "denoiser", "context"]:
        grads = [p.grad for p in getattr(posterior, name).parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name


# -- the unconditional (latent wake-sleep) variant ------------------------------------------------


def test_unconditional_reverse_chain_and_denoising_loss_ignore_x():
    posterior = make_posterior(conditional=False)
    assert not posterior.conditional and posterior.context is None
    x1, x2 = data(seed=1), data(seed=2)
    y_T = torch.randn(K, B, D, dtype=F64)
    runs = [
        posterior.reverse(y_T, x, generator=torch.Generator().manual_seed(4)).chain
        for x in (x1, x2, None)
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    torch.testing.assert_close(runs[0], runs[2], rtol=0, atol=0)
    z = torch.randn(6, D, dtype=F64)
    losses = [
        posterior.denoising_loss(z, x, generator=torch.Generator().manual_seed(4))
        for x in (data(6, seed=1), data(6, seed=2), None)
    ]
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    torch.testing.assert_close(losses[0], losses[2], rtol=0, atol=0)


def test_conditional_reverse_chain_depends_on_x():
    posterior = make_posterior(conditional=True)
    y_T = torch.randn(K, B, D, dtype=F64)
    z1 = posterior.reverse(y_T, data(seed=1), generator=torch.Generator().manual_seed(4)).z
    z2 = posterior.reverse(y_T, data(seed=2), generator=torch.Generator().manual_seed(4)).z
    assert not torch.allclose(z1, z2)


# -- DDIM ---------------------------------------------------------------------------------------


def test_ddim_steps_are_deterministic_given_y_T_and_carry_no_joint_density():
    posterior = make_posterior(sampler="ddim")
    x, y_T = data(), torch.randn(K, B, D, dtype=F64)
    z1 = posterior.reverse(y_T, x, generator=torch.Generator().manual_seed(1)).z
    z2 = posterior.reverse(y_T, x, generator=torch.Generator().manual_seed(2)).z
    torch.testing.assert_close(z1, z2, rtol=0, atol=0)
    s = posterior.sample(x, K)
    assert s.z.shape == (K, B, D)
    assert "log_q_joint" not in s.extras and "log_r" not in s.extras
    posterior.sampler = "ddpm"  # stochastic again: a density exists
    assert "log_q_joint" in posterior.sample(x, K).extras


# -- the denoising (sleep) loss -----------------------------------------------------------------


@pytest.mark.parametrize("huber", [False, True])
def test_denoising_loss_is_per_point_and_non_negative(huber):
    posterior = make_posterior()
    z = torch.randn(7, D, dtype=F64)
    loss = posterior.denoising_loss(z, data(7), huber=huber)
    assert loss.shape == (7,)
    assert (loss >= 0).all()


def test_denoising_loss_is_the_noise_prediction_error_at_the_drawn_step():
    posterior = make_posterior(num_steps=1)  # one step: t = 1 for every row
    z, x = torch.randn(6, D, dtype=F64), data(6)
    loss = posterior.denoising_loss(z, x, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    torch.randint(1, 2, (6,), generator=g)
    noise = torch.randn(6, D, generator=g, dtype=F64)
    ab = posterior.schedule.alpha_bars[0]
    y1 = ab.sqrt() * z + (1 - ab).sqrt() * noise
    temb = posterior.time_embedding(torch.ones(6, dtype=torch.long))
    eps_hat = posterior.predict_noise(y1, temb, posterior.context(x))
    torch.testing.assert_close(loss, (eps_hat - noise).square().sum(-1))


# -- bad arguments ------------------------------------------------------------------------------


def test_bad_arguments_raise_value_error():
    schedule = DiscreteSchedule.linear(3)
    enc, den = MLP(F, [4], 2 * D), MLP(D + 16, [4], D)
    with pytest.raises(ValueError, match="reverse_variance"):
        DiffusionPosterior(enc, den, None, D, schedule, reverse_variance="ddim")
    with pytest.raises(ValueError, match="sampler"):
        DiffusionPosterior(enc, den, None, D, schedule, sampler="euler")
    with pytest.raises(ValueError, match="latent_dim"):
        DiffusionPosterior(enc, den, None, 0, schedule)
    with pytest.raises(ValueError, match="DiscreteSchedule"):
        DiffusionPosterior(enc, den, None, D, linear_betas(3))
    posterior = make_posterior()
    with pytest.raises(ValueError, match="k must"):
        posterior.sample(data(), 0)
    with pytest.raises(ValueError, match="needs x"):
        posterior.denoising_loss(torch.zeros(3, D, dtype=F64), None)
    with pytest.raises(ValueError, match="batch size"):
        posterior.denoising_loss(torch.zeros(3, D, dtype=F64), data(4))
    with pytest.raises(ValueError, match="z must have shape"):
        posterior.denoising_loss(torch.zeros(3, D + 1, dtype=F64), data(3))
    with pytest.raises(ValueError, match="y_T must have shape"):
        posterior.reverse(torch.zeros(B, D, dtype=F64), data())
    wrong = DiffusionPosterior(MLP(F, [4], D), den, None, D, schedule)  # encoder lacks log σ
    with pytest.raises(ValueError, match="encoder must output"):
        wrong.sample(torch.zeros(B, F), 1)
    with pytest.raises(ValueError, match="context_dim"):
        build_diffusion_posterior(F, D, context_dim=0)
    posterior.sampler = "ancestral"
    with pytest.raises(ValueError, match="sampler"):
        posterior.sample(data(), 1)


# -- schedule and time embedding ----------------------------------------------------------------


def test_linear_schedule_derived_quantities():
    betas = linear_betas(5, 1e-3, 0.1)
    torch.testing.assert_close(betas, torch.linspace(1e-3, 0.1, 5, dtype=F64))
    s = DiscreteSchedule(betas)  # computed in float64, stored in the default dtype
    assert s.num_steps == 5 and s.betas.dtype == torch.get_default_dtype()
    alpha_bars = torch.cumprod(1 - betas, 0)
    alpha_bars_prev = torch.cat([torch.ones(1, dtype=F64), alpha_bars[:-1]])
    post = betas * (1 - alpha_bars_prev) / (1 - alpha_bars)
    torch.testing.assert_close(s.alpha_bars, alpha_bars.float())
    torch.testing.assert_close(s.alpha_bars_prev, alpha_bars_prev.float())
    torch.testing.assert_close(s.posterior_variances, post.float())
    assert s.posterior_variances[0] == 0
    clipped = s.reverse_variances("posterior")
    torch.testing.assert_close(clipped[0], post[1].float())
    torch.testing.assert_close(clipped[1:], post[1:].float())
    torch.testing.assert_close(s.reverse_variances("beta"), betas.float())
    torch.testing.assert_close(s.log_snr, torch.log(alpha_bars / (1 - alpha_bars)).float())
    z, noise = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([1, 2, 5, 5])
    ab = s.alpha_bars[t - 1, None]
    torch.testing.assert_close(s.add_noise(z, t, noise), ab.sqrt() * z + (1 - ab).sqrt() * noise)
    assert s.double().alpha_bars.dtype == F64  # buffers follow the module's dtype
    assert linear_betas(0).shape == (0,) and DiscreteSchedule.linear(0).num_steps == 0
    assert DiscreteSchedule.linear(1).reverse_variances("posterior").shape == (1,)


def test_posterior_mean_is_the_forward_posterior_mean_by_hand():
    # β = (0.5, 0.5): ᾱ = (0.5, 0.25). Step 2: both coefficients √0.5 · 0.5 / 0.75 = √2/3;
    # step 1: ᾱ_0 = 1, so the mean is y_0 itself. It is the mean of r(y_{t−1} | y_t, y_0) by
    # Bayes' rule: the product of r(y_{t−1} | y_0) = N(√ᾱ_{t−1} y_0, 1 − ᾱ_{t−1}) and
    # r(y_t | y_{t−1}) = N(√α_t y_{t−1}, β_t) in y_{t−1}.
    s = DiscreteSchedule(torch.tensor([0.5, 0.5], dtype=F64)).double()
    y0 = torch.tensor([[1.0, 1.0], [2.0, -1.0]], dtype=F64)
    y_t = torch.tensor([[1.0, 0.0], [0.5, 4.0]], dtype=F64)
    mean = s.posterior_mean(y0, y_t, torch.tensor([2, 1]))
    c = math.sqrt(2) / 3
    torch.testing.assert_close(mean[0], c * (y0[0] + y_t[0]))
    torch.testing.assert_close(mean[1], y0[1])
    ab_prev, alpha, beta = 0.5, 0.5, 0.5  # step 2, by completing the square
    precision = 1 / (1 - ab_prev) + alpha / beta
    bayes = math.sqrt(ab_prev) * y0[0] / (1 - ab_prev) + math.sqrt(alpha) * y_t[0] / beta
    torch.testing.assert_close(mean[0], bayes / precision)
    with pytest.raises(ValueError, match="t of shape"):
        s.posterior_mean(y0, y_t, torch.tensor([1]))


def test_two_stage_posterior_samples_with_the_active_stage_and_copies_the_encoder():
    first = make_posterior(num_steps=2, conditional=False)
    torch.manual_seed(5)
    second = build_diffusion_posterior(F, D, num_steps=4, hidden=(16, 16), context_dim=2).double()
    both = TwoStagePosterior(first, second)
    x = data()
    assert int(both.stage) == 1 and both.num_steps == 2 and not both.conditional
    torch.manual_seed(0)
    a = both.sample(x, 2)
    torch.manual_seed(0)
    torch.testing.assert_close(a.z, first.sample(x, 2).z)
    assert not torch.equal(first.encode(x)[0], second.encode(x)[0])
    both.start_second_stage()
    assert int(both.stage) == 2 and both.num_steps == 4 and both.conditional
    torch.testing.assert_close(both.encode(x), first.encode(x))  # the copied encoder
    torch.manual_seed(1)
    b = both.sample(x, 2)
    torch.manual_seed(1)
    torch.testing.assert_close(b.z, second.sample(x, 2).z)
    both.sampler = "ddim"  # sets both stages'
    assert first.sampler == second.sampler == both.sampler == "ddim"
    # The stage is saved with the weights: a fresh copy loads into stage 2.
    again = TwoStagePosterior(make_posterior(num_steps=2, conditional=False), second)
    again.load_state_dict(both.state_dict())
    assert int(again.stage) == 2 and again.active is again.second
    with pytest.raises(ValueError, match="same latent size"):
        TwoStagePosterior(first, build_diffusion_posterior(F, 3, num_steps=1, hidden=(4,)))


def test_schedule_bad_ranges_raise_value_error():
    with pytest.raises(ValueError, match="num_steps"):
        linear_betas(-1)
    with pytest.raises(ValueError, match="beta_start"):
        linear_betas(5, 0.0, 0.02)
    with pytest.raises(ValueError, match="beta_start"):
        linear_betas(5, 0.03, 0.02)
    with pytest.raises(ValueError, match="beta_start"):
        linear_betas(5, 0.1, 1.0)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        DiscreteSchedule(torch.tensor([0.1, 1.2]))
    with pytest.raises(ValueError, match="shape"):
        DiscreteSchedule(torch.full((2, 2), 0.1))
    with pytest.raises(ValueError, match="reverse variance"):
        DiscreteSchedule.linear(3).reverse_variances("learned")


def test_sinusoidal_embedding_shapes_and_time_conventions():
    emb = sinusoidal_embedding(torch.tensor([0.0, 0.25, 1.0]), 8)
    assert emb.shape == (3, 8)
    torch.testing.assert_close(emb[0], torch.cat([torch.zeros(4), torch.ones(4)]))
    # float t in [0, 1] is scaled by 1000: t = 0.25 embeds like integer step 250
    torch.testing.assert_close(emb[1], sinusoidal_embedding(torch.tensor(250), 8)[0])
    steps = sinusoidal_embedding(torch.arange(1, 21) / 20, 16)
    assert torch.cdist(steps, steps).add(torch.eye(20)).min() > 1e-2  # distinct steps
    assert sinusoidal_embedding(torch.tensor([0.5], dtype=F64), 4).dtype == F64
    assert TimeEmbedding(8, out_dim=5)(torch.rand(6)).shape == (6, 5)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(torch.zeros(3), 5)
    with pytest.raises(ValueError, match="shape"):
        sinusoidal_embedding(torch.zeros(3, 2), 4)
    with pytest.raises(ValueError, match="even"):
        TimeEmbedding(3)


def test_builder_zero_initialises_the_denoiser_output():
    posterior = build_diffusion_posterior(F, D, num_steps=2, hidden=(8,), context_dim=3)
    x = torch.randn(B, F)
    y = torch.randn(B, D)
    temb = posterior.time_embedding(torch.full((B,), 2))
    assert posterior.predict_noise(y, temb, posterior.context(x)).eq(0).all()
    assert isinstance(posterior.denoiser[-1], nn.Linear)
    assert posterior.denoiser[0].in_features == D + posterior.time_embedding_dim + 3
    assert math.isclose(posterior.schedule.betas[-1].item(), 0.02, rel_tol=1e-6)
