"""σ chosen from the data (diffvi.training.embedding.select_likelihood_scale, issue 23 item 8):
the held-out log-likelihood of pilots over a grid, without labels."""

import json

import numpy as np
import pytest
import torch

from diffvi.training.embedding import (
    EmbeddingOptions,
    embed_features,
    one_standard_error_choice,
    select_likelihood_scale,
    write_embedding,
)

GRID = (0.01, 0.03, 0.1, 0.3, 1.0)  # a factor of ~3 apart


def clusters_plus_noise(noise: float, n: int = 240, dim: int = 24, seed: int = 0):
    """Four clusters in the first two features (column 0 has sd 1) and Gaussian noise of sd
    ``noise`` on every feature: in units of std(column 0) the noise sd is ``noise``."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    labels = rng.integers(0, 4, n)
    x = rng.normal(0.0, noise, (n, dim))
    x[:, :2] += centres[labels]
    return x / x[:, 0].std(), labels


def options(**changes) -> EmbeddingOptions:
    settings = dict(
        epochs=40, batch_size=20, lr=3e-3, hidden=32, pilot_fraction=1.0, scale_grid=GRID,
        progress=False, device="cpu", seed=0, likelihood_scale="select",
    )  # fmt: skip
    return EmbeddingOptions(**(settings | changes))


def test_one_standard_error_rule_takes_the_broadest_sigma_not_worse_than_the_best():
    torch.manual_seed(0)
    noise = torch.randn(400)
    # per sample scores of 4 grid points: the second is best, the third 0.01 below it on the
    # same samples (within one standard error), the fourth 1.0 below (well outside)
    scores = torch.stack([noise - 0.5, noise, noise - 0.01 + 0.1 * torch.randn(400), noise - 1])
    best, chosen, gap, gap_se = one_standard_error_choice(scores)
    assert best == 1 and chosen == 2
    assert gap[1] == 0 and gap[3] == pytest.approx(1.0) and gap[2] <= gap_se[2]
    assert gap[0] == pytest.approx(0.5) and gap[0] > gap_se[0]
    # ties go to the broadest σ; a single grid point is chosen
    assert one_standard_error_choice(torch.zeros(3, 10))[1] == 2
    assert one_standard_error_choice(torch.randn(1, 10))[:2] == (0, 0)


@pytest.mark.slow
def test_the_criteria_on_clusters_plus_noise_of_known_sd(tmp_path):
    """Four clusters plus Gaussian noise of sd 0.1 (units of std(feature 0)) on 24 features.
    The held-out log p(x) under each pilot's own σ is a density of the same data, so it is
    comparable across σ: it peaks at the true noise sd and σ ten times too small or too large
    scores far worse. The reconstruction score (σ profiled out per feature) never picks a σ
    broader than the noise, which blurs the clusters: σ = 1 reconstructs worse by many
    standard errors."""
    noise = 0.1
    x, _ = clusters_plus_noise(noise)
    lines = []
    selection = select_likelihood_scale(
        torch.as_tensor(x, dtype=torch.float32), "vae", options(), tmp_path, echo=lines.append
    )
    assert selection.chosen_by["likelihood"] == noise
    log_px = dict(zip(selection.grid, selection.log_px, strict=True))
    assert log_px[0.1] > log_px[0.01] + 50 and log_px[0.1] > log_px[1.0] + 5
    assert selection.chosen_by["reconstruction"] <= noise
    assert selection.chosen == selection.chosen_by["likelihood"]  # the default criterion
    assert selection.gap[-1] > 3 * selection.gap_se[-1]
    residual = dict(zip(selection.grid, selection.residual_rms, strict=True))
    assert all(0.08 < residual[sigma] < 0.12 for sigma in (0.01, 0.03, 0.1))
    assert residual[1.0] > 2 * residual[0.1]
    # one progress line per pilot; reconstruction's best is the highest score
    assert len(lines) == len(GRID) and all("pilot" in line for line in lines)
    assert selection.best == GRID[int(np.argmax(selection.score))]


def test_pilots_of_the_same_config_and_data_are_reused(tmp_path):
    x = torch.as_tensor(clusters_plus_noise(0.1, n=60, dim=6)[0], dtype=torch.float32)
    settings = options(epochs=2, scale_grid=(0.05, 0.5), pilot_fraction=0.5)
    first = select_likelihood_scale(x, "vae", settings, tmp_path, echo=lambda _: None)
    again = select_likelihood_scale(x, "vae", settings, tmp_path, echo=lambda _: None)
    assert first.reused == 0 and again.reused == 2
    assert again.score == pytest.approx(first.score) and again.chosen == first.chosen
    other = select_likelihood_scale(x * 1.1, "vae", settings, tmp_path, echo=lambda _: None)
    assert other.reused == 0  # other data: trained again


def test_selection_is_recorded_in_the_run_and_the_embedding(tmp_path):
    x, _ = clusters_plus_noise(0.1, n=60, dim=6)
    settings = options(epochs=2, scale_grid=(0.05, 0.5), pilot_fraction=0.5)
    result = embed_features(x, "vae", settings, run_dir=tmp_path / "run")
    record = result.details["likelihood_scale_selection"]
    assert record["grid"] == [0.05, 0.5] and len(record["log_px"]) == 2
    assert len(record["score"]) == 2 and record["criterion"] == "likelihood"
    assert set(record["chosen_by"]) == {"reconstruction", "likelihood"}
    assert record["chosen"] in (0.05, 0.5) and record["pilot_epochs"] == 1
    assert record["train_samples"] + record["heldout_samples"] == 60
    assert result.details["config"]["likelihood_scale"] == record["chosen"]
    saved = json.loads((tmp_path / "run" / "scale-pilots" / "likelihood_scale.json").read_text())
    assert saved == record
    from diffvi.training.embedding import LabelledEmbedding

    labelled = LabelledEmbedding(result, np.zeros(len(x), dtype=int), 1, {})
    write_embedding(tmp_path / "out", labelled, [str(i) for i in range(len(x))])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["details"]["likelihood_scale_selection"]["chosen"] == record["chosen"]
    assert metrics["details"]["likelihood_scale"] == record["chosen"]


def test_the_median_rule_keeps_its_old_value_under_both_names(tmp_path):
    x, _ = clusters_plus_noise(0.1, n=60, dim=6)
    stds = torch.as_tensor(x, dtype=torch.float32).std(0)
    median = (stds.median() / stds[0]).item()
    for name in ("median", "auto"):
        result = embed_features(
            x, "vae", options(epochs=1, likelihood_scale=name), run_dir=tmp_path / name
        )
        assert result.details["config"]["likelihood_scale"] == pytest.approx(median, rel=1e-5)
        assert "likelihood_scale_selection" not in result.details


@pytest.mark.parametrize(
    "change",
    [
        {"scale_grid": ()},
        {"scale_grid": (0.1, -0.1)},
        {"scale_grid": (0.1, 0.0)},
        {"scale_grid": (0.1, float("nan"))},
        {"scale_grid": (0.1, float("inf"))},
        {"scale_grid": (0.1, 0.1)},
        {"pilot_fraction": 0.0},
        {"pilot_fraction": 1.5},
        {"pilot_holdout": 0.0},
        {"pilot_holdout": 0.6},
        {"likelihood_scale": "mean"},
        {"likelihood_scale": -1.0},
        {"likelihood_scale": float("nan")},
        {"scale_criterion": "elbo"},
    ],
)
def test_bad_selection_settings_raise_value_error(tmp_path, change):
    x, _ = clusters_plus_noise(0.1, n=30, dim=4)
    name = next(iter(change))
    with pytest.raises(ValueError, match=name):
        embed_features(x, "vae", options(**change), run_dir=tmp_path)
