"""The official DDVI code's reference samples of the paper's 2-D priors (``get_prior(config)
.sample``): the swiss roll on its curve, the square's noise across the edge only, the pinwheel's
law the same as :class:`PinwheelPrior`'s, and seeds that reproduce."""

import math

import pytest
import torch

from diffvi.distributions import (
    OFFICIAL_REFERENCE_PRIORS,
    PinwheelPrior,
    SquarePrior,
    official_prior_samples,
)

N = 20_000


def draw(name: str, seed: int = 0, num: int = N) -> torch.Tensor:
    return official_prior_samples(name, num, generator=torch.Generator().manual_seed(seed))


def test_swiss_roll_samples_lie_on_the_noiseless_curve_and_fill_its_ten_parts_evenly():
    z = draw("swiss-roll")
    s = z.norm(dim=-1) / 3  # radius 3√u, so s = √u
    curve = (
        3
        * s[:, None]
        * torch.stack((torch.cos(4.5 * math.pi * s), torch.sin(4.5 * math.pi * s)), -1)
    )
    torch.testing.assert_close(z, curve, atol=1e-12, rtol=0)  # σ = 0: no noise off the curve
    u = s.square()
    assert float(u.min()) >= 0 and float(u.max()) < 1
    counts = torch.bincount(torch.floor(u * 10).long(), minlength=10).double() / N
    assert (counts - 0.1).abs().max() < 0.01  # sd of a part's share ≈ 0.002


def test_square_noise_is_across_the_edge_only_and_samples_spread_along_the_boundary():
    z = draw("square")
    ax, ay = z[:, 0].abs(), z[:, 1].abs()
    # The coordinate along the edge never leaves [-1, 1] (isotropic noise would push ~1% of the
    # samples past a corner in both coordinates).
    assert float(torch.minimum(ax, ay).max()) <= 1.0
    # Away from the corners the other coordinate is ±1 + N(0, 0.06²) (noise_level 3 / 50).
    mid = torch.minimum(ax, ay) < 0.8
    across = torch.maximum(ax, ay)[mid] - 1
    assert abs(float(across.mean())) < 0.003
    assert abs(float(across.std()) - 0.06) < 0.003
    # Every sample is within 6σ of the boundary, and they spread uniformly along it: a quarter
    # on each edge, the coordinate along it uniform on [-1, 1] (mean 0, variance 1/3).
    assert float((torch.maximum(ax, ay) - 1).abs().max()) < 6 * 0.06
    on_vertical = ax > ay
    along = torch.where(on_vertical, z[:, 1], z[:, 0])
    assert abs(float(on_vertical.double().mean()) - 0.5) < 0.015
    top = (~on_vertical) & (z[:, 1] > 0)
    right = on_vertical & (z[:, 0] > 0)
    for edge in (top, right):
        assert abs(float(edge.double().mean()) - 0.25) < 0.012
    assert abs(float(along.mean())) < 0.015 and abs(float(along.var()) - 1 / 3) < 0.012
    # The across-only SquarePrior has positive density at every sample (its support is the
    # band around the edges, zero in the outer corner quadrants); the isotropic default's
    # samples fall outside that support.
    across_only = SquarePrior(along_edge_noise=False).double()
    assert torch.isfinite(across_only.log_prob(z)).all()
    isotropic = SquarePrior().double().sample((N,), generator=torch.Generator().manual_seed(0))
    assert not torch.isfinite(across_only.log_prob(isotropic)).all()


def test_official_square_and_pinwheel_have_the_law_of_our_across_only_square_and_pinwheel():
    gen = torch.Generator().manual_seed(1)
    for name, prior in (
        ("square", SquarePrior(along_edge_noise=False).double()),
        ("pinwheel", PinwheelPrior().double()),
    ):
        ours = prior.log_prob(prior.sample((N,), generator=gen))
        official = prior.log_prob(draw(name, seed=2))
        se = math.sqrt((ours.var() + official.var()) / N)
        assert abs(float(ours.mean() - official.mean())) < 4 * se, (
            name,
            ours.mean(),
            official.mean(),
        )


@pytest.mark.parametrize("name", sorted(OFFICIAL_REFERENCE_PRIORS))
def test_same_seed_gives_the_same_samples_and_another_seed_others(name):
    a, b, c = draw(name, 5, 100), draw(name, 5, 100), draw(name, 6, 100)
    assert a.shape == (100, 2) and a.dtype == torch.float64
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    single = official_prior_samples(name, 3, torch.Generator().manual_seed(0), dtype=torch.float32)
    assert single.dtype == torch.float32


def test_unknown_prior_or_empty_draw_is_refused():
    with pytest.raises(ValueError, match="expected one of"):
        official_prior_samples("mixture")
    with pytest.raises(ValueError, match="num must be >= 1"):
        official_prior_samples("square", 0)
