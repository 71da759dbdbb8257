"""Sigmoid belief nets and their layer-wise Bernoulli posteriors: shapes, log-densities that
agree between sampling and scoring, ancestral samples, and clear errors."""

import pytest
import torch

from diffvi.distributions.bernoulli import bernoulli_log_prob
from diffvi.models.sbn import SigmoidBeliefNet
from diffvi.posteriors.bernoulli import BernoulliPosterior


def test_log_joint_is_the_sum_of_its_factors_and_of_prior_and_likelihood():
    torch.manual_seed(0)
    model = SigmoidBeliefNet((1, 4, 4), (5, 3, 2))
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.3))
    z = torch.bernoulli(torch.full((7, 6, 10), 0.5))
    terms = model.log_joint_terms(x, z)
    assert terms.shape == (4, 7, 6) and bool((terms <= 0).all())
    torch.testing.assert_close(terms.sum(0), model.log_joint(x, z))
    torch.testing.assert_close(model.log_prior(z) + model.log_likelihood(x, z), terms.sum(0))
    # Top layer: independent Bernoulli(σ(b)).
    torch.testing.assert_close(
        terms[3], bernoulli_log_prob(z[..., 8:], model.top_logits.expand(7, 6, 2))
    )


def test_posterior_scores_its_own_draws_as_it_sampled_them():
    torch.manual_seed(1)
    posterior = BernoulliPosterior((12,), (4, 3))
    x = torch.bernoulli(torch.full((5, 12), 0.5))
    s = posterior.sample(x, 9)
    assert s.z.shape == (9, 5, 7) and not s.z.requires_grad
    assert set(s.z.unique().tolist()) <= {0.0, 1.0}
    assert s.extras["log_q_layers"].shape == (2, 9, 5)
    torch.testing.assert_close(posterior.log_prob(x, s.z), s.log_q)
    torch.testing.assert_close(posterior.log_prob_layers(x, s.z), s.extras["log_q_layers"])


def test_ancestral_samples_follow_the_top_layer_probabilities():
    model = SigmoidBeliefNet((3,), (2,))
    with torch.no_grad():
        model.top_logits.copy_(torch.tensor([2.0, -2.0]))
    z = model.sample_latent(20000, torch.Generator().manual_seed(0))
    freq = z.mean(0)
    expected = torch.sigmoid(torch.tensor([2.0, -2.0]))
    assert torch.allclose(freq, expected, atol=0.015)
    x, h = model.sample_joint(4, torch.Generator().manual_seed(1))
    assert x.shape == (4, 3) and h.shape == (4, 2)
    assert model.sample(5).shape == (5, 3)


def test_visible_bias_initialises_the_pixel_logits():
    bias = torch.linspace(-2, 2, 6)
    model = SigmoidBeliefNet((6,), (2,), visible_bias=bias)
    assert torch.equal(model.decoders[0].bias.detach(), bias)
    with pytest.raises(ValueError, match="visible_bias must have shape"):
        SigmoidBeliefNet((6,), (2,), visible_bias=torch.zeros(5))


@pytest.mark.parametrize("layers", [(), (0,), (3, -1), (2.5,)])
def test_bad_layers_are_errors(layers):
    with pytest.raises(ValueError, match="layers must be"):
        SigmoidBeliefNet((4,), layers)
    with pytest.raises(ValueError, match="layers must be"):
        BernoulliPosterior((4,), layers)


def test_bad_shapes_are_errors():
    model, posterior = SigmoidBeliefNet((4,), (3,)), BernoulliPosterior((4,), (3,))
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_joint(torch.zeros(2, 5), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="z must have shape"):
        model.log_joint(torch.zeros(2, 4), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="z must have shape"):
        posterior.log_prob(torch.zeros(2, 4), torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="k must"):
        posterior.sample(torch.zeros(2, 4), 0)
