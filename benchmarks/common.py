"""Helpers shared by the benchmark scripts: machine description, git commit, result files, and
the shard/stage/assemble machinery of the resumable benchmarks.

Every benchmark writes ``benchmarks/results/<name>.json`` (command, commit, date, machine,
seeds, figures) and ``benchmarks/results/<name>.md`` (a markdown table), see DESIGN.md.

A resumable benchmark is a list of jobs, each saved as one JSON file when it finishes:

    parser = argparse.ArgumentParser(description=__doc__)
    add_shard_arguments(parser, stages=("train", "report"))
    args = parse_shard_args(parser, sharded_stages=("train",))
    records = run_shard(jobs, path_of, compute, args)  # None: a shard of several, done
    if records is not None:
        assemble(records)

``--shard i --shards n`` runs jobs i, i + n, … (one process per core); a job whose JSON exists is
loaded, not run again, so an interrupted benchmark resumes; ``--shards 1`` (the default) runs
what is missing and assembles every job's JSON into the tables; ``--assemble-only`` (alias
``--gather-only``) runs nothing and assembles what is there, naming what is missing.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """CPU, cores, torch build and thread count, load average: the context of a timing."""
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "mkl": torch.backends.mkl.is_available(),
        "cuda": torch.cuda.is_available(),
        "loadavg": list(os.getloadavg()),
    }


def git_commit() -> dict:
    """``{"commit": sha or None, "dirty": bool or None}``; ``commit`` is None without commits."""

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "--verify", "--quiet", "HEAD")
    status = run("status", "--porcelain")
    return {"commit": commit or None, "dirty": None if status is None else bool(status)}


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats are printed with 3 significant digits."""

    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return "—" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def command_line() -> str:
    """How this process was started, with the PYTHONPATH it needed."""
    env = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    return env + " ".join([Path(sys.executable).name, *sys.argv])


def write_results(name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` (payload plus command, commit, date) and ``<name>.md``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": command_line(),
        "git": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **payload,
    }
    json_path, md_path = RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


# Keys ``write_results`` adds itself (and ``commit``, older files' name for ``git``); a previous
# result file's own are dropped on reload.
_RECORD_KEYS = ("benchmark", "command", "git", "commit", "date")


def previous_results(name: str) -> dict:
    """The payload of ``results/<name>.json`` if it exists (else ``{}``), without the keys
    :func:`write_results` writes, so the stages not run this time keep their figures."""
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in _RECORD_KEYS}


# ---------------------------------------------------------------------------------------------
# Shards, stages and assembly
# ---------------------------------------------------------------------------------------------

Job = TypeVar("Job")


def _stage_list(valid: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        stages = text.split(",")
        unknown = sorted(set(stages) - set(valid))
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown stages {unknown}; valid: {list(valid)}")
        return stages

    return parse


def add_shard_arguments(
    parser: argparse.ArgumentParser, stages: Sequence[str] = (), *, shards: bool = True
) -> None:
    """Add the options of a resumable benchmark to ``parser``.

    ``--stages a,b`` when ``stages`` names the valid ones (default: all; parsed to a list),
    ``--shard``/``--shards`` when ``shards``, and always ``--assemble-only`` (its alias
    ``--gather-only``). Parse with :func:`parse_shard_args`, which checks them.
    """
    if stages:
        parser.add_argument(
            "--stages", type=_stage_list(stages), default=",".join(stages),
            help=f"comma-separated, of {','.join(stages)} (default: all)",
        )  # fmt: skip
    if shards:
        parser.add_argument("--shard", type=int, default=0, help="run jobs shard, shard+shards, …")
        parser.add_argument("--shards", type=int, default=1, help="processes sharing the jobs")
    parser.add_argument(
        "--assemble-only", "--gather-only", dest="assemble_only", action="store_true",
        help="run nothing: assemble the tables from the runs saved so far",
    )  # fmt: skip


def parse_shard_args(
    parser: argparse.ArgumentParser,
    *,
    sharded_stages: Sequence[str] | None = None,
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """``parser.parse_args(argv)``, then the checks of :func:`add_shard_arguments`' options:
    ``0 <= shard < shards``, and with ``--shards > 1`` only ``sharded_stages`` (when given)."""
    args = parser.parse_args(argv)
    shard, shards = getattr(args, "shard", 0), getattr(args, "shards", 1)
    if not 0 <= shard < shards:
        parser.error(f"--shard must be in [0, --shards), got {shard} of {shards}")
    if shards > 1 and sharded_stages is not None and not set(args.stages) <= set(sharded_stages):
        parser.error(
            f"--shards > 1 runs the {','.join(sharded_stages)} stage only: "
            f"pass --stages {','.join(sharded_stages)}"
        )
    return args


def shard_threads(args: argparse.Namespace, cores: int = 2) -> int:
    """Torch threads for one process: ``--threads`` if the script has it and it is set, else
    the ``cores`` of the benchmark machine shared by ``--shards`` processes."""
    return getattr(args, "threads", None) or max(1, cores // getattr(args, "shards", 1))


def my_share(jobs: Sequence[Job], args: argparse.Namespace) -> list[Job]:
    """This shard's jobs: ``jobs[shard::shards]``."""
    return list(jobs[getattr(args, "shard", 0) :: getattr(args, "shards", 1)])


def write_json(path: Path, record: Any) -> None:
    """Write ``record`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=float) + "\n")
    os.replace(tmp, path)


def run_or_load(path: Path, compute: Callable[[], dict]) -> dict:
    """The record saved at ``path``; else ``compute()``, saved there first."""
    if path.exists():
        return json.loads(path.read_text())
    record = compute()
    write_json(path, record)
    return record


def read_parts(folder: Path, pattern: str = "*.json") -> list[dict]:
    """The per-run records saved in ``folder`` (by file name), for a table of every run there."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob(pattern))]


def _describe(job: Any) -> str:
    return " ".join(map(str, job)) if isinstance(job, tuple) else str(job)


def run_shard(
    jobs: Sequence[Job],
    path_of: Callable[[Job], Path],
    compute: Callable[[Job], dict],
    args: argparse.Namespace,
    describe: Callable[[Job], str] | None = None,
) -> list[dict] | None:
    """Run this shard's jobs that have no saved record (:func:`run_or_load`), then, in the
    process that assembles (``--shards 1`` or ``--assemble-only``), return the saved records of
    all ``jobs`` in their order, naming the missing ones; a shard of several returns None.
    ``describe(job)`` names a job in the progress lines (default: a tuple's items, spaced)."""
    if describe is None:
        describe = _describe
    if not args.assemble_only:
        mine = my_share(jobs, args)
        for k, job in enumerate(mine):
            done = path_of(job).exists()
            print(f"[{k + 1}/{len(mine)}] {describe(job)}{' (saved)' if done else ''}", flush=True)
            run_or_load(path_of(job), lambda job=job: compute(job))
        if getattr(args, "shards", 1) > 1:
            return None
    records = []
    for job in jobs:
        if path_of(job).exists():
            records.append(json.loads(path_of(job).read_text()))
        else:
            print(f"missing (not run): {describe(job)}", flush=True)
    return records
