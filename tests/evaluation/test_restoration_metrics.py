"""Restoration metrics: known values, identities, and shape errors."""

import math

import pytest
import torch

from diffvi.evaluation.restoration import diversity, feature_distance, psnr, ssim
from diffvi.evaluation.sample_quality import FeatureClassifier


def test_psnr_of_a_constant_error_is_minus_twenty_log10_of_it():
    x = torch.full((3, 1, 8, 8), 0.5)
    got = psnr(x + 0.1, x)
    assert got.shape == (3,)
    assert torch.allclose(got, torch.full((3,), -20 * math.log10(0.1)), atol=1e-3)
    assert torch.isinf(psnr(x, x)).all()


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 28, 28, generator=gen)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    assert (ssim(noisy, x) < 0.9).all()


def test_feature_distance_is_zero_for_identical_images_symmetric_and_bounded():
    torch.manual_seed(0)
    classifier = FeatureClassifier()
    a, b = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    assert torch.allclose(feature_distance(classifier, a, a), torch.zeros(4), atol=1e-6)
    d = feature_distance(classifier, a, b)
    assert torch.allclose(d, feature_distance(classifier, b, a))
    assert ((d >= 0) & (d <= 2 + 1e-6)).all()


def test_diversity_is_zero_across_identical_seeds_and_the_pixel_std_otherwise():
    x = torch.rand(1, 2, 1, 4, 4)
    assert torch.equal(diversity(x.expand(3, -1, -1, -1, -1)), torch.zeros(2))
    pair = torch.stack([torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)])
    assert torch.allclose(diversity(pair), torch.full((2,), math.sqrt(0.5)))


def test_mismatched_shapes_raise_value_error():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="S >= 2"):
        diversity(torch.zeros(1, 2, 1, 4, 4))


def test_summaries_reuse_given_scores_and_diffvi_inverse_exports_the_metrics():
    import diffvi.inverse
    from diffvi.evaluation.restoration import restoration_scores, summarise_restorations

    g = torch.Generator().manual_seed(0)
    reference = torch.rand(4, 1, 8, 8, generator=g)
    restored = (reference + 0.1 * torch.randn(4, 1, 8, 8, generator=g)).clamp(0, 1)
    scores = restoration_scores(restored, reference)
    assert summarise_restorations(restored, reference, scores=scores) == summarise_restorations(
        restored, reference
    )
    assert diffvi.inverse.psnr is psnr and diffvi.inverse.ssim is not None


def test_eight_bit_references_are_an_error_with_data_range_one_not_minus_43_db():
    g = torch.Generator().manual_seed(0)
    reference = torch.randint(0, 256, (2, 1, 8, 8), generator=g).float()
    reference[0, 0, 0, :2] = torch.tensor([0.0, 255.0])
    restored = (reference + 10 * torch.randn(reference.shape, generator=g)).clamp(0, 255)
    expected = r"values in \[0, 255\], outside the expected \[0, 1\]"
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match=expected):
            metric(restored, reference)
    with pytest.raises(ValueError, match="divide by 255"):
        feature_distance(FeatureClassifier(), restored, reference)


def test_data_range_255_scores_eight_bit_images_as_their_zero_one_versions():
    g = torch.Generator().manual_seed(0)
    reference = torch.randint(0, 256, (2, 1, 16, 16), generator=g).float()
    restored = (reference + 10 * torch.randn(reference.shape, generator=g)).clamp(0, 255)
    assert torch.allclose(
        psnr(restored, reference, data_range=255), psnr(restored / 255, reference / 255)
    )
    assert torch.allclose(
        ssim(restored, reference, data_range=255), ssim(restored / 255, reference / 255),
        atol=1e-5,
    )  # fmt: skip
    with pytest.raises(ValueError, match="data_range must be > 0"):
        psnr(restored, reference, data_range=0)


def test_a_nan_reference_is_an_error_and_restorations_are_scored_as_they_are():
    reference = torch.full((1, 1, 8, 8), 0.5)
    broken = reference.clone()
    broken[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN"):
        psnr(reference, broken)
    # a restoration that strays outside [0, 1] is a bad restoration, not a scale error
    assert torch.isfinite(psnr(reference + 0.6, reference)).all()
