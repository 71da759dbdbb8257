"""PosteriorWarmup: the official DDVI first stage (the reverse chain trained on the prior)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from diffvi.distributions import GaussianLikelihood, MixturePrior
from diffvi.models import VAE
from diffvi.nn import MLP
from diffvi.objectives import DDVI
from diffvi.posteriors import build_diffusion_posterior
from diffvi.training.callbacks import PosteriorWarmup


def small_module() -> nn.Module:
    torch.manual_seed(0)
    module = nn.Module()
    module.model = VAE(
        (6,), [2], MLP(2, [8], 6), GaussianLikelihood(0.5, sigmoid_mean=False),
        prior=MixturePrior(num_components=4),
    )  # fmt: skip
    module.posterior = build_diffusion_posterior(
        6, 2, num_steps=5, hidden=(32, 32), context_dim=4, beta_end=0.2
    )
    return module


def held_out_sleep_loss(module) -> float:
    with torch.no_grad():
        generator = torch.Generator().manual_seed(7)
        return float(DDVI().sleep_loss(module.model, module.posterior, 512, generator))


def test_warmup_lowers_the_sleep_loss_and_leaves_the_model_untouched():
    module = small_module()
    decoder_before = [p.clone() for p in module.model.parameters()]
    before = held_out_sleep_loss(module)
    warmup = PosteriorWarmup(steps=300, batch_size=128, lr=3e-3)
    warmup.on_train_start(SimpleNamespace(global_step=0), SimpleNamespace(family=module))
    assert held_out_sleep_loss(module) < 0.85 * before
    assert all(
        torch.equal(a, b) for a, b in zip(decoder_before, module.model.parameters(), strict=True)
    )
    assert all(p.grad is None for p in module.parameters())
    assert warmup.seconds > 0


def test_warmup_is_skipped_on_resume_and_with_zero_steps():
    for steps, global_step in ((10, 3), (0, 0)):
        module = small_module()
        state = {k: v.clone() for k, v in module.state_dict().items()}
        PosteriorWarmup(steps).on_train_start(SimpleNamespace(global_step=global_step), module)
        assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())


def test_bad_warmup_arguments_raise_value_error():
    for kwargs in ({"steps": -1}, {"steps": 1, "batch_size": 0}, {"steps": 1, "lr": 0.0}):
        with pytest.raises(ValueError, match="need steps >= 0"):
            PosteriorWarmup(**kwargs)
