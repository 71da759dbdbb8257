"""Sample-quality metrics: Fréchet distance, classifier features and cache, nearest neighbours."""

import json
from pathlib import Path

import pytest
import torch

from diffvi.evaluation import sample_quality
from diffvi.evaluation.sample_quality import (
    FeatureClassifier,
    classifier_accuracy,
    classifier_fid,
    frechet_distance,
    load_or_train_feature_classifier,
    nearest_neighbour_distances,
    nearest_neighbour_summary,
    nearest_neighbours,
    real_vs_real_floor,
    train_feature_classifier,
)

# --- Fréchet distance -----------------------------------------------------------------------


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_is_symmetric():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, 6, generator=g)
    b = 2.0 * torch.randn(400, 6, generator=g) + 0.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_frechet_distance_matches_analytic_value_for_large_gaussian_samples():
    g = torch.Generator().manual_seed(2)
    n, d = 200_000, 4
    mu_a, mu_b = torch.tensor([0.0, 1.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    var_a, var_b = torch.tensor([1.0, 4.0, 0.25, 2.0]), torch.tensor([2.0, 1.0, 1.0, 0.5])
    a = mu_a + var_a.sqrt() * torch.randn(n, d, generator=g, dtype=torch.float64)
    b = mu_b + var_b.sqrt() * torch.randn(n, d, generator=g, dtype=torch.float64)
    # diagonal covariances: tr(Σa + Σb - 2 (Σa Σb)^½) = Σ (σa - σb)²
    analytic = float((mu_a - mu_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum())
    assert frechet_distance(a, b) == pytest.approx(analytic, rel=0.02)


def test_frechet_distance_matches_analytic_value_for_correlated_covariances():
    g = torch.Generator().manual_seed(3)
    n, d = 200_000, 3
    la = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, -0.2, 1.1]], dtype=torch.float64)
    lb = torch.tensor([[1.5, 0.0, 0.0], [-0.4, 0.9, 0.0], [0.0, 0.5, 0.7]], dtype=torch.float64)
    a = torch.randn(n, d, generator=g, dtype=torch.float64) @ la.T
    b = torch.randn(n, d, generator=g, dtype=torch.float64) @ lb.T + 0.3
    cov_a, cov_b = la @ la.T, lb @ lb.T
    # tr((Σa Σb)^½) = Σ sqrt(eig(Σa Σb)); the eigenvalues are real and positive
    tr_sqrt = torch.linalg.eigvals(cov_a @ cov_b).real.sqrt().sum()
    analytic = float(d * 0.3**2 + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt)
    assert frechet_distance(a, b) == pytest.approx(analytic, rel=0.03)


def test_frechet_distance_grows_with_the_shift_of_one_set():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(1000, 5, generator=g)
    b = torch.randn(1000, 5, generator=g)
    distances = [frechet_distance(a, b + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert distances == sorted(distances)
    assert distances[-1] > 10 * distances[0]


@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [((10, 4), (10, 5)), ((10,), (10,)), ((1, 4), (10, 4)), ((10, 4), (1, 4)), ((2, 3, 4), (5, 4))],
)
def test_frechet_distance_rejects_bad_shapes(shape_a, shape_b):
    with pytest.raises(ValueError, match="expected"):
        frechet_distance(torch.randn(shape_a), torch.randn(shape_b))


def test_frechet_distance_rejects_non_finite_features():
    a = torch.randn(10, 3)
    a[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(a, torch.randn(10, 3))


# --- nearest neighbours ---------------------------------------------------------------------


def test_nearest_neighbours_equal_brute_force():
    g = torch.Generator().manual_seed(5)
    samples, train = torch.rand(37, 1, 6, 6, generator=g), torch.rand(53, 1, 6, 6, generator=g)
    all_d = (samples.reshape(37, 1, -1) - train.reshape(1, 53, -1)).norm(dim=2)
    distances, indices = nearest_neighbours(samples, train, batch_size=10)
    torch.testing.assert_close(distances, all_d.min(dim=1).values)
    assert torch.equal(indices, all_d.argmin(dim=1))


def test_nearest_neighbour_distance_is_zero_for_a_training_image():
    g = torch.Generator().manual_seed(6)
    train = torch.rand(200, 1, 28, 28, generator=g)
    samples = torch.cat([train[17:18], torch.rand(3, 1, 28, 28, generator=g), train[150:151]])
    distances, indices = nearest_neighbours(samples, train, batch_size=64)
    assert distances[0] == 0.0 and distances[-1] == 0.0
    assert indices[0] == 17 and indices[-1] == 150
    assert (distances[1:-1] > 1.0).all()


def test_nearest_neighbour_chunking_gives_the_same_result_as_no_chunking():
    g = torch.Generator().manual_seed(7)
    samples, train = torch.rand(45, 1, 8, 8, generator=g), torch.rand(70, 1, 8, 8, generator=g)
    whole = nearest_neighbour_distances(samples, train, batch_size=1000)
    for batch_size in (1, 7, 45, 69):
        torch.testing.assert_close(
            nearest_neighbour_distances(samples, train, batch_size=batch_size), whole
        )


def test_nearest_neighbours_reject_mismatched_image_sizes():
    with pytest.raises(ValueError, match="expected"):
        nearest_neighbours(torch.rand(3, 1, 8, 8), torch.rand(5, 1, 7, 7))


def test_summary_shows_copied_samples_far_below_held_out_reference():
    g = torch.Generator().manual_seed(8)
    train, held_out = torch.rand(100, 1, 8, 8, generator=g), torch.rand(20, 1, 8, 8, generator=g)
    copies = train[:20] + 0.001
    summary = nearest_neighbour_summary(copies, train, held_out)
    assert set(summary) == {
        "sample_median",
        "sample_mean",
        "held_out_median",
        "held_out_mean",
        "median_ratio",
    }
    assert summary["sample_median"] < 0.01 * summary["held_out_median"]
    assert summary["median_ratio"] < 0.01
    fresh = nearest_neighbour_summary(torch.rand(20, 1, 8, 8, generator=g), train, held_out)
    assert 0.5 < fresh["median_ratio"] < 2.0


# --- feature classifier ---------------------------------------------------------------------


def half_bright_images(n: int, seed: int, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: bright top half; class 1: bright bottom half; plus noise. ``[n, 1, s, s]``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = 0.3 * torch.rand(n, 1, size, size, generator=g)
    half = size // 2
    images[labels == 0, :, :half] += 0.6
    images[labels == 1, :, half:] += 0.6
    return images.clamp(0, 1), labels


@pytest.mark.parametrize("size", [8, 28, 32])
def test_feature_classifier_shapes_for_any_image_size(size):
    model = FeatureClassifier(num_classes=7)
    x = torch.rand(3, 1, size, size)
    assert model.features(x).shape == (3, 128)
    assert model(x).shape == (3, 7)


def test_classifier_learns_a_separable_problem_in_one_epoch():
    images, labels = half_bright_images(512, seed=0)
    model = train_feature_classifier(
        images, labels, num_classes=2, epochs=1, batch_size=32, progress=False
    )
    test_images, test_labels = half_bright_images(200, seed=1)
    assert classifier_accuracy(model, test_images, test_labels) > 0.9


def test_classifier_training_is_deterministic_given_the_seed():
    images, labels = half_bright_images(128, seed=0, size=8)
    kwargs = dict(num_classes=2, epochs=1, batch_size=32, progress=False)
    a = train_feature_classifier(images, labels, seed=3, **kwargs)
    b = train_feature_classifier(images, labels, seed=3, **kwargs)
    c = train_feature_classifier(images, labels, seed=4, **kwargs)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name])
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_classifier_fid_is_zero_for_the_same_images_and_floor_needs_equal_sizes():
    images, _ = half_bright_images(64, seed=0, size=8)
    model = FeatureClassifier(num_classes=2)
    assert classifier_fid(model, images, images, batch_size=10) == pytest.approx(0.0, abs=1e-6)
    assert real_vs_real_floor(model, images[:32], images[32:]) > 0.0
    with pytest.raises(ValueError, match="same size"):
        real_vs_real_floor(model, images[:30], images[30:])


def test_load_or_train_caches_and_then_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    try:
        from diffvi.data import load_dataset

        load_dataset("digits", "train")
    except (FileNotFoundError, ImportError) as err:
        pytest.skip(f"digits data not available: {err}")
    calls = []
    real_train = sample_quality.train_feature_classifier

    def train_once(*args, **kwargs):
        if calls:
            raise AssertionError("retrained although the classifier was cached")
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(sample_quality, "train_feature_classifier", train_once)
    folder = tmp_path / "digits-cls"
    first = load_or_train_feature_classifier(
        "digits", cache_dir=folder, epochs=1, seed=0, progress=False
    )
    info = json.loads((folder / "classifier.json").read_text())
    assert (folder / "model.safetensors").is_file()
    assert info["dataset"] == "digits" and info["epochs"] == 1 and info["seed"] == 0
    assert 0.0 <= info["test_accuracy"] <= 1.0
    second = load_or_train_feature_classifier(
        "digits", cache_dir=folder, epochs=1, seed=0, progress=False
    )
    assert len(calls) == 1
    assert second.info == info
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name])


def test_load_or_train_retrains_over_a_corrupt_or_foreign_cache(tmp_path: Path):
    try:
        from diffvi.data import load_dataset

        load_dataset("digits", "train")
    except (FileNotFoundError, ImportError) as err:
        pytest.skip(f"digits data not available: {err}")
    folder = tmp_path / "digits-cls"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    (folder / "classifier.json").write_text("{not json")
    model = load_or_train_feature_classifier(
        "digits", cache_dir=folder, epochs=1, seed=0, progress=False
    )
    assert model.info["epochs"] == 1
    assert json.loads((folder / "classifier.json").read_text())["seed"] == 0
