"""``restore`` in colour and at other sizes: a tiny random colour prior (a UNet over [3, 32, 32]
written with export_model), colour PNGs of another size brought to the prior's with --resize,
the operator's parameters and σ_y's units from the command line, and one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from diffvi.diffusion.pretrained import build_diffusion_model
from diffvi.training.checkpoint import export_model
from diffvi.training.families.diffusion import DiffusionFamily

FAST = ["--steps", "3", "--threads", "1", "--no-progress", "--device", "cpu"]
SPEC = {
    "kind": "diffusion",
    "schedule": {"name": "cosine"},
    "denoiser": {
        "name": "unet", "in_channels": 3, "base_channels": 8, "channel_mults": [1, 2],
        "num_res_blocks": 1, "attention_resolutions": [], "image_size": 32,
    },
    "loss_type": "simple",
    "image": True,
    "event_shape": [3, 32, 32],
}  # fmt: skip


@pytest.fixture(scope="module")
def rgb_prior(tmp_path_factory):
    """A randomly initialised colour prior over 32×32 images, exported to a folder."""
    folder = tmp_path_factory.mktemp("prior") / "rgb32"
    family = DiffusionFamily(None, SPEC)
    assert build_diffusion_model(SPEC).image
    export_model(family, folder, metadata={"dataset": "none"})
    return folder


def _photo(height: int, width: int) -> np.ndarray:
    """A reddish colour image: R high, G a horizontal ramp, B low (uint8 [H, W, 3])."""
    yy, xx = np.mgrid[:height, :width]
    return np.stack(
        [np.full((height, width), 220), 40 + 160 * xx // width, 30 + 0 * yy], axis=-1
    ).astype(np.uint8)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_photo(48, 40), "RGB").save(folder / "wide.png")
    Image.fromarray(_photo(40, 64), "RGB").save(folder / "tall.png")
    return folder


def _read(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_colour_inputs_of_another_size_are_resized_and_restored_in_colour(
    cli, rgb_prior, photos, tmp_path
):
    out = tmp_path / "out"
    args = ["--prior", rgb_prior, "--input", photos, "--resize", "32", "--solver", "ddrm",
            "--task", "inpaint-box", "--box-size", "8,10", "--box-position", "4,6",
            "--noise-std", "0.04", "--noise-units", "symmetric"]  # fmt: skip
    result = cli("restore", *args, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["image_shape"] == [3, 32, 32]
    assert metrics["noise_std"] == pytest.approx(0.02)  # [0, 1] units: half the symmetric σ_y
    assert metrics["noise_std_symmetric"] == pytest.approx(0.04)
    assert metrics["operator"] == {"box_size": "8,10", "box_position": "4,6"}
    for name in ("tall", "wide"):
        restored = _read(out / "restored" / f"{name}.png")
        measured = _read(out / "measured" / f"{name}.png")
        assert restored.shape == measured.shape == (32, 32, 3)
        hole = np.zeros((32, 32), bool)
        hole[4:12, 6:16] = True
        # y = A x + σ_y n: the hole holds only the noise (σ_y = 0.02 is 5 grey levels).
        assert measured[hole].max() < 40 and measured[~hole].mean() > 80
        # Colour is kept: the observed pixels stay reddish (R well above B).
        seen = restored[~hole].astype(float)
        assert seen[:, 0].mean() > seen[:, 2].mean() + 100


def test_operator_options_from_the_command_line_set_the_operator(cli, rgb_prior, tmp_path):
    Image.fromarray(_photo(32, 32), "RGB").save(tmp_path / "square.png")
    out = tmp_path / "out"
    args = ["--prior", rgb_prior, "--input", tmp_path / "square.png", "--solver", "red-diff",
            "--task", "sr4-bicubic", "--sr-factor", "2", "--boundary", "renormalise"]  # fmt: skip
    result = cli("restore", *args, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["operator"] == {"sr_factor": 2, "boundary": "renormalise"}
    measured = _read(out / "measured" / "square.png").astype(int)  # 16×16 shown at 32×32
    blocks = measured.reshape(16, 2, 16, 2, 3)
    assert measured.shape == (32, 32, 3) and np.all(blocks == blocks[:, :1, :, :1])
    assert _read(out / "restored" / "square.png").shape == (32, 32, 3)


def test_a_grey_input_is_restored_by_a_colour_prior(cli, rgb_prior, tmp_path):
    Image.fromarray(_photo(32, 32)[..., 1], "L").save(tmp_path / "grey.png")
    out = tmp_path / "out"
    args = ["--prior", rgb_prior, "--input", tmp_path / "grey.png", "--task", "inpaint-random",
            "--missing", "0.25", "--solver", "pigdm"]  # fmt: skip
    result = cli("restore", *args, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    measured = _read(out / "measured" / "grey.png")
    assert measured.shape == (32, 32, 3)
    hidden = (measured == 0).all(-1)
    assert hidden.mean() == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--task", "sr4", "--missing", "0.5"],
         "--missing does not apply to --task sr4; its options are --sr-factor"),
        (["--task", "inpaint-box", "--box-size", "40"], "at most 32x32"),
        (["--task", "deblur-gaussian", "--boundary", "renormalise"], "boundary"),
        (["--resize", "64,64"], "takes 32x32 images (HxW), not 64x64"),
        (["--resize", "0"], "expected --resize H,W or S"),
        ([], "let restore do it (--resize 32,32)"),  # the inputs are not 32×32
    ],
)  # fmt: skip
def test_bad_operator_or_size_options_are_one_line_errors(
    cli, rgb_prior, photos, tmp_path, extra, expected
):
    args = ["--prior", rgb_prior, "--input", photos, "--solver", "ddrm"]
    if "--resize" not in extra and extra:
        args += ["--resize", "32"]
    result = cli("restore", *args, *extra, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    assert expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_operator_options_do_not_apply_to_cvdm(cli, tmp_path):
    result = cli("restore", "--solver", "cvdm", "--model", tmp_path, "--missing", "0.3",
                 "--dataset", "mnist-sr4", "--out", tmp_path / "out", *FAST)  # fmt: skip
    assert result.exit_code == 1
    assert "--missing do not apply to --solver cvdm" in result.output
