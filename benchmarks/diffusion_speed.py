"""Speed of our diffusion model against Hugging Face diffusers (``UNet2DModel`` with
``DDPMScheduler`` / ``DDIMScheduler``) on networks of the same architecture and size, in one
run, reported as ratios ours / diffusers.

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/diffusion_speed.py              # full (~10 minutes)
    PYTHONPATH=src python benchmarks/diffusion_speed.py --quick      # CI-sized, under a minute
    PYTHONPATH=src python benchmarks/diffusion_speed.py --full-ddpm  # all 1000 DDPM steps

Writes ``benchmarks/results/diffusion_speed.{json,md}`` (``diffusion_speed_quick.*`` with
``--quick``). Needs the ``bench`` extra (diffusers). ``--compare-attention`` (issue 22) times
only training steps and no-grad network calls of ours now (attention projections as linear
layers), ours with them as 1×1 convolutions (as before) and diffusers, in wall and CPU time,
and writes ``diffusion_speed_attention{_quick}.{json,md}``.

Networks, for each width ``w`` in ``--widths``:

- ours: ``DiffusionModel(build_schedule("linear"), UNet(in_channels=1, base_channels=w,
  channel_mults=(1, 2, 2), num_res_blocks=1, attention_resolutions=(7,), image_size=28),
  loss_type="simple")``: levels 28, 14, 7 with widths w, 2w, 2w, one residual block per level
  down and two up, single-head self-attention at 7×7 and in the middle block, time embedding
  4w, GroupNorm(8).
- diffusers: ``UNet2DModel(sample_size=28, in_channels=1, out_channels=1,
  block_out_channels=(w, 2w, 2w), layers_per_block=1, down_block_types=("DownBlock2D",
  "DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D",
  "UpBlock2D"), norm_num_groups=8, attention_head_dim=2w)``: the same layout (its down blocks
  downsample after every block but the last, 28 → 14 → 7; attention at 7×7 and in the middle
  block, one head); the parameter counts come out equal (both are recorded).

Training step (batch 64 of random 8-bit images ``[64, 1, 28, 28]``, Adam lr 2e-4, warm-up
steps excluded): ours ``model.loss(x).mean()``; diffusers the standard loop with
``DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")``: random timesteps,
``add_noise``, MSE of ``unet(noisy, t).sample`` against the noise. Timings of ours and
diffusers alternate pair by pair (order swapped every round) and the medians are reported,
because the machine is shared and noisy; the paired ratio is the median of the per-round ratios.

Sampling (batch 64, ``torch.no_grad``): DDIM-50 for both (ours ``model.sample(..., steps=50,
sampler="ddim")``, 50 network evaluations; diffusers ``DDIMScheduler.set_timesteps(50)`` and
the loop ``eps = unet(x, t).sample; x = scheduler.step(eps, t, x).prev_sample``), and
DDPM-1000 (ours ``steps=1000, sampler="ddpm"``; diffusers ``DDPMScheduler`` with 1000 steps).
DDPM-1000 is run in full only with ``--full-ddpm``; otherwise the first ``--ddpm-steps`` steps
of each are timed and the time per step is extrapolated to 1000 (recorded in the JSON).
Both libraries run with ``torch.set_flush_denormal(True)`` and ``--threads`` threads.
"""

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import machine_info, markdown_table, write_results
from torch import Tensor, nn

from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.schedules import build_schedule
from diffvi.nn.unet import UNet

LR = 2e-4
IMAGE = 28
T = 1000


# -------------------------------------------------------------------------------- networks


def build_ours(width: int) -> DiffusionModel:
    unet = UNet(
        in_channels=1,
        base_channels=width,
        channel_mults=(1, 2, 2),
        num_res_blocks=1,
        attention_resolutions=(7,),
        image_size=IMAGE,
    )
    return DiffusionModel(build_schedule("linear"), unet, loss_type="simple")


def build_peer(width: int) -> nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=IMAGE,
        in_channels=1,
        out_channels=1,
        block_out_channels=(width, 2 * width, 2 * width),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=2 * width,  # one head, as ours
    )


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------- training


def ours_train_step(model: DiffusionModel) -> Callable[[Tensor], None]:
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def step(x: Tensor) -> None:
        loss = model.loss(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def peer_train_step(unet: nn.Module) -> Callable[[Tensor], None]:
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
    opt = torch.optim.Adam(unet.parameters(), lr=LR)

    def step(x: Tensor) -> None:
        clean = 2 * x - 1
        noise = torch.randn_like(clean)
        t = torch.randint(0, T, (clean.shape[0],), dtype=torch.long)
        noisy = scheduler.add_noise(clean, noise, t)
        loss = F.mse_loss(unet(noisy, t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


class Timed:
    """Steps/s of one training-step function, with the CPU share it got."""

    def __init__(self, step: Callable[[Tensor], None], batches: list[Tensor]) -> None:
        self.step, self.batches, self.done = step, batches, 0
        self.rates: list[float] = []
        self.cpu_per_wall: list[float] = []

    def run(self, min_steps: int, min_seconds: float, record: bool = True) -> float:
        n, c0, t0 = 0, time.process_time(), time.perf_counter()
        while True:
            self.step(self.batches[self.done % len(self.batches)])
            self.done, n = self.done + 1, n + 1
            elapsed = time.perf_counter() - t0
            if n >= min_steps and elapsed >= min_seconds:
                break
        if record:
            self.rates.append(n / elapsed)
            self.cpu_per_wall.append((time.process_time() - c0) / elapsed)
        return n / elapsed


# ------------------------------------------------------------------------------- sampling


class StopSampling(Exception):
    """Raised by a forward hook after the requested number of network evaluations."""


def stop_after(module: nn.Module, calls: int | None):
    """A forward hook on ``module`` that raises :class:`StopSampling` after ``calls`` calls."""
    if calls is None:
        return None
    count = [0]

    def hook(_module, _inputs, _output) -> None:
        count[0] += 1
        if count[0] >= calls:
            raise StopSampling

    return module.register_forward_hook(hook)


def time_ours_sampling(
    model: DiffusionModel, batch: int, steps: int, sampler: str, stop: int | None, seed: int
) -> tuple[float, int]:
    """Seconds for ``model.sample`` (or its first ``stop`` network calls), and the calls run."""
    gen = torch.Generator().manual_seed(seed)
    handle = stop_after(model.denoiser, stop)
    t0 = time.perf_counter()
    try:
        model.sample((batch, 1, IMAGE, IMAGE), steps=steps, sampler=sampler, generator=gen)
    except StopSampling:
        pass
    finally:
        if handle is not None:
            handle.remove()
    return time.perf_counter() - t0, stop or steps


def time_peer_sampling(
    unet: nn.Module, scheduler, batch: int, steps: int, stop: int | None, seed: int
) -> tuple[float, int]:
    """Seconds for the standard diffusers loop (or its first ``stop`` steps)."""
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        scheduler.set_timesteps(steps)
        x = torch.randn((batch, 1, IMAGE, IMAGE), generator=gen)
        timesteps = scheduler.timesteps[:stop] if stop else scheduler.timesteps
        for t in timesteps:
            eps = unet(x, t).sample
            x = scheduler.step(eps, t, x, generator=gen).prev_sample
        (x / 2 + 0.5).clamp(0, 1)
    return time.perf_counter() - t0, len(timesteps)


def sampling_rates(
    model: DiffusionModel,
    unet: nn.Module,
    batch: int,
    steps: int,
    sampler: str,
    stop: int | None,
    repeats: int,
    seed: int,
) -> dict:
    """Images/s of ours and diffusers for one sampler, interleaved over ``repeats`` pairs; with
    ``stop`` only the first ``stop`` steps are run and the time is extrapolated to ``steps``."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = DDPMScheduler if sampler == "ddpm" else DDIMScheduler
    scheduler = cls(num_train_timesteps=T, beta_schedule="linear")
    if stop is not None and stop >= steps:
        stop = None
    model.eval()
    unet.eval()
    with torch.no_grad():  # warm-up: first inference call of each network at this shape
        x = torch.randn(batch, 1, IMAGE, IMAGE)
        model.denoiser(x, torch.full((batch,), 0.5))
        _ = unet(x, scheduler.timesteps[0]).sample
    ours_s, peer_s = [], []
    for r in range(repeats):
        pair = [
            ("ours", lambda r=r: time_ours_sampling(model, batch, steps, sampler, stop, seed + r)),
            ("peer", lambda r=r: time_peer_sampling(unet, scheduler, batch, steps, stop, seed + r)),
        ]
        for key, fn in pair if r % 2 == 0 else pair[::-1]:
            seconds, run = fn()
            (ours_s if key == "ours" else peer_s).append(seconds * steps / run)
    model.train()
    unet.train()
    o, p = statistics.median(ours_s), statistics.median(peer_s)
    return {
        "sampler": f"{sampler.upper()}-{steps}",
        "network_calls": steps,
        "calls_timed": stop or steps,
        "extrapolated": stop is not None,
        "repeats": repeats,
        "ours_seconds": ours_s,
        "peer_seconds": peer_s,
        "ours_images_per_s": batch / o,
        "peer_images_per_s": batch / p,
        "ratio_ours_over_peer": p / o,
        "ours_ms_per_call": 1000 * o / steps,
        "peer_ms_per_call": 1000 * p / steps,
    }


# ------------------------------------------------------------------------------- profiling


def profile_step(step: Callable[[Tensor], None], x: Tensor, top: int = 12) -> list[dict]:
    """The ``top`` operators by self CPU time in one training step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_cpu_ms": e.self_cpu_time_total / 1000,
            "share": e.self_cpu_time_total / total,
        }
        for e in events[:top]
    ] + [{"op": "TOTAL", "calls": None, "self_cpu_ms": total / 1000, "share": 1.0}]


# ------------------------------------------------------------------------------------ main


def bench_width(width: int, args, cfg: dict, deadline: float) -> dict:
    torch.manual_seed(args.seed)
    model, unet = build_ours(width), build_peer(width)
    gen = torch.Generator().manual_seed(args.seed)
    batches = [
        torch.randint(0, 256, (args.batch_size, 1, IMAGE, IMAGE), generator=gen).float() / 255
        for _ in range(4)
    ]
    ours, peer = Timed(ours_train_step(model), batches), Timed(peer_train_step(unet), batches)
    print(f"width {width}: ours {n_params(model)} params, diffusers {n_params(unet)}", flush=True)
    for r in (ours, peer):
        r.run(cfg["warmup"], 0.0, record=False)
    rounds_done = 0
    for i in range(cfg["rounds"]):
        pair = (ours, peer) if i % 2 == 0 else (peer, ours)
        for r in pair:
            r.run(cfg["min_steps"], cfg["seconds"])
        rounds_done += 1
        print(
            f"  train round {i + 1}: ours {ours.rates[-1]:.2f}, diffusers {peer.rates[-1]:.2f} "
            "steps/s",
            flush=True,
        )
        if time.perf_counter() > deadline and rounds_done >= 2:
            print("  time budget reached: fewer training rounds", flush=True)
            break
    o, p = statistics.median(ours.rates), statistics.median(peer.rates)
    training = {
        "rounds": rounds_done,
        "warmup_steps": cfg["warmup"],
        "ours_steps_per_s": ours.rates,
        "peer_steps_per_s": peer.rates,
        "ours_steps_per_s_median": o,
        "peer_steps_per_s_median": p,
        "ratio_ours_over_peer": o / p,
        "ratio_paired_median": statistics.median(
            a / b for a, b in zip(ours.rates, peer.rates, strict=True)
        ),
        "cpu_seconds_per_wall_second": statistics.median(ours.cpu_per_wall + peer.cpu_per_wall),
    }
    profile = None
    if args.profile:
        profile = {
            "ours": profile_step(ours.step, batches[0]),
            "peer": profile_step(peer.step, batches[0]),
        }
    ddim = sampling_rates(
        model, unet, args.batch_size, cfg["ddim_steps"], "ddim", None, cfg["ddim_repeats"],
        args.seed,
    )  # fmt: skip
    print(
        f"  {ddim['sampler']}: ours {ddim['ours_images_per_s']:.2f}, diffusers "
        f"{ddim['peer_images_per_s']:.2f} images/s",
        flush=True,
    )
    ddpm = sampling_rates(
        model, unet, args.batch_size, T, "ddpm", None if args.full_ddpm else cfg["ddpm_steps"],
        1, args.seed,
    )  # fmt: skip
    print(
        f"  {ddpm['sampler']} ({'extrapolated' if ddpm['extrapolated'] else 'full'}): ours "
        f"{ddpm['ours_images_per_s']:.3f}, diffusers {ddpm['peer_images_per_s']:.3f} images/s",
        flush=True,
    )
    return {
        "width": width,
        "params_ours": n_params(model),
        "params_peer": n_params(unet),
        "training": training,
        "ddim": ddim,
        "ddpm": ddpm,
        "profile_one_training_step": profile,
    }


# ---------------------------------------------------------- issue 22: attention as linear


class ConvAttention(nn.Module):
    """Our ``AttentionBlock`` as it was before issue 22: qkv and output projections as 1×1
    convolutions (the same function as the linear layers now)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        channels = block.qkv.in_features
        self.num_heads, self.norm = block.num_heads, block.norm
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        with torch.no_grad():
            self.qkv.weight.copy_(block.qkv.weight[..., None, None])
            self.qkv.bias.copy_(block.qkv.bias)
            self.proj.weight.copy_(block.proj.weight[..., None, None])
            self.proj.bias.copy_(block.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def with_conv_attention(model: DiffusionModel) -> DiffusionModel:
    """A copy of ``model`` whose attention blocks are the 1×1-convolution ones (same weights)."""
    import copy

    from diffvi.nn.unet import AttentionBlock

    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, AttentionBlock):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, ConvAttention(module))
    return model


def compare_attention(args: argparse.Namespace) -> int:
    """Training steps and network calls (DDIM's no-grad forward) of ours now (linear
    attention projections), ours before issue 22 (1×1 convolutions) and diffusers, at each
    width, interleaved; median wall and CPU time; ratios ours / diffusers."""
    quick = args.quick
    widths = args.widths or ([16] if quick else [16, 32])
    rounds = args.rounds or (2 if quick else 7)
    steps = 2 if quick else 4
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    machine, load_start = machine_info(), list(os.getloadavg())
    gen = torch.Generator().manual_seed(args.seed)
    results = []
    for width in widths:
        torch.manual_seed(args.seed)
        now, peer = build_ours(width), build_peer(width)
        conv = with_conv_attention(now)
        batches = [
            torch.randint(0, 256, (args.batch_size, 1, IMAGE, IMAGE), generator=gen).float() / 255
            for _ in range(4)
        ]
        x_noise = torch.randn(args.batch_size, 1, IMAGE, IMAGE, generator=gen)
        t_ours = torch.full((args.batch_size,), 0.5)
        t_peer = torch.full((args.batch_size,), 500, dtype=torch.long)
        train = {"now": ours_train_step(now), "conv": ours_train_step(conv),
                 "diffusers": peer_train_step(peer)}  # fmt: skip

        def call(net, t, x_noise=x_noise):
            def run(_x):
                with torch.no_grad():
                    net(x_noise, t)

            return run

        calls = {"now": call(now.denoiser, t_ours), "conv": call(conv.denoiser, t_ours),
                 "diffusers": call(peer, t_peer)}  # fmt: skip
        timings = {}
        for kind, fns in (("train", train), ("call", calls)):
            for fn in fns.values():
                fn(batches[0])
            wall = {k: [] for k in fns}
            cpu = {k: [] for k in fns}
            for r in range(rounds):
                order = list(fns) if r % 2 == 0 else list(fns)[::-1]
                for key in order:
                    t0, c0 = time.perf_counter(), time.process_time()
                    for j in range(steps):
                        fns[key](batches[j % len(batches)])
                    wall[key].append((time.perf_counter() - t0) / steps)
                    cpu[key].append((time.process_time() - c0) / steps)
            timings[kind] = {
                "seconds_median": {k: statistics.median(v) for k, v in wall.items()},
                "cpu_seconds_median": {k: statistics.median(v) for k, v in cpu.items()},
                "seconds_rounds": wall,
                "cpu_seconds_rounds": cpu,
            }
            med = timings[kind]["cpu_seconds_median"]
            print(f"width {width} {kind}: " + ", ".join(f"{k} {v * 1e3:.1f} ms CPU"
                  for k, v in med.items()), flush=True)  # fmt: skip
        results.append({"width": width, "params_ours": n_params(now),
                        "params_peer": n_params(peer), **timings})  # fmt: skip
    payload = {
        "mode": "quick" if quick else "full",
        "seed": args.seed,
        "threads": args.threads,
        "machine": machine,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "settings": {"batch_size": args.batch_size, "rounds": rounds, "per_timing": steps},
        "results": results,
    }
    rows = []
    for r in results:
        for kind, label in (("train", "train step"), ("call", "network call (no grad)")):
            cpu, wall = r[kind]["cpu_seconds_median"], r[kind]["seconds_median"]
            rows.append([
                r["width"], label, cpu["conv"] * 1e3, cpu["now"] * 1e3, cpu["diffusers"] * 1e3,
                cpu["diffusers"] / cpu["conv"], cpu["diffusers"] / cpu["now"],
                wall["diffusers"] / wall["conv"], wall["diffusers"] / wall["now"],
            ])  # fmt: skip
    table = markdown_table(
        ["width", "quantity", "ours before (conv 1×1), CPU ms", "ours now (linear), CPU ms",
         "diffusers, CPU ms", "speed vs diffusers before (CPU)", "now (CPU)",
         "before (wall)", "now (wall)"],
        rows,
    )  # fmt: skip
    md = (
        "# UNet attention projections: 1×1 convolutions (before issue 22) vs linear layers, "
        f"against diffusers ({payload['mode']} mode)\n\n"
        f"{machine['cpu_model']}, {machine['cpu_count']} cores, torch {machine['torch']}, "
        f"{args.threads} thread(s), flush-denormal on; load average {load_start} at start, "
        f"{payload['loadavg_end']} at end. Batch {args.batch_size}, networks as in the full "
        f"benchmark; {rounds} interleaved rounds of {steps} (order alternating), median. "
        "Speed vs diffusers = diffusers' time / ours (> 1: ours faster). CPU time: what other "
        "processes' time slices do not inflate (one thread).\n\n" + table
    )
    name = "diffusion_speed_attention_quick" if quick else "diffusion_speed_attention"
    json_path, md_path = write_results(name, payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (< 1 minute)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="base channel widths (default: 16 32; --quick: 16)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=None, help="interleaved training rounds")
    parser.add_argument("--ddpm-steps", type=int, default=None,
                        help="DDPM steps timed, extrapolated to 1000 (default 100)")  # fmt: skip
    parser.add_argument("--sampling-repeats", type=int, default=None,
                        help="DDIM sampling repeats (default 3; --quick: 1)")  # fmt: skip
    parser.add_argument("--full-ddpm", action="store_true", help="run all 1000 DDPM steps")
    parser.add_argument("--budget-minutes", type=float, default=10.0,
                        help="stop adding training rounds once this is spent")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="profile one training step of each (top operators)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compare-attention",
        action="store_true",
        help="only time ours now, ours with 1×1-conv attention (before issue 22) and diffusers",
    )
    args = parser.parse_args(argv)
    if args.compare_attention:
        return compare_attention(args)

    quick = args.quick
    widths = args.widths or ([16] if quick else [16, 32])
    cfg = {
        "warmup": 1 if quick else 3,
        "rounds": args.rounds or (2 if quick else 5),
        "min_steps": 2 if quick else 5,
        "seconds": 0.0 if quick else 4.0,
        "ddim_steps": 5 if quick else 50,
        "ddim_repeats": args.sampling_repeats or (1 if quick else 3),
        "ddpm_steps": args.ddpm_steps or (5 if quick else 100),
    }
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    machine, load_start = machine_info(), list(os.getloadavg())
    t_start = time.perf_counter()
    deadline = t_start + 60 * args.budget_minutes
    results = []
    for i, width in enumerate(widths):
        # Each width gets an equal share of what is left of the budget for its training rounds.
        share = (deadline - time.perf_counter()) / (len(widths) - i) * 0.5
        results.append(bench_width(width, args, cfg, time.perf_counter() + share))
    wall = time.perf_counter() - t_start
    import diffusers

    cpu_share = statistics.median(
        r["training"]["cpu_seconds_per_wall_second"] for r in results
    ) / max(1, args.threads)
    payload = {
        "mode": "quick" if quick else "full",
        "seed": args.seed,
        "threads": args.threads,
        "flush_denormal": True,
        "machine": machine,
        "diffusers": diffusers.__version__,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "settings": {
            **cfg,
            "batch_size": args.batch_size,
            "lr": LR,
            "image": [1, IMAGE, IMAGE],
            "data": "random 8-bit images (k/255), 4 fixed batches",
            "ddpm": "full 1000 steps"
            if args.full_ddpm
            else (f"first {cfg['ddpm_steps']} steps timed, extrapolated per step to 1000"),
            "budget_minutes": args.budget_minutes,
            "wall_seconds": wall,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },  # fmt: skip
        "widths": results,
        "notes": [
            "ratio = ours / diffusers (> 1: ours faster). Training steps/s is the median of "
            "interleaved timings; the paired ratio is the median of per-round ratios.",
            f"median CPU time per wall second during training: {cpu_share:.0%} of "
            f"{args.threads} threads"
            + (" — other processes took the cores, rates are depressed" if cpu_share < 0.8 else ""),
        ],
    }
    md = render_markdown(payload)
    name = "diffusion_speed_quick" if quick else "diffusion_speed"
    json_path, md_path = write_results(name, payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path}")
    return 0


def render_markdown(payload: dict) -> str:
    m, s = payload["machine"], payload["settings"]
    rows = []
    for r in payload["widths"]:
        tr, ddim, ddpm = r["training"], r["ddim"], r["ddpm"]
        ddpm_note = " (extrap.)" if ddpm["extrapolated"] else ""
        rows += [
            [r["width"], "parameters", r["params_ours"], r["params_peer"],
             r["params_ours"] / r["params_peer"]],
            [r["width"], "train steps/s", tr["ours_steps_per_s_median"],
             tr["peer_steps_per_s_median"], tr["ratio_ours_over_peer"]],
            [r["width"], f"{ddim['sampler']} images/s", ddim["ours_images_per_s"],
             ddim["peer_images_per_s"], ddim["ratio_ours_over_peer"]],
            [r["width"], f"{ddpm['sampler']} images/s{ddpm_note}", ddpm["ours_images_per_s"],
             ddpm["peer_images_per_s"], ddpm["ratio_ours_over_peer"]],
            [r["width"], "ms per network call (DDIM)", ddim["ours_ms_per_call"],
             ddim["peer_ms_per_call"], ddim["peer_ms_per_call"] / ddim["ours_ms_per_call"]],
        ]  # fmt: skip
    table = markdown_table(["width", "quantity", "ours", "diffusers", "ours / diffusers"], rows)
    paired = ", ".join(
        f"width {r['width']}: {r['training']['ratio_paired_median']:.2f}× over "
        f"{r['training']['rounds']} rounds"
        for r in payload["widths"]
    )
    text = (
        f"# Diffusion speed: diffvi vs diffusers ({payload['mode']} mode)\n\n"
        f"{m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']}, diffusers "
        f"{payload['diffusers']}, {payload['threads']} threads, flush-denormal on; load average "
        f"{payload['loadavg_start']} at start, {payload['loadavg_end']} at end. "
        f"Batch {s['batch_size']} of {s['data']}, Adam lr {s['lr']}. Same U-Net layout in both "
        "(widths w, 2w, 2w at 28, 14, 7; attention at 7×7 and in the middle). "
        f"DDPM: {s['ddpm']}. Ratio > 1: ours faster. Wall time {s['wall_seconds']:.0f} s.\n\n"
        f"{table}\n"
        f"Training ratio paired within rounds: {paired}.\n\n"
        f"{payload['notes'][-1]}.\n"
    )
    for r in payload["widths"]:
        prof = r["profile_one_training_step"]
        if not prof:
            continue
        for key, label in (("ours", "ours"), ("peer", "diffusers")):
            text += (
                f"\n## One training step, width {r['width']}, {label}: top operators\n\n"
                + markdown_table(
                    ["op", "calls", "self CPU ms", "share"],
                    [[e["op"], e["calls"], e["self_cpu_ms"], e["share"]] for e in prof[key]],
                )
            )
    return text


if __name__ == "__main__":
    sys.exit(main())
