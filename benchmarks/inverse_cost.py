"""Cost of RED-diff, DPS, ΠGDM and DDRM with an ADM-sized prior: seconds and peak memory per
image per network evaluation (NFE), so that the papers' cost claims can be checked (issue 20,
"Memory and speed at scale").

The claims. RED-diff (Mardani et al. 2023) calls its iterates "lightweight": each step is one
denoiser evaluation whose gradient is never taken, while DPS (Chung et al. 2023) and ΠGDM
(Song et al. 2023) differentiate through the denoiser at every step (a vector–Jacobian
product, VJP), so they must keep the activations of one network call for the backward pass and
pay for it: RED-diff ≈ 1 forward pass per NFE, DPS and ΠGDM ≈ 2 (the VJP to the input costs
about one more forward; the rule "backward ≈ 2 × forward" counts the weight gradients too,
which a VJP to the input does not compute). DDRM (Kawar et al. 2022) needs no gradient either
and claims competitive results "in as low as 20 NFEs" and "5× faster than the nearest
competitor" (DPS's own budget is 1000). This script measures the per-NFE figures; the budgets
turn them into per-image costs.

Network. The published ADM widths (:data:`diffvi.nn.adm.ADM_CONFIGS`: ``ffhq256``, DPS's
``ffhq_10m.pt``; ``imagenet256-uncond``, the prior of DDRM, ΠGDM and RED-diff) with
``image_size`` set to ``--size`` (so attention sits at the same feature-map sizes as published,
and ``--size 256`` is the published network), random weights (the zero-initialised output
layers drawn too), wrapped as a prior exactly as :func:`diffvi.diffusion.adm.load_adm_prior`
wraps a checkpoint (guided-diffusion's linear schedule, ε prediction, learned-range variance).

Problem. Colour images ``[B, 3, size, size]`` (uniform random pixels), the papers' operators
(``sr4-bicubic``: DDRM's and RED-diff's bicubic ×4; ``inpaint-box``: a centred box of half the
side), σ_y = 0.05 in [0, 1] units; each solver built with :func:`~diffvi.inverse.solvers.
build_solver` and its defaults but ``steps``, and run through ``Solver.solve`` as
``diffvi restore`` does.

Measurement, one fresh process per configuration (network × batch × solver × operator):

- a forward pre-hook on the network stamps wall time (``time.perf_counter``) and this
  process's CPU time (``time.process_time``, both threads) at every call; the interval between
  consecutive calls is one full solver step (network forward, the VJP where there is one, the
  update); the last call (DPS's, ΠGDM's and DDRM's final x̂₀) closes the last interval and is
  not itself timed. The first interval is a warm-up and dropped; the figure is the median of
  the rest (``steps − 2`` intervals). Per image: divided by the batch.
- "× forward": that step time over the median of ``--forward-repeats`` plain forward passes
  (``no_grad``, same batch) timed in the same process right after the solver — a paired ratio,
  so the machine's load cancels as far as it can.
- "network backward / NFE": the number of gradients that flowed back through the network's
  output (a tensor hook on it), per call — a direct record of whether a solver back-propagates
  through the network, independent of timing.
- peak memory: the process's resident-set high-water mark during the solve (VmHWM, reset via
  ``/proc/self/clear_refs`` after the model is built; ``resource.getrusage`` ``ru_maxrss`` where
  that is unavailable) minus the resident set after building the model, i.e. everything the
  solve allocates on top of the weights. CUDA: ``torch.cuda.max_memory_allocated`` above the
  allocated bytes after the build.
- three reference rows per network and batch: ``forward`` (the network under ``no_grad``),
  ``forward+vjp`` (forward with its graph, then the VJP to the input): what "one forward" and
  "one differentiated step" cost on this machine; and ``forward+graph``, the memory of the
  official RED-diff loop (NVlabs/RED-diff ``algos/reddiff.py``): it calls the network with
  gradients enabled (x_t depends on μ), never back-propagates through it (ε̂ is detached), but
  keeps the output ``x0_hat`` and its graph until the next call has returned (the name is
  rebound after the call). Ours runs the denoiser under ``no_grad``.

Modes:

  python benchmarks/inverse_cost.py --quick   # CI: a tiny ADM at 32 px, 3 steps, in-process,
                                              # 1 thread (seconds)
  python benchmarks/inverse_cost.py           # full: ffhq256 and imagenet256-uncond widths at
                                              # 64 px, B = 1 and 4, both operators, 6 steps
  python benchmarks/inverse_cost.py --networks ffhq256 --batches 1   # a part of it
  python benchmarks/inverse_cost.py --device cuda --size 256   # on a GPU: the published size
  python benchmarks/inverse_cost.py --assemble-only

Every configuration is saved as a part file under ``results/inverse_cost/<name>/`` as soon as
it finishes (an interrupted run resumes; ``--quick`` saves none and always measures);
``--budget-minutes`` stops starting new ones (every run's budget, time and what it skipped are
recorded in ``runs.json`` there). Writes ``results/<name>.{json,md}``, ``<name>`` =
``inverse_cost`` with ``-quick``, ``-<device>``, ``-<size>px`` suffixes where they differ from
the full CPU run at 64 px (``--name`` overrides).
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from common import (
    RESULTS_DIR,
    command_line,
    machine_info,
    markdown_table,
    run_or_load,
    write_json,
    write_results,
)

SOLVERS = ("red-diff", "dps", "pigdm", "ddrm")
REFERENCES = ("forward", "forward+vjp", "forward+graph")
OPERATORS = ("sr4-bicubic", "inpaint-box")
NOISE_STD = 0.05
# The quick mode's network: a tiny ADM with the published layout (scale-shift norm, residual
# resampling, learned σ).
TINY = {
    "model_channels": 32,
    "num_res_blocks": 1,
    "attention_resolutions": (16,),
    "channel_mult": (1, 2),
    "num_head_channels": 32,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "learn_sigma": True,
}
# Budgets (denoiser evaluations per image) that turn the per-NFE cost into a per-image cost:
# DPS's 1000 and DDRM's 20 are their papers'; ΠGDM and RED-diff at diffvi's default, 100.
BUDGETS = {"dps": 1000, "pigdm": 100, "red-diff": 100, "ddrm": 20}  # this order in tables
LABELS = {
    "red-diff": "RED-diff",
    "dps": "DPS",
    "pigdm": "ΠGDM",
    "ddrm": "DDRM",
    "forward": "forward",
    "forward+vjp": "forward+VJP",
    "forward+graph": "forward, graph kept",
}


# ------------------------------------------------------------------------------ one job


def network_config(network: str, size: int) -> dict[str, Any]:
    """ADMUNet's keyword arguments: a published config's widths (or the tiny one) at ``size``."""
    from diffvi.nn.adm import ADM_CONFIGS

    base = dict(TINY) if network == "tiny" else dict(ADM_CONFIGS[network])
    return {**base, "image_size": size}


def build_prior(network: str, size: int, seed: int, device: torch.device):
    """The ADM prior with random weights (zero-initialised layers drawn too), on ``device``."""
    from diffvi.diffusion.adm import adm_alphas_cumprod
    from diffvi.diffusion.discrete import discrete_diffusion_model
    from diffvi.nn.adm import ADMUNet

    torch.manual_seed(seed)
    net = ADMUNet(**network_config(network, size))
    with torch.no_grad():
        for p in net.parameters():
            if not bool(p.any()):  # the zero-initialised output layers: a random net's output
                fan_in = p[0].numel() if p.ndim > 1 else 100
                p.normal_(0.0, fan_in**-0.5)
    prior = discrete_diffusion_model(
        net, adm_alphas_cumprod(), "epsilon", learned_variance=net.learn_sigma
    )
    return prior.to(device).eval(), sum(p.numel() for p in net.parameters())


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class Memory:
    """Peak bytes above the level at :meth:`start` (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.method = device, None
        self.base = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base, self.method = torch.cuda.memory_allocated(self.device), "cuda-allocated"
            return
        rss = _status_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
            self.method = "VmHWM (reset after build) - VmRSS after build"
        except OSError:
            self.method = "ru_maxrss - RSS after build"
        self.base = 1024 * (rss or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

    def peak(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        hwm = _status_kib("VmHWM") if self.method.startswith("VmHWM") else None
        kib = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, 1024 * kib - self.base)

    def resident(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return 1024 * (_status_kib("VmRSS") or 0)


class CallClock:
    """Stamps (wall, CPU) at every call of ``module`` and counts the gradients that flow back
    through its output."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.device = device
        self.stamps: list[tuple[float, float]] = []
        self.backward = 0
        self._handles = [
            module.register_forward_pre_hook(self._pre),
            module.register_forward_hook(self._post),
        ]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pre(self, _module, _inputs) -> None:
        self._sync()
        self.stamps.append((time.perf_counter(), time.process_time()))

    def _post(self, _module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._count)

    def _count(self, grad: torch.Tensor) -> None:
        self.backward += 1

    def end(self) -> None:
        """Stamp the end of the last step (the intervals then cover every call)."""
        self._sync()
        self.stamps.append((time.perf_counter(), time.process_time()))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def intervals(self) -> tuple[list[float], list[float]]:
        wall = [b[0] - a[0] for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        cpu = [b[1] - a[1] for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        return wall, cpu


def steady(values: list[float]) -> float:
    """The median after the first (warm-up) value, when there are at least two."""
    return statistics.median(values[1:] if len(values) > 1 else values)


class Workload:
    """One solver (or reference) on one problem: ``run(steps)`` calls the network ``steps``
    times and returns ``(nfe, diverged)``."""

    def __init__(self, job: dict[str, Any], prior, size: int, batch: int) -> None:
        from diffvi.inverse.registry import build_operator
        from diffvi.inverse.restore import simulate_measurement

        self.job, self.prior = job, prior
        self.device = torch.device(job["device"])
        shape = (3, size, size)
        gen = torch.Generator().manual_seed(job["seed"])
        self.z = torch.randn((batch, *shape), generator=gen).to(self.device)
        self.t = torch.full((batch,), 0.5, device=self.device)
        if job["solver"] not in REFERENCES:
            masks = torch.Generator().manual_seed(job["seed"])
            self.operator = build_operator(job["operator"], shape, masks).to(self.device)
            x = torch.rand((batch, *shape), generator=gen).to(self.device)
            self.y = simulate_measurement(x, self.operator, NOISE_STD, gen)

    def forward(self) -> None:
        with torch.no_grad():
            self.prior.predict_noise(self.z, self.t)

    def run(self, steps: int) -> tuple[int, bool]:
        from diffvi.inverse.solvers import build_solver

        solver = self.job["solver"]
        if solver == "forward":
            for _ in range(steps):
                self.forward()
            return steps, False
        if solver == "forward+graph":  # the official RED-diff loop's memory, see the docstring
            kept = None
            for _ in range(steps):
                z_in = self.z.detach().requires_grad_(True)
                out = self.prior.predict_noise(z_in, self.t)
                kept = out  # the previous output and its graph are released only now
            del kept, out
            return steps, False
        if solver == "forward+vjp":
            for _ in range(steps):
                z_in = self.z.detach().requires_grad_(True)
                eps = self.prior.predict_noise(z_in, self.t)
                (g,) = torch.autograd.grad(eps, z_in, grad_outputs=torch.ones_like(eps))
                del eps, g, z_in
            return steps, False
        generator = torch.Generator(device=self.device).manual_seed(1)
        try:
            result = build_solver(solver, steps=steps).solve(
                self.y, self.operator, self.prior, NOISE_STD, generator
            )
        except FloatingPointError:  # random weights: the cost is measured all the same
            return steps, True
        return result.nfe, False


def exact_cpu_allocations() -> None:
    """Give every allocation above one page its own pages, returned when freed (glibc), so that
    the resident set follows the live tensors (as ``inverse_mnist.py``'s memory stage)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 4096)  # M_MMAP_THRESHOLD (a fixed value also stops its dynamic growth)
    libc.mallopt(-1, 4096)  # M_TRIM_THRESHOLD


def _setup(job: dict[str, Any]):
    torch.set_num_threads(job["threads"])
    torch.set_flush_denormal(True)
    device = torch.device(job["device"])
    start = time.perf_counter()
    prior, params = build_prior(job["network"], job["size"], job["seed"], device)
    return device, prior, params, time.perf_counter() - start


def run_memory_job(job: dict[str, Any]) -> dict[str, Any]:
    """The working memory of one configuration: exact allocations (CPU), a warm-up solve at half
    the size (imports, one-time initialisation), then the peak of a ``job["memory_steps"]``-step
    solve above the resident set just before it (model, problem and warm-up included)."""
    if job["device"] == "cpu" and not job.get("memory_in_process"):
        exact_cpu_allocations()  # only in a process of its own: it slows every allocation
    device, prior, params, _ = _setup(job)
    Workload(job, prior, job["size"] // 2, 1).run(2)
    work = Workload(job, prior, job["size"], job["batch"])
    clock = CallClock(prior.denoiser.network, device)
    memory = Memory(device)
    memory.start()
    nfe, diverged = work.run(job["memory_steps"])
    peak = memory.peak()
    clock.remove()
    return {
        "working_peak_bytes": peak,
        "working_peak_mb": peak / 2**20,
        "working_peak_mb_per_image": peak / 2**20 / job["batch"],
        "memory_steps": job["memory_steps"],
        "memory_network_backward": clock.backward,
        "memory_method": memory.method + (" (exact allocations)" if device.type == "cpu" else ""),
        "memory_diverged": diverged,
    }


def run_time_job(job: dict[str, Any]) -> dict[str, Any]:
    """The time of one configuration, and the peak memory of a first solve in a fresh process
    (one-time initialisation included): see the module docstring."""
    load_start = list(os.getloadavg())
    device, prior, params, build_seconds = _setup(job)
    b, steps = job["batch"], job["steps"]
    memory = Memory(device)
    memory.start()
    resident_after_build = memory.resident()
    work = Workload(job, prior, job["size"], b)
    clock = CallClock(prior.denoiser.network, device)
    solver = job["solver"]
    start = time.perf_counter()
    nfe, diverged = work.run(steps)
    if solver in REFERENCES:
        clock.end()  # every call the same: the last one timed too
    solve_seconds = time.perf_counter() - start
    peak = memory.peak()
    clock.remove()
    calls = len(clock.stamps) - (1 if solver in REFERENCES else 0)
    wall, cpu = clock.intervals()
    # The paired reference: plain forward passes in this process, right after the solve.
    fwd_wall, fwd_cpu = [], []
    for _ in range(job["forward_repeats"] if solver != "forward" else 0):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        w0, c0 = time.perf_counter(), time.process_time()
        work.forward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        fwd_wall.append(time.perf_counter() - w0)
        fwd_cpu.append(time.process_time() - c0)
    if solver == "forward":  # its own steady calls
        fwd_wall, fwd_cpu = wall[1:] or wall, cpu[1:] or cpu
    step_wall, step_cpu = steady(wall), steady(cpu)
    forward_wall, forward_cpu = statistics.median(fwd_wall), statistics.median(fwd_cpu)
    return {
        **job,
        "params": params,
        "network_config": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in network_config(job["network"], job["size"]).items()
        },
        "nfe": nfe,
        "network_calls": calls,
        "diverged": diverged,
        "build_seconds": build_seconds,
        "solve_seconds": solve_seconds,
        "step_wall_seconds": wall,
        "step_cpu_seconds": cpu,
        "s_per_nfe": step_wall,
        "cpu_s_per_nfe": step_cpu,
        "s_per_nfe_per_image": step_wall / b,
        "cpu_s_per_nfe_per_image": step_cpu / b,
        "forward_wall_seconds": fwd_wall,
        "forward_cpu_seconds": fwd_cpu,
        "ratio_to_forward_wall": step_wall / forward_wall,
        "ratio_to_forward_cpu": step_cpu / forward_cpu,
        "network_backward": clock.backward,
        "network_backward_per_call": clock.backward / max(calls, 1),
        "first_solve_peak_bytes": peak,
        "first_solve_peak_mb": peak / 2**20,
        "first_solve_memory_method": memory.method,
        "resident_after_build_mb": resident_after_build / 2**20,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "cpu_share": (sum(cpu) / sum(wall)) if sum(wall) > 0 else None,
    }


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this process: its time, then (CUDA, or in-process runs) its
    memory; a fresh-process CPU run measures the memory in a second process."""
    record = run_time_job(job)
    if job.get("memory_in_process"):
        record.update(run_memory_job(job))
    return record


def omp_wait_policy() -> str:
    """The OpenMP wait policy of the child processes: ``$OMP_WAIT_POLICY``, else passive.

    Threads that wait for work sleep instead of spinning: on this shared 2-core machine under
    load, the default active wait made a 2-thread forward pass of the ffhq256-width ADM at 64 px
    5-10x slower in wall and CPU time than one thread (measured); passive, 2 threads cost what
    one does. It must be set before torch loads, hence only for the child processes."""
    return os.environ.get("OMP_WAIT_POLICY", "PASSIVE")


def job_in_fresh_process(job: dict[str, Any], out: Path) -> dict[str, Any]:
    """:func:`run_time_job`, then :func:`run_memory_job`, each in a new Python process (its own
    allocator state and peak resident set)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {}
    for mode in ("time", "memory"):
        tmp = out.with_name(f"{out.name}.{mode}")
        command = [sys.executable, __file__, "--job", json.dumps({**job, "mode": mode})]
        command += ["--job-out", str(tmp)]
        env = {**os.environ, "OMP_WAIT_POLICY": omp_wait_policy()}
        subprocess.run(command, check=True, env=env)
        record.update(json.loads(tmp.read_text()))
        tmp.unlink()
    return record


# ------------------------------------------------------------------------------- assembly


def _fmt_mb(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def results_table(records: list[dict]) -> str:
    header = [
        "network", "B", "solver", "operator", "steps timed", "s / NFE / image",
        "CPU s / NFE / image", "× forward (CPU)", "× forward (wall)", "network backward passes",
        "peak MB", "peak MB / image", "first-solve peak MB", "CPU share",
    ]  # fmt: skip
    rows = []
    for r in records:
        timed = max(len(r["step_wall_seconds"]) - 1, 1)
        rows.append(
            [
                r["network"],
                r["batch"],
                LABELS[r["solver"]] + (" (diverged)" if r["diverged"] else ""),
                r["operator"] or "—",
                timed,
                r["s_per_nfe_per_image"],
                r["cpu_s_per_nfe_per_image"],
                r["ratio_to_forward_cpu"],
                r["ratio_to_forward_wall"],
                f"{r['network_backward']} of {r['network_calls']}",
                _fmt_mb(r["working_peak_mb"]),
                _fmt_mb(r["working_peak_mb_per_image"]),
                _fmt_mb(r["first_solve_peak_mb"]),
                None if r["cpu_share"] is None else f"{r['cpu_share']:.2f}",
            ]
        )
    return markdown_table(header, rows)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def comparisons(records: list[dict]) -> list[dict]:
    """Per network and batch, the measured ratios beside the papers' claims (averaged over the
    operators, whose own cost is negligible next to the network's). Time ratios are ratios of
    the paired "× forward" figures (each against plain forward passes in its own process), so
    that a change of the machine's load between processes cancels."""
    out = []
    for network in dict.fromkeys(r["network"] for r in records):
        for batch in dict.fromkeys(r["batch"] for r in records if r["network"] == network):
            cell = [r for r in records if r["network"] == network and r["batch"] == batch]

            def figure(solver: str, key: str, cell: list[dict] = cell) -> float | None:
                return _mean([r[key] for r in cell if r["solver"] == solver and r[key]])

            red_time = figure("red-diff", "ratio_to_forward_cpu")
            red_mem = figure("red-diff", "working_peak_mb")
            row: dict[str, Any] = {"network": network, "batch": batch}
            for solver in ("dps", "pigdm", "ddrm"):
                cost = figure(solver, "ratio_to_forward_cpu")
                mem = figure(solver, "working_peak_mb")
                row[f"{solver}_over_red_time"] = cost / red_time if cost and red_time else None
                row[f"{solver}_over_red_memory"] = mem / red_mem if mem and red_mem else None
            row["vjp_over_forward_time"] = figure("forward+vjp", "ratio_to_forward_cpu")
            vjp_m = figure("forward+vjp", "working_peak_mb")
            fwd_m = figure("forward", "working_peak_mb")
            row["vjp_over_forward_memory"] = vjp_m / fwd_m if vjp_m and fwd_m else None
            kept = figure("forward+graph", "working_peak_mb")
            row["official_red_over_red_memory"] = kept / red_mem if kept and red_mem else None
            dps_mem = figure("dps", "working_peak_mb")
            row["official_red_over_dps_memory"] = kept / dps_mem if kept and dps_mem else None
            row["cpu_s_per_image_at_budget"] = {
                s: (figure(s, "cpu_s_per_nfe_per_image") or math.nan) * n
                for s, n in BUDGETS.items()
            }
            per = row["cpu_s_per_image_at_budget"]
            row["dps_1000_over_ddrm_20"] = per["dps"] / per["ddrm"]
            row["dps_1000_over_red_100"] = per["dps"] / per["red-diff"]
            out.append(row)
    return out


CLAIMS = [
    ("dps_over_red_time", "DPS / RED-diff, time per NFE",
     "RED-diff: no backprop through the denoiser, DPS backprops every step. Expected ≈ 2: "
     "forward + a VJP to the input (≈ one more forward; no weight gradients), not 3"),
    ("pigdm_over_red_time", "ΠGDM / RED-diff, time per NFE", "as DPS (a VJP too): ≈ 2"),
    ("ddrm_over_red_time", "DDRM / RED-diff, time per NFE",
     "≈ 1: neither differentiates the network"),
    ("vjp_over_forward_time", "forward+VJP / forward",
     "≈ 2 for the input gradient alone (≈ 3 with weight gradients, as in training)"),
    ("dps_over_red_memory", "DPS / RED-diff, peak memory",
     "> 1: DPS keeps one network call's activations for its VJP"),
    ("pigdm_over_red_memory", "ΠGDM / RED-diff, peak memory", "> 1, as DPS"),
    ("ddrm_over_red_memory", "DDRM / RED-diff, peak memory", "≈ 1"),
    ("vjp_over_forward_memory", "forward+VJP / forward, peak memory",
     "the activations a backward pass needs, against a forward's transient ones"),
    ("official_red_over_red_memory", "official RED-diff loop (graph kept) / ours, peak memory",
     "the paper's memory advantage needs the denoiser under no_grad"),
    ("official_red_over_dps_memory", "official RED-diff loop (graph kept) / DPS, peak memory",
     "≈ 1 or more: the graph is held, never used"),
    ("dps_1000_over_red_100", "DPS-1000 / RED-diff-100, per image",
     "1000 × 2 / 100 = 20 at each one's own budget"),
    ("dps_1000_over_ddrm_20", "DPS-1000 / DDRM-20, per image",
     'DDRM: competitive "in as low as 20 NFEs"; 1000 × 2 / 20 = 100'),
]  # fmt: skip


def claims_table(rows: list[dict]) -> str:
    """One row per quantity, one column per network and batch, the claim last."""
    header = ["quantity", *(f"{r['network']} B={r['batch']}" for r in rows), "claim / expected"]
    lines = [[label, *(r[key] for r in rows), claim] for key, label, claim in CLAIMS]
    lines.append(
        [
            "CPU s / image: DPS-1000, ΠGDM-100, RED-diff-100, DDRM-20",
            *(", ".join(f"{r['cpu_s_per_image_at_budget'][s]:.3g}" for s in BUDGETS) for r in rows),
            "per-NFE CPU seconds × budget",
        ]
    )
    return markdown_table(header, lines)


def assemble(args: argparse.Namespace, records: list[dict], payload: dict) -> None:
    rows = comparisons(records)
    budget = payload["budget"]
    machine = payload["machine"]
    loads = [x for r in records for x in (r["loadavg_start"][0], r["loadavg_end"][0])]
    md = [
        f"# Solver cost with an ADM-sized prior — `{args.name}`\n",
        f"`{payload['command_hint']}`\n",
        f"Device {args.device} ({'GPU' if args.device.startswith('cuda') else machine['cpu_model']}"
        f", {args.threads} threads); images [B, 3, {args.size}, {args.size}]; σ_y = {NOISE_STD}; "
        f"{args.steps} solver steps per configuration (the first interval a warm-up, the "
        f"median of the rest); {args.forward_repeats} paired forward passes; seed {args.seed}; "
        + (
            "in-process (quick: peak memory is not exact, it shares the process's heap)."
            if args.in_process
            else "one fresh process per configuration."
        )
        + f" Load average (1 min) {min(loads):.1f}–{max(loads):.1f} during the runs on "
        f"{machine['cpu_count']} cores (the machine was shared); CPU share = CPU seconds / wall "
        f"seconds of the timed steps (= the thread count when they ran the whole time).\n",
        f"Budget: {len(budget['runs'])} runs, {budget['minutes_in_all']:.0f} minutes in all ("
        + "; ".join(
            f"`{r['command']}`: {r['minutes']:.0f} of {r['budget_minutes']:.0f} min, "
            f"{len(r['configurations_run'])} configurations"
            + (f", {len(r['skipped_for_time'])} skipped for time" if r["skipped_for_time"] else "")
            + (f" — {r['note']}" if r.get("note") else "")
            for r in budget["runs"]
        )
        + f"). Not run: {', '.join(budget['missing']) or 'none'}.\n",
    ]
    if not torch.cuda.is_available() and args.device == "cpu":
        md.append(
            "No GPU was available in this session: the 256×256 run (`--device cuda --size 256`) "
            "is not in these results.\n"
        )
    md += ["\n## Per configuration\n\n", results_table(records)]
    md += ["\n## Against the papers' claims\n\n", claims_table(rows)]
    params = {r["network"]: r["params"] for r in records}
    md.append(
        "\nParameters: "
        + ", ".join(f"{n} {p / 1e6:.1f}M" for n, p in params.items())
        + ". Time ratios between solvers are ratios of their paired × forward (CPU) figures "
        "(CPU time is less sensitive to the load than wall time, and the pairing cancels what "
        "remains); per-image costs are CPU seconds per NFE × the budget.\n"
    )
    write_results(args.name, {**payload, "records": records, "comparisons": rows}, "".join(md))


# ------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI: tiny ADM, 32 px, 3 steps, in-process")
    p.add_argument("--networks", default=None,
                   help="ADM configs or 'tiny' (default: both published; quick: tiny)")  # fmt: skip
    p.add_argument("--solvers", default=",".join(REFERENCES + SOLVERS))
    p.add_argument("--operators", default=None, help=f"default: {','.join(OPERATORS)}")
    p.add_argument("--batches", default=None, help="comma-separated (default: 1,4; quick: 1,2)")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default 6; quick 3)")
    p.add_argument("--forward-repeats", type=int, default=None, help="default 3; quick 1")
    p.add_argument("--memory-steps", type=int, default=3, help="steps of the memory run")
    p.add_argument("--size", type=int, default=None, help="image side (default 64; quick 32)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default 2; quick, in-process: 1)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-minutes", type=float, default=90.0,
                   help="start no new configuration after this")  # fmt: skip
    p.add_argument("--in-process", action="store_true",
                   help="no fresh process per configuration (quick's default)")  # fmt: skip
    p.add_argument("--name", default=None, help="results name (default from mode/device/size)")
    p.add_argument("--assemble-only", action="store_true")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    p.add_argument("--job-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    args.networks = args.networks or ("tiny" if q else "ffhq256,imagenet256-uncond")
    args.operators = args.operators or (OPERATORS[0] if q else ",".join(OPERATORS))
    args.batches = args.batches or ("1,2" if q else "1,4")
    args.steps = args.steps or (3 if q else 6)
    args.forward_repeats = args.forward_repeats or (1 if q else 3)
    args.size = args.size or (32 if q else 64)
    args.in_process = args.in_process or q
    args.threads = args.threads or (1 if args.in_process else 2)
    if args.steps < 2:
        p.error("--steps must be >= 2 (the solvers' minimum)")
    if args.name is None:
        args.name = "inverse_cost" + ("-quick" if q else "")
        if args.device != "cpu":
            args.name += f"-{args.device.split(':')[0]}"
        if args.size != (32 if q else 64):
            args.name += f"-{args.size}px"
    return args


def jobs_of(args: argparse.Namespace) -> list[dict[str, Any]]:
    common = {
        "size": args.size,
        "steps": args.steps,
        "seed": args.seed,
        "threads": args.threads,
        "device": args.device,
        "forward_repeats": args.forward_repeats,
        "memory_steps": args.memory_steps,
        "memory_in_process": args.in_process,
    }
    solvers = args.solvers.split(",")
    jobs = []
    # Network, then batch, then operator (the references with the first), so that a budget
    # that runs out leaves whole solver sets: every solver on one operator first.
    for network in args.networks.split(","):
        for batch in map(int, args.batches.split(",")):
            for k, operator in enumerate(args.operators.split(",")):
                for solver in solvers:
                    if solver in REFERENCES and k > 0:
                        continue
                    op = None if solver in REFERENCES else operator
                    jobs.append(
                        {**common, "network": network, "batch": batch, "solver": solver,
                         "operator": op}
                    )  # fmt: skip
    return jobs


def part_path(args: argparse.Namespace, job: dict[str, Any]) -> Path:
    op = job["operator"] or "none"
    name = f"{job['network']}-b{job['batch']}-{job['solver']}-{op}.json"
    return RESULTS_DIR / "inverse_cost" / args.name / name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.job is not None:  # a child process: one configuration
        job = json.loads(args.job)
        run = run_memory_job if job.pop("mode") == "memory" else run_time_job
        Path(args.job_out).write_text(json.dumps(run(job)) + "\n")
        return 0
    machine = machine_info()
    jobs = jobs_of(args)
    start = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    deadline = start + 60 * args.budget_minutes
    skipped, ran = [], []
    fresh: dict[Path, dict] = {}  # quick: measured now, not saved (a CI run never resumes)
    if not args.assemble_only:
        for k, job in enumerate(jobs):
            path = part_path(args, job)
            label = f"{job['network']} B={job['batch']} {job['solver']} {job['operator'] or ''}"
            if path.exists() and not args.quick:
                print(f"[{k + 1}/{len(jobs)}] {label} (saved)", flush=True)
                continue
            if time.perf_counter() > deadline:
                print(f"[{k + 1}/{len(jobs)}] {label}: skipped, budget spent", flush=True)
                skipped.append(label)
                continue
            print(f"[{k + 1}/{len(jobs)}] {label}", flush=True)
            compute = (lambda j=job: run_job(j)) if args.in_process else (
                lambda j=job, p=path: job_in_fresh_process(j, p)
            )  # fmt: skip
            record = fresh[path] = compute() if args.quick else run_or_load(path, compute)
            ran.append(label)
            print(
                f"    {record['s_per_nfe_per_image']:.3f} s/NFE/image (CPU "
                f"{record['cpu_s_per_nfe_per_image']:.3f}), x forward "
                f"{record['ratio_to_forward_cpu'] or 1:.2f}, backward/NFE "
                f"{record['network_backward_per_call']:.2f}, peak "
                f"{record['working_peak_mb']:.0f} MB (first solve "
                f"{record['first_solve_peak_mb']:.0f}), "
                f"load {record['loadavg_end'][0]:.1f}",
                flush=True,
            )
    runs_path = RESULTS_DIR / "inverse_cost" / args.name / "runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else []
    if (ran or skipped) and not args.quick:  # every invocation that ran, with its budget
        runs.append(
            {
                "command": command_line() if argv is None else " ".join(argv),
                "started": started,
                "minutes": (time.perf_counter() - start) / 60,
                "budget_minutes": args.budget_minutes,
                "configurations_run": ran,
                "skipped_for_time": skipped,
            }
        )
        write_json(runs_path, runs)
    if args.quick:
        runs = [{"command": command_line() if argv is None else " ".join(argv),
                 "started": started, "minutes": (time.perf_counter() - start) / 60,
                 "budget_minutes": args.budget_minutes, "configurations_run": ran,
                 "skipped_for_time": skipped}]  # fmt: skip
    records, missing = [], []
    for job in jobs:
        path = part_path(args, job)
        if path in fresh:
            records.append(fresh[path])
        elif path.exists() and not args.quick:
            records.append(json.loads(path.read_text()))
        else:
            missing.append(f"{job['network']} B={job['batch']} {job['solver']} {job['operator']}")
    if not records:
        print("nothing to assemble", flush=True)
        return 1
    hint = command_line() if argv is None else "python benchmarks/inverse_cost.py " + " ".join(argv)
    payload = {
        "machine": machine,
        "seeds": {"weights_and_data": args.seed, "solver": 1},
        "settings": {
            "networks": args.networks.split(","),
            "solvers": args.solvers.split(","),
            "operators": args.operators.split(","),
            "batches": [int(b) for b in args.batches.split(",")],
            "steps": args.steps,
            "memory_steps": args.memory_steps,
            "forward_repeats": args.forward_repeats,
            "size": args.size,
            "device": args.device,
            "threads": args.threads,
            "noise_std": NOISE_STD,
            "in_process": args.in_process,
            "omp_wait_policy": (
                os.environ.get("OMP_WAIT_POLICY") if args.in_process else omp_wait_policy()
            ),
            "quick": args.quick,
        },
        "budget": {
            "runs": runs,
            "minutes_in_all": sum(r["minutes"] for r in runs),
            "missing": missing,
        },
        "gpu_available": torch.cuda.is_available(),
        "budgets_nfe": BUDGETS,
        "command_hint": hint,
    }
    assemble(args, records, payload)
    print(f"wrote {RESULTS_DIR / args.name}.{{json,md}}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
