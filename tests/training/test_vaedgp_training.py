"""VAE-DGP training (``fit`` with a ``VAEDGPConfig``): a short run raises the held-out bound
and imputes better than the column means, the export and latent plot are written, resume
continues, a GP-LVM trains, and bad configs and non-finite bounds stop with clear errors."""

import csv
import json
import math

import pytest
import torch

from diffvi.data.modules import flat_images, observed_mask
from diffvi.training import TrainingModule, VAEDGPConfig, fit, load, read_spec
from diffvi.training.families.vaedgp import imputation_rmse

SMALL = dict(
    dataset="frey-faces", latent_dims=[3], num_inducing=12, recognition_hidden=[32],
    train_size=200, batch_size=50, val_size=60, refine_steps=50,
)  # fmt: skip


def _val_bounds(run_dir) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv") as f:
        return [float(r["val/bound"]) for r in csv.DictReader(f) if r.get("val/bound")]


def test_a_short_run_raises_the_held_out_bound_and_imputes_better_than_the_mean(tmp_path):
    config = VAEDGPConfig(**SMALL, max_steps=120, val_every_n_steps=40)
    fit(config, tmp_path, accelerator="cpu", progress_bar=False)
    bounds = _val_bounds(tmp_path)
    assert len(bounds) == 3 and bounds[-1] > bounds[0] + 50, bounds
    meta = json.loads((tmp_path / "export" / "model.json").read_text())["metadata"]
    model, spec = load(tmp_path).model, read_spec(tmp_path)
    assert spec["kind"] == "vaedgp" and meta["steps"] == 120
    y, _ = flat_images("frey-faces", "test", 60)
    y = y.double()
    mask = observed_mask(y.shape, 0.5, config.seed + 1)
    mean_rmse = (model.fill_value - y)[~mask].pow(2).mean().sqrt().item()
    assert meta["val_impute_rmse"] == pytest.approx(imputation_rmse(model, y, mask, 50))
    assert meta["val_impute_rmse"] < 0.9 * mean_rmse
    with torch.no_grad():
        assert model.bound(y, num_data=200).mean().item() == pytest.approx(bounds[-1])
    assert (tmp_path / "latents.png").stat().st_size > 1000


def test_resume_continues_to_the_new_max_steps_and_a_gplvm_trains(tmp_path):
    config = VAEDGPConfig(**SMALL, max_steps=20, val_every_n_steps=10)
    fit(config, tmp_path / "a", accelerator="cpu", progress_bar=False)
    config.max_steps = 30
    fit(config, tmp_path / "a", resume=True, accelerator="cpu", progress_bar=False)
    meta = json.loads((tmp_path / "a" / "export" / "model.json").read_text())["metadata"]
    assert meta["steps"] == 30
    gplvm = VAEDGPConfig(**{**SMALL, "train_size": 100}, recognition=False, max_steps=40,
                         val_every_n_steps=20)  # fmt: skip
    module = fit(gplvm, tmp_path / "b", accelerator="cpu", progress_bar=False)
    y, _ = flat_images("frey-faces", "train", 100)
    with torch.no_grad():
        bound = module.family.model.bound(y.double()).mean().item()
    assert math.isfinite(bound) and not module.family.model.amortised
    model = load(tmp_path / "b").model
    assert model.free_means[0].shape == (100, 3)


def test_natural_steps_leave_q_u_out_of_adam():
    module = TrainingModule("vaedgp", VAEDGPConfig(**SMALL, data_dim=560, num_points=200))
    optimised = {id(p) for g in module.configure_optimizers().param_groups for p in g["params"]}
    q_u = {id(p) for layer in module.family.model.layers for p in layer.q_u_parameters()}
    assert not optimised & q_u
    assert len(optimised | q_u) == len(list(module.family.model.parameters()))


def test_bad_configs_are_clear_errors():
    for bad, match in [
        ({"dataset": "nope"}, "unknown dataset"),
        ({"latent_dims": []}, "latent_dims"),
        ({"kernel": "matern"}, "kernel"),
        ({"natural_step": 1.5}, "natural_step"),
        ({"val_missing": 1.0}, "val_missing"),
        ({"train_size": 1}, "train_size"),
        ({"recognition_lr": 0.0}, "recognition_lr"),
    ]:
        with pytest.raises(ValueError, match=match):
            VAEDGPConfig(**bad)


def test_a_non_finite_bound_stops_training_with_a_message():
    config = VAEDGPConfig(**SMALL, natural_step=0.0, data_dim=560, num_points=200)
    module = TrainingModule("vaedgp", config)
    with torch.no_grad():
        module.family.model.layers[0].log_noise_var.fill_(float("nan"))
    y, _ = flat_images("frey-faces", "train", 8)
    module.training_step((y.double(), torch.arange(8)), 0)
    with pytest.raises(FloatingPointError, match="lower learning rate"):
        module.check_finite()


def test_a_diverging_run_names_the_step_and_both_learning_rates_before_any_checkpoint(tmp_path):
    # --lr 1e6 --recognition-lr 1e6: K_zz stops being positive definite after the first step.
    # Checks only every 100 steps: the step-1 failure stops it, not the weight check of a short
    # run's frequent checks (which names the step too).
    config = VAEDGPConfig(**SMALL, lr=1e6, recognition_lr=1e6, max_steps=10, val_every_n_steps=5)
    with pytest.raises(FloatingPointError) as error:
        fit(config, tmp_path, accelerator="cpu", progress_bar=False, log_every_n_steps=100)
    assert str(error.value) == (
        "training diverged at step 1 (K_zz is not positive definite even with jitter; check the "
        "inducing inputs); stopping before writing a checkpoint. Try a lower learning rate "
        "(--lr, now 1e6; --recognition-lr, now 1e6)."
    )
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "export").exists()
