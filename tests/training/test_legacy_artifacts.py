"""Checkpoints and exports written before the training refactor still load, as the same models.

``tests/fixtures/legacy/<family>/`` holds a tiny run of each family (``config.json``,
``checkpoints/last.ckpt``, ``export/``) written by diffvi at commit f32ee48
(``tests/fixtures/legacy/make_fixtures.py``; never regenerate them). ``expected.json`` holds the
fingerprint of each model as that commit loaded it: sums over the weights and a few forward
quantities on fixed inputs (``tests/fixtures/legacy/fingerprints.py``). Each test loads a
fixture with the current loaders and checks that it rebuilds the same model.

All loading goes through the ``load_*`` helpers below, one per family: when the loaders change
(e.g. to one ``diffvi.load``), change them there and nowhere else.
"""

import importlib.util
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from torch import Tensor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
RTOL = 1e-5
ATOL = 1e-6  # for sums that happen to lie near zero


def _fingerprints_module():
    spec = importlib.util.spec_from_file_location(
        "legacy_fingerprints", FIXTURES / "fingerprints.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fingerprints = _fingerprints_module()


# -- the loaders: the only place that names the loading API -------------------------------------
# Each takes a fixture run folder and ``source`` ("checkpoint": checkpoints/last.ckpt, "export":
# export/) and returns ``(state_dict, *arguments of the family's fingerprint function)``. The
# state dict is that of what the source rebuilds: the whole training module for a checkpoint
# (model, EMA copy, NVIL baselines), the exported model for an export.


def _load(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any]:
    """``(state, family)``: a checkpoint through ``diffvi.training.load_module`` (the state of
    the whole training module; the family whose weights are validated and exported), an export
    through ``diffvi.load`` (the exported state)."""
    from diffvi.training import load, load_module

    if source == "checkpoint":
        module = load_module(run / "checkpoints" / "last.ckpt")
        return module.state_dict(), module.trained
    family = load(run / "export")
    return family.export_state(), family


def load_vae(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, Any]:
    """A VAE or DD-VAE: ``(state, model, posterior)``."""
    state, family = _load(run, source)
    return state, family.model, family.posterior


def load_diffusion(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, list[int]]:
    """An image diffusion model: ``(state, EMA model, event_shape)``."""
    state, family = _load(run, source)
    return state, family.model, family.spec["event_shape"]


def load_cvdm(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, dict[str, Any]]:
    """A CVDM: ``(state, EMA model, model spec)``."""
    state, family = _load(run, source)
    return state, family.model, family.config.model_spec()


def load_sbn(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, Any]:
    """A sigmoid belief net: ``(state, model, posterior)``."""
    state, family = _load(run, source)
    return state, family.model, family.posterior


def load_vaedgp(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, int]:
    """A VAE-DGP: ``(state, model, number of training points)``."""
    state, family = _load(run, source)
    return state, family.model, family.config.num_points


# -- the checks ---------------------------------------------------------------------------------
FAMILIES: dict[str, tuple[Callable[..., tuple], Callable[..., dict[str, float]]]] = {
    "vae": (load_vae, fingerprints.vae),
    "ddvae": (load_vae, fingerprints.ddvae),
    "diffusion": (load_diffusion, fingerprints.diffusion),
    "cvdm": (load_cvdm, fingerprints.cvdm),
    "sbn": (load_sbn, fingerprints.sbn),
    "vaedgp": (load_vaedgp, fingerprints.vaedgp),
}


def test_every_family_has_a_fixture_and_an_expected_fingerprint():
    assert set(EXPECTED["families"]) == set(FAMILIES)
    for family in FAMILIES:
        run = FIXTURES / family
        assert (run / "config.json").is_file()
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "export" / "model.safetensors").is_file()


@pytest.mark.parametrize("source", ["checkpoint", "export"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_legacy_artifact_loads_as_the_model_that_wrote_it(family, source):
    load, fingerprint = FAMILIES[family]
    state, *inputs = load(FIXTURES / family, source)
    got = {**fingerprints.weights(state), **fingerprint(*inputs)}
    expected = EXPECTED["families"][family][source]
    assert set(got) == set(expected)
    assert got["num_values"] == expected["num_values"]
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=RTOL, abs=ATOL), (family, source, name)
