"""IWAE(k=50) training speed against Pyro (and pythae) and the k=5000 evaluation time, each
compared with the matmul-bound minimum measured on this machine in the same run.

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/iwae_speed.py            # full (several minutes)
    PYTHONPATH=src python benchmarks/iwae_speed.py --quick    # CI-sized, well under a minute
    PYTHONPATH=src python benchmarks/iwae_speed.py --threads 1 --compare eval   # issue 22

Writes ``benchmarks/results/iwae_speed.{json,md}`` (``iwae_speed_quick.*`` with ``--quick``).
``--compare eval`` times only the k = 5000 evaluation, the current ``estimate_log_likelihood``
against the pre-issue-22 path (reproduced below: 25,000-row chunks, the full logits through
``BCEWithLogits``, ``torch.logsumexp``) interleaved block by block, and writes
``iwae_speed_eval{_quick}.{json,md}``; ``--compare train`` times IWAE(k = 50) training steps,
ours now against ours with the pre-issue-22 likelihood (the decoder's full logits) and Pyro,
and writes ``iwae_speed_train{_quick}.{json,md}``. Both record wall and CPU time (single
thread: CPU time is what a loaded machine's time-slicing does not inflate).

Network: the IWAE paper's one-stochastic-layer MNIST model, encoder 784-200-200-(2·50) and
decoder 50-200-200-784, tanh, Bernoulli likelihood with logits, N(0, I) prior; batch 20, k = 50,
Adam (lr 1e-3). Every implementation starts from the same initial weights and sees the same
batches (binarised MNIST when found, else random binary images; timing hardly depends on them).

Implementations, each run the way a user would run it:
- ``ours``: ``diffvi.objectives.IWAE(k=50)`` + a plain ``torch.optim.Adam`` loop, with the
  library's default ``configure_numerics(flush_denormal=True)``; also with flush-denormal off.
- ``pyro``: ``SVI`` + ``pyro.optim.Adam`` with ``RenyiELBO(alpha=0, num_particles=50,
  vectorize_particles=True)`` on the same networks (torch default denormals, and flushed).
- ``pythae``: ``pythae.models.IWAE`` (``reconstruction_loss="bce"``, ``number_samples=50``) with
  the same networks (its decoder must output probabilities, so a sigmoid is appended), driven
  by a plain Adam loop calling ``model({"data": x}).loss`` (not pythae's trainer), if it can be
  installed without changing torch.

Measurements are interleaved (one timing of every implementation per round, several rounds)
and the median is reported, because the machine is shared and noisy.

FLOP count (a linear layer on n rows, in -> out: 2·n·in·out FLOPs; biases, activations and the
likelihood are elementwise and not counted):
- forward of one step = encoder on B = 20 rows (784·200 + 200·200 + 200·100 MACs per row)
  + decoder on K·B = 1000 rows (50·200 + 200·200 + 200·784 MACs per row)
  = 8.67 + 413.6 = 422.3 MFLOP;
- forward + backward ≈ 3 × forward = 1.267 GFLOP (the backward pass needs the input gradient
  and the weight gradient of every layer, each a GEMM as large as the forward one; the exact
  count, which skips the input gradient of the first encoder layer, is 0.5% lower and is also
  recorded).
The roofline (max steps/s) is the measured peak fp32 GEMM rate divided by that count. A second,
"shape-exact" GEMM bound times the very GEMMs of the step (forward, input-gradient and
weight-gradient GEMM of every layer, with their shapes and transposes) and sums them.

k = 5000 evaluation: ``estimate_log_likelihood`` on the MNIST test set (defaults: batches of
100, at most 25,000 decoder rows at once). Its matmul-bound minimum is the forward FLOPs of
k·N decoder passes plus N encoder passes over the peak GEMM rate (the shape-exact variant
times the decoder GEMMs on 25,000-row chunks). If the full 10k set would take longer than
``--max-eval-seconds``, only the first blocks of 1000 images are run and the time for 10k is
extrapolated (stated in the results).
"""

import argparse
import copy
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch
from common import machine_info, markdown_table, write_results
from torch import Tensor

from diffvi.data import load_dataset
from diffvi.evaluation.likelihood import estimate_log_likelihood
from diffvi.models.vae import build_vae
from diffvi.objectives.iwae import IWAE
from diffvi.utils.runtime import configure_numerics

K, BATCH, LATENT, DATA_DIM = 50, 20, 50, 784
EVAL_K = 5000
ENCODER = [(784, 200), (200, 200), (200, 2 * LATENT)]
DECODER = [(LATENT, 200), (200, 200), (200, DATA_DIM)]
EVAL_MAX_ROWS = 25_000  # estimate_log_likelihood's max_rows before issue 22 (now from memory)
LR = 1e-3


# ----------------------------------------------------------------------------------- FLOPs


def mlp_flops(rows: int, layers: list[tuple[int, int]]) -> int:
    """Forward GEMM FLOPs of an MLP on ``rows`` inputs: Σ 2·rows·in·out."""
    return sum(2 * rows * n_in * n_out for n_in, n_out in layers)


def step_flops() -> dict:
    fwd = mlp_flops(BATCH, ENCODER) + mlp_flops(K * BATCH, DECODER)
    first_in, first_out = ENCODER[0]
    exact = 3 * fwd - 2 * BATCH * first_in * first_out  # no input gradient for x
    return {"forward": fwd, "forward_backward_3x": 3 * fwd, "forward_backward_exact": exact}


def eval_flops(n_images: int, k: int = EVAL_K) -> int:
    return mlp_flops(n_images * k, DECODER) + mlp_flops(n_images, ENCODER)


# ------------------------------------------------------------------------------ GEMM rates


def best_time(
    fn: Callable[[], object],
    repeats: int,
    inner: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Best over ``repeats`` of the mean time of ``inner`` calls (after one warm-up call), by
    ``clock`` (wall time by default; ``time.process_time`` for CPU time)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        for _ in range(inner):
            fn()
        best = min(best, (clock() - t0) / inner)
    return best


def gemm_rate(
    m: int, k: int, n: int, repeats: int, inner: int, clock: Callable[[], float] = time.perf_counter
) -> dict:
    a, b = torch.randn(m, k), torch.randn(k, n)
    t = best_time(lambda: a @ b, repeats, inner, clock)
    return {"shape": f"[{m},{k}]x[{k},{n}]", "seconds": t, "gflops": 2 * m * k * n / t / 1e9}


def measure_gemms(repeats: int, inner: int, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Rates of a [1000,200]x[200,784] and a 2048² GEMM, and the step's GEMM time."""
    rates = [
        gemm_rate(K * BATCH, 200, DATA_DIM, repeats, inner, clock),
        gemm_rate(2048, 2048, 2048, repeats, max(1, inner // 2), clock),
    ]
    return {"rates": rates, "step_gemm_seconds": step_gemm_seconds(repeats, inner, clock)}


def linear_gemms(rows: int, n_in: int, n_out: int, input_grad: bool) -> list[Callable]:
    """The GEMMs of ``nn.Linear`` on ``rows`` inputs, laid out as autograd runs them."""
    x, w, b = torch.randn(rows, n_in), torch.randn(n_out, n_in), torch.randn(n_out)
    g = torch.randn(rows, n_out)
    calls = [lambda: torch.addmm(b, x, w.t()), lambda: g.t().mm(x)]  # forward, weight grad
    if input_grad:
        calls.append(lambda: g.mm(w))
    return calls


def step_gemm_seconds(
    repeats: int, inner: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Sum of the best times of every GEMM in one IWAE training step (forward + backward)."""
    calls = []
    for i, (n_in, n_out) in enumerate(ENCODER):
        calls += linear_gemms(BATCH, n_in, n_out, input_grad=i > 0)
    for n_in, n_out in DECODER:
        calls += linear_gemms(K * BATCH, n_in, n_out, input_grad=True)
    return sum(best_time(c, repeats, inner, clock) for c in calls)


def eval_chunk_gemm_seconds(repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best time of the decoder's forward GEMMs on one chunk of EVAL_MAX_ROWS rows."""
    calls = [
        c
        for n_in, n_out in DECODER
        for c in linear_gemms(EVAL_MAX_ROWS, n_in, n_out, input_grad=False)[:1]
    ]
    return sum(best_time(c, repeats, 1, clock) for c in calls)


# ------------------------------------------------------------------------------------ data


def load_data(n_train: int, n_test: int, seed: int) -> tuple[Tensor, Tensor, str]:
    """Binarised (Bernoulli draw of the grey level, fixed seed) images ``[N, 1, 28, 28]``:
    MNIST through ``diffvi.data`` (``$DIFFVI_DATA``, the cache, or a download), else random."""
    gen = torch.Generator().manual_seed(seed)
    try:
        grey = [
            load_dataset("mnist", split).images[:n]
            for split, n in (("train", n_train), ("test", n_test))
        ]
    except FileNotFoundError as err:
        train = torch.bernoulli(torch.full((n_train, 1, 28, 28), 0.13), generator=gen)
        test = torch.bernoulli(torch.full((n_test, 1, 28, 28), 0.13), generator=gen)
        return train, test, f"random binary images (p = 0.13): MNIST not found ({err})"
    train, test = (torch.bernoulli(g, generator=gen) for g in grey)
    return train, test, "MNIST (diffvi.data), binarised by a Bernoulli draw"


# -------------------------------------------------------------------------- implementations


def make_ours(model, posterior) -> Callable[[Tensor], None]:
    objective = IWAE(k=K)
    # The optimiser diffvi's training module uses: fused Adam.
    opt = torch.optim.Adam([*model.parameters(), *posterior.parameters()], lr=LR, fused=True)

    def step(x: Tensor) -> None:
        out = objective(model, posterior, x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    return step


def make_pyro(tag: str, encoder: torch.nn.Module, decoder: torch.nn.Module):
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, RenyiELBO

    def model(x: Tensor) -> None:
        pyro.module(f"{tag}_decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(x.new_zeros(LATENT), x.new_ones(LATENT)).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x: Tensor) -> None:
        pyro.module(f"{tag}_encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = encoder(x).chunk(2, dim=-1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    elbo = RenyiELBO(alpha=0, num_particles=K, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": LR}), loss=elbo)
    return lambda x: svi.step(x.flatten(1))


def make_pythae(encoder: torch.nn.Module, decoder: torch.nn.Module):
    from pythae.models import IWAE as PythaeIWAE
    from pythae.models import IWAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = encoder

        def forward(self, x: Tensor) -> ModelOutput:
            loc, log_scale = self.net(x.flatten(1)).chunk(2, dim=-1)
            return ModelOutput(embedding=loc, log_covariance=2 * log_scale)

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = decoder

        def forward(self, z: Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    config = IWAEConfig(
        input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce", number_samples=K
    )
    net = PythaeIWAE(config, encoder=Encoder(), decoder=Decoder())
    opt = torch.optim.Adam(net.parameters(), lr=LR)

    def step(x: Tensor) -> None:
        loss = net({"data": x}).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def pythae_status() -> tuple[bool, str]:
    """pythae is used only if it imports and the torch in use is still the one we test."""
    try:
        from importlib.metadata import version

        from pythae.models import IWAE as _  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means "not usable"
        return False, f"not installable/importable: {type(err).__name__}: {err}"
    return True, f"pythae {version('pythae')} installed without changing torch {torch.__version__}"


# ---------------------------------------------------------------------------------- timing


def pretrain(model, posterior, batches: list[Tensor], steps: int) -> None:
    """Train the shared initial networks for ``steps`` steps (ours, flush-denormal on), so that
    every implementation is timed in the regime where most of training happens: after a few
    hundred steps many normalised importance weights fall below float32's normal range, and
    denormal arithmetic slows the backward pass (at initialisation none do)."""
    configure_numerics(flush_denormal=True)
    step = make_ours(model, posterior)
    for i in range(steps):
        step(batches[i % len(batches)])


def time_lightning(model0, posterior0, steps: int, warmup: int, seed: int) -> dict:
    """Steps/s of ``diffvi.training.fit`` (Lightning, as ``diffvi train vae`` runs it) on the
    same network, started from the same pretrained weights; data: ``mnist-dynamic``."""
    import tempfile

    import lightning as L

    from diffvi.training import TrainConfig, fit

    class Timer(L.Callback):
        def on_train_start(self, trainer, module) -> None:
            module.family.model.load_state_dict(model0.state_dict())
            module.family.posterior.load_state_dict(posterior0.state_dict())

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if trainer.global_step == warmup:
                self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_end(self, trainer, module) -> None:
            self.seconds = time.perf_counter() - self.t0
            self.cpu = time.process_time() - self.c0
            self.steps = trainer.global_step - warmup

    config = TrainConfig(
        dataset="mnist-dynamic", objective="iwae", k=K, batch_size=BATCH, lr=LR,
        max_epochs=1, max_steps=warmup + steps, val_size=BATCH, seed=seed,
    )  # fmt: skip
    timer = Timer()
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            fit(config, run_dir, progress_bar=False, callbacks=[timer], log_every_n_steps=50)
    except FileNotFoundError as err:
        return {"skipped": f"mnist-dynamic not available: {err}"}
    return {
        "label": "diffvi train vae (Lightning, fused Adam)",
        "steps": timer.steps,
        "seconds": timer.seconds,
        "steps_per_s": timer.steps / timer.seconds,
        "cpu_seconds_per_wall_second": timer.cpu / timer.seconds,
    }


class Runner:
    """One implementation under one denormal setting, with its own weights and optimiser."""

    def __init__(self, key: str, label: str, flush_denormal: bool, step, batches: list[Tensor]):
        self.key, self.label, self.flush_denormal = key, label, flush_denormal
        self.step, self.batches = step, batches
        self.done = 0
        self.rates: list[float] = []
        self.cpu_per_wall: list[float] = []  # < threads when other processes take the CPU
        self.preempted_per_s: list[float] = []

    def set_numerics(self) -> None:
        # The library's own switch for ours; torch's for the others (the same call inside).
        if self.key.startswith("ours"):
            configure_numerics(flush_denormal=self.flush_denormal)
        else:
            torch.set_flush_denormal(self.flush_denormal)

    def run(self, min_steps: int, min_seconds: float) -> float:
        """Time steps until both limits are reached; record steps/s and how much CPU we got."""
        self.set_numerics()
        n, c0, u0 = 0, time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        while True:
            self.step(self.batches[self.done % len(self.batches)])
            self.done += 1
            n += 1
            elapsed = time.perf_counter() - t0
            if n >= min_steps and elapsed >= min_seconds:
                break
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        self.rates.append(n / elapsed)
        self.cpu_per_wall.append((time.process_time() - c0) / elapsed)
        self.preempted_per_s.append((u1.ru_nivcsw - u0.ru_nivcsw) / elapsed)
        return n / elapsed

    def summary(self) -> dict:
        return {
            "label": self.label,
            "flush_denormal": self.flush_denormal,
            "steps_per_s_median": statistics.median(self.rates),
            "steps_per_s_min": min(self.rates),
            "steps_per_s_max": max(self.rates),
            "steps_per_s_rounds": self.rates,
            "cpu_seconds_per_wall_second_rounds": self.cpu_per_wall,
            "involuntary_context_switches_per_s_rounds": self.preempted_per_s,
            "total_steps": self.done,
        }


def time_eval(model, posterior, test: Tensor, block: int, max_seconds: float) -> dict:
    """Run ``estimate_log_likelihood`` block by block; stop early (and extrapolate) if the
    whole set would take longer than ``max_seconds``."""
    configure_numerics(flush_denormal=True)  # the library's default for evaluation
    n_total, done, seconds, log_px = test.shape[0], 0, 0.0, []
    while done < n_total:
        x = test[done : done + block]
        t0 = time.perf_counter()
        est = estimate_log_likelihood(model, posterior, x, k=EVAL_K)
        seconds += time.perf_counter() - t0
        done += x.shape[0]
        log_px.append(est.log_px)
        if done < n_total and seconds / done * n_total > max_seconds:
            break
    return {
        "images_run": done,
        "images_target": n_total,
        "seconds_run": seconds,
        "seconds_per_image": seconds / done,
        "seconds_for_target": seconds / done * n_total,
        "extrapolated": done < n_total,
        "mean_log_px": float(torch.cat(log_px).mean()),
    }


@torch.no_grad()
def legacy_estimate(model, posterior, x: Tensor, k: int = EVAL_K) -> Tensor:
    """``estimate_log_likelihood(...).log_px`` as it was before issue 22 (commit 81c7af9):
    chunks of at most EVAL_MAX_ROWS rows, the decoder's full ``[draws, B, 784]`` logits scored
    by ``BernoulliLikelihood.log_prob`` (BCE with logits), ``torch.logsumexp`` per chunk."""
    flat = x.flatten(1)
    chunk = max(1, min(k, EVAL_MAX_ROWS // x.shape[0]))
    lse, done = None, 0
    while done < k:
        draws = min(chunk, k - done)
        s = posterior.sample(x, draws)
        log_w = model.likelihood.log_prob(flat, model.decode(s.z)) - (
            s.log_q - model.log_prior(s.z)
        )
        a = torch.logsumexp(log_w, 0)
        lse = a if lse is None else torch.logaddexp(lse, a)
        torch.logsumexp(2 * log_w, 0)  # the old path's second log-sum-exp (for the stderr)
        done += draws
    return lse - math.log(k)


def compare_eval(args: argparse.Namespace) -> None:
    """The k = 5000 evaluation, current against pre-issue-22, interleaved block by block."""
    quick = args.quick
    torch.set_num_threads(args.threads)
    configure_numerics(flush_denormal=True)
    load_start = list(os.getloadavg())
    machine = machine_info()
    gemm_repeats, gemm_inner = (3, 2) if quick else (7, 5)
    gemm_before = measure_gemms(gemm_repeats, gemm_inner)
    block = args.eval_block or (5 if quick else 100)
    rounds = args.rounds or (2 if quick else 5)
    train, test, data_source = load_data(BATCH * 50, block * rounds, args.seed)
    torch.manual_seed(args.seed)
    model, posterior = build_vae((1, 28, 28), "iwae-1")
    pretrain_steps = (
        args.pretrain_steps if args.pretrain_steps is not None else (0 if quick else 1500)
    )
    pretrain(model, posterior, list(train.split(BATCH)), pretrain_steps)
    model.eval()
    posterior.eval()
    impls = {
        "current": lambda x: estimate_log_likelihood(model, posterior, x, k=EVAL_K).log_px,
        "pre_issue_22": lambda x: legacy_estimate(model, posterior, x),
    }
    for fn in impls.values():  # warm-up
        fn(test[:2])
    times: dict[str, list[float]] = {key: [] for key in impls}
    cpu_times: dict[str, list[float]] = {key: [] for key in impls}
    means: dict[str, list[float]] = {key: [] for key in impls}
    load_rounds = []
    for i, x in enumerate(test.split(block)):
        order = list(impls) if i % 2 == 0 else list(impls)[::-1]
        for key in order:
            t0, c0 = time.perf_counter(), time.process_time()
            log_px = impls[key](x)
            times[key].append((time.perf_counter() - t0) / x.shape[0])
            cpu_times[key].append((time.process_time() - c0) / x.shape[0])
            means[key].append(float(log_px.mean()))
        load_rounds.append(os.getloadavg()[0])
        print(
            f"block {i + 1}: "
            + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms/image" for k, v in times.items()),
            flush=True,
        )
    gemm_after = measure_gemms(gemm_repeats, gemm_inner)
    peak = max(g["gflops"] for m in (gemm_before, gemm_after) for g in m["rates"]) * 1e9
    bound_per_image = eval_flops(1) / peak
    chunk_s = eval_chunk_gemm_seconds(gemm_repeats)
    gemm_per_image = chunk_s * EVAL_K / EVAL_MAX_ROWS
    # The same in CPU time (one thread: the GEMMs' own cost, whatever the other processes do).
    gemm_cpu = [measure_gemms(gemm_repeats, gemm_inner, time.process_time) for _ in range(2)]
    peak_cpu = max(g["gflops"] for m in gemm_cpu for g in m["rates"]) * 1e9
    cpu_bound_per_image = eval_flops(1) / peak_cpu
    result = {}
    for key, series in times.items():
        per_image = statistics.median(series)
        cpu_per_image = statistics.median(cpu_times[key])
        result[key] = {
            "cpu_seconds_per_image_median": cpu_per_image,
            "cpu_seconds_per_image_rounds": cpu_times[key],
            "cpu_ratio_to_matmul_bound": cpu_per_image / cpu_bound_per_image,
            "seconds_per_image_median": per_image,
            "seconds_per_image_rounds": series,
            "seconds_for_10000_images": per_image * 10_000,
            "ratio_to_matmul_bound": per_image / bound_per_image,
            "ratio_to_shape_exact_gemm_time": per_image / gemm_per_image,
            "mean_log_px_per_block": means[key],
        }
    paired = statistics.median(
        o / n for o, n in zip(times["pre_issue_22"], times["current"], strict=True)
    )
    payload = {
        "mode": "quick" if quick else "full",
        "seed": args.seed,
        "threads": args.threads,
        "machine": machine,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "loadavg_1min_after_each_block": load_rounds,
        "settings": {
            "k": EVAL_K,
            "images_per_block": block,
            "blocks": rounds,
            "pretrain_steps": pretrain_steps,
            "data": data_source,
            "flush_denormal": True,
        },
        "gemm": {"before": gemm_before, "after": gemm_after},
        "gemm_rate_used_gflops": peak / 1e9,
        "matmul_bound_seconds_per_image": bound_per_image,
        "gemm_cpu_time": gemm_cpu,
        "gemm_rate_cpu_time_gflops": peak_cpu / 1e9,
        "matmul_bound_cpu_seconds_per_image": cpu_bound_per_image,
        "decoder_gemm_seconds_per_image_shape_exact": gemm_per_image,
        "evaluation": result,
        "speedup_paired_median": paired,
        "goal": {"ratio_to_matmul_bound_target": 2.0,
                 "met_wall": result["current"]["ratio_to_matmul_bound"] <= 2.0,
                 "met_cpu": result["current"]["cpu_ratio_to_matmul_bound"] <= 2.0},
    }  # fmt: skip
    rows = [
        [
            label,
            r["seconds_per_image_median"] * 1e3,
            r["seconds_for_10000_images"],
            r["ratio_to_matmul_bound"],
            r["ratio_to_shape_exact_gemm_time"],
            r["cpu_seconds_per_image_median"] * 1e3,
            r["cpu_ratio_to_matmul_bound"],
        ]
        for label, r in (
            ("pre-issue-22 path (full logits, BCE, 25k-row chunks)", result["pre_issue_22"]),
            ("current `estimate_log_likelihood`", result["current"]),
        )
    ]
    rows.append(["matmul bound (forward FLOPs / peak GEMM rate)", bound_per_image * 1e3,
                 bound_per_image * 1e4, 1.0, None, cpu_bound_per_image * 1e3, 1.0])  # fmt: skip
    table = markdown_table(
        [
            "path",
            "ms / image (median)",
            "s for 10k images",
            "× matmul bound",
            "× decoder GEMMs",
            "CPU ms / image",
            "CPU × matmul bound",
        ],  # fmt: skip
        rows,
    )
    md = (
        f"# k = {EVAL_K} evaluation, current vs pre-issue-22 ({payload['mode']} mode)\n\n"
        f"{machine['cpu_model']}, {machine['cpu_count']} cores, torch {machine['torch']}, "
        f"{args.threads} thread(s); load average {load_start} at start, "
        f"{payload['loadavg_end']} at end. {rounds} blocks of {block} images (MNIST test, "
        f"{data_source}), the two paths interleaved block by block (order alternating), "
        f"median per image. Peak GEMM {peak / 1e9:.0f} GFLOP/s (best of "
        + ", ".join(g["shape"] for g in gemm_before["rates"])
        + " before and after).\n\n"
        f"{table}\nCPU ms: the process's CPU time (one thread: what other processes' time "
        "slices do not inflate; a loaded machine still shares caches and memory bandwidth), "
        f"against a bound from the GEMM rate in CPU time ({peak_cpu / 1e9:.0f} GFLOP/s). "
        f"Speed-up (paired per block, median): {paired:.2f}×. Goal ≤ 2× the matmul "
        f"bound: wall time {'met' if payload['goal']['met_wall'] else 'not met'}, CPU time "
        f"{'met' if payload['goal']['met_cpu'] else 'not met'}.\n"
    )
    name = "iwae_speed_eval_quick" if quick else "iwae_speed_eval"
    json_path, md_path = write_results(name, payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path}")


def compare_train(args: argparse.Namespace) -> None:
    """IWAE(k=50) training steps: ours now, ours before issue 22 (the decoder's full logits
    through ``BernoulliLikelihood.log_prob``) and Pyro, interleaved; wall and CPU time."""
    quick = args.quick
    torch.set_num_threads(args.threads)
    configure_numerics(flush_denormal=True)
    load_start = list(os.getloadavg())
    machine = machine_info()
    rounds = args.rounds or (2 if quick else 9)
    seconds = args.seconds or (0.4 if quick else 2.0)
    gemm_repeats, gemm_inner = (3, 2) if quick else (7, 5)
    train, _, data_source = load_data(BATCH * (50 if quick else 500), 1, args.seed)
    batches = list(train.split(BATCH))
    torch.manual_seed(args.seed)
    model0, posterior0 = build_vae((1, 28, 28), "iwae-1")
    pretrain_steps = (
        args.pretrain_steps if args.pretrain_steps is not None else (0 if quick else 1500)
    )
    pretrain(model0, posterior0, batches, pretrain_steps)
    import pyro

    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    steps = {}
    m, q = copy.deepcopy(model0), copy.deepcopy(posterior0)
    steps["current"] = make_ours(m, q)
    m, q = copy.deepcopy(model0), copy.deepcopy(posterior0)
    m.log_likelihood = lambda x, z, m=m: m.likelihood.log_prob(x.flatten(1), m.decode(z))
    steps["pre_issue_22"] = make_ours(m, q)
    m, q = copy.deepcopy(model0), copy.deepcopy(posterior0)
    steps["pyro"] = make_pyro("pyro_cmp", q.encoders[0], m.decoder)
    for step in steps.values():
        for i in range(3 if quick else 20):
            step(batches[i % len(batches)])
    wall = {k: [] for k in steps}
    cpu = {k: [] for k in steps}
    done = 0
    for r in range(rounds):
        order = list(steps) if r % 2 == 0 else list(steps)[::-1]
        for key in order:
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while n < 5 or time.perf_counter() - t0 < seconds:
                steps[key](batches[(done + n) % len(batches)])
                n += 1
            wall[key].append(n / (time.perf_counter() - t0))
            cpu[key].append(n / (time.process_time() - c0))
        done += n
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in cpu.items())
              + " steps per CPU s", flush=True)  # fmt: skip
    gemm_wall = measure_gemms(gemm_repeats, gemm_inner)
    gemm_cpu = [measure_gemms(gemm_repeats, gemm_inner, time.process_time) for _ in range(2)]
    flops = step_flops()["forward_backward_3x"]
    peak_wall = max(g["gflops"] for g in gemm_wall["rates"]) * 1e9
    peak_cpu = max(g["gflops"] for m in gemm_cpu for g in m["rates"]) * 1e9
    roof_wall, roof_cpu = peak_wall / flops, peak_cpu / flops
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    result = {
        key: {
            "steps_per_s_median": med[key],
            "steps_per_cpu_s_median": med_cpu[key],
            "steps_per_s_rounds": wall[key],
            "steps_per_cpu_s_rounds": cpu[key],
            "fraction_of_roofline": med[key] / roof_wall,
            "fraction_of_roofline_cpu": med_cpu[key] / roof_cpu,
            "vs_pyro": med[key] / med["pyro"],
            "vs_pyro_cpu": med_cpu[key] / med_cpu["pyro"],
        }
        for key in steps
    }
    payload = {
        "mode": "quick" if quick else "full",
        "seed": args.seed,
        "threads": args.threads,
        "machine": machine,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "settings": {"k": K, "batch_size": BATCH, "lr": LR, "rounds": rounds,
                     "seconds_per_timing": seconds, "pretrain_steps": pretrain_steps,
                     "data": data_source, "flush_denormal": True},
        "gemm_wall": gemm_wall,
        "gemm_cpu_time": gemm_cpu,
        "roofline_steps_per_s": roof_wall,
        "roofline_steps_per_cpu_s": roof_cpu,
        "training": result,
        "goal": {"fraction_of_roofline_target": 0.6,
                 "met_cpu": result["current"]["fraction_of_roofline_cpu"] >= 0.6},
    }  # fmt: skip
    labels = {
        "pre_issue_22": "diffvi IWAE(k=50), pre-issue-22 likelihood (full logits, BCE)",
        "current": "diffvi IWAE(k=50) now",
        "pyro": "Pyro RenyiELBO(α=0), flush-denormal on",
    }
    rows = [
        [labels[k], r["steps_per_s_median"], r["fraction_of_roofline"],
         r["steps_per_cpu_s_median"], r["fraction_of_roofline_cpu"], r["vs_pyro_cpu"]]
        for k, r in ((k, result[k]) for k in ("pre_issue_22", "current", "pyro"))
    ]  # fmt: skip
    rows.append(["GEMM roofline", roof_wall, 1.0, roof_cpu, 1.0, None])
    table = markdown_table(
        ["implementation", "steps/s", "of roofline", "steps / CPU s", "of roofline (CPU)",
         "× Pyro (CPU)"],
        rows,
    )  # fmt: skip
    md = (
        f"# IWAE(k = {K}) training, now vs pre-issue-22 ({payload['mode']} mode)\n\n"
        f"{machine['cpu_model']}, {machine['cpu_count']} cores, torch {machine['torch']}, "
        f"{args.threads} thread(s); load average {load_start} at start, "
        f"{payload['loadavg_end']} at end. Batch {BATCH}, 784-200-200-50 tanh, Adam (fused), "
        f"starting weights pretrained {pretrain_steps} steps and shared; {rounds} interleaved "
        "rounds (order alternating), median. Roofline = peak GEMM rate / "
        f"{flops / 1e9:.3f} GFLOP per step; peak {peak_wall / 1e9:.0f} GFLOP/s in wall time, "
        f"{peak_cpu / 1e9:.0f} in CPU time (the CPU-time columns are what other processes' "
        "time slices do not inflate).\n\n"
        f"{table}\nGoal ≥ 0.6 of the roofline (CPU time): "
        f"{'met' if payload['goal']['met_cpu'] else 'not met'}.\n"
    )
    name = "iwae_speed_train_quick" if quick else "iwae_speed_train"
    json_path, md_path = write_results(name, payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path}")


# ------------------------------------------------------------------------------------ main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI-sized run (well under a minute)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 7, quick 2)")
    p.add_argument("--seconds", type=float, help="seconds per timing (default 3, quick 0.4)")
    p.add_argument("--eval-images", type=int, help="test images (default 10000, quick 50)")
    p.add_argument(
        "--max-eval-seconds",
        type=float,
        default=600.0,
        help="above this projected time, run a subset and extrapolate",
    )
    p.add_argument("--no-pythae", action="store_true", help="skip pythae even if installed")
    p.add_argument(
        "--compare",
        choices=["eval", "train"],
        help="time only this part, current code against the pre-issue-22 path",
    )
    p.add_argument("--eval-block", type=int, help="images per block with --compare eval")
    p.add_argument(
        "--pretrain-steps",
        type=int,
        help="train the shared starting weights this many steps first (default 1500, quick 0)",
    )
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.compare == "eval":
        return compare_eval(args)
    if args.compare == "train":
        return compare_train(args)
    quick = args.quick
    rounds = args.rounds or (2 if quick else 7)
    seconds = args.seconds or (0.4 if quick else 3.0)
    min_steps = 3 if quick else 20
    warmup = 3 if quick else 20
    n_eval = args.eval_images or (50 if quick else 10_000)
    gemm_repeats, gemm_inner = (3, 2) if quick else (7, 5)

    torch.set_num_threads(args.threads)
    load_start = list(os.getloadavg())
    machine = machine_info()
    print(
        f"{machine['cpu_model']}, {machine['cpu_count']} cores, torch {torch.__version__}, "
        f"{args.threads} threads, load {load_start}",
        flush=True,
    )

    # GEMM rates, measured before and after the training timings (denormals do not occur in
    # random matrices). The roofline uses the best rate seen: the least disturbed measurement.
    configure_numerics(flush_denormal=True)
    gemm_before = measure_gemms(gemm_repeats, gemm_inner)
    for g in gemm_before["rates"]:
        print(f"GEMM {g['shape']}: {g['gflops']:.0f} GFLOP/s", flush=True)

    # Data and identical initial networks.
    n_train = BATCH * (50 if quick else 500)
    train, test, data_source = load_data(n_train, n_eval, args.seed)
    batches = list(train.split(BATCH))
    torch.manual_seed(args.seed)
    model0, posterior0 = build_vae((1, 28, 28), "iwae-1")
    pretrain_steps = (
        args.pretrain_steps if args.pretrain_steps is not None else (0 if quick else 1500)
    )
    print(f"pretraining the shared starting weights for {pretrain_steps} steps ...", flush=True)
    pretrain(model0, posterior0, batches, pretrain_steps)

    def fresh():
        return copy.deepcopy(model0), copy.deepcopy(posterior0)

    import pyro

    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    runners: list[Runner] = []
    ours_model, ours_posterior = fresh()
    runners.append(
        Runner("ours", "diffvi IWAE(k=50)", True, make_ours(ours_model, ours_posterior), batches)
    )
    m, q = fresh()
    runners.append(
        Runner(
            "pyro",
            "Pyro RenyiELBO(α=0)",
            False,
            make_pyro("pyro", q.encoders[0], m.decoder),
            batches,
        )
    )
    runners.append(Runner("ours_no_ftz", "diffvi IWAE(k=50)", False, make_ours(*fresh()), batches))
    m, q = fresh()
    runners.append(
        Runner(
            "pyro_ftz",
            "Pyro RenyiELBO(α=0)",
            True,
            make_pyro("pyro_ftz", q.encoders[0], m.decoder),
            batches,
        )
    )
    pythae_ok, pythae_note = (False, "skipped (--no-pythae)") if args.no_pythae else pythae_status()
    if pythae_ok:
        for key, ftz in (("pythae", False), ("pythae_ftz", True)):
            m, q = fresh()
            runners.append(
                Runner(key, "pythae IWAE", ftz, make_pythae(q.encoders[0], m.decoder), batches)
            )
    print(f"pythae: {pythae_note}", flush=True)

    for r in runners:  # warm-up (allocator, Pyro's first trace, MKL kernels)
        r.run(warmup, 0.0)
    for r in runners:
        r.rates, r.cpu_per_wall, r.preempted_per_s = [], [], []
    load_rounds = []
    for i in range(rounds):
        for r in runners:
            r.run(min_steps, seconds)
        load_rounds.append(os.getloadavg()[0])
        print(
            f"round {i + 1}/{rounds}: " + ", ".join(f"{r.key} {r.rates[-1]:.1f}" for r in runners),
            flush=True,
        )
    lightning = time_lightning(
        model0, posterior0, steps=50 if quick else 600, warmup=warmup, seed=args.seed
    )
    if "steps_per_s" in lightning:
        bare = runners[0].run(min_steps, seconds)  # ours, right after: not part of its median
        for series in (runners[0].rates, runners[0].cpu_per_wall, runners[0].preempted_per_s):
            series.pop()
        lightning["ours_bare_loop_after"] = bare
        lightning["lightning_vs_bare_loop"] = lightning["steps_per_s"] / bare
        print(f"lightning {lightning['steps_per_s']:.1f} steps/s, bare {bare:.1f}", flush=True)
    configure_numerics(flush_denormal=True)
    gemm_after = measure_gemms(gemm_repeats, gemm_inner)
    peak = max(g["gflops"] for m in (gemm_before, gemm_after) for g in m["rates"]) * 1e9
    step_gemm_s = min(gemm_before["step_gemm_seconds"], gemm_after["step_gemm_seconds"])
    flops = step_flops()
    roofline = {
        "flops_per_step": flops,
        "gemm_rate_used_gflops": peak / 1e9,
        "gemm_rate_used": "best of the GEMM rates measured before and after the training timings",
        "max_steps_per_s": peak / flops["forward_backward_3x"],
        "max_steps_per_s_exact_count": peak / flops["forward_backward_exact"],
        "step_gemm_seconds_shape_exact": step_gemm_s,
        "max_steps_per_s_shape_exact": 1.0 / step_gemm_s,
    }
    print(
        f"roofline {roofline['max_steps_per_s']:.1f} steps/s "
        f"(shape-exact GEMMs {roofline['max_steps_per_s_shape_exact']:.1f})",
        flush=True,
    )
    training = {r.key: r.summary() for r in runners}
    by_key = {r.key: r for r in runners}
    med = {k: v["steps_per_s_median"] for k, v in training.items()}

    ratios = {
        "ours_vs_pyro_as_users_run_them": med["ours"] / med["pyro"],
        "ours_vs_pyro_both_ftz": med["ours"] / med["pyro_ftz"],
        "ours_vs_pyro_both_default_denormals": med["ours_no_ftz"] / med["pyro"],
        "ours_ftz_speedup": med["ours"] / med["ours_no_ftz"],
        "pyro_ftz_speedup": med["pyro_ftz"] / med["pyro"],
        "ours_fraction_of_roofline": med["ours"] / roofline["max_steps_per_s"],
        "ours_fraction_of_shape_exact_gemm_bound": med["ours"]
        / roofline["max_steps_per_s_shape_exact"],
        "pyro_fraction_of_roofline": med["pyro"] / roofline["max_steps_per_s"],
        # Paired within each round (both timed back to back): less exposed to load changes.
        "ours_vs_pyro_paired_median": statistics.median(
            o / p for o, p in zip(by_key["ours"].rates, by_key["pyro"].rates, strict=True)
        ),
        "ours_no_ftz_vs_pyro_paired_median": statistics.median(
            o / p for o, p in zip(by_key["ours_no_ftz"].rates, by_key["pyro"].rates, strict=True)
        ),
    }
    if pythae_ok:
        ratios["ours_vs_pythae_as_users_run_them"] = med["ours"] / med["pythae"]
        ratios["ours_vs_pythae_both_ftz"] = med["ours"] / med["pythae_ftz"]
    goals = {
        "fraction_of_roofline_target": 0.5,
        "fraction_of_roofline_met": ratios["ours_fraction_of_roofline"] >= 0.5,
        "speedup_over_pyro_target": 4.0,
        "speedup_over_pyro_met": ratios["ours_vs_pyro_as_users_run_them"] >= 4.0,
    }

    # k = 5000 evaluation with the model trained above (ours, flush-denormal on).
    print(f"k={EVAL_K} evaluation on {n_eval} test images ...", flush=True)
    block = 1000 if n_eval >= 1000 else n_eval
    ev = time_eval(ours_model, ours_posterior, test, block, args.max_eval_seconds)
    n_small = min(n_eval, 10 if quick else 100)
    configure_numerics(flush_denormal=False)
    t0 = time.perf_counter()
    estimate_log_likelihood(ours_model, ours_posterior, test[:n_small], k=EVAL_K)
    no_ftz_per_image = (time.perf_counter() - t0) / n_small
    configure_numerics(flush_denormal=True)
    chunk_s = eval_chunk_gemm_seconds(gemm_repeats)
    target_flops = eval_flops(n_eval)
    ev.update(
        {
            "k": EVAL_K,
            "batch_size": 100,
            "max_rows": "estimate_log_likelihood's default (sized from free memory)",
            "flush_denormal": True,
            "forward_flops_for_target": target_flops,
            "matmul_bound_seconds_for_target": target_flops / peak,
            "ratio_to_matmul_bound": ev["seconds_for_target"] / (target_flops / peak),
            "decoder_gemm_seconds_shape_exact": chunk_s * n_eval * EVAL_K / EVAL_MAX_ROWS,
            "ratio_to_shape_exact_gemm_time": ev["seconds_for_target"]
            / (chunk_s * n_eval * EVAL_K / EVAL_MAX_ROWS),
            "no_ftz_subset_images": n_small,
            "no_ftz_seconds_per_image": no_ftz_per_image,
        }
    )
    how = f"extrapolated from {ev['images_run']}" if ev["extrapolated"] else "measured"
    print(
        f"eval: {ev['seconds_for_target']:.1f} s for {n_eval} images ({how}), "
        f"{ev['ratio_to_matmul_bound']:.2f}x the matmul bound",
        flush=True,
    )

    load_end = list(os.getloadavg())
    cpu_share = statistics.median(c for r in runners for c in r.cpu_per_wall) / max(
        1, min(args.threads, os.cpu_count() or 1)
    )
    contention = (
        f"median CPU time per wall second over all timings: {cpu_share:.0%} of "
        f"{args.threads} threads"
        + (
            " — other processes were taking the cores, absolute rates are depressed and noisy"
            if cpu_share < 0.6
            else ""
        )
    )
    payload = {
        "mode": "quick" if quick else "full",
        "seed": args.seed,
        "seeds": {"torch": args.seed, "pyro": args.seed, "data_binarisation": args.seed},
        "threads": args.threads,
        "machine": machine,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "settings": {
            "k": K,
            "batch_size": BATCH,
            "lr": LR,
            "network": "784-200-200-50 encoder (loc, log-scale), 50-200-200-784 decoder, tanh",
            "rounds": rounds,
            "seconds_per_timing": seconds,
            "min_steps_per_timing": min_steps,
            "warmup_steps": warmup,
            "pretrain_steps": pretrain_steps,
            "data": data_source,
            "pyro_validation_enabled": _pyro_validation(),
        },
        "pythae": pythae_note,
        "loadavg_1min_after_each_round": load_rounds,
        "gemm": {"before_training": gemm_before, "after_training": gemm_after},
        "roofline": roofline,
        "training": training,
        "lightning": lightning,
        "ratios": ratios,
        "goals": goals,
        "evaluation": ev,
        "notes": [
            "Pyro's RenyiELBO(alpha=0) takes the log-mean-exp over particles of the log weight "
            "summed over the batch (pyro issue #3104), not per data point as IWAE does; the "
            "network and the work per step are the same.",
            "steps/s is the median over interleaved rounds; min/max show the spread.",
            contention,
        ],
    }
    md = render_markdown(payload, training, ratios, roofline, ev, n_eval, pythae_note)
    # --quick writes its own files so that a CI/smoke run never replaces the full results.
    name = "iwae_speed_quick" if quick else "iwae_speed"
    json_path, md_path = write_results(name, payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path}")


def _pyro_validation() -> bool:
    from pyro.infer.util import is_validation_enabled

    return bool(is_validation_enabled())


def render_markdown(payload, training, ratios, roofline, ev, n_eval, pythae_note) -> str:
    m = payload["machine"]
    roof = roofline["max_steps_per_s"]
    pyro_default = training["pyro"]["steps_per_s_median"]
    rows = [
        [
            v["label"],
            "on" if v["flush_denormal"] else "off",
            v["steps_per_s_median"],
            f"{v['steps_per_s_min']:.3g}–{v['steps_per_s_max']:.3g}",
            v["steps_per_s_median"] / pyro_default,
            v["steps_per_s_median"] / roof,
            statistics.median(v["cpu_seconds_per_wall_second_rounds"]),
        ]
        for v in training.values()
    ]
    light = payload["lightning"]
    if "steps_per_s" in light:
        rows.append(
            [light["label"], "on", light["steps_per_s"], f"{light['steps']} steps",
             light["steps_per_s"] / pyro_default, light["steps_per_s"] / roof,
             light["cpu_seconds_per_wall_second"]]
        )  # fmt: skip
    rows.append(["GEMM roofline (peak rate)", "", roof, "", roof / pyro_default, 1.0, None])
    shape_exact = roofline["max_steps_per_s_shape_exact"]
    rows.append(
        [
            "GEMM bound (the step's GEMM shapes)",
            "",
            shape_exact,
            "",
            shape_exact / pyro_default,
            shape_exact / roof,
            None,
        ]
    )
    train_table = markdown_table(
        [
            "implementation",
            "flush denormal",
            "steps/s (median)",
            "range",
            "× Pyro (default)",
            "fraction of roofline",
            "CPU s / wall s",
        ],
        rows,
    )
    how = (
        f"extrapolated from the first {ev['images_run']} images"
        if ev["extrapolated"]
        else "measured"
    )
    eval_table = markdown_table(
        ["quantity", "value"],
        [
            ["test images", n_eval],
            ["time (s)", f"{ev['seconds_for_target']:.1f} ({how})"],
            ["matmul-bound minimum (s)", ev["matmul_bound_seconds_for_target"]],
            ["ratio to matmul bound", ev["ratio_to_matmul_bound"]],
            ["decoder GEMMs at their shapes (s)", ev["decoder_gemm_seconds_shape_exact"]],
            ["ratio to those GEMMs", ev["ratio_to_shape_exact_gemm_time"]],
            [
                "s/image, flush denormal on / off",
                f"{ev['seconds_per_image']:.4f} / {ev['no_ftz_seconds_per_image']:.4f}",
            ],
            ["mean log p̂(x) (model after the timing steps only)", ev["mean_log_px"]],
        ],
    )
    gemm_line = ", ".join(
        f"{g['shape']} {g['gflops']:.0f}/{h['gflops']:.0f} GFLOP/s"
        for g, h in zip(
            payload["gemm"]["before_training"]["rates"],
            payload["gemm"]["after_training"]["rates"],
            strict=True,
        )
    )
    return (
        f"# IWAE speed ({payload['mode']} mode)\n\n"
        f"{m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']}, "
        f"{payload['threads']} threads; load average {payload['loadavg_start']} at start, "
        f"{payload['loadavg_end']} at end. Seed {payload['seed']}. "
        f"Data: {payload['settings']['data']}.\n\n"
        f"## Training: IWAE k = {K}, batch {BATCH}, Adam, 784-200-200-50 tanh\n\n"
        f"Starting weights pretrained for {payload['settings']['pretrain_steps']} steps and "
        "shared by every implementation. "
        f"Median of {payload['settings']['rounds']} interleaved rounds. GEMM (before/after the "
        f"training timings): {gemm_line}; "
        f"roofline = {roofline['gemm_rate_used_gflops']:.0f} GFLOP/s / "
        f"{roofline['flops_per_step']['forward_backward_3x'] / 1e9:.3f} GFLOP per step.\n\n"
        f"{train_table}\n"
        f"ours / Pyro as users run them: {ratios['ours_vs_pyro_as_users_run_them']:.2f}× "
        f"(goal 4×; paired within rounds: {ratios['ours_vs_pyro_paired_median']:.2f}×); "
        f"ours / roofline: {ratios['ours_fraction_of_roofline']:.2f} (goal 0.5). "
        f"CPU s / wall s is the CPU time this process got per second ({payload['threads']} "
        "threads): well below the thread count means other processes took the cores. "
        f"pythae: {pythae_note}.\n\n"
        f"{payload['notes'][-1]}.\n\n"
        f"## Evaluation: log p(x) with k = {EVAL_K}\n\n{eval_table}"
    )


if __name__ == "__main__":
    sys.exit(main())
