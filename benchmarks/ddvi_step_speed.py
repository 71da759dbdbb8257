"""DD-VAE training step against a VAE step on MNIST-sized batches (issue 22): the settings of
``benchmarks/ddvi_mnist.py`` (2-D latents, SiLU MLPs 256-256, batch 128, Adam, exact pinwheel
prior, DD-VAE: T = 20, β_reg = 0.01, one sleep batch), timed step by step, three ways
interleaved in one process: the VAE, the DD-VAE as the library runs it now, and the DD-VAE with
the reverse chain as it was before issue 22 (``reference_reverse`` below: per-step
concatenation of y_t, time features and c(x), 0-d schedule tensors, per-step densities).

Issue 23 adds the official recipe's steps (``ddvi_mnist.py``'s ``ddvae-official``: the
``VAEFamily.official_step`` of stage 1, of stage 2 with the decoder frozen, and of stage 2 with
it trained), now and as they were before issue 23 (``ddim_before_issue_23``: the DDIM step on
0-d schedule tensors; ``kde_before_issue_23``: the kernel density score by broadcast distances
and one autograd logsumexp per bandwidth).

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/ddvi_step_speed.py --threads 1
    PYTHONPATH=src python benchmarks/ddvi_step_speed.py --quick

Writes ``benchmarks/results/ddvi_step_speed{_quick}.{json,md}``: median wall and CPU seconds
per step (interleaved rounds), the ratios to the VAE step, the GEMM FLOPs of each step (the
ratio the GEMMs alone impose), and a torch.profiler summary (operator calls and the top
operators by self time) of each step. ``--no-official`` leaves the official recipe out.
"""

import argparse
import math
import os
import statistics
import sys
import time
from contextlib import contextmanager

import torch
from common import machine_info, markdown_table, write_results

from diffvi.distributions import KernelDensityScore
from diffvi.distributions.gaussian import LOG_2PI
from diffvi.posteriors.diffusion import DiffusionPosterior, ReverseChain
from diffvi.training import TrainConfig
from diffvi.training.families.vae import (
    VAEFamily,
    build_model_from_config,
    build_objective_from_config,
)
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
# ddvi_mnist.py's "ddvae-official"; stage 2 from step 100, decoder trained again from step 200.
OFFICIAL = {
    "objective": "ddvi-official", "posterior": "diffusion", "conditional": False,
    "beta_reg": 0.01 * 784, "beta_sleep": 784.0,
    "stage2": {"start_step": 100, "decoder_free_step": 200},
}  # fmt: skip
OFFICIAL_PHASES = {"official_stage1": 0, "official_stage2_frozen": 150, "official_stage2": 250}


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


def ddim_before_issue_23(q: DiffusionPosterior, y_T, c) -> ReverseChain:
    """``DiffusionPosterior._reverse_ddim`` as it was before issue 23 (0-d schedule tensors)."""
    s = q.schedule
    denoise = q._denoiser_steps(c, y_T.dtype)
    y, chain = y_T, [y_T]
    for t in range(s.num_steps, 0, -1):
        i = t - 1
        eps_hat = denoise(y, i)
        alpha_bar, ab_prev = s.alpha_bars[i], s.alpha_bars_prev[i]
        y0_hat = (y - (1 - alpha_bar).sqrt() * eps_hat) / alpha_bar.sqrt()
        y = ab_prev.sqrt() * y0_hat + (1 - ab_prev).sqrt() * eps_hat
        chain.append(y)
    return ReverseChain(chain=torch.stack(chain), log_q_steps=None, log_r=None)


def kde_before_issue_23(self: KernelDensityScore, z):
    """``KernelDensityScore.forward`` as it was before issue 23."""
    dim = self.samples.shape[1]
    flat = z.reshape(-1, dim)
    samples, hs = self.samples.to(flat.dtype), self.bandwidths.to(flat.dtype)
    log_norm = 0.5 * dim * torch.log(2 * math.pi * hs.square()) + math.log(samples.shape[0])
    blocks = []
    for block in flat.split(1024):
        d2 = (block[:, None, :] - samples).square().sum(-1)  # [m, N]
        per_h = torch.stack([torch.logsumexp(d2 / (-2 * h * h), dim=-1) for h in hs])
        per_h = (per_h - log_norm[:, None]).clamp(-self.clamp, self.clamp)
        blocks.append(torch.logsumexp(per_h, dim=0) - math.log(len(hs)))
    return torch.cat(blocks).reshape(z.shape[:-1])


PATCHES = {
    "pre_issue_22": [(DiffusionPosterior, "reverse", reference_reverse)],
    "pre_issue_23": [
        (DiffusionPosterior, "_reverse_ddim", ddim_before_issue_23),
        (KernelDensityScore, "forward", kde_before_issue_23),
    ],
}


@contextmanager
def patched(which: str | None):
    """The library with the code of ``PATCHES[which]`` in place (``None``: as it is)."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in PATCHES.get(which, [])]
    for owner, name, value in PATCHES.get(which, []):
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def make_official_steps(seed: int) -> dict:
    """One step of ``VAEFamily.official_step`` per phase of the official recipe (stage 1, stage
    2 with the decoder frozen, stage 2 with it trained), sharing one family and its three Adams
    (built from ``seed``; the KDE's 10,000 pinwheel samples from ``seed`` as in training)."""
    torch.manual_seed(seed)
    family = VAEFamily(TrainConfig(**{**CONFIG, **OFFICIAL, "max_steps": 1000}))
    family.fix_stage_boundaries(None)
    optimizers = family.configure_optimizers()

    def make(at: int):
        def step(x):
            family.current_step = at
            family.official_step((x,), optimizers, lambda loss: loss.backward())

        return step

    return {name: make(at) for name, at in OFFICIAL_PHASES.items()}


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


def official_flops(stage: int, time_dim: int = 16) -> int:
    """GEMM FLOPs of a step of the official recipe: the wake pass (encoder, context, decoder and
    T folded denoiser steps, forward + backward), the no-grad DDPM bound pass, and the sleep
    batches (decoder forward, context and denoiser forward + backward); stage 1: T = 20, no
    context, one sleep batch; stage 2: T = 40, a context network of 2 outputs, 3 sleep steps."""
    h = [HIDDEN, HIDDEN]
    steps, ctx, sleeps = (20, 0, 1) if stage == 1 else (40, 2, 3)
    enc = linear_flops(BATCH, [784, *h, 4])
    dec = linear_flops(BATCH, [2, *h, 784])
    context = linear_flops(BATCH, [784, *h, ctx]) if ctx else 0
    den = linear_flops(BATCH, [2, *h, 2])
    once = linear_flops(steps, [time_dim, HIDDEN]) + (
        linear_flops(BATCH, [ctx, HIDDEN]) if ctx else 0
    )
    wake = 3 * (enc + context + dec + steps * den + once)
    bound = enc + context + dec + steps * den + once
    sleep = sleeps * (dec + 3 * (context + linear_flops(BATCH, [2 + time_dim + ctx, *h, 2])))
    return wake + bound + sleep


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
    official = {"official_stage1": official_flops(1), "official_stage2": official_flops(2)}
    official["official_stage2_frozen"] = official["official_stage2"]  # (decoder grads computed)
    return {"vae": vae, "ddvae_pre_issue_22": old, "ddvae": new, **official}


def profile_step(step, x, which: str | None, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with patched(which), profile(activities=[ProfilerActivity.CPU]) as prof:
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


LABELS = {
    "vae": "VAE",
    "ddvae_pre_issue_22": "DD-VAE, reverse chain before issue 22",
    "ddvae": "DD-VAE now",
    "official_stage1_pre_issue_23": "official stage 1, before issue 23",
    "official_stage1": "official stage 1 now",
    "official_stage2_frozen_pre_issue_23": "official stage 2 (decoder frozen), before issue 23",
    "official_stage2_frozen": "official stage 2 (decoder frozen) now",
    "official_stage2_pre_issue_23": "official stage 2 (decoder trained), before issue 23",
    "official_stage2": "official stage 2 (decoder trained) now",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int)
    p.add_argument("--steps", type=int, help="steps per timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-official", action="store_true", help="leave the official recipe out")
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
    # name -> (step, the patch it runs under: None, or the code before an issue)
    runners = {
        "vae": (make_step("vae", args.seed), None),
        "ddvae": (make_step("ddvae", args.seed), None),
        "ddvae_pre_issue_22": (make_step("ddvae", args.seed), "pre_issue_22"),
    }
    if not args.no_official:
        # "now" and "before" each on their own family, same seed
        for suffix, which in (("", None), ("_pre_issue_23", "pre_issue_23")):
            for name, step in make_official_steps(args.seed).items():
                runners[name + suffix] = (step, which)
    wall = {k: [] for k in runners}
    cpu = {k: [] for k in runners}
    warmup_cpu = {}
    done = 0
    for key, (step, which) in runners.items():  # warm-up (the first step's cost recorded)
        with patched(which):
            c0 = time.process_time()
            step(batches[0])
            warmup_cpu[key] = time.process_time() - c0
            for _ in range(2):
                step(batches[0])
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for key in order:
            step, which = runners[key]
            with patched(which):
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
    others = [k for k in runners if k != "vae"]
    paired = {
        key: statistics.median(a / b for a, b in zip(cpu[key], cpu["vae"], strict=True))
        for key in others
    }
    flops = step_flops()
    flops.update({f"{k}_pre_issue_23": flops[k] for k in OFFICIAL_PHASES})
    flops = {k: flops[k] for k in runners}
    profiles = {
        key: profile_step(runners[key][0], batches[0], runners[key][1], 3 if args.quick else 10)
        for key in runners
    }
    payload = {
        "mode": "quick" if args.quick else "full",
        "seed": args.seed,
        "threads": args.threads,
        "machine": machine,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "settings": {**CONFIG, "rounds": rounds, "steps_per_timing": steps, "data": data,
                     "official": None if args.no_official else OFFICIAL,
                     "official_phase_steps": OFFICIAL_PHASES},
        "seconds_per_step_median": med,
        "cpu_seconds_per_step_median": med_cpu,
        "first_step_cpu_seconds": warmup_cpu,
        "seconds_per_step_rounds": wall,
        "cpu_seconds_per_step_rounds": cpu,
        "ratio_to_vae": {k: med[k] / med["vae"] for k in others},
        "cpu_ratio_to_vae": {k: med_cpu[k] / med_cpu["vae"] for k in others},
        "cpu_ratio_to_vae_paired_median": paired,
        "gemm_flops_per_step": flops,
        "gemm_flop_ratio_to_vae": {k: v / flops["vae"] for k, v in flops.items()},
        "profile": profiles,
        "goal": {"ratio_to_vae_target": 2.5},
    }  # fmt: skip
    rows = [
        [
            LABELS[key], med[key] * 1e3, med_cpu[key] * 1e3, med[key] / med["vae"],
            med_cpu[key] / med_cpu["vae"], flops[key] / flops["vae"],
            profiles[key]["aten_calls_per_step"], warmup_cpu[key] * 1e3,
        ]
        for key in runners
    ]  # fmt: skip
    table = markdown_table(
        ["step", "ms (median)", "CPU ms", "× VAE", "CPU × VAE", "GEMM FLOPs × VAE",
         "aten calls / step", "first step CPU ms"],
        rows,
    )  # fmt: skip
    prof_rows = [
        [key, t["op"], t["self_ms_per_step"], t["calls_per_step"]]
        for key in runners
        if key != "vae"
        for t in profiles[key]["top"][:6]
    ]
    official = "" if args.no_official else (
        " Official recipe (``ddvi_mnist.py``'s ddvae-official): ``VAEFamily.official_step`` at "
        "stage 1 (unconditional T = 20 DDIM wake chain, KL, one sleep batch, the no-grad DDPM "
        "bound pass), stage 2 with the decoder frozen and with it trained (x-conditional T = 40 "
        "DDIM chain, −log p_KDE(z) on 10,000 pinwheel samples, wake Huber loss, the bound "
        "pass, then 3 sleep optimiser steps); 'before issue 23': the DDIM step on 0-d schedule "
        "tensors and the KDE by autograd logsumexp."
    )  # fmt: skip
    md = (
        f"# DD-VAE and official DDVI steps against a VAE step ({payload['mode']} mode)\n\n"
        f"{machine['cpu_model']}, {machine['cpu_count']} cores, torch {machine['torch']}, "
        f"{args.threads} thread(s); load average {load_start} at start, "
        f"{payload['loadavg_end']} at end. {rounds} interleaved rounds of {steps} steps "
        f"(order alternating), median per step; batch {BATCH} of {data}, MLPs {HIDDEN}-{HIDDEN} "
        "SiLU, 2-D latents, exact pinwheel prior, DD-VAE T = 20, β_reg = 0.01, one sleep batch; "
        f"step = objective, backward, Adam.{official} 'first step': the CPU time of each "
        "step's first call (start-up).\n\n"
        f"{table}\nCPU time paired per round (median ratio to the VAE): "
        + ", ".join(f"{LABELS[k]} {v:.2f}×" for k, v in paired.items())
        + ". Goal for the DD-VAE ≤ 2.5×. GEMM FLOPs × VAE: what the step's matrix products "
        "alone cost relative to the VAE's (forward + backward = 3 × forward).\n\n"
        "## torch.profiler: top operators by self time\n\n"
        + markdown_table(["step", "operator", "self ms / step", "calls / step"], prof_rows)
    )
    name = "ddvi_step_speed_quick" if args.quick else "ddvi_step_speed"
    json_path, md_path = write_results(name, payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    sys.exit(main())
