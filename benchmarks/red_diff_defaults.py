"""RED-diff's default λ and lr as functions of σ_y and the operator (issue 18, item 7): the grid
they are fitted on, the fit, and its check on the scored images of the inverse-problem benchmark.

The official code folds the paper's 1/σ_y² into λ (``diffvi.inverse.solvers.red_diff_defaults``
has the relation), so one λ cannot serve every σ_y. Stages:

- ``grid`` (sharded): per data set × task (``inverse_mnist.TASKS``, read at run time) × σ_y in
  ``--noises`` ([0, 1] pixel units, as the benchmark), RED-diff at ``--steps`` NFE for every
  λ × lr of ``--lambdas`` × ``--lrs`` on the benchmark's ``--tune-images`` held-out test images
  (indices 1000 …, its measurement noise and masks); PSNR, SSIM and the residual
  ‖y − A(x̂)‖/√M per grid point, one JSON per cell under
  ``results/red_diff_defaults/<series>/grid/``. A cell's file name carries a fingerprint of the
  operator (A and A⁺ of a fixed input), so a changed operator is run again, not reused.
- ``fit``: per operator class (``operator_class``: inpainting, super-resolution, deblurring;
  ``other`` over every task), the rule λ(σ) = λ₀ + κσ^p, lr(σ) = lr₀ exp(−σ/s) whose PSNR,
  interpolated bilinearly in (log lr, log λ) between grid points, has the highest mean over the
  class's cells (both data sets, every σ_y); → ``<series>/fit.json`` and the constants to paste
  into ``RULES``.
- ``eval`` (sharded): on the first ``--images`` test images of each cell (the benchmark's scored
  ones) at σ_y in ``--eval-noises``: RED-diff with the library's defaults (``rule``, whatever
  ``RULES`` holds now), with the cell's best grid point on the tuning images (``tuned``, as the
  benchmark tunes), and with the old constants lr = λ = 0.25 (``fixed``).
- ``report``: ``results/red_diff_defaults[-quick].{json,md}``: the rule, the fit's gaps on the
  tuning images and the scored gaps (rule − tuned, paired standard error over images).

    python benchmarks/red_diff_defaults.py --quick                 # CI smoke (~1 min)
    python benchmarks/red_diff_defaults.py --stages grid --shard 0 --shards 2 --threads 1 &
    python benchmarks/red_diff_defaults.py --stages grid --shard 1 --shards 2 --threads 1 &
    python benchmarks/red_diff_defaults.py --stages fit            # then paste the constants
    python benchmarks/red_diff_defaults.py --stages eval --shard 0 --shards 2 --threads 1 &
    python benchmarks/red_diff_defaults.py --stages eval --shard 1 --shards 2 --threads 1 &
    python benchmarks/red_diff_defaults.py --stages fit,report
"""

import argparse
import hashlib
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import inverse_mnist as bench  # noqa: E402
from common import RESULTS_DIR, machine_info, markdown_table, write_results  # noqa: E402

from diffvi.inverse.solvers import REDDiff  # noqa: E402
from diffvi.inverse.solvers.red_diff_defaults import (  # noqa: E402
    OPERATOR_CLASSES,
    RULES,
    operator_class,
    red_diff_defaults,
)

NOISES = (0.0, 0.05, 0.1, 0.2)
EVAL_NOISES = (0.0, 0.05, 0.1, 0.2)
FIXED_NOISES = (0.1, 0.2)
LAMBDAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
LRS = (0.02, 0.05, 0.1, 0.25)
VARIANTS = ("rule", "tuned", "fixed")
FIXED = {"lr": 0.25, "reg_weight": 0.25}  # the defaults before the rule (issue 5's tuning)
STAGES = ("grid", "fit", "eval", "report")
NAME = "red_diff_defaults"

# The rule's candidates: λ(σ) = λ₀ + κσ^p, lr(σ) = lr₀ exp(−σ/s), simplest first (ties).
POWERS = (2.0, 1.0)
LR_SCALES = (math.inf, 0.3, 0.1, 0.03)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny grid, few images")
    p.add_argument("--datasets", default=",".join(bench.DATASETS))
    p.add_argument("--tasks", default=",".join(bench.TASKS))
    p.add_argument("--noises", default=",".join(map(str, NOISES)), help="σ_y of the grid")
    p.add_argument("--eval-noises", default=",".join(map(str, EVAL_NOISES)))
    p.add_argument(
        "--fixed-noises", default=",".join(map(str, FIXED_NOISES)),
        help="σ_y at which the eval stage also scores the old constants lr = λ = 0.25",
    )  # fmt: skip
    p.add_argument("--lambdas", default=",".join(map(str, LAMBDAS)))
    p.add_argument("--lrs", default=",".join(map(str, LRS)))
    p.add_argument("--steps", type=int, default=100, help="NFE per image")
    p.add_argument(
        "--tolerance", type=float, default=0.0,
        help="fit: of the rules within this many dB of the smallest rms gap (to 0.01 dB), the "
        "one with the best mean SSIM",
    )  # fmt: skip
    p.add_argument("--tune-images", type=int, default=16, help="held-out images of the grid")
    p.add_argument("--images", type=int, default=200, help="scored images of the eval stage")
    p.add_argument("--threads", type=int, default=None, help="default: 2 // shards")
    p.add_argument("--seed", type=int, default=0)
    common.add_shard_arguments(p, stages=STAGES)
    args = common.parse_shard_args(p, sharded_stages=("grid", "eval"))
    if args.quick:
        args.datasets, args.tasks = "mnist", "inpaint-random,sr4"
        args.noises = args.eval_noises = args.fixed_noises = "0.0,0.1"
        args.lambdas, args.lrs = "0.1,1.0", "0.1,0.25"
        args.steps, args.tune_images, args.images = 10, 4, 4
    return args


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def series(args: argparse.Namespace) -> str:
    """The grid's and the fit's series (the eval stage's adds ``-n<images>``)."""
    return "quick" if args.quick else f"nfe{args.steps}-t{args.tune_images}"


def folder(args: argparse.Namespace) -> Path:
    return RESULTS_DIR / NAME / series(args)


class Runner:
    """The benchmark's :class:`inverse_mnist.Context` (priors, images, masks, noise) and the
    operators' fingerprints."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ctx = bench.Context(argparse.Namespace(seed=args.seed, stages=""))
        self._fingerprints: dict[str, tuple[str, dict]] = {}

    def operator(self, task: str):
        from diffvi.inverse import build_operator

        return build_operator(task, (1, 28, 28), torch.Generator().manual_seed(0))

    def fingerprint(self, task: str) -> tuple[str, dict]:
        """A hash of A and A⁺ applied to a fixed input, and the operator's settings."""
        if task not in self._fingerprints:
            from diffvi.inverse.operators import LinearOperator
            from diffvi.inverse.registry import operator_parameters

            operator = self.operator(task)
            x = torch.rand((2, *operator.input_shape), generator=torch.Generator().manual_seed(1))
            y = operator(x).double()
            parts = [type(operator).__name__, str(operator.output_shape)]
            parts += [str(operator.observed_count), f"{y.sum():.4e}", f"{y.square().sum():.4e}"]
            if isinstance(operator, LinearOperator):
                back = operator.pinv(y.float()).double()
                parts += [f"{back.sum():.4e}", f"{back.square().sum():.4e}"]
            settings = {
                "class": type(operator).__name__,
                "operator_class": operator_class(operator),
                "parameters": operator_parameters(task),
                "observed_count": operator.observed_count,
                "output_shape": list(operator.output_shape),
            }
            digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:8]
            self._fingerprints[task] = (digest, settings)
        return self._fingerprints[task]

    def run(self, cell: tuple, options: dict | None, start: int, count: int) -> dict:
        """RED-diff (``options``: lr and λ; ``None``: the library's defaults) on images
        ``start …`` of ``cell``: means and per-image PSNR, SSIM and residual RMS."""
        dataset, task, noise_std = cell
        prior, _, _ = self.ctx.dataset(dataset)
        solver = REDDiff(steps=self.args.steps, **(options or {}))
        method = solver.bind(prior, noise_std, torch.Generator().manual_seed(self.args.seed))
        result = self.ctx.restore(cell, method, start, count, classifier=False)
        _, operator = self.ctx.operator(dataset, task, start, count)
        mask = 1.0 if operator.observed_mask is None else operator.observed_mask
        clean = operator(result.reference)  # y's hidden entries hold noise only: masked out
        residual = ((result.measurement - operator(result.restored)) * mask).flatten(1).norm(dim=1)
        error = ((operator(result.restored) - clean) * mask).flatten(1).norm(dim=1)
        noise = ((result.measurement - clean) * mask).flatten(1).norm(dim=1)
        return {
            "psnr": result.summary["psnr"],
            "ssim": result.summary["ssim"],
            "residual_rms": (residual / operator.observed_count**0.5).mean().item(),
            # ‖A(x̂) − A(x)‖ / ‖y − A(x)‖: 1 when x̂ keeps the measurement noise, 0 when it
            # explains y by the clean image.
            "noise_kept": (error / noise).mean().item() if noise_std > 0 else None,
            "psnr_images": result.scores["psnr"].tolist(),
            "ssim_images": result.scores["ssim"].tolist(),
            "seconds": result.seconds,
        }


# ------------------------------------------------------------------------------------- grid


def grid_cells(args: argparse.Namespace) -> list[tuple]:
    return [
        (d, t, n)
        for t in args.tasks.split(",")
        for d in args.datasets.split(",")
        for n in floats(args.noises)
    ]


def grid_path(runner: Runner, cell: tuple) -> Path:
    dataset, task, noise = cell
    return (
        folder(runner.args)
        / "grid"
        / f"{dataset}-{task}-s{noise}-{runner.fingerprint(task)[0]}.json"
    )


def grid_cell(runner: Runner, cell: tuple) -> dict:
    """Every grid point of ``cell``; the points done so far are kept in a ``.partial`` file, so
    an interrupted cell resumes where it stopped."""
    args = runner.args
    partial = grid_path(runner, cell).with_suffix(".partial")
    points = json.loads(partial.read_text()) if partial.exists() else []
    done = {(p["lr"], p["reg_weight"]) for p in points}
    for lr, lam in itertools.product(floats(args.lrs), floats(args.lambdas)):
        if (lr, lam) in done:
            continue
        r = runner.run(cell, {"lr": lr, "reg_weight": lam}, bench.TUNE_START, args.tune_images)
        points.append({"lr": lr, "reg_weight": lam, **r})
        common.write_json(partial, points)
        print(f"  lr {lr} λ {lam}: PSNR {r['psnr']:.2f} SSIM {r['ssim']:.3f}", flush=True)
    partial.unlink(missing_ok=True)
    digest, settings = runner.fingerprint(cell[1])
    return {
        "dataset": cell[0],
        "task": cell[1],
        "noise_std": cell[2],
        "operator": {**settings, "fingerprint": digest},
        "steps": args.steps,
        "images": args.tune_images,
        "image_start": bench.TUNE_START,
        "seed": args.seed,
        "points": points,
    }


def best_point(record: dict, lrs: list[float], lambdas: list[float], key: str = "psnr") -> dict:
    """The grid point of ``lrs`` × ``lambdas`` with the best ``key`` (PSNR)."""
    points = [p for p in record["points"] if p["lr"] in lrs and p["reg_weight"] in lambdas]
    return max(points, key=lambda p: p[key])


# -------------------------------------------------------------------------------------- fit


def score_table(record: dict, lrs: list[float], lambdas: list[float], key: str) -> np.ndarray:
    """Mean ``key`` (PSNR or SSIM) ``[len(lrs), len(lambdas)]`` of a grid record."""
    table = np.full((len(lrs), len(lambdas)), np.nan)
    for p in record["points"]:  # points of a wider grid than this one are left out
        if p["lr"] in lrs and p["reg_weight"] in lambdas:
            table[lrs.index(p["lr"]), lambdas.index(p["reg_weight"])] = p[key]
    if np.isnan(table).any():
        raise ValueError(
            f"grid cell {record['dataset']} {record['task']} {record['noise_std']} "
            "misses points of --lrs × --lambdas: run the grid stage"
        )
    return table


def bilinear(table: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``table [I, J]`` at fractional indices ``u, v [K]`` (in [0, I−1] and [0, J−1])."""
    i0 = np.clip(np.floor(u).astype(int), 0, max(table.shape[0] - 2, 0))
    j0 = np.clip(np.floor(v).astype(int), 0, max(table.shape[1] - 2, 0))
    i1, j1 = np.minimum(i0 + 1, table.shape[0] - 1), np.minimum(j0 + 1, table.shape[1] - 1)
    a, b = np.clip(u - i0, 0, 1), np.clip(v - j0, 0, 1)
    return (
        (1 - a) * (1 - b) * table[i0, j0]
        + (1 - a) * b * table[i0, j1]
        + a * (1 - b) * table[i1, j0]
        + a * b * table[i1, j1]
    )


def fractional_index(grid: list[float], values: np.ndarray) -> np.ndarray:
    """Where ``values`` fall on the log-spaced ``grid``, as fractional indices."""
    logs = np.log(grid)
    return np.interp(np.log(values), logs, np.arange(len(grid), dtype=float))


def candidates(lrs: list[float], lambdas: list[float]) -> dict[str, np.ndarray]:
    """Every rule of the search, simplest first: κ = 0 and s = ∞ before the others."""
    lam0 = np.geomspace(min(lambdas), max(lambdas), 4 * (len(lambdas) - 1) + 1)
    kappa = np.concatenate([[0.0], np.geomspace(1e-2, 1e4, 25)])
    lr0 = np.geomspace(min(lrs), max(lrs), 4 * (len(lrs) - 1) + 1) if len(lrs) > 1 else lrs
    combos = itertools.product(LR_SCALES, kappa, POWERS, lam0, lr0)
    columns = np.array(list(combos), dtype=float).T
    return dict(zip(("lr_scale", "kappa", "power", "lam0", "lr0"), columns, strict=True))


def rule_values(c: dict[str, np.ndarray], noise: float) -> tuple[np.ndarray, np.ndarray]:
    lam = c["lam0"] + c["kappa"] * noise ** c["power"]
    lr = c["lr0"] * np.exp(-noise / c["lr_scale"])
    return lr, lam


def fit_class(
    records: list[dict],
    lrs: list[float],
    lambdas: list[float],
    criterion: str = "rms-gap",
    tolerance: float = 0.0,
) -> dict:
    """The rule of the class of ``records``' cells by ``criterion``: ``rms-gap`` minimises the
    root mean square over the cells of the gap between the cell's best grid point and the
    rule's interpolated PSNR (a rule must serve every cell, not the average); ``mean-psnr``
    maximises the mean PSNR; ``ssim`` maximises the mean SSIM. Of the rules within
    ``tolerance`` dB of the best (values to 0.01 dB), the one with the best mean SSIM; of equals,
    the simplest."""
    c = candidates(lrs, lambdas)
    psnr, ssim, gaps = [], [], []
    inside = np.ones(len(c["lam0"]), dtype=bool)
    for record in records:
        lr, lam = rule_values(c, record["noise_std"])
        inside &= (lam <= max(lambdas) * (1 + 1e-9)) & (lr >= min(lrs) * (1 - 1e-9))
        u, v = fractional_index(lrs, lr), fractional_index(lambdas, lam)
        psnr.append(bilinear(score_table(record, lrs, lambdas, "psnr"), u, v))
        ssim.append(bilinear(score_table(record, lrs, lambdas, "ssim"), u, v))
        gaps.append(best_point(record, lrs, lambdas)["psnr"] - psnr[-1])
    mean_psnr, mean_ssim = np.mean(psnr, axis=0), np.mean(ssim, axis=0)
    rms_gap = np.sqrt(np.mean(np.square(gaps), axis=0))
    score = {"rms-gap": -rms_gap, "mean-psnr": mean_psnr, "ssim": mean_ssim}[criterion]
    score = np.where(inside, np.round(score, 2 if criterion != "ssim" else 4), -np.inf)
    tied = score >= score.max() - tolerance - 1e-9
    k = int(np.argmax(np.where(tied, np.round(mean_ssim, 4), -np.inf)))  # the first: simplest
    rule = {name: float(values[k]) for name, values in c.items()}
    cells = []
    for record in records:
        lr, lam = rule_values({n: np.array([v]) for n, v in rule.items()}, record["noise_std"])
        u, v = fractional_index(lrs, lr), fractional_index(lambdas, lam)
        best = best_point(record, lrs, lambdas)
        predicted = {
            key: float(bilinear(score_table(record, lrs, lambdas, key), u, v)[0])
            for key in ("psnr", "ssim")
        }
        cells.append(
            {
                "dataset": record["dataset"],
                "task": record["task"],
                "noise_std": record["noise_std"],
                "rule_lr": float(lr[0]),
                "rule_reg_weight": float(lam[0]),
                "rule_psnr": predicted["psnr"],
                "rule_ssim": predicted["ssim"],
                "best_lr": best["lr"],
                "best_reg_weight": best["reg_weight"],
                "best_psnr": best["psnr"],
                "best_ssim": best["ssim"],
                "gap": best["psnr"] - predicted["psnr"],
            }
        )
    return {
        "rule": rule,
        "criterion": criterion,
        "tolerance": tolerance,
        "rms_gap": float(rms_gap[k]),
        "max_gap": float(np.max(gaps, axis=0)[k]),
        "mean_psnr": float(mean_psnr[k]),
        "best_mean_psnr": float(np.where(inside, mean_psnr, -np.inf).max()),
        "mean_ssim": float(mean_ssim[k]),
        "cells": cells,
    }


def fit(args: argparse.Namespace, records: list[dict], runner: Runner) -> dict:
    lrs, lambdas = floats(args.lrs), floats(args.lambdas)
    by_class: dict[str, list[dict]] = {name: [] for name in OPERATOR_CLASSES}
    for record in records:
        by_class[runner.fingerprint(record["task"])[1]["operator_class"]].append(record)
    by_class["other"] = list(records)
    by_class = {name: rs for name, rs in by_class.items() if rs}
    result = {
        "grid": {"lrs": lrs, "lambdas": lambdas},
        "tolerance": args.tolerance,
        "classes": {
            n: fit_class(rs, lrs, lambdas, "rms-gap", args.tolerance) for n, rs in by_class.items()
        },
        # For comparison: the best mean PSNR, and the best mean SSIM.
        "by_mean_psnr": {n: fit_class(rs, lrs, lambdas, "mean-psnr") for n, rs in by_class.items()},
        "by_ssim": {n: fit_class(rs, lrs, lambdas, "ssim") for n, rs in by_class.items()},
    }
    common.write_json(folder(args) / "fit.json", result)
    print("RULES = {")
    for name, f in result["classes"].items():
        r = f["rule"]
        scale = "math.inf" if math.isinf(r["lr_scale"]) else f"{r['lr_scale']:.3g}"
        print(
            f'    "{name}": DefaultsRule({r["lam0"]:.3g}, {r["kappa"]:.3g}, {r["power"]:.0f}, '
            f"{r['lr0']:.3g}, {scale}),  # gap rms {f['rms_gap']:.2f}, max {f['max_gap']:.2f} dB"
        )
    print("}")
    return result


# ------------------------------------------------------------------------------------- eval


def eval_jobs(runner: Runner) -> list[tuple]:
    """(data set, task, σ_y, variant), the benchmark's σ_y first; ``fixed`` only at
    ``--fixed-noises``, ``tuned`` only where its grid cell exists."""
    args = runner.args
    jobs = [
        (d, t, n, v)
        for n in floats(args.eval_noises)
        for t in args.tasks.split(",")
        for d in args.datasets.split(",")
        for v in VARIANTS
        if v != "fixed" or n in floats(args.fixed_noises)
    ]
    missing = [job for job in jobs if eval_options(runner, job) is None]
    for job in missing:
        print(f"no grid cell for {' '.join(map(str, job[:3]))}: its tuned variant is left out")
    return [job for job in jobs if job not in missing]


def eval_options(runner: Runner, job: tuple) -> dict | None:
    """lr and λ of a variant; ``None`` for ``tuned`` when its grid cell is missing."""
    dataset, task, noise, variant = job
    if variant == "fixed":
        return dict(FIXED)
    if variant == "rule":
        return red_diff_defaults(runner.operator(task), noise)
    path = grid_path(runner, (dataset, task, noise))
    if not path.exists():
        return None
    best = best_point(
        json.loads(path.read_text()), floats(runner.args.lrs), floats(runner.args.lambdas)
    )
    return {"lr": best["lr"], "reg_weight": best["reg_weight"]}


def eval_path(runner: Runner, job: tuple) -> Path:
    """Named by the cell and the options, not the variant: variants with the same lr and λ
    share one run."""
    dataset, task, noise, _ = job
    options = eval_options(runner, job)
    label = f"lr{options['lr']:.6g}-lam{options['reg_weight']:.6g}"
    digest = runner.fingerprint(task)[0]
    name = f"{dataset}-{task}-s{noise}-{label}-{digest}.json"
    return folder(runner.args) / f"eval-n{runner.args.images}" / name


def eval_job(runner: Runner, job: tuple) -> dict:
    dataset, task, noise, variant = job
    options = eval_options(runner, job)
    # The rule runs through the library's defaults (lr, reg_weight = None), as users get it.
    r = runner.run(job[:3], None if variant == "rule" else options, 0, runner.args.images)
    digest, settings = runner.fingerprint(task)
    return {
        "dataset": dataset,
        "task": task,
        "noise_std": noise,
        "variant": variant,
        "lr": options["lr"],
        "reg_weight": options["reg_weight"],
        "operator": {**settings, "fingerprint": digest},
        "steps": runner.args.steps,
        "images": runner.args.images,
        **r,
    }


# ----------------------------------------------------------------------------------- report


def gap_summary(rows: list[list]) -> list[str]:
    """The largest and mean gap (tuned − rule) at the benchmark's σ_y and at the others."""
    lines = []
    for label, keep in (("the benchmark's σ_y", True), ("the other σ_y", False)):
        gaps = [float(r[9].split(" ")[0]) for r in rows if (r[2] in bench.NOISES) == keep]
        if gaps:
            lines.append(
                f"\nAt {label}: largest gap {max(gaps):.2f} dB, mean {np.mean(gaps):.2f} dB over "
                f"{len(gaps)} cells.\n"
            )
    return lines


def benchmark_rows(args: argparse.Namespace, cells: dict[tuple, dict[str, dict]]) -> list[list]:
    """Cells with a RED-diff part of ``inverse_mnist``'s main stage at the same images and NFE."""
    rows = []
    for (dataset, task, noise), by in cells.items():
        path = RESULTS_DIR / "inverse_mnist" / f"n{args.images}-nfe{args.steps}" / "main"
        path = path / f"{dataset}-{task}-{noise}-red-diff.json"
        rule = by.get("rule")
        if rule is None or not path.exists():
            continue
        other = json.loads(path.read_text())
        if other.get("operator", {}).get("task", task) != task:
            continue
        options = other["options"]
        rows.append(
            [dataset, task, noise, f"{options['lr']:.3g}, {options['reg_weight']:.3g}",
             f"{other['psnr']:.2f}", f"{other['ssim']:.3f}", f"{rule['psnr']:.2f}",
             f"{rule['ssim']:.3f}", f"{other['psnr'] - rule['psnr']:.2f}"]
        )  # fmt: skip
    return rows


def kept(record: dict | None) -> str | None:
    value = None if record is None else record.get("noise_kept")
    return None if value is None else f"{value:.2f}"


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean and standard error of ``a − b`` over paired images."""
    d = np.asarray(a) - np.asarray(b)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


def rule_rows(fits: dict[str, dict]) -> list[list]:
    return [
        [name, f["rule"]["lam0"], f["rule"]["kappa"], f["rule"]["power"], f["rule"]["lr0"],
         f["rule"]["lr_scale"], f["rms_gap"], f["max_gap"], f["mean_psnr"], f["best_mean_psnr"],
         f["mean_ssim"]]
        for name, f in fits.items()
    ]  # fmt: skip


RULE_HEADER = ["class", "λ₀", "κ", "p", "lr₀", "s", "rms gap", "max gap", "mean PSNR",
               "best mean PSNR", "mean SSIM"]  # fmt: skip


def report(args: argparse.Namespace, grid: list[dict], fitted: dict, evals: list[dict]) -> None:
    md = [
        f"# RED-diff's defaults by σ_y and operator, series {series(args)}-n{args.images}\n",
        f"Grid: λ ∈ {{{args.lambdas}}} × lr ∈ {{{args.lrs}}} at {args.steps} NFE on "
        f"{args.tune_images} held-out test images (indices {bench.TUNE_START} …) per data set "
        f"× task × σ_y ∈ {{{args.noises}}} ([0, 1] pixel units). Rule: λ(σ) = λ₀ + κσ^p, "
        "lr(σ) = lr₀ exp(−σ/s) per operator class; a rule's PSNR and SSIM interpolated "
        "bilinearly in (log lr, log λ) between grid points; the rule minimises the root mean "
        "square over the class's cells of the gap to each cell's best grid point (dB), ties "
        f"(within {args.tolerance} dB, values to 0.01 dB) to the best mean SSIM.\n",
        "## The fitted rule\n",
        markdown_table(RULE_HEADER, rule_rows(fitted["classes"])),
        "\n`diffvi.inverse.solvers.red_diff_defaults.RULES` now (λ₀, κ, p, lr₀, s): "
        + "; ".join(
            f"{name} {r.reg_weight0:.3g}, {r.reg_weight_slope:.3g}, {r.power:g}, {r.lr0:.3g}, "
            f"{r.lr_scale:.3g}"
            for name, r in RULES.items()
        )
        + ".\n",
        "\nFor comparison, the best mean PSNR:\n",
        markdown_table(RULE_HEADER, rule_rows(fitted["by_mean_psnr"])),
        "\nand the best mean SSIM alone:\n",
        markdown_table(RULE_HEADER, rule_rows(fitted["by_ssim"])),
        "\n## Fit: per cell on the tuning images (rule interpolated vs best grid point)\n",
    ]
    rows = []
    for name, f in fitted["classes"].items():
        if name == "other":
            continue
        for c in f["cells"]:
            rows.append(
                [c["dataset"], c["task"], c["noise_std"], c["rule_lr"], c["rule_reg_weight"],
                 c["rule_psnr"], c["rule_ssim"], c["best_lr"], c["best_reg_weight"],
                 c["best_psnr"], c["best_ssim"], c["gap"]]
            )  # fmt: skip
    md.append(
        markdown_table(
            ["data", "task", "σ_y", "rule lr", "rule λ", "rule PSNR", "rule SSIM", "best lr",
             "best λ", "best PSNR", "its SSIM", "gap (dB)"],
            rows,
        )
    )  # fmt: skip
    cells: dict[tuple, dict[str, dict]] = {}
    for e in evals:
        cells.setdefault((e["dataset"], e["task"], e["noise_std"]), {})[e["variant"]] = e
    rows = []
    for cell, by in cells.items():
        rule, tuned, fixed = (by.get(v) for v in VARIANTS)
        if rule is None or tuned is None:
            continue
        gap, sem = paired(tuned["psnr_images"], rule["psnr_images"])
        rows.append(
            [*cell, f"{rule['lr']:.3g}, {rule['reg_weight']:.3g}", f"{rule['psnr']:.2f}",
             f"{rule['ssim']:.3f}", f"{tuned['lr']:.3g}, {tuned['reg_weight']:.3g}",
             f"{tuned['psnr']:.2f}", f"{tuned['ssim']:.3f}", f"{gap:.2f} ± {sem:.2f}",
             f"{fixed['psnr']:.2f}" if fixed else None, f"{fixed['ssim']:.3f}" if fixed else None,
             *(kept(v) for v in (rule, tuned, fixed))]
        )  # fmt: skip
    if rows:
        md += [
            f"\n## Check on the scored images (first {args.images} test images per cell)\n",
            "rule: the library's defaults; tuned: the cell's best grid point on the tuning "
            "images (the benchmark's procedure); gap = tuned − rule PSNR, ± the paired standard "
            "error over images; fixed: lr = λ = 0.25 (the defaults before the rule); "
            "noise kept: ‖A(x̂) − A(x)‖/‖y − A(x)‖ over the measured entries (mean over "
            "images), 1 when the restoration keeps the measurement noise, 0 when it explains y "
            "by the clean image.\n",
            markdown_table(
                ["data", "task", "σ_y", "rule lr, λ", "rule PSNR", "rule SSIM", "tuned lr, λ",
                 "tuned PSNR", "tuned SSIM", "gap (dB)", "fixed PSNR", "fixed SSIM",
                 "noise kept: rule", "tuned", "fixed"],
                rows,
            ),
            *gap_summary(rows),
        ]  # fmt: skip
    bench_rows = benchmark_rows(args, cells)
    if bench_rows:
        md += [
            "\n## Against the benchmark's own tuning\n",
            "RED-diff's row of `benchmarks/inverse_mnist.py`'s main stage (the same images, "
            "noise, masks and seed; its grid lr ∈ {0.1, 0.25, 0.5} × λ ∈ {0.05, 0.25, 1} on the "
            "same tuning images): benchmark − rule PSNR (unpaired).\n",
            markdown_table(
                ["data", "task", "σ_y", "benchmark lr, λ", "its PSNR", "its SSIM", "rule PSNR",
                 "rule SSIM", "benchmark − rule (dB)"],
                bench_rows,
            ),
        ]  # fmt: skip
    name = NAME + ("-quick" if args.quick else "")
    write_results(
        name,
        {
            "machine": machine_info(),
            "settings": {k: v for k, v in vars(args).items() if k not in ("shard", "shards")},
            "budgets": {
                "grid_runs": sum(len(r["points"]) for r in grid),
                "grid_seconds": sum(p["seconds"] for r in grid for p in r["points"]),
                "eval_runs": len(evals),
                "eval_seconds": sum(e["seconds"] for e in evals),
            },
            "fit": fitted,
            "grid": [
                {**{k: v for k, v in r.items() if k != "points"},
                 "points": [{k: v for k, v in p.items() if not k.endswith("_images")}
                            for p in r["points"]]}
                for r in grid
            ],
            "eval": [{k: v for k, v in e.items() if not k.endswith("_images")} for e in evals],
        },
        "\n".join(md),
    )  # fmt: skip
    print("\n".join(md))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(common.shard_threads(args))
    torch.set_flush_denormal(True)
    runner = Runner(args)
    stages = args.stages

    def stage(name: str) -> argparse.Namespace:  # the stage's jobs run, or are only read
        return argparse.Namespace(**{**vars(args), "assemble_only": name not in stages})

    grid = common.run_shard(
        grid_cells(args),
        lambda cell: grid_path(runner, cell),
        lambda cell: grid_cell(runner, cell),
        stage("grid") if not args.assemble_only else args,
    )
    if grid is None:  # a shard of several
        return
    fitted = fit(args, grid, runner) if grid and ("fit" in stages or "report" in stages) else None
    evals: list[dict] = []
    if "eval" in stages or "report" in stages:
        jobs = eval_jobs(runner)
        done = common.run_shard(
            jobs,
            lambda job: eval_path(runner, job),
            lambda job: eval_job(runner, job),
            stage("eval") if not args.assemble_only else args,
            describe=lambda job: " ".join(map(str, job)),
        )
        if done is None:
            return
        evals = [
            {**json.loads(eval_path(runner, job).read_text()), "variant": job[3]}
            for job in jobs
            if eval_path(runner, job).exists()
        ]
    if "report" in stages and fitted is not None:
        report(args, grid, fitted, evals)


if __name__ == "__main__":
    main()
