"""Semi-supervised training: the labelled batches and partially labelled data, the config's
checks and defaults (the label-conditioned posterior, saved configs from before it), and short
digits runs of both posteriors whose label accuracy rises well above chance."""

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
    semi_posterior="factorised",
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
# The label-conditioned posterior (the default) at β_reg = 1 (`train ddvae`'s default): at 0.01
# its log p(z, l) term is too weak to pull each label's chain into its partition.
CONDITIONAL_PRESET = {**SEMI_PRESET, "semi_posterior": "conditional", "beta_reg": 1.0}


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


def test_labelled_runs_default_to_the_label_conditioned_posterior_and_its_weights():
    config = TrainConfig(objective="elbo", num_labelled=100, prior="mixture")
    assert config.semi_posterior == "conditional" and config.label_conditioned
    assert config.classifier_weight == pytest.approx(78.4) and config.entropy_weight == 0.001
    factorised = TrainConfig(
        objective="elbo", num_labelled=100, prior="mixture", semi_posterior="factorised"
    )
    assert factorised.classifier_weight == 1.0 and not factorised.label_conditioned
    unsupervised = TrainConfig(objective="elbo")
    assert unsupervised.semi_posterior is None and not unsupervised.label_conditioned


def test_semi_posterior_options_that_do_not_apply_are_refused():
    with pytest.raises(ValueError, match="set num_labelled"):
        TrainConfig(objective="elbo", semi_posterior="conditional")
    with pytest.raises(ValueError, match="label_weight=0.5 is a weight of the other"):
        TrainConfig(objective="elbo", num_labelled=100, prior="mixture", label_weight=0.5)
    with pytest.raises(ValueError, match="entropy_weight=0.1 is a weight of the other"):
        TrainConfig(
            objective="elbo", num_labelled=100, prior="mixture", semi_posterior="factorised",
            entropy_weight=0.1,
        )  # fmt: skip
    with pytest.raises(ValueError, match="semi_posterior must be one of"):
        TrainConfig(objective="elbo", num_labelled=100, prior="mixture", semi_posterior="m2")
    with pytest.raises(ValueError, match="analytic_kl=False"):
        TrainConfig(objective="elbo", num_labelled=100, prior="mixture", analytic_kl=True)


def test_a_semisupervised_config_saved_before_the_option_loads_as_factorised():
    saved = tiny_config(SEMI_PRESET, event_shape=[1, 8, 8]).to_dict()
    del saved["semi_posterior"]  # as written before the option existed
    saved["classifier_weight"] = 1.0
    old = TrainConfig.from_dict(saved)
    assert old.semi_posterior == "factorised" and old.classifier_weight == 1.0
    # A new run's values (no event_shape yet: it comes from the data) get the default.
    fresh = {k: v for k, v in saved.items() if k != "event_shape"}
    assert TrainConfig.from_dict(fresh).semi_posterior == "conditional"
    unsupervised = {**saved, "num_labelled": 0}
    assert TrainConfig.from_dict(unsupervised).semi_posterior is None


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


def test_short_label_conditioned_ddvae_run_improves_its_bound_and_embeds_with_argmax_q(tmp_path):
    # Measured (10 epochs, seed 0): val/bound -32.4 -> -25.9, val/accuracy of q(l|x)
    # 0.85 -> 0.89, val/latent_accuracy 0.39 -> 0.73 (8 s). Chance is 0.1.
    import diffvi
    from diffvi.posteriors import LabelConditionedDiffusion

    config = tiny_config(CONDITIONAL_PRESET, max_epochs=10)
    module = fit(config, tmp_path / "run", progress_bar=False, log_every_n_steps=5)
    bound = read_val(tmp_path / "run", "val/bound")
    latent = read_val(tmp_path / "run", "val/latent_accuracy")
    accuracy = read_val(tmp_path / "run", "val/accuracy")
    assert len(bound) == len(latent) == len(accuracy) == 10
    assert bound[-1] > bound[0] + 3, bound
    assert accuracy[-1] > 0.75, accuracy
    assert latent[-1] > 0.5 and latent[-1] > latent[0] + 0.15, latent
    family = module.family.cpu().eval()
    assert isinstance(family.posterior, LabelConditionedDiffusion)
    assert family.label_classifier is family.posterior.classifier
    # The classifier is the posterior's, in the checkpoint and the export.
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "run" / "export" / "model.safetensors")
    assert any(name.startswith("posterior.classifier.") for name in exported)
    assert not any(name.startswith("classifier.") for name in exported)
    loaded = diffvi.load(tmp_path / "run")
    x = torch.rand(6, 1, 8, 8)
    torch.testing.assert_close(loaded.label_classifier(x), family.label_classifier(x))
    # Embeddings are one draw of the chain of argmax q(l|x).
    predicted = family.label_classifier(x).argmax(-1)
    generator = torch.Generator().manual_seed(3)
    want = family.posterior.base.sample(x, 1, generator, label=predicted).z[0]
    torch.testing.assert_close(loaded.encode(x, seed=3), want)
