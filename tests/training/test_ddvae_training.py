"""DD-VAE training (DDVI's diffusion posterior through the Lightning module): a short run
improves the held-out DDVI bound, checkpoints rebuild the diffusion posterior exactly, and
inconsistent configs are refused with clear errors."""

import lightning as L
import pytest
import torch
from tiny_configs import tiny_config

from diffvi.data import load_dataset
from diffvi.objectives import DDVI
from diffvi.posteriors import DiffusionPosterior
from diffvi.training import TrainConfig, TrainingModule, fit, load_module

DDVAE_PRESET = dict(
    objective="ddvi",
    posterior="diffusion",
    prior="pinwheel",
    latent_dims=[2],
    hidden=[[32, 32]],
    activation="silu",
    diffusion_steps=5,
    k=1,
    adam="torch",
)


def tiny_ddvae_config(**overrides) -> TrainConfig:
    return tiny_config(DDVAE_PRESET, **overrides)


def held_out_ddvi_bound(module, seed: int = 0) -> float:
    """DDVI's auxiliary ELBO (β_reg = 1; the sleep term does not enter it), 5 chain draws per
    test image, under a fixed seed."""
    x = load_dataset("digits", "test").images
    torch.manual_seed(seed)
    with torch.no_grad():
        return float(
            DDVI(k=5, beta_sleep=0)(module.family.model, module.family.posterior, x).bound.mean()
        )


def test_short_ddvae_run_with_pinwheel_prior_improves_held_out_ddvi_bound_by_50_nats(tmp_path):
    # Measured: about −850 nats at initialisation, about −85 after 3 epochs (T = 5).
    config = tiny_ddvae_config(max_epochs=3)
    L.seed_everything(config.seed)
    untrained_config = tiny_ddvae_config()
    untrained_config.event_shape = [1, 8, 8]
    before = held_out_ddvi_bound(TrainingModule("vae", untrained_config))
    trained = fit(config, tmp_path / "run", progress_bar=False)
    after = held_out_ddvi_bound(trained)
    assert isinstance(trained.family.posterior, DiffusionPosterior)
    assert after > before + 50.0, (before, after)


def test_ddvae_checkpoint_rebuilds_diffusion_posterior_and_gives_identical_bound(tmp_path):
    module = fit(tiny_ddvae_config(max_epochs=1), tmp_path / "run", progress_bar=False)
    loaded = load_module(tmp_path / "run")
    assert isinstance(loaded.family.posterior, DiffusionPosterior)
    assert loaded.family.posterior.num_steps == 5 and loaded.family.posterior.conditional
    assert type(loaded.family.model.prior) is type(module.family.model.prior)
    module.eval()
    assert held_out_ddvi_bound(module, seed=7) == held_out_ddvi_bound(loaded, seed=7)


def test_ddvi_objective_with_gaussian_posterior_raises_clear_error():
    with pytest.raises(ValueError, match="objective 'ddvi' and posterior 'diffusion' go together"):
        tiny_ddvae_config(posterior="gaussian")
    with pytest.raises(ValueError, match="go together"):
        tiny_ddvae_config(objective="elbo")


def test_warmup_steps_need_a_diffusion_posterior_and_are_not_negative():
    with pytest.raises(ValueError, match="warmup_steps pretrains a diffusion posterior"):
        tiny_ddvae_config(posterior="gaussian", objective="elbo", warmup_steps=10)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        tiny_ddvae_config(warmup_steps=-1)
    config = tiny_ddvae_config(warmup_steps=10, wake_updates_chain=False)
    from diffvi.training.families.vae import build_objective_from_config

    assert build_objective_from_config(config).wake_updates_chain is False


def test_smooth_prior_wraps_a_fixed_2d_prior_and_is_refused_for_others():
    from diffvi.distributions import SmoothedPrior
    from diffvi.training.families.vae import build_model_from_config

    model, _ = build_model_from_config(tiny_ddvae_config(smooth_prior=True))
    assert isinstance(model.prior, SmoothedPrior)
    with pytest.raises(ValueError, match="smooth_prior smooths a fixed 2-D prior"):
        tiny_ddvae_config(smooth_prior=True, prior="mixture")


def test_two_dimensional_prior_with_latent_dim_8_raises_clear_error():
    with pytest.raises(ValueError, match=r"prior 'pinwheel' is 2-D: it needs latent_dims \[2\]"):
        tiny_ddvae_config(latent_dims=[8])


def test_unknown_prior_raises_error_listing_valid_names():
    with pytest.raises(ValueError, match="prior must be one of .*pinwheel"):
        tiny_ddvae_config(prior="banana")


def test_existing_vae_config_keeps_gaussian_posterior_and_standard_normal_prior():
    config = TrainConfig(dataset="digits", latent_dims=[4], hidden=[[16]], event_shape=[1, 8, 8])
    module = TrainingModule("vae", config)
    assert config.posterior == "gaussian" and config.prior == "standard-normal"
    assert type(module.family.posterior).__name__ == "GaussianPosterior"
    assert type(module.family.model.prior).__name__ == "StandardNormal"
