"""CVDM on your own pairs: a run on random crops of pair files stopped mid-epoch and resumed is
bit-identical to one never stopped (the crops are a function of seed, epoch and item), and the
scale and channels found in the files reach the exported model."""

import numpy as np
import pytest
import torch

from diffvi.data.microscopy import make_microscopy_dataset
from diffvi.training import fit, read_spec
from diffvi.training.config import CVDMConfig

tifffile = pytest.importorskip("tifffile")

STOP, END = 5, 9  # an epoch is 6 steps: the resumed run crosses into the second


@pytest.fixture(scope="module")
def pair_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    pairs = make_microscopy_dataset(6, "train", size=32).pairs
    for folder, images in (("low", pairs.input), ("high", pairs.target)):
        (root / folder).mkdir()
        for i, image in enumerate(images[:, 0].numpy()):
            tifffile.imwrite(root / folder / f"cell{i}.tif", image.astype(np.float32))
    return str(root / "low"), str(root / "high")


def _config(pair_folders, **overrides) -> CVDMConfig:
    values = dict(
        pairs=list(pair_folders), patch=16, batch_size=4, val_size=4, base_channels=8,
        channel_mults=[1], timesteps=10, sample_steps=2, val_sample_size=2, warmup_steps=2,
        seed=0,
    )  # fmt: skip
    return CVDMConfig(**{**values, **overrides})


def test_pairs_make_the_task_and_a_stopped_and_resumed_run_is_bit_identical(pair_folders, tmp_path):
    options = dict(accelerator="cpu", progress_bar=False, log_every_n_steps=1)
    straight = fit(_config(pair_folders, max_steps=END, val_every_n_steps=3), tmp_path / "a",
                   **options)  # fmt: skip
    fit(_config(pair_folders, max_steps=STOP, val_every_n_steps=3), tmp_path / "b", **options)
    resumed = fit(_config(pair_folders, max_steps=END, val_every_n_steps=3), tmp_path / "b",
                  resume=True, **options)  # fmt: skip
    assert len(straight.trainer.train_dataloader) == 6  # 4 crops of each of 6 pairs, by 4
    assert resumed.trainer.current_epoch == straight.trainer.current_epoch
    expected, got = straight.state_dict(), resumed.state_dict()
    for name, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    spec = read_spec(tmp_path / "a")
    assert spec["task"] == "pairs" and spec["task_options"] == {"factor": 2}
    assert (spec["x_channels"], spec["y_channels"], spec["image_size"]) == (1, 1, 16)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "mnist-sr4"}, "drop --task mnist-sr4"),
        ({"pairs": None, "task": "pairs"}, "give pairs=\\[LOW, HIGH\\]"),
        ({"pairs": None}, "patch \\(--patch\\) applies to your own pairs"),
        ({"train_size": 4}, "train_size .* does not apply to --pairs"),
        ({"task_options": {"size": 8}}, "unknown task_options \\['size'\\] for 'pairs'"),
    ],
)
def test_contradictory_pair_configs_are_errors(pair_folders, overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(pair_folders, max_steps=1, **overrides)
