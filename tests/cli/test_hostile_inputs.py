"""The bad inputs the reliability benchmark found still ending in a traceback, a hang or a
silent no-op: each is now one line naming the file or option, exit 1, before any work."""

import json
import os
import shutil

import pytest
import torch
from PIL import Image

from diffvi.utils.paths import MODEL_SPEC, MODEL_WEIGHTS, find_model


def _one_line(result, *needles) -> str:
    assert result.exit_code == 1, result.output
    error = result.stderr[result.stderr.find("Error: ") :]
    assert error.startswith("Error: ") and error.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert str(needle) in error, error
    return error


def test_a_checkpoint_holding_code_is_refused_in_one_line_on_evaluate_and_resume(
    cli, trained_run, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    evil = run / "checkpoints" / "last.ckpt"
    torch.save({"hyper_parameters": {}, "payload": os.getcwd}, evil)  # a global: code to run
    _one_line(cli("evaluate", evil), evil, "could run code")
    resumed = cli("train", "vae", "--run-dir", run, "--resume", "--max-epochs", "9")
    _one_line(resumed, evil, "could run code")


def test_a_damaged_or_hostile_safetensors_header_is_one_line_naming_the_file(cli, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(find_model("mnist"), folder)
    weights = folder / MODEL_WEIGHTS
    for header in ((2**62).to_bytes(8, "little") + b"{", b"\x05"):  # huge length; cut short
        weights.write_bytes(header)
        _one_line(cli("sample", folder, "--num", "1", "--steps", "2", "-o", tmp_path / "s.png"),
                  weights, "not a readable safetensors file")  # fmt: skip


def test_weights_that_do_not_fit_the_model_json_are_one_line_naming_both(cli, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(find_model("mnist"), folder)
    spec = json.loads((folder / MODEL_SPEC).read_text())
    spec["denoiser"]["base_channels"] *= 2
    (folder / MODEL_SPEC).write_text(json.dumps(spec))
    result = cli("sample", folder, "--num", "1", "--steps", "2", "-o", tmp_path / "s.png")
    _one_line(result, folder / MODEL_WEIGHTS, "does not hold the weights")


def test_a_model_json_of_an_unknown_kind_names_the_file(cli, tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(find_model("mnist"), folder)
    (folder / MODEL_SPEC).write_text(json.dumps({"kind": "decoy"}))
    _one_line(cli("sample", folder, "--num", "1"), folder / MODEL_SPEC, "unknown model kind")


def test_a_decompression_bomb_is_refused_naming_the_file(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 28x28 image counts as a bomb
    Image.new("L", (28, 28)).save(tmp_path / "bomb.png")
    result = cli("restore", "--prior", "mnist", "--steps", "2", "--input", tmp_path / "bomb.png",
                 "--out", tmp_path / "out", "--no-progress")  # fmt: skip
    _one_line(result, tmp_path / "bomb.png", "too large to decode")


def test_a_batch_larger_than_the_data_is_refused_instead_of_training_nothing(cli, tmp_path):
    result = cli("train", "vae", "--dataset", "digits", "--batch-size", "100000",
                 "--max-epochs", "1", "--run-dir", tmp_path / "run", "--no-progress")  # fmt: skip
    _one_line(result, "batch size 100000", "lower --batch-size")


def test_an_option_of_another_objective_is_refused(cli, tmp_path):
    result = cli("train", "vae", "--dataset", "digits", "--objective", "iwae", "--analytic-kl",
                 "--max-steps", "2", "--run-dir", tmp_path / "run", "--no-progress")  # fmt: skip
    _one_line(result, "analytic_kl=True", "options of objective 'elbo'")


def test_several_nodes_without_a_cluster_launcher_is_an_error_not_a_hang(
    cli, tmp_path, monkeypatch
):
    from diffvi.training.trainer import CLUSTER_VARIABLES

    for name in CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    result = cli("train", "vae", "--dataset", "digits", "--num-nodes", "2", "--max-steps", "2",
                 "--run-dir", tmp_path / "run", "--no-progress")  # fmt: skip
    _one_line(result, "num_nodes=2", "--devices")


@pytest.mark.parametrize("text", ["a: [1, 2\nb: 3\n", "{not json"])
def test_an_invalid_config_file_is_one_line(cli, tmp_path, text):
    config = tmp_path / ("c.yaml" if text.startswith("a") else "c.json")
    config.write_text(text)
    result = cli("train", "vae", "--config", config, "--run-dir", tmp_path / "run")
    _one_line(result, config, "not a readable YAML or JSON config")


def test_missing_data_offline_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFVI_DATA", str(tmp_path / "nodata"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DIFFVI_OFFLINE", "1")
    result = cli("train", "vae", "--dataset", "mnist", "--max-steps", "1",
                 "--run-dir", tmp_path / "run", "--no-progress")  # fmt: skip
    _one_line(result, "not found. Searched", "DIFFVI_OFFLINE")
