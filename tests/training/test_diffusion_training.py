"""Training an image diffusion model: it measurably improves the bound, resumes, stops on NaN,
and exports EMA weights that load by folder and by name."""

import csv
import json
import math

import pytest
import torch

from diffvi.data import load_dataset
from diffvi.diffusion import LearnableScalarSchedule
from diffvi.evaluation.likelihood import diffusion_bits_per_dim
from diffvi.training import DiffusionConfig, TrainingModule, fit, load, read_spec
from diffvi.training.module import ema_average

TINY = dict(
    dataset="digits", base_channels=8, channel_mults=[1, 2], attention_resolutions=[],
    batch_size=64, lr=2e-3, warmup_steps=10, val_size=200, seed=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("diffusion") / "run"
    config = DiffusionConfig(
        **TINY, schedule="learned", loss_type="vdm", max_steps=120, val_every_n_steps=60
    )
    module = fit(config, run_dir, progress_bar=False, accelerator="cpu")
    return run_dir, module


def test_training_lowers_the_test_bits_per_dim_of_the_ema_weights(trained):
    run_dir, module = trained
    test = load_dataset("digits", "test").images[:300]
    untrained = TrainingModule("diffusion", module.config).family.model
    before, _ = diffusion_bits_per_dim(untrained, test, repeats=2)
    after, se = diffusion_bits_per_dim(module.trained.model, test, repeats=2)
    assert after < before - 1.0, (before, after, se)


def test_learned_schedule_endpoints_move_during_training(trained):
    _, module = trained
    assert abs(module.family.model.schedule.gamma_min + 13.3) > 1e-3


def test_run_folder_holds_config_checkpoint_logs_and_a_loadable_export(trained):
    run_dir, module = trained
    assert json.loads((run_dir / "config.json").read_text())["kind"] == "diffusion"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    model, spec = load(run_dir).model, read_spec(run_dir)
    assert spec["metadata"]["steps"] == 120 and math.isfinite(spec["metadata"]["val_bpd"])
    for name, value in module.trained.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    noise = torch.randn(2, 1, 8, 8)
    a = model.sample((2, 1, 8, 8), steps=5, sampler="ddim", noise=noise)
    b = module.trained.model.eval().sample((2, 1, 8, 8), steps=5, sampler="ddim", noise=noise)
    assert torch.equal(a, b)


def test_a_learnable_scalar_schedule_lowers_the_bound_and_round_trips_through_the_export(
    tmp_path,
):
    # VDM's linear γ with learned endpoints (its CIFAR-10/ImageNet configs), 60 steps.
    run_dir = tmp_path / "run"
    config = DiffusionConfig(
        **TINY, schedule="learnable-scalar", loss_type="vdm", max_steps=60, val_every_n_steps=60
    )
    module = fit(config, run_dir, progress_bar=False, accelerator="cpu", log_every_n_steps=1)
    test = load_dataset("digits", "test").images[:200]
    untrained = TrainingModule("diffusion", module.config).family.model
    assert isinstance(untrained.schedule, LearnableScalarSchedule)
    before, _ = diffusion_bits_per_dim(untrained, test, repeats=2)
    after, se = diffusion_bits_per_dim(module.trained.model, test, repeats=2)
    assert after < before - 1.0, (before, after, se)
    schedule = module.family.model.schedule
    assert abs(schedule.gamma_min + 13.3) > 1e-3 and abs(schedule.gamma_max - 5.0) > 1e-3
    with open(run_dir / "logs" / "metrics.csv") as f:
        assert {"train/gamma_0", "train/gamma_1"} <= set(next(csv.reader(f)))
    spec = read_spec(run_dir)
    assert spec["schedule"] == {"name": "learnable-scalar"}
    loaded = load(run_dir).model
    assert isinstance(loaded.schedule, LearnableScalarSchedule)
    ema = module.trained.model.schedule
    assert torch.equal(loaded.schedule.start, ema.start)
    assert torch.equal(loaded.schedule.slope, ema.slope)


def test_resume_continues_to_the_new_step_count(tmp_path):
    run_dir = tmp_path / "run"
    config = DiffusionConfig(**TINY, max_steps=20, val_every_n_steps=10)
    fit(config, run_dir, progress_bar=False, accelerator="cpu")
    config.max_steps = 30
    module = fit(config, run_dir, resume=True, progress_bar=False, accelerator="cpu")
    assert module.trainer.global_step == 30
    spec = read_spec(run_dir)
    assert spec["metadata"]["steps"] == 30


def test_a_nan_loss_stops_training_without_an_export(tmp_path, monkeypatch):
    from diffvi.diffusion.model import DiffusionModel

    def nan_loss(self, x, *args, **kwargs):
        weights = sum(p.sum() for p in self.parameters())  # a loss that backpropagates
        return (x.flatten(1).sum(1) + weights) * math.nan

    monkeypatch.setattr(DiffusionModel, "loss", nan_loss)
    config = DiffusionConfig(**TINY, max_steps=5, val_every_n_steps=5)
    with pytest.raises(FloatingPointError, match="NaN|nan"):
        fit(config, tmp_path / "run", progress_bar=False, accelerator="cpu")
    assert not (tmp_path / "run" / "export").exists()


def test_ema_rate_warms_up_then_reaches_the_decay():
    update = ema_average(0.99)
    avg, cur = [torch.zeros(1)], [torch.ones(1)]
    update(avg, cur, torch.tensor(0))  # rate (1 + 0) / 10 = 0.1: moves 90% of the way
    assert avg[0].item() == pytest.approx(0.9)
    avg = [torch.zeros(1)]
    update(avg, cur, torch.tensor(10_000))  # rate 0.99
    assert avg[0].item() == pytest.approx(0.01)


def test_config_rejects_a_learned_schedule_without_the_vdm_loss_and_unknown_keys():
    for schedule in ("learned", "learnable-scalar"):
        with pytest.raises(ValueError, match="learned schedule is trained by the VDM bound"):
            DiffusionConfig(schedule=schedule, loss_type="simple")
    with pytest.raises(ValueError, match="unknown config keys"):
        DiffusionConfig.from_dict({"schedul": "cosine"})
    with pytest.raises(ValueError, match="schedule must be one of"):
        DiffusionConfig(schedule="quadratic")
