"""The ``diffvi train`` options are generated from the config dataclasses: every option field is
an option with the dataclass's default, a renamed flag keeps ``--field-name`` as an alias, the
choices are the registry's, and an option not given stays ``None`` (so ``--config`` and resume
fill it)."""

import dataclasses

import pytest

from diffvi.cli import options
from diffvi.cli.train import DDVAE_FIELDS
from diffvi.training.config import (
    CVDMConfig,
    DiffusionConfig,
    SBNConfig,
    TrainConfig,
    VAEDGPConfig,
)

CONFIGS = {
    "vae": TrainConfig,
    "diffusion": DiffusionConfig,
    "cvdm": CVDMConfig,
    "sbn": SBNConfig,
    "vaedgp": VAEDGPConfig,
}


@pytest.fixture
def given(monkeypatch):
    """Runs ``diffvi train`` without training; returns what the command passed on."""
    seen = {}

    def fake_train(self, kind, given, defaults=None, run_name=None):
        seen.update(given=given, defaults=defaults)

    monkeypatch.setattr(options.RunOptions, "train", fake_train)
    return seen


def _params(command):
    from typer.main import get_command

    from diffvi.cli.main import app

    return {p.name: p for p in get_command(app).commands["train"].commands[command].params}


@pytest.mark.parametrize("command", list(CONFIGS))
def test_every_option_field_is_an_option_with_the_dataclass_default(command):
    params = _params(command)
    for field in dataclasses.fields(CONFIGS[command]):
        meta = options.option_settings(CONFIGS[command], field.name)
        if meta is None or (command == "vae" and field.name in DDVAE_FIELDS):
            continue  # not an option, or a DD-VAE field (`train ddvae`'s)
        param = params[field.name]
        assert f"--{field.name.replace('_', '-')}" in param.opts + param.secondary_opts
        assert param.default is None  # not given: the --config file or the defaults decide
        if isinstance(field.default, int | str) and not isinstance(field.default, bool):
            assert param.show_default == str(field.default), field.name


def test_options_not_given_are_none_and_renamed_flags_keep_the_field_name(cli, given):
    assert cli("train", "sbn").exit_code == 0
    assert set(given["given"]) >= {"layers", "k", "val_every_n_steps", "nvil_baseline"}
    assert all(value is None for value in given["given"].values())
    for flag in ("--val-every", "--val-every-n-steps"):
        assert cli("train", "sbn", flag, "7").exit_code == 0
        assert given["given"]["val_every_n_steps"] == 7


def test_lists_dicts_and_flags_are_parsed_into_config_values(cli, given):
    args = ["--latent-dim", "4", "--latent-dim", "2", "--hidden", "64,64", "--hidden", "32",
            "--objective-option", "alpha=0.5", "--analytic-kl", "-k", "3"]  # fmt: skip
    assert cli("train", "vae", *args).exit_code == 0
    values = given["given"]
    assert values["latent_dims"] == [4, 2] and values["hidden"] == [[64, 64], [32]]
    assert values["objective_options"] == {"alpha": 0.5}
    assert values["analytic_kl"] is True and values["k"] == 3
    assert cli("train", "diffusion", "--attention", "").exit_code == 0
    assert given["given"]["attention_resolutions"] == []


def test_choices_and_shown_defaults_come_from_the_registries_and_dataclasses(cli):
    from diffvi.data.paired import PAIRED_TASKS

    result = cli("train", "cvdm", "--task", "no-such-task")
    assert result.exit_code == 2 and all(task in result.output for task in PAIRED_TASKS)
    params = _params("ddvae")  # the command's own defaults
    assert params["prior"].show_default == "pinwheel" and params["hidden"].show_default == "512,512"
