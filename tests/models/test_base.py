"""The LatentVariableModel contract: the models the objectives train provide it, with the
shapes it names."""

import torch
from torch import nn

from diffvi.models import LatentVariableModel, SigmoidBeliefNet, build_vae


def test_vae_and_sbn_are_latent_variable_models_with_k_by_b_log_densities():
    vae, _ = build_vae((1, 2, 3), latent_dims=[4, 2], hidden=[[8], [8]])
    sbn = SigmoidBeliefNet((1, 2, 3), layers=(5, 3))
    x = torch.rand(7, 1, 2, 3).round()
    for model in (vae, sbn):
        assert isinstance(model, LatentVariableModel)
        z = torch.randn(4, 7, model.latent_dim).gt(0).float()  # binary: valid for both models
        joint = model.log_joint(x, z)
        assert joint.shape == (4, 7)
        torch.testing.assert_close(joint, model.log_prior(z) + model.log_likelihood(x, z))


def test_a_module_without_the_three_densities_is_not_a_latent_variable_model():
    assert not isinstance(nn.Linear(2, 2), LatentVariableModel)
