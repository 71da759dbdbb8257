"""Restorations and uncertainty maps of conditional models: Spearman against SciPy (ties
included), ±2σ coverage of a calibrated Gaussian, sample shapes and ranges, exact restorations."""

import pytest
import torch
from scipy.stats import spearmanr

from diffvi.data.paired import PairedData
from diffvi.diffusion.conditional import CVDM
from diffvi.diffusion.schedules import CosineSchedule
from diffvi.evaluation.conditional import (
    sample_images,
    score_samples,
    spearman,
    uncertainty_scores,
)
from diffvi.models.regression import RegressionUNet


def test_spearman_matches_scipy_with_and_without_ties():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, generator=g), torch.randn(200, generator=g)
    tied_a, tied_b = a.round(), (a + b).clamp(-1, 1)  # many ties in both
    for x, y in [(a, b), (a, a + 0.3 * b), (tied_a, tied_b)]:
        expected = spearmanr(x.numpy(), y.numpy()).statistic
        assert spearman(x, y).item() == pytest.approx(expected, abs=1e-10)
    assert spearman(a, a.exp()).item() == pytest.approx(1.0)
    assert torch.isnan(spearman(torch.zeros(5), torch.arange(5.0)))
    with pytest.raises(ValueError, match="two vectors"):
        spearman(torch.zeros(3), torch.zeros(4))


def test_a_calibrated_gaussian_covers_95_percent_and_ranks_its_errors():
    g = torch.Generator().manual_seed(1)
    mean = torch.rand(4, 1, 64, 64, generator=g)
    std = 0.01 + 0.2 * torch.rand(4, 1, 64, 64, generator=g)
    reference = mean + std * torch.randn(4, 1, 64, 64, generator=g)
    scores = uncertainty_scores(mean, std, reference)
    assert scores["coverage"].shape == (4,)
    # P(|N(0, 1)| <= 2) = 0.9545; 4096 pixels per image give a standard error of 0.003.
    assert torch.allclose(scores["coverage"], torch.tensor(0.9545, dtype=torch.float64), atol=0.015)
    # |error| = std·|z|: ranked by std far better than chance, not perfectly.
    assert bool((scores["spearman"] > 0.3).all() and (scores["spearman"] < 0.9).all())
    exact = uncertainty_scores(mean, std, mean + std)  # |error| = std exactly
    assert torch.allclose(exact["spearman"], torch.ones(4, dtype=torch.float64))
    overconfident = uncertainty_scores(mean, std / 10, reference)
    assert bool((overconfident["coverage"] < 0.3).all())
    with pytest.raises(ValueError, match="std must be >= 0"):
        uncertainty_scores(mean, -std, reference)


def _tiny_cvdm() -> CVDM:
    torch.manual_seed(0)
    return CVDM.build(
        1, 1, image_size=8, base_channels=8, channel_mults=(1, 2), num_groups=4,
        schedule=CosineSchedule(), timesteps=10, image=False,
    )  # fmt: skip


def test_samples_are_images_within_the_task_range_and_differ_between_draws():
    condition = 2 * torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) - 1
    samples = sample_images(
        _tiny_cvdm(), condition, "mnist-sr4", n=4, generator=torch.Generator().manual_seed(1),
        batch_size=2,
    )  # fmt: skip
    assert samples.shape == (4, 3, 1, 8, 8)
    assert samples.min() >= 0 and samples.max() <= 1
    assert not torch.equal(samples[0], samples[1])
    regression = RegressionUNet(1, 1, 8, base_channels=8, channel_mults=(1, 2), num_groups=4)
    same = sample_images(regression, condition, "mnist-sr4", n=3)
    assert same.shape == (3, 3, 1, 8, 8) and torch.equal(same[0], same[2])
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_images(regression, condition, "mnist-sr4", n=0)


def test_exact_samples_score_the_psnr_cap_and_zero_spread_covers_everything():
    condition = 2 * torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) - 1
    hr = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    data = PairedData("mnist-sr4", "test", condition, (2 * hr - 1) - condition)
    samples = data.images().expand(3, -1, -1, -1, -1)
    scores = score_samples(samples, data)
    assert torch.allclose(scores["psnr"], torch.full((2,), 100.0))
    assert bool(torch.isfinite(scores["psnr_baseline"]).all())
    assert bool((scores["coverage"] == 1).all()) and bool(torch.isnan(scores["spearman"]).all())
    assert "coverage" not in score_samples(samples, data, stochastic=False)
    with pytest.raises(ValueError, match="samples must have shape"):
        score_samples(samples[:, :1], data)
