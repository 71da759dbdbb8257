"""diffusers models as priors: a tiny random ``UNet2DModel`` saved with ``save_pretrained`` (as a
pipeline folder and as a bare network with its scheduler config) loads through ``diffvi.load``;
its noise prediction is ``unet(x, t).sample`` mapped to our time convention; DDIM with our
sampler is diffusers' ``DDIMScheduler`` loop on the same noise, clamping x̂₀ as the config's
``clip_sample``/``clip_sample_range`` say; DDPM is ``DDPMScheduler``'s loop on the same draws,
with its learned-range, fixed-small or fixed-large variance; a solver and the bits/dim
evaluator run on it; missing, corrupt and mismatched files are errors naming them; ``hf:`` ids
download through huggingface_hub, and a missing diffusers asks for the ``hub`` extra."""

import json
import sys
from pathlib import Path

import pytest
import torch

from diffvi import load
from diffvi.diffusion import discrete_times, named_betas
from diffvi.diffusion.hub import (
    HubDownloadError,
    MissingExtraError,
    is_diffusers_source,
    load_diffusers_prior,
    open_diffusers_folder,
)
from diffvi.diffusion.samplers import sample_chain
from diffvi.training import read_spec

SIZE, STEPS = 16, 1000


def tiny_unet(out_channels: int = 3):
    """A random UNet2DModel for 3×16×16 images (180k parameters), its weights shaken so that
    its output depends clearly on x and t."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=SIZE,
        in_channels=3,
        out_channels=out_channels,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet.eval()


def save_bare(folder: Path, prediction: str = "epsilon", clip: bool = False, **scheduler) -> Path:
    """``UNet2DModel.save_pretrained`` with a DDIMScheduler config beside it."""
    diffusers = pytest.importorskip("diffusers")
    tiny_unet().save_pretrained(folder)
    config = {"prediction_type": prediction, "clip_sample": clip, **scheduler}
    diffusers.DDIMScheduler(**config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory) -> Path:
    """A DDPMPipeline folder (model_index.json, unet/, scheduler/) as on the Hub."""
    diffusers = pytest.importorskip("diffusers")
    folder = tmp_path_factory.mktemp("ddpm-pipeline")
    scheduler = diffusers.DDPMScheduler(beta_schedule="linear", variance_type="fixed_small")
    diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(folder)
    return folder


def test_a_pipeline_folder_loads_as_a_diffusion_family_that_samples(pipeline_folder):
    family = load(pipeline_folder)
    assert family.kind == "diffusion" and family.config is None
    assert family.spec["event_shape"] == [3, SIZE, SIZE] and family.spec["format"] == "diffusers"
    assert read_spec(pipeline_folder)["prediction"] == "epsilon"
    images = family.model.sample((2, 3, SIZE, SIZE), steps=3, sampler="ddim")
    assert images.shape == (2, 3, SIZE, SIZE) and images.min() >= 0 and images.max() <= 1
    assert is_diffusers_source(pipeline_folder) and is_diffusers_source(str(pipeline_folder))
    assert not is_diffusers_source("mnist")  # a bare name is a diffvi model name


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_noise_prediction_is_the_unet_output_at_integer_timesteps(tmp_path, prediction):
    folder = save_bare(tmp_path, prediction)
    model = load_diffusers_prior(folder)
    unet = tiny_unet()
    scheduler = open_diffusers_folder(folder)
    alpha_bars = scheduler.alphas_cumprod()
    n = torch.tensor([0, 1, 250, 731, 999])
    x = torch.randn(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.predict_noise(x, (n / (STEPS - 1)).float())
        out = unet(x, n).sample
    alpha = alpha_bars[n].float().sqrt().view(-1, 1, 1, 1)
    sigma = (1 - alpha_bars[n]).float().sqrt().view(-1, 1, 1, 1)
    expected = {
        "epsilon": out,
        "sample": (x - alpha * out) / sigma,  # x = α x₀ + σ ε
        "v_prediction": alpha * out + sigma * x,  # v = α ε − σ x₀
    }[prediction]
    assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-5)


def diffusers_ddim(
    folder: Path,
    noise: torch.Tensor,
    steps: int,
    clipped_eps: bool = False,
    alphas_cumprod: torch.Tensor | None = None,
) -> torch.Tensor:
    """diffusers' DDIM loop (η = 0) from ``noise``, in model space and ``noise``'s dtype
    (``alphas_cumprod`` replaces the scheduler's float32 table)."""
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DModel.from_pretrained(folder).eval().to(noise.dtype)
    scheduler = diffusers.DDIMScheduler.from_pretrained(folder)
    if alphas_cumprod is not None:
        scheduler.alphas_cumprod = alphas_cumprod
    scheduler.set_timesteps(steps)
    x = noise.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(x, t).sample
            x = scheduler.step(out, t, x, eta=0.0, use_clipped_model_output=clipped_eps)
            x = x.prev_sample
    return x


def our_ddim(model, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Our DDIM (η = 0, no clipping) on diffusers' timesteps, in model space."""
    times = discrete_times(steps, STEPS)
    with torch.no_grad():
        return sample_chain(model.schedule, model.predict_noise, noise, steps, 0.0, times=times)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_ddim_matches_diffusers_ddim_scheduler_on_the_same_noise(tmp_path, prediction, schedule):
    folder = save_bare(tmp_path, prediction, beta_schedule=schedule)
    model = load_diffusers_prior(folder)
    noise = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    reference = diffusers_ddim(folder, noise, 10)
    # Unclipped, x̂₀ of an untrained ε-network reaches ±250: compare relative to the scale.
    # Measured (float32): 3-6e-7 (epsilon, v) and 6e-6 to 1.3e-5 (sample, whose ε̂ divides by
    # σ ≈ 0.01 at the last steps) of the scale; float32 rounding, as the float64 test shows.
    scale = reference.abs().max()
    assert (our_ddim(model, noise, 10) - reference).abs().max() <= 5e-5 * scale


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_in_float64_on_the_same_table_ddim_is_diffusers_ddim_to_rounding(tmp_path, prediction):
    folder = save_bare(tmp_path, prediction, beta_schedule="squaredcos_cap_v2")
    model = load_diffusers_prior(folder).double()
    noise = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).double()
    reference = diffusers_ddim(folder, noise, 10, alphas_cumprod=model.schedule.alphas_cumprod)
    scale = reference.abs().max()  # measured: 5e-16 (epsilon) to 4e-14 (sample) of the scale
    assert (our_ddim(model, noise, 10) - reference).abs().max() <= 1e-12 * scale


def model_space(model):
    """``model`` whose ``sample`` returns model space (x̂₀ unscaled and unclamped): the chain's
    output is compared, not the [0, 1] image that hides an unclamped x̂₀ of ±250."""
    model.from_model_space = lambda x: x
    return model


CLIPS = {"no-clip": (False, 1.0), "clip": (True, 1.0), "clip-0.5": (True, 0.5)}


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("clip", list(CLIPS))
def test_sample_clamps_as_the_config_says_and_is_diffusers_ddim(tmp_path, clip, prediction):
    clip_sample, clip_range = CLIPS[clip]
    folder = save_bare(tmp_path, prediction, clip_sample, clip_sample_range=clip_range)
    model = model_space(load_diffusers_prior(folder))
    assert (model.clip_sample, model.clip_range) == (clip_sample, clip_range)
    assert read_spec(folder)["clip_sample"] is clip_sample
    noise = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    # diffusers with the ε̂ recomputed from the clamped x̂₀ (ours, and guided-diffusion's).
    reference = diffusers_ddim(folder, noise, 20, clipped_eps=True)
    ours = model.sample(noise.shape, 20, "ddim", noise=noise, times=discrete_times(20, STEPS))
    scale = reference.abs().max()
    if clip_sample:
        assert scale <= clip_range + 1e-6
    else:
        assert scale > 1.5  # unclamped: an untrained network's x̂₀ leaves [−1, 1]
    # Measured (float32) in units of the scale: unclamped 5e-7 to 7e-7 (epsilon, v) and 1.1e-5
    # (sample, its ε̂ divides by σ ≈ 0.01 at the last steps); clamped (scale = the range)
    # 1e-6 to 4.2e-5.
    assert (ours - reference).abs().max() <= 1e-4 * scale
    # An explicit clip overrides the config.
    flipped = model.sample(noise.shape, 20, "ddim", noise=noise, clip=not clip_sample,
                           times=discrete_times(20, STEPS))  # fmt: skip
    assert (flipped - reference).abs().max() > 1e-2 * scale


def test_a_config_without_clip_sample_takes_its_scheduler_class_default(tmp_path):
    folder = save_bare(tmp_path, "epsilon")
    scheduler = folder / "scheduler_config.json"
    config = json.loads(scheduler.read_text())
    del config["clip_sample"], config["clip_sample_range"]
    for name, expected in [("DDPMScheduler", True), ("DDIMScheduler", True),
                           ("PNDMScheduler", False), ("EulerDiscreteScheduler", False),
                           ("LCMScheduler", False), (None, True)]:  # fmt: skip
        scheduler.write_text(json.dumps({**config, "_class_name": name}))
        spec = open_diffusers_folder(folder).spec()
        assert (spec["clip_sample"], spec["clip_sample_range"]) == (expected, 1.0), name
    scheduler.write_text(json.dumps({**config, "clip_sample_range": 0}))
    with pytest.raises(ValueError, match="has clip_sample_range 0; expected a number > 0"):
        open_diffusers_folder(folder)


def diffusers_ddpm(unet, scheduler, noise, steps, generator, channels=None):
    """diffusers' DDPMScheduler loop from ``noise`` with the variance noise drawn from
    ``generator`` (``channels``: feed only the first C of the network's output)."""
    scheduler.set_timesteps(steps)
    x = noise.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(x, t).sample
            out = out if channels is None else out[:, :channels]
            x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x


DDPM_CASES = {
    "learned_range": ("learned_range", 6, None),
    "fixed_small": ("fixed_small", 3, None),
    "fixed_large": ("fixed_large", 3, None),
    "learned_range-forced-fixed": ("learned_range", 6, "fixed_small"),
}


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("case", list(DDPM_CASES))
def test_ddpm_sampling_is_diffusers_ddpm_scheduler_given_the_same_noise(tmp_path, case, clip):
    """The ancestral sampler draws with the scheduler's variance (a learned one by default,
    Nichol & Dhariwal eq. 15) and clamps as it does; ``variance="fixed_small"`` takes β̃."""
    diffusers = pytest.importorskip("diffusers")
    variance_type, channels, override = DDPM_CASES[case]
    scheduler = diffusers.DDPMScheduler(variance_type=variance_type, clip_sample=clip)
    unet = tiny_unet(out_channels=channels)
    unet.save_pretrained(tmp_path)
    scheduler.save_pretrained(tmp_path)
    model = model_space(load_diffusers_prior(tmp_path))
    expected_default = {"learned_range": "learned", "fixed_large": "fixed_large"}
    assert model.reverse_variance == expected_default.get(variance_type, "fixed_small")
    noise = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    steps = 10
    ours = model.sample(
        noise.shape, steps, "ddpm", noise=noise, generator=torch.Generator().manual_seed(4),
        times=discrete_times(steps, STEPS), variance=override,
    )  # fmt: skip
    if override is not None:  # the fixed β̃ with the first C channels
        scheduler = diffusers.DDPMScheduler(variance_type=override, clip_sample=clip)
    reference = diffusers_ddpm(
        unet, scheduler, noise, steps, torch.Generator().manual_seed(4),
        channels=3 if override is not None else None,
    )  # fmt: skip
    # Measured (float32, diffusers' ᾱ in float32), in units of the scale: unclamped 3e-7 to
    # 6e-7, clamped (scale 1) 5e-6, and 8.7e-5 with the learned variance; float64 below.
    scale = reference.abs().max()
    assert (ours - reference).abs().max() <= 2e-4 * scale
    if variance_type == "learned_range" and override is None:
        # The learned variance matters: β̃ gives another chain on the same draws (measured
        # 0.0086 of the scale unclamped, 2 clamped).
        fixed = model.sample(
            noise.shape, steps, "ddpm", noise=noise, generator=torch.Generator().manual_seed(4),
            times=discrete_times(steps, STEPS), variance="fixed_small",
        )  # fmt: skip
        assert (fixed - reference).abs().max() > 2e-3 * scale


@pytest.mark.parametrize("clip", [True, False])
def test_in_float64_learned_variance_ddpm_is_diffusers_ddpm_to_rounding(tmp_path, clip):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(variance_type="learned_range", clip_sample=clip)
    unet = tiny_unet(out_channels=6)
    unet.save_pretrained(tmp_path)
    scheduler.save_pretrained(tmp_path)
    model = model_space(load_diffusers_prior(tmp_path)).double()
    scheduler.alphas_cumprod = model.schedule.alphas_cumprod  # the same table, in float64
    noise = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)).double()
    ours = model.sample(
        noise.shape, 10, "ddpm", noise=noise, generator=torch.Generator().manual_seed(4),
        times=discrete_times(10, STEPS),
    )  # fmt: skip
    reference = diffusers_ddpm(
        unet.double(), scheduler, noise, 10, torch.Generator().manual_seed(4)
    )
    scale = reference.abs().max()  # measured: 2.5e-15 (unclamped), 3.4e-13 (clamped)
    assert (ours - reference).abs().max() <= 1e-11 * scale


def test_schedules_spacings_and_learned_variance_are_diffusers_own(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    named = [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012),
             ("squaredcos_cap_v2", 1e-4, 0.02), ("sigmoid", 1e-4, 0.02)]  # fmt: skip
    for name, start, end in named:
        theirs = diffusers.DDPMScheduler(beta_schedule=name, beta_start=start, beta_end=end)
        ours = named_betas(name, STEPS, start, end)
        assert torch.allclose(ours.float(), theirs.betas, rtol=1e-5, atol=1e-8), name
    for spacing in ("leading", "trailing", "linspace"):
        for steps in (7, 50, 1000):
            scheduler = diffusers.DDIMScheduler(timestep_spacing=spacing, steps_offset=0)
            scheduler.set_timesteps(steps)
            times = discrete_times(steps, STEPS, spacing)
            assert torch.equal((times * (STEPS - 1)).round().long(), scheduler.timesteps)
    # learned_range: the network's second half interpolates log β and log β̃ as DDPMScheduler.
    folder = tmp_path / "learned"
    tiny_unet(out_channels=6).save_pretrained(folder)
    scheduler = diffusers.DDPMScheduler(variance_type="learned_range")
    scheduler.save_pretrained(folder)
    model = load_diffusers_prior(folder)
    assert model.denoiser.learned_variance
    assert model.predict_noise(torch.zeros(1, 3, SIZE, SIZE), torch.tensor([0.5])).shape[1] == 3
    values = torch.tensor([-0.7, 0.0, 0.9]).view(3, 1, 1, 1)
    n = torch.tensor([1, 500, 999])
    got = model.denoiser.reverse_log_variance(values, n / 999, (n - 1) / 999).flatten()
    expected = torch.stack(
        [
            scheduler._get_variance(int(k), v.view(1))
            for k, v in zip(n, values.flatten(), strict=True)
        ]
    ).flatten()
    assert torch.allclose(got, expected, rtol=1e-4)


def test_a_solver_and_the_bits_per_dim_evaluator_run_on_a_diffusers_prior(pipeline_folder):
    from diffvi.evaluation.likelihood import diffusion_bits_per_dim
    from diffvi.inverse import build_operator
    from diffvi.inverse.solvers import build_solver

    prior = load(pipeline_folder).model
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, SIZE, SIZE, generator=g)
    operator = build_operator("inpaint-box", (3, SIZE, SIZE), g)
    y = operator(x) + 0.05 * torch.randn(operator(x).shape, generator=g)
    for name in ("red-diff", "dps"):
        result = build_solver(name, steps=5).solve(y, operator, prior, 0.05, generator=g)
        assert result.x.shape == (2, 3, SIZE, SIZE) and torch.isfinite(result.x).all(), name
        assert result.x.min() >= 0 and result.x.max() <= 1
    bpd, _ = diffusion_bits_per_dim(prior, x)
    assert bpd > 0 and bpd == bpd  # finite


def test_the_restore_workflow_takes_a_diffusers_folder_as_its_prior(pipeline_folder, tmp_path):
    from diffvi.inverse.prepare import prepare_restoration
    from diffvi.utils.io import write_png

    for i in range(2):
        write_png(tmp_path / f"{i}.png", torch.rand(3, SIZE, SIZE, generator=torch.Generator()))
    job = prepare_restoration(
        "red-diff", task="sr2", prior=str(pipeline_folder), input_path=tmp_path, steps=3
    )
    assert job.settings["prior_folder"] == str(pipeline_folder)
    result = job.run()
    assert result.restored.shape == (2, 3, SIZE, SIZE)


def test_missing_corrupt_and_mismatched_files_raise_errors_naming_them(tmp_path):
    folder = save_bare(tmp_path / "m")
    (folder / "scheduler_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="scheduler_config.json is missing"):
        load(folder)

    folder = save_bare(tmp_path / "c")
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model\.safetensors could not be"):
        load(folder)

    folder = save_bare(tmp_path / "p", "score")
    with pytest.raises(ValueError, match=r"scheduler_config\.json has prediction_type 'score'"):
        load(folder)

    folder = save_bare(tmp_path / "s")
    config = folder / "config.json"
    text = config.read_text().replace(
        '"block_out_channels": [\n    16,', '"block_out_channels": [\n    8,'
    )
    assert '"block_out_channels": [\n    8,' in text
    config.write_text(text)
    with pytest.raises(ValueError, match=r"safetensors could not be .* size mismatch"):
        load(folder)  # weights of another shape than the config says

    folder = save_bare(tmp_path / "j")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        load(folder)

    folder = save_bare(tmp_path / "v")
    scheduler = folder / "scheduler_config.json"
    scheduler.write_text(scheduler.read_text().replace("}", ', "variance_type": "learned_range"}'))
    with pytest.raises(ValueError, match=r"config\.json has out_channels 3, but 3 input channels"):
        load(folder)

    folder = save_bare(tmp_path / "w")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="holds no network weights"):
        load(folder)


def test_hf_ids_download_a_snapshot_and_fail_clearly_offline(pipeline_folder, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, allow_patterns))
        return str(pipeline_folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    family = load("hf:google/ddpm-tiny@main")
    assert family.spec["source"] == "hf:google/ddpm-tiny@main"
    assert calls[0][:2] == ("google/ddpm-tiny", "main") and "*.json" in calls[0][2]

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(HubDownloadError, match="could not fetch hf:google/ddpm-cifar10-32"):
        load("hf:google/ddpm-cifar10-32")
    with pytest.raises(ValueError, match=r"expected hf:ORG/NAME\[@REVISION\], got hf:cifar"):
        load("hf:cifar")


def test_a_hub_repository_with_pytorch_pickles_only_gets_those(tmp_path, monkeypatch):
    import fnmatch
    import shutil

    diffusers = pytest.importorskip("diffusers")
    huggingface_hub = pytest.importorskip("huggingface_hub")
    repo = tmp_path / "repo"
    pipeline = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.DDPMScheduler())
    pipeline.save_pretrained(repo, safe_serialization=False)  # unet/diffusion_pytorch_model.bin
    patterns_asked = []

    def fake_download(repo_id, revision=None, allow_patterns=None):
        """Copy the files of ``repo`` that match the patterns, as snapshot_download would."""
        patterns_asked.append(allow_patterns)
        snapshot = tmp_path / f"snapshot{len(patterns_asked)}"
        for file in repo.rglob("*"):
            name = file.relative_to(repo).as_posix()
            if file.is_file() and any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(file, snapshot / name)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    model = load("hf:org/pickled").model
    assert [p[1] for p in patterns_asked] == [
        "*diffusion_pytorch_model.safetensors",
        "*diffusion_pytorch_model.bin",
    ]
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(model.predict_noise(x, torch.ones(1)), tiny_unet()(x, 999).sample)


def test_without_diffusers_loading_asks_for_the_hub_extra(tmp_path, monkeypatch):
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "config.json").write_text('{"_class_name": "UNet2DModel", "sample_size": 8}')
    (folder / "scheduler_config.json").write_text('{"beta_schedule": "linear"}')
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now fails
    with pytest.raises(MissingExtraError, match=r"pip install 'diffvi\[hub\]'"):
        load(folder)
