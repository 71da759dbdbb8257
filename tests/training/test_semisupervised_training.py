"""Semi-supervised training: the labelled batches and partially labelled data, the config's
checks, and a short digits run whose label accuracy rises well above chance."""

import csv

import pytest
import torch
from tiny_configs import tiny_config

from diffvi.data.images import ImageDataset
from diffvi.data.modules import (
    ImageDataModule,
    IndexBatchSampler,
    LabelledBatchSampler,
)
from diffvi.training import TrainConfig, fit, load_module

# A learnable Gaussian mixture (10 parts) organises digits' 2-D latents within seconds; the
# pinwheel needs far longer on digits (its latents stay near the origin for 20 epochs).
SEMI_PRESET = dict(
    objective="ddvi",
    posterior="diffusion",
    prior="mixture",
    latent_dims=[2],
    hidden=[[64, 64]],
    activation="silu",
    diffusion_steps=5,
    k=1,
    adam="torch",
    beta_reg=0.01,
    lr=1e-2,
    num_labelled=100,
    labelled_batch=32,
    val_size=300,
)


def test_labelled_sampler_appends_labelled_batch_to_every_batch_deterministically_per_epoch():
    labelled = torch.tensor([3, 10, 20, 31, 47])
    base = IndexBatchSampler(50, 8, seed=1, drop_last=True)
    sampler = LabelledBatchSampler(base, labelled, labelled_batch=4)
    sampler.set_epoch(2)
    first = list(sampler)
    assert len(first) == len(base) == 6
    for batch in first:
        assert batch.shape == (12,)
        assert torch.isin(batch[8:], labelled).all()
    # Over the epoch every labelled index appears (the stream cycles through permutations).
    assert set(torch.cat([b[8:] for b in first]).tolist()) == set(labelled.tolist())
    again = LabelledBatchSampler(IndexBatchSampler(50, 8, seed=1, drop_last=True), labelled, 4)
    again.set_epoch(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    sampler.set_epoch(3)
    assert not all(torch.equal(a, b) for a, b in zip(first, sampler, strict=True))


def test_data_module_hides_labels_outside_subset_and_keeps_validation_labels():
    data = ImageDataModule("digits", 64, seed=0, val_size=100, num_labelled=50, labelled_batch=20)
    labels = data.train_set.labels
    assert (labels >= 0).sum() == 50 and torch.equal(
        torch.nonzero(labels >= 0)[:, 0], data.labelled
    )
    loader = data.train_dataloader()
    x, y = next(iter(loader))
    assert x.shape == (84, 1, 8, 8)
    assert (y[64:] >= 0).all()  # the appended labelled items
    assert torch.bincount(y[64:][y[64:] >= 0], minlength=10).sum() == 20
    _, val_y = next(iter(data.val_dataloader()))
    assert (val_y >= 0).all()


def test_data_module_with_labels_needs_a_labelled_data_set(monkeypatch):
    import diffvi.data.modules as data_module

    def unlabelled(name, split):
        return ImageDataset(torch.rand(40, 1, 4, 4), name=name, split=split)

    monkeypatch.setattr(data_module, "load_dataset", unlabelled)
    monkeypatch.setattr(data_module, "dataset_splits", lambda name: ("train", "test"))
    with pytest.raises(ValueError, match="'frey-faces' has no labels"):
        ImageDataModule("frey-faces", 8, num_labelled=10)


def test_labelled_run_with_iwae_or_aae_objective_is_refused():
    with pytest.raises(ValueError, match="use elbo or ddvi"):
        TrainConfig(objective="iwae", num_labelled=100, prior="mixture")
    with pytest.raises(ValueError, match="use elbo or ddvi"):
        TrainConfig(objective="aae", num_labelled=100, prior="mixture", latent_dims=[2])


def test_labelled_run_with_standard_normal_prior_is_refused():
    with pytest.raises(ValueError, match="one partition per class"):
        TrainConfig(objective="elbo", num_labelled=100, prior="standard-normal")
    with pytest.raises(ValueError, match="num_labelled must be >= 0"):
        TrainConfig(objective="elbo", num_labelled=-1, prior="mixture")


def read_val(run_dir, name: str) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv") as f:
        return [float(r[name]) for r in csv.DictReader(f) if r.get(name)]


def test_short_semisupervised_ddvae_run_on_digits_learns_labels_far_above_chance(tmp_path):
    # Measured (12 epochs, seed 0): val/latent_accuracy 0.14 after the first epoch, 0.73 after
    # the last; val/accuracy of q(l|x) 0.37 -> 0.79. Chance is 0.1.
    config = tiny_config(SEMI_PRESET, max_epochs=12)
    module = fit(config, tmp_path / "run", progress_bar=False, log_every_n_steps=5)
    latent = read_val(tmp_path / "run", "val/latent_accuracy")
    accuracy = read_val(tmp_path / "run", "val/accuracy")
    assert len(latent) == 12 and len(accuracy) == 12
    assert latent[-1] > 0.45 and latent[-1] > latent[0] + 0.2, latent
    assert accuracy[-1] > 0.5 and accuracy[-1] > accuracy[0] + 0.2, accuracy
    # The classifier is part of the checkpoint and the export.
    loaded = load_module(tmp_path / "run")
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(loaded.family.classifier(x), module.family.classifier.cpu()(x))
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "run" / "export" / "model.safetensors")
    assert any(name.startswith("classifier.") for name in exported)
