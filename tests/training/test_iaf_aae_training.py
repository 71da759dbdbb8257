"""IAF posterior and adversarial-autoencoder training through the Lightning module: short runs
on digits improve their figures, the AAE's two optimisers both move their parameters,
checkpoints round-trip and resume exactly, and invalid combinations are refused clearly."""

import math

import lightning as L
import pytest
import torch
from tiny_configs import tiny_config

from diffvi.data import load_dataset
from diffvi.objectives import AAE, IWAE
from diffvi.posteriors import IAFPosterior
from diffvi.training import TrainConfig, TrainingModule, fit, load_module

IAF_PRESET = dict(
    objective="elbo",
    posterior="iaf",
    latent_dims=[4],
    hidden=[[32]],
    iaf_flows=2,
    made_hidden=[32, 32],
    k=1,
    adam="torch",
)


def tiny_iaf_config(**overrides) -> TrainConfig:
    return tiny_config(IAF_PRESET, **overrides)


AAE_PRESET = dict(
    objective="aae",
    posterior="gaussian",
    prior="pinwheel",
    latent_dims=[2],
    hidden=[[32, 32]],
    activation="silu",
    k=1,
    adam="torch",
)


def tiny_aae_config(**overrides) -> TrainConfig:
    return tiny_config(AAE_PRESET, **overrides)


def untrained_like(config: TrainConfig) -> TrainingModule:
    """The module ``fit`` starts from (same seed, same construction order)."""
    L.seed_everything(config.seed)
    config = TrainConfig.from_dict({**config.to_dict(), "event_shape": [1, 8, 8]})
    return TrainingModule("vae", config)


def held_out_iwae(module, seed: int = 0, k: int = 5) -> float:
    x = load_dataset("digits", "test").images
    torch.manual_seed(seed)
    with torch.no_grad():
        return float(IWAE(k)(module.family.model, module.family.posterior, x).bound.mean())


def held_out_reconstruction(module, seed: int = 0) -> float:
    """E[−log p(x|z)], z ~ q(z|x), on the test images under a fixed seed."""
    x = load_dataset("digits", "test").images
    torch.manual_seed(seed)
    with torch.no_grad():
        return float(AAE()(module.family.model, module.family.posterior, x).metrics["rec"])


def flat(parameters) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in parameters])


def test_short_iaf_vae_run_improves_held_out_bound(tmp_path):
    config = tiny_iaf_config()
    before = held_out_iwae(untrained_like(config))
    trained = fit(config, tmp_path / "run", progress_bar=False)
    after = held_out_iwae(trained)
    assert (
        isinstance(trained.family.posterior, IAFPosterior)
        and len(trained.family.posterior.flows) == 2
    )
    assert after > before + 5.0, (before, after)


def test_short_aae_run_trains_both_optimisers_and_improves_reconstruction(tmp_path):
    config = tiny_aae_config()
    start = untrained_like(config)
    trained = fit(config, tmp_path / "run", progress_bar=False)
    assert len(trained.trainer.optimizers) == 2
    assert trained.trainer.global_step == 2 * 22  # one step per batch, not per optimiser
    assert not torch.equal(
        flat(start.family.discriminator.parameters()),
        flat(trained.family.discriminator.parameters()),
    )
    assert not torch.equal(
        flat(start.family.posterior.parameters()), flat(trained.family.posterior.parameters())
    )
    assert not torch.equal(
        flat(start.family.model.parameters()), flat(trained.family.model.parameters())
    )
    before, after = held_out_reconstruction(start), held_out_reconstruction(trained)
    assert after < before - 5.0, (before, after)
    assert math.isfinite(float(trained.trainer.callback_metrics["val/bound"]))


@pytest.mark.parametrize("make_config", [tiny_iaf_config, tiny_aae_config], ids=["iaf", "aae"])
def test_checkpoint_round_trip_rebuilds_posterior_and_discriminator(tmp_path, make_config):
    module = fit(make_config(max_epochs=1), tmp_path / "run", progress_bar=False)
    loaded = load_module(tmp_path / "run")
    assert type(loaded.family.posterior) is type(module.family.posterior)
    assert torch.equal(flat(module.parameters()), flat(loaded.parameters()))
    module.eval()
    assert held_out_iwae(module, seed=7) == held_out_iwae(loaded, seed=7)
    if make_config is tiny_aae_config:
        assert any(k.startswith("family.discriminator.") for k in loaded.state_dict())
        assert loaded.family.objective.discriminator is loaded.family.discriminator


def test_aae_resume_matches_uninterrupted_run(tmp_path):
    straight = fit(tiny_aae_config(max_epochs=2), tmp_path / "straight", progress_bar=False)
    fit(tiny_aae_config(max_epochs=1), tmp_path / "split", progress_bar=False)
    resumed = fit(
        tiny_aae_config(max_epochs=2), tmp_path / "split", resume=True, progress_bar=False
    )
    assert resumed.trainer.global_step == straight.trainer.global_step == 44
    torch.testing.assert_close(
        flat(resumed.parameters()), flat(straight.parameters()), rtol=0, atol=0
    )


def test_aae_iwae_schedule_and_discriminator_lr_set_both_learning_rates(tmp_path):
    config = tiny_aae_config(schedule="iwae", discriminator_lr=1e-3, max_steps=30)
    module = fit(config, tmp_path / "run", progress_bar=False)
    g, d = (opt.param_groups[0]["lr"] for opt in module.trainer.optimizers)
    assert module.trainer.global_step == 30  # stopped in epoch 1: stage 1 of the schedule
    assert math.isclose(g, 3e-3 * 10 ** (-1 / 7)) and math.isclose(d, 1e-3 * 10 ** (-1 / 7))


def test_aae_deterministic_encoder_trains(tmp_path):
    module = fit(
        tiny_aae_config(deterministic_encoder=True, max_steps=5),
        tmp_path / "run",
        progress_bar=False,
    )
    assert module.family.objective.deterministic and module.trainer.global_step == 5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(objective="aae", posterior="diffusion"), "go together"),
        (dict(objective="ddvi", posterior="iaf"), "go together"),
        (dict(objective="aae", latent_dims=[2, 2], prior="standard-normal"), "one latent layer"),
        (
            dict(objective="elbo", posterior="iaf", latent_dims=[4, 2], prior="standard-normal"),
            "iaf posterior has one latent",
        ),
        (
            dict(objective="aae", posterior="iaf", deterministic_encoder=True),
            "needs posterior 'gaussian'",
        ),
        (dict(objective="elbo", deterministic_encoder=True), "options of objective 'aae'"),
        (dict(objective="iwae", discriminator_lr=1e-3), "options of objective 'aae'"),
        (dict(adversarial_weight=-1.0), "adversarial_weight must be finite and >= 0"),
        (dict(adversarial_weight=math.inf), "adversarial_weight must be finite"),
        (dict(discriminator_lr=0.0), "discriminator_lr must be None or > 0"),
        (dict(posterior="iaf", iaf_flows=0), "iaf_flows must be >= 1"),
        (dict(posterior="iaf", made_hidden=[]), "made_hidden must be"),
        (dict(posterior="planar"), "posterior must be one of"),
    ],
)
def test_invalid_iaf_and_aae_combinations_raise_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_aae_config(**overrides)


def test_defaults_are_unchanged():
    config = TrainConfig()
    assert config.posterior == "gaussian" and config.objective == "iwae"
    assert config.iaf_flows == 4 and config.made_hidden is None
    assert config.adversarial_weight == 1.0 and not config.deterministic_encoder
    assert config.discriminator_lr is None
    module = TrainingModule(
        "vae", TrainConfig(dataset="digits", latent_dims=[4], hidden=[[16]], event_shape=[1, 8, 8])
    )
    assert module.automatic_optimization and not hasattr(module.family, "discriminator")
