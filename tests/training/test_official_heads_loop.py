"""The official clustering model's own loop (``clustering="heads-official"``: objective
``ddvi-heads-official``): a short run lowers the reconstruction error, spreads the heads and
assigns every point; each optimiser takes the official number of steps (a wake step per batch,
e + 1 heads and e + 1 sleep steps after epoch e) with the chain's gradient clipped in the wake
steps; a run stopped mid-epoch and resumed is bit-identical; bad settings are refused."""

import csv

import numpy as np
import pytest
import torch
from tiny_configs import tiny_config

from diffvi.training import TrainConfig, fit
from diffvi.training.embedding import EmbeddingOptions, embed_features


def _blobs(n_per: int = 30) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 10)) * 3
    return centres[np.repeat(np.arange(4), n_per)] + rng.normal(size=(4 * n_per, 10)) * 0.3


def _options(**overrides) -> EmbeddingOptions:
    settings = dict(
        epochs=12, batch_size=32, hidden=32, lr=1e-2, mixture_components=4, diffusion_steps=5,
        warmup_steps=20, likelihood_scale=0.3, progress=False, device="cpu",
        clustering="heads-official",
    )  # fmt: skip
    return EmbeddingOptions(**{**settings, **overrides})


def _logged(run_dir, key: str) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        return [float(row[key]) for row in csv.DictReader(file) if row.get(key)]


def test_a_short_run_fits_spreads_the_heads_and_takes_the_official_steps(tmp_path):
    x = _blobs()  # 120 rows: 3 full batches of 32 per epoch
    embedding = embed_features(x, "ddvae", _options(), tmp_path / "run", components=False)
    config = embedding.details["config"]
    assert config["objective"] == "ddvi-heads-official" and config["conditional"] is False
    rec = _logged(tmp_path / "run", "train/rec")  # −MSE
    assert np.mean(rec[-5:]) > 0.5 * np.mean(rec[:5])  # the error at least halves
    gaps = _logged(tmp_path / "run", "train/head_gap")  # logged after each epoch's head steps
    assert len(gaps) == 12 and gaps[0] < 0.05 < 0.3 < gaps[-1]  # heads start within 0.1
    assert embedding.clusters.shape == (len(x),) and len(np.unique(embedding.clusters)) >= 2
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    wake, heads, sleep = (
        {int(s["step"]) for s in state["state"].values()} for state in saved["optimizer_states"]
    )
    batches = saved["global_step"]
    assert wake == {batches} and batches == 12 * 3
    assert heads == sleep == {sum(e + 1 for e in range(12))}  # 78


HEADS = dict(
    objective="ddvi-heads-official", posterior="diffusion", prior="cluster-heads",
    mixture_components=5, latent_dims=[2], hidden=[[32]], diffusion_steps=3, k=1,
    conditional=False, batch_size=512,
)  # fmt: skip
OPTIONS = dict(accelerator="cpu", progress_bar=False, log_every_n_steps=1)


def test_the_wake_steps_clip_the_chains_gradient_and_nothing_else(tmp_path, monkeypatch):
    clipped = []
    original = torch.nn.utils.clip_grad_norm_

    def recording(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        clipped.append(({id(p) for p in parameters}, max_norm))
        return original(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    module = fit(tiny_config(HEADS, max_steps=2), tmp_path / "a", **OPTIONS)
    posterior = module.family.posterior
    chain = {id(p) for p in posterior.parameters()} - {
        id(p) for p in posterior.encoder.parameters()
    }
    assert chain == {id(p) for p in posterior.denoiser.parameters()}  # unconditional: no context
    assert clipped == [(chain, 0.1), (chain, 0.1)]


def test_a_run_stopped_mid_epoch_and_resumed_is_bit_identical(tmp_path):
    # the digits in batches of 512: epochs of 2 batches, ending at steps 2, 4 and 6
    def config(steps: int) -> TrainConfig:
        return tiny_config(HEADS, max_steps=steps, max_epochs=10)

    straight = fit(config(7), tmp_path / "a", **OPTIONS)
    fit(config(3), tmp_path / "b", **OPTIONS)
    resumed = fit(config(7), tmp_path / "b", resume=True, **OPTIONS)
    expected, got = straight.state_dict(), resumed.state_dict()
    assert any("scaled_heads" in name for name in expected)
    for name, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    states = [
        torch.load(path / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"]
        for path in (tmp_path / "a", tmp_path / "b")
    ]
    assert [int(s["state"][0]["step"]) for s in states[1]] == [7, 6, 6]  # 6 = 1 + 2 + 3
    for a, b in zip(*states, strict=True):
        for key, value in a["state"][0].items():
            torch.testing.assert_close(b["state"][0][key], value, rtol=0, atol=0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"prior": "mixture"}, "objective 'ddvi-heads-official' learns the heads of prior"),
        ({"grad_clip": 1.0}, "its own optimisers and clipping.*got grad_clip=1.0"),
        ({"schedule": "iwae"}, "constant learning rate; got schedule='iwae'"),
    ],
)
def test_settings_the_loop_cannot_honour_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"dataset": "digits", **HEADS, **overrides})


def test_unknown_clustering_names_list_the_official_loop(tmp_path):
    with pytest.raises(ValueError, match=r"\('mixture', 'heads', 'heads-official'\)"):
        embed_features(_blobs(5), "ddvae", _options(clustering="kmeans"), tmp_path / "r")


def test_its_models_embed_by_the_deterministic_ddim_chain_they_trained(tmp_path):
    from diffvi.evaluation.representation import embed_latents

    family = fit(tiny_config(HEADS, max_steps=1), tmp_path / "a", **OPTIONS).family
    x = torch.rand(5, *family.config.event_shape)
    got = family.encode(x, seed=3)
    assert family.posterior.sampler == "ddpm"  # switched back
    family.posterior.sampler = "ddim"
    expected = embed_latents(family.posterior, x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
