"""What the one training module and the one ``fit`` give every family alike: EMA weights for any
family, the wall-clock budget, precision, a required budget and the run-folder layout."""

import json
import time

import pytest
import torch
from safetensors.torch import load_file

from diffvi.training import DiffusionConfig, SBNConfig, TrainConfig, fit

SBN = dict(dataset="digits", layers=[4], batch_size=32, val_size=32, val_k=2)


def test_ema_works_for_a_family_that_never_had_one(tmp_path):
    config = SBNConfig(**SBN, max_steps=6, val_every_n_steps=6, ema_decay=0.5)
    module = fit(config, tmp_path, accelerator="cpu", progress_bar=False)
    exported = load_file(tmp_path / "export" / "model.safetensors")
    raw, averaged = module.family.state_dict(), module.trained.state_dict()
    assert module.trained is module.ema.module and module.ema.n_averaged.item() == 6
    for name, value in exported.items():
        assert torch.equal(value, averaged[name]), name
    assert any(not torch.equal(raw[n], averaged[n]) for n in exported)


def test_max_minutes_stops_an_otherwise_unbounded_run(tmp_path):
    config = TrainConfig(dataset="digits", latent_dims=[2], hidden=[[8]], k=1, batch_size=16,
                         max_epochs=-1, max_minutes=0.05, val_size=50, val_k=2)  # fmt: skip
    started = time.perf_counter()
    module = fit(config, tmp_path, accelerator="cpu", progress_bar=False)
    assert time.perf_counter() - started < 60
    steps = json.loads((tmp_path / "export" / "model.json").read_text())["metadata"]["steps"]
    assert steps == module.trainer.global_step > 0


def test_bf16_mixed_precision_trains_a_diffusion_model(tmp_path):
    config = DiffusionConfig(dataset="digits", base_channels=8, channel_mults=[1],
                             attention_resolutions=[], batch_size=32, warmup_steps=1,
                             max_steps=4, val_every_n_steps=4, val_size=32,
                             precision="bf16-mixed")  # fmt: skip
    fit(config, tmp_path, accelerator="cpu", progress_bar=False)
    spec = json.loads((tmp_path / "export" / "model.json").read_text())
    assert spec["config"]["precision"] == "bf16-mixed"
    assert torch.isfinite(torch.tensor(spec["metadata"]["val_bpd"]))


def test_every_family_needs_a_budget_and_a_known_precision():
    with pytest.raises(ValueError, match="no training budget"):
        SBNConfig(**SBN, max_steps=-1)
    with pytest.raises(ValueError, match="precision must be one of"):
        SBNConfig(**SBN, precision="8-bit")
    with pytest.raises(ValueError, match="max_minutes must be > 0"):
        SBNConfig(**SBN, max_minutes=0)


def test_weights_that_overflow_or_blow_up_stop_training_though_the_losses_were_finite():
    from diffvi.data.registry import load_dataset
    from diffvi.training import TrainingModule

    config = SBNConfig(**SBN, event_shape=[1, 8, 8], lr=1e6)
    module = TrainingModule("sbn", config)
    x = load_dataset("digits", "train").images[:8].float()
    module.training_step((x,), 0)  # records the largest initial weight
    module.check_finite()
    weight = module.family.model.decoders[0].weight
    with torch.no_grad():
        weight.mul_(1e5)  # what a step of lr 1e6 does, after the last loss was computed
    with pytest.raises(FloatingPointError, match=r"diverged by step 0 \(the largest weight grew"):
        module.check_finite()
    with torch.no_grad():
        weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"a weight became NaN or infinite\); .*now 1e6"):
        module.check_finite()
