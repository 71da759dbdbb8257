"""The label-conditioned semi-supervised objective (M2 with q(z, l|x) = q(l|x) q(z|x, l)) on a tiny
float64 model with 3 labels: the bound is the labelled item's B_l(x) with its own label and
Σ_l q(l|x) B_l(x) + H(q(l|x)) for an unlabelled one (checked by hand on the same noise), the loss
is its weighted terms (exactly M2's −bound at entropy_weight −1), the classifier learns through
q(l|x), the sleep term denoises labelled fantasies with their labels, and misuse is refused."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffvi.distributions.toy2d import MixturePrior
from diffvi.models import build_vae
from diffvi.objectives import DDVI, ELBO, IWAE, LabelConditionedSemiSupervised
from diffvi.objectives.semisupervised import label_pairs
from diffvi.posteriors import build_diffusion_posterior, label_conditioned

L = 3


class Linear(nn.Module):
    """q(l|x) logits ``[B, L]`` from flat x, spread enough that q(l|x) differs by item."""

    def __init__(self, data_dim: int) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.net = nn.Linear(data_dim, L).double()
        with torch.no_grad():
            self.net.weight.normal_(0, 2)

    def forward(self, x):
        return self.net(x.flatten(1))


def tiny(kind: str = "diffusion", init_std: float = 0.5):
    """``(model, posterior, x)``: a 6-pixel Bernoulli VAE with a 3-part mixture prior and a
    label-conditioned diffusion (or Gaussian) posterior, float64."""
    torch.manual_seed(0)
    model, gaussian = build_vae(
        (6,), latent_dims=[2], hidden=[[8]], num_labels=L if kind == "gaussian" else 0
    )
    model.prior = MixturePrior(L, dim=2, init_std=init_std)
    with torch.no_grad():
        model.prior.logits.copy_(torch.tensor([0.3, -0.2, 0.1]))  # non-uniform p(l)
    base = gaussian
    if kind == "diffusion":
        base = build_diffusion_posterior(
            6, 2, num_steps=3, hidden=[8], context_dim=4, num_labels=L, zero_init_denoiser=False
        )
    posterior = label_conditioned(base, Linear(6))
    x = torch.bernoulli(torch.full((5, 6), 0.4, dtype=torch.float64),
                        generator=torch.Generator().manual_seed(1))  # fmt: skip
    return model.double(), posterior.double(), x


LABELS = torch.tensor([-1, 2, -1, 0, -1])


def hand_pair_bounds(model, posterior, x, labels, k, kind):
    """(pairs, B [N]) by the definitions, on the draws the objective makes next (same RNG)."""
    pairs = [(i, c) for i, y in enumerate(labels.tolist()) for c in range(L) if y < 0 or c == y]
    items = torch.tensor([i for i, _ in pairs])
    pair_labels = torch.tensor([c for _, c in pairs])
    s = posterior.sample(x[items], k, label=pair_labels)
    z = s.z
    log_p_zl = (
        model.prior.log_prob_given_label(z, pair_labels)
        + (model.prior.log_mixing_weights()[pair_labels])
    )
    if kind == "diffusion":  # log p(x|z) + log p(z, l) + log r(y|z) − log q(y, z|x, l)
        b = model.log_likelihood(x[items], z) + log_p_zl + s.extras["log_r"]
        b = b - s.extras["log_q_joint"]
    else:  # log p(x|z) + log p(z, l) − log q(z|x, l)
        b = model.log_likelihood(x[items], z) + log_p_zl - s.log_q
    rec = model.log_likelihood(x[items], z).mean(0)
    return items, pair_labels, b.mean(0).detach(), rec.detach()


def test_pairs_are_every_label_for_unlabelled_and_the_own_label_for_labelled_items():
    items, labels = label_pairs(LABELS, L)
    assert items.tolist() == [0, 0, 0, 1, 2, 2, 2, 3, 4, 4, 4]
    assert labels.tolist() == [0, 1, 2, 2, 0, 1, 2, 0, 0, 1, 2]


@pytest.mark.parametrize("kind", ["diffusion", "gaussian"])
def test_bound_is_the_own_labels_bound_or_the_q_weighted_sum_plus_entropy(kind):
    model, posterior, x = tiny(kind)
    base = DDVI(k=2, beta_sleep=0) if kind == "diffusion" else ELBO(k=2)
    objective = LabelConditionedSemiSupervised(base)
    torch.manual_seed(5)
    out = objective(model, posterior, x, LABELS)
    torch.manual_seed(5)
    items, pair_labels, b, _ = hand_pair_bounds(model, posterior, x, LABELS, 2, kind)
    q = F.softmax(posterior.label_logits(x), -1).detach()
    assert len(set(q.argmax(-1).tolist())) > 1
    want = torch.zeros(5, dtype=torch.float64)
    for n, (i, c) in enumerate(zip(items.tolist(), pair_labels.tolist(), strict=True)):
        want[i] += b[n] if LABELS[i] >= 0 else q[i, c] * b[n]
    entropy = -(q * q.log()).sum(-1)
    want = want + torch.where(LABELS < 0, entropy, torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(out.bound, want)
    assert out.z is None


@pytest.mark.parametrize("kind", ["diffusion", "gaussian"])
def test_loss_is_the_weighted_terms_and_m2s_negative_bound_at_entropy_weight_minus_one(kind):
    model, posterior, x = tiny(kind)
    beta = 0.5 if kind == "diffusion" else 1.0
    base = DDVI(k=2, beta_reg=beta, beta_sleep=0) if kind == "diffusion" else ELBO(k=2)
    objective = LabelConditionedSemiSupervised(base, classifier_weight=2.0, entropy_weight=0.3)
    torch.manual_seed(5)
    out = objective(model, posterior, x, LABELS)
    torch.manual_seed(5)
    items, pair_labels, b, rec = hand_pair_bounds(model, posterior, x, LABELS, 2, kind)
    log_q = F.log_softmax(posterior.label_logits(x), -1).detach()
    q = log_q.exp()
    unlabelled = LABELS < 0
    w = torch.where(unlabelled[items], q[items, pair_labels], torch.ones(len(items)).double())
    wake = torch.zeros(5, dtype=torch.float64).index_add(0, items, w * (rec + beta * (b - rec)))
    entropy = torch.where(unlabelled, -(q * log_q).sum(-1), torch.zeros(5).double())
    ce = -log_q[~unlabelled, LABELS[~unlabelled]].mean()
    want = -wake.mean() + beta * 0.3 * entropy.mean() + 2.0 * ce
    torch.testing.assert_close(out.loss.detach(), want)
    torch.testing.assert_close(out.metrics["classifier_loss"], ce)
    torch.testing.assert_close(out.metrics["label_entropy"], entropy.sum() / 3)
    # M2 (Kingma et al. eqs. 6-8 without α): loss = −mean(L or U) at β = 1, λ_H = −1, α = 0.
    m2_base = DDVI(k=2, beta_sleep=0) if kind == "diffusion" else ELBO(k=2)
    m2 = LabelConditionedSemiSupervised(m2_base, classifier_weight=0, entropy_weight=-1)
    torch.manual_seed(5)
    out = m2(model, posterior, x, LABELS)
    torch.testing.assert_close(out.loss.detach(), -out.bound.mean())


def test_gradients_reach_the_classifier_through_q_of_unlabelled_items_only():
    model, posterior, x = tiny()
    objective = LabelConditionedSemiSupervised(
        DDVI(k=1, beta_sleep=0), classifier_weight=0, entropy_weight=0
    )
    torch.manual_seed(0)
    objective(model, posterior, x, torch.full((5,), -1)).loss.backward()
    grad = posterior.classifier.net.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    posterior.zero_grad()
    torch.manual_seed(0)
    objective(model, posterior, x, torch.tensor([0, 1, 2, 0, 1])).loss.backward()
    grad = posterior.classifier.net.weight.grad
    assert grad is None or grad.abs().sum() == 0  # all labelled: no q(l|x) weights, α = 0
    torch.manual_seed(0)
    objective.classifier_weight = 1.0
    objective(model, posterior, x, torch.tensor([0, 1, 2, 0, 1])).loss.backward()
    assert posterior.classifier.net.weight.grad.abs().sum() > 0  # the cross-entropy


def test_each_pair_runs_the_chain_with_its_label(monkeypatch):
    model, posterior, x = tiny()
    seen = []
    sample = posterior.sample

    def recording(xs, k=1, generator=None, label=None):
        seen.append(label.clone())
        return sample(xs, k, generator, label=label)

    monkeypatch.setattr(posterior, "sample", recording)
    LabelConditionedSemiSupervised(DDVI(k=1, beta_sleep=0))(model, posterior, x, LABELS)
    assert seen[0].tolist() == [0, 1, 2, 2, 0, 1, 2, 0, 0, 1, 2]


def test_sleep_denoises_fantasies_of_the_partitioned_prior_with_their_own_labels(monkeypatch):
    model, posterior, x = tiny(init_std=0.05)  # partitions far apart: p(l|z) picks the label
    seen = []
    denoise = posterior.base.denoising_loss

    def recording(z, x=None, generator=None, huber=False, label=None):
        seen.append((z, label))
        return denoise(z, x, generator, huber, label=label)

    monkeypatch.setattr(posterior.base, "denoising_loss", recording)
    objective = LabelConditionedSemiSupervised(DDVI(k=1, sleep_steps=2, sleep_batch=64))
    out = objective(model, posterior, x, LABELS)
    assert len(seen) == 2 and out.metrics["sleep"] > 0
    for z, label in seen:
        assert label.shape == (64,) and len(set(label.tolist())) == L
        assert (model.prior.responsibilities(z).argmax(-1) == label).all()


def test_misuse_is_refused():
    model, posterior, x = tiny()
    with pytest.raises(ValueError, match="ELBO or DDVI"):
        LabelConditionedSemiSupervised(IWAE(k=2))
    with pytest.raises(ValueError, match="analytic_kl=False"):
        LabelConditionedSemiSupervised(ELBO(analytic_kl=True))
    with pytest.raises(ValueError, match="finite"):
        LabelConditionedSemiSupervised(ELBO(), entropy_weight=float("nan"))
    objective = LabelConditionedSemiSupervised(DDVI(beta_sleep=0))
    with pytest.raises(ValueError, match="LabelConditionedPosterior"):
        objective(model, posterior.base, x, LABELS)
    model.prior = MixturePrior(4, dim=2).double()  # 4 partitions, 3 labels
    with pytest.raises(ValueError, match=r"one label per prior partition \(4\)"):
        objective(model, posterior, x, LABELS)
    model.prior = MixturePrior(L, dim=2).double()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        objective(model, posterior, x, torch.tensor([0, 1, 2, 3, -1]))
