"""RED-diff's default λ and lr by σ_y and the operator (``red_diff_defaults``): the fitted rule's
values, its classes, explicit values overriding it, and the rule reaching the solver from
``solve``, ``restore``'s settings and ``--help``."""

import pytest
import torch
from gaussian_data import stationary_problem

from diffvi.inverse import Inpainting, build_operator
from diffvi.inverse.registry import OPERATORS
from diffvi.inverse.solvers import REDDiff
from diffvi.inverse.solvers.base import Problem
from diffvi.inverse.solvers.red_diff_defaults import (
    OPERATOR_CLASSES,
    RULES,
    operator_class,
    red_diff_defaults,
)

CLASSES = {
    "inpaint-box": "box-inpainting",
    "inpaint-random": "inpainting",
    "inpaint-half": "box-inpainting",
    "sr4": "super-resolution",
    "sr2": "super-resolution",
    "sr4-bicubic": "super-resolution",
    "deblur-gaussian": "deblurring",
    "deblur-gaussian-dps": "deblurring",
    "deblur-gaussian-reddiff": "deblurring",
    "deblur-uniform": "deblurring",
}


def _operator(task: str, size: int = 64):
    return build_operator(task, (1, size, size), torch.Generator().manual_seed(0))


def test_every_registered_task_takes_the_rule_of_its_class():
    """Masks (one rectangular hole or scattered pixels), down-sampling and blurs have rules of
    their own; the identity, phase retrieval and any other operator take the rule fitted on
    every task (``other``)."""
    for task in OPERATORS:
        assert operator_class(_operator(task)) == CLASSES.get(task, "other"), task
    assert set(RULES) == set(OPERATOR_CLASSES)
    hole = torch.ones(3, 8, 8)
    hole[:, 2:5, 3:7] = 0
    assert operator_class(Inpainting(hole)) == "box-inpainting"
    hole[:, 4, 3] = 1  # one observed pixel inside: no longer one rectangle
    assert operator_class(Inpainting(hole)) == "inpainting"
    one_channel = torch.ones(3, 8, 8)
    one_channel[0, 2:5, 3:7] = 0  # a hole in one channel only: not one in every channel
    assert operator_class(Inpainting(one_channel)) == "inpainting"


def test_explicit_values_override_the_rule_one_by_one():
    operator = _operator("sr4")
    rule = red_diff_defaults(operator, 0.1)
    assert REDDiff().settings(operator, 0.1) == rule
    assert REDDiff(lr=0.3).settings(operator, 0.1) == {"lr": 0.3, "reg_weight": rule["reg_weight"]}
    assert REDDiff(reg_weight=2.0).settings(operator, 0.1) == {"lr": rule["lr"], "reg_weight": 2.0}
    assert REDDiff(lr=0.3, reg_weight=0.0).settings(operator, 0.1) == {"lr": 0.3, "reg_weight": 0.0}


def test_solve_uses_the_rule_at_the_noise_level_of_y_in_its_own_units():
    """An image prior's model space doubles σ_y; the rule is read at σ_y as given ([0, 1]
    images): the defaults give the same restoration as the rule's values passed by hand, and
    another λ gives another."""
    prior, _, operator, y, _ = stationary_problem(1, "sr4-bicubic", 0.1, size=16)
    image_prior = type(prior)(prior.schedule, prior.denoiser, image=True)
    problem = Problem(image_prior, operator, y, 0.1)
    assert problem.given_noise_std == 0.1 and problem.noise_std == pytest.approx(0.2)

    def solve(**options):
        solver = REDDiff(steps=8, **options)
        return solver.solve(y, operator, image_prior, 0.1, torch.Generator().manual_seed(0)).x

    by_hand = red_diff_defaults(operator, 0.1)
    assert torch.equal(solve(), solve(**by_hand))
    assert not torch.equal(solve(), solve(lr=by_hand["lr"], reg_weight=3 * by_hand["reg_weight"]))


def test_restore_records_the_values_it_resolved_and_help_names_the_rule():
    from typer.testing import CliRunner

    from diffvi.cli.main import app
    from diffvi.inverse.prepare import prepare_restoration

    job = prepare_restoration(
        "red-diff", task="deblur-gaussian-dps", dataset="mnist", count=1, noise_std=0.1
    )
    options = job.settings["solver_options"]
    rule = red_diff_defaults(job.operator, 0.1)
    assert (options["lr"], options["reg_weight"]) == (rule["lr"], rule["reg_weight"])
    given = prepare_restoration(
        "red-diff", task="sr4", dataset="mnist", count=1, options={"reg_weight": 0.7}
    )
    assert given.settings["solver_options"]["reg_weight"] == 0.7
    result = CliRunner().invoke(app, ["restore", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert result.stdout.count("by σ_y and operator, see docs/methods.md") == 2


@pytest.mark.parametrize(
    ("task", "noise_std", "lr", "reg_weight"),
    [
        ("inpaint-box", 0.1, 0.0247, 0.0313 + 56.2 * 0.1**2),  # 0.5933
        ("inpaint-random", 0.2, 0.108, 0.01),
        ("sr4", 0.05, 0.164 * 0.60653066, 0.0979 + 56.2 * 0.05**2),  # 0.0995, 0.2384
        ("deblur-gaussian-dps", 0.2, 0.164 * 0.13533528, 0.01 + 5.62 * 0.2**2),  # 0.0222, 0.2348
        ("denoise", 0.0, 0.164, 0.0177),
    ],
)
def test_the_rule_gives_the_fitted_values(task, noise_std, lr, reg_weight):
    rule = red_diff_defaults(_operator(task), noise_std)
    assert rule["lr"] == pytest.approx(lr, rel=1e-6)
    assert rule["reg_weight"] == pytest.approx(reg_weight, rel=1e-6)


def test_reg_weight_grows_and_lr_falls_with_the_noise():
    """λ grows with σ_y for every class but scattered-pixel inpainting, whose best λ stayed at
    the grid's smallest at every σ_y; lr never grows."""
    noises = (0.0, 0.025, 0.05, 0.1, 0.2, 0.4)
    for name, rule in RULES.items():
        lams = [rule.reg_weight(s) for s in noises]
        lrs = [rule.lr(s) for s in noises]
        if name == "inpainting":
            assert len(set(lams)) == 1
        else:
            assert all(a < b for a, b in zip(lams, lams[1:], strict=False)), name
        assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False)), name
    with pytest.raises(ValueError, match="noise_std"):
        red_diff_defaults(_operator("sr4"), -0.1)


@pytest.mark.parametrize(
    ("task", "ratio"),
    [
        ("inpaint-random", 0.95),
        ("inpaint-box", 0.85),
        ("sr4-bicubic", 0.95),
        ("deblur-gaussian-dps", 0.85),
    ],
)
def test_noisy_restorations_with_the_defaults_beat_the_old_fixed_values(task, ratio):
    """σ_y = 0.1, an exact Gaussian prior over 32×32 images: the defaults (λ and lr by σ_y and
    the operator) restore closer to the truth than the σ-blind lr = λ = 0.25 of before. Measured
    RMSE ratios over solver seeds 0–3: 0.76–0.89 (random inpainting), 0.67–0.78 (box),
    0.87–0.89 (SR), 0.70–0.79 (deblurring); seed 0 here."""
    prior, images, operator, y, _ = stationary_problem(1, task, 0.1, size=32)
    truth = images.sample(1, torch.Generator().manual_seed(0))  # the image y was taken of

    def rmse(**options) -> float:
        solver = REDDiff(steps=100, **options)
        x = solver.solve(y, operator, prior, 0.1, torch.Generator().manual_seed(0)).x
        return (x - truth).pow(2).mean().sqrt().item()

    assert rmse() < ratio * rmse(lr=0.25, reg_weight=0.25)
