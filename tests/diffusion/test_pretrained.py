"""Diffusion models from a spec: an export round trip through diffvi.load (by folder and by
name, also for a model that was not trained here), lookup by name, clear errors."""

import pytest
import torch

from diffvi import load
from diffvi.diffusion.pretrained import build_diffusion_model
from diffvi.training.checkpoint import export_model
from diffvi.training.families.diffusion import DiffusionFamily
from diffvi.utils.paths import find_model, model_search_path

SPEC = {
    "kind": "diffusion",
    "schedule": {"name": "learned", "hidden": 8},
    "denoiser": {"name": "mlp", "dim": 2, "hidden": [16]},
    "loss_type": "vdm",
    "image": False,
    "event_shape": [2],
}


def save(spec: dict, folder) -> DiffusionFamily:
    """Export a freshly built model of ``spec`` (no training config) to ``folder``."""
    family = DiffusionFamily(None, spec)
    export_model(family, folder, metadata={})
    return family


def test_saved_model_loads_with_identical_weights_by_folder_and_by_name(tmp_path, monkeypatch):
    family = save(SPEC, tmp_path / "models" / "toy")
    with torch.no_grad():
        family.model.schedule.gamma_0.fill_(-9.0)
    export_model(family, tmp_path / "models" / "toy", metadata={})
    monkeypatch.setenv("DIFFVI_MODELS", str(tmp_path / "models"))
    for target in (tmp_path / "models" / "toy", "toy"):
        loaded = load(target)
        assert loaded.kind == "diffusion" and loaded.config is None and loaded.spec == SPEC
        assert loaded.model.schedule.gamma_min == pytest.approx(-9.0)
        for name, value in family.model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], value)


def test_unknown_model_name_raises_file_not_found_listing_the_search_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFVI_MODELS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        find_model("no-such-model")


def test_a_model_saved_in_the_user_cache_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.delenv("DIFFVI_MODELS", raising=False)
    monkeypatch.delenv("DIFFVI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = tmp_path / "diffvi" / "models"
    assert model_search_path()[-1] == cached
    save(SPEC, cached / "toy-cached")
    assert find_model("toy-cached") == cached / "toy-cached"


def test_bad_specs_raise_value_error():
    with pytest.raises(ValueError, match="not a diffusion-model spec"):
        build_diffusion_model({**SPEC, "kind": "vae"})
    with pytest.raises(ValueError, match="denoiser must be one of"):
        build_diffusion_model({**SPEC, "denoiser": {"name": "transformer"}})
