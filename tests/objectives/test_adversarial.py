"""The adversarial autoencoder: gradient routing, the discriminator game, and its ELBO figure."""

import pytest
import torch
from torch import nn

from diffvi.distributions.likelihoods import GaussianLikelihood
from diffvi.evaluation.representation import mmd
from diffvi.models import build_vae
from diffvi.models.vae import VAE
from diffvi.objectives import AAE, ELBO, OBJECTIVES, build_objective
from diffvi.posteriors.gaussian import GaussianPosterior


def small_vae(dtype=torch.float32):
    torch.manual_seed(0)
    model, posterior = build_vae((6,), "iwae-1", "bernoulli", latent_dims=[2], hidden=[[8]])
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((5, 6), 0.3), generator=g).to(dtype)
    return model.to(dtype), posterior.to(dtype), x


def toy_autoencoder(shift: float = 3.0):
    """x ∈ R² far from the N(0, I) prior; a linear Gaussian encoder that starts at the identity
    (so the aggregated posterior starts at the data, N(shift, I)) and a linear decoder
    (also the identity) with p(x|z) = N(dec(z), 0.5²)."""
    torch.manual_seed(0)
    enc = nn.Linear(2, 4)
    dec = nn.Linear(2, 2)
    with torch.no_grad():
        enc.weight.zero_()
        enc.bias.zero_()
        enc.weight[:2] = torch.eye(2)
        enc.bias[2:] = -3.0  # log σ = −3: nearly deterministic
        dec.weight.copy_(torch.eye(2))
        dec.bias.zero_()
    model = VAE((2,), [2], dec, GaussianLikelihood(scale=0.5, sigmoid_mean=False))
    posterior = GaussianPosterior([enc], [2])

    def data(n, generator=None):
        return shift + torch.randn(n, 2, generator=generator)

    return model, posterior, data


def test_aae_is_registered_by_name():
    assert OBJECTIVES["aae"] is AAE
    built = build_objective("aae", adversarial_weight=2.0, deterministic=True)
    assert isinstance(built, AAE) and built.adversarial_weight == 2.0 and built.deterministic


@pytest.mark.parametrize("deterministic", [False, True])
def test_bound_has_shape_b_is_detached_and_finite(deterministic):
    model, posterior, x = small_vae()
    out = AAE(k=3, deterministic=deterministic)(model, posterior, x)
    assert out.bound.shape == (5,)
    assert not out.bound.requires_grad and torch.isfinite(out.bound).all()
    assert out.loss.shape == () and out.loss.requires_grad
    assert set(out.metrics) == {"rec", "adv", "d_loss", "d_accuracy", "kl"}
    assert all(not v.requires_grad and v.shape == () for v in out.metrics.values())


def test_bound_is_the_elbo_of_q_on_the_same_draws():
    model, posterior, x = small_vae(torch.float64)
    torch.manual_seed(3)
    aae = AAE(k=4)(model, posterior, x)
    torch.manual_seed(3)
    elbo = ELBO(k=4)(model, posterior, x)
    torch.testing.assert_close(aae.bound, elbo.bound)


def test_loss_is_reconstruction_plus_weighted_non_saturating_term():
    model, posterior, x = small_vae(torch.float64)
    out = AAE(adversarial_weight=0.7, deterministic=True)(model, posterior, x)
    m = out.metrics
    torch.testing.assert_close(out.loss.detach(), m["rec"] + 0.7 * m["adv"])
    z = posterior.sample(x, 1).extras["mean"].unsqueeze(0)
    torch.testing.assert_close(m["rec"], -model.log_likelihood(x, z).mean().detach())


def test_loss_gradients_reach_encoder_and_decoder_but_not_discriminator():
    model, posterior, x = small_vae()
    aae = AAE(hidden=(16,))
    aae(model, posterior, x).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in posterior.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert all(p.grad is None for p in aae.discriminator.parameters())


def test_adversarial_term_alone_gives_the_encoder_a_gradient():
    model, posterior, x = small_vae()
    aae = AAE(hidden=(16,), deterministic=True)
    out = aae(model, posterior, x)
    weight = posterior.encoders[0][0].weight
    g_total = torch.autograd.grad(out.loss, weight, retain_graph=True)[0]
    rec = -model.log_likelihood(x, posterior.sample(x, 1).extras["mean"].unsqueeze(0)).mean()
    g_rec = torch.autograd.grad(rec, weight)[0]
    assert (g_total - g_rec).abs().max() > 1e-6


def test_discriminator_loss_gradients_reach_the_discriminator_only():
    model, posterior, x = small_vae()
    aae = AAE(hidden=(16,))
    aae.discriminator_loss(model, posterior, x).backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in aae.discriminator.parameters()
    )
    assert all(p.grad is None for p in posterior.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_discriminator_loss_decreases_when_training_the_discriminator_against_a_fixed_encoder():
    model, posterior, data = toy_autoencoder()
    aae = AAE(hidden=(32, 32), latent_dim=2)
    opt = torch.optim.Adam(aae.discriminator.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    before = [p.clone() for p in posterior.parameters()]
    losses = []
    for _ in range(100):
        loss = aae.discriminator_loss(model, posterior, data(128, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    out = aae(model, posterior, data(512, g))
    assert out.metrics["d_accuracy"] > 0.95
    assert all(torch.equal(a, b) for a, b in zip(before, posterior.parameters(), strict=True))


def test_adversarial_training_moves_the_aggregated_posterior_toward_the_prior():
    model, posterior, data = toy_autoencoder()
    aae = AAE(adversarial_weight=1.0, hidden=(32, 32), latent_dim=2)
    opt_g = torch.optim.Adam([*model.parameters(), *posterior.parameters()], lr=1e-2)
    opt_d = torch.optim.Adam(aae.discriminator.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    x_eval = data(500, g)
    z_prior = torch.randn(500, 2, generator=g)

    def distance():
        with torch.no_grad():
            return mmd(posterior.sample(x_eval, 1).z[0], z_prior, bandwidths=[0.5, 1.0, 2.0])

    start = distance()
    for _ in range(300):
        x = data(128, g)
        out = aae(model, posterior, x)
        opt_g.zero_grad()
        out.loss.backward()
        opt_g.step()
        d_loss = aae.discriminator_loss(model, posterior, x)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
    end = distance()
    assert end < 0.35 * start, (start, end)  # about 1.92 -> 0.45 in 300 steps
    with torch.no_grad():
        centre = posterior.sample(x_eval, 1).z[0].mean(0)
    assert centre.abs().max() < 1.0, centre  # started at (3, 3); the prior's is (0, 0)
    # the autoencoder still reconstructs: the encoder moved, the decoder followed
    with torch.no_grad():
        z = posterior.sample(x_eval, 1).extras["mean"]
        x_hat = model.decode(z)
    assert (x_hat - x_eval).square().mean() < 0.05


def test_a_given_discriminator_is_used_and_a_mismatched_one_raises_value_error():
    model, posterior, x = small_vae()
    disc = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    aae = AAE(discriminator=disc)
    aae(model, posterior, x)
    assert aae.discriminator is disc
    with pytest.raises(ValueError, match="latent dimension"):
        AAE(discriminator=nn.Sequential(nn.Linear(3, 1)))(model, posterior, x)
    with pytest.raises(ValueError, match="latent dimension"):
        AAE(latent_dim=5).discriminator_loss(model, posterior, x)


@pytest.mark.parametrize(
    "options",
    [
        {"adversarial_weight": -1.0},
        {"adversarial_weight": float("nan")},
        {"adversarial_weight": float("inf")},
        {"k": 0},
        {"hidden": (16, 0)},
        {"latent_dim": 0},
        {"discriminator": "mlp"},
    ],
)
def test_bad_arguments_raise_value_error(options):
    with pytest.raises(ValueError):
        AAE(**options)


def test_deterministic_encoder_without_a_mean_raises_value_error():
    model, posterior, x = small_vae()

    class NoMean(nn.Module):
        latent_dim = 2

        def sample(self, x, k=1, generator=None):
            s = posterior.sample(x, k)
            s.extras.pop("mean")
            return s

    with pytest.raises(ValueError, match="mean"):
        AAE(deterministic=True)(model, NoMean(), x)
