"""OfficialClusterHeads (``ddvi-heads-official``, the official clustering model's own loop):
its wake loss is the official MSE + 0.005 · KL on the DDIM chain, with no head in it; its heads
loss is w_e (repulsion + 100 · box) + the Huber denoising loss with gradient to the heads; its
sleep loss leaves the heads alone; the schedule of steps and repulsion weights is the official
one; bad options are refused."""

import pytest
import torch

from diffvi.distributions import ClusterHeadsPrior
from diffvi.distributions.gaussian import kl_to_standard_normal
from diffvi.models import build_vae
from diffvi.objectives import OBJECTIVES, OfficialClusterHeads, OfficialDDVI
from diffvi.posteriors import build_diffusion_posterior


def _setup():
    """A float64 VAE over 5 real features with a 3-head prior (two heads closer than η = 1.5,
    one outside the ±2.5 box), its unconditional diffusion posterior, and x."""
    torch.manual_seed(0)
    prior = ClusterHeadsPrior(3, dim=2)
    model, _ = build_vae((5,), "iwae-1", "real-gaussian", [2], [[8]], prior=prior)
    posterior = build_diffusion_posterior(
        5, 2, num_steps=3, hidden=[8], zero_init_denoiser=False, conditional=False
    )
    with torch.no_grad():
        prior.scaled_heads.copy_(torch.tensor([[0.0, 0.0], [0.5, 0.0], [3.0, 1.0]]) / prior.speed)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model.double(), posterior.double(), x


def test_registered_by_name_with_the_official_settings():
    assert OBJECTIVES["ddvi-heads-official"] is OfficialClusterHeads
    objective = OfficialClusterHeads()
    assert objective.kl_weight == 0.005 and objective.reconstruction == "mse"
    assert objective.chain_clip == 0.1 and objective.heads_lr == 1e-2
    assert objective.sleep_lr == 1e-3 and objective.sleep.beta_sleep == 0
    assert objective.heads.eta == 1.5 and objective.heads.box == 2.5
    assert objective.heads.box_weight == 100 and objective.diffusion_posterior


def test_the_wake_loss_is_the_mean_squared_error_plus_the_weighted_kl_on_the_ddim_chain():
    model, posterior, x = _setup()
    torch.manual_seed(3)
    out = OfficialClusterHeads(kl_weight=0.2)(model, posterior, x)
    # the same draw by hand: y_T = μ + σ ε, z = the DDIM chain from y_T, x̂ = E[x|z]
    torch.manual_seed(3)
    mean, log_std = posterior.encode(x)
    eps = torch.randn((1, *mean.shape), dtype=mean.dtype)
    posterior.sampler = "ddim"
    z = posterior.reverse(mean + log_std.exp() * eps, x).z
    posterior.sampler = "ddpm"
    x_hat = model.likelihood.mean(model.decode(z))[0]
    mse = (x_hat - x).square().mean(-1)  # [B], the mean over the features
    expected = (mse + 0.2 * kl_to_standard_normal(mean, log_std)).mean()
    torch.testing.assert_close(out.loss, expected)
    assert "sleep" not in out.metrics  # the sleep steps are the loop's, not the wake loss's
    out.loss.backward()
    assert model.prior.scaled_heads.grad is None  # no log p(z): the heads are not in it


def test_the_likelihood_reconstruction_is_official_ddvis():
    model, posterior, x = _setup()
    torch.manual_seed(3)
    out = OfficialClusterHeads(reconstruction="likelihood")(model, posterior, x)
    torch.manual_seed(3)
    plain = OfficialDDVI(kl_weight=0.005, beta_sleep=0)(model, posterior, x)
    torch.testing.assert_close(out.loss, plain.loss)


def test_the_heads_loss_moves_the_heads_and_the_sleep_loss_does_not():
    model, posterior, x = _setup()
    objective = OfficialClusterHeads()
    prior = model.prior
    torch.manual_seed(5)
    heads = objective.heads_loss(model, posterior, 64, epoch=0)
    torch.manual_seed(5)  # the same fantasies: the Huber mean over pairs and the 2 dimensions
    sleep = objective.heads.sleep_loss(model, posterior, 64) / 2
    penalty = prior.repulsion(1.5) + 100 * prior.box_penalty(2.5)
    assert penalty > 0
    torch.testing.assert_close(heads, sleep + penalty)
    heads.backward()
    assert torch.count_nonzero(prior.scaled_heads.grad)
    assert all(p.grad is None for p in posterior.encoder.parameters())  # not in it
    model.zero_grad()
    objective.sleep_loss(model, posterior, 64).backward()
    assert prior.scaled_heads.grad is None or not torch.count_nonzero(prior.scaled_heads.grad)
    assert any(p.grad is not None for p in posterior.denoiser.parameters())


def test_the_schedule_is_the_official_one():
    # e + 1 heads and sleep steps after epoch e; the repulsion's weight 1 to epoch 100, then
    # one more every 10 epochs (AutoClusteringDiffVAE._train_epoch's cluster_w)
    assert [OfficialClusterHeads.steps_after_epoch(e) for e in (0, 1, 199)] == [1, 2, 200]
    weights = [OfficialClusterHeads.repulsion_weight(e) for e in (0, 100, 101, 109, 110, 199)]
    assert weights == [1, 1, 1, 1, 2, 10]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"chain_clip": 0}, "chain_clip must be finite and > 0, got 0"),
        ({"heads_lr": float("inf")}, "heads_lr must be finite and > 0, got inf"),
        ({"sleep_lr": -1}, "sleep_lr must be finite and > 0, got -1"),
        ({"reconstruction": "bce"}, r"reconstruction must be one of \('likelihood', 'mse'\)"),
        ({"kl_weight": -1}, "kl_weight must be >= 0"),
        ({"eta": -1}, "eta must be finite and >= 0"),
    ],
)
def test_invalid_options_are_refused_with_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        OfficialClusterHeads(**options)
