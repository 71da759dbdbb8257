"""DD-VAE training step against a VAE step on MNIST-sized batches (issue 22): the settings of
``benchmarks/ddvi_mnist.py`` (2-D latents, SiLU MLPs 256-256, batch 128, Adam, exact pinwheel
prior, DD-VAE: T = 20, β_reg = 0.01, one sleep batch), timed step by step, three ways
interleaved in one process: the VAE, the DD-VAE as the library runs it now, and the DD-VAE with
the reverse chain as it was before issue 22 (``reference_reverse`` below: per-step
concatenation of y_t, time features and c(x), 0-d schedule tensors, per-step densities).

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/ddvi_step_speed.py --threads 1
    PYTHONPATH=src python benchmarks/ddvi_step_speed.py --quick

Writes ``benchmarks/results/ddvi_step_speed{_quick}.{json,md}``: median wall and CPU seconds
per step (interleaved rounds), the DD-VAE / VAE ratios, the GEMM FLOPs of each step (the ratio
the GEMMs alone impose), and a torch.profiler summary (operator calls and the top operators
by self time) of the DD-VAE step before and after.
"""

import argparse
import os
import statistics
import sys
import time
from contextlib import contextmanager

import torch
from common import machine_info, markdown_table, write_results

from diffvi.distributions.gaussian import LOG_2PI
from diffvi.posteriors.diffusion import DiffusionPosterior, ReverseChain
from diffvi.training import TrainConfig
from diffvi.training.families.vae import build_model_from_config, build_objective_from_config
from diffvi.utils.runtime import configure_numerics

BATCH, HIDDEN = 128, 256
CONFIG = {
    "dataset": "mnist", "likelihood": "bernoulli", "latent_dims": [2], "activation": "silu",
    "k": 1, "batch_size": BATCH, "lr": 1e-3, "adam": "torch", "val_size": 500,
    "event_shape": [1, 28, 28], "prior": "pinwheel", "hidden": [[HIDDEN, HIDDEN]],
}  # fmt: skip
METHODS = {
    "vae": {"objective": "elbo", "posterior": "gaussian"},
    "ddvae": {"objective": "ddvi", "posterior": "diffusion", "beta_reg": 0.01},
}


def reference_reverse(q: DiffusionPosterior, y_T, x, generator=None, label=None) -> ReverseChain:
    """``DiffusionPosterior.reverse`` (DDPM steps) as it was before issue 22."""
    c = q._condition(x, y_T.shape[1], label)
    if c is not None:
        c = c.expand(y_T.shape[0], *c.shape)
    s = q.schedule
    variances = s.reverse_variances(q.reverse_variance)
    y, chain = y_T, [y_T]
    log_q = log_r = y_T.new_zeros(y_T.shape[:-1])
    for t in range(s.num_steps, 0, -1):
        i = t - 1
        beta, alpha, alpha_bar = s.betas[i], s.alphas[i], s.alpha_bars[i]
        eps_hat = q.predict_noise(y, q.time_features[i].expand(*y.shape[:-1], -1), c)
        mean = (y - beta / (1 - alpha_bar).sqrt() * eps_hat) / alpha.sqrt()
        noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        y_prev = mean + variances[i].sqrt() * noise
        log_q = log_q - 0.5 * (noise.square() + LOG_2PI + variances[i].log()).sum(-1)
        resid = y - alpha.sqrt() * y_prev
        log_r = log_r - 0.5 * (resid.square() / beta + LOG_2PI + beta.log()).sum(-1)
        chain.append(y_prev)
        y = y_prev
    return ReverseChain(chain=torch.stack(chain), log_q_steps=log_q, log_r=log_r)


@contextmanager
def old_chain(enabled: bool):
    current = DiffusionPosterior.reverse
    if enabled:
        DiffusionPosterior.reverse = reference_reverse
    try:
        yield
    finally:
        DiffusionPosterior.reverse = current


def make_step(method: str, seed: int):
    cfg = TrainConfig(**{**CONFIG, **METHODS[method]})
    torch.manual_seed(seed)
    model, posterior = build_model_from_config(cfg)
    objective = build_objective_from_config(cfg)
    # the optimiser of diffvi's training module: fused Adam
    opt = torch.optim.Adam([*model.parameters(), *posterior.parameters()], lr=1e-3, fused=True)

    def step(x):
        out = objective(model, posterior, x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    return step


def linear_flops(rows: int, sizes: list[int]) -> int:
    return sum(2 * rows * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def step_flops(num_steps: int = 20, time_dim: int = 16, context_dim: int = 32) -> dict:
    """GEMM FLOPs per training step (forward + backward ≈ 3 × forward; forward-only parts 1 ×)."""
    h = [HIDDEN, HIDDEN]
    enc, dec = [784, *h, 4], [2, *h, 784]
    vae = 3 * (linear_flops(BATCH, enc) + linear_flops(BATCH, dec))
    ctx = [784, *h, context_dim]
    den_old = [2 + time_dim + context_dim, *h, 2]
    den_new = [2, *h, 2]  # the time and context columns of the first layer: once per chain
    once = linear_flops(num_steps, [time_dim, HIDDEN]) + linear_flops(BATCH, [context_dim, HIDDEN])
    common = 3 * (linear_flops(BATCH, enc) + linear_flops(BATCH, dec) + linear_flops(BATCH, ctx))
    sleep = linear_flops(BATCH, dec) + 3 * (linear_flops(BATCH, ctx) + linear_flops(BATCH, den_old))
    old = common + sleep + 3 * num_steps * linear_flops(BATCH, den_old)
    new = common + sleep + 3 * (num_steps * linear_flops(BATCH, den_new) + once)
    return {"vae": vae, "ddvae_pre_issue_22": old, "ddvae": new}


def profile_step(step, x, old: bool, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with old_chain(old), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(x)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    calls = sum(e.count for e in events) / steps
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return {
        "aten_calls_per_step": calls,
        "self_cpu_ms_per_step": sum(e.self_cpu_time_total for e in events) / 1e3 / steps,
        "top": [
            {
                "op": e.key,
                "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
                "calls_per_step": e.count / steps,
            }
            for e in top
        ],  # fmt: skip
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int)
    p.add_argument("--steps", type=int, help="steps per timing")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rounds = args.rounds or (2 if args.quick else 9)
    steps = args.steps or (2 if args.quick else 15)
    torch.set_num_threads(args.threads)
    configure_numerics(flush_denormal=True)
    load_start = list(os.getloadavg())
    machine = machine_info()
    gen = torch.Generator().manual_seed(args.seed)
    try:
        from diffvi.data import load_dataset

        images = load_dataset("mnist", "train").images[: BATCH * 8]
        data = "MNIST grey levels"
    except FileNotFoundError:
        images = torch.rand(BATCH * 8, 1, 28, 28, generator=gen)
        data = "uniform random images (MNIST not found)"
    batches = list(images.split(BATCH))
    runners = {
        "vae": (make_step("vae", args.seed), False),
        "ddvae": (make_step("ddvae", args.seed), False),
        "ddvae_pre_issue_22": (make_step("ddvae", args.seed), True),
    }
    wall = {k: [] for k in runners}
    cpu = {k: [] for k in runners}
    done = 0
    for step, old in runners.values():  # warm-up
        with old_chain(old):
            for _ in range(3):
                step(batches[0])
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for key in order:
            step, old = runners[key]
            with old_chain(old):
                t0, c0 = time.perf_counter(), time.process_time()
                for j in range(steps):
                    step(batches[(done + j) % len(batches)])
                wall[key].append((time.perf_counter() - t0) / steps)
                cpu[key].append((time.process_time() - c0) / steps)
        done += steps
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in wall.items()),
              flush=True)  # fmt: skip
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    paired = {
        key: statistics.median(a / b for a, b in zip(wall[key], wall["vae"], strict=True))
        for key in ("ddvae", "ddvae_pre_issue_22")
    }
    flops = step_flops()
    profiles = {
        "ddvae": profile_step(runners["ddvae"][0], batches[0], False, 3 if args.quick else 10),
        "ddvae_pre_issue_22": profile_step(
            runners["ddvae_pre_issue_22"][0], batches[0], True, 3 if args.quick else 10
        ),
        "vae": profile_step(runners["vae"][0], batches[0], False, 3 if args.quick else 10),
    }
    payload = {
        "mode": "quick" if args.quick else "full",
        "seed": args.seed,
        "threads": args.threads,
        "machine": machine,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "settings": {**CONFIG, "rounds": rounds, "steps_per_timing": steps, "data": data},
        "seconds_per_step_median": med,
        "cpu_seconds_per_step_median": med_cpu,
        "seconds_per_step_rounds": wall,
        "cpu_seconds_per_step_rounds": cpu,
        "ratio_to_vae": {k: med[k] / med["vae"] for k in ("ddvae", "ddvae_pre_issue_22")},
        "cpu_ratio_to_vae": {
            k: med_cpu[k] / med_cpu["vae"] for k in ("ddvae", "ddvae_pre_issue_22")
        },
        "ratio_to_vae_paired_median": paired,
        "gemm_flops_per_step": flops,
        "gemm_flop_ratio_to_vae": {k: v / flops["vae"] for k, v in flops.items()},
        "profile": profiles,
        "goal": {"ratio_to_vae_target": 2.5},
    }  # fmt: skip
    rows = []
    for key, label in (
        ("vae", "VAE"),
        ("ddvae_pre_issue_22", "DD-VAE, reverse chain before issue 22"),
        ("ddvae", "DD-VAE now"),
    ):
        prof = profiles[key]
        rows.append([
            label, med[key] * 1e3, med_cpu[key] * 1e3, med[key] / med["vae"],
            med_cpu[key] / med_cpu["vae"], flops[key] / flops["vae"],
            prof["aten_calls_per_step"],
        ])  # fmt: skip
    table = markdown_table(
        ["step", "ms (median)", "CPU ms", "× VAE", "CPU × VAE", "GEMM FLOPs × VAE",
         "aten calls / step"],
        rows,
    )  # fmt: skip
    prof_rows = [
        [key, t["op"], t["self_ms_per_step"], t["calls_per_step"]]
        for key in ("ddvae_pre_issue_22", "ddvae")
        for t in profiles[key]["top"][:6]
    ]
    md = (
        f"# DD-VAE step against a VAE step ({payload['mode']} mode)\n\n"
        f"{machine['cpu_model']}, {machine['cpu_count']} cores, torch {machine['torch']}, "
        f"{args.threads} thread(s); load average {load_start} at start, "
        f"{payload['loadavg_end']} at end. {rounds} interleaved rounds of {steps} steps "
        f"(order alternating), median per step; batch {BATCH} of {data}, MLPs {HIDDEN}-{HIDDEN} "
        "SiLU, 2-D latents, exact pinwheel prior, DD-VAE T = 20, β_reg = 0.01, one sleep batch; "
        "step = objective, backward, Adam.\n\n"
        f"{table}\nPaired per round (median): DD-VAE now {paired['ddvae']:.2f}× the VAE, before "
        f"{paired['ddvae_pre_issue_22']:.2f}×. Goal ≤ 2.5×. GEMM FLOPs × VAE: what the "
        "step's matrix products alone cost relative to the VAE's (forward + backward = 3 × "
        "forward).\n\n## torch.profiler, DD-VAE step: top operators by self time\n\n"
        + markdown_table(["step", "operator", "self ms / step", "calls / step"], prof_rows)
    )
    name = "ddvi_step_speed_quick" if args.quick else "ddvi_step_speed"
    json_path, md_path = write_results(name, payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    sys.exit(main())
