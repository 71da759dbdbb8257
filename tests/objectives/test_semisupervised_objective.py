"""The semi-supervised (M2) objective: the labelled bound is exactly E[log p(x, z, l) − log q],
the unlabelled bound sits below the base bound with equality when q(l|x) = p(l|z), and bad
inputs are refused with clear errors."""

import pytest
import torch
from tiny_vae import small_vae
from torch import nn

from diffvi.distributions.priors import StandardNormal
from diffvi.distributions.toy2d import MixturePrior, PinwheelPrior, SquarePrior, SwissRollPrior
from diffvi.objectives import ELBO, IWAE, SemiSupervised
from diffvi.objectives.semisupervised import label_correction, prior_log_responsibilities


def mixture_vae(layers: int = 1, batch: int = 4):
    """The tiny float64 VAE of ``tiny_vae`` with a fixed 10-component mixture prior on top."""
    model, posterior, x = small_vae(layers, batch)
    torch.manual_seed(2)
    model.prior = MixturePrior(dim=2, learnable=True, init_std=0.5).double()
    with torch.no_grad():
        model.prior.logits.normal_()  # non-uniform p(l)
    return model, posterior, x


class Linear(nn.Module):
    """A classifier q(l|x) for flat x: logits [B, L]."""

    def __init__(self, data_dim: int, num_labels: int = 10) -> None:
        super().__init__()
        self.net = nn.Linear(data_dim, num_labels).double()

    def forward(self, x):
        return self.net(x.flatten(1))


@pytest.mark.parametrize(
    "prior", [PinwheelPrior(), SwissRollPrior(), SquarePrior(), MixturePrior()]
)
def test_mixture_over_partitions_gives_prior_log_prob_and_responsibilities_normalise(prior):
    prior = prior.double()
    z = prior.sample((64,), generator=torch.Generator().manual_seed(0)) + 0.05 * torch.randn(
        64, 2, dtype=torch.float64
    )
    joint = prior.log_prob_per_partition(z) + prior.log_mixing_weights()
    torch.testing.assert_close(torch.logsumexp(joint, -1), prior.log_prob(z))
    log_resp = prior_log_responsibilities(prior, z)
    torch.testing.assert_close(torch.logsumexp(log_resp, -1), torch.zeros(64, dtype=torch.float64))


@pytest.mark.parametrize("layers", [1, 2])
def test_labelled_bound_equals_elbo_of_joint_with_label_on_same_draws(layers):
    model, posterior, x = mixture_vae(layers, batch=5)
    labels = torch.tensor([0, 3, 9, 3, 7])
    classifier = Linear(model.data_dim)
    torch.manual_seed(3)
    out = SemiSupervised(ELBO(k=4))(model, posterior, x, labels, classifier)
    z = out.z.detach()  # [K, B, D]
    top = z[..., -2:]
    log_p_zl = (
        model.prior.log_prob_given_label(top, labels) + model.prior.log_mixing_weights()[labels]
    )
    # log p(x, z, l) = log p(x|z) + log p(z_1..z_{L-1} | z_L) + log p(z_L | l) + log p(l)
    lower = model.log_prior(z) - model.prior.log_prob(top)  # the conditionals' part (0 for L=1)
    direct = model.log_likelihood(x, z) + lower + log_p_zl - posterior.log_prob(x, z)
    torch.testing.assert_close(out.bound, direct.mean(0).detach())
    # ... which is the base ELBO plus E[log p(l|z)] on the same draws.
    base = model.log_likelihood(x, z) + model.log_prior(z) - posterior.log_prob(x, z)
    log_resp = prior_log_responsibilities(model.prior, top)
    corr = log_resp.gather(-1, labels[None, :, None].expand(4, -1, 1)).squeeze(-1)
    torch.testing.assert_close(out.bound, (base + corr).mean(0).detach())


def test_unlabelled_correction_is_minus_kl_zero_iff_classifier_matches_responsibilities():
    g = torch.Generator().manual_seed(0)
    log_resp = torch.log_softmax(torch.randn(3, 6, 10, generator=g, dtype=torch.float64), -1)
    log_q = torch.log_softmax(torch.randn(6, 10, generator=g, dtype=torch.float64), -1)
    unlabelled = torch.full((6,), -1)
    c = label_correction(log_resp, log_q, unlabelled)
    kl = (log_q.exp() * (log_q - log_resp)).sum(-1)
    torch.testing.assert_close(c, -kl)
    assert (c < 0).all()
    # q(l|x) = p(l|z): no gap (one draw per item, so q can match it exactly).
    matched = label_correction(log_resp[:1], log_resp[0], unlabelled)
    torch.testing.assert_close(matched, torch.zeros(1, 6, dtype=torch.float64))


def test_unlabelled_bound_is_below_base_elbo_on_same_draws():
    model, posterior, x = mixture_vae(batch=6)
    classifier = Linear(model.data_dim)
    unlabelled = torch.full((6,), -1)
    torch.manual_seed(5)
    semi = SemiSupervised(ELBO(k=3))(model, posterior, x, unlabelled, classifier)
    torch.manual_seed(5)
    base = ELBO(k=3)(model, posterior, x)
    torch.testing.assert_close(semi.z, base.z)
    assert (semi.bound < base.bound).all()
    assert float(semi.metrics["labelled_fraction"]) == 0.0
    assert float(semi.metrics["classifier_loss"]) == 0.0


def test_unlabelled_bound_equals_base_when_classifier_returns_prior_responsibilities():
    model, posterior, x = mixture_vae(batch=4)
    unlabelled = torch.full((4,), -1)

    class Oracle(nn.Module):
        """Returns log p(l|z) of the draw the base objective made (K = 1)."""

        def forward(self, x):
            return prior_log_responsibilities(model.prior, self.z[0])

    oracle = Oracle()
    torch.manual_seed(11)
    oracle.z = ELBO()(model, posterior, x).z.detach()
    torch.manual_seed(11)
    semi = SemiSupervised(ELBO())(model, posterior, x, unlabelled, oracle)
    torch.manual_seed(11)
    base = ELBO()(model, posterior, x)
    torch.testing.assert_close(semi.bound, base.bound)


def test_loss_adds_weighted_label_term_and_cross_entropy_and_trains_classifier():
    model, posterior, x = mixture_vae(batch=4)
    labels = torch.tensor([2, -1, 5, -1])
    classifier = Linear(model.data_dim)
    torch.manual_seed(1)
    base = ELBO()(model, posterior, x)
    torch.manual_seed(1)
    out = SemiSupervised(ELBO(), label_weight=0.5, classifier_weight=2.0)(
        model, posterior, x, labels, classifier
    )
    log_q = torch.log_softmax(classifier(x), -1)
    ce = -(log_q[0, 2] + log_q[2, 5]) / 2
    label_term = (out.bound - base.bound).mean()
    torch.testing.assert_close(out.loss, base.loss - 0.5 * label_term + 2.0 * ce)
    torch.testing.assert_close(out.metrics["classifier_loss"], ce.detach())
    assert float(out.metrics["labelled_fraction"]) == 0.5
    out.loss.backward()
    assert classifier.net.weight.grad.abs().sum() > 0
    assert model.prior.means.grad.abs().sum() > 0


def test_iwae_base_is_refused_naming_elbo_and_ddvi():
    with pytest.raises(ValueError, match="ELBO or DDVI"):
        SemiSupervised(IWAE(k=5))


def test_prior_without_partitions_is_refused():
    model, posterior, x = small_vae()
    assert isinstance(model.prior, StandardNormal)
    with pytest.raises(ValueError, match="partitioned prior"):
        SemiSupervised(ELBO())(model, posterior, x, torch.zeros(4, dtype=torch.long), Linear(6))


def test_bad_labels_and_classifier_outputs_are_refused():
    model, posterior, x = mixture_vae(batch=4)
    objective = SemiSupervised(ELBO())
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        objective(model, posterior, x, torch.tensor([0, 1, 10, -1]), Linear(6))
    with pytest.raises(ValueError, match="one entry per item"):
        objective(model, posterior, x, torch.tensor([0, 1]), Linear(6))
    with pytest.raises(ValueError, match="integer tensor"):
        objective(model, posterior, x, torch.zeros(4), Linear(6))
    with pytest.raises(ValueError, match=r"logits \[B, L\] = \[4, 10\]"):
        objective(model, posterior, x, torch.zeros(4, dtype=torch.long), Linear(6, 3))
    with pytest.raises(ValueError, match="must be >= 0"):
        SemiSupervised(ELBO(), label_weight=-1.0)
