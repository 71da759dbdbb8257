"""The options every ``diffvi train`` command shares: ``--config`` (YAML or JSON, overridden by
the command line; a run's own config.json reruns it), the budget and ``--precision``."""

import json

import pytest
from safetensors.torch import load_file

SBN = ["--dataset", "digits", "--layers", "4", "--val-k", "2", "--threads", "1", "--no-progress"]


def _config(run_dir):
    return json.loads((run_dir / "config.json").read_text())


def test_a_runs_own_config_json_reruns_it_to_the_same_weights(cli, tmp_path):
    first = tmp_path / "first"
    result = cli("train", "sbn", *SBN, "--max-steps", "4", "--val-every", "4", "--run-dir", first)
    assert result.exit_code == 0, result.output
    again = tmp_path / "again"
    result = cli("train", "sbn", "--config", first / "config.json", "--run-dir", again,
                 "--threads", "1", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _config(again) == _config(first)
    a, b = (
        load_file(first / "export" / "model.safetensors"),
        load_file(again / "export" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_command_line_options_override_a_yaml_config(cli, tmp_path):
    config = tmp_path / "sbn.yaml"
    config.write_text("dataset: digits\nlayers: [4]\nval_k: 2\nmax_steps: 2\nlr: 0.01\n")
    run = tmp_path / "run"
    result = cli("train", "sbn", "--config", config, "--max-steps", "3", "--val-every", "3",
                 "--run-dir", run, "--threads", "1", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = _config(run)
    assert saved["kind"] == "sbn" and saved["max_steps"] == 3 and saved["lr"] == 0.01
    assert json.loads((run / "export" / "model.json").read_text())["metadata"]["steps"] == 3


def test_max_minutes_and_precision_reach_the_run(cli, tmp_path):
    run = tmp_path / "run"
    result = cli("train", "sbn", *SBN, "--max-steps", "2", "--val-every", "2",
                 "--max-minutes", "5", "--precision", "bf16-mixed", "--run-dir", run)  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = _config(run)
    assert saved["max_minutes"] == 5 and saved["precision"] == "bf16-mixed"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"kind": "cvdm", "task": "phase"}', "config of a 'cvdm' run, not 'sbn'"),
        ('{"layerz": [4]}', "unknown config keys"),
        ("[1, 2]", "must hold a mapping"),
    ],
)
def test_a_bad_config_file_is_a_one_line_error(cli, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = cli("train", "sbn", "--config", path, "--run-dir", tmp_path / "run", "--no-progress")
    assert result.exit_code == 1 and message in result.output


def test_every_train_command_takes_the_shared_options(cli):
    for command in ("vae", "ddvae", "diffusion", "cvdm", "sbn", "vaedgp"):
        result = cli("train", command, "--help")
        for option in ("--config", "--precision", "--max-steps", "--max-epochs",
                       "--max-minutes", "--resume", "--num-nodes", "--strategy"):  # fmt: skip
            assert option in result.output, (command, option)
