"""The GPU figures in one call of a few minutes (issue 22, item 3): IWAE training, the k = 5000
log-likelihood evaluation, diffusion training and sampling against diffusers, and RED-diff
against DPS with an ADM-sized network at 256×256, with the card they ran on.

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/gpu.py                        # on a GPU machine (~4 min)
    PYTHONPATH=src python benchmarks/gpu.py --quick --device cpu   # the script's own smoke run

It runs wherever a GPU is present; without one it refuses unless ``--device cpu`` is given
(then it times the CPU, tiny sizes with ``--quick``). The project never needs a GPU. Writes
``benchmarks/results/gpu-<card>.{json,md}`` (``gpu-quick-<card>`` with ``--quick``).

Sections, each timed with ``torch.cuda.synchronize`` around the clock and the median of
``--repeats`` interleaved repetitions (ours and the peer alternate):

- ``card``: name, compute capability, memory, CUDA and torch versions; the fp32 GEMM rate of a
  4096² product with TF32 off (the rooflines below use it) and with TF32 on.
- ``iwae``: IWAE(k = 50) training steps/s on the paper's MNIST network (``iwae_speed.py``'s:
  784-200-200-(2·50), 50-200-200-784) at batch 20 (the paper's, launch-bound on a GPU) and at
  batch 1000, each against its roofline: 3× the forward GEMM FLOPs over the fp32 GEMM rate.
- ``eval``: ``estimate_log_likelihood`` with k = 5000 on ``--eval-images`` random binary
  images: images/s and the time over its matmul-bound minimum (forward GEMM FLOPs / rate).
- ``diffusion``: our UNet against diffusers' ``UNet2DModel`` of the same layout
  (``diffusion_speed.py``'s builders) at widths 16 and 64: training steps/s (batch 64) and
  DDIM-50 sampling images/s (batch 64), as ratios ours / diffusers. Skipped (with a note)
  without diffusers.
- ``inverse``: seconds per network evaluation (NFE) per image of RED-diff, DPS, ΠGDM and DDRM
  on bicubic SR ×4 with the ffhq256-width ADM at 256×256 (``inverse_cost.py``'s workload,
  random weights), beside a plain forward pass; the per-image cost at each solver's NFE budget
  and DPS's cost over RED-diff's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import diffusion_speed  # noqa: E402
import inverse_cost  # noqa: E402
import iwae_speed  # noqa: E402
from common import machine_info, markdown_table, write_results  # noqa: E402

from diffvi.evaluation.likelihood import estimate_log_likelihood  # noqa: E402
from diffvi.models.vae import build_vae  # noqa: E402
from diffvi.objectives.iwae import IWAE  # noqa: E402

SECTIONS = ("card", "iwae", "eval", "diffusion", "inverse")
FULL = {
    "gemm": 4096,
    "iwae_batches": (20, 1000),
    "eval_images": 1000,
    "widths": (16, 64),
    "diffusion_batch": 64,
    "ddim_steps": 50,
    "inverse_network": "ffhq256",
    "inverse_size": 256,
    "inverse_steps": 6,
    "repeats": 5,
    "seconds": 2.0,
}
QUICK = {
    "gemm": 512,
    "iwae_batches": (20,),
    "eval_images": 4,
    "widths": (8,),
    "diffusion_batch": 4,
    "ddim_steps": 3,
    "inverse_network": "tiny",
    "inverse_size": 32,
    "inverse_steps": 3,
    "repeats": 2,
    "seconds": 0.2,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes: the script's smoke run")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"of {','.join(SECTIONS)}")
    p.add_argument("--eval-images", type=int, default=None, help="k = 5000 images (1000)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (5)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.settings = dict(QUICK if args.quick else FULL)
    if args.eval_images is not None:
        args.settings["eval_images"] = args.eval_images
    if args.repeats is not None:
        args.settings["repeats"] = args.repeats
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"--sections takes {', '.join(SECTIONS)}; got {', '.join(sorted(unknown))}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("no CUDA device here: this benchmark is for a GPU (--device cpu times the CPU)")
    return args


# ----------------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], device: torch.device, budget: float) -> float:
    """Mean seconds of ``fn`` over as many calls as fit ``budget`` (at least 3, after 2 warm-up
    calls), the device synchronised around the clock."""
    for _ in range(2):
        fn()
    synchronize(device)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < budget:
        fn()
        calls += 1
        if calls % 10 == 0 or calls < 10:
            synchronize(device)
    synchronize(device)
    return (time.perf_counter() - start) / calls


def paired(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, budget: float
) -> dict[str, list[float]]:
    """Seconds per call of every function, interleaved over ``repeats`` rounds (order reversed
    every other round)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for name in order:
            times[name].append(seconds_per_call(fns[name], device, budget))
    return times


def gemm_gflops(size: int, device: torch.device, budget: float, tf32: bool) -> float:
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        return 2 * size**3 / seconds_per_call(lambda: a @ b, device, budget) / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


# --------------------------------------------------------------------------------- sections


def card(args: argparse.Namespace, device: torch.device) -> dict:
    s = args.settings
    info: dict = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "cuda": torch.version.cuda,
        }
    else:
        info |= {"name": common.cpu_model(), "threads": torch.get_num_threads()}
    info["gemm_size"] = s["gemm"]
    info["fp32_gflops"] = gemm_gflops(s["gemm"], device, s["seconds"], tf32=False)
    if device.type == "cuda":
        info["tf32_gflops"] = gemm_gflops(s["gemm"], device, s["seconds"], tf32=True)
    return info


def iwae_step_flops(batch: int) -> int:
    """Forward + backward ≈ 3× the forward GEMM FLOPs of one IWAE(k = 50) step."""
    forward = iwae_speed.mlp_flops(batch, iwae_speed.ENCODER)
    return 3 * (forward + iwae_speed.mlp_flops(iwae_speed.K * batch, iwae_speed.DECODER))


def iwae_row(args: argparse.Namespace, device: torch.device, gflops: float, batch: int) -> dict:
    """IWAE(k = 50) training steps/s at ``batch`` against its roofline."""
    s = args.settings
    torch.manual_seed(args.seed)
    model, posterior = build_vae((1, 28, 28), "iwae-1")
    model, posterior = model.to(device), posterior.to(device)
    objective = IWAE(k=iwae_speed.K)
    params = [*model.parameters(), *posterior.parameters()]
    opt = torch.optim.Adam(params, lr=iwae_speed.LR, fused=True)
    x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.2, device=device))

    def step() -> None:
        loss = objective(model, posterior, x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    times = paired({"ours": step}, device, s["repeats"], s["seconds"])["ours"]
    seconds = statistics.median(times)
    roofline = iwae_step_flops(batch) / (gflops * 1e9)
    return {
        "batch": batch,
        "k": iwae_speed.K,
        "steps_per_s": 1 / seconds,
        "images_per_s": batch / seconds,
        "roofline_steps_per_s": 1 / roofline,
        "fraction_of_roofline": roofline / seconds,
        "seconds": times,
    }


def evaluation(args: argparse.Namespace, device: torch.device, gflops: float) -> dict:
    s = args.settings
    torch.manual_seed(args.seed)
    model, posterior = build_vae((1, 28, 28), "iwae-1")
    model, posterior = model.to(device).eval(), posterior.to(device).eval()
    x = torch.bernoulli(torch.full((s["eval_images"], 1, 28, 28), 0.2, device=device))

    def run() -> Tensor:
        return estimate_log_likelihood(model, posterior, x, k=iwae_speed.EVAL_K).log_px

    synchronize(device)
    run()  # warm-up
    times = []
    for _ in range(max(1, s["repeats"] // 2)):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    bound = iwae_speed.eval_flops(s["eval_images"]) / (gflops * 1e9)
    return {
        "images": s["eval_images"],
        "k": iwae_speed.EVAL_K,
        "seconds": seconds,
        "images_per_s": s["eval_images"] / seconds,
        "matmul_bound_seconds": bound,
        "over_bound": seconds / bound,
        "times": times,
    }


def diffusion_row(args: argparse.Namespace, device: torch.device, width: int) -> dict:
    """Training steps/s and DDIM sampling images/s of ours and diffusers at ``width``."""
    from diffusers import DDIMScheduler, DDPMScheduler

    s = args.settings
    batch, steps, size, T = s["diffusion_batch"], s["ddim_steps"], diffusion_speed.IMAGE, 1000
    torch.manual_seed(args.seed)
    ours = diffusion_speed.build_ours(width).to(device)
    peer = diffusion_speed.build_peer(width).to(device)
    x = torch.rand(batch, 1, size, size, device=device)
    ours_opt = torch.optim.Adam(ours.parameters(), lr=diffusion_speed.LR)
    peer_opt = torch.optim.Adam(peer.parameters(), lr=diffusion_speed.LR)
    train_scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")

    def ours_train() -> None:
        loss = ours.loss(x).mean()
        ours_opt.zero_grad()
        loss.backward()
        ours_opt.step()

    def peer_train() -> None:  # the standard diffusers training loop
        clean = 2 * x - 1
        noise = torch.randn_like(clean)
        t = torch.randint(0, T, (batch,), device=device)
        noisy = train_scheduler.add_noise(clean, noise, t)
        loss = F.mse_loss(peer(noisy, t).sample, noise)
        peer_opt.zero_grad()
        loss.backward()
        peer_opt.step()

    train = paired({"ours": ours_train, "diffusers": peer_train}, device, s["repeats"],
                   s["seconds"])  # fmt: skip
    ddim = DDIMScheduler(num_train_timesteps=T, beta_schedule="linear")

    @torch.no_grad()
    def ours_sample() -> None:
        ours.sample((batch, 1, size, size), steps=steps, sampler="ddim")

    @torch.no_grad()
    def peer_sample() -> None:  # the standard diffusers sampling loop
        ddim.set_timesteps(steps)
        z = torch.randn(batch, 1, size, size, device=device)
        for t in ddim.timesteps:
            z = ddim.step(peer(z, t).sample, t, z).prev_sample

    ours.eval()
    peer.eval()
    sample = paired({"ours": ours_sample, "diffusers": peer_sample}, device,
                    max(2, s["repeats"] // 2), 0.0)  # fmt: skip
    med = {key: {k: statistics.median(v) for k, v in d.items()} for key, d in
           (("train", train), ("sample", sample))}  # fmt: skip
    return {
        "width": width,
        "params_ours": diffusion_speed.n_params(ours),
        "params_diffusers": diffusion_speed.n_params(peer),
        "train_steps_per_s": {k: 1 / v for k, v in med["train"].items()},
        "train_ratio_ours_over_diffusers": med["train"]["diffusers"] / med["train"]["ours"],
        f"ddim{steps}_images_per_s": {k: batch / v for k, v in med["sample"].items()},
        "sample_ratio_ours_over_diffusers": med["sample"]["diffusers"] / med["sample"]["ours"],
        "seconds": {"train": train, "sample": sample},
    }


def diffusion(args: argparse.Namespace, device: torch.device) -> dict:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return {"skipped": "diffusers is not installed (pip install -e '.[bench]')"}
    s = args.settings
    rows = [diffusion_row(args, device, width) for width in s["widths"]]
    return {"batch": s["diffusion_batch"], "ddim_steps": s["ddim_steps"], "widths": rows}


def inverse(args: argparse.Namespace, device: torch.device) -> dict:
    s = args.settings
    rows = []
    for solver in ("forward", *inverse_cost.SOLVERS):
        job = {
            "size": s["inverse_size"],
            "steps": s["inverse_steps"],
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "forward_repeats": 3,
            "memory_steps": 3,
            "memory_in_process": True,
            "network": s["inverse_network"],
            "batch": 1,
            "solver": solver,
            "operator": None if solver == "forward" else "sr4-bicubic",
        }
        r = inverse_cost.run_time_job(job)
        budget = inverse_cost.BUDGETS.get(solver)
        rows.append(
            {
                "solver": solver,
                "s_per_nfe": r["s_per_nfe"],
                "ratio_to_forward": r["ratio_to_forward_wall"],
                "nfe_budget": budget,
                "s_per_image_at_budget": None if budget is None else r["s_per_nfe"] * budget,
                "first_solve_peak_mb": r["first_solve_peak_mb"],
                "params": r["params"],
            }
        )
    by = {r["solver"]: r for r in rows}
    return {
        "network": s["inverse_network"],
        "size": s["inverse_size"],
        "operator": "sr4-bicubic",
        "solvers": rows,
        "dps_over_red_diff_per_nfe": by["dps"]["s_per_nfe"] / by["red-diff"]["s_per_nfe"],
        "dps_over_red_diff_per_image": by["dps"]["s_per_image_at_budget"]
        / by["red-diff"]["s_per_image_at_budget"],
    }


# ----------------------------------------------------------------------------------- report


def render(payload: dict) -> str:
    c = payload["card"]
    lines = [
        f"# GPU figures: {c['name']} ({payload['mode']})\n",
        f"Device {c['device']}, torch {c['torch']}; fp32 GEMM {c['fp32_gflops']:.0f} GFLOP/s "
        f"at {c['gemm_size']}²" + (f", TF32 {c['tf32_gflops']:.0f}" if "tf32_gflops" in c else "")
        + ". Command: `" + payload["command"] + "`.\n",
    ]  # fmt: skip
    if "iwae" in payload:
        lines += ["## IWAE(k = 50) training\n", markdown_table(
            ["batch", "steps/s", "images/s", "roofline steps/s", "fraction of roofline"],
            [[r["batch"], r["steps_per_s"], r["images_per_s"], r["roofline_steps_per_s"],
              r["fraction_of_roofline"]] for r in payload["iwae"]],
        )]  # fmt: skip
    if "eval" in payload:
        e = payload["eval"]
        lines += ["## k = 5000 log-likelihood evaluation\n", markdown_table(
            ["images", "seconds", "images/s", "matmul-bound s", "× bound"],
            [[e["images"], e["seconds"], e["images_per_s"], e["matmul_bound_seconds"],
              e["over_bound"]]],
        )]  # fmt: skip
    d = payload.get("diffusion")
    if d and "skipped" in d:
        lines += [f"## Diffusion against diffusers\n\nSkipped: {d['skipped']}\n"]
    elif d:
        key = f"ddim{d['ddim_steps']}_images_per_s"
        lines += [f"## Diffusion against diffusers (batch {d['batch']})\n", markdown_table(
            ["width", "train steps/s ours", "diffusers", "ratio", f"DDIM-{d['ddim_steps']} "
             "images/s ours", "diffusers", "ratio"],
            [[r["width"], r["train_steps_per_s"]["ours"], r["train_steps_per_s"]["diffusers"],
              r["train_ratio_ours_over_diffusers"], r[key]["ours"], r[key]["diffusers"],
              r["sample_ratio_ours_over_diffusers"]] for r in d["widths"]],
        )]  # fmt: skip
    if "inverse" in payload:
        v = payload["inverse"]
        lines += [
            f"## Inverse-problem solvers, ADM {v['network']} at {v['size']}², {v['operator']}\n",
            markdown_table(
                ["solver", "s / NFE", "× forward", "NFE budget", "s / image", "peak MB"],
                [[r["solver"], r["s_per_nfe"], r["ratio_to_forward"], r["nfe_budget"] or "—",
                  r["s_per_image_at_budget"] or "—", r["first_solve_peak_mb"]]
                 for r in v["solvers"]],
            ),
            f"DPS / RED-diff: {v['dps_over_red_diff_per_nfe']:.2f}× per NFE, "
            f"{v['dps_over_red_diff_per_image']:.2f}× per image at the papers' budgets.\n",
        ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    sections = args.sections.split(",")
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    payload: dict = {
        "mode": "quick" if args.quick else "full",
        "command": common.command_line(),
        "machine": machine_info(),
        "settings": args.settings,
        "card": card(args, device),
    }
    gflops = payload["card"]["fp32_gflops"]
    print(f"{payload['card']['name']}: fp32 GEMM {gflops:.0f} GFLOP/s", flush=True)
    steps = {
        "iwae": lambda: [iwae_row(args, device, gflops, b) for b in args.settings["iwae_batches"]],
        "eval": lambda: evaluation(args, device, gflops),
        "diffusion": lambda: diffusion(args, device),
        "inverse": lambda: inverse(args, device),
    }
    for name, run in steps.items():
        if name in sections:
            t0 = time.perf_counter()
            payload[name] = run()
            print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    payload["seconds"] = time.perf_counter() - started
    slug = "".join(ch if ch.isalnum() else "-" for ch in payload["card"]["name"]).strip("-")
    name = f"gpu-{'quick-' if args.quick else ''}{slug.lower()}"
    markdown = render(payload)
    write_results(name, payload, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
