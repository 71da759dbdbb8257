"""The Prior contract and the prior registry: every registered prior is built by name with its
defaults, follows the shape contract, and the registry refuses unknown or clashing names."""

import pytest
import torch

from diffvi.distributions import (
    PRIORS,
    PartitionedPrior,
    Prior,
    SmoothedPrior,
    SquarePrior,
    StandardNormal,
    build_prior,
    register_prior,
)


def test_registry_builds_every_prior_and_rejects_unknown_names_listing_valid_ones():
    assert set(PRIORS) == {
        "pinwheel", "swiss-roll", "square", "mixture", "cluster-heads", "standard-normal"
    }  # fmt: skip
    for name, cls in PRIORS.items():
        prior = build_prior(name)
        assert isinstance(prior, cls) and prior.dim == 2
        assert prior.log_prob(prior.sample((4,))).shape == (4,)
    assert isinstance(build_prior("standard-normal", dim=5), StandardNormal)
    assert build_prior("mixture", dim=3).sample((2,)).shape == (2, 3)
    assert build_prior("mixture", dim=3, num_components=4).num_partitions == 4
    with pytest.raises(ValueError, match="pinwheel.*square|expected one of"):
        build_prior("banana")
    with pytest.raises(ValueError, match="prior 'pinwheel'.*expected dim=2, got 3"):
        build_prior("pinwheel", dim=3)
    with pytest.raises(ValueError, match="prior 'standard-normal'.*>= 1, got 0"):
        build_prior("standard-normal", dim=0)


@pytest.mark.parametrize("name", sorted(PRIORS))
@pytest.mark.parametrize("shape", [5, (3, 4)])
def test_every_registered_prior_follows_the_prior_contract(name: str, shape) -> None:
    prior = build_prior(name).double()
    assert isinstance(prior, Prior)
    z = prior.sample(shape, generator=torch.Generator().manual_seed(0))
    batch = (shape,) if isinstance(shape, int) else shape
    assert z.shape == (*batch, 2) and z.dtype == torch.float64
    assert prior.log_prob(z).shape == batch
    again = prior.sample(shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, again)


def test_partitioned_priors_have_partitions_and_the_standard_normal_has_none():
    for name in ("pinwheel", "swiss-roll", "square", "mixture", "cluster-heads"):
        prior = build_prior(name)
        assert isinstance(prior, PartitionedPrior) and prior.num_partitions == 10
        z = prior.sample((6,))
        assert prior.log_prob_per_partition(z).shape == (6, 10)
    smoothed = SmoothedPrior(SquarePrior(), num_samples=20)
    assert isinstance(smoothed, PartitionedPrior) and smoothed.num_partitions == 10
    assert not isinstance(build_prior("standard-normal"), PartitionedPrior)
    assert not hasattr(build_prior("standard-normal"), "num_partitions")


def test_register_prior_adds_a_new_prior_by_name_and_refuses_a_taken_name(monkeypatch):
    monkeypatch.setattr("diffvi.distributions.priors.PRIORS", dict(PRIORS))
    from diffvi.distributions import priors

    @register_prior("shifted-normal")
    class Shifted(StandardNormal):
        def log_prob(self, z: torch.Tensor) -> torch.Tensor:
            return super().log_prob(z - 1)

    assert priors.PRIORS["shifted-normal"] is Shifted
    assert isinstance(priors.build_prior("shifted-normal", dim=3), Shifted)
    with pytest.raises(ValueError, match="'mixture' is taken by MixturePrior"):
        register_prior("mixture")(Shifted)
    assert "shifted-normal" not in PRIORS
