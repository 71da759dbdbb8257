"""ClusterHeadsDDVI (the official DDVI clustering model on DDVI's bound): registered by name, its
loss is DDVI's plus the weighted repulsion and box terms while its bound is DDVI's, the sleep
term moves the heads only when asked, and a model without a cluster-heads prior is refused."""

import pytest
import torch

from diffvi.distributions import ClusterHeadsPrior, MixturePrior
from diffvi.models import build_vae
from diffvi.objectives import DDVI, OBJECTIVES, ClusterHeadsDDVI, build_objective
from diffvi.posteriors import build_diffusion_posterior


def _setup(prior=None):
    """A float64 VAE over 5 real features with a 3-head prior, its diffusion posterior (a
    denoiser that is not zero at the start, so that gradients reach the fantasies) and x."""
    torch.manual_seed(0)
    prior = prior if prior is not None else ClusterHeadsPrior(3, dim=2)
    model, _ = build_vae((5,), "iwae-1", "real-gaussian", [2], [[8]], prior=prior)
    posterior = build_diffusion_posterior(5, 2, num_steps=3, hidden=[8], zero_init_denoiser=False)
    with torch.no_grad():  # heads 0 and 1 closer than η = 1.5, head 2 far, one outside the box
        model.prior.scaled_heads.copy_(
            torch.tensor([[0.0, 0.0], [0.5, 0.0], [3.0, 1.0]]) / prior.speed
        )
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model.double(), posterior.double(), x


def test_registered_by_name_with_ddvis_config_fields():
    assert OBJECTIVES["ddvi-heads"] is ClusterHeadsDDVI
    assert ClusterHeadsDDVI.config_fields == DDVI.config_fields
    objective = build_objective("ddvi-heads", eta=2.0, repulsion_weight=3.0)
    assert objective.eta == 2.0 and objective.repulsion_weight == 3.0
    assert objective.diffusion_posterior


def test_loss_is_ddvis_plus_the_weighted_head_terms_and_the_bound_is_ddvis():
    model, posterior, x = _setup()
    heads = ClusterHeadsDDVI(beta_sleep=0.0, repulsion_weight=2.0, box_weight=10.0)
    torch.manual_seed(3)
    out = heads(model, posterior, x)
    torch.manual_seed(3)
    plain = DDVI(beta_sleep=0.0)(model, posterior, x)
    repulsion = model.prior.repulsion(1.5)
    box = model.prior.box_penalty(2.5)
    assert repulsion > 0 and box > 0
    torch.testing.assert_close(out.bound, plain.bound)
    torch.testing.assert_close(out.loss, plain.loss + 2.0 * repulsion + 10.0 * box)
    assert {"repulsion", "box", "head_gap"} <= set(out.metrics)
    torch.testing.assert_close(out.metrics["head_gap"], torch.tensor(0.5, dtype=torch.float64))


def test_the_sleep_term_moves_the_heads_only_with_sleep_moves_heads():
    model, posterior, x = _setup()
    for moves in (True, False):
        model.zero_grad()
        objective = ClusterHeadsDDVI(sleep_moves_heads=moves)
        objective.sleep_loss(model, posterior, 64, torch.Generator().manual_seed(0)).backward()
        grad = model.prior.scaled_heads.grad
        moved = grad is not None and bool(torch.count_nonzero(grad))
        assert moved == moves
        assert any(p.grad is not None for p in posterior.parameters())  # the chain learns


def test_a_model_without_a_cluster_heads_prior_is_refused():
    model, posterior, x = _setup(prior=None)
    model.prior = MixturePrior(3, dim=2).double()
    with pytest.raises(ValueError, match="prior must be ClusterHeadsPrior.*got MixturePrior"):
        ClusterHeadsDDVI()(model, posterior, x)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eta": -1.0}, "eta must be finite and >= 0, got -1.0"),
        ({"repulsion_weight": float("nan")}, "repulsion_weight must be finite and >= 0"),
        ({"box": 0.0}, "box must be finite and > 0, got 0.0"),
        ({"box_weight": -2.0}, "box_weight must be finite and >= 0, got -2.0"),
        ({"k": 0}, "k must be >= 1, got 0"),
    ],
)
def test_invalid_options_are_refused_with_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        ClusterHeadsDDVI(**options)


def test_without_bound_moves_heads_only_the_head_terms_move_the_heads():
    model, posterior, x = _setup()
    objective = ClusterHeadsDDVI(beta_sleep=0.0, bound_moves_heads=False)
    objective(model, posterior, x).loss.backward()
    got = model.prior.scaled_heads.grad.clone()
    model.zero_grad()
    (100.0 * model.prior.repulsion(1.5) + 100.0 * model.prior.box_penalty(2.5)).backward()
    torch.testing.assert_close(got, model.prior.scaled_heads.grad)
    model.zero_grad()
    ClusterHeadsDDVI(beta_sleep=0.0)(model, posterior, x).loss.backward()
    assert not torch.allclose(model.prior.scaled_heads.grad, got)  # log p(z) pulls them too
