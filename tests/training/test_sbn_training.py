"""Training a sigmoid belief net with score-function estimators: the held-out bound improves,
the run folder holds a loadable export, a run resumes, NaN stops it."""

import csv
import json
import math

import pytest
import torch

from diffvi.data.registry import load_dataset
from diffvi.training import SBNConfig, fit, load, read_spec
from diffvi.training.families.sbn import SBNFamily, pixel_mean_logits

TINY = dict(dataset="digits", layers=[8, 4], batch_size=32, lr=3e-3, val_size=64, val_k=20)


def _val_bounds(run_dir, k: int = 20) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv") as f:
        return [float(r[f"val/bound_k{k}"]) for r in csv.DictReader(f) if r.get(f"val/bound_k{k}")]


@pytest.mark.parametrize(("estimator", "k"), [("nvil", 1), ("vimco", 4), ("rws", 4)])
def test_a_short_run_raises_the_held_out_bound_over_the_untrained_model(tmp_path, estimator, k):
    config = SBNConfig(
        **{**TINY, "lr": 1e-2}, estimator=estimator, k=k, max_steps=400, val_every_n_steps=200
    )
    fit(config, tmp_path / "run", accelerator="cpu", progress_bar=False)
    assert len(_val_bounds(tmp_path / "run")) == 2
    images = load_dataset("digits", "train").images
    held_out = load_dataset("digits", "test").images[:200]
    torch.manual_seed(0)
    untrained = SBNFamily(SBNConfig(**TINY, event_shape=[1, 8, 8]))
    with torch.no_grad():
        untrained.model.decoders[0].bias.copy_(pixel_mean_logits(images))
    trained = load(tmp_path / "run")
    before = untrained.importance_bound(held_out, 50).mean()
    after = trained.importance_bound(held_out, 50).mean()
    assert after > before + 0.8, (before, after)


def test_export_loads_and_scores_like_the_run_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    config = SBNConfig(**TINY, estimator="nvil", max_steps=20, val_every_n_steps=10)
    fit(config, run, accelerator="cpu", progress_bar=False)
    sbn, spec = load(run), read_spec(run)
    assert spec["kind"] == "sbn" and spec["config"]["layers"] == [8, 4]
    assert spec["metadata"]["steps"] == 20
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.3))
    torch.manual_seed(0)
    bound = sbn.importance_bound(x, 50)
    assert bound.shape == (5,) and bool((bound < 0).all())
    config.max_steps = 30
    fit(config, run, resume=True, accelerator="cpu", progress_bar=False)
    assert json.loads((run / "export" / "model.json").read_text())["metadata"]["steps"] == 30


def test_the_visible_biases_start_at_the_pixel_mean_logits(tmp_path):
    images = load_dataset("digits", "train").images
    logits = pixel_mean_logits(images)
    assert logits.shape == (64,) and float(logits.max()) <= math.log(999) + 1e-4
    mean = images.flatten(1).mean(0).clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(torch.sigmoid(logits), mean)
    assert SBNFamily(SBNConfig(**TINY, event_shape=[1, 8, 8])).estimator.baselines is not None


def test_own_images_set_the_visible_biases_from_the_grey_levels_of_a_few_items(
    tmp_path, monkeypatch
):
    """Not from bits, and not from the whole folder: at most PIXEL_MEAN_ITEMS are decoded."""
    import numpy as np

    from diffvi.data.image_folders import ImageFileDataset
    from diffvi.training.families import sbn

    levels = np.full((50, 1, 4, 4), 0.3, dtype=np.float32)
    levels[:, :, 0] = 0.8
    np.save(tmp_path / "grey.npy", levels)
    config = SBNConfig(
        **{**TINY, "dataset": None, "layers": [4], "batch_size": 8}, data=str(tmp_path / "grey.npy")
    )
    data = SBNFamily.build_data(config)
    SBNFamily.fit_config_to_data(config, data)
    decoded = []
    original = ImageFileDataset._decode
    monkeypatch.setattr(
        ImageFileDataset, "_decode", lambda self, p: decoded.append(len(p)) or original(self, p)
    )
    monkeypatch.setattr(sbn, "PIXEL_MEAN_ITEMS", 7)
    family = SBNFamily(config)
    family.attach_data(data, resumed=False)
    assert decoded == [7]
    expected = torch.logit(torch.tensor([0.8] * 4 + [0.3] * 12))
    torch.testing.assert_close(family.model.decoders[0].bias.detach(), expected)


def test_bad_configs_are_clear_errors():
    with pytest.raises(ValueError, match="k must be"):
        SBNConfig(estimator="vimco", k=1)
    with pytest.raises(ValueError, match="estimator must be"):
        SBNConfig(estimator="gumbel")
    with pytest.raises(ValueError, match="unknown dataset"):
        SBNConfig(dataset="cifar")
    with pytest.raises(ValueError, match="layers must be"):
        SBNConfig(layers=[200, 0])


def test_a_nan_loss_stops_training_without_an_export(tmp_path, monkeypatch):
    from diffvi.objectives import vimco

    def broken(self, model, posterior, x):
        out = original(self, model, posterior, x)
        out.loss = out.loss * float("nan")
        return out

    original = vimco.VIMCO.__call__
    monkeypatch.setattr(vimco.VIMCO, "__call__", broken)
    config = SBNConfig(**TINY, estimator="vimco", k=2, max_steps=5, val_every_n_steps=5)
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        fit(config, tmp_path / "run", accelerator="cpu", progress_bar=False)
    assert not (tmp_path / "run" / "export").exists()


def test_a_diverging_run_stops_before_any_checkpoint_or_export(tmp_path):
    # train sbn --lr 1e6 kept finite losses: the bound fell from -28 to -2e8 nats per image.
    config = SBNConfig(**{**TINY, "lr": 1e6}, estimator="nvil", max_steps=20, val_every_n_steps=10)
    with pytest.raises(FloatingPointError) as error:
        fit(config, tmp_path / "run", accelerator="cpu", progress_bar=False)
    message = str(error.value)
    assert message.startswith("training diverged at step 1 (the smoothed training negative")
    assert message.endswith("Try a lower learning rate (--lr, now 1e6).") and "\n" not in message
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "export").exists()
