"""A diffusers folder on the command line: ``diffvi sample FOLDER`` and ``diffvi restore --prior
FOLDER`` run on a tiny random ``DDPMPipeline`` saved with ``save_pretrained``; ``--clip`` and
``--variance`` override its scheduler's; an ``hf:`` id that cannot be fetched and a damaged
folder are one-line errors; the help lists every form of prior."""

import pytest
import torch
from PIL import Image

from diffvi.utils.io import write_png

FAST = ["--threads", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A DDPMPipeline over 3×16×16 images (random UNet2DModel, DDPMScheduler)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32),
        layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("hub") / "ddpm-tiny"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(folder)
    return folder


def test_sample_and_restore_take_a_diffusers_folder(cli, pipeline, tmp_path):
    result = cli("sample", pipeline, "--steps", "3", "--sampler", "ddim", "--num", "2",
                 "-o", tmp_path / "s/", *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    images = sorted((tmp_path / "s").glob("*.png"))
    assert len(images) == 2 and Image.open(images[0]).size == (16, 16)
    assert Image.open(images[0]).mode == "RGB"
    restore = ["--task", "sr2", "--solver", "red-diff", "--steps", "3", "--input", tmp_path / "s"]
    result = cli("restore", "--prior", pipeline, *restore, "--out", tmp_path / "r", *FAST)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "r" / "restored").glob("*.png"))) == 2


def test_an_unreachable_hub_id_and_a_damaged_folder_are_one_line_errors(
    cli, pipeline, tmp_path, monkeypatch
):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    result = cli("sample", "hf:google/ddpm-cifar10-32", "-o", tmp_path / "x.png", *FAST)
    assert result.exit_code == 1
    assert "Error: could not fetch hf:google/ddpm-cifar10-32" in result.output
    assert "Traceback" not in result.output
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    write_png(damaged / "not-a-model.png", torch.zeros(3, 4, 4))
    (damaged / "model_index.json").write_text('{"unet": ["diffusers", "UNet2DModel"]}')
    result = cli("restore", "--prior", damaged, "--input", tmp_path, "--out", tmp_path / "r",
                 *FAST)  # fmt: skip
    assert result.exit_code == 1
    assert "model_index.json lists no 'scheduler' component" in result.output


def test_sample_takes_the_clip_and_variance_overrides(cli, pipeline, tmp_path):
    base = ["sample", pipeline, "--steps", "3", "--num", "2", *FAST]
    for extra in (["--no-clip"], ["--clip", "--variance", "fixed_large"]):
        result = cli(*base, "-o", tmp_path / "s.png", *extra)
        assert result.exit_code == 0, result.output
    result = cli(*base, "-o", tmp_path / "s.png", "--variance", "learned")
    assert result.exit_code == 1
    assert "variance 'learned' needs a network with a learned variance" in result.output
    result = cli(*base, "-o", tmp_path / "s.png", "--sampler", "ddim", "--variance", "fixed_large")
    assert result.exit_code == 1 and "is the ancestral step's" in result.output


@pytest.mark.parametrize("command", [["sample", "--help"], ["restore", "--help"]])
def test_help_lists_every_form_of_prior(command):
    """Every source ``diffvi.load`` takes (rendered wide: the columns would cut long names)."""
    from typer.testing import CliRunner

    from diffvi.cli.main import app

    result = CliRunner().invoke(app, command, env={"COLUMNS": "400"})
    text = " ".join(result.output.replace("│", " ").split())
    forms = ["mnist, fashion-mnist", "export/", "diffusers folder", "UNet2DModel",
             "hf:ORG/NAME[@REV]", "adm:CONFIG:FILE.pt (CONFIG ffhq256, imagenet256-uncond)",
             "adm:FILE.pt", "FILE.pt/.pth"]  # fmt: skip
    for form in forms:
        assert form in text, form
    if command[0] == "sample":
        assert ".ckpt" in text and "--no-clip" in text and "fixed_small" in text
