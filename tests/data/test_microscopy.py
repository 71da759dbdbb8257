"""Tests of the simulated microscopy super-resolution pairs (diffvi.data.microscopy)."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffvi.data.images import batch_loader
from diffvi.data.microscopy import (
    STRUCTURES,
    MicroscopyPair,
    Optics,
    degrade_image,
    make_microscopy_dataset,
    simulate_microscopy,
)

LEVELS = (15.0, 100.0, 600.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def clean_pairs() -> dict[str, MicroscopyPair]:
    """32 noise-free pairs of each class (photon level 100)."""
    return {
        s: simulate_microscopy(s, 32, 100.0, generator=gen(i), noise=False)
        for i, s in enumerate(STRUCTURES)
    }


def signal_mean(pair: MicroscopyPair, photons: torch.Tensor) -> torch.Tensor:
    """Per-image mean of ``photons - background`` over the signal pixels: ``[B]``."""
    mask = pair.signal_mask
    signal = (photons.double() - pair.optics.background) * mask
    return signal.sum((1, 2, 3)) / mask.sum((1, 2, 3))


# --------------------------------------------------------------------------------------------
# Photon level and noise
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("structure", STRUCTURES)
def test_clean_photon_level_is_exact(structure: str, level: float) -> None:
    pair = simulate_microscopy(structure, 4, level, generator=gen(1), noise=False, background=3.0)
    assert torch.equal(pair.input_photons, pair.clean_photons)
    torch.testing.assert_close(
        signal_mean(pair, pair.clean_photons),
        torch.full((4,), level, dtype=torch.float64),
        rtol=1e-4,
        atol=0.0,
    )
    # The mask is the pixels at or above 10% of the clean signal's maximum.
    signal = pair.clean_photons - 3.0
    peak = signal.amax((1, 2, 3), keepdim=True)
    assert not pair.signal_mask[signal < 0.099 * peak].any()
    assert pair.signal_mask[signal > 0.101 * peak].all()


def test_threshold_zero_means_all_pixels() -> None:
    pair = simulate_microscopy("ccps", 3, 50.0, generator=gen(2), noise=False, signal_threshold=0)
    assert pair.signal_mask.all()
    torch.testing.assert_close(
        pair.clean_photons.double().mean((1, 2, 3)),
        torch.full((3,), 50.0, dtype=torch.float64),
        rtol=1e-4,
        atol=0.0,
    )


@pytest.mark.parametrize("level", LEVELS)
def test_noisy_photon_level_matches_in_expectation(level: float) -> None:
    pair = simulate_microscopy("f-actin", 48, level, generator=gen(3))
    mask = pair.signal_mask
    n = mask.sum().item()
    sample_mean = pair.input_photons.double()[mask].mean().item()
    # Var(input) = E + read_noise^2 per pixel, independent pixels (E = clean_photons).
    variance = (pair.clean_photons.double()[mask] + pair.optics.read_noise**2).sum().item()
    se = math.sqrt(variance) / n
    assert abs(sample_mean - level) < 4 * se, (sample_mean, level, se)


@pytest.mark.parametrize("level", LEVELS)
def test_poisson_gaussian_variance(level: float) -> None:
    read_noise, background = 2.0, 5.0
    pair = simulate_microscopy(
        "microtubules", 48, level, generator=gen(4), read_noise=read_noise, background=background
    )
    clean = pair.clean_photons.double()
    residual = pair.input_photons.double() - clean
    n = residual.numel()
    mean_se = math.sqrt((clean + read_noise**2).sum().item()) / n
    assert abs(residual.mean().item()) < 4 * mean_se
    # E[r^2] = E + read_noise^2 pixel by pixel; compare the averages over all pixels.
    squared = residual.square()
    expected = (clean + read_noise**2).mean().item()
    se = squared.std().item() / math.sqrt(n)
    assert abs(squared.mean().item() - expected) < 4 * se, (squared.mean(), expected, se)
    # ... and the variance really grows with the expectation (Poisson, not constant).
    low = clean < clean.median()
    assert squared[~low].mean() > squared[low].mean()


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def high_frequency_fraction(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Share of the (mean-removed) power above ``cutoff`` cycles per pixel: ``[B, 1, H, W]`` ->
    ``[B]``."""
    power = torch.fft.fft2(x - x.mean((-2, -1), keepdim=True)).abs().square()
    f = torch.fft.fftfreq(x.shape[-1])
    radius = (f[:, None].square() + f[None, :].square()).sqrt()
    return (power * (radius > cutoff)).sum((1, 2, 3)) / power.sum((1, 2, 3))


@pytest.mark.parametrize("structure", STRUCTURES)
def test_target_is_sharper_than_input(
    clean_pairs: dict[str, MicroscopyPair], structure: str
) -> None:
    pair = clean_pairs[structure]
    upsampled = F.interpolate(pair.clean_photons, scale_factor=2, mode="bicubic")
    # 0.1 cycles / target pixel lies below the input Nyquist (0.25 cycles / target pixel).
    target = high_frequency_fraction(pair.target, 0.1)
    source = high_frequency_fraction(upsampled, 0.1)
    assert (target > 1.2 * source).all(), (target / source).min()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(3 * sigma) + 1
    k = torch.exp(-torch.arange(-r, r + 1.0).square() / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def coherence(t: torch.Tensor, sigma: float | None) -> torch.Tensor:
    """Structure-tensor coherence (0 isotropic, 1 one orientation), averaged over the bright
    pixels; ``sigma`` is the local window, ``None`` takes the whole image: ``[B]``."""
    gy, gx = torch.gradient(t, dim=(-2, -1))
    parts = [gx * gx, gy * gy, gx * gy]
    if sigma is None:
        jxx, jyy, jxy = (p.mean((1, 2, 3)) for p in parts)
        return ((jxx - jyy).square() + 4 * jxy.square()).sqrt() / (jxx + jyy)
    jxx, jyy, jxy = (blur(p, sigma) for p in parts)
    c = ((jxx - jyy).square() + 4 * jxy.square()).sqrt() / (jxx + jyy + 1e-12)
    bright = t > 0.2
    return (c * bright).sum((1, 2, 3)) / bright.sum((1, 2, 3))


def test_classes_differ(clean_pairs: dict[str, MicroscopyPair]) -> None:
    bright = {s: (p.target > 0.2).float().mean().item() for s, p in clean_pairs.items()}
    local = {s: coherence(p.target, 2.0).mean().item() for s, p in clean_pairs.items()}
    whole = {s: coherence(p.target, None).mean().item() for s, p in clean_pairs.items()}
    # Sparse puncta cover far fewer pixels than any filament network.
    assert all(bright["ccps"] < 0.5 * bright[s] for s in STRUCTURES[1:]), bright
    # Local elongation: puncta < polygonal ER < smooth microtubules < straight actin bundles.
    order = [local[s] for s in ("ccps", "er", "microtubules", "f-actin")]
    assert all(b - a > 0.05 for a, b in zip(order, order[1:], strict=False)), local
    # Only actin has one preferred orientation over the whole field.
    assert all(whole["f-actin"] > 2 * whole[s] for s in ("ccps", "er", "microtubules")), whole


def test_shapes_ranges_and_labels() -> None:
    pair = simulate_microscopy("ER", 5, 30.0, generator=gen(5))
    assert pair.input.shape == (5, 1, 32, 32) and pair.input_photons.shape == (5, 1, 32, 32)
    assert pair.target.shape == (5, 1, 64, 64) and pair.density.shape == (5, 1, 64, 64)
    assert pair.input.dtype == pair.target.dtype == torch.float32
    for t in (pair.input, pair.target, pair.density):
        assert t.min() >= 0 and t.max() <= 1
    torch.testing.assert_close(pair.target.amax((1, 2, 3)), torch.ones(5))
    assert pair.structures == ["er"] * 5 and pair.labels.tolist() == [1] * 5
    assert pair.photon_level.tolist() == [30.0] * 5
    expected = (pair.input_photons / pair.clean_photons.amax((1, 2, 3), keepdim=True)).clamp(0, 1)
    torch.testing.assert_close(pair.input, expected)
    sub = pair[[0, 2]]
    assert len(sub) == 2 and torch.equal(sub.target[1], pair.target[2])
    assert len(MicroscopyPair.cat([pair, pair[1]])) == 6

    other = simulate_microscopy("f_actin", 2, 30.0, size=48, generator=gen(5), binning=4)
    assert other.input.shape == (2, 1, 12, 12) and other.target.shape == (2, 1, 48, 48)


def test_optics_numbers() -> None:
    optics = Optics()
    assert optics.fwhm_wf_nm == pytest.approx(190.5, abs=0.1)
    assert optics.fwhm_sim_nm == pytest.approx(95.2, abs=0.1)
    assert optics.sigma_wf_px == pytest.approx(2.585, abs=1e-3)
    assert optics.input_pixel_nm == pytest.approx(62.6)


# --------------------------------------------------------------------------------------------
# Seeds, data sets, errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("structure", STRUCTURES)
def test_seeding(structure: str) -> None:
    a = simulate_microscopy(structure, 3, 100.0, generator=gen(7))
    b = simulate_microscopy(structure, 3, 100.0, generator=gen(7))
    c = simulate_microscopy(structure, 3, 100.0, generator=gen(8))
    for name in ("input", "target", "input_photons", "clean_photons", "density"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert not torch.equal(getattr(a, name), getattr(c, name)), name


def test_dataset_mixes_classes_and_splits_by_seed() -> None:
    train = make_microscopy_dataset(16, "train", size=32)
    again = make_microscopy_dataset(16, "train", size=32)
    test = make_microscopy_dataset(16, "test", size=32)
    assert torch.equal(train.pairs.input, again.pairs.input)
    assert not torch.equal(train.pairs.target, test.pairs.target)
    assert torch.bincount(train.labels, minlength=4).tolist() == [4, 4, 4, 4]
    levels = train.pairs.photon_level
    assert levels.min() >= 15 and levels.max() <= 600 and levels.unique().numel() == 16
    x, y = train[3]
    assert x.shape == (1, 16, 16) and y.shape == (1, 32, 32)
    batches = list(batch_loader(train, 5, shuffle=True, seed=0))
    assert [b[0].shape[0] for b in batches] == [5, 5, 5, 1]
    assert batches[0][1].shape == (5, 1, 32, 32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"structure": "mitochondria"},
            r"unknown structure 'mitochondria'; valid structures: "
            r"\['ccps', 'er', 'f-actin', 'microtubules'\]",
        ),
        ({"photons": 0.0}, "photons must be a positive"),
        ({"photons": -5.0}, "photons must be a positive"),
        ({"photons": float("nan")}, "photons must be a positive"),
        ({"count": 0}, r"count must be an int >= 1"),
        ({"size": 63}, "size must be divisible by the binning factor 2"),
        ({"size": 64, "binning": 3}, "size must be divisible by the binning factor 3"),
        ({"na": 0.0}, "na must be a positive number"),
        ({"pinhole": 1.0}, r"unknown optics parameters \['pinhole'\]"),
    ],
)
def test_bad_input_raises(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"structure": "ccps", "count": 2, "photons": 10.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        simulate_microscopy(**args)  # type: ignore[arg-type]


def test_dataset_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        make_microscopy_dataset(4, "holdout")
    with pytest.raises(ValueError, match="n must be"):
        make_microscopy_dataset(0)
    with pytest.raises(ValueError, match="photon_range"):
        make_microscopy_dataset(4, photon_range=(100.0, 10.0))


def test_a_given_image_is_degraded_by_the_same_camera() -> None:
    """degrade_image: the widefield input is binned, at the photon level asked for, blurrier
    than the SIM target; a point source is the PSFs themselves; any H x W."""
    point = torch.zeros(1, 1, 40, 48, dtype=torch.float64)
    point[0, 0, 20, 24] = 1.0
    pair = degrade_image(point, 200.0, torch.Generator().manual_seed(0), noise=False)
    assert pair.input.shape == (1, 1, 20, 24) and pair.target.shape == (1, 1, 40, 48)
    assert pair.structures == ["image"]
    signal = pair.clean_photons[pair.signal_mask] - pair.optics.background
    assert math.isclose(float(signal.mean()), 200.0, rel_tol=1e-5)

    def psf(sigma: float, size: int, centre: int) -> torch.Tensor:
        k = torch.arange(size, dtype=torch.float64) - centre
        return torch.special.ndtr((k + 0.5) / sigma) - torch.special.ndtr((k - 0.5) / sigma)

    # The target is the SIM PSF and the input the binned widefield PSF (up to scale).
    sim = psf(pair.optics.sigma_sim_px, 40, 20)[:, None] * psf(pair.optics.sigma_sim_px, 48, 24)
    wf = psf(pair.optics.sigma_wf_px, 40, 20)[:, None] * psf(pair.optics.sigma_wf_px, 48, 24)
    binned = wf.view(20, 2, 24, 2).sum((1, 3))
    for got, want in ((pair.target, sim), (pair.clean_photons, binned)):
        got = got[0, 0].double()
        torch.testing.assert_close(got / got.max(), want / want.max(), rtol=0, atol=1e-4)
    noisy = degrade_image(point[0, 0], 50.0, torch.Generator().manual_seed(0))
    assert not torch.equal(noisy.input_photons, noisy.clean_photons)
    for bad, message in ((point * 2, r"\[0, 1\]"), (point[..., :39, :], "divisible"),
                         (point * 0, "all-zero")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            degrade_image(bad, 10.0)
