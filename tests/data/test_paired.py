"""Paired restoration tasks for CVDM: shapes, exact reconstruction of the high-resolution image
from (condition, residual), determinism, the phase task's forward model, and errors."""

import pytest
import torch
import torch.nn.functional as F

from diffvi.data import load_dataset
from diffvi.data.microscopy import STRUCTURES, make_microscopy_dataset
from diffvi.data.paired import (
    INTENSITY_SCALE,
    PAIRED_TASKS,
    load_paired,
    phase_objects,
)
from diffvi.inverse.phase import DefocusIntensity

SMALL = {"size": 16}  # microscopy-sr at 16x16 targets: fast


def _paired(name: str, split: str = "train", count: int | None = 6, seed: int = 0, **options):
    """``load_paired``, skipping the test when MNIST-like files are absent."""
    try:
        return load_paired(name, split, count, seed, **options)
    except FileNotFoundError as err:
        pytest.skip(f"data for {name} not available: {err}")


@pytest.mark.parametrize(
    ("name", "options", "x_shape", "y_shape"),
    [
        ("mnist-sr4", {}, (1, 28, 28), (1, 28, 28)),
        ("fashion-mnist-sr4", {}, (1, 28, 28), (1, 28, 28)),
        ("microscopy-sr", SMALL, (1, 16, 16), (1, 16, 16)),
        ("phase", {}, (2, 28, 28), (1, 28, 28)),
    ],
)
def test_shapes_labels_and_image_range(name, options, x_shape, y_shape):
    data = _paired(name, count=6, **options)
    assert len(data) == 6
    assert data.condition.shape == (6, *x_shape) and data.target.shape == (6, *y_shape)
    assert data.condition.dtype == data.target.dtype == torch.float32
    assert data.labels is not None and data.labels.shape == (6,)
    images = data.images()
    assert images.shape == (6, *y_shape) and images.min() >= 0 and images.max() <= 1
    assert data.baseline(data.condition).shape == (6, *y_shape)
    sub = data[torch.tensor([1, 3])]
    assert torch.equal(sub.condition, data.condition[[1, 3]])
    assert all(v.shape[0] == 2 for v in sub.extra.values())


@pytest.mark.parametrize(
    ("name", "options"),
    [("mnist-sr4", {}), ("fashion-mnist-sr4", {}), ("microscopy-sr", SMALL), ("phase", {})],
)
def test_target_bounds_hold_the_true_targets_and_map_to_black_and_white(name, options):
    data = _paired(name, count=6, **options)
    low, high = data.target_bounds(data.condition)
    assert low.shape == high.shape == data.target.shape
    assert bool((low <= data.target + 1e-6).all() and (data.target <= high + 1e-6).all())
    torch.testing.assert_close(data.to_image(data.condition, low), torch.zeros_like(low))
    torch.testing.assert_close(data.to_image(data.condition, high), torch.ones_like(high))


@pytest.mark.parametrize(
    ("name", "options", "measured_shape"),
    [
        ("mnist-sr4", {}, (1, 7, 7)),
        ("microscopy-sr", SMALL, (1, 8, 8)),
        ("phase", {}, (2, 28, 28)),
    ],
)
def test_the_condition_is_rebuilt_from_what_the_instrument_records(name, options, measured_shape):
    data = _paired(name, count=4, **options)
    measured = data.measurements()
    assert measured.shape == (4, *measured_shape)
    torch.testing.assert_close(data.condition_from(measured), data.condition, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="measurement must have shape"):
        data.condition_from(measured[:, :1].repeat(1, 3, 1, 1))


@pytest.mark.parametrize("name", ["mnist-sr4", "fashion-mnist-sr4"])
@pytest.mark.parametrize("upsample", ["bicubic", "nearest"])
def test_sr_residual_gives_back_the_high_resolution_image(name, upsample):
    data = _paired(name, count=8, seed=3, upsample=upsample)
    source = load_dataset(name.removesuffix("-sr4"), "train")
    keep = torch.randperm(len(source), generator=torch.Generator().manual_seed(3))[:8]
    hr = source.images[keep]
    torch.testing.assert_close(data.to_image(data.condition, data.target), hr, atol=1e-6, rtol=0)
    torch.testing.assert_close(data.labels, source.labels[keep])
    low = F.avg_pool2d(hr, 4)
    torch.testing.assert_close(data.extra["low_res"], low)
    mode = {"mode": "bicubic", "align_corners": False} if upsample == "bicubic" else {}
    up = F.interpolate(low, size=(28, 28), **(mode or {"mode": "nearest"}))
    torch.testing.assert_close(data.condition, 2 * up - 1)
    torch.testing.assert_close(data.target, 2 * (hr - up), atol=1e-6, rtol=0)
    # The classical baseline is the upsampled input, i.e. a zero residual.
    torch.testing.assert_close(
        data.baseline(data.condition), data.to_image(data.condition, torch.zeros_like(up))
    )


def test_microscopy_pairs_reconstruct_the_sim_target_and_carry_photons_and_structures():
    data = _paired("microscopy-sr", "valid", count=8, **SMALL)
    reference = make_microscopy_dataset(8, "valid", size=16).pairs  # seed 0 = the split's seed
    images = data.to_image(data.condition, data.target)
    torch.testing.assert_close(images, reference.target, atol=1e-6, rtol=0)
    torch.testing.assert_close(data.extra["photon_level"], reference.photon_level)
    torch.testing.assert_close(data.extra["low_res"], reference.input)
    assert torch.equal(data.labels, reference.labels)
    assert set(data.labels.tolist()) <= set(range(len(STRUCTURES)))
    up = F.interpolate(reference.input, size=(16, 16), mode="bicubic", align_corners=False)
    torch.testing.assert_close(data.condition, 2 * up - 1)
    assert data.residual and not _paired("phase", count=1).residual


def test_phase_condition_is_the_defocus_intensities_of_the_target():
    data = _paired("phase", count=4, blur_sigma=1.0, noise_std=0.0)
    assert data.target.min() >= -1 and data.target.max() <= 1
    assert torch.allclose(data.target.amin((1, 2, 3)), torch.tensor(-1.0))
    assert torch.allclose(data.target.amax((1, 2, 3)), torch.tensor(1.0))
    phase = data.to_image(data.condition, data.target)
    torch.testing.assert_close(phase, (data.target + 1) / 2)
    intensities = DefocusIntensity((1, 28, 28), phase_max=3.5)(phase)
    torch.testing.assert_close(data.condition, (intensities - 1) / INTENSITY_SCALE)
    source = load_dataset("mnist", "train")
    keep = torch.randperm(len(source), generator=torch.Generator().manual_seed(0))[:4]
    torch.testing.assert_close(phase, phase_objects(source.images[keep], 1.0))
    # TIE (the classical baseline) recovers smooth objects far better than a blank guess.
    tie_error = (data.baseline(data.condition) - phase).pow(2).mean()
    assert tie_error < 0.25 * phase.pow(2).mean(), tie_error


def test_phase_intensities_carry_seeded_camera_noise_of_the_stated_level():
    clean = _paired("phase", count=16, noise_std=0.0)
    noisy = _paired("phase", count=16)  # default noise_std = 0.02
    again = _paired("phase", count=16)
    other_split = _paired("phase", "test", count=16)
    noise = (noisy.condition - clean.condition) * INTENSITY_SCALE
    assert noise.std().item() == pytest.approx(0.02, rel=0.05)
    assert abs(noise.mean().item()) < 0.002
    assert torch.equal(noisy.condition, again.condition)
    test_noise = other_split.condition - _paired("phase", "test", count=16, noise_std=0.0).condition
    assert not torch.allclose(test_noise, noise / INTENSITY_SCALE)
    # TIE still recovers the phase far better than a blank guess under this noise.
    phase = noisy.images()
    assert (noisy.baseline(noisy.condition) - phase).pow(2).mean() < 0.35 * phase.pow(2).mean()


def test_tasks_are_deterministic_given_the_seed():
    for name, options in [("mnist-sr4", {}), ("microscopy-sr", SMALL), ("phase", {})]:
        a, b = _paired(name, count=4, seed=1, **options), _paired(name, count=4, seed=1, **options)
        c = _paired(name, count=4, seed=2, **options)
        assert torch.equal(a.condition, b.condition) and torch.equal(a.target, b.target)
        assert not torch.equal(a.target, c.target), name


def test_microscopy_splits_differ():
    train = _paired("microscopy-sr", "train", count=4, **SMALL)
    test = _paired("microscopy-sr", "test", count=4, **SMALL)
    assert not torch.equal(train.target, test.target)


def test_unknown_tasks_splits_options_and_counts_are_errors():
    with pytest.raises(ValueError, match="unknown paired task 'mnist-sr8'.*mnist-sr4"):
        load_paired("mnist-sr8")
    assert set(PAIRED_TASKS) == {"mnist-sr4", "fashion-mnist-sr4", "microscopy-sr", "phase"}
    with pytest.raises(ValueError, match="unknown split 'valid'.*'train', 'test'"):
        load_paired("mnist-sr4", "valid")
    with pytest.raises(ValueError, match="unknown options \\['size'\\].*upsample"):
        load_paired("mnist-sr4", size=16)
    with pytest.raises(ValueError, match="upsample must be one of"):
        _paired("mnist-sr4", count=2, upsample="bilinear")
    with pytest.raises(ValueError, match="count must be an int >= 1"):
        load_paired("microscopy-sr", count=0, **SMALL)
    with pytest.raises(ValueError, match="exceeds"):
        _paired("mnist-sr4", "test", count=10_001)
    with pytest.raises(ValueError, match="source must be one of"):
        load_paired("phase", count=2, source="cifar")
    data = _paired("mnist-sr4", count=2)
    with pytest.raises(ValueError, match="same H × W"):
        data.to_image(data.condition, data.target[..., :14, :14])
