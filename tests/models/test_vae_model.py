"""VAE: log-density decomposition, shapes of samples, presets and input validation."""

import pytest
import torch
from torch import nn

from diffvi.distributions import BernoulliLikelihood, GaussianLikelihood
from diffvi.distributions.gaussian import diagonal_normal_log_prob, standard_normal_log_prob
from diffvi.models import VAE, build_vae

K, B = 4, 3
TWO_LAYER = {"latent_dims": [4, 3], "hidden": [[16], [8]]}


def small_vae(layers: int):
    torch.manual_seed(0)
    if layers == 1:
        model, posterior = build_vae((6,), "iwae-1", latent_dims=[2], hidden=[[8]])
    else:
        model, posterior = build_vae((1, 28, 28), "iwae-2", **TWO_LAYER)
    return model.double(), posterior.double()


def binary_x(model, batch: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.bernoulli(
        torch.full((batch, *model.event_shape), 0.4, dtype=torch.float64), generator=g
    )


@pytest.mark.parametrize("layers", [1, 2])
def test_log_joint_is_log_prior_plus_log_likelihood_with_shape_k_b(layers):
    model, posterior = small_vae(layers)
    x = binary_x(model)
    z = posterior.sample(x, K).z
    lj = model.log_joint(x, z)
    assert lj.shape == (K, B)
    torch.testing.assert_close(lj, model.log_prior(z) + model.log_likelihood(x, z))


def test_single_layer_log_prior_is_standard_normal():
    model, _ = small_vae(1)
    z = torch.randn(K, B, 2, dtype=torch.float64)
    torch.testing.assert_close(model.log_prior(z), standard_normal_log_prob(z))


def test_two_layer_log_prior_is_top_standard_normal_plus_conditional_of_bottom_layer():
    model, _ = small_vae(2)
    z = torch.randn(K, B, 7, dtype=torch.float64)
    z1, z2 = z.split([4, 3], dim=-1)
    mean, log_std = model.conditionals[0](z2).chunk(2, -1)
    expected = standard_normal_log_prob(z2) + diagonal_normal_log_prob(z1, mean, log_std)
    torch.testing.assert_close(model.log_prior(z), expected, rtol=0, atol=1e-12)


def test_three_layer_log_prior_chains_each_conditional_on_the_layer_above():
    torch.manual_seed(0)
    model, _ = build_vae((6,), latent_dims=[3, 2, 2], hidden=[[8], [4], [4]])
    model = model.double()
    z = torch.randn(K, B, 7, dtype=torch.float64)
    z1, z2, z3 = z.split([3, 2, 2], dim=-1)
    m1, s1 = model.conditionals[0](z2).chunk(2, -1)
    m2, s2 = model.conditionals[1](z3).chunk(2, -1)
    expected = (
        standard_normal_log_prob(z3)
        + diagonal_normal_log_prob(z2, m2, s2)
        + diagonal_normal_log_prob(z1, m1, s1)
    )
    torch.testing.assert_close(model.log_prior(z), expected, rtol=0, atol=1e-12)
    assert model.sample_latent(5).shape == (5, 7)


def test_log_likelihood_scores_flattened_x_against_decoder_of_bottom_layer_only():
    model, _ = small_vae(2)
    x = binary_x(model)
    z = torch.randn(K, B, 7, dtype=torch.float64)
    expected = BernoulliLikelihood().log_prob(x.flatten(1), model.decoder(z[..., :4]))
    torch.testing.assert_close(model.log_likelihood(x, z), expected)
    z_other_top = torch.cat([z[..., :4], torch.randn(K, B, 3, dtype=torch.float64)], -1)
    torch.testing.assert_close(model.log_likelihood(x, z_other_top), expected)


@pytest.mark.parametrize("layers", [1, 2])
def test_sample_returns_num_by_event_shape_means_in_unit_interval_and_binary_draws(layers):
    model, _ = small_vae(layers)
    means = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert means.shape == (5, *model.event_shape) and means.dtype == torch.float64
    assert ((means > 0) & (means < 1)).all()
    draws = model.sample(5, generator=torch.Generator().manual_seed(0), mean=False)
    assert draws.shape == (5, *model.event_shape)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    assert model.sample_latent(6).shape == (6, model.latent_dim)


@pytest.mark.parametrize("layers", [1, 2])
def test_sample_is_reproducible_with_the_same_generator_seed(layers):
    model, _ = small_vae(layers)
    a = model.sample(4, generator=torch.Generator().manual_seed(11), mean=False)
    b = model.sample(4, generator=torch.Generator().manual_seed(11), mean=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sample_latent_of_two_layers_follows_the_prior_conditional_moments():
    # z2 ~ N(0, I) and z1 | z2 ~ N(μ(z2), σ(z2)²): standardised z1 residuals are N(0, 1).
    model, _ = small_vae(2)
    z = model.sample_latent(20_000, generator=torch.Generator().manual_seed(1))
    z1, z2 = z.split([4, 3], dim=-1)
    mean, log_std = model.conditionals[0](z2).chunk(2, -1)
    r = ((z1 - mean) / log_std.exp()).detach()
    torch.testing.assert_close(z2.mean(0), torch.zeros(3, dtype=torch.float64), atol=0.03, rtol=0)
    torch.testing.assert_close(z2.std(0), torch.ones(3, dtype=torch.float64), atol=0.03, rtol=0)
    torch.testing.assert_close(r.mean(0), torch.zeros(4, dtype=torch.float64), atol=0.03, rtol=0)
    torch.testing.assert_close(r.std(0), torch.ones(4, dtype=torch.float64), atol=0.03, rtol=0)


@pytest.mark.parametrize("layers", [1, 2])
def test_reconstruct_returns_x_shape_and_single_layer_uses_decoder_at_posterior_mean(layers):
    model, posterior = small_vae(layers)
    x = binary_x(model)
    rec = model.reconstruct(x, posterior)
    assert rec.shape == x.shape
    if layers == 1:
        mean = posterior.encoders[0](x.flatten(1)).chunk(2, -1)[0]
        torch.testing.assert_close(rec, torch.sigmoid(model.decoder(mean)).reshape(x.shape))


@pytest.mark.parametrize(
    ("architecture", "latent_dims"), [("iwae-1", [50]), ("iwae-2", [100, 50]), ("aevb", [20])]
)
def test_build_vae_presets_give_the_papers_latent_dims_and_mirrored_networks(
    architecture, latent_dims
):
    model, posterior = build_vae((1, 28, 28), architecture)
    assert model.latent_dims == posterior.latent_dims == latent_dims
    assert model.decoder.in_features == latent_dims[0]
    assert model.decoder.out_features == 784
    assert posterior.encoders[0].in_features == 784
    assert posterior.encoders[0].out_features == 2 * latent_dims[0]
    assert len(model.conditionals) == len(latent_dims) - 1


def test_build_vae_with_learned_gaussian_likelihood_decodes_mean_and_log_std():
    model, _ = build_vae((5,), "aevb", likelihood="gaussian", latent_dims=[2], hidden=[[4]])
    assert isinstance(model.likelihood, GaussianLikelihood)
    assert model.decoder.out_features == 10
    fixed, _ = build_vae(
        (5,), "aevb", likelihood=GaussianLikelihood(scale=0.3), latent_dims=[2], hidden=[[4]]
    )
    assert fixed.decoder.out_features == 5


def test_build_vae_latent_dims_override_reuses_preset_hidden_sizes_per_layer():
    model, posterior = build_vae((6,), "iwae-1", latent_dims=[3, 2])
    assert model.latent_dims == [3, 2] and posterior.latent_dim == 5
    assert posterior.encoders[1].in_features == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"architecture": "iwae-3"},
        {"likelihood": "poisson"},
        {"activation": "sigmoidal"},
        {"latent_dims": [2, 2], "hidden": [[4]]},
    ],
)
def test_build_vae_with_unknown_names_or_mismatched_hidden_raises_value_error(kwargs):
    with pytest.raises(ValueError):
        build_vae((6,), **kwargs)


def test_vae_with_wrong_number_of_conditionals_raises_value_error():
    with pytest.raises(ValueError, match="conditionals"):
        VAE((6,), [2, 2], nn.Linear(2, 6), BernoulliLikelihood(), conditionals=())


@pytest.mark.parametrize("bad_shape", [(B, 7), (B, 1, 6), (B, 2, 3)])
def test_log_likelihood_with_x_of_wrong_event_shape_raises_value_error(bad_shape):
    model, _ = small_vae(1)
    z = torch.zeros(K, B, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_likelihood(torch.zeros(bad_shape, dtype=torch.float64), z)
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_joint(torch.zeros(bad_shape, dtype=torch.float64), z)


@pytest.mark.parametrize("z_shape", [(K, B, 3), (K, B + 2, 2)])
def test_log_joint_with_z_of_wrong_latent_or_batch_size_raises_value_error(z_shape):
    model, _ = small_vae(1)
    x = binary_x(model)
    with pytest.raises(ValueError):
        model.log_joint(x, torch.zeros(z_shape, dtype=torch.float64))
