"""Tests of the ADM UNet (guided-diffusion's network): the published configs have the official
keys and shapes, the forward pass, checkpoint loading and its errors."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from diffvi.nn.adm import (
    ADM_CONFIGS,
    ADMUNet,
    adm_timestep_embedding,
    guess_adm_config,
    load_adm_checkpoint,
    state_shapes,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "adm"

TINY = {
    "image_size": 32,
    "model_channels": 32,
    "num_res_blocks": 1,
    "attention_resolutions": (16,),
    "channel_mult": (1, 2),
    "num_head_channels": 32,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "learn_sigma": True,
}


def _tiny(seed: int = 0, **changes) -> ADMUNet:
    """A tiny ADM with every parameter random (the zero-initialised layers too)."""
    torch.manual_seed(seed)
    model = ADMUNet(**{**TINY, **changes}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5 if p.ndim > 1 else 10))
    return model


@pytest.mark.parametrize("name", sorted(ADM_CONFIGS))
def test_published_config_has_the_official_keys_and_shapes(name):
    # Fixture: the sorted [key, shape] list of guided-diffusion's own network for the published
    # flags (written by benchmarks/verify_adm.py --write-fixtures).
    expected = {
        key: tuple(shape) for key, shape in json.loads((FIXTURES / f"{name}.json").read_text())
    }
    with torch.device("meta"):
        model = ADMUNet(**ADM_CONFIGS[name])
    assert state_shapes(model) == expected
    assert list(state_shapes(model)) == sorted(expected)


def test_published_checkpoints_are_recognised_from_their_keys():
    for name in ADM_CONFIGS:
        with torch.device("meta"):
            state = ADMUNet(**ADM_CONFIGS[name]).state_dict()
        assert guess_adm_config(state) == name
    assert guess_adm_config(_tiny().state_dict()) is None


@pytest.mark.parametrize("learn_sigma, channels", [(True, 6), (False, 3)])
def test_output_has_2c_channels_with_learned_sigma_else_c(learn_sigma, channels):
    model = _tiny(learn_sigma=learn_sigma)
    out = model(torch.randn(2, 3, 32, 32), torch.tensor([0.0, 999.0]))
    assert out.shape == (2, channels, 32, 32)
    assert torch.isfinite(out).all()


def test_a_fresh_network_outputs_zero():
    model = ADMUNet(**TINY)
    assert model(torch.randn(2, 3, 32, 32), torch.tensor([5, 500])).abs().max() == 0


def test_timesteps_may_be_integer_float_or_a_scalar_and_change_the_output():
    model, x = _tiny(), torch.randn(2, 3, 32, 32)
    ints = model(x, torch.tensor([250, 250]))
    torch.testing.assert_close(model(x, torch.tensor([250.0, 250.0])), ints)
    torch.testing.assert_close(model(x, torch.tensor(250)), ints)
    assert not torch.allclose(model(x, torch.tensor([251.5, 250.0]))[0], ints[0])


def test_timestep_embedding_is_cos_then_sin_of_the_raw_step():
    emb = adm_timestep_embedding(torch.tensor([0.0, 3.0], dtype=torch.float64), 8)
    freqs = 10_000.0 ** (-torch.arange(4, dtype=torch.float64) / 4)
    expected = torch.cat([torch.cos(3 * freqs), torch.sin(3 * freqs)])
    torch.testing.assert_close(emb[1], expected)
    torch.testing.assert_close(emb[0], torch.cat([torch.ones(4), torch.zeros(4)]).double())
    assert adm_timestep_embedding(torch.tensor([1.0]), 7).shape == (1, 7)


def test_other_sizes_run_and_wrong_inputs_are_one_line_errors():
    model = _tiny()
    assert model(torch.randn(1, 3, 48, 16), torch.tensor([1])).shape == (1, 6, 48, 16)
    with pytest.raises(ValueError, match=r"x must have shape \[B, 3, H, W\], got \[1, 1, 32, 32\]"):
        model(torch.randn(1, 1, 32, 32), torch.tensor([1]))
    with pytest.raises(ValueError, match="multiples of 2, got \\[33, 32\\]"):
        model(torch.randn(1, 3, 33, 32), torch.tensor([1]))
    with pytest.raises(
        ValueError, match=r"timesteps must have shape \[2\] or be a scalar, got \[3\]"
    ):
        model(torch.randn(2, 3, 32, 32), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="unconditional: y must be None"):
        model(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]), torch.tensor([0, 1]))


def test_class_conditional_model_needs_labels_and_uses_them():
    model = _tiny(num_classes=10, use_new_attention_order=True, resblock_updown=False)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 10])
    with pytest.raises(ValueError, match=r"needs y \[2\], got None"):
        model(x, t)
    a, b = model(x, t, torch.tensor([1, 1])), model(x, t, torch.tensor([1, 2]))
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="multiple of 32"):
        ADMUNet(**{**TINY, "model_channels": 48})
    with pytest.raises(ValueError, match="attention resolutions must divide image_size 32, got 5"):
        ADMUNet(**{**TINY, "attention_resolutions": (5,)})
    with pytest.raises(ValueError, match="channel_mult must be given for image_size 32"):
        ADMUNet(**{**TINY, "channel_mult": None})
    with pytest.raises(ValueError, match="num_head_channels must divide the width 64, got 24"):
        ADMUNet(**{**TINY, "num_head_channels": 24})


def test_gradient_checkpointing_gives_the_same_gradients():
    model, x, t = _tiny(), torch.randn(1, 3, 32, 32), torch.tensor([400])
    grads = []
    for flag in (False, True):
        model.use_checkpoint = flag
        model.zero_grad()
        model(x, t).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_bfloat16_network_keeps_the_input_dtype():
    model = _tiny().to(torch.bfloat16)
    x = torch.randn(1, 3, 32, 32)
    out = model(x, torch.tensor([7]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _tiny()(x, torch.tensor([7])), atol=0.1, rtol=0.1)


def test_saved_state_dict_loads_back_with_the_same_outputs(tmp_path):
    model, path = _tiny(seed=3), tmp_path / "adm.pt"
    torch.save(model.state_dict(), path)
    loaded = load_adm_checkpoint(path, TINY)
    assert not loaded.training
    assert all(isinstance(p, nn.Parameter) and p.device.type == "cpu" for p in loaded.parameters())
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 900])
    torch.testing.assert_close(loaded(x, t), model(x, t), rtol=0, atol=0)
    double = load_adm_checkpoint(str(path), TINY, dtype=torch.float64)
    assert {p.dtype for p in double.parameters()} == {torch.float64}


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt does not exist"):
        load_adm_checkpoint(tmp_path / "nowhere.pt", "ffhq256")


def test_unknown_config_name_lists_the_published_ones(tmp_path):
    path = tmp_path / "adm.pt"
    torch.save(_tiny().state_dict(), path)
    with pytest.raises(ValueError, match=r"one of \['ffhq256', 'imagenet256-uncond'\], got 'ffhq'"):
        load_adm_checkpoint(path, "ffhq")


def test_checkpoint_of_another_config_lists_the_differences(tmp_path):
    path = tmp_path / "adm.pt"
    torch.save(_tiny().state_dict(), path)
    with pytest.raises(
        ValueError,
        match=r"does not fit the given ADM config: 74 missing \(input_blocks\.4\.0\.emb_layers"
        r".*, 18 unexpected \(input_blocks\.3\.0\.skip_connection",
    ):
        load_adm_checkpoint(path, {**TINY, "num_res_blocks": 2})
    with pytest.raises(
        ValueError,
        match=r"shape mismatch \(input_blocks\.0\.0\.bias: expected "
        r"\[64\], got \[32\]",
    ):
        load_adm_checkpoint(path, {**TINY, "model_channels": 64})
    with pytest.raises(ValueError, match="does not fit ADM config 'ffhq256': .*unexpected"):
        load_adm_checkpoint(path, "ffhq256")


def test_checkpoint_of_a_published_config_under_the_wrong_name_says_which_it_is(tmp_path):
    # Meta tensors: the keys and shapes of the 94M-parameter FFHQ network, without its memory.
    with torch.device("meta"):
        state = ADMUNet(**ADM_CONFIGS["ffhq256"]).state_dict()
    path = tmp_path / "ffhq.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="'imagenet256-uncond'.*; it matches config 'ffhq256'"):
        load_adm_checkpoint(path, "imagenet256-uncond")


class _Payload:
    pass


@pytest.mark.parametrize(
    "content, message",
    [
        ({"model": _Payload()}, "not a state dict torch.load\\(weights_only=True\\) can read"),
        ([torch.zeros(1)], "must hold a state dict .* got list"),
        ({"weights": {"a": torch.zeros(1)}}, "must hold a state dict .* got dict with keys"),
        (b"not a checkpoint", "not a state dict torch.load"),
    ],
)
def test_files_that_are_not_state_dicts_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        load_adm_checkpoint(path, TINY)


def test_without_a_config_the_published_one_is_recognised_or_asked_for(tmp_path):
    with torch.device("meta"):
        state = ADMUNet(**ADM_CONFIGS["ffhq256"]).state_dict()
    torch.save(state, tmp_path / "ffhq.pt")
    model = load_adm_checkpoint(tmp_path / "ffhq.pt")
    assert model.config["model_channels"] == 128 and model.learn_sigma
    torch.save(_tiny().state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="matches no published ADM config .*: name its config"):
        load_adm_checkpoint(tmp_path / "tiny.pt")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        load_adm_checkpoint(tmp_path)


def test_config_attribute_rebuilds_the_network():
    model = _tiny()
    assert state_shapes(ADMUNet(**model.config)) == state_shapes(model)
