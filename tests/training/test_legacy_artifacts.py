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
import torch
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


def _lightning_checkpoint(run: Path) -> dict[str, Any]:
    """The raw checkpoint (weights only), as Lightning's resume reads it."""
    path = run / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)


def load_vae(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, Any]:
    """A VAE or DD-VAE: ``(state, model, posterior)``.

    Checkpoint: ``diffvi.training.load_module``. Export (``model.safetensors`` +
    ``config.json``): no public loader reads it today (``diffvi evaluate`` / ``sample`` load
    VAEs through ``load_module``, which needs a checkpoint or a run folder), so the module is
    rebuilt from the exported config and the weights loaded into it, as ``export_model`` wrote
    them.
    """
    if source == "checkpoint":
        from diffvi.training import load_module

        module = load_module(run / "checkpoints" / "last.ckpt")
    else:
        from safetensors.torch import load_file

        from diffvi.training.module import VAEModule

        module = VAEModule(json.loads((run / "export" / "config.json").read_text()))
        module.load_state_dict(load_file(run / "export" / "model.safetensors"))
        module.eval()
    return module.state_dict(), module.model, module.posterior


def load_diffusion(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, list[int]]:
    """An image diffusion model: ``(state, EMA model, event_shape)``.

    Checkpoint: ``DiffusionModule`` from the saved config, then the state dict (what
    ``fit_diffusion(..., resume=True)`` does). Export: ``diffvi.diffusion.pretrained.
    load_diffusion``."""
    if source == "checkpoint":
        from diffvi.training.diffusion_module import DiffusionModule

        ckpt = _lightning_checkpoint(run)
        module = DiffusionModule(ckpt["hyper_parameters"]["config"])
        module.load_state_dict(ckpt["state_dict"])
        module.eval()
        return module.state_dict(), module.ema.module, module.config.event_shape
    from diffvi.diffusion.pretrained import load_diffusion as load

    model, spec = load(run / "export")
    return model.state_dict(), model, spec["event_shape"]


def load_cvdm(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, dict[str, Any]]:
    """A CVDM: ``(state, EMA model, model spec)``.

    Checkpoint: ``CVDMModule`` from the saved config, then the state dict (what
    ``fit_cvdm(..., resume=True)`` does). Export: ``diffvi.training.load_cvdm``."""
    if source == "checkpoint":
        from diffvi.training.cvdm_module import CVDMModule

        ckpt = _lightning_checkpoint(run)
        module = CVDMModule(ckpt["hyper_parameters"]["config"])
        module.load_state_dict(ckpt["state_dict"])
        module.eval()
        return module.state_dict(), module.ema.module, module.config.model_spec()
    from diffvi.training import load_cvdm as load

    model, spec = load(run / "export")
    return model.state_dict(), model, spec


def load_sbn(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, Any]:
    """A sigmoid belief net: ``(state, model, posterior)``.

    Checkpoint: ``SBNModule`` from the saved config and event shape, then the state dict (what
    ``fit_sbn(..., resume=True)`` does). Export: ``diffvi.training.sbn_module.load_sbn``."""
    if source == "checkpoint":
        from diffvi.training.sbn_module import SBNModule

        ckpt = _lightning_checkpoint(run)
        hp = ckpt["hyper_parameters"]
        module = SBNModule(hp["config"], hp["event_shape"])
        module.load_state_dict(ckpt["state_dict"])
        module.eval()
        return module.state_dict(), module.sbn.model, module.sbn.posterior
    from diffvi.training.sbn_module import load_sbn as load

    sbn, _ = load(run / "export")
    return sbn.state_dict(), sbn.model, sbn.posterior


def load_vaedgp(run: Path, source: str) -> tuple[Mapping[str, Tensor], Any, int]:
    """A VAE-DGP: ``(state, model, number of training points)``.

    Checkpoint: ``VAEDGPModule`` from the saved config, data width and point count, then the
    state dict (what ``fit_vaedgp(..., resume=True)`` does). Export:
    ``diffvi.training.load_vaedgp``."""
    if source == "checkpoint":
        from diffvi.training.dgp_module import VAEDGPModule

        ckpt = _lightning_checkpoint(run)
        hp = ckpt["hyper_parameters"]
        module = VAEDGPModule(hp["config"], hp["data_dim"], hp["num_points"])
        module.load_state_dict(ckpt["state_dict"])
        module.eval()
        return module.state_dict(), module.model, module.num_points
    from diffvi.training import load_vaedgp as load

    model, spec = load(run / "export")
    return model.state_dict(), model, spec["num_points"]


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
