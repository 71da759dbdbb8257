"""The official DDVI recipe in one run (``TrainConfig.stage2``, ``train ddvae --recipe
official``): stage 1 until the start step, then stage 2 with the decoder frozen until the
decoder-free step; one wrapped optimiser step per batch plus the sleep steps; boundaries from
the budget, kept on resume; bit-identical resume across the switch."""

import csv

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from tiny_configs import tiny_config

from diffvi.training import TrainConfig, fit
from diffvi.training.families.vae import VAEFamily

RECIPE = dict(
    objective="ddvi-official", posterior="diffusion", prior="pinwheel", latent_dims=[2],
    hidden=[[32]], diffusion_steps=3, conditional=False, k=1, beta_reg=7.84, beta_sleep=784,
)  # fmt: skip
OPTIONS = dict(accelerator="cpu", progress_bar=False, log_every_n_steps=1)


def recipe(stage2: dict | None = None, **overrides) -> TrainConfig:
    """The official recipe on digits: a T = 3 first chain, a T = 4 second one, a small KDE."""
    settings = {"diffusion_steps": 4, "kde_samples": 500, **(stage2 or {})}
    return tiny_config(RECIPE, stage2=settings, **overrides)


class Snapshots(Callback):
    """After every training step: (step, the posterior's stage, the decoder's weights)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, list[torch.Tensor]]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        family = pl_module.family
        weights = [p.detach().clone() for p in family.model.decoder.parameters()]
        self.rows.append((trainer.global_step - 1, int(family.posterior.stage), weights))


def _logged(run_dir, name: str) -> dict[int, float]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return {int(r["step"]): float(r[name]) for r in rows if r.get(name)}


def test_stages_switch_at_the_start_step_and_the_decoder_is_frozen_until_the_free_step(tmp_path):
    snapshots = Snapshots()
    config = recipe({"start_step": 4, "decoder_free_step": 7}, max_steps=9)
    module = fit(config, tmp_path / "run", callbacks=[snapshots], **OPTIONS)
    assert module.trainer.global_step == 9  # one step per batch, sleep steps not counted
    steps = [row[0] for row in snapshots.rows]
    assert steps == list(range(9))
    assert [row[1] for row in snapshots.rows] == [1] * 4 + [2] * 5
    moved = [
        any(not torch.equal(a, b) for a, b in zip(before[2], after[2], strict=True))
        for before, after in zip(snapshots.rows, snapshots.rows[1:], strict=False)
    ]  # moved[i]: the decoder changed in step i + 1
    assert moved == [True, True, True, False, False, False, True, True]
    assert _logged(tmp_path / "run", "train/stage") == {i: 1.0 if i < 4 else 2.0 for i in range(9)}
    assert _logged(tmp_path / "run", "train/decoder_frozen") == {
        i: float(i < 7) for i in range(4, 9)
    }
    # Adam steps per parameter: stage 1's optimiser 4 (steps 0-3); the frozen-decoder one the
    # wake steps 4-6; the full one the wake steps 7-8 and 3 sleep steps in each of steps 4-8,
    # which reach the chain (denoiser, context) but not the encoder or the decoder.
    family = module.family

    def adam_steps(optimizer, parameter) -> int:
        state = optimizer.state.get(parameter, {})
        return int(state["step"]) if "step" in state else 0

    first_opt, frozen_opt, full_opt = module.trainer.optimizers
    decoder = next(family.model.decoder.parameters())
    second = family.posterior.second
    encoder, denoiser = next(second.encoder.parameters()), next(second.denoiser.parameters())
    context = next(second.context.parameters())
    assert adam_steps(first_opt, decoder) == 4
    assert adam_steps(first_opt, next(family.posterior.first.encoder.parameters())) == 4
    assert [adam_steps(frozen_opt, p) for p in (encoder, denoiser, context)] == [3, 3, 3]
    assert [adam_steps(full_opt, p) for p in (decoder, encoder)] == [2, 2]
    assert [adam_steps(full_opt, p) for p in (denoiser, context)] == [2 + 15, 2 + 15]
    assert family.stage_boundaries.tolist() == [4, 7]


def test_boundaries_are_shares_of_the_budget_fixed_once():
    family = VAEFamily(recipe(event_shape=[1, 8, 8], max_epochs=3))
    assert family.fix_stage_boundaries(100) == (50, 50 + 15)  # half; 30% of stage 2 frozen
    assert family.fix_stage_boundaries(10) == (50, 65)  # fixed: a resume keeps them
    explicit = VAEFamily(recipe({"start_step": 3}, event_shape=[1, 8, 8], max_epochs=3))
    assert explicit.fix_stage_boundaries(10) == (3, 3 + 2)  # round(0.3 · 7)
    unset = VAEFamily(recipe(event_shape=[1, 8, 8], max_epochs=3))
    with pytest.raises(ValueError, match="budget of epochs or steps"):
        unset.fix_stage_boundaries(None)


def test_a_run_of_epochs_switches_halfway_through_its_budget(tmp_path):
    module = fit(recipe({"sleep_steps": 1}, max_epochs=1), tmp_path / "run", **OPTIONS)
    per_epoch = module.trainer.num_training_batches
    start = int(per_epoch / 2 + 0.5)
    assert module.family.stage_boundaries.tolist() == [
        start,
        start + int(0.3 * (per_epoch - start) + 0.5),
    ]
    stages = _logged(tmp_path / "run", "train/stage")
    assert {s for s, v in stages.items() if v == 2.0} == set(range(start, per_epoch))


@pytest.mark.parametrize("stop", [3, 5])
def test_a_run_stopped_before_or_after_the_switch_resumes_bit_identically(tmp_path, stop):
    """Stopped in stage 1 (the resumed run crosses the switch and the decoder-free step) or in
    stage 2 with the decoder frozen (resumed with its three optimisers and the stage)."""
    stage2 = {"start_step": 4, "decoder_free_step": 7}
    straight = fit(
        recipe(stage2, max_steps=9, val_every_n_steps=3), tmp_path / "straight", **OPTIONS
    )
    fit(recipe(stage2, max_steps=stop, val_every_n_steps=3), tmp_path / "split", **OPTIONS)
    resumed = fit(
        recipe(stage2, max_steps=9, val_every_n_steps=3), tmp_path / "split", resume=True,
        **OPTIONS,
    )  # fmt: skip
    assert resumed.trainer.global_step == straight.trainer.global_step == 9
    expected = {k: v for k, v in straight.state_dict().items() if v.is_floating_point()}
    got = {k: v for k, v in resumed.state_dict().items() if v.is_floating_point()}
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    assert int(resumed.family.posterior.stage) == 2
    compared = 0
    for a, b in zip(straight.trainer.optimizers, resumed.trainer.optimizers, strict=True):
        for p, q in zip(a.param_groups[0]["params"], b.param_groups[0]["params"], strict=True):
            for key in ("exp_avg", "exp_avg_sq"):
                if p in a.state:
                    compared += 1
                    torch.testing.assert_close(b.state[q][key], a.state[p][key], rtol=0, atol=0)
    assert compared > 10
    for name in ("train/bound", "train/stage", "train/sleep"):
        assert _logged(tmp_path / "split", name) == _logged(tmp_path / "straight", name)


def test_a_resumed_run_keeps_the_boundaries_of_its_first_budget(tmp_path):
    first = fit(recipe({"sleep_steps": 1}, max_steps=6), tmp_path / "run", **OPTIONS)
    assert first.family.stage_boundaries.tolist() == [3, 4]  # 6 steps: 3 + round(0.3 · 3)
    longer = fit(recipe({"sleep_steps": 1}, max_steps=10), tmp_path / "run", resume=True, **OPTIONS)
    assert longer.family.stage_boundaries.tolist() == [3, 4]  # not [5, 7]: stage 2 grows
    assert _logged(tmp_path / "run", "train/stage") == {i: 1.0 if i < 3 else 2.0 for i in range(10)}


def test_stage2_refuses_what_it_cannot_train():
    with pytest.raises(ValueError, match="objective 'ddvi-official'"):
        tiny_config({**RECIPE, "objective": "ddvi"}, stage2={})
    with pytest.raises(ValueError, match="ema_decay"):
        recipe(ema_decay=0.9)
    with pytest.raises(ValueError, match="unknown"):
        recipe({"context_size": 2})
    with pytest.raises(ValueError, match="decoder_free_step must be >= start_step"):
        recipe({"start_step": 5, "decoder_free_step": 4})
    with pytest.raises(ValueError, match="budget of epochs or steps"):
        recipe(max_epochs=-1, max_minutes=1.0)
