"""The README's command lines work when copied in order: every ``diffvi train`` line that starts
a run gets its own run folder (a second run into a folder that holds one is refused), and the
lines that read a run (``--resume``, ``evaluate``, ``sample``, ``embed``, ``--model``) name a
folder an earlier line trains. The commands are parsed by the real CLI; training is replaced by
the run-folder resolution that precedes it."""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffvi.cli import options
from diffvi.cli.main import app
from diffvi.training.runs import resolve_run

README = Path(__file__).resolve().parents[1] / "README.md"


def _command_lines() -> list[str]:
    """The ``diffvi …`` commands of the README's bash blocks (a line ending in ``\\`` joined to
    the next), comments removed, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    blocks = [block.replace("\\\n", " ") for block in blocks]
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("diffvi ")]


@pytest.fixture
def run_folders(monkeypatch, tmp_path):
    """``run_folders(line)``: the run folder that README ``line`` (a ``diffvi train`` command)
    would train in, resolved by the command itself, in an empty working directory."""
    monkeypatch.chdir(tmp_path)
    seen: list[Path] = []

    def resolve_only(self, kind, given, defaults=None, run_name=None):
        config, run_dir = resolve_run(
            kind, given, self.run_dir, False, config_file=None, defaults=defaults,
            run_name=run_name,
        )  # fmt: skip
        seen.append(run_dir)

    monkeypatch.setattr(options.RunOptions, "train", resolve_only)

    def folder(line: str) -> Path:
        result = CliRunner().invoke(app, shlex.split(line)[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"
        return seen.pop()

    return folder


def _new_runs(lines: list[str]) -> list[str]:
    """The ``diffvi train`` lines that start a run (not ``--resume``, not a ``...`` sketch)."""
    return [
        line
        for line in lines
        if line.startswith("diffvi train ") and "--resume" not in line and "..." not in line
    ]


def _ddvae_on_registered_data(lines: list[str]) -> list[str]:
    """The ``diffvi train ddvae`` lines on a registered data set (not ``--data`` files)."""
    return [
        line
        for line in lines
        if line.startswith("diffvi train ddvae") and "--data" not in shlex.split(line)
    ]


def test_readme_ddvae_examples_are_three_distinct_runs():
    lines = _ddvae_on_registered_data(_command_lines())
    assert len(lines) == 3
    run_dirs = [shlex.split(line)[shlex.split(line).index("--run-dir") + 1] for line in lines]
    assert len(set(run_dirs)) == 3


def test_readme_training_lines_each_train_in_their_own_folder(run_folders):
    folders = [run_folders(line) for line in _new_runs(_command_lines())]
    assert len(folders) >= 10
    assert len(set(folders)) == len(folders), folders


def test_readme_ddvae_lines_without_run_dir_get_distinct_default_folders(run_folders):
    lines = _ddvae_on_registered_data(_new_runs(_command_lines()))
    stripped = [re.sub(r"\s--run-dir\s+\S+", "", line) for line in lines]
    folders = [run_folders(line) for line in stripped]
    assert folders == [
        Path("runs/mnist-ddvae-pinwheel"),
        Path("runs/mnist-ddvae-pinwheel-labelled1000"),
        Path("runs/mnist-ddvae-pinwheel-official"),
    ]


def test_readme_lines_that_read_a_run_name_one_an_earlier_line_trains(run_folders):
    trained: set[Path] = set()
    checked = 0
    for line in _command_lines():
        if line in _new_runs([line]):
            trained.add(run_folders(line))
            continue
        words = shlex.split(line)
        reads = [w for w in words if w.startswith("runs/") and w != "runs/demo"]
        if "--resume" in words:
            reads.append(words[words.index("--run-dir") + 1])
        for word in reads:
            # A checkpoint or export inside a run names that run.
            assert any(Path(word) == run or run in Path(word).parents for run in trained), line
            checked += 1
    assert checked >= 6


def test_the_demo_duration_is_the_same_in_the_readme_and_the_help():
    """One measured figure (the full demo on 2 CPU cores), not "two" here and "three" there."""
    duration = "about 6 minutes on 2 CPU cores"
    runner = CliRunner()
    texts = {
        "README": README.read_text(),
        "diffvi --help": runner.invoke(app, ["--help"]).stdout,
        "diffvi demo --help": runner.invoke(app, ["demo", "--help"]).stdout,
    }
    for where, text in texts.items():
        words = re.sub(r"[\s│]+", " ", text)
        assert duration in words, where
        assert not re.search(r"(two|three) minutes|~\d+ min", words), where
