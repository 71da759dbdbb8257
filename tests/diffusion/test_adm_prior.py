"""Tests of guided-diffusion (ADM) checkpoints as priors: guided-diffusion's linear schedule,
the time convention, the learned variance kept, and the ``adm:`` sources."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffvi.diffusion.adm import (
    adm_alphas_cumprod,
    adm_spec,
    is_adm_source,
    load_adm_prior,
    parse_adm_source,
    read_adm_spec,
)
from diffvi.diffusion.model import DiffusionModel
from diffvi.nn.adm import ADM_CONFIGS, ADMUNet

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


@pytest.fixture
def checkpoint(tmp_path) -> tuple[ADMUNet, Path]:
    """A tiny ADM with random weights everywhere, saved as a guided-diffusion state dict."""
    torch.manual_seed(0)
    network = ADMUNet(**TINY).eval()
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5 if p.ndim > 1 else 10))
    path = tmp_path / "adm.pt"
    torch.save(network.state_dict(), path)
    return network, path


def test_schedule_is_guided_diffusions_linear_one():
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)  # get_named_beta_schedule("linear")
    expected = torch.from_numpy(np.cumprod(1 - betas))
    torch.testing.assert_close(adm_alphas_cumprod(), expected, rtol=1e-12, atol=0)
    coarse = np.linspace(1e-4 * 4, 0.02 * 4, 250, dtype=np.float64)  # scaled for N = 250
    torch.testing.assert_close(
        adm_alphas_cumprod(250), torch.from_numpy(np.cumprod(1 - coarse)), rtol=1e-12, atol=0
    )


def test_prior_calls_the_network_at_its_steps_and_keeps_the_variance(checkpoint):
    network, path = checkpoint
    prior = load_adm_prior(path, TINY)
    assert isinstance(prior, DiffusionModel) and not prior.training
    z = torch.randn(2, 3, 32, 32)
    steps = torch.tensor([0, 731])
    t = steps.double() / 999
    out = network(z, steps)
    eps, values = prior.denoiser.predict(z, t.float())
    torch.testing.assert_close(eps, out[:, :3])
    torch.testing.assert_close(values, out[:, 3:])
    torch.testing.assert_close(prior.predict_noise(z, t.float()), out[:, :3])
    alpha, _ = prior.schedule.alpha_sigma(t)
    torch.testing.assert_close(alpha.pow(2), adm_alphas_cumprod()[steps], rtol=1e-9, atol=0)


def test_prior_samples_images_in_the_unit_range(checkpoint):
    _, path = checkpoint
    prior = load_adm_prior(f"adm:{path}", TINY)
    images = prior.sample([1, 3, 32, 32], steps=3, sampler="ddim")
    assert images.shape == (1, 3, 32, 32)
    assert images.min() >= 0 and images.max() <= 1


def test_named_config_in_the_source_is_used(tmp_path):
    with torch.device("meta"):
        state = ADMUNet(**ADM_CONFIGS["ffhq256"]).state_dict()
    torch.save(state, tmp_path / "ffhq_10m.pt")
    for source in (f"adm:ffhq256:{tmp_path / 'ffhq_10m.pt'}", tmp_path / "ffhq_10m.pt"):
        prior = load_adm_prior(source)
        spec = adm_spec(prior, source)
        assert spec["config"] == "ffhq256" and spec["event_shape"] == [3, 256, 256]
        assert spec["variance_type"] == "learned_range" and spec["adm"]["model_channels"] == 128
        assert read_adm_spec(source) == spec  # without loading the weights
    with pytest.raises(ValueError, match="does not fit ADM config 'imagenet256-uncond'"):
        load_adm_prior(f"adm:imagenet256-uncond:{tmp_path / 'ffhq_10m.pt'}")
    with pytest.raises(ValueError, match="two ADM configs given"):
        load_adm_prior(f"adm:ffhq256:{tmp_path / 'ffhq_10m.pt'}", "imagenet256-uncond")


def test_sources_are_parsed_and_bad_ones_named(tmp_path):
    assert parse_adm_source("adm:ffhq256:/m/ffhq_10m.pt") == ("ffhq256", Path("/m/ffhq_10m.pt"))
    assert parse_adm_source("adm:/m/x.pt") == (None, Path("/m/x.pt"))
    assert parse_adm_source("adm:C:/m/x.pt") == (None, Path("C:/m/x.pt"))
    assert parse_adm_source("m/x.pth") == (None, Path("m/x.pth"))
    assert is_adm_source("adm:ffhq256:x") and is_adm_source("x.pt") and is_adm_source("a/b.pth")
    assert not is_adm_source("mnist") and not is_adm_source("run/last.ckpt")
    with pytest.raises(ValueError, match=r"one of \['ffhq256', 'imagenet256-uncond'\], got 'ffhq'"):
        parse_adm_source("adm:ffhq:/m/x.pt")
    with pytest.raises(ValueError, match="'adm:' alone"):
        parse_adm_source("adm:")
    with pytest.raises(FileNotFoundError, match="nowhere.pt does not exist"):
        load_adm_prior(f"adm:ffhq256:{tmp_path / 'nowhere.pt'}")


def test_spec_of_a_file_of_no_published_config_says_how_to_load_it(checkpoint, tmp_path):
    _, path = checkpoint
    with pytest.raises(ValueError, match="matches no published ADM config .*load_adm_checkpoint"):
        read_adm_spec(path)
    with pytest.raises(FileNotFoundError, match="nowhere.pt does not exist"):
        read_adm_spec(f"adm:ffhq256:{tmp_path / 'nowhere.pt'}")


@pytest.fixture
def tiny_config(monkeypatch):
    """TINY registered as a published config named "tiny" (for the adm: sources)."""
    from diffvi.nn import adm

    monkeypatch.setitem(adm.ADM_CONFIGS, "tiny", TINY)
    adm._published_shapes.cache_clear()
    yield "tiny"
    adm._published_shapes.cache_clear()


def test_diffvi_load_and_the_cli_take_adm_sources(checkpoint, tiny_config, tmp_path):
    from typer.testing import CliRunner

    from diffvi.cli.main import app
    from diffvi.training import load, read_spec

    network, path = checkpoint
    for source in (f"adm:tiny:{path}", str(path)):
        family = load(source)
        assert family.kind == "diffusion" and family.config is None
        assert read_spec(source)["event_shape"] == [3, 32, 32]
        z, steps = torch.randn(1, 3, 32, 32), torch.tensor([123])
        torch.testing.assert_close(
            family.model.predict_noise(z, steps / 999), network(z, steps)[:, :3]
        )
    out = tmp_path / "samples.png"
    result = CliRunner().invoke(
        app, ["sample", f"adm:tiny:{path}", "--num", "1", "--steps", "2", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file()
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)).save(image)
    restored = tmp_path / "restored"
    result = CliRunner().invoke(
        app,
        ["restore", "--task", "inpaint-box", "--solver", "red-diff", "--prior",
         f"adm:tiny:{path}", "--input", str(image), "-o", str(restored), "--steps", "2",
         "--no-perceptual", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = json.loads((restored / "metrics.json").read_text())
    assert settings["prior"] == f"adm:tiny:{path}" and settings["prior_folder"] == str(path.parent)
