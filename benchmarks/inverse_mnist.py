"""Inverse problems with the shipped diffusion priors: RED-diff against DPS, ΠGDM and DDRM on
MNIST and Fashion-MNIST test images (issue 5's benchmark).

Cells: data set × task × σ_y (0 and 0.05, in [0, 1] pixel units). Every cell scores
``--images`` test images (indices 0 … N−1) for PSNR, SSIM, perceptual distance and
classifier-FID against the originals (the feature space of
``diffvi.evaluation.sample_quality``'s classifier), with time per image and peak memory of the
batch (CPU: peak RSS above the start, one job at a time). The tasks (``diffvi.inverse``'s
registry names, so ``diffvi restore --task`` poses the same problem):

- ``inpaint-box``: a centred 14×14 hole (half the side, the papers' 128×128 at 256 px);
- ``inpaint-random``: 70 % of the pixels missing (DPS's harder end);
- ``sr4``: 4×4 average pooling, RED-diff's and DDRM's ``sr``;
- ``sr4-bicubic``: bicubic down-sampling ×4 (a = −0.5, mirrored border; DDRM's and RED-diff's
  ``sr_bicubic``), the operator of DPS's SR task, so every solver is also scored on it;
- ``deblur-gaussian-dps``: DPS's Gaussian blur as it is in pixels — scipy's σ = 3 px kernel
  cut at 4σ (25 of 61 taps), mirrored border — on the 28 px images. Scaling σ with the image
  side instead (3 · 28/256 = 0.33 px) leaves every singular value above 0.96: a blur A⁺y undoes
  exactly, no restoration problem. In pixels, with the official DDRM's pseudo-inverse cutoff
  (1-D singular values below 3e-2 count as zero: ``pinv_cutoff``), 8 of 28 frequencies per
  axis remain and the noiseless A⁺y scores 16 dB, where the every-tap 7×7, σ = 1 px FFT blur
  this benchmark used before (``deblur-gaussian``) gave 95–99 dB: that cell measured who
  trusts the pseudo-inverse.

Each part file records its operator's settings (``operator``: task, class and the registry
parameters, the blur's kernel and cutoff among them); a part whose operator differs from the
current one is refused, naming the file, so a changed operator never reuses a stale cell.
Parts written before the settings were recorded are taken only for tasks whose operator has
not changed since (``inpaint-*``, ``sr4``).

Stages (each result is a part file under ``results/inverse_mnist/<series>/``, written as soon
as it is scored, so an interrupted run resumes):

- ``tune``: per cell, a small grid of each solver's step size on ``--tune-images`` held-out
  test images (indices 1000 …, disjoint from the scored ones), at the matched budget; the best
  PSNR wins. RED-diff: lr × λ; DPS and ΠGDM: their guidance scale; DDRM: the paper's
  η = 0.85, η_b = 1 (no tuning).
- ``main``: all solvers at the matched NFE budget ``--nfe``, with the tuned values, plus A⁺y.
- ``own``: each baseline at its paper's budget (DDRM 20, DPS 1000 on ``--own-images``).
- ``ablation``: RED-diff on two MNIST cells: λ, lr, time order, SNR weighting vs constant,
  √SNR and the official code's (σ/α)^(2/3), σ_x0 = 0.1, no clamp of x̂₀ (the official code's),
  and on inpainting the misfit averaged over all of y (the official full-size masks).
- ``diversity``: each solver with 4 seeds on ``--tune-images`` images of MNIST box inpainting
  (σ_y = 0): mean per-pixel standard deviation across seeds, inside and outside the hole.
- ``figure``: 8 MNIST test images per task at σ_y = 0.05, rows: original, A⁺y, RED-diff, DPS,
  ΠGDM, DDRM (tuned, matched budget) → ``docs/figures/inverse_mnist_<task>.png``.
- ``timing``: every solver at the matched budget on one cell (MNIST, SR ×4, σ_y = 0.05), run
  when nothing else runs — the main stage's times share the cores with whatever ran beside it.
- ``memory`` (last, CPU): the peak memory of each solver on a batch of ``--images``, 3 steps,
  per task. On the CPU, freed memory stays in the process and is reused, so the peak resident
  set of a timing run undercounts; this stage lowers glibc's mmap threshold (large tensors get
  their own pages and return them when freed), which makes the peak exact but allocations
  slow — hence a separate stage after every timing.

  python benchmarks/inverse_mnist.py --quick                    # CI smoke (~1 min)
  python benchmarks/inverse_mnist.py                            # full (hours on 2 CPU cores)
  python benchmarks/inverse_mnist.py --stages main --datasets mnist
  python benchmarks/inverse_mnist.py --assemble-only
"""

import argparse
import functools
import itertools
import json
import subprocess
import sys
from pathlib import Path

import torch
from common import REPO_ROOT, RESULTS_DIR, machine_info, markdown_table, write_results

DATASETS = ("mnist", "fashion-mnist")
TASKS = ("inpaint-box", "inpaint-random", "sr4", "sr4-bicubic", "deblur-gaussian-dps")
QUICK_TASKS = ("inpaint-random", "sr4", "sr4-bicubic", "deblur-gaussian-dps")
# Tasks whose operator is what it was when parts did not yet record it (see the docstring).
UNRECORDED_OK = ("inpaint-box", "inpaint-random", "sr4")
NOISES = (0.0, 0.05)
SOLVERS = ("red-diff", "dps", "pigdm", "ddrm")
STAGES = ("tune", "main", "ablation", "own", "diversity", "figure", "timing", "memory")
# Tuning grids at the matched budget (best PSNR on held-out images wins).
GRIDS: dict[str, list[dict]] = {
    "red-diff": [
        {"lr": lr, "reg_weight": lam}
        for lr, lam in itertools.product((0.1, 0.25, 0.5), (0.05, 0.25, 1.0))
    ],
    "dps": [{"scale": s} for s in (0.3, 1.0, 3.0)],
    "pigdm": [{"scale": s} for s in (0.25, 0.5, 1.0)],
    "ddrm": [{}],
}
ABLATION_CELLS = (("mnist", "inpaint-box", 0.0), ("mnist", "sr4", 0.05))
QUICK_ABLATION_CELLS = (("mnist", "sr4", 0.05), ("mnist", "inpaint-random", 0.05))
TUNE_START = 1000


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: few images and steps")
    p.add_argument("--datasets", default=None, help=f"default: {','.join(DATASETS)}")
    p.add_argument("--tasks", default=None, help=f"default: {','.join(TASKS)}")
    p.add_argument("--noises", default=None, help=f"default: {','.join(map(str, NOISES))}")
    p.add_argument("--solvers", default=",".join(SOLVERS))
    p.add_argument("--stages", default=None, help=f"default: {','.join(STAGES)}")
    p.add_argument("--images", type=int, default=200, help="scored test images per cell")
    p.add_argument("--tune-images", type=int, default=16)
    p.add_argument("--own-images", type=int, default=50, help="images for DPS-1000")
    p.add_argument("--nfe", type=int, default=100, help="matched budget (network evaluations)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--assemble-only", action="store_true")
    args = p.parse_args()
    if args.quick:  # --datasets, --tasks and --noises still narrow it
        args.datasets = args.datasets or "mnist"
        args.tasks = args.tasks or ",".join(QUICK_TASKS)
        args.noises = args.noises or "0.05"
        args.images, args.tune_images, args.own_images, args.nfe = 8, 4, 4, 10
        args.stages = args.stages or "main,ablation,memory"
    args.datasets = args.datasets or ",".join(DATASETS)
    args.tasks = args.tasks or ",".join(TASKS)
    args.noises = args.noises or ",".join(map(str, NOISES))
    args.stages = args.stages or ",".join(STAGES)
    return args


def operator_record(task: str) -> dict:
    """What a part file says of its operator: the task, the operator's class and the registry
    parameters it was built with (kernel size, σ, truncation, border and ``pinv_cutoff`` of a
    blur; factor and border of SR; the missing fraction, box size and place of inpainting)."""
    return dict(_operator_record(task))


@functools.cache
def _operator_record(task: str) -> dict:
    from diffvi.inverse import build_operator, operator_parameters

    operator = build_operator(task, (1, 28, 28), torch.Generator().manual_seed(0))
    return {"task": task, "class": type(operator).__name__, **operator_parameters(task)}


def check_operator(record: dict, path: Path) -> None:
    """Refuse a part written for another operator than the current one of its task (its
    kernel or cutoff changed since): ``SystemExit`` naming the file and both settings."""
    task = record.get("task")
    if task is None:
        return
    current = operator_record(task)
    stored = record.get("operator")
    if stored is None and task in UNRECORDED_OK:
        return
    if stored != current:
        was = "unrecorded (written before parts recorded it)" if stored is None else stored
        raise SystemExit(
            f"{path}: a part for operator {was}, but {task!r} is now {current}; "
            "delete it (or its series folder) to recompute"
        )


def series_name(args: argparse.Namespace) -> str:
    return "quick" if args.quick else f"n{args.images}-nfe{args.nfe}"


def part_path(args: argparse.Namespace, stage: str, *key: object) -> Path:
    name = "-".join(str(k) for k in key).replace("/", "_")
    return RESULTS_DIR / "inverse_mnist" / series_name(args) / stage / f"{name}.json"


class Context:
    """Priors, classifiers, images and operators, loaded once per data set."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._cache: dict[str, tuple] = {}

    def dataset(self, name: str):
        if name not in self._cache:
            from diffvi import load
            from diffvi.data import load_dataset
            from diffvi.evaluation.sample_quality import load_or_train_feature_classifier

            prior = load(name).model
            prior.eval().requires_grad_(False)
            test = load_dataset(name, "test").images
            classifier = load_or_train_feature_classifier(name, progress=False)
            self._cache[name] = (prior, test, classifier)
        return self._cache[name]

    def operator(self, dataset: str, task: str, start: int, count: int):
        """Clean test images ``[N, 1, 28, 28]`` and the operator (its mask seeded by 0)."""
        from diffvi.inverse import build_operator

        _, test, _ = self.dataset(dataset)
        truth = test[start : start + count]
        operator = build_operator(task, tuple(truth.shape[1:]), torch.Generator().manual_seed(0))
        return truth, operator

    def noise_generator(self, start: int) -> torch.Generator:
        """The measurement noise of the images from ``start`` on (seeded per cell)."""
        return torch.Generator().manual_seed(self.args.seed + start)

    def problem(self, dataset: str, task: str, noise: float, start: int, count: int):
        """Clean images, operator and measurement (as :meth:`restore` simulates it)."""
        from diffvi.inverse import simulate_measurement

        truth, operator = self.operator(dataset, task, start, count)
        return (
            truth,
            operator,
            simulate_measurement(truth, operator, noise, self.noise_generator(start)),
        )

    def restore(self, cell: tuple, method, start: int, count: int, classifier: bool = True):
        """:func:`diffvi.inverse.restore` of images ``start … start + count − 1`` of a cell, in
        one batch; perceptual scores and FID with the data set's classifier."""
        from diffvi.inverse import restore

        dataset, task, noise = cell
        truth, operator = self.operator(dataset, task, start, count)
        return restore(
            method,
            operator,
            reference=truth,
            noise_std=noise,
            generator=self.noise_generator(start),
            batch_size=count,
            classifier=self.dataset(dataset)[2] if classifier else None,
        )


def row(cell: tuple, solver: str, options: dict, result, count: int) -> dict:
    """A result row: the cell, the method, its cost and :attr:`RestoreResult.summary`."""
    dataset, task, noise = cell
    return {
        "dataset": dataset,
        "task": task,
        "operator": operator_record(task),
        "noise_std": noise,
        "solver": solver,
        "options": options,
        "nfe": result.nfe,
        "seconds": result.seconds,
        "ms_per_image": 1000 * result.seconds / count,
        "peak_mb": None if result.peak_memory is None else result.peak_memory / 2**20,
        **result.summary,
    }


def run_solver(ctx: Context, cell: tuple, solver: str, options: dict, start: int, count: int):
    from diffvi.inverse.solvers import build_solver

    prior, _, _ = ctx.dataset(cell[0])
    method = build_solver(solver, **options).bind(
        prior, cell[2], torch.Generator().manual_seed(ctx.args.seed)
    )
    result = ctx.restore(cell, method, start, count, classifier=count > 1)
    return row(cell, solver, options, result, count)


def pinv_row(ctx: Context, cell: tuple, count: int) -> dict:
    """A⁺y (damped by σ_y² when noisy), clamped to [0, 1]: the no-prior reference."""
    from diffvi.inverse.solvers import PseudoInverse

    result = ctx.restore(cell, PseudoInverse(damping=cell[2] ** 2), 0, count)
    return row(cell, "A⁺y", {}, result, count)


def cached(path: Path, compute) -> dict:
    """The part at ``path``, computed and written first if missing (``compute() -> dict``);
    an existing part is checked against the current operator (:func:`check_operator`)."""
    if path.exists():
        result = json.loads(path.read_text())
        check_operator(result, path)
        return result
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in result
                if k
                in (
                    "dataset",
                    "task",
                    "noise_std",
                    "solver",
                    "options",
                    "nfe",
                    "psnr",
                    "ssim",
                    "fid",
                    "ms_per_image",
                    "peak_mb",
                )
            },
            default=float,
        ),
        flush=True,
    )
    return result


def with_steps(solver: str, options: dict, steps: int) -> dict:
    return {**options, "steps": steps}


def tuned_options(ctx: Context, cell: tuple, solver: str) -> dict:
    """The grid point with the best held-out PSNR. Grid points are computed in the ``tune``
    stage and read back otherwise; without any, the solver's reference defaults."""
    args = ctx.args
    grid = GRIDS[solver]
    if len(grid) == 1:
        return grid[0]
    tuning = "tune" in args.stages.split(",")
    best, best_psnr = None, -float("inf")
    for options in grid:
        label = "_".join(f"{k}{v}" for k, v in options.items())
        path = part_path(args, "tune", *cell, solver, label)
        if not (tuning or path.exists()):
            continue
        result = cached(
            path,
            lambda o=options: run_solver(
                ctx, cell, solver, with_steps(solver, o, args.nfe), TUNE_START, args.tune_images
            ),
        )
        if result["psnr"] > best_psnr:
            best, best_psnr = options, result["psnr"]
    if best is None:
        return {"lr": 0.25, "reg_weight": 0.25} if solver == "red-diff" else {"scale": 1.0}
    return best


def main_stage(ctx: Context, cells: list[tuple]) -> None:
    args = ctx.args
    for cell in cells:
        cached(part_path(args, "main", *cell, "pinv"), lambda c=cell: pinv_row(ctx, c, args.images))
        for solver in args.solvers.split(","):
            options = tuned_options(ctx, cell, solver)
            cached(
                part_path(args, "main", *cell, solver),
                lambda s=solver, o=options, c=cell: run_solver(
                    ctx, c, s, with_steps(s, o, args.nfe), 0, args.images
                ),
            )


def own_stage(ctx: Context, cells: list[tuple]) -> None:
    args = ctx.args
    for cell in cells:
        solvers = args.solvers.split(",")
        if "ddrm" in solvers:
            cached(
                part_path(args, "own", *cell, "ddrm20"),
                lambda c=cell: run_solver(ctx, c, "ddrm", {"steps": 20}, 0, args.images),
            )
        if "dps" in solvers and cell[0] == "mnist" and cell[2] > 0:
            options = tuned_options(ctx, cell, "dps")
            cached(
                part_path(args, "own", *cell, "dps1000"),
                lambda c=cell, o=options: run_solver(
                    ctx, c, "dps", {**o, "steps": 1000}, 0, args.own_images
                ),
            )


def diversity_stage(ctx: Context) -> None:
    from diffvi.inverse import diversity
    from diffvi.inverse.solvers import build_solver

    args = ctx.args
    cell = ("mnist", "inpaint-box", 0.0)
    prior, _, _ = ctx.dataset(cell[0])
    truth, operator, y = ctx.problem(*cell, 0, args.tune_images)
    hole = 1 - operator.mask  # [C, H, W]
    for solver in args.solvers.split(","):

        def compute(s: str = solver) -> dict:
            options = with_steps(s, tuned_options(ctx, cell, s), args.nfe)
            runs = torch.stack(
                [
                    build_solver(s, **options)
                    .bind(prior, cell[2], torch.Generator().manual_seed(seed))(y, operator)
                    .x
                    for seed in range(4)
                ]
            )
            spread = runs.std(dim=0)  # [N, C, H, W]
            return {
                "task": cell[1],
                "operator": operator_record(cell[1]),
                "solver": s,
                "options": options,
                "seeds": 4,
                "images": args.tune_images,
                "diversity": diversity(runs).mean().item(),
                "diversity_in_hole": (spread * hole).sum().item() / (hole.sum().item() * len(y)),
                "diversity_observed": (spread * (1 - hole)).sum().item()
                / ((1 - hole).sum().item() * len(y)),
            }

        cached(part_path(args, "diversity", solver), compute)


def figure_stage(ctx: Context) -> None:
    from diffvi.evaluation.plots import save_image_grid
    from diffvi.inverse.solvers import build_solver

    args = ctx.args
    folder = REPO_ROOT / "docs" / "figures"
    for task in args.tasks.split(","):
        cell = ("mnist", task, 0.05)
        prior, _, _ = ctx.dataset(cell[0])
        truth, operator, y = ctx.problem(*cell, 0, 8)
        rows = [truth, measurement_image(operator, y, cell[2])]
        for solver in args.solvers.split(","):
            options = with_steps(solver, tuned_options(ctx, cell, solver), args.nfe)
            method = build_solver(solver, **options).bind(
                prior, cell[2], torch.Generator().manual_seed(args.seed)
            )
            rows.append(method(y, operator).x)
        save_image_grid(torch.cat(rows), folder / f"inverse_mnist_{task}.png", nrow=8, scale=2)


def measurement_image(operator, y: torch.Tensor, noise: float) -> torch.Tensor:
    """What the measurement shows: y itself where it is image-shaped, else A⁺y (damped)."""
    if tuple(y.shape[1:]) == tuple(operator.input_shape):
        return y.clamp(0, 1)
    return operator.pinv(y, damping=noise**2).clamp(0, 1)


def timing_stage(ctx: Context) -> None:
    args = ctx.args
    cell = ("mnist", "sr4", 0.05)
    for solver in args.solvers.split(","):  # warm-up: one-time kernel and page setup
        run_solver(ctx, cell, solver, {"steps": 2}, 0, args.images)
    for solver in args.solvers.split(","):
        options = with_steps(solver, tuned_options(ctx, cell, solver), args.nfe)
        cached(
            part_path(args, "timing", solver),
            lambda s=solver, o=options: run_solver(ctx, cell, s, o, 0, args.images),
        )


def memory_stage(ctx: Context, cells: list[tuple]) -> None:
    args = ctx.args
    dataset, noise = cells[0][0], cells[0][2]
    for task in dict.fromkeys(cell[1] for cell in cells):
        cell = (dataset, task, noise)
        for solver in args.solvers.split(","):

            def probe(s: str = solver, c: tuple = cell) -> dict:
                run_solver(ctx, c, s, {"steps": 3}, 0, args.images)  # warm-up
                return run_solver(ctx, c, s, {"steps": 3}, 0, args.images)

            cached(part_path(args, "memory", task, solver), probe)


def ablation_variants(base: dict, task: str) -> list[tuple[str, dict]]:
    variants = [("tuned", base)]
    variants += [(f"λ={lam}", {**base, "reg_weight": lam}) for lam in (0.0, 0.05, 0.25, 1.0, 4.0)]
    variants += [(f"lr={lr}", {**base, "lr": lr}) for lr in (0.05, 0.1, 0.25, 0.5, 1.0)]
    variants += [("random order", {**base, "time_order": "random"})]
    variants += [
        (f"w={w}", {**base, "weighting": w}) for w in ("constant", "sqrt-snr", "power2over3")
    ]
    variants += [("sigma_x0=0.1", {**base, "sigma_x0": 0.1})]
    variants += [("no clamp", {**base, "clip_denoised": False})]
    if task.startswith("inpaint"):
        variants += [("misfit_mean=all", {**base, "misfit_mean": "all"})]
    seen, unique = set(), []
    for label, options in variants:
        key = json.dumps(options, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append((label, options))
    return unique


def ablation_stage(ctx: Context) -> None:
    args = ctx.args
    cells = ABLATION_CELLS if not args.quick else QUICK_ABLATION_CELLS
    for cell in cells:
        base = tuned_options(ctx, cell, "red-diff")
        for label, options in ablation_variants(base, cell[1]):
            cached(
                part_path(
                    args,
                    "ablation",
                    *cell,
                    label.replace("=", "").replace(" ", "-").replace("λ", "lambda"),
                ),
                lambda o=options, c=cell, v=label: {
                    "variant": v,
                    **run_solver(
                        ctx, c, "red-diff", with_steps("red-diff", o, args.nfe), 0, args.images
                    ),
                },
            )


def _row(r: dict) -> list:
    opts = ", ".join(f"{k}={v}" for k, v in r["options"].items() if k != "steps")
    return [
        r["dataset"],
        r["task"],
        r["noise_std"],
        r["solver"],
        opts or "—",
        r["nfe"],
        f"{r['psnr']:.2f} ± {r['psnr_sem']:.2f}",
        f"{r['ssim']:.3f}",
        r.get("perceptual"),
        r.get("fid"),
        r["ms_per_image"],
        r["peak_mb"],
    ]


HEADER = [
    "data",
    "task",
    "σ_y",
    "solver",
    "settings",
    "NFE",
    "PSNR (dB)",
    "SSIM",
    "perceptual",
    "FID",
    "ms / image",
    "peak MB",
]


def load_parts(args: argparse.Namespace, stage: str) -> list[dict]:
    """The parts of one stage of the series, each checked against the current operator of
    its task; parts of a task neither in :data:`TASKS` nor in ``--tasks`` (the old
    ``deblur-gaussian``, whose operator changed) are left out."""
    folder = RESULTS_DIR / "inverse_mnist" / series_name(args) / stage
    tasks = {*TASKS, *args.tasks.split(",")}
    parts = []
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("task") not in (None, *tasks):
            continue
        check_operator(record, path)
        parts.append(record)
    return parts


def assemble(args: argparse.Namespace) -> None:
    order = {s: i for i, s in enumerate(("A⁺y", *SOLVERS))}

    def key(r: dict) -> tuple:
        task = TASKS.index(r["task"]) if r["task"] in TASKS else len(TASKS)
        return (r["dataset"], task, r["noise_std"], order.get(r["solver"], 9), r["nfe"])

    main = sorted(load_parts(args, "main"), key=key)
    own = sorted(load_parts(args, "own"), key=key)
    ablation = load_parts(args, "ablation")
    peaks = {(r["task"], r["solver"]): r["peak_mb"] for r in load_parts(args, "memory")}
    for r in main + own + ablation:
        r["peak_mb"] = peaks.get((r["task"], r["solver"]), r["peak_mb"] if not peaks else None)
    tune = load_parts(args, "tune")
    md = [
        f"# Inverse problems with diffusion priors, series {series_name(args)}\n",
        f"{args.images} test images per cell (own-budget DPS: {args.own_images}); matched "
        f"budget {args.nfe} NFE; settings tuned on {args.tune_images} held-out test images. "
        "σ_y in [0, 1] pixel units. ± is the standard error over images. Peak MB: the "
        "memory stage's exact peak for the batch (same for every σ_y and data set).\n",
        "## Matched budget\n",
        markdown_table(HEADER, [_row(r) for r in main]),
    ]
    timing = {r["solver"]: r for r in load_parts(args, "timing")}
    for r in timing.values():
        r["peak_mb"] = peaks.get((r["task"], r["solver"]))
    wins = goal_summary(main, timing)
    if wins:
        md += [
            "\n## Goal check (RED-diff vs the best baseline at the same NFE)\n",
            markdown_table(
                [
                    "data",
                    "task",
                    "σ_y",
                    "RED-diff PSNR",
                    "best baseline",
                    "its PSNR",
                    "time vs DPS",
                    "memory vs DPS",
                ],
                wins,
            ),
        ]
    if timing:
        md += [
            "\n## Cost at the matched budget, quiet machine (MNIST, SR ×4, σ_y = 0.05)\n",
            markdown_table(
                ["solver", "NFE", "batch", "s / batch", "ms / image", "peak MB (batch)"],
                [
                    [
                        r["solver"],
                        r["nfe"],
                        int(r["images"]),
                        r["seconds"],
                        r["ms_per_image"],
                        r["peak_mb"],
                    ]
                    for r in sorted(timing.values(), key=lambda r: order.get(r["solver"], 9))
                ],
            ),
        ]
    spread = load_parts(args, "diversity")
    if spread:
        md += [
            "\n## Diversity across 4 seeds (MNIST box inpainting, σ_y = 0)\n",
            markdown_table(
                ["solver", "settings", "images", "pixel std", "in the hole", "observed pixels"],
                [
                    [
                        r["solver"],
                        ", ".join(f"{k}={v}" for k, v in r["options"].items()),
                        r["images"],
                        r["diversity"],
                        r["diversity_in_hole"],
                        r["diversity_observed"],
                    ]
                    for r in sorted(spread, key=lambda r: order.get(r["solver"], 9))
                ],
            ),
        ]
    if own:
        md += [
            "\n## Each baseline at its own budget\n",
            markdown_table(HEADER, [_row(r) for r in own]),
        ]
    if ablation:
        md += ["\n## RED-diff ablations\n", markdown_table(HEADER, [_row(r) for r in ablation])]
    write_results(
        f"inverse_mnist-{series_name(args)}",
        {
            "machine": machine_info(),
            "settings": vars(args),
            "timing": list(timing.values()),
            "diversity": spread,
            "main": main,
            "own": own,
            "ablation": ablation,
            "tune": tune,
        },
        "\n".join(md),
    )
    print("\n".join(md))


def goal_summary(main: list[dict], timing: dict[str, dict]) -> list[list]:
    """Per cell: RED-diff's PSNR beside the best baseline's, and RED-diff's time and memory
    as ratios to DPS's (from the quiet timing stage and the memory stage when they ran)."""
    cells: dict[tuple, dict[str, dict]] = {}
    for r in main:
        cells.setdefault((r["dataset"], r["task"], r["noise_std"]), {})[r["solver"]] = r
    rows = []
    for cell, by_solver in cells.items():
        red = by_solver.get("red-diff")
        baselines = [r for s, r in by_solver.items() if s not in ("red-diff", "A⁺y")]
        if red is None or not baselines:
            continue
        best = max(baselines, key=lambda r: r["psnr"])
        red_cost = timing.get("red-diff", red)
        dps_cost = timing.get("dps", by_solver.get("dps"))
        time_ratio = red_cost["seconds"] / dps_cost["seconds"] if dps_cost else None
        mem_ratio = (
            red_cost["peak_mb"] / dps_cost["peak_mb"]
            if dps_cost and dps_cost["peak_mb"] and red_cost["peak_mb"] is not None
            else None
        )
        rows.append(
            [
                *cell,
                f"{red['psnr']:.2f}",
                best["solver"],
                f"{best['psnr']:.2f}",
                time_ratio,
                mem_ratio,
            ]
        )
    return rows


def exact_cpu_allocations() -> None:
    """Give every allocation above one page its own pages, returned when freed (glibc), so the
    peak resident set is the peak of live tensors. Only effective before the heap has grown:
    free heap memory is reused before any new pages are mapped."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 4096)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 4096)  # M_TRIM_THRESHOLD


def memory_in_fresh_process(args: argparse.Namespace) -> None:
    """The memory stage in a new process (see :func:`exact_cpu_allocations`)."""
    command = [sys.executable, __file__, "--stages", "memory"]
    if args.quick:
        command.append("--quick")
    for flag in ("datasets", "tasks", "noises", "solvers", "images", "threads", "seed"):
        if not (args.quick and flag == "images"):
            command += [f"--{flag}", str(getattr(args, flag))]
    subprocess.run(command, check=True)


def main() -> None:
    args = parse_args()
    stages = args.stages.split(",")
    if stages == ["memory"] and not torch.cuda.is_available():
        exact_cpu_allocations()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if not args.assemble_only:
        ctx = Context(args)
        cells = [
            (d, t, float(n))
            for d in args.datasets.split(",")
            for n in args.noises.split(",")
            for t in args.tasks.split(",")
        ]
        if "main" in stages:
            main_stage(ctx, cells)
        if "ablation" in stages:
            ablation_stage(ctx)
        if "own" in stages:
            own_stage(ctx, cells)
        if "diversity" in stages:
            diversity_stage(ctx)
        if "figure" in stages and not args.quick:
            figure_stage(ctx)
        if "timing" in stages:
            timing_stage(ctx)
        if stages == ["memory"]:
            memory_stage(ctx, cells)
            return
        if "memory" in stages:
            memory_in_fresh_process(args)
    assemble(args)


if __name__ == "__main__":
    main()
