"""Training CVDM on a tiny paired task: the loss falls, the run folder holds config, checkpoint,
logs and a loadable export of the EMA weights, a run resumes, the regression baseline trains,
and a NaN loss stops training."""

import csv
import json
import math

import pytest
import torch

from diffvi.data.paired import load_paired
from diffvi.diffusion.conditional import CVDM, ConditionalSchedule
from diffvi.models.regression import RegressionUNet
from diffvi.training import CVDMConfig, fit, load, read_spec
from diffvi.training.families.cvdm import CVDMFamily, build_cvdm_model

TINY = dict(
    task="microscopy-sr", task_options={"size": 16}, train_size=64, val_size=8,
    base_channels=8, channel_mults=[1, 2], batch_size=16, lr=2e-3, warmup_steps=5,
    timesteps=50, sample_steps=4, val_sample_size=4, seed=0,
)  # fmt: skip


def load_cvdm(run_dir):
    return load(run_dir).model, read_spec(run_dir)


def _train_losses(run_dir) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cvdm") / "run"
    config = CVDMConfig(**TINY, schedule="learned", max_steps=30, val_every_n_steps=15)
    module = fit(config, run_dir, progress_bar=False, accelerator="cpu", log_every_n_steps=1)
    return run_dir, module


def test_the_training_loss_decreases(trained):
    run_dir, module = trained
    losses = _train_losses(run_dir)
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_each_loss_term_and_the_learned_end_points_are_logged(trained):
    run_dir, _ = trained
    with open(run_dir / "logs" / "metrics.csv") as f:
        columns = set(next(csv.reader(f)))
    for name in ("noise", "consistency", "boundary", "beta", "prior", "regulariser"):
        assert f"train/{name}" in columns
    assert {"train/gamma_bar_t0", "train/gamma_bar_tT", "val/loss", "val/psnr"} <= columns


def test_run_folder_holds_config_checkpoint_and_a_loadable_export(trained):
    run_dir, module = trained
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["kind"] == "cvdm" and saved["schedule"] == "learned"
    assert (saved["x_channels"], saved["y_channels"], saved["image_size"]) == (1, 1, 16)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    model, spec = load_cvdm(run_dir)
    assert isinstance(model, CVDM) and isinstance(model.schedule, ConditionalSchedule)
    assert spec["metadata"]["steps"] == 30 and math.isfinite(spec["metadata"]["val_loss"])
    for name, value in module.trained.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    x = load_paired("microscopy-sr", "test", 2, size=16).condition
    noise = torch.randn(2, 1, 16, 16)
    a = model.sample(x, steps=4, noise=noise, generator=torch.Generator().manual_seed(0))
    b = module.trained.model.eval().sample(
        x, steps=4, noise=noise, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(a, b)


def test_resume_continues_to_the_new_step_count(tmp_path):
    # The official direction of the prior KL rides through config.json, resume and the export.
    run_dir = tmp_path / "run"
    config = CVDMConfig(
        **TINY, schedule="cosine", prior_kl="official", max_steps=10, val_every_n_steps=5
    )
    fit(config, run_dir, progress_bar=False, accelerator="cpu")
    config.max_steps = 15
    module = fit(config, run_dir, resume=True, progress_bar=False, accelerator="cpu")
    assert module.trainer.global_step == 15
    model, spec = load_cvdm(run_dir)
    assert spec["metadata"]["steps"] == 15 and spec["schedule"] == "cosine"
    assert spec["prior_kl"] == "official" and model.prior_kl == "official"


def test_the_prior_kl_defaults_to_the_papers_direction_and_old_specs_load_with_it():
    config = CVDMConfig(**TINY)
    assert config.prior_kl == "paper"
    config.x_channels, config.y_channels, config.image_size = 1, 1, 16
    spec = config.model_spec()
    assert spec["prior_kl"] == "paper" and build_cvdm_model(spec).prior_kl == "paper"
    del spec["prior_kl"]  # an export written before the option: the loss it was trained with
    assert build_cvdm_model(spec).prior_kl == "paper"
    assert CVDMFamily.from_spec(spec).config.prior_kl == "paper"
    official = build_cvdm_model({**spec, "prior_kl": "official"})
    assert official.prior_kl == "official"


def test_the_regression_baseline_trains(tmp_path):
    run_dir = tmp_path / "run"
    config = CVDMConfig(**TINY, schedule="regression", max_steps=30, val_every_n_steps=30)
    fit(config, run_dir, progress_bar=False, accelerator="cpu", log_every_n_steps=1)
    losses = _train_losses(run_dir)
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5]), losses
    model, spec = load_cvdm(run_dir)
    assert isinstance(model, RegressionUNet) and spec["schedule"] == "regression"
    x = load_paired("microscopy-sr", "test", 2, size=16).condition
    assert torch.equal(model.sample(x), model.sample(x))
    assert model.sample(x).shape == (2, 1, 16, 16)


def test_a_nan_loss_stops_training_without_an_export(tmp_path, monkeypatch):
    def nan_loss(self, y0, x, *args, **kwargs):
        weights = sum(p.sum() for p in self.parameters())  # a loss that backpropagates
        return {"total": (y0.flatten(1).sum(1) + weights) * math.nan}

    monkeypatch.setattr(CVDM, "loss", nan_loss)
    config = CVDMConfig(**TINY, max_steps=5, val_every_n_steps=5)
    with pytest.raises(FloatingPointError, match="NaN|nan"):
        fit(config, tmp_path / "run", progress_bar=False, accelerator="cpu")
    assert not (tmp_path / "run" / "export").exists()


def test_config_rejects_unknown_tasks_schedules_and_options():
    with pytest.raises(ValueError, match="unknown paired task"):
        CVDMConfig(task="cifar-sr4")
    with pytest.raises(ValueError, match="schedule must be one of"):
        CVDMConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="unknown task_options"):
        CVDMConfig(task="mnist-sr4", task_options={"size": 16})
    with pytest.raises(ValueError, match="unknown config keys"):
        CVDMConfig.from_dict({"schedul": "learned"})
    with pytest.raises(ValueError, match="train_size"):
        CVDMConfig(train_size=4, batch_size=16)
    with pytest.raises(ValueError, match="prior_kl must be one of"):
        CVDMConfig(prior_kl="reverse")
