"""CVDM benchmark (della Maggiora et al., ICLR 2024): the learned, condition-dependent schedule
against the same conditional model with fixed linear and cosine schedules and a regression UNet
of the same widths, at equal training steps, on the four paired tasks (MNIST / Fashion-MNIST
4× super-resolution, simulated BioSR-like microscopy, phase from two defocused intensities).

Every (task, schedule, seed) run trains with ``fit`` into ``benchmarks/runs/cvdm/`` (a
finished run is reused), then restores the first ``--eval-count`` test pairs with ``--samples``
samples of ``--sample-steps`` steps each (clipped to the task's target bounds) and stores
per-item scores. The assembly writes ``benchmarks/results/cvdm-<series>.{json,md}``: PSNR /
SSIM of the sample mean (mean ± sd over seeds), the classical baseline (upsampling or TIE),
per-structure and per-photon-level microscopy tables, the uncertainty scores (Spearman between
the std map and the absolute error, ±2σ coverage, Spearman between λ(x) and the std map), the
learned γ̄ at t₀ and t_T, timings, and ``docs/figures/cvdm_uncertainty.png``.

MS-SSIM is not reported: with its standard 11-tap window and 5 scales it needs images of at
least 161 px, and these are 28–32 px.

    python benchmarks/cvdm.py --quick                    # CI-sized smoke run
    python benchmarks/cvdm.py --shard 0 --shards 2 &     # the full run on two cores, one
    python benchmarks/cvdm.py --shard 1 --shards 2 &     #   thread per process
    python benchmarks/cvdm.py --assemble-only            # tables and figure from finished runs

``--prior-kl official`` trains with the official code's direction of the prior KL (the runs and
results get ``-kl-official`` in their series name); ``--label NAME`` appends ``-NAME`` to the
series, so that a subset (``--tasks phase --schedules learned``) gets results of its own:

    python benchmarks/cvdm.py --tasks phase --schedules learned,linear --label phase
    python benchmarks/cvdm.py --tasks phase --schedules learned --prior-kl official --label phase
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import command_line, machine_info, markdown_table, write_results  # noqa: E402

from diffvi.data.microscopy import STRUCTURES  # noqa: E402
from diffvi.data.paired import load_paired  # noqa: E402
from diffvi.diffusion.conditional import PRIOR_KL  # noqa: E402
from diffvi.evaluation.conditional import sample_images, score_samples, spearman  # noqa: E402
from diffvi.training import CVDMConfig, fit, load  # noqa: E402

RUNS_DIR = Path(__file__).resolve().parent / "runs" / "cvdm"
FIGURES_DIR = Path(__file__).resolve().parent.parent / "docs" / "figures"
TASKS = {
    "mnist-sr4": {},
    "fashion-mnist-sr4": {},
    "microscopy-sr": {"size": 32},
    "phase": {},
}
SCHEDULES = ("learned", "linear", "cosine", "regression")
PHOTON_BINS = ((15.0, 60.0), (60.0, 200.0), (200.0, 600.0))
FULL = {
    "steps": 1000,
    "train_size": 8192,
    "base_channels": 16,
    "batch_size": 16,
    "lr": 2e-4,
    "eval_count": 48,
    "samples": 10,
    "sample_steps": 100,
    "seeds": "0,1,2",
}
QUICK = {
    "steps": 12,
    "train_size": 64,
    "base_channels": 8,
    "batch_size": 8,
    "lr": 2e-4,
    "eval_count": 4,
    "samples": 3,
    "sample_steps": 6,
    "seeds": "0",
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny models and budgets")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--schedules", default=",".join(SCHEDULES))
    for name, value in FULL.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None)
    p.add_argument("--threads", type=int, default=None, help="default: 2 // shards")
    p.add_argument(
        "--prior-kl", choices=PRIOR_KL, default="paper",
        help="direction of CVDM's prior KL (series suffix -kl-official for the official one)",
    )  # fmt: skip
    p.add_argument("--label", default=None, help="suffix of the series name, e.g. phase")
    common.add_shard_arguments(p)
    args = common.parse_shard_args(p)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    unknown = set(args.tasks.split(",")) - set(TASKS)
    if unknown:
        p.error(f"unknown tasks {sorted(unknown)}; valid: {list(TASKS)}")
    unknown = set(args.schedules.split(",")) - set(SCHEDULES)
    if unknown:
        p.error(f"unknown schedules {sorted(unknown)}; valid: {list(SCHEDULES)}")
    return args


def series(args: argparse.Namespace) -> str:
    name = "quick" if args.quick else f"steps{args.steps}-n{args.eval_count}"
    if args.prior_kl != "paper":
        name += f"-kl-{args.prior_kl}"
    return name if args.label is None else f"{name}-{args.label}"


def task_options(task: str, quick: bool) -> dict:
    return {"size": 16} if quick and task == "microscopy-sr" else dict(TASKS[task])


def run_dir(args: argparse.Namespace, task: str, schedule: str, seed: int) -> Path:
    return RUNS_DIR / series(args) / f"{task}-{schedule}-s{seed}"


def jobs(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """Seed-major order: a run cut short still has whole seeds for every task."""
    return [
        (task, schedule, int(seed))
        for seed in args.seeds.split(",")
        for task in args.tasks.split(",")
        for schedule in args.schedules.split(",")
    ]


def train(args: argparse.Namespace, task: str, schedule: str, seed: int) -> float:
    """Train one run (reused when its export exists); the training seconds."""
    folder = run_dir(args, task, schedule, seed)
    done = folder / "export" / "model.json"
    if done.exists():
        return json.loads(done.read_text())["metadata"]["train_seconds_this_session"]
    config = CVDMConfig(
        task=task,
        schedule=schedule,
        task_options=task_options(task, args.quick),
        train_size=args.train_size,
        base_channels=args.base_channels,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=min(200, args.steps // 5),
        max_steps=args.steps,
        val_every_n_steps=args.steps,
        val_size=16,
        val_sample_size=8,
        sample_steps=min(50, args.sample_steps),
        prior_kl=args.prior_kl,
        seed=seed,
    )
    start = time.perf_counter()
    fit(config, folder, accelerator="cpu", devices=1, progress_bar=False)
    return time.perf_counter() - start


def schedule_maps(model, condition: torch.Tensor) -> dict[str, torch.Tensor]:
    """λ(x) ``[N, H·W]`` and the mean γ̄ at t₀ = 1/T and t_T = 1 − 1/T, learned schedule only."""
    with torch.no_grad():
        lam = model.schedule.lam(condition).mean(1).flatten(1)
        ends = [1 / model.timesteps, 1 - 1 / model.timesteps]
        gammas = [
            model.schedule.gamma_bar(condition.new_full((condition.shape[0],), t), condition)
            for t in ends
        ]
    return {"lambda": lam, "gamma_bar_t0": gammas[0].mean(), "gamma_bar_tT": gammas[1].mean()}


def evaluate(args: argparse.Namespace, task: str, schedule: str, seed: int, seconds: float):
    """Restore the first ``--eval-count`` test pairs with the trained run; the per-item scores
    and timings (the job's record, saved as ``scores.json`` in the run folder)."""
    folder = run_dir(args, task, schedule, seed)
    model = load(folder).model
    data = load_paired(task, "test", args.eval_count, 0, **task_options(task, args.quick))
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(1000 + seed)
    samples = sample_images(
        model, data.condition, task, args.samples, args.sample_steps, generator, args.eval_count
    )
    eval_seconds = time.perf_counter() - start
    scores = score_samples(samples, data, stochastic=schedule != "regression")
    record = {
        "task": task,
        "schedule": schedule,
        "seed": seed,
        "train_seconds": seconds,
        "eval_seconds": eval_seconds,
        "scores": {k: v.tolist() for k, v in scores.items()},
        "labels": None if data.labels is None else data.labels.tolist(),
        "photon_level": data.extra["photon_level"].tolist()
        if "photon_level" in data.extra
        else None,
    }
    if schedule == "learned":
        maps = schedule_maps(model, data.condition)
        std = samples.std(0, correction=0).mean(1).flatten(1)
        record["lambda_std_spearman"] = [
            spearman(a.double(), b.double()).item()
            for a, b in zip(maps["lambda"], std, strict=True)
        ]
        record["gamma_bar_t0"] = maps["gamma_bar_t0"].item()
        record["gamma_bar_tT"] = maps["gamma_bar_tT"].item()
    return record


# ---------------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------------


def nanmean(values) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def seed_stats(records: list[dict], key: str, keep=None) -> tuple[float, float, int]:
    """Mean over seeds of the per-seed item mean of ``key`` (items where ``keep`` holds), its
    standard deviation across seeds, and the number of seeds."""
    per_seed = []
    for r in records:
        values = r["scores"].get(key) if key in r["scores"] else r.get(key)
        if values is None:
            continue
        if keep is not None:
            values = [v for v, k in zip(values, keep(r), strict=True) if k]
        if values:
            per_seed.append(nanmean(values))
    if not per_seed:
        return float("nan"), float("nan"), 0
    sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
    return float(np.mean(per_seed)), sd, len(per_seed)


def pm(stats: tuple[float, float, int], digits: int = 2) -> str:
    mean, sd, _ = stats
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" if math.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def assemble(args: argparse.Namespace, records: list[dict]) -> None:
    by = {}
    for r in records:
        by.setdefault((r["task"], r["schedule"]), []).append(r)
    tasks = [t for t in args.tasks.split(",") if any((t, s) in by for s in SCHEDULES)]
    schedules = args.schedules.split(",")
    expected = len(args.seeds.split(","))
    lines = [
        f"# CVDM benchmark ({series(args)})\n",
        f"`{command_line()}` — {len(records)} of {len(jobs(args))} runs finished.\n",
        f"Budget per run: {args.steps} training steps (batch {args.batch_size}, lr {args.lr}, "
        f"UNet base {args.base_channels} channels, {args.train_size} training pairs); "
        f"evaluation on the first {args.eval_count} test pairs, mean of {args.samples} "
        f"samples of {args.sample_steps} steps (the paper: 20 samples, T = 200); prior KL "
        f"direction {args.prior_kl!r}. Mean ± sd over seeds {args.seeds}; cells with fewer "
        "seeds say so.\n",
        "## Image quality (PSNR dB / SSIM of the sample mean)\n",
    ]
    header = ["task", "baseline (upsample / TIE)"] + [f"{s}" for s in schedules]
    rows = []
    goal = []
    for task in tasks:
        any_run = next(iter(by.get((task, s), []) for s in schedules if (task, s) in by))
        row = [
            task,
            f"{pm(seed_stats(any_run, 'psnr_baseline'))} / "
            f"{pm(seed_stats(any_run, 'ssim_baseline'), 3)}",
        ]
        for s in schedules:
            runs = by.get((task, s), [])
            cell = f"{pm(seed_stats(runs, 'psnr'))} / {pm(seed_stats(runs, 'ssim'), 3)}"
            if runs and len(runs) < expected:
                cell += f" ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
            row.append(cell if runs else "—")
        rows.append(row)
        fixed = [seed_stats(by.get((task, s), []), "psnr")[0] for s in ("linear", "cosine")]
        learned = seed_stats(by.get((task, "learned"), []), "psnr")[0]
        best_fixed = max((v for v in fixed if not math.isnan(v)), default=float("nan"))
        goal.append([task, learned, best_fixed, learned - best_fixed])
    lines.append(markdown_table(header, rows))
    lines.append("\n## Goal: learned schedule vs the best fixed schedule (PSNR of the mean)\n")
    lines.append(markdown_table(["task", "learned", "best fixed", "difference (dB)"], goal))
    lines.append("\n## Single sample (PSNR dB / SSIM of one sample, no averaging)\n")
    rows = []
    for task in tasks:
        row = [task]
        for s in schedules:
            runs = by.get((task, s), [])
            row.append(
                f"{pm(seed_stats(runs, 'psnr_sample'))} / {pm(seed_stats(runs, 'ssim_sample'), 3)}"
                if runs
                else "—"
            )
        rows.append(row)
    lines.append(markdown_table(["task", *schedules], rows))
    lines.append(
        "\n## Uncertainty (diffusion models): Spearman(std, |error|) per image / ±2σ coverage\n"
    )
    rows = []
    for task in tasks:
        row = [task]
        for s in [s for s in schedules if s != "regression"]:
            runs = by.get((task, s), [])
            row.append(
                f"{pm(seed_stats(runs, 'spearman'))} / {pm(seed_stats(runs, 'coverage'))}"
                if runs
                else "—"
            )
        learned = by.get((task, "learned"), [])
        row.append(pm(seed_stats(learned, "lambda_std_spearman")))
        row.append(
            f"{pm(seed_stats(learned, 'gamma_bar_t0'), 3)} / "
            f"{pm(seed_stats(learned, 'gamma_bar_tT'), 3)}"
        )
        rows.append(row)
    header = [
        "task",
        *[s for s in schedules if s != "regression"],
        "learned: Spearman(λ(x), std)",
        "learned γ̄(t₀) / γ̄(t_T)",
    ]
    lines.append(markdown_table(header, rows))
    if "microscopy-sr" in tasks:
        lines.append("\n## Microscopy per structure (PSNR dB of the mean)\n")
        rows = []
        for index, name in enumerate(STRUCTURES):
            row = [name]
            for key, s in [("psnr_baseline", schedules[0])] + [("psnr", s) for s in schedules]:
                runs = by.get(("microscopy-sr", s), [])
                row.append(
                    pm(seed_stats(runs, key, lambda r, i=index: [v == i for v in r["labels"]]))
                )
            rows.append(row)
        lines.append(markdown_table(["structure", "upsampled", *schedules], rows))
        lines.append("\n## Microscopy per photon level (PSNR dB of the mean)\n")
        rows = []
        for low, high in PHOTON_BINS:
            row = [f"{low:g}–{high:g}"]
            for key, s in [("psnr_baseline", schedules[0])] + [("psnr", s) for s in schedules]:
                runs = by.get(("microscopy-sr", s), [])
                row.append(
                    pm(
                        seed_stats(
                            runs,
                            key,
                            lambda r, a=low, b=high: [a <= p < b for p in r["photon_level"]],
                        )
                    )
                )
            rows.append(row)
        lines.append(markdown_table(["photons", "upsampled", *schedules], rows))
    lines.append("\n## Cost (seconds per run, mean over seeds)\n")
    rows = []
    for task in tasks:
        for s in schedules:
            runs = by.get((task, s), [])
            if runs:
                rows.append(
                    [
                        task,
                        s,
                        float(np.mean([r["train_seconds"] for r in runs])),
                        float(np.mean([r["eval_seconds"] for r in runs])),
                    ]
                )
    lines.append(markdown_table(["task", "schedule", "train s", "evaluation s"], rows))
    summary = {
        "machine": machine_info(),
        "budget": {k: getattr(args, k) for k in FULL},
        "prior_kl": args.prior_kl,
        "runs_finished": len(records),
        "runs_planned": len(jobs(args)),
        "runs": [{k: v for k, v in r.items() if k != "scores"} for r in records],
        "means": {
            f"{t}/{s}": {key: seed_stats(by[(t, s)], key)[0] for key in by[(t, s)][0]["scores"]}
            for (t, s) in by
        },
    }
    write_results(f"cvdm-{series(args)}", summary, "\n".join(lines))
    default_series = args.label is None and args.prior_kl == "paper"
    if not args.quick and default_series and any(s == "learned" for _, s in by):
        figure(args, tasks)
    print("\n".join(lines))


def figure(args: argparse.Namespace, tasks: list[str], items: int = 3) -> None:
    """Per task, ``items`` test pairs: input, truth, mean, std, |error| and λ(x) of the
    learned schedule (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for task in tasks:
        folder = run_dir(args, task, "learned", 0)
        if not (folder / "export" / "model.json").exists():
            continue
        model = load(folder).model
        data = load_paired(task, "test", items, 0, **task_options(task, args.quick))
        samples = sample_images(
            model, data.condition, task, args.samples, args.sample_steps,
            torch.Generator().manual_seed(7),
        )  # fmt: skip
        mean, std = samples.mean(0), samples.std(0, correction=0)
        truth = data.images()
        shown = data.baseline(data.condition)
        lam = model.schedule.lam(data.condition).mean(1, keepdim=True).detach()
        for i in range(items):
            rows.append(
                (
                    task,
                    [
                        shown[i, 0],
                        truth[i, 0],
                        mean[i, 0],
                        std[i, 0],
                        (mean - truth)[i, 0].abs(),
                        lam[i, 0],
                    ],
                )  # fmt: skip
            )
    if not rows:
        return
    titles = ["baseline", "truth", "mean", "std", "|error|", "λ(x)"]
    fig, axes = plt.subplots(len(rows), 6, figsize=(9, 1.5 * len(rows)), squeeze=False)
    for r, (task, panels) in enumerate(rows):
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            grey = c < 3
            ax.imshow(panel.numpy(), cmap="gray" if grey else "magma",
                      vmin=0 if grey else None, vmax=1 if grey else None)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(task, fontsize=7)
    fig.tight_layout()
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    out = FIGURES_DIR / "cvdm_uncertainty.png"
    fig.savefig(out.with_suffix(".tmp.png"), dpi=110)
    os.replace(out.with_suffix(".tmp.png"), out)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(common.shard_threads(args))
    torch.set_flush_denormal(True)
    records = common.run_shard(
        jobs(args),
        lambda job: run_dir(args, *job) / "scores.json",
        lambda job: evaluate(args, *job, train(args, *job)),
        args,
        describe=lambda job: "{} {} seed {}".format(*job),
    )
    if records is not None:
        assemble(args, records)


if __name__ == "__main__":
    main()
