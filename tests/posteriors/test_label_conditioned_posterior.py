"""Label-conditioned posteriors q(z|x, l): the label reaches the Gaussian and IAF encoders and the
diffusion chain's denoiser (not q(y_T|x)), sampling and scoring agree given a label, missing or
bad labels are refused, and without a label the posterior uses argmax q(l|x)."""

import pytest
import torch
from torch import nn

from diffvi.models import build_vae
from diffvi.posteriors import (
    LabelConditionedDiffusion,
    LabelConditionedPosterior,
    build_diffusion_posterior,
    build_iaf_posterior,
    label_conditioned,
)

L = 3


class Linear(nn.Module):
    """q(l|x) logits ``[B, L]`` from flat x."""

    def __init__(self, data_dim: int) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.net = nn.Linear(data_dim, L).double()
        with torch.no_grad():
            self.net.weight.normal_(0, 3)  # items of X get different labels

    def forward(self, x):
        return self.net(x.flatten(1))


def gaussian():
    torch.manual_seed(0)
    _, posterior = build_vae((6,), latent_dims=[2], hidden=[[8]], num_labels=L)
    return posterior.double()


def iaf():
    torch.manual_seed(0)
    return build_iaf_posterior(
        6, 2, hidden=[8], num_flows=2, made_hidden=[8], num_labels=L
    ).double()


def diffusion(conditional: bool = True):
    torch.manual_seed(0)
    posterior = build_diffusion_posterior(
        6, 2, num_steps=3, hidden=[8], context_dim=4, conditional=conditional, num_labels=L,
        zero_init_denoiser=False,
    )  # fmt: skip
    return posterior.double()


X = torch.rand(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
LABELS = torch.tensor([0, 2, 1, 1, 0])


def draw(posterior, label, seed=0, k=2):
    return posterior.sample(X, k, torch.Generator().manual_seed(seed), label=label)


@pytest.mark.parametrize("build", [gaussian, iaf, diffusion, lambda: diffusion(False)])
def test_the_label_changes_the_draws_and_the_same_label_and_noise_repeat_them(build):
    posterior = build()
    a, b = draw(posterior, LABELS), draw(posterior, LABELS)
    torch.testing.assert_close(a.z, b.z)
    other = draw(posterior, (LABELS + 1) % L)
    assert (other.z - a.z).abs().amax(-1).min() > 1e-6  # every item moved


@pytest.mark.parametrize("build", [gaussian, iaf])
def test_log_prob_given_the_label_matches_the_sampled_log_q(build):
    posterior = build()
    s = draw(posterior, LABELS, k=3)
    torch.testing.assert_close(posterior.log_prob(X, s.z, label=LABELS), s.log_q)


def test_the_diffusion_encoder_of_y_T_ignores_the_label():
    posterior = diffusion()
    for label in (LABELS, (LABELS + 1) % L):
        s = draw(posterior, label)
        torch.testing.assert_close(s.extras["y_T_mean"], posterior.encode(X)[0])


def test_the_diffusion_denoising_loss_depends_on_the_label():
    posterior = diffusion(conditional=False)
    z = torch.randn(5, 2, dtype=torch.float64)
    losses = [
        posterior.denoising_loss(z, generator=torch.Generator().manual_seed(0), label=lab)
        for lab in (LABELS, (LABELS + 1) % L)
    ]
    assert not torch.allclose(*losses)


@pytest.mark.parametrize("build", [gaussian, iaf, diffusion])
def test_missing_or_bad_labels_are_refused(build):
    posterior = build()
    with pytest.raises(ValueError, match="needs a label"):
        posterior.sample(X, 1)
    with pytest.raises(ValueError, match=r"label must lie in \[0, 2\]"):
        posterior.sample(X, 1, label=torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="batch size 5"):
        posterior.sample(X, 1, label=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer tensor"):
        posterior.sample(X, 1, label=torch.zeros(5))


def test_a_posterior_without_labels_refuses_one():
    torch.manual_seed(0)
    _, posterior = build_vae((6,), latent_dims=[2], hidden=[[8]])
    with pytest.raises(ValueError, match="not label-conditioned"):
        posterior.double().sample(X, 1, label=LABELS)
    with pytest.raises(ValueError, match="label-conditioned"):
        LabelConditionedPosterior(posterior, Linear(6))


@pytest.mark.parametrize("build", [gaussian, iaf, diffusion])
def test_without_a_label_the_wrapper_uses_argmax_of_the_classifier(build):
    base = build()
    classifier = Linear(6)
    posterior = label_conditioned(base, classifier)
    assert isinstance(posterior, LabelConditionedDiffusion) == (build is diffusion)
    predicted = classifier(X).argmax(-1)
    assert len(set(predicted.tolist())) > 1  # the test tells labels apart
    g = torch.Generator().manual_seed(4)
    got = posterior.sample(X, 2, g)
    want = base.sample(X, 2, torch.Generator().manual_seed(4), label=predicted)
    torch.testing.assert_close(got.z, want.z)
    given = posterior.sample(X, 2, torch.Generator().manual_seed(4), label=LABELS)
    torch.testing.assert_close(given.z, draw(base, LABELS, seed=4).z)
    if build is not diffusion:  # a density to score
        torch.testing.assert_close(posterior.log_prob(X, got.z), want.log_q)
        # the stopped score (IWAE's STL/DReG estimators) goes through the argmax label too
        torch.testing.assert_close(posterior.log_prob_stopped(X, got.z), want.log_q)
    if build is gaussian:  # closed-form mean of the predicted label's Gaussian
        torch.testing.assert_close(
            posterior.expected_latent(X), base.expected_latent(X, label=predicted)
        )


def test_the_diffusion_wrapper_passes_the_chain_interface_through():
    base = diffusion()
    posterior = label_conditioned(base, Linear(6))
    assert posterior.num_steps == 3 and posterior.conditional
    assert posterior.schedule is base.schedule
    posterior.sampler = "ddim"
    assert base.sampler == "ddim"
    posterior.sampler = "ddpm"
    z = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(
        posterior.denoising_loss(z, X, torch.Generator().manual_seed(0), label=LABELS),
        base.denoising_loss(z, X, torch.Generator().manual_seed(0), label=LABELS),
    )
    with posterior.frozen_chain():
        assert base._chain_frozen
