"""Training: a short run improves the bound, checkpoints round-trip and resume exactly,
non-finite losses stop training, and the IWAE schedule and DDP sharding follow their specs."""

import csv
import math

import lightning as L
import pytest
import torch
from tiny_configs import tiny_config

from diffvi.data import load_dataset
from diffvi.data.modules import IndexBatchSampler
from diffvi.objectives import IWAE
from diffvi.training import TrainConfig, fit, load_module
from diffvi.training.config import iwae_lr_factor

IWAE_PRESET = dict(
    architecture="iwae-1", latent_dims=[4], hidden=[[32]], objective="iwae", k=5, seed=3
)


def tiny_iwae_config(**overrides) -> TrainConfig:
    return tiny_config(IWAE_PRESET, **overrides)


def held_out_bound(module, seed: int = 0, k: int = 20) -> float:
    x = load_dataset("digits", "test").images
    torch.manual_seed(seed)
    with torch.no_grad():
        return float(IWAE(k)(module.family.model, module.family.posterior, x).bound.mean())


def flat_parameters(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_short_training_run_improves_held_out_bound_by_at_least_5_nats(tmp_path):
    config = tiny_iwae_config(max_epochs=4)
    L.seed_everything(config.seed)
    untrained = load_module_like(config)
    before = held_out_bound(untrained)
    trained = fit(config, tmp_path / "run", progress_bar=False)
    after = held_out_bound(trained)
    assert after > before + 5.0, (before, after)


def load_module_like(config: TrainConfig):
    from diffvi.training import TrainingModule

    config.event_shape = [1, 8, 8]
    return TrainingModule("vae", config)


def test_checkpoint_round_trip_gives_identical_bound_under_fixed_seed(tmp_path):
    module = fit(tiny_iwae_config(max_epochs=1), tmp_path / "run", progress_bar=False)
    loaded = load_module(tmp_path / "run")
    assert torch.equal(flat_parameters(module), flat_parameters(loaded))
    assert held_out_bound(module, seed=7) == held_out_bound(loaded, seed=7)
    exported = (tmp_path / "run" / "export" / "model.safetensors").exists()
    assert exported


def test_resume_continues_step_count_and_matches_uninterrupted_run(tmp_path):
    straight = fit(tiny_iwae_config(max_epochs=2), tmp_path / "straight", progress_bar=False)
    fit(tiny_iwae_config(max_epochs=1), tmp_path / "split", progress_bar=False)
    first_steps = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=True)[
        "global_step"
    ]
    resumed = fit(
        tiny_iwae_config(max_epochs=2), tmp_path / "split", resume=True, progress_bar=False
    )
    final_steps = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=True)[
        "global_step"
    ]
    assert final_steps == 2 * first_steps > 0
    assert resumed.trainer.global_step == straight.trainer.global_step
    torch.testing.assert_close(flat_parameters(resumed), flat_parameters(straight), rtol=0, atol=0)


def test_resume_without_checkpoint_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        fit(tiny_iwae_config(), tmp_path / "nothing-here", resume=True, progress_bar=False)


class PoisonParameters(L.Callback):
    """Sets every parameter to NaN at step 3."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 3:
            with torch.no_grad():
                for p in module.parameters():
                    p.fill_(math.nan)


def test_nan_loss_stops_training_with_message_and_writes_no_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        fit(
            tiny_iwae_config(max_epochs=3),
            tmp_path / "run",
            progress_bar=False,
            callbacks=[PoisonParameters()],
            log_every_n_steps=5,
        )
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_corrupted_checkpoint_raises_value_error_naming_file(tmp_path):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.ckpt"):
        load_module(bad)


def test_iwae_schedule_has_3_pow_i_epochs_at_lr_times_10_pow_minus_i_over_7():
    factors = [iwae_lr_factor(e) for e in range(3280)]
    boundaries = [0, 1, 4, 13, 40, 121, 364, 1093, 3280]
    for i in range(8):
        stage = factors[boundaries[i] : boundaries[i + 1]]
        assert len(stage) == 3**i
        assert all(math.isclose(f, 10 ** (-i / 7)) for f in stage)


def test_unknown_config_key_and_bad_values_raise_value_error():
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(ValueError, match="objective"):
        TrainConfig(objective="vimco")
    with pytest.raises(ValueError, match="k must be"):
        TrainConfig(k=0)
    with pytest.raises(ValueError, match="likelihood_min_scale"):
        TrainConfig(likelihood="gaussian", likelihood_min_scale=-0.1)


def test_index_batches_shard_each_epoch_disjointly_and_reshuffle_between_epochs():
    shards = [IndexBatchSampler(103, 10, seed=1, rank=r, world_size=2) for r in range(2)]
    epoch0 = [torch.cat(list(s)) for s in shards]
    assert len(epoch0[0]) == len(epoch0[1]) == 51
    assert not set(epoch0[0].tolist()) & set(epoch0[1].tolist())
    assert len(list(shards[0])) == len(shards[0]) == 6
    for s in shards:
        s.set_epoch(1)
    epoch1 = torch.cat(list(shards[0]))
    assert not torch.equal(epoch0[0], epoch1)
    assert len(list(IndexBatchSampler(103, 10, drop_last=True))) == 10


def test_a_new_or_resumed_run_removes_what_a_kill_mid_write_left(tmp_path):
    stale = tmp_path / "run" / "checkpoints" / ".last.ckpt.k2j4h1.ckpt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a checkpoint")
    fit(tiny_iwae_config(max_epochs=1), tmp_path / "run", progress_bar=False)
    assert not stale.exists() and (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


class _ValidationBeforeTraining(L.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_validation_batch_start(self, trainer, *args) -> None:
        self.batches += trainer.global_step == 0


def test_a_short_run_logs_its_steps_without_validating_before_the_first(tmp_path, recwarn):
    """Under 50 steps a run still writes logs/metrics.csv (about ten rows), Lightning's
    sanity-check validation is not run, and no log_every_n_steps warning is given."""
    counter = _ValidationBeforeTraining()
    config = tiny_iwae_config(max_epochs=1, max_steps=20, val_every_n_steps=10)
    fit(config, tmp_path / "run", progress_bar=False, callbacks=[counter])
    assert counter.batches == 0
    with open(tmp_path / "run" / "logs" / "metrics.csv") as file:
        steps = [row["step"] for row in csv.DictReader(file) if row.get("train/bound")]
    assert steps == [str(s) for s in range(1, 20, 2)]
    assert not [w for w in recwarn if "log_every_n_steps" in str(w.message)]
