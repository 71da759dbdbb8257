"""Resume is exact at any step: a run stopped mid-epoch (``max_steps``) and resumed ends with
bit-identical weights (and EMA) to one never stopped, for every family, with validations before
and after the stop; the run keeps one log, whose rows are those of the uninterrupted run."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_configs import tiny_config

from diffvi.data import image_folders
from diffvi.training import fit
from diffvi.training.config import CVDMConfig, DiffusionConfig, SBNConfig, VAEDGPConfig

DIGITS = dict(dataset="digits", batch_size=64, val_size=100, seed=0)
CONFIGS = {
    # IWAE with an EMA of the weights (updated after every optimiser step)
    "vae-iwae-ema": lambda **o: tiny_config(
        dict(architecture="iwae-1", latent_dims=[4], hidden=[[32]], objective="iwae", k=5),
        ema_decay=0.9,
        **o,
    ),
    # manual optimisation, two optimisers per step
    "vae-aae": lambda **o: tiny_config(
        dict(objective="aae", prior="pinwheel", latent_dims=[2], hidden=[[32]], k=1), **o
    ),
    # semi-supervised batches: labelled items appended to every batch (the label-conditioned
    # posterior, the default, and the factorised one)
    "vae-ddvi-semisupervised": lambda **o: tiny_config(
        dict(
            objective="ddvi",
            posterior="diffusion",
            prior="mixture",
            latent_dims=[2],
            hidden=[[32]],
            diffusion_steps=3,
            k=1,
            num_labelled=100,
            labelled_batch=16,
        ),
        **o,
    ),  # fmt: skip
    "vae-ddvi-semisupervised-factorised": lambda **o: tiny_config(
        dict(
            objective="ddvi",
            posterior="diffusion",
            prior="mixture",
            latent_dims=[2],
            hidden=[[32]],
            diffusion_steps=3,
            k=1,
            num_labelled=100,
            labelled_batch=16,
            semi_posterior="factorised",
        ),
        **o,
    ),  # fmt: skip
    "diffusion": lambda **o: DiffusionConfig(
        **DIGITS,
        base_channels=8,
        channel_mults=[1],
        attention_resolutions=[],
        warmup_steps=3,
        **o,
    ),  # fmt: skip
    "cvdm": lambda **o: CVDMConfig(
        task="microscopy-sr",
        task_options={"size": 16},
        train_size=96,
        val_size=8,
        base_channels=8,
        channel_mults=[1],
        batch_size=16,
        timesteps=20,
        sample_steps=2,
        val_sample_size=4,
        schedule="learned",
        seed=0,
        **o,
    ),  # fmt: skip
    "sbn": lambda **o: SBNConfig(
        dataset="digits",
        layers=[8, 4],
        batch_size=32,
        val_size=64,
        val_k=5,
        estimator="vimco",
        k=3,
        **o,
    ),  # fmt: skip
    "vaedgp": lambda **o: VAEDGPConfig(
        dataset="frey-faces",
        latent_dims=[2],
        num_inducing=8,
        recognition_hidden=[16],
        train_size=200,
        batch_size=25,
        val_size=20,
        refine_steps=5,
        **o,
    ),  # fmt: skip
}
STOP, END = 5, 9  # steps; every family's epoch is longer than END steps


def _weights(module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


def _train_rows(run_dir) -> list[dict[str, str]]:
    """The rows of the run's log with training figures: ``{"step", "train/…"}`` each."""
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        rows = [
            {k: v for k, v in row.items() if k == "step" or k.startswith("train/")}
            for row in csv.DictReader(file)
        ]
    return [row for row in rows if any(v for k, v in row.items() if k != "step")]


@pytest.mark.parametrize("family", list(CONFIGS))
def test_a_run_stopped_mid_epoch_and_resumed_is_bit_identical_to_one_never_stopped(
    family, tmp_path
):
    make = CONFIGS[family]
    options = dict(accelerator="cpu", progress_bar=False, log_every_n_steps=1)
    straight = fit(make(max_steps=END, val_every_n_steps=3), tmp_path / "straight", **options)
    fit(make(max_steps=STOP, val_every_n_steps=3), tmp_path / "split", **options)
    resumed = fit(
        make(max_steps=END, val_every_n_steps=3), tmp_path / "split", resume=True, **options
    )
    assert resumed.trainer.current_epoch == straight.trainer.current_epoch
    assert resumed.trainer.global_step == straight.trainer.global_step
    expected, got = _weights(straight), _weights(resumed)
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    logged = _train_rows(tmp_path / "straight")
    assert _train_rows(tmp_path / "split") == logged and len(logged) == END


def test_resume_cuts_a_killed_runs_log_back_to_its_checkpoint(tmp_path):
    """Rows logged after the last checkpoint (a kill before the next one) appear once."""
    make = CONFIGS["vae-iwae-ema"]
    options = dict(accelerator="cpu", progress_bar=False, log_every_n_steps=1)
    fit(make(max_steps=STOP, val_every_n_steps=3), tmp_path / "run", **options)
    log = tmp_path / "run" / "logs" / "metrics.csv"
    lines = log.read_text().splitlines()
    header = lines[0].split(",")
    ghost = dict.fromkeys(header, "")
    ghost.update({"step": "5", "train/bound": "123.0", "epoch": "0"})
    log.write_text("\n".join([*lines, ",".join(ghost[k] for k in header)]) + "\n")
    fit(make(max_steps=END, val_every_n_steps=3), tmp_path / "run", resume=True, **options)
    rows = _train_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [str(s) for s in range(END)]
    assert "123.0" not in {r["train/bound"] for r in rows}
    assert not list((tmp_path / "run" / "logs").glob("version_*"))


def _image_folder(folder) -> str:
    """40 PNGs, grey and colour, 10x12 and 12x10 pixels: random 8x8 windows after scaling."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        shape = (10, 12) if i % 2 else (12, 10)
        pixels = rng.integers(0, 256, (*shape, 3) if i % 3 else shape, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return str(folder)


@pytest.mark.parametrize("read", ["memory", "disk"])
def test_a_run_on_an_image_folder_stopped_and_resumed_is_bit_identical(tmp_path, monkeypatch, read):
    """Random crops, held in memory or read from disk per batch; the stop falls inside the
    second epoch (4 steps each), so the resumed run also crosses an epoch."""
    if read == "disk":
        monkeypatch.setattr(image_folders, "IN_MEMORY_BYTES", 0)
    folder = _image_folder(tmp_path / "images")

    def make(**o):
        return tiny_config(
            dict(architecture="iwae-1", latent_dims=[4], hidden=[[32]], objective="iwae", k=3),
            dataset=None, data=folder, size=[8], crop="random", val_fraction=0.2, batch_size=8,
            **o,
        )  # fmt: skip

    options = dict(accelerator="cpu", progress_bar=False, log_every_n_steps=1)
    straight = fit(make(max_steps=END, val_every_n_steps=3), tmp_path / "straight", **options)
    fit(make(max_steps=STOP, val_every_n_steps=3), tmp_path / "split", **options)
    resumed = fit(
        make(max_steps=END, val_every_n_steps=3), tmp_path / "split", resume=True, **options
    )
    assert resumed.trainer.current_epoch == straight.trainer.current_epoch == 2
    assert straight.family.config.event_shape == [3, 8, 8]
    for name, value in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[name], value, rtol=0, atol=0, msg=name)
    assert _train_rows(tmp_path / "split") == _train_rows(tmp_path / "straight")


def test_an_sbn_on_an_image_folder_stopped_and_resumed_is_bit_identical(tmp_path):
    """Dynamic binarisation of the user's colour images (and random crops): the stop falls inside
    the second epoch, so the resumed run draws the bits of an epoch it did not start."""
    folder = _image_folder(tmp_path / "images")

    def make(**o):
        return SBNConfig(
            dataset=None, data=folder, size=[8], crop="random", val_fraction=0.2, layers=[8, 4],
            batch_size=8, val_size=64, val_k=5, estimator="vimco", k=3, **o,
        )  # fmt: skip

    options = dict(accelerator="cpu", progress_bar=False, log_every_n_steps=1)
    straight = fit(make(max_steps=END, val_every_n_steps=3), tmp_path / "straight", **options)
    fit(make(max_steps=STOP, val_every_n_steps=3), tmp_path / "split", **options)
    resumed = fit(
        make(max_steps=END, val_every_n_steps=3), tmp_path / "split", resume=True, **options
    )
    assert resumed.trainer.current_epoch == straight.trainer.current_epoch
    assert resumed.trainer.global_step == straight.trainer.global_step == END
    assert straight.family.config.event_shape == [3, 8, 8]
    for name, value in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[name], value, rtol=0, atol=0, msg=name)
    logged = _train_rows(tmp_path / "straight")
    assert _train_rows(tmp_path / "split") == logged and len(logged) == END


def test_a_vae_dgp_on_a_table_stopped_and_resumed_is_bit_identical(tmp_path):
    """Standardised rows of a CSV, 6 steps an epoch: the resumed run crosses into the second."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(120, 4))
    table = tmp_path / "table.csv"
    table.write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in rows))

    def make(**o):
        return VAEDGPConfig(
            dataset=None, data=str(table), val_fraction=0.2, latent_dims=[2], num_inducing=8,
            recognition_hidden=[16], batch_size=16, val_size=20, refine_steps=5, **o,
        )  # fmt: skip

    options = dict(accelerator="cpu", progress_bar=False, log_every_n_steps=1)
    straight = fit(make(max_steps=END, val_every_n_steps=3), tmp_path / "straight", **options)
    fit(make(max_steps=STOP, val_every_n_steps=3), tmp_path / "split", **options)
    resumed = fit(
        make(max_steps=END, val_every_n_steps=3), tmp_path / "split", resume=True, **options
    )
    assert resumed.trainer.global_step == straight.trainer.global_step == END
    assert straight.family.config.num_points == 96
    for name, value in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[name], value, rtol=0, atol=0, msg=name)
    logged = _train_rows(tmp_path / "straight")
    assert _train_rows(tmp_path / "split") == logged and len(logged) == END
