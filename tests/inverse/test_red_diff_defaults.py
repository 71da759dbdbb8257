"""RED-diff's default λ and lr by σ_y and the operator (``red_diff_defaults``): the fitted rule's
values, its classes, explicit values overriding it, and the rule reaching the solver from
``solve``, ``restore``'s settings and ``--help``."""

import pytest
import torch
from gaussian_data import stationary_problem

from diffvi.inverse import build_operator
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
    "inpaint-box": "inpainting",
    "inpaint-random": "inpainting",
    "inpaint-half": "inpainting",
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
    """Masks, down-sampling and blurs have rules of their own; the identity, phase retrieval and
    any other operator take the rule fitted on every task (``other``)."""
    for task in OPERATORS:
        assert operator_class(_operator(task)) == CLASSES.get(task, "other"), task
    assert set(RULES) == set(OPERATOR_CLASSES)


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
