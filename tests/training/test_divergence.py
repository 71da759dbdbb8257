"""The divergence guard: a training figure that blows up is latched with its step, figures of
healthy runs (fast early falls, negative losses, noisy small losses, a return to the untrained
figure) never are, and weights that overflow or grow ten-thousandfold are named."""

import math

import pytest
import torch

from diffvi.training import SBNConfig, TrainingModule
from diffvi.training.divergence import DivergenceGuard, largest_weight, weight_trouble


def _run(figures, dtype=torch.float32) -> DivergenceGuard:
    guard = DivergenceGuard()
    for step, value in enumerate(figures):
        guard.update(torch.tensor(value, dtype=dtype), step)
    return guard


def test_a_blow_up_is_latched_with_its_step_and_figures():
    # train sbn --lr 1e6: the negative bound goes from 27.6 nats to 2e8 after one step.
    guard = _run([27.6, 27.5, 2e8, 6e7, 3e7, 27.0])
    step, value, best = guard.diverged()
    assert best == pytest.approx(27.59)  # smoothed: 27.6 + 0.1 · (27.5 − 27.6)
    assert step == 2 and value == pytest.approx(best + 0.1 * (2e8 - best))


def test_a_rise_of_a_hundred_times_the_scale_is_divergence_and_less_is_not():
    assert _run([1.0] + [90.0] * 200).diverged() is None  # scale 1: the limit is 1 + 100
    assert _run([1.0] + [120.0] * 200).diverged() is not None
    assert _run([-50.0] + [4900.0] * 200).diverged() is None  # scale 50: the limit is 4950
    assert _run([-50.0] + [5100.0] * 200).diverged() is not None


def _healthy_runs():
    g = torch.Generator().manual_seed(0)
    steps = torch.arange(2000.0)
    noise = torch.randn(2000, generator=g)
    # A VAE on binary images: -ELBO from 550 nats to 90, noisy.
    yield (90 + 460 * torch.exp(-steps / 50) + 3 * noise).tolist()
    # A VAE-DGP: the loss falls from +1e4 to -500 per point (negative losses).
    yield (-500 + 10500 * torch.exp(-steps / 30) + 20 * noise).tolist()
    # A diffusion loss: 1.0 to 0.03 with heavy-tailed batches (a few 10x spikes).
    spikes = torch.where(torch.rand(2000, generator=g) < 0.01, 10.0, 1.0)
    yield ((0.03 + 0.97 * torch.exp(-steps / 100)) * spikes * (1 + 0.3 * noise.abs())).tolist()
    # A loss that crosses zero and settles near it.
    yield (5 * torch.exp(-steps / 100) - 0.2 + 0.05 * noise).tolist()
    # A run that gets all the way back to its untrained figure after a good start.
    yield ([550.0] * 10 + [90.0] * 100 + [550.0] * 100 + [-100.0] * 5 + [550.0] * 100)
    # A single absurd batch among healthy ones (a tenth of it reaches the smoothed figure).
    yield [30.0] * 100 + [2e4] + [30.0] * 100


@pytest.mark.parametrize("figures", list(_healthy_runs()))
def test_healthy_figures_never_count_as_divergence(figures):
    assert _run(figures).diverged() is None


def test_non_finite_figures_are_left_to_the_nan_check_and_huge_float64_ones_diverge():
    assert _run([30.0, float("nan"), float("inf"), 30.0]).diverged() is None
    guard = _run([30.0, 1e300], dtype=torch.float64)
    assert guard.diverged() is not None and math.isfinite(guard.diverged()[1])


def test_weights_that_overflow_or_grow_ten_thousandfold_are_named():
    assert weight_trouble(float("nan"), 3.0) == "a weight became NaN or infinite"
    assert weight_trouble(float("inf"), None) == "a weight became NaN or infinite"
    assert "grew to 4e+04, from 3" in weight_trouble(4e4, 3.0)
    assert weight_trouble(2.9e4, 3.0) is None
    assert weight_trouble(5e3, 0.01) is None  # the limit is at least 1e4
    assert weight_trouble(1e12, None) is None  # no start known: only non-finite weights


def test_the_guard_is_not_saved_in_checkpoints():
    config = SBNConfig(dataset="digits", layers=[4], event_shape=[1, 8, 8])
    module = TrainingModule("sbn", config)
    assert not [k for k in module.state_dict() if "divergence" in k]
    assert largest_weight(module) == max(p.abs().max().item() for p in module.parameters())
