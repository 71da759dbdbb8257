"""The cluster-head prior (the official DDVI clustering model's ClusteringPrior): its density is
the equal-weight isotropic mixture around the heads, its samples pick heads uniformly and carry
gradient to them, the η-margin repulsion is zero beyond η and pushes closer heads apart, the box
penalty holds them in [−c, c]^D, and a point's cluster is its nearest head."""

import math

import pytest
import torch

from diffvi.distributions import ClusterHeadsPrior, PartitionedPrior, build_prior


def _prior(heads: list[list[float]], std: float = 0.3) -> ClusterHeadsPrior:
    prior = ClusterHeadsPrior(len(heads), dim=len(heads[0]), std=std).double()
    with torch.no_grad():
        prior.scaled_heads.copy_(torch.tensor(heads, dtype=torch.float64) / prior.speed)
    return prior


def test_built_by_name_with_heads_starting_in_the_official_cube():
    prior = build_prior("cluster-heads", dim=3, num_components=7)
    assert isinstance(prior, ClusterHeadsPrior) and isinstance(prior, PartitionedPrior)
    assert prior.heads.shape == (7, 3) and prior.num_heads == prior.num_partitions == 7
    assert (prior.heads >= 0).all() and (prior.heads < 0.1).all()
    names = {name for name, _ in prior.named_parameters()}
    assert names == {"scaled_heads"}


def test_log_prob_is_the_equal_weight_isotropic_mixture_around_the_heads():
    prior = _prior([[0.0, 0.0], [2.0, -1.0], [-1.0, 3.0]], std=0.5)
    z = torch.tensor([[0.3, -0.2], [1.0, 1.0]], dtype=torch.float64)
    per_head = torch.stack(
        [torch.distributions.Normal(prior.heads[k], 0.5).log_prob(z).sum(-1) for k in range(3)],
        -1,
    )
    expected = torch.logsumexp(per_head, -1) - math.log(3)
    torch.testing.assert_close(prior.log_prob(z), expected)
    torch.testing.assert_close(prior.log_prob_per_partition(z), per_head)
    assert prior.log_prob(z[None].expand(4, 2, 2)).shape == (4, 2)


def test_samples_pick_heads_uniformly_with_spread_std_and_carry_gradient_to_the_heads():
    prior = _prior([[-3.0, 0.0], [0.0, 0.0], [3.0, 0.0], [0.0, 5.0]], std=0.2)
    z, labels = prior.sample_with_labels(40_000, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels, minlength=4).double() / 40_000
    torch.testing.assert_close(
        counts, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01, rtol=0
    )
    offsets = z - prior.heads[labels].detach()
    torch.testing.assert_close(
        offsets.std(0), torch.full((2,), 0.2, dtype=torch.float64), atol=0.005, rtol=0
    )
    z.sum().backward()  # dz/dh = 1 for the head each sample was drawn around
    drawn = torch.bincount(labels, minlength=4).double()[:, None].expand(4, 2)
    torch.testing.assert_close(prior.scaled_heads.grad / prior.speed, drawn)


def test_repulsion_is_zero_when_every_pair_is_farther_apart_than_eta():
    prior = _prior([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    assert prior.repulsion(eta=1.5).item() == 0.0
    prior.repulsion(eta=1.5).backward()
    assert torch.count_nonzero(prior.scaled_heads.grad) == 0


def test_repulsion_of_close_heads_is_positive_and_its_descent_pushes_them_apart():
    prior = _prior([[0.0, 0.0], [0.5, 0.0], [5.0, 5.0]])
    loss = prior.repulsion(eta=1.5)
    # the two close pairs (a, b) and (b, a): 2 (1.5 − 0.5) / K²
    torch.testing.assert_close(
        loss, torch.tensor(2 * 1.0 / 9, dtype=torch.float64), atol=1e-5, rtol=0
    )
    loss.backward()
    step = -prior.scaled_heads.grad
    assert step[0, 0] < 0 < step[1, 0]  # head 0 moves left, head 1 right
    assert torch.count_nonzero(step[2]) == 0  # the far head is left alone
    before = torch.dist(prior.heads[0], prior.heads[1])
    with torch.no_grad():
        prior.scaled_heads.add_(0.1 * step)
    assert torch.dist(prior.heads[0], prior.heads[1]) > before


def test_box_penalty_acts_only_outside_the_box():
    prior = _prior([[1.0, -2.0], [3.0, -4.0]])
    torch.testing.assert_close(
        prior.box_penalty(2.5), torch.tensor((0.5 + 1.5) / 4, dtype=torch.float64)
    )
    prior.box_penalty(2.5).backward()
    grad = prior.scaled_heads.grad
    assert grad[0].abs().sum() == 0 and grad[1, 0] > 0 > grad[1, 1]


def test_assign_is_the_nearest_head_and_the_most_responsible_one():
    prior = _prior([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    z = prior.sample((50,), torch.Generator().manual_seed(1))
    distances = torch.cdist(z, prior.heads.detach())
    assert torch.equal(prior.assign(z), distances.argmin(-1))
    assert torch.equal(prior.assign(z), prior.responsibilities(z).argmax(-1))
    assert prior.assign(z.reshape(5, 10, 2)).shape == (5, 10)


def test_invalid_settings_are_refused_with_the_value():
    with pytest.raises(ValueError, match="std must be > 0, got 0"):
        ClusterHeadsPrior(3, std=0)
    with pytest.raises(ValueError, match="speed must be finite and > 0, got -1"):
        ClusterHeadsPrior(3, speed=-1)
    with pytest.raises(ValueError, match="num_partitions must be >= 1, got 0"):
        ClusterHeadsPrior(0)
    prior = ClusterHeadsPrior(3)
    with pytest.raises(ValueError, match="eta must be >= 0, got -1"):
        prior.repulsion(-1)
    with pytest.raises(ValueError, match="bound must be > 0, got 0"):
        prior.box_penalty(0)
    with pytest.raises(ValueError, match=r"expected z of shape \[\.\.\., 2\]"):
        prior.assign(torch.zeros(4, 3))


def test_frozen_heads_stops_gradients_to_the_heads_and_can_be_lifted_inside():
    prior = _prior([[0.0, 0.0], [1.0, 0.0]])
    z = torch.zeros(3, 2, dtype=torch.float64)
    with prior.frozen_heads():
        assert not prior.log_prob(z).sum().requires_grad
        with prior.frozen_heads(False):
            assert prior.sample((2,)).requires_grad
        assert not prior.repulsion(1.5).requires_grad
    assert prior.log_prob(z).sum().requires_grad
