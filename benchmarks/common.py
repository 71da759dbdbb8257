"""Helpers shared by the benchmark scripts: machine description, git commit, result files.

Every benchmark writes ``benchmarks/results/<name>.json`` (command, commit, date, machine,
seeds, figures) and ``benchmarks/results/<name>.md`` (a markdown table), see DESIGN.md.
"""

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

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
