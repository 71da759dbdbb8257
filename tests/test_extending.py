"""docs/extending.md runs as written: every Python block in order, in one namespace, and each
part it adds does what the page says (the registries are restored afterwards)."""

import re
from pathlib import Path

import pytest
import torch

from diffvi.inverse import OPERATORS
from diffvi.inverse.solvers import SOLVERS
from diffvi.objectives import IWAE, OBJECTIVES
from diffvi.posteriors import POSTERIORS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    registries = (OBJECTIVES, POSTERIORS, OPERATORS, SOLVERS)
    saved = [dict(r) for r in registries]
    namespace = {"run_root": tmp_path_factory.mktemp("extending")}
    try:
        for block in blocks:
            exec(compile(block, str(PAGE), "exec"), namespace)
        yield namespace
    finally:
        for registry, old in zip(registries, saved, strict=True):
            registry.clear()
            registry.update(old)


def test_the_page_has_an_example_per_kind(page):
    assert {"RenyiBound", "SharedScalePosterior", "HorizontalFlip", "PinvTweedie"} <= set(page)


def test_the_renyi_bound_is_the_iwae_bound_at_alpha_0_and_trains_by_name(page):
    model, posterior, x = page["model"], page["posterior"], page["x"]
    torch.manual_seed(1)
    vr = page["RenyiBound"](k=7, alpha=0.0)(model, posterior, x).bound
    torch.manual_seed(1)
    iwae = IWAE(k=7)(model, posterior, x).bound
    torch.testing.assert_close(vr, iwae)
    run = page["run"]
    assert run.family.objective.alpha == 0.5 and torch.isfinite(page["vr_bound"])
    with pytest.raises(ValueError, match="not options of objective 'vr'"):
        page["TrainConfig"](objective="vr", objective_options={"beta": 1.0})


def test_the_custom_posterior_works_with_every_objective_and_trains_by_name(page):
    elbo, iwae = page["elbo"], page["iwae"]
    assert elbo.shape == iwae.shape == (16,)
    assert bool((iwae >= elbo - 1e-5).all())
    shared = page["shared"]
    assert isinstance(shared.family.posterior, page["SharedScalePosterior"])
    assert torch.isfinite(shared.trainer.callback_metrics["val/bound"])
    with pytest.raises(ValueError, match="not options of posterior 'shared-scale'"):
        page["TrainConfig"](posterior="shared-scale", posterior_options={"width": 3})


def test_the_flip_passes_the_adjointness_test_and_inverts(page):
    a, u = page["A"], page["u"]
    assert abs(float(page["dot_gap"])) < 1e-3
    torch.testing.assert_close(a.pinv(a(u)), u)


def test_the_solver_restores_through_the_shared_workflow(page):
    result = page["result"]
    assert result.restored.shape == (4, 1, 28, 28)
    assert float(result.restored.min()) >= 0 and float(result.restored.max()) <= 1
    assert result.nfe == 1
