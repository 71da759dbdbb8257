"""Reliability (issue 21): bad inputs and injected faults against the CLI and the API.

Usage (from the repository root; ``DIFFVI_DATA`` should name the shared data folder)::

    python benchmarks/reliability.py --at HEAD          # full: all 97 cases
    python benchmarks/reliability.py --at HEAD --quick  # 20 cases of every kind
    python benchmarks/reliability.py --only resume      # the cases whose id contains "resume"
    python benchmarks/reliability.py --list             # the catalogue, nothing run

``--at REV`` tests the code of a git revision, archived into the workspace, so that other work
in the checkout cannot change the results; without it the installed diffvi runs (the working
tree of an editable install). Cost: about 160 CPU-seconds quick and 900 full, one process at a
time (2.5 and 15 minutes on an idle 2-core machine; 6.5 and about 40 minutes at load 10).

Writes ``benchmarks/results/reliability.{json,md}`` (``reliability-quick.*`` with ``--quick``;
``--only`` writes ``reliability-only.*``, so a partial run never replaces the full table). The
JSON holds every case's command, kind, expected and actual outcome, exit code, seconds, peak
RSS, the first line of stderr and, for failing cases, the end of the output.

Every case runs in a fresh folder under a temporary workspace as a subprocess, the way a user
runs it: a ``diffvi`` command, a short Python snippet calling the API, or a fault-injection
script (several commands, signals, files cut short). Each states the outcome it expects; the
harness classifies what happened and reports pass/fail against it.

Outcome classes:

- ``clear error``: exit 1, and stderr from the first ``Error: `` to the end is that one line
  (no traceback). An API snippet's exception raised by diffvi's own code (``ValueError``,
  ``TypeError``, ``OSError``) is printed as that line; one raised inside torch or another
  library is left as a traceback.
- ``usage error``: exit 2 with click's usage message naming the option (bad option syntax or
  range, caught before any work).
- ``accepted``: exit 0 and the case's checks hold (the input should be accepted, or the command
  did the right thing with it).
- ``silently wrong``: exit 0 although the input should have been refused, or a check of the
  result failed (the run "worked" and the answer is wrong).
- ``recovered``: a fault injection left the run in a correct state (exact resume, no
  leftovers, a loadable checkpoint).
- ``refused safely``: a security case refused with a clear error and its side-effect check
  held (no code ran, no tampered file used).
- ``traceback``: exit != 0 with a Python traceback.
- ``hang``: no exit within the case's timeout (the process group is killed).
- ``multi-line error`` / ``unclear error``: exit != 0 without a traceback, but the message is
  several lines, or has no ``Error: `` line.
- ``killed``: ended by a signal (e.g. the memory guard).
- ``skipped``: the machine cannot simulate it (named in the note).

Fault injections that need a file system the harness cannot otherwise make (root ignores
``chmod``): a full disk is a 128 KiB tmpfs filled up, a read-only file system a tmpfs mounted
``ro``, both inside a private mount namespace (``unshare -m``, which needs root or user
namespaces); a folder without write permission is ``chmod 555`` with the command run as
``nobody`` (``setpriv``) when the harness runs as root. Cases that ask for huge models run under
an address-space limit (``RLIMIT_AS`` = 12 GiB) so that a missing check cannot exhaust the
shared machine; every case records its peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import string
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import REPO_ROOT, command_line, git_commit, machine_info, markdown_table, write_results

BIN = Path(sys.executable).parent
DIFFVI = str(BIN / "diffvi")
PYTHON = sys.executable


SOURCE_ROOT = REPO_ROOT  # the source tree under test (--src)


def shipped_models() -> Path:
    """The folder of the shipped priors (mnist, fashion-mnist): package data of diffvi, or the
    checkout's models/ before it moved there."""
    for folder in (SOURCE_ROOT / "src" / "diffvi" / "shipped_models", SOURCE_ROOT / "models"):
        if (folder / "mnist" / "model.json").is_file():
            return folder
    raise FileNotFoundError("no shipped mnist prior in src/diffvi/shipped_models or models/")


KINDS = (
    "resume",
    "silent wrong result",
    "bad file or data",
    "bad option",
    "output not writable",
    "security",
    "model spec",
)

ERRORS = ("clear error", "usage error")
GOOD = ("clear error", "usage error", "accepted", "recovered", "refused safely")
MEMORY_GUARD = 12 * 2**30  # RLIMIT_AS of the cases that ask for huge models

# Flags of a tiny, quick training run on 8x8 digits.
VAE = ["--dataset", "digits", "--objective", "iwae", "--k", "5", "--threads", "1", "--no-progress"]
SBN = ["--dataset", "digits", "--layers", "4", "--val-k", "2", "--threads", "1", "--no-progress"]
RESTORE = ["restore", "--prior", "mnist", "--steps", "2", "--device", "cpu", "--threads", "1",
           "--no-progress"]  # fmt: skip
TINY_UNET = ["--base-channels", "8", "--channel-mults", "1", "--attention", "", "--res-blocks",
             "1", "--batch-size", "8"]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Running a process
# ---------------------------------------------------------------------------------------------


@dataclass
class Proc:
    """What one subprocess did."""

    argv: list[str]
    rc: int | None  # None: timed out (killed by the harness)
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None


def run_proc(
    argv: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    memory_limit: int | None = None,
) -> Proc:
    """Run ``argv`` in its own process group, with stdout/stderr to files; kill the group at
    ``timeout``. The peak RSS comes from ``wait4`` (the child and its waited-for children)."""
    out_path, err_path = cwd / ".stdout", cwd / ".stderr"

    def limits() -> None:
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        p = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=limits if memory_limit else None,
        )
        rc, usage = _wait(p, timeout)
        seconds = time.perf_counter() - started
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    out_path.unlink()
    err_path.unlink()
    return Proc(list(argv), rc, stdout, stderr, seconds, usage.ru_maxrss / 1024 if usage else 0.0)


def _wait(p: subprocess.Popen, timeout: float | None) -> tuple[int | None, Any]:
    """Wait for ``p`` (reaping it with ``wait4`` for its resource use); on ``timeout`` kill its
    process group and return rc None."""
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.monotonic() > deadline and not timed_out:
            timed_out = True
            _kill_group(p.pid, signal.SIGKILL)
            deadline = None
        time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)
    _kill_group(p.pid, signal.SIGKILL)  # children it left behind (DDP workers)
    return (None if timed_out else p.returncode), usage


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# ---------------------------------------------------------------------------------------------
# Classifying what happened
# ---------------------------------------------------------------------------------------------

TRACEBACK = "Traceback (most recent call last)"


def usage_message(stderr: str) -> str:
    """The text inside click/rich's ``Error`` box (or after ``Error:``)."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if "Error" in line and ("─" in line or line.startswith("Error")):
            if line.startswith("Error"):
                return line.strip()
            body = []
            for text in lines[i + 1 :]:
                if text.startswith("╰"):
                    break
                body.append(text.strip("│ ").strip())
            return "usage: " + " ".join(b for b in body if b)
    return first_line(stderr)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit))(: |$)")


def exception_line(text: str) -> str:
    """The line naming the exception of a (plain or rich) traceback: the last line that starts
    with ``SomethingError:``, else the last unindented line."""
    lines = [line.strip("│ ").rstrip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if EXCEPTION.match(line)]
    if named:
        return named[-1]
    return next((line for line in reversed(lines) if not line.startswith(" ")), lines[-1])


def classify(proc: Proc) -> tuple[str, str]:
    """(raw outcome class, the message worth showing) of a finished process."""
    if proc.timed_out:
        return "hang", f"no exit within {proc.seconds:.0f} s"
    text = proc.stderr
    if TRACEBACK in text or TRACEBACK in proc.stdout:
        return "traceback", exception_line(text if TRACEBACK in text else proc.stdout)
    if proc.rc == 0:
        return "accepted", first_line(proc.stdout) or first_line(text)
    if proc.rc < 0:
        return "killed", f"signal {-proc.rc}; " + first_line(text)
    if proc.rc == 2 and "Usage:" in text:
        return "usage error", usage_message(text)
    start = text.find("Error: ")
    if start < 0:
        return "unclear error", first_line(text) or first_line(proc.stdout) or "(no message)"
    tail = text[start:].strip("\n")
    if proc.rc == 1 and "\n" not in tail:
        return "clear error", tail.strip()
    return "multi-line error", tail.splitlines()[0].strip() + f" (+{tail.count(chr(10))} lines)"


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

Check = Callable[["Context", Path, Proc], str | None]


@dataclass
class Case:
    """One bad input or fault.

    ``argv`` is a diffvi command line (``{name}`` placeholders: ``{d}`` the case's folder,
    other names fixtures such as ``{vae}``); ``api`` a Python snippet (the body of a function);
    ``fault`` a function running a whole scenario. ``expected`` is the outcome class (or
    classes) that counts as a pass; ``needles`` must appear in the output; ``check`` returns a
    problem (or None) after the command, ``setup`` prepares the folder before it.
    """

    id: str
    kind: str
    what: str
    expected: tuple[str, ...]
    argv: list[str] | None = None
    api: str | None = None
    fault: Callable[[Context, Path], dict] | None = None
    needles: tuple[str, ...] = ()
    setup: Callable[[Context, Path], None] | None = None
    check: Check | None = None
    env: dict[str, str] = field(default_factory=dict)
    wrap: str | None = None  # "full-disk", "read-only-fs", "nobody"
    timeout: float = 120.0
    memory_limit: int | None = None
    quick: bool = False  # in the --quick subset
    quick_only: bool = False  # only in the --quick subset (a shorter variant of a full case)
    is_fault: bool = False

    def command(self) -> str:
        """The command as shown in the tables (placeholders kept)."""
        if self.fault is not None:
            return self.what
        if self.api is not None:
            return "python: " + "; ".join(line.strip() for line in self.api.strip().splitlines())
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        args = " ".join(_quote(a) for a in self.argv or [])
        return (env + " " if env else "") + "diffvi " + args


def _quote(arg: str) -> str:
    return "''" if arg == "" else (f"'{arg}'" if re.search(r"[\s;&|]", arg) else arg)


CASES: list[Case] = []


def add(case_id: str, kind: str, what: str, expected: str | tuple[str, ...], **kw) -> None:
    assert kind in KINDS, kind
    assert all(c.id != case_id for c in CASES), case_id
    expect = (expected,) if isinstance(expected, str) else tuple(expected)
    CASES.append(Case(case_id, kind, what, expect, **kw))


# ---------------------------------------------------------------------------------------------
# Context: the workspace, fixtures, helpers for checks
# ---------------------------------------------------------------------------------------------


class Context:
    """The workspace of one harness run: a folder per case, fixtures built on first use."""

    def __init__(self, root: Path, timeout_scale: float = 1.0, src: Path | None = None) -> None:
        self.root = root
        self.timeout_scale = timeout_scale
        self.fixtures: dict[str, Path] = {}
        self.fixture_seconds: dict[str, float] = {}
        self.env = self._base_env()
        if src is not None:  # test this source tree instead of the installed (editable) one
            self.env["PYTHONPATH"] = str(src / "src")
        self.is_root = os.geteuid() == 0
        self.can_unshare = self._probe(["unshare", "-m", "true"])
        self.can_setpriv = self._probe(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "true"]
        )

    def _probe(self, argv: list[str]) -> bool:
        try:
            return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    @staticmethod
    def _base_env() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFVI_")}
        env.update(
            DIFFVI_DATA=os.environ.get("DIFFVI_DATA", str(REPO_ROOT.parent / "shared" / "data")),
            DIFFVI_OFFLINE="1",  # never download: a missing file is an error, not a wait
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            COLUMNS="200",
            NO_COLOR="1",
            TERM="dumb",
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONWARNINGS="ignore",
        )
        env.pop("PYTHONPATH", None)
        return env

    # -- fixtures ----------------------------------------------------------------------------

    def fixture(self, name: str) -> Path:
        if name not in self.fixtures:
            started = time.perf_counter()
            folder = self.root / "fixtures"
            folder.mkdir(exist_ok=True)
            self.fixtures[name] = FIXTURES[name](self, folder)
            self.fixture_seconds[name] = round(time.perf_counter() - started, 2)
        return self.fixtures[name]

    def format(self, text: str, d: Path) -> str:
        ctx = self

        class Lazy(dict):
            def __missing__(self, key: str) -> str:
                return str(d) if key == "d" else str(ctx.fixture(key))

        return string.Formatter().vformat(text, (), Lazy())

    # -- running -----------------------------------------------------------------------------

    def diffvi(
        self, args: Sequence[str], cwd: Path, timeout: float = 120, env: dict | None = None
    ) -> Proc:
        return run_proc(
            [DIFFVI, *map(str, args)],
            cwd,
            {**self.env, **(env or {})},
            timeout * self.timeout_scale,
        )

    def must(self, args: Sequence[str], cwd: Path, timeout: float = 120) -> Proc:
        proc = self.diffvi(args, cwd, timeout)
        if proc.rc != 0:
            raise RuntimeError(f"diffvi {' '.join(map(str, args))} failed: {classify(proc)[1]}")
        return proc


FIXTURES: dict[str, Callable[[Context, Path], Path]] = {}


def fixture(fn: Callable[[Context, Path], Path]) -> Callable[[Context, Path], Path]:
    FIXTURES[fn.__name__] = fn
    return fn


@fixture
def vae(ctx: Context, folder: Path) -> Path:
    """A VAE trained 5 steps on digits (run folder with checkpoint and export)."""
    run = folder / "vae"
    ctx.must(
        ["train", "vae", *VAE, "--max-epochs", "1", "--max-steps", "5", "--run-dir", run], folder
    )
    return run


@fixture
def sbn(ctx: Context, folder: Path) -> Path:
    """An SBN trained 2 steps on digits."""
    run = folder / "sbn"
    ctx.must(
        ["train", "sbn", *SBN, "--max-steps", "2", "--val-every", "2", "--run-dir", run], folder
    )
    return run


@fixture
def vcf(ctx: Context, folder: Path) -> Path:
    """A small valid VCF: 12 samples s0..s11, 40 biallelic variants."""
    rng = random.Random(0)
    samples = [f"s{i}" for i in range(12)]
    lines = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=1,length=100000>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(
            ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples]
        ),
    ]
    for j in range(40):
        calls = [rng.choice(["0/0", "0/1", "1/1"]) for _ in samples]
        lines.append(
            "\t".join(["1", str(100 * (j + 1)), f"v{j}", "A", "G", ".", "PASS", ".", "GT", *calls])
        )
    path = folder / "g.vcf"
    path.write_text("\n".join(lines) + "\n")
    return path


@fixture
def labels10(ctx: Context, folder: Path) -> Path:
    """Population labels for s0..s9 of the VCF fixture (s10, s11 unlabelled)."""
    path = folder / "labels10.tsv"
    path.write_text("sample\tpopulation\n" + "".join(f"s{i}\tP{i % 2}\n" for i in range(10)))
    return path


@fixture
def digit_png(ctx: Context, folder: Path) -> Path:
    """A 28x28 8-bit grey PNG of a drawn stroke."""
    path = folder / "digit.png"
    write_png(path, grey_digit(), "L")
    return path


def grey_digit() -> list[list[int]]:
    img = [[0] * 28 for _ in range(28)]
    for r in range(5, 23):
        for c in (12, 13, 14):
            img[r][c] = 255
    for c in range(9, 18):
        img[5][c] = img[22][c] = 200
    return img


def write_png(path: Path, rows: list[list[int]], mode: str, **kw) -> None:
    """Save a grey image (rows of 0..255) as a PNG of ``mode``: L, RGB (grey, or tinted with
    ``tint``), RGBA (``alpha``: 255 everywhere or 0 in one corner), I;16 (16-bit)."""
    import numpy as np
    from PIL import Image

    grey = np.array(rows, dtype=np.uint8)
    if mode == "L":
        img = Image.fromarray(grey)
    elif mode == "I;16":
        img = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode in ("RGB", "RGBA"):
        rgb = np.stack([grey] * 3, -1)
        if kw.get("tint"):
            rgb[..., 0] = 255 - rgb[..., 0] // 2
        if mode == "RGBA":
            alpha = np.full(grey.shape, 255, np.uint8)
            if kw.get("transparent"):
                alpha[:4, :4] = 0
            rgb = np.concatenate([rgb, alpha[..., None]], -1)
        img = Image.fromarray(rgb, mode)
    else:
        raise ValueError(mode)
    img.save(path, format="PNG")


# -- helpers for setups and checks -------------------------------------------------------------


def copy_run(ctx: Context, name: str, dest: Path) -> Path:
    shutil.copytree(ctx.fixture(name), dest)
    return dest


def copy_model(dest: Path, name: str = "mnist") -> Path:
    shutil.copytree(shipped_models() / name, dest)
    return dest


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def exists(rel: str) -> Check:
    return lambda ctx, d, p: None if (d / rel).exists() else f"{rel} was not written"


def absent(*rels: str) -> Check:
    def check(ctx: Context, d: Path, p: Proc) -> str | None:
        there = [r for r in rels if (d / r).exists()]
        return f"left behind: {', '.join(there)}" if there else None

    return check


def both(*checks: Check) -> Check:
    def check(ctx: Context, d: Path, p: Proc) -> str | None:
        problems = [c(ctx, d, p) for c in checks]
        return "; ".join(x for x in problems if x) or None

    return check


def rss_below(mb: float) -> Check:
    return lambda c, d, p: (
        None if p.peak_rss_mb < mb else f"peak RSS {p.peak_rss_mb:.0f} MB >= {mb:.0f} MB"
    )


def marker_absent(ctx: Context, d: Path, p: Proc) -> str | None:
    return (
        "the checkpoint's pickle RAN CODE (marker file created)" if (d / "pwned").exists() else None
    )


def malicious_checkpoint(path: Path, marker: Path) -> None:
    """A .ckpt (torch zip) whose pickle calls os.system("touch MARKER") when unpickled with
    weights_only=False."""
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "epoch": 0, "global_step": 1, "x": Payload()}, path)


def leftovers(run: Path) -> list[str]:
    """Temporary files (dot-files of atomic writes) anywhere in a run folder."""
    if not run.exists():
        return []
    return sorted(str(p.relative_to(run)) for p in run.rglob(".*") if p.is_file())


def load_ckpt(path: Path) -> tuple[dict | None, str]:
    """(checkpoint, "") if it loads with weights_only=True, else (None, why)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True), ""
    except Exception as err:  # noqa: BLE001 - any failure means: not loadable
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"


def equal_tree(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal_tree(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(equal_tree(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def metric_rows(run: Path) -> list[dict]:
    path = run / "logs" / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            {k: v for k, v in row.items() if "time" not in k and "sec" not in k}
            for row in csv.DictReader(f)
        ]


def duplicated_steps(rows: list[dict]) -> list[str]:
    """Steps that appear in more than one row of the same kind (same non-empty columns)."""
    seen = Counter((r.get("step"), tuple(k for k, v in r.items() if v)) for r in rows)
    return sorted({step for (step, _), n in seen.items() if n > 1}, key=lambda s: int(s or -1))


# ---------------------------------------------------------------------------------------------
# Fault injections
# ---------------------------------------------------------------------------------------------


def compare_runs(resumed: Path, straight: Path) -> tuple[bool, str]:
    """Whether two runs' checkpoints (weights, optimiser state, step) and logs agree exactly."""
    a, why_a = load_ckpt(resumed / "checkpoints" / "last.ckpt")
    b, why_b = load_ckpt(straight / "checkpoints" / "last.ckpt")
    if a is None or b is None:
        return False, f"checkpoint not loadable: {why_a or why_b}"
    weights = equal_tree(a["state_dict"], b["state_dict"])
    optim = equal_tree(a.get("optimizer_states"), b.get("optimizer_states"))
    step = a["global_step"] == b["global_step"]
    rows_a, rows_b = metric_rows(resumed), metric_rows(straight)
    logs = rows_a == rows_b
    dups = duplicated_steps(rows_a)
    n = len(a["state_dict"])
    detail = (
        f"step {a['global_step']} vs {b['global_step']}; {n} weight tensors "
        f"{'bit-identical' if weights else 'DIFFER'}; optimiser state "
        f"{'identical' if optim else 'DIFFERS'}; metrics.csv {len(rows_a)} rows "
        f"{'identical' if logs else f'DIFFER from the uninterrupted {len(rows_b)}'}"
        + (f"; duplicated steps {dups}" if dups else "")
    )
    return weights and optim and step and logs and not dups, detail


def fault_result(ok: bool, detail: str, procs: list[Proc], bad: str = "silently wrong") -> dict:
    failed = [p for p in procs if p.rc != 0]
    if failed and not ok:
        outcome, message = classify(failed[0])
        return {"outcome": outcome, "message": message, "detail": detail, "procs": procs}
    return {"outcome": "recovered" if ok else bad, "message": detail, "procs": procs}


def resume_exact(family_args: list[str], stop: int, total: int) -> Callable[[Context, Path], dict]:
    """Train ``stop`` steps, resume to ``total``; train ``total`` steps uninterrupted; compare."""

    def run(ctx: Context, d: Path) -> dict:
        a, b = d / "stopped", d / "straight"
        procs = [
            ctx.diffvi([*family_args, "--max-steps", stop, "--run-dir", a], d),
            ctx.diffvi(resume_args(family_args[1], a, total), d),
            ctx.diffvi([*family_args, "--max-steps", total, "--run-dir", b], d),
        ]
        if any(p.rc != 0 for p in procs):
            return fault_result(False, "a training command failed", procs)
        ok, detail = compare_runs(a, b)
        return fault_result(ok, detail, procs)

    return run


def resume_args(family: str, run: Path, steps: int) -> list:
    """``train FAMILY --run-dir RUN --resume --max-steps STEPS``, quietly, one thread."""
    return ["train", family, "--run-dir", run, "--resume", "--max-steps", steps, "--no-progress",
            "--threads", "1"]  # fmt: skip


def planted_log_rows(ctx: Context, d: Path) -> dict:
    """A killed run logged steps past its checkpoint: append fake rows, resume, compare."""
    a, b = d / "stopped", d / "straight"
    args = ["train", "vae", *VAE, "--max-epochs", "1", "--log-every-n-steps", "1"]
    procs = [ctx.diffvi([*args, "--max-steps", 5, "--run-dir", a], d)]
    log = a / "logs" / "metrics.csv"
    if procs[0].rc == 0:
        with open(log, "a") as f:  # rows the killed process wrote after its last checkpoint
            f.write("".join(f"0,{s},-999.0,9.0\n" for s in range(5, 9)))
    procs += [
        ctx.diffvi([*resume_args("vae", a, 10), "--log-every-n-steps", 1], d),
        ctx.diffvi([*args, "--max-steps", 10, "--run-dir", b], d),
    ]
    if any(p.rc != 0 for p in procs):
        return fault_result(False, "a training command failed", procs)
    ok, detail = compare_runs(a, b)
    fake = sum(1 for r in metric_rows(a) if r.get("train/bound") == "-999.0")
    return fault_result(ok and not fake, f"{detail}; planted rows left: {fake}", procs)


def wait_for(predicate: Callable[[], bool], p: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if p.poll() is not None:
            return predicate()
        time.sleep(0.01)
    return False


def ckpt_step(path: Path) -> int | None:
    ckpt, _ = load_ckpt(path)
    return None if ckpt is None else int(ckpt["global_step"])


def start(ctx: Context, args: Sequence[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [DIFFVI, *map(str, args)],
        cwd=cwd,
        env=ctx.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop(p: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 60) -> tuple[int, str]:
    """Send ``sig`` to ``p`` (only it, not its group, as a user's kill would), wait for it."""
    if p.poll() is None:
        p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p.pid, signal.SIGKILL)
        _, err = p.communicate()
    _kill_group(p.pid, signal.SIGKILL)
    return p.returncode, (err or b"").decode(errors="replace")


KILL_BASE = ["train", "vae", *VAE, "--max-epochs", "-1", "--log-every-n-steps", "1"]
KILL_RUN = [*KILL_BASE, "--max-steps", "100000"]


def killed_run_logs(ctx: Context, d: Path) -> dict:
    """SIGKILL a run after it logged steps past its last checkpoint; resume; compare its log
    with an uninterrupted run's."""
    a, b = d / "killed", d / "straight"
    ckpt, log = a / "checkpoints" / "last.ckpt", a / "logs" / "metrics.csv"
    p = start(ctx, [*KILL_RUN, "--val-every", 20, "--run-dir", a], d)
    reached = wait_for(lambda: ckpt.exists(), p, 90)
    past = False
    if reached:  # wait for logged rows past the checkpoint's step (the log is rewritten often)

        def logged_past() -> bool:
            step = ckpt_step(ckpt)
            rows = metric_rows(a)
            return step is not None and any(int(r["step"]) >= step + 3 for r in rows)

        past = wait_for(logged_past, p, 60)
    stop(p)
    step = ckpt_step(ckpt)
    rows_past = sum(1 for r in metric_rows(a) if step is not None and int(r["step"]) >= step)
    if step is None:
        return {
            "outcome": "silently wrong",
            "message": f"no loadable checkpoint after the kill (reached={reached})",
            "procs": [],
        }
    total = step + 10
    procs = [
        ctx.diffvi([*resume_args("vae", a, total), "--log-every-n-steps", 1], d),
        ctx.diffvi([*KILL_BASE, "--val-every", 20, "--max-steps", total, "--run-dir", b], d),
    ]
    if any(q.rc != 0 for q in procs):
        return fault_result(False, "a training command failed", procs)
    ok, detail = compare_runs(a, b)
    note = (
        f"killed at checkpoint step {step} with {rows_past} log rows at or past it "
        f"({'' if past else 'no rows flushed past it before the kill; '}resumed to {total})"
    )
    return fault_result(ok and log.exists(), f"{note}; {detail}", procs)


def kills_mid_write(kills: int) -> Callable[[Context, Path], dict]:
    """SIGKILL a run repeatedly, half the time the moment a temporary checkpoint file appears
    (mid-write), half at a random time; after every kill last.ckpt must load and the next start
    must remove the leftovers; a last resume to a finite budget must end clean."""

    def run(ctx: Context, d: Path) -> dict:
        rng = random.Random(0)
        a = d / "run"
        ckdir, ckpt = a / "checkpoints", a / "checkpoints" / "last.ckpt"
        hits, unloadable, not_cleaned, notes = 0, [], [], []
        previous: list[str] = []
        for i in range(kills):
            before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
            args = [*KILL_RUN, "--val-every", 1, "--run-dir", a]
            p = start(ctx, [*args, "--resume"] if i else args, d)
            # this start wrote a checkpoint of its own (so its clean-up ran)
            started = wait_for(
                lambda b=before: ckpt.exists() and ckpt.stat().st_mtime_ns != b, p, 90
            )
            if not started:
                rc, err = stop(p)
                notes.append(f"start {i + 1} wrote no checkpoint (rc {rc}: {first_line(err)})")
                break
            gone = [x for x in previous if (a / x).exists()]
            if gone:
                not_cleaned.append(f"start {i + 1} kept {gone}")
            if i % 2 == 0:  # the moment a temporary checkpoint file appears
                wait_for(lambda: any(n.startswith(".") for n in os.listdir(ckdir)), p, 30)
            else:
                time.sleep(rng.uniform(0.0, 1.0))
            stop(p)
            previous = leftovers(a)
            hits += any(x.startswith("checkpoints/.") for x in previous)
            ckpt_ok, why = load_ckpt(ckpt)
            if ckpt_ok is None:
                unloadable.append(f"after kill {i + 1}: {why}")
        step = ckpt_step(ckpt) or 0
        final = ctx.diffvi(resume_args("vae", a, step + 3), d)
        left = leftovers(a)
        end_step = ckpt_step(ckpt)
        ok = (
            final.rc == 0
            and not unloadable
            and not not_cleaned
            and not left
            and end_step == step + 3
            and not notes
        )
        detail = (
            f"{kills} kills, {hits} mid-write (a temporary checkpoint file was left); "
            f"last.ckpt loadable after {kills - len(unloadable)}/{kills}; leftovers removed by "
            f"the next start: {not_cleaned or 'yes'}; final resume to step "
            f"{step + 3}: exit {final.rc}, step {end_step}, leftovers {left or 'none'}"
            + ("; " + "; ".join(unloadable + notes) if unloadable or notes else "")
        )
        return fault_result(ok, detail, [final])

    return run


def planted_temporaries(ctx: Context, d: Path) -> dict:
    """Partial temporary files in a finished run, named as the atomic writer names them
    (``.<name>.<random><suffix>``; no version wrote ``.tmp-<name>``): the next start must
    remove them; last.ckpt stays loadable."""
    a = copy_run(ctx, "vae", d / "run")
    full = (a / "checkpoints" / "last.ckpt").read_bytes()
    planted = [
        a / "checkpoints" / ".last.ckpt.k1ll3d.ckpt",
        a / ".config.json.k1ll3d.json",
        a / "logs" / ".metrics.csv.k1ll3d.csv",
        a / "export" / ".model.safetensors.k1ll3d.safetensors",
    ]
    for path in planted:
        path.write_bytes(full[: len(full) // 3])
    proc = ctx.diffvi(resume_args("vae", a, 7), d)
    kept = [str(p.relative_to(a)) for p in planted if p.exists()]
    loaded, why = load_ckpt(a / "checkpoints" / "last.ckpt")
    ok = proc.rc == 0 and not kept and loaded is not None and loaded["global_step"] == 7
    detail = (
        f"planted {len(planted)} partial temporaries; after the next start: "
        f"{'all removed' if not kept else 'kept ' + ', '.join(kept)}; last.ckpt "
        f"{'loads, step ' + str(loaded['global_step']) if loaded else 'NOT loadable: ' + why}"
    )
    return fault_result(ok, detail, [proc])


def interrupted_run(ctx: Context, d: Path) -> dict:
    """Ctrl-C (SIGINT) during training: a short message, a loadable checkpoint, and a resume
    that continues."""
    a = d / "run"
    ckpt = a / "checkpoints" / "last.ckpt"
    p = start(ctx, [*KILL_RUN, "--val-every", 10, "--run-dir", a], d)
    wait_for(lambda: ckpt.exists(), p, 90)
    time.sleep(0.5)
    rc, err = stop(p, signal.SIGINT)
    step = ckpt_step(ckpt)
    proc = Proc(p.args, rc, "", err, 0.0, 0.0)
    outcome, message = classify(proc)
    resumed = ctx.diffvi(resume_args("vae", a, (step or 0) + 5), d)
    ok = outcome != "traceback" and step is not None and resumed.rc == 0
    detail = (
        f"SIGINT: exit {rc}, {outcome} ({message[:100]}); checkpoint step {step}; "
        f"resume: exit {resumed.rc}"
    )
    return fault_result(ok, detail, [resumed])


# ---------------------------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------------------------


def _catalogue() -> None:  # noqa: PLR0915 - one list
    # fmt: off
    R, W, F, O, N, S, M = KINDS  # noqa: N806, E741

    # -- resume ---------------------------------------------------------------------------------
    add("resume-exact-vae-mid-epoch", R, "IWAE(k=5) VAE on digits: --max-steps 5 (mid-epoch), "
        "then --resume --max-steps 10, against 10 steps uninterrupted", "recovered",
        fault=resume_exact(["train", "vae", *VAE, "--max-epochs", "1"], 5, 10), quick=True,
        is_fault=True)
    add("resume-exact-sbn", R, "SBN (NVIL, its baselines and counters) 3 steps then resume to 6, "
        "against 6 uninterrupted", "recovered",
        fault=resume_exact(["train", "sbn", *SBN], 3, 6), is_fault=True)
    add("resume-exact-diffusion", R, "tiny UNet diffusion on digits, 3 steps then resume to 6, "
        "against 6 uninterrupted", "recovered",
        fault=resume_exact(["train", "diffusion", "--dataset", "digits", *TINY_UNET,
                            "--threads", "1", "--no-progress"], 3, 6), is_fault=True)
    add("resume-log-rows-planted", R, "rows a killed run logged past its checkpoint (steps 5-8, "
        "planted in logs/metrics.csv) appear once after --resume, with the resumed values",
        "recovered", fault=planted_log_rows, is_fault=True)
    add("resume-log-rows-after-sigkill", R, "SIGKILL a run (--val-every 20) once it logged rows "
        "past its checkpoint; resume 10 steps; log and weights against an uninterrupted run",
        "recovered", fault=killed_run_logs, is_fault=True, timeout=300)
    add("kill-mid-checkpoint-write", R, "SIGKILL a run checkpointing every step, 6 times (3 the "
        "moment a temporary checkpoint appears, 3 at random), resuming in between",
        "recovered", fault=kills_mid_write(6), is_fault=True, timeout=600)
    add("kill-mid-checkpoint-write-quick", R, "the same, 2 kills (1 mid-write, 1 at random)",
        "recovered", fault=kills_mid_write(2), quick=True, quick_only=True, is_fault=True)
    add("planted-partial-temporaries", R, "partial temporary files of the atomic writer "
        "(checkpoints/.last.ckpt.*, .config.json.*, logs/.metrics.csv.*, export/"
        ".model.safetensors.*) in a run, then --resume",
        "recovered", fault=planted_temporaries, quick=True, is_fault=True)
    add("sigint-during-training", R, "Ctrl-C (SIGINT) during training, then --resume",
        "recovered", fault=interrupted_run, is_fault=True)

    def edit_config(key: str, value: Any) -> Callable[[Context, Path], None]:
        def setup(ctx: Context, d: Path) -> None:
            copy_run(ctx, "sbn", d / "run")
            edit_json(d / "run" / "config.json", lambda c: c.__setitem__(key, value))

        return setup

    resume_sbn = ["train", "sbn", "--run-dir", "{d}/run", "--resume", "--max-steps", "4",
                  "--no-progress", "--threads", "1"]
    add("hand-edited-config-lr", R, "config.json hand-edited (lr 0.0003 -> 0.5), then --resume",
        "clear error", argv=resume_sbn, setup=edit_config("lr", 0.5),
        needles=("lr: checkpoint 0.0003, now 0.5",), quick=True)
    add("resume-with-new-lr-option", R, "--resume with --lr 0.5 on the command line (not a "
        "budget option)", "clear error",
        argv=[*resume_sbn, "--lr", "0.5"], setup=lambda c, d: copy_run(c, "sbn", d / "run"),
        needles=("lr",))
    add("resume-already-finished", R, "--resume a run that already reached --max-steps",
        ("accepted", "clear error"),
        argv=["train", "sbn", "--run-dir", "{d}/run", "--resume", "--no-progress"],
        setup=lambda c, d: copy_run(c, "sbn", d / "run"))
    add("resume-invalid-config-json", R, "config.json is not JSON ('{not json'), --resume",
        "clear error", argv=resume_sbn, needles=("config.json", "not valid JSON"),
        setup=lambda c, d: (copy_run(c, "sbn", d / "run"),
                            (d / "run" / "config.json").write_text("{not json")))
    add("resume-missing-run", R, "--resume with a --run-dir that does not exist",
        "clear error", argv=["train", "vae", "--run-dir", "{d}/none", "--resume"],
        needles=("config.json",))
    add("resume-truncated-ckpt", R, "last.ckpt cut to 1000 bytes (killed while writing, no "
        "atomic write), --resume", "clear error", argv=resume_sbn, needles=("truncated",),
        setup=lambda c, d: truncate(copy_run(c, "sbn", d / "run") / "checkpoints" /
                                    "last.ckpt", 1000), quick=True)
    add("resume-empty-ckpt", R, "last.ckpt empty (0 bytes), --resume", "clear error",
        argv=resume_sbn, needles=("empty",),
        setup=lambda c, d: truncate(copy_run(c, "sbn", d / "run") / "checkpoints" /
                                    "last.ckpt", 0))
    add("train-into-existing-run", R, "train again (no --resume) into a finished run's folder",
        ("clear error", "accepted"),
        argv=["train", "sbn", *SBN, "--max-steps", "2", "--run-dir", "{d}/run"],
        setup=lambda c, d: copy_run(c, "sbn", d / "run"))

    # -- silent wrong result ----------------------------------------------------------------------
    no_ckpt = absent("run/checkpoints", "run/export")
    add("diverge-sbn-lr1e6", W, "SBN, 20 binary units, --lr 1e6, 60 steps: finite losses, "
        "the bound runs away", "clear error",
        argv=["train", "sbn", "--dataset", "digits", "--layers", "20", "--lr", "1e6",
              "--max-steps", "60", "--log-every-n-steps", "5", "--threads", "1", "--no-progress",
              "--run-dir", "{d}/run"],
        needles=("diverged",), check=no_ckpt, quick=True)
    add("diverge-vaedgp-lr1e6", W, "VAE-DGP, --lr 1e6 --recognition-lr 1e6 (K_zz breaks down)",
        "clear error",
        argv=["train", "vaedgp", "--dataset", "frey-faces", "--layers", "2", "--train-size",
              "100", "--num-inducing", "8", "--recognition-hidden", "16", "--batch-size", "10",
              "--lr", "1e6", "--recognition-lr", "1e6", "--max-steps", "20",
              "--log-every-n-steps", "10", "--threads", "1", "--no-progress",
              "--run-dir", "{d}/run"],
        needles=("diverged", "--lr"), check=no_ckpt)
    add("diverge-vae-lr1e6", W, "VAE on digits with --lr 1e6", ("clear error", "accepted"),
        argv=["train", "vae", *VAE, "--lr", "1e6", "--max-steps", "60", "--run-dir", "{d}/run"],
        check=lambda c, d, p: None if p.rc != 0 else finite_export(d / "run"))
    add("negative-lr", W, "--lr -0.001 (gradient ascent)", ("clear error", "usage error"),
        argv=["train", "vae", *VAE, "--lr", "-0.001", "--max-steps", "3", "--run-dir",
              "{d}/run"], needles=("lr",))
    add("batch-larger-than-data", W, "--batch-size 100000 on digits (1,437 training images)",
        ("accepted", "clear error"),
        argv=["train", "vae", *VAE, "--batch-size", "100000", "--max-epochs", "1",
              "--run-dir", "{d}/run"],
        check=lambda c, d, p: None if p.rc != 0 else trained_steps(d / "run", at_least=1))
    add("analytic-kl-with-iwae", W, "--analytic-kl (ELBO only) with --objective iwae",
        ("clear error", "usage error"),
        argv=["train", "vae", *VAE, "--analytic-kl", "--max-steps", "2", "--run-dir", "{d}/run"],
        needles=("analytic",))
    rgb = {"grey RGB": dict(mode="RGB"), "colour RGB": dict(mode="RGB", tint=True),
           "RGBA, transparent corner": dict(mode="RGBA", transparent=True),
           "RGBA, opaque grey": dict(mode="RGBA")}

    def png(name: str, **kw) -> Callable[[Context, Path], None]:
        return lambda c, d: write_png(d / name, grey_digit(), **kw)

    restore_in = [*RESTORE, "--out", "{d}/out", "--input"]
    add("restore-colour-png", W, "restore --input a colour (tinted RGB) PNG with the grey "
        "MNIST prior", "clear error", argv=[*restore_in, "{d}/colour.png"],
        setup=png("colour.png", **rgb["colour RGB"]), needles=("colour.png",),
        quick=True)
    add("restore-rgba-transparent", W, "restore --input an RGBA PNG with transparent pixels",
        "clear error", argv=[*restore_in, "{d}/rgba.png"],
        setup=png("rgba.png", **rgb["RGBA, transparent corner"]), needles=("rgba.png",))
    add("restore-grey-rgb-png", W, "restore --input a grey image saved as RGB (equal channels)",
        "accepted", argv=[*restore_in, "{d}/grey.png"], setup=png("grey.png", **rgb["grey RGB"]),
        check=restored_png("grey"))
    add("restore-16bit-png", W, "restore --input a 16-bit grey PNG (I;16): scaled like its "
        "8-bit copy, or refused", ("accepted", "clear error"),
        argv=[*restore_in, "{d}/deep.png"], setup=png("deep.png", mode="I;16"),
        check=same_as_8bit)
    api = textwrap.dedent("""
        import torch
        from diffvi.models import build_vae
        from diffvi.objectives import IWAE
        torch.manual_seed(0)
        model, posterior = build_vae((1, 4, 4), latent_dims=[2], hidden=[[8]])
        """)
    add("api-x5-bernoulli", W, "IWAE(k=5) on x = 5 everywhere under a Bernoulli likelihood",
        "clear error", api=api + "print(IWAE(k=5)(model, posterior, torch.full((3, 1, 4, 4), "
        "5.0)).bound)", needles=("[0, 1]",), quick=True)
    add("api-nan-input", W, "IWAE(k=5) on x with one NaN", "clear error",
        api=api + "x = torch.rand(3, 1, 4, 4); x[0, 0, 0, 0] = float('nan'); "
        "print(IWAE(k=5)(model, posterior, x).bound)", needles=("NaN",))
    add("api-wrong-size-input", W, "IWAE(k=5) on flattened x [3, 16] for a [1, 4, 4] model",
        "clear error", api=api + "print(IWAE(k=5)(model, posterior, torch.rand(3, 16)).bound)",
        needles=("[B, 1, 4, 4]",))
    add("api-loglik-0-255", W, "estimate_log_likelihood on 8-bit values [0, 255]",
        "clear error", api=api + "from diffvi.evaluation import estimate_log_likelihood\n"
        "x = torch.randint(0, 256, (4, 1, 4, 4)).float()\n"
        "print(estimate_log_likelihood(model, posterior, x, k=5))",
        needles=("255",))
    metrics = textwrap.dedent("""
        import torch
        from diffvi.inverse import psnr, ssim
        g = torch.Generator().manual_seed(0)
        ref = torch.randint(0, 256, (2, 1, 16, 16), generator=g).float()
        out = (ref + 10 * torch.randn(ref.shape, generator=g)).clamp(0, 255)
        """)
    add("api-psnr-0-255", W, "psnr on [0, 255] images with the default data_range=1",
        "clear error", api=metrics + "print(psnr(out, ref))", needles=("255",))
    add("api-psnr-data-range-255", W, "psnr(data_range=255) on [0, 255] equals psnr of the "
        "[0, 1] copies", "accepted",
        api=metrics + "a, b = psnr(out, ref, data_range=255), psnr(out / 255, ref / 255)\n"
        "assert torch.allclose(a, b), (a, b)\nprint('psnr', a.tolist())")
    add("evaluate-wrong-image-size", W, "evaluate an 8x8 digits VAE on mnist (28x28)",
        "clear error", argv=["evaluate", "{vae}", "--dataset", "mnist", "--k", "2", "--limit",
                             "10"], needles=("mnist",))

    # -- bad file or data -----------------------------------------------------------------------
    add("evaluate-missing-path", F, "evaluate a path that does not exist", "clear error",
        argv=["evaluate", "{d}/no-run"], needles=("does not exist",))
    add("evaluate-random-bytes-ckpt", F, "evaluate a .ckpt of random bytes", "clear error",
        argv=["evaluate", "{d}/bad.ckpt"], setup=random_file("bad.ckpt", 5000),
        needles=("bad.ckpt",))
    add("evaluate-empty-ckpt", F, "evaluate an empty last.ckpt", "clear error",
        argv=["evaluate", "{d}/run/checkpoints/last.ckpt"], needles=("empty",), quick=True,
        setup=lambda c, d: truncate(copy_run(c, "vae", d / "run") / "checkpoints" /
                                    "last.ckpt", 0))
    add("evaluate-run-with-empty-ckpt", F, "evaluate a run folder whose last.ckpt is empty (its "
        "export/ intact)", ("accepted", "clear error"), argv=["evaluate", "{d}/run", "--k", "2",
                                                             "--limit", "10"],
        setup=lambda c, d: truncate(copy_run(c, "vae", d / "run") / "checkpoints" /
                                    "last.ckpt", 0))
    add("evaluate-truncated-ckpt", F, "evaluate a last.ckpt cut to half", "clear error",
        argv=["evaluate", "{d}/run/checkpoints/last.ckpt"], needles=("last.ckpt",),
        setup=lambda c, d: truncate(copy_run(c, "vae", d / "run") / "checkpoints" /
                                    "last.ckpt", 800_000))
    add("export-truncated-weights", F, "sample a model whose model.safetensors is cut short",
        "clear error", argv=["sample", "{d}/m", "--num", "1", "--steps", "2", "--out",
                             "{d}/s.png", "--no-progress"],
        setup=lambda c, d: truncate(copy_model(d / "m") / "model.safetensors", 5000),
        needles=("model.safetensors",), quick=True)
    genotype = ["embed", "genotypes", "--no-progress", "--threads", "1", "--method", "pca",
                "--clusters", "2", "--components", "4", "--out", "{d}/out", "--input"]
    add("vcf-random-bytes", F, "embed genotypes of a .vcf of random bytes", "clear error",
        argv=[*genotype, "{d}/random.vcf"], setup=random_file("random.vcf", 5000),
        needles=("random.vcf",), quick=True)
    add("vcf-gz-random-bytes", F, "embed genotypes of a .vcf.gz of random bytes",
        "clear error", argv=[*genotype, "{d}/random.vcf.gz"],
        setup=random_file("random.vcf.gz", 5000), needles=("random.vcf.gz",))
    add("vcf-gz-truncated", F, "embed genotypes of a .vcf.gz cut mid-stream", "clear error",
        argv=[*genotype, "{d}/cut.vcf.gz"],
        setup=lambda c, d: (d / "cut.vcf.gz").write_bytes(
            gzip.compress(c.fixture("vcf").read_bytes())[:300]),
        needles=("cut.vcf.gz",))
    add("vcf-header-only", F, "embed genotypes of a VCF with a header and no variants",
        "clear error", argv=[*genotype, "{d}/header.vcf"],
        setup=lambda c, d: (d / "header.vcf").write_text(
            "\n".join(c.fixture("vcf").read_text().splitlines()[:4]) + "\n"),
        needles=("(of 0)",))
    add("labels-missing-samples", F, "--labels naming 10 of the VCF's 12 samples", "clear error",
        argv=[*genotype, "{vcf}", "--labels", "{labels10}"],
        needles=("2 genotype samples have no label", "--drop-unlabelled"))
    add("labels-drop-unlabelled", F, "the same with --drop-unlabelled: 10 samples embedded",
        "accepted", argv=[*genotype, "{vcf}", "--labels", "{labels10}", "--drop-unlabelled"],
        check=lambda c, d, p: json_field(d / "out" / "metrics.json", "num_samples", 10))
    add("drop-unlabelled-without-labels", F, "--drop-unlabelled without --labels",
        ("clear error", "usage error"), argv=[*genotype, "{vcf}", "--drop-unlabelled"],
        needles=("--labels",))
    add("config-file-invalid-yaml", F, "train --config a file that is not YAML or JSON",
        "clear error", argv=["train", "vae", "--config", "{d}/c.yaml", "--run-dir", "{d}/run"],
        setup=lambda c, d: (d / "c.yaml").write_text("lr: [0.1\n  k: {\n"),
        needles=("c.yaml",))
    add("config-file-unknown-key", F, "train --config with a misspelt key (lerning_rate)",
        "clear error", argv=["train", "vae", *VAE, "--config", "{d}/c.yaml", "--max-steps", "2",
                             "--run-dir", "{d}/run"],
        setup=lambda c, d: (d / "c.yaml").write_text("lerning_rate: 0.1\n"),
        needles=("lerning_rate",))
    add("restore-input-not-an-image", F, "restore --input a text file named .png",
        "clear error", argv=[*restore_in, "{d}/fake.png"],
        setup=lambda c, d: (d / "fake.png").write_text("not an image"),
        needles=("fake.png",))
    add("data-missing-offline", F, "train on mnist with DIFFVI_DATA an empty folder (offline)",
        "clear error", argv=["train", "vae", *VAE[2:], "--dataset", "mnist", "--max-steps", "1",
                             "--run-dir", "{d}/run"],
        env={"DIFFVI_DATA": "{d}/nodata", "XDG_CACHE_HOME": "{d}/cache"},
        setup=lambda c, d: (d / "nodata").mkdir(), needles=("DIFFVI_DATA",))

    # -- bad option -----------------------------------------------------------------------------
    train_vae = ["train", "vae", *VAE, "--max-steps", "2", "--run-dir", "{d}/run"]
    add("k-zero", O, "--k 0", "usage error", argv=[*train_vae, "--k", "0"], needles=("--k",),
        quick=True)
    add("dataset-unknown", O, "--dataset no-such-data", "clear error",
        argv=["train", "vae", "--dataset", "no-such-data", "--run-dir", "{d}/run"],
        needles=("no-such-data", "digits"), check=absent("run"))
    add("dataset-uppercase", O, "--dataset MNIST (capitals)", ("clear error", "accepted"),
        argv=["train", "vae", "--dataset", "DIGITS", *VAE[2:], "--max-steps", "1", "--run-dir",
              "{d}/run"], needles=("DIGITS",))
    add("objective-ddvi-in-vae", O, "train vae --objective ddvi (belongs to train ddvae)",
        "clear error", argv=[*train_vae, "--objective", "ddvi"], needles=("posterior",))
    add("objective-option-unknown", O, "--objective-option bogus=1", "clear error",
        argv=[*train_vae, "--objective-option", "bogus=1"], needles=("bogus",))
    add("precision-16-on-cpu", O, "--precision 16-mixed without CUDA", "clear error",
        argv=[*train_vae, "--precision", "16-mixed"], needles=("16-mixed",))
    add("accelerator-gpu-without-gpu", O, "--accelerator gpu on a machine without a GPU",
        "clear error", argv=[*train_vae, "--accelerator", "gpu"],
        needles=("no CUDA GPU", "--accelerator cpu"), quick=True)
    add("num-nodes-2-no-cluster", O, "--num-nodes 2 on one machine, no cluster launcher",
        ("clear error", "usage error"), argv=[*train_vae, "--num-nodes", "2"],
        needles=("node",), timeout=60)
    add("prior-2d-with-latent-5", O, "--prior pinwheel with --latent-dim 5", "clear error",
        argv=[*train_vae, "--prior", "pinwheel", "--latent-dim", "5"], needles=("pinwheel",))
    add("labelled-without-partitioned-prior", O, "--labelled 100 with the standard-normal prior",
        "clear error", argv=[*train_vae, "--objective", "elbo", "--k", "1", "--labelled", "100"],
        needles=("prior",))
    add("vimco-k1", O, "train sbn --estimator vimco --k 1", ("clear error", "usage error"),
        argv=["train", "sbn", *SBN, "--estimator", "vimco", "--k", "1", "--max-steps", "2",
              "--run-dir", "{d}/run"], needles=("vimco",))
    add("max-epochs-zero", O, "--max-epochs 0 (nothing to train)", ("clear error", "accepted"),
        argv=["train", "vae", *VAE, "--max-epochs", "0", "--run-dir", "{d}/run"])
    add("evaluate-split-unknown", O, "evaluate --split valid (digits has train/test)",
        "clear error", argv=["evaluate", "{vae}", "--split", "valid"],
        needles=("valid", "test"))
    add("restore-cvdm-without-model", O, "restore --solver cvdm without --model", "clear error",
        argv=[*RESTORE, "--solver", "cvdm", "--out", "{d}/out"], needles=("--model",))
    add("clusters-more-than-samples", O, "embed genotypes --clusters 50 for 10 labelled samples: "
        "refused, or lowered to 10 and reported", ("clear error", "accepted"),
        argv=[*genotype, "{vcf}", "--labels", "{labels10}", "--drop-unlabelled", "--clusters",
              "50"], needles=("50",),
        check=lambda c, d, p: None if p.rc else (json_field(d / "out" / "metrics.json",
                                                            "clusters", 10)
                                                 or (None if "GMM (10)" in p.stdout
                                                     else "the lowered count is not shown")))

    # -- output not writable -------------------------------------------------------------------
    def under_file(ctx: Context, d: Path) -> None:
        (d / "file.txt").write_text("a file, not a folder")

    def refused(out: str) -> Check:
        return absent(out)

    targets = {
        "restore --out": [*RESTORE, "--dataset", "mnist", "--count", "1", "--out", "{o}/r"],
        "sample --out": ["sample", "{vae}", "--num", "4", "--out", "{o}/s.png"],
        "train --run-dir": ["train", "sbn", *SBN, "--max-steps", "2", "--run-dir", "{o}/run"],
        "evaluate --json": ["evaluate", "{vae}", "--k", "2", "--limit", "10", "--json",
                            "{o}/m.json"],
        "embed --out": ["embed", "{vae}", "--out", "{o}/emb", "--no-progress"],
        "embed genotypes --out": [*genotype[:-3], "--out", "{o}/e", "--input", "{vcf}"],
    }
    for label in ("restore --out", "sample --out", "train --run-dir", "evaluate --json"):
        slug = label.replace(" --", "-")
        add(f"under-a-file-{slug}", N, f"{label} to a path under a regular file", "clear error",
            argv=[a.replace("{o}", "{d}/file.txt") for a in targets[label]], setup=under_file,
            needles=("file.txt", "is a file"), quick=label == "restore --out")
    simulated = [
        ("read-only-fs", "ro", "on a read-only file system (tmpfs mounted ro)", "read-only",
         ("sample --out", "train --run-dir")),
        ("full-disk", "full", "on a full disk (a 128 KiB tmpfs, filled)", "full",
         ("train --run-dir", "evaluate --json")),
        ("nobody", "locked", "into a chmod 555 folder (run as user nobody)", "locked",
         ("restore --out", "train --run-dir")),
    ]
    for wrap, folder, how, needle, labels in simulated:
        for label in labels:
            slug = label.replace(" --", "-")
            name = "no-permission" if wrap == "nobody" else wrap
            add(f"{name}-{slug}", N, f"{label} {how}", "clear error",
                argv=[a.replace("{o}", "{d}/" + folder) for a in targets[label]], wrap=wrap,
                needles=(needle,), is_fault=True,
                quick=(wrap, label) == ("full-disk", "train --run-dir"))
    add("sample-out-is-a-folder-png", N, "sample --out x.png where x.png is an existing folder",
        ("clear error", "accepted"), argv=["sample", "{vae}", "--num", "4", "--out", "{d}/x.png"],
        setup=lambda c, d: (d / "x.png").mkdir(), needles=("x.png",))

    # -- security ------------------------------------------------------------------------------
    add("tampered-data-with-sidecar", S, "a tampered frey_faces.npz in DIFFVI_DATA with a "
        "matching .sha256 sidecar next to it", "refused safely",
        argv=["train", "vaedgp", "--dataset", "frey-faces", "--max-steps", "1", "--no-progress",
              "--run-dir", "{d}/run"],
        env={"DIFFVI_DATA": "{d}/data", "XDG_CACHE_HOME": "{d}/cache"},
        setup=data_copy("frey_faces/frey_faces.npz", tamper_npz, sidecar=True),
        needles=("SHA-256",), check=absent("run/checkpoints"), quick=True)
    add("tampered-data-no-sidecar", S, "a tampered frey_faces.npz in DIFFVI_DATA",
        "refused safely",
        argv=["train", "vaedgp", "--dataset", "frey-faces", "--max-steps", "1", "--no-progress",
              "--run-dir", "{d}/run"],
        env={"DIFFVI_DATA": "{d}/data", "XDG_CACHE_HOME": "{d}/cache"},
        setup=data_copy("frey_faces/frey_faces.npz", tamper_npz),
        needles=("SHA-256",), check=absent("run/checkpoints"))
    add("cwd-mnist-decoy", S, "a folder mnist/ (a decoy model) in the current directory; "
        "diffvi sample mnist", "accepted",
        argv=["sample", "mnist", "--num", "1", "--steps", "2", "--out", "{d}/s.png",
              "--no-progress"],
        setup=decoy("mnist"), check=exists("s.png"), quick=True)
    add("cwd-mnist-decoy-explicit", S, "the decoy named explicitly: diffvi sample ./mnist",
        "clear error", argv=["sample", "./mnist", "--num", "1", "--steps", "2", "--out",
                             "{d}/s.png", "--no-progress"],
        setup=decoy("mnist"), needles=("decoy-planted-in-cwd",))
    add("diffvi-data-split-models", S, "DIFFVI_DATA=/a:/b, a model only in /b/models/toy-prior; "
        "sample toy-prior", "accepted",
        argv=["sample", "toy-prior", "--num", "1", "--steps", "2", "--out", "{d}/s.png",
              "--no-progress"],
        env={"DIFFVI_DATA": "{d}/a:{d}/b"},
        setup=lambda c, d: ((d / "a").mkdir(), copy_model(d / "b" / "models" / "toy-prior")),
        check=exists("s.png"))
    add("diffvi-data-split-data", S, "DIFFVI_DATA=/empty:/shared: data found in the second "
        "folder (train on binarized-mnist 1 step)", "accepted",
        argv=["train", "vae", *VAE[2:], "--dataset", "binarized-mnist", "--max-steps", "1",
              "--max-epochs", "1", "--run-dir", "{d}/run"],
        env={"DIFFVI_DATA": "{d}/empty:" + Context._base_env()["DIFFVI_DATA"],
             "XDG_CACHE_HOME": "{d}/cache"},
        setup=lambda c, d: (d / "empty").mkdir(),
        check=exists("run/checkpoints/last.ckpt"))
    add("pickle-ckpt-evaluate", S, "evaluate a .ckpt whose pickle runs os.system", "refused safely",
        argv=["evaluate", "{d}/evil.ckpt"],
        setup=lambda c, d: malicious_checkpoint(d / "evil.ckpt", d / "pwned"),
        check=marker_absent, quick=True)
    add("pickle-ckpt-resume", S, "--resume a run whose last.ckpt pickle runs os.system",
        "refused safely", argv=["train", "vae", "--run-dir", "{d}/run", "--resume",
                                "--max-steps", "8", "--no-progress"],
        setup=lambda c, d: malicious_checkpoint(copy_run(c, "vae", d / "run") / "checkpoints" /
                                                "last.ckpt", d / "pwned"),
        check=marker_absent)
    add("safetensors-header-bomb", S, "model.safetensors whose header claims 2^60 bytes",
        "refused safely", argv=["sample", "{d}/m", "--num", "1", "--steps", "2", "--out",
                                "{d}/s.png", "--no-progress"],
        setup=lambda c, d: (copy_model(d / "m") / "model.safetensors").write_bytes(
            struct.pack("<Q", 2**60) + b"{}"),
        check=rss_below(1500), needles=("model.safetensors",),
        memory_limit=MEMORY_GUARD)
    add("png-decompression-bomb", S, "restore --input a PNG whose header says 100000x100000",
        "refused safely", argv=[*restore_in, "{d}/bomb.png"],
        setup=lambda c, d: (d / "bomb.png").write_bytes(png_bomb(100_000, 100_000)),
        check=rss_below(1500), needles=("bomb.png",), memory_limit=MEMORY_GUARD)

    # -- model spec ----------------------------------------------------------------------------
    def unet(**fields: Any) -> Callable[[Context, Path], None]:
        def setup(ctx: Context, d: Path) -> None:
            edit_json(copy_model(d / "m") / "model.json",
                      lambda j: j["denoiser"].update(fields))

        return setup

    sample_m = ["sample", "{d}/m", "--num", "1", "--steps", "2", "--out", "{d}/s.png",
                "--no-progress"]
    huge = {"memory_limit": MEMORY_GUARD}
    add("unet-1e9-channels", M, "model.json asking for a 10^9-channel UNet (sample)",
        "clear error", argv=sample_m, setup=unet(base_channels=10**9),
        needles=("refusing to allocate",), check=rss_below(1500), quick=True, **huge)
    add("unet-1e9-res-blocks", M, "model.json asking for 10^9 res blocks per level",
        "clear error", argv=sample_m, setup=unet(num_res_blocks=10**9),
        needles=("refusing to allocate",), check=rss_below(1500), timeout=120, **huge)
    add("unet-negative-channels", M, "model.json base_channels -16", "clear error",
        argv=sample_m, setup=unet(base_channels=-16), needles=("-16",))
    add("unet-channels-mismatch-weights", M, "model.json base_channels 32, weights of 16",
        "clear error", argv=sample_m, setup=unet(base_channels=32),
        needles=("model.safetensors",))
    add("model-json-unknown-kind", M, "model.json kind 'transformer'", "clear error",
        argv=sample_m, setup=lambda c, d: edit_json(copy_model(d / "m") / "model.json",
                                                    lambda j: j.__setitem__("kind", "transformer")),
        needles=("transformer",))
    add("vae-export-hidden-1e9", M, "a VAE export whose model.json asks for 10^9 hidden units",
        "clear error", argv=["evaluate", "{d}/run/export", "--k", "2", "--limit", "10"],
        setup=lambda c, d: edit_json(copy_run(c, "vae", d / "run") / "export" / "model.json",
                                     lambda j: j["config"].__setitem__("hidden", [[10**9] * 2])),
        needles=("refusing to allocate",), check=rss_below(1500), **huge)
    add("train-diffusion-1e9-channels", M, "train diffusion --base-channels 1000000000",
        "clear error", argv=["train", "diffusion", "--dataset", "digits", "--base-channels",
                             "1000000000", "--max-steps", "1", "--threads", "1",
                             "--no-progress", "--run-dir", "{d}/run"],
        needles=("refusing to allocate",), check=both(rss_below(1500), absent("run/checkpoints")),
        quick=True, **huge)
    add("train-diffusion-1e6-res-blocks", M, "train diffusion --res-blocks 1000000",
        "clear error", argv=["train", "diffusion", "--dataset", "digits", *TINY_UNET[:6],
                             "--res-blocks", "1000000", "--max-steps", "1", "--threads", "1",
                             "--no-progress", "--run-dir", "{d}/run"],
        needles=("refusing to allocate",), check=rss_below(1500), timeout=120, **huge)
    add("train-vae-hidden-1e9", M, "train vae --hidden 1000000000", "clear error",
        argv=[*train_vae, "--hidden", "1000000000"], needles=("refusing to allocate",),
        check=rss_below(1500), **huge)
    add("train-config-latent-1e9", M, "train vae --config with latent_dims [1000000000]",
        "clear error", argv=["train", "vae", *VAE, "--config", "{d}/c.json", "--max-steps", "1",
                             "--run-dir", "{d}/run"],
        setup=lambda c, d: (d / "c.json").write_text('{"latent_dims": [1000000000]}'),
        needles=("refusing to allocate",), check=rss_below(1500), **huge)
    add("resume-config-hidden-1e9", M, "a run's config.json edited to hidden [[1e9]], "
        "--resume", "clear error",
        argv=["train", "vae", "--run-dir", "{d}/run", "--resume", "--max-steps", "8",
              "--no-progress"],
        setup=lambda c, d: edit_json(copy_run(c, "vae", d / "run") / "config.json",
                                     lambda j: j.__setitem__("hidden", [[10**9]])),
        check=rss_below(1500), **huge)
    # fmt: on


# -- helpers of the catalogue ----------------------------------------------------------------


def truncate(path: Path, size: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:size])


def random_file(name: str, size: int) -> Callable[[Context, Path], None]:
    return lambda c, d: (d / name).write_bytes(random.Random(0).randbytes(size))


def tamper_npz(data: bytes) -> bytes:
    """The same arrays with one pixel changed: a well-formed file with other content."""
    import numpy as np

    arrays = dict(np.load(io.BytesIO(data)))
    key = next(iter(arrays))
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] ^= 0xFF
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def data_copy(rel: str, change: Callable[[bytes], bytes], sidecar: bool = False):
    """Setup: ``{d}/data/<rel>`` a changed copy of the shared data file (and a ``.sha256``
    record of the changed bytes next to it)."""

    def setup(ctx: Context, d: Path) -> None:
        import hashlib

        source = Path(ctx.env["DIFFVI_DATA"].split(os.pathsep)[0]) / rel
        dest = d / "data" / rel
        dest.parent.mkdir(parents=True)
        data = change(source.read_bytes())
        dest.write_bytes(data)
        if sidecar:
            digest = hashlib.sha256(data).hexdigest()
            dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")

    return setup


def decoy(name: str) -> Callable[[Context, Path], None]:
    """A folder ``name/`` in the case folder (the cwd) that looks like a model but is not one."""

    def setup(ctx: Context, d: Path) -> None:
        (d / name).mkdir()
        (d / name / "model.json").write_text('{"kind": "decoy-planted-in-cwd"}')
        (d / name / "model.safetensors").write_bytes(b"\0" * 64)

    return setup


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height grey pixels, with a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def json_field(path: Path, key: str, value: Any) -> str | None:
    if not path.exists():
        return f"{path.name} not written"
    got = json.loads(path.read_text()).get(key)
    return None if got == value else f"{key} = {got}, expected {value}"


def finite_export(run: Path) -> str | None:
    """A run that exited 0: its exported weights must be finite."""
    from safetensors.torch import load_file

    path = run / "export" / "model.safetensors"
    if not path.exists():
        return "exit 0 but no export"
    bad = [
        k for k, t in load_file(path).items() if t.is_floating_point() and not t.isfinite().all()
    ]
    return f"exit 0 with non-finite exported weights: {bad[:3]}" if bad else None


def trained_steps(run: Path, at_least: int) -> str | None:
    step = ckpt_step(run / "checkpoints" / "last.ckpt")
    if step is None:
        return "exit 0 but no loadable checkpoint"
    return None if step >= at_least else f"exit 0 after {step} optimiser steps (nothing trained)"


def restored_png(stem: str) -> Check:
    def check(ctx: Context, d: Path, p: Proc) -> str | None:
        return None if (d / "out" / "restored" / f"{stem}.png").exists() else "no restored PNG"

    return check


def same_as_8bit(ctx: Context, d: Path, p: Proc) -> str | None:
    """An accepted 16-bit PNG must give the metrics of its 8-bit copy (same seed)."""
    if p.rc != 0:
        return None
    ref = d / "ref"
    ref.mkdir()
    write_png(ref / "deep.png", grey_digit(), "L")
    q = ctx.diffvi([*RESTORE, "--out", d / "out8", "--input", ref / "deep.png"], d)
    if q.rc != 0:
        return f"the 8-bit reference failed: {classify(q)[1]}"
    a = json.loads((d / "out" / "metrics.json").read_text())
    b = json.loads((d / "out8" / "metrics.json").read_text())
    pick = lambda m: json.dumps(m.get("summary", m), sort_keys=True)  # noqa: E731
    return None if pick(a) == pick(b) else "16-bit PNG scored differently from its 8-bit copy"


# ---------------------------------------------------------------------------------------------
# Running a case
# ---------------------------------------------------------------------------------------------


API_PRELUDE = """
import sys, traceback

def _case():
{body}

try:
    _case()
except (ValueError, TypeError, OSError) as err:
    frame = traceback.extract_tb(err.__traceback__)[-1].filename.replace("\\\\", "/")
    if "/diffvi/" not in frame:
        raise  # raised inside torch or another library: shown as a traceback
    print(f"Error: {{type(err).__name__}}: {{err}}", file=sys.stderr)
    sys.exit(1)
"""


def wrap_argv(ctx: Context, case: Case, argv: list[str], d: Path, env: dict) -> list[str] | str:
    """The command under the case's simulated file system (or why it cannot be simulated)."""
    if case.wrap in ("full-disk", "read-only-fs"):
        if not ctx.can_unshare:
            return "no private mount namespace here (unshare -m needs root or user namespaces)"
        mount = d / ("full" if case.wrap == "full-disk" else "ro")
        mount.mkdir()
        if case.wrap == "full-disk":
            script = (
                'mount -t tmpfs -o size=128k tmpfs "$1" && '
                'dd if=/dev/zero of="$1/.filler" bs=4k >/dev/null 2>&1; shift; exec "$@"'
            )
        else:
            script = 'mount -t tmpfs -o ro,size=64k tmpfs "$1" && shift && exec "$@"'
        return [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(mount),
            *argv,
        ]
    if case.wrap == "nobody":
        locked = d / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        if not ctx.is_root:
            return argv
        if not ctx.can_setpriv:
            return "running as root without setpriv: chmod cannot refuse a write"
        home = d / "home"
        home.mkdir()
        home.chmod(0o777)
        d.chmod(0o755)
        env.update(
            HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), MPLCONFIGDIR=str(home / ".mpl")
        )
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    return argv


def run_case(ctx: Context, case: Case) -> dict:
    d = ctx.root / "cases" / case.id
    d.mkdir(parents=True)
    record: dict[str, Any] = {
        "id": case.id,
        "kind": case.kind,
        "what": case.what,
        "command": case.command(),
        "expected": list(case.expected),
        "fault_injection": case.is_fault,
    }
    started = time.perf_counter()
    try:
        if case.fault is not None:
            result = case.fault(ctx, d)
            procs = result.pop("procs", [])
            record.update(
                outcome=result["outcome"],
                message=result["message"],
                exit_code=procs[-1].rc if procs else None,
                peak_rss_mb=max((p.peak_rss_mb for p in procs), default=None),
                stderr_first_line=first_line(procs[-1].stderr) if procs else "",
                problems=[result["detail"]] if result.get("detail") else [],
            )
        else:
            record.update(run_command(ctx, case, d))
    except Exception as err:  # noqa: BLE001 - a broken case is reported, not fatal
        record.update(
            outcome="harness error",
            message=f"{type(err).__name__}: {err}",
            exit_code=None,
            problems=[],
            stderr_first_line="",
        )
    record["seconds"] = round(time.perf_counter() - started, 2)
    record["pass"] = record["outcome"] in case.expected and not record.get("problems")
    if record["pass"]:
        record.pop("output_tail", None)
    return record


def run_command(ctx: Context, case: Case, d: Path) -> dict:
    if case.setup is not None:
        case.setup(ctx, d)
    env = {**ctx.env, **{k: ctx.format(v, d) for k, v in case.env.items()}}
    if case.api is not None:
        body = textwrap.indent(textwrap.dedent(case.api).strip(), "    ")
        argv = [PYTHON, "-c", API_PRELUDE.format(body=body)]
    else:
        argv = [DIFFVI, *(ctx.format(a, d) for a in case.argv or [])]
    wrapped = wrap_argv(ctx, case, argv, d, env)
    if isinstance(wrapped, str):
        return {
            "outcome": "skipped",
            "message": wrapped,
            "exit_code": None,
            "problems": [],
            "stderr_first_line": "",
        }
    proc = run_proc(wrapped, d, env, case.timeout * ctx.timeout_scale, case.memory_limit)
    outcome, message = classify(proc)
    problems = []
    if case.check is not None and outcome != "hang":
        problem = case.check(ctx, d, proc)
        if problem:
            problems.append(problem)
    output = proc.stderr + proc.stdout
    if outcome in ERRORS or outcome == "multi-line error":
        missing = [n for n in case.needles if n not in output]
        if missing:
            problems.append(f"message does not name {missing}")
    if outcome == "accepted" and ("accepted" not in case.expected or problems):
        outcome = "silently wrong"
        if "accepted" not in case.expected:
            problems.append("exit 0: the bad input went through")
    if case.expected == ("refused safely",) and outcome != "accepted" and case.check:
        if outcome in ERRORS and not problems:
            outcome = "refused safely"
        elif outcome not in ("silently wrong", "hang") and case.check(ctx, d, proc) is None:
            message += " [refused with no side effect, but not as one clear line]"
    return {
        "outcome": outcome,
        "message": message,
        "exit_code": proc.rc,
        "peak_rss_mb": round(proc.peak_rss_mb, 1),
        "problems": problems,
        "stderr_first_line": first_line(proc.stderr),
        "argv": proc.argv[-60:] if case.api is None else ["python", "-c", "…"],
        "output_tail": (proc.stderr or proc.stdout)[-3000:],
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def shorten_paths(record: dict, case_dir: Path, root: Path) -> dict:
    """Messages with the case folder written {d} and the shared fixtures {fixtures}."""

    def short(value: Any) -> Any:
        if isinstance(value, str):
            return (
                value.replace(str(case_dir), "{d}")
                .replace(str(root / "fixtures"), "{fixtures}")
                .replace(str(root), "{ws}")
            )
        if isinstance(value, list):
            return [short(v) for v in value]
        return value

    keys = ("message", "problems", "stderr_first_line", "output_tail", "argv")
    return {k: short(v) if k in keys else v for k, v in record.items()}


SUMMARY_COLUMNS = (
    ("clear errors", ("clear error",)),
    ("usage errors", ("usage error",)),
    ("accepted, correct", ("accepted",)),
    ("recovered / refused safely", ("recovered", "refused safely")),
    ("multi-line or unclear errors", ("multi-line error", "unclear error")),
    ("tracebacks", ("traceback",)),
    ("hangs", ("hang",)),
    ("silently wrong", ("silently wrong",)),
    ("other", None),
)


def summary_rows(records: list[dict]) -> list[list]:
    rows = []
    known = {o for _, outs in SUMMARY_COLUMNS if outs for o in outs}
    for kind in (*KINDS, "all"):
        mine = [r for r in records if kind in ("all", r["kind"])]
        if not mine:
            continue
        counts = Counter(r["outcome"] for r in mine)
        cells = [
            sum(counts[o] for o in outs)
            if outs
            else sum(n for o, n in counts.items() if o not in known)
            for _, outs in SUMMARY_COLUMNS
        ]
        passed = sum(r["pass"] for r in mine)
        label = f"**{kind}**" if kind == "all" else kind
        rows.append([label, len(mine), f"{passed}/{len(mine)}", *cells])
    return rows


def cell(text: Any, limit: int = 220) -> str:
    text = "" if text is None else str(text)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown(records: list[dict], info: dict) -> str:
    lines = [
        f"# Reliability: bad inputs and injected faults ({info['mode']} mode)\n",
        f"`{info['command']}` on {info['tested']}, {info['date']}; "
        f"{info['machine_line']}; total {info['total_seconds']:.0f} s "
        f"({info['fixture_seconds']:.0f} s of it building the shared tiny runs).\n",
        "Outcome classes: *clear error* = exit 1 with one `Error: …` line and no traceback; "
        "*usage error* = exit 2, click's usage message naming the option; *accepted* = exit 0 "
        "and the result checked correct; *silently wrong* = exit 0 for an input that should be "
        "refused, or a wrong result; *recovered* = a fault left the run correct; *refused "
        "safely* = a security case refused with no side effect; *traceback*, *hang* "
        "(timeout), *multi-line error*, *unclear error*, *killed*, *skipped*. A case passes "
        "when its outcome is one it expects and its checks hold. Fixtures: `{vae}` a VAE "
        "trained 5 steps on digits, `{sbn}` an SBN trained 2 steps, `{vcf}` a 12-sample "
        "VCF, `{labels10}` labels of 10 of its samples; `{d}` the case's own folder.\n",
        "## Summary\n",
        markdown_table(
            ["kind", "cases", "pass", *[c for c, _ in SUMMARY_COLUMNS]], summary_rows(records)
        ),
    ]
    failing = [r for r in records if not r["pass"]]
    if failing:
        lines.append("## Failing cases\n")
        lines.append(
            markdown_table(
                ["case", "kind", "expected", "outcome", "command", "message / problem"],
                [
                    [
                        r["id"],
                        r["kind"],
                        " or ".join(r["expected"]),
                        r["outcome"],
                        cell(r["command"]),
                        cell("; ".join([r["message"], *r.get("problems", [])])),
                    ]
                    for r in failing
                ],
            )
        )
    for kind in KINDS:
        mine = [r for r in records if r["kind"] == kind]
        if not mine:
            continue
        lines.append(f"## {kind}\n")
        lines.append(
            markdown_table(
                ["case", "command", "expected", "outcome", "pass", "exit", "s", "message"],
                [
                    [
                        f"{r['id']}{' (fault)' if r['fault_injection'] else ''}",
                        cell(r["command"], 300),
                        " or ".join(r["expected"]),
                        r["outcome"],
                        "yes" if r["pass"] else "**NO**",
                        r.get("exit_code"),
                        r["seconds"],
                        cell("; ".join([r["message"], *r.get("problems", [])]), 300),
                    ]
                    for r in mine
                ],
            )
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def source_under_test(at: str | None, root: Path) -> tuple[Path | None, str]:
    """(the source tree to put on PYTHONPATH, its description). ``at``: a git revision,
    archived into the workspace (so other work in the checkout does not change the results);
    None: the installed diffvi (the working tree of an editable install)."""
    if at is None:
        commit = git_commit()
        dirty = " + uncommitted changes" if commit["dirty"] else ""
        return None, f"the working tree at {(commit['commit'] or 'no commit')[:7]}{dirty}"
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{at}^{{commit}}"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    src = root / "source"
    src.mkdir()
    archive = subprocess.run(["git", "archive", sha], cwd=REPO_ROOT, capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    return src, f"commit {sha[:7]} ({at}, a git archive of it)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a subset of every kind (~2 min)")
    parser.add_argument("--only", help="run the cases whose id contains any of these "
                        "comma-separated words (writes reliability-only.*)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--at", metavar="REV", help="test the code of git revision REV (e.g. "
                        "HEAD), archived apart from the working tree")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    parser.add_argument("--timeout-scale", type=float, default=1.0,
                        help="multiply every timeout (a busy machine)")  # fmt: skip
    args = parser.parse_args(argv)

    _catalogue()
    cases = [c for c in CASES if c.quick] if args.quick else [c for c in CASES if not c.quick_only]
    if args.only:
        words = args.only.split(",")
        cases = [c for c in CASES if any(w in c.id for w in words)]
    if args.list:
        for c in cases:
            print(f"{c.kind:20} {c.id:40} {' or '.join(c.expected):16} {c.command()[:110]}")
        full = sum(not c.quick_only for c in CASES)
        print(f"{len(cases)} listed; {full} in the full run, {sum(c.quick for c in CASES)} quick")
        return 0

    global SOURCE_ROOT  # noqa: PLW0603 - set once, before any case runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean the workspace up on kill
    root = Path(tempfile.mkdtemp(prefix="diffvi-reliability-"))
    root.chmod(0o755)
    src, tested = source_under_test(args.at, root)
    SOURCE_ROOT = src or REPO_ROOT
    ctx = Context(root, args.timeout_scale, src)
    mode = "only" if args.only else "quick" if args.quick else "full"
    print(f"{len(cases)} cases ({mode}) on {tested}; workspace {root}", flush=True)
    started = time.perf_counter()
    records = []
    try:
        for i, case in enumerate(cases):
            record = shorten_paths(run_case(ctx, case), root / "cases" / case.id, root)
            records.append(record)
            mark = "pass" if record["pass"] else "FAIL"
            print(f"[{i + 1}/{len(cases)}] {mark} {case.id}: {record['outcome']} "
                  f"({record['seconds']:.1f} s) {cell(record['message'], 110)}",
                  flush=True)  # fmt: skip
    finally:
        if not args.keep:
            for folder in root.rglob("*"):  # give write permission back before removing
                if folder.is_dir() and not folder.is_symlink():
                    folder.chmod(0o755)
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"workspace kept: {root}")
    total = time.perf_counter() - started

    info = machine_info()
    meta = {
        "mode": mode,
        "command": command_line(),
        "tested": tested,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine_line": (
            f"{info['cpu_count']}-core {info['cpu_model']}, "
            f"{'a CUDA GPU' if info['cuda'] else 'no GPU'}, torch {info['torch']}, "
            f"load average {info['loadavg'][0]:.1f} at the end (a shared machine), "
            f"running as {'root' if ctx.is_root else 'a user'}"
        ),  # fmt: skip
        "total_seconds": total,
        "fixture_seconds": sum(ctx.fixture_seconds.values()),
    }
    counts = Counter(r["outcome"] for r in records)
    columns = ["kind", "cases", "pass", *[c for c, _ in SUMMARY_COLUMNS]]
    payload = {
        "mode": mode,
        "tested": tested,
        "cases": len(records),
        "passed": sum(r["pass"] for r in records),
        "outcomes": dict(counts),
        "total_seconds": round(total, 1),
        "fixture_seconds": ctx.fixture_seconds,
        "machine": info,
        "running_as_root": ctx.is_root,
        "simulations": {
            "private mount namespace (full disk, read-only fs)": ctx.can_unshare,
            "setpriv (no-permission folder under root)": ctx.can_setpriv,
        },
        "environment": {k: ctx.env[k] for k in ("DIFFVI_DATA", "DIFFVI_OFFLINE",
                                                 "OMP_NUM_THREADS")},
        "summary_by_kind": [dict(zip(columns, row, strict=True)) for row in summary_rows(records)],
        "records": records,
    }  # fmt: skip
    name = {"full": "reliability", "quick": "reliability-quick", "only": "reliability-only"}[mode]
    json_path, md_path = write_results(name, payload, markdown(records, meta))
    print(f"{payload['passed']}/{len(records)} pass; {dict(counts)}; {total:.0f} s")
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
