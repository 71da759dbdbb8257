"""Every command documents its options and shows an example; CLI choices match the library."""

import pytest

COMMANDS = {
    ("train", "vae"): [
        "--dataset", "--objective", "--k", "--estimator", "--architecture", "--latent-dim",
        "--likelihood", "--batch-size", "--lr", "--adam", "--schedule", "--max-epochs",
        "--max-steps", "--run-dir", "--resume", "--seed", "--accelerator", "--devices",
        "--num-nodes", "--strategy", "--flush-denormal", "--progress",
    ],
    ("evaluate",): [
        "RUN_OR_CKPT", "--k", "--dataset", "--split", "--limit", "--json", "--device",
        "--seed",
    ],
    ("sample",): ["RUN_OR_CKPT", "--num", "--out", "--seed", "--device"],
    ("demo",): ["--out", "--max-epochs", "--seed", "--quick"],
}  # fmt: skip


def test_top_level_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for name in ("train", "evaluate", "sample", "demo"):
        assert name in result.stdout


def test_no_arguments_shows_the_help_instead_of_failing_silently(cli):
    result = cli()
    assert "Usage" in result.output and "train" in result.output


def test_train_group_lists_the_vae_command(cli):
    result = cli("train", "--help")
    assert result.exit_code == 0
    assert "vae" in result.stdout


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_help_of_each_command_lists_its_options_and_an_example(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    missing = [opt for opt in COMMANDS[command] if opt.lower() not in text.lower()]
    assert not missing, f"--help of {' '.join(command)} does not list {missing}:\n{text}"
    assert "Examples" in text
    # At least one example, each on a line of its own.
    prefix = f"diffvi {' '.join(command)}"
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]
    assert examples, f"no example line starting with {prefix!r}:\n{text}"
    assert all(line.count("diffvi ") == 1 for line in examples), examples


def test_version_option_prints_the_package_version(cli):
    import diffvi

    result = cli("--version")
    assert result.exit_code == 0
    assert diffvi.__version__ in result.stdout
