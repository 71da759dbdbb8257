"""Tests of guided-diffusion (ADM) checkpoints as priors: guided-diffusion's linear schedule,
the time convention, the learned variance kept (Nichol & Dhariwal's eq. 15, and the DDPM
sampler is guided-diffusion's ``p_sample`` loop with it), and the ``adm:`` sources."""

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


def test_reverse_variance_of_hand_made_values_is_nichol_and_dhariwal_eq_15(checkpoint):
    """log Σ = ½(v + 1) log β + ½(1 − v) log β̃ with the step's β and β̃ from guided-diffusion's
    ᾱ table: one training step n → n − 1, and a respaced step 500 → 450 (as its respacing
    recomputes β = 1 − ᾱ_t/ᾱ_s)."""
    _, path = checkpoint
    prior = load_adm_prior(path, TINY)
    assert prior.reverse_variance == "learned" and prior.clip_sample and prior.clip_range == 1
    alpha_bar = adm_alphas_cumprod().numpy()
    v = torch.tensor([-1.0, -0.3, 0.0, 0.55, 1.0], dtype=torch.float64).view(1, 5, 1, 1)
    for n, m in [(1, 0), (731, 730), (500, 450), (999, 899)]:
        beta = 1 - alpha_bar[n] / alpha_bar[m]
        beta_tilde = beta * (1 - alpha_bar[m]) / (1 - alpha_bar[n])
        frac = (v.flatten().numpy() + 1) / 2
        expected = frac * np.log(beta) + (1 - frac) * np.log(beta_tilde)
        t = torch.tensor([n / 999], dtype=torch.float64)
        s = torch.tensor([m / 999], dtype=torch.float64)
        got = prior.denoiser.reverse_log_variance(v, t, s).flatten().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=0, err_msg=f"{n} -> {m}")


def test_ddpm_sampling_is_guided_diffusions_p_sample_loop_with_the_learned_variance(checkpoint):
    """The ancestral sampler on the ADM prior is guided-diffusion's ``p_sample`` on the same
    draws: x̂₀ clamped to [−1, 1], the posterior mean of q(x_s | x_t, x̂₀), and noise of the
    learned variance (written out here from ``p_mean_variance``)."""
    network, path = checkpoint
    prior = load_adm_prior(path, TINY).double()
    prior.from_model_space = lambda x: x  # compare the chain's x̂₀, not the [0, 1] image
    network = network.double()
    steps = [999, 666, 333, 0]
    alpha_bar = adm_alphas_cumprod()
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)).double()
    ours = prior.sample(
        noise.shape, len(steps), "ddpm", noise=noise, generator=torch.Generator().manual_seed(2),
        times=torch.tensor(steps, dtype=torch.float64) / 999,
    )  # fmt: skip
    x, gen = noise.clone(), torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, m in zip(steps, steps[1:] + [None], strict=True):
            out = network(x, torch.full((2,), n))
            eps, v = out[:, :3], out[:, 3:]
            a_t = alpha_bar[n]
            x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
            if m is None:
                x = x0
                break
            a_s = alpha_bar[m]
            beta = 1 - a_t / a_s
            beta_tilde = beta * (1 - a_s) / (1 - a_t)
            mean = (a_s.sqrt() * beta / (1 - a_t)) * x0 + (
                (1 - beta).sqrt() * (1 - a_s) / (1 - a_t)
            ) * x
            frac = (v + 1) / 2
            log_var = frac * beta.log() + (1 - frac) * beta_tilde.log()
            x = mean + (0.5 * log_var).exp() * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    assert ours.abs().max() <= 1
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-10)  # measured 4e-15
    fixed = prior.sample(
        noise.shape, len(steps), "ddpm", noise=noise, generator=torch.Generator().manual_seed(2),
        times=torch.tensor(steps, dtype=torch.float64) / 999, variance="fixed_small",
    )  # fmt: skip
    assert (fixed - x).abs().max() > 1e-2  # β̃ instead: measured 0.51 apart
