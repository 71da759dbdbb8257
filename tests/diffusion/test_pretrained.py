"""Saved diffusion models: spec + safetensors round trip, lookup by name, clear errors."""

import pytest
import torch

from diffvi.diffusion.pretrained import (
    build_diffusion_model,
    find_diffusion,
    load_diffusion,
    model_search_path,
    save_diffusion,
)

SPEC = {
    "kind": "diffusion",
    "schedule": {"name": "learned", "hidden": 8},
    "denoiser": {"name": "mlp", "dim": 2, "hidden": [16]},
    "loss_type": "vdm",
    "image": False,
    "event_shape": [2],
}


def test_saved_model_loads_with_identical_weights_by_folder_and_by_name(tmp_path, monkeypatch):
    model = build_diffusion_model(SPEC)
    with torch.no_grad():
        model.schedule.gamma_0.fill_(-9.0)
    save_diffusion(model, SPEC, tmp_path / "models" / "toy")
    monkeypatch.setenv("DIFFVI_MODELS", str(tmp_path / "models"))
    for target in (tmp_path / "models" / "toy", "toy"):
        loaded, spec = load_diffusion(target)
        assert spec == SPEC
        assert loaded.schedule.gamma_min == pytest.approx(-9.0)
        for name, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], value)


def test_unknown_model_name_raises_file_not_found_listing_the_search_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFVI_MODELS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        find_diffusion("no-such-model")


def test_a_model_saved_in_the_user_cache_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.delenv("DIFFVI_MODELS", raising=False)
    monkeypatch.delenv("DIFFVI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = tmp_path / "diffvi" / "models"
    assert model_search_path()[-1] == cached
    save_diffusion(build_diffusion_model(SPEC), SPEC, cached / "toy-cached")
    assert find_diffusion("toy-cached") == cached / "toy-cached"


def test_bad_specs_raise_value_error():
    with pytest.raises(ValueError, match="not a diffusion-model spec"):
        build_diffusion_model({**SPEC, "kind": "vae"})
    with pytest.raises(ValueError, match="denoiser must be one of"):
        build_diffusion_model({**SPEC, "denoiser": {"name": "transformer"}})
