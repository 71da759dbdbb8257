"""``diffvi restore``: simulate a measurement of clean images, restore them with a diffusion
prior (RED-diff, DPS, ΠGDM, DDRM) and score the restorations against the originals."""

import inspect
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from diffvi.cli import choices
from diffvi.cli.common import (
    DeviceOpt,
    FlushDenormalOpt,
    ThreadsOpt,
    check_dataset,
    check_split,
    report_errors,
    set_threads,
    setup_numerics,
)

# Solver knobs of the command line: option name -> constructor keyword.
KNOBS = {"--lr": "lr", "--reg-weight": "reg_weight", "--scale": "scale", "--eta": "eta"}
# Images shown in comparison.png.
COMPARISON_MAX = 16


@report_errors
def restore_command(
    task: Annotated[
        choices.Task, typer.Option(help="Forward operator A of the measurement y = A(x) + noise.")
    ] = choices.Task.inpaint_box,
    solver: Annotated[
        choices.InverseSolver, typer.Option(help="Restoration algorithm.")
    ] = choices.InverseSolver.red_diff,
    prior: Annotated[
        str, typer.Option(help="Diffusion prior: a name (mnist, fashion-mnist) or a model folder.")
    ] = "mnist",
    model: Annotated[
        Path | None,
        typer.Option(
            help="cvdm: the trained conditional model (a `train cvdm` run folder or its export).",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, help="cvdm: samples per item for the mean and uncertainty map.")
    ] = 20,
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Clean reference image (PNG/JPEG) or a folder of them, of the prior's size; "
            "cvdm: the measurements (low-resolution PNG/TIFF, or a 2-frame TIFF of defocused "
            "intensities for phase).",
            show_default=False,
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Take the clean images from this data set instead of --input; cvdm: the "
            "model's task (simulated pairs, scored against the truth)."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="With --dataset: its split.")] = "test",
    count: Annotated[int, typer.Option(min=1, help="With --dataset: number of images.")] = 16,
    start: Annotated[int, typer.Option(min=0, help="With --dataset: index of the first.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("restored"),
    noise_std: Annotated[
        float, typer.Option(min=0.0, help="σ_y of the Gaussian measurement noise ([0, 1] units).")
    ] = 0.0,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="Solver steps (NFE per image).", show_default="the solver's"),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="red-diff: Adam's learning rate.", show_default="0.25")
    ] = None,
    reg_weight: Annotated[
        float | None, typer.Option(help="red-diff: weight λ of the prior.", show_default="0.25")
    ] = None,
    scale: Annotated[
        float | None, typer.Option(help="dps, pigdm: guidance scale.", show_default="1")
    ] = None,
    eta: Annotated[
        float | None,
        typer.Option(help="dps, pigdm, ddrm: DDIM's η.", show_default="1; ddrm 0.85"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images restored at once.")] = 64,
    perceptual: Annotated[
        bool,
        typer.Option(
            help="Also score a perceptual distance and classifier-FID (trains and caches a "
            "small classifier of the prior's data set the first time, about a minute)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the mask, the noise and the solver.")] = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    flush_denormal: FlushDenormalOpt = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Restore images with a diffusion prior: simulate y = A(x) + σ_y·n from clean images
    (--input files or a --dataset split), restore x with --solver, and score it (PSNR, SSIM).

    Writes to --out: `restored/NAME.png`, `measured/NAME.png` (y as an image, SR upsampled by
    nearest neighbour; none for phase retrieval), `comparison.png` (rows: reference,
    measurement, restoration), `metrics.json` (per image and summary) and `metrics.md`.

    **Examples**

    ```
    diffvi restore --task inpaint-box --solver red-diff --prior mnist --input digits/ -o r
    diffvi restore --task sr4 --solver dps --prior fashion-mnist --dataset fashion-mnist -o r
    diffvi restore --task deblur-gaussian --solver ddrm --noise-std 0.05 --dataset mnist -o r
    diffvi restore --solver cvdm --model runs/cvdm --input widefield/ -o r
    diffvi restore --solver cvdm --model runs/cvdm --dataset microscopy-sr --count 8 -o r
    ```

    With `--solver cvdm` the measurement and its task are the model's own (no --task, --prior
    or --noise-std): --out gets `restored/NAME.{png,tif}` (mean of --samples samples),
    `uncertainty/NAME.{png,tif}` (their standard deviation; the PNGs share one scale, given in
    metrics.json), `input/NAME.png` (upsampled input or TIE phase) and `comparison.png`.
    """
    setup_numerics(flush_denormal)
    set_threads(threads)
    if solver is choices.InverseSolver.cvdm:
        _check_cvdm_flags(model, noise_std, perceptual, lr, reg_weight, scale, eta)
        from diffvi.cli.restore_cvdm import restore_with_cvdm

        metrics = restore_with_cvdm(
            str(model), input_path, dataset, split, count, start, out, samples, steps,
            batch_size, seed, device, progress,
        )  # fmt: skip
        line = f"cvdm ({metrics['schedule']}) on {metrics['task']}, {metrics['images']} items"
        summary = metrics.get("summary")
        if summary:
            line += f": PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.3f}"
            if summary.get("spearman") is not None:
                line += f", Spearman(std, |error|) {summary['spearman']:.2f}"
        typer.echo(f"{line} -> {out}")
        return
    if (input_path is None) == (dataset is None):
        raise ValueError(
            "give exactly one source of clean images: --input FILE_OR_FOLDER or --dataset NAME"
        )
    knobs = {"--lr": lr, "--reg-weight": reg_weight, "--scale": scale, "--eta": eta}
    options = solver_options(solver.value, steps, knobs)

    import torch

    from diffvi.diffusion.pretrained import find_diffusion, load_diffusion
    from diffvi.inverse import build_operator, restoration_scores, summarise_restorations
    from diffvi.inverse.solvers import build_solver
    from diffvi.utils.runtime import resolve_device

    torch_device = resolve_device(device)
    model, spec = load_diffusion(prior, torch_device)
    shape = tuple(int(s) for s in spec.get("event_shape", ()))
    if len(shape) != 3 or not spec.get("image", True):
        raise ValueError(f"prior {prior!r} is not a model of images (event shape {list(shape)})")
    if input_path is not None:
        from diffvi.data.files import read_image_files

        reference, names = read_image_files(input_path, shape)
    else:
        reference, names = _dataset_images(dataset, split, start, count, shape, seed)

    operator = build_operator(task.value, shape, torch.Generator().manual_seed(seed))
    operator = operator.to(torch_device)
    method = build_solver(solver.value, **options)
    if not isinstance(operator, method.requires):
        raise ValueError(
            f"solver {solver.value} needs a {method.requires.__name__} (an operator with a "
            f"known SVD); task {task.value} is not one"
        )
    noise_generator = torch.Generator().manual_seed(seed)
    solver_generator = torch.Generator(device=torch_device).manual_seed(seed)
    measurements, restored = [], []
    seconds, nfe, peak = 0.0, 0, None
    for first in range(0, len(reference), batch_size):
        x = reference[first : first + batch_size].to(torch_device)
        with torch.no_grad():
            y = operator(x)
        noise = torch.randn(y.shape, generator=noise_generator).to(torch_device)
        y = y + noise_std * noise
        result = method.solve(y, operator, model, noise_std, solver_generator, progress)
        measurements.append(y.cpu())
        restored.append(result.x.float().cpu())
        seconds += result.seconds
        nfe = result.nfe
        if result.peak_memory is not None:
            peak = max(peak or 0, result.peak_memory)
    y_all, x_hat = torch.cat(measurements), torch.cat(restored)
    measured = measurement_images(operator, y_all)

    classifier = None
    if perceptual:
        from diffvi.evaluation.sample_quality import load_or_train_feature_classifier

        name = dataset or spec.get("metadata", {}).get("dataset")
        if name is None:
            raise ValueError(f"prior {prior!r} does not name its data set; pass --dataset")
        classifier = load_or_train_feature_classifier(name, progress=progress)
    scores = restoration_scores(x_hat, reference, classifier)
    summary = summarise_restorations(x_hat, reference, classifier)
    measured_scores = measured_summary = None
    if measured is not None:
        measured_scores = restoration_scores(measured, reference)
        measured_summary = summarise_restorations(measured, reference)

    files = _write_images(out, names, x_hat, measured, reference)
    per_image = []
    for i, name in enumerate(names):
        entry: dict[str, Any] = {"name": name, "restored": files["restored"][i]}
        entry.update({key: values[i].item() for key, values in scores.items()})
        if measured_scores is not None:
            entry["measured"] = files["measured"][i]
            entry.update({f"measured_{k}": v[i].item() for k, v in measured_scores.items()})
        per_image.append(entry)
    n = len(names)
    metrics = {
        "task": task.value,
        "solver": solver.value,
        "solver_options": _all_options(solver.value, options),
        "prior": prior,
        "prior_folder": str(find_diffusion(prior)),
        "noise_std": noise_std,
        "seed": seed,
        "device": str(torch_device),
        "source": (
            {"input": str(input_path)}
            if input_path is not None
            else {"dataset": dataset, "split": split, "start": start, "count": n}
        ),
        "images": n,
        "nfe": nfe,
        "seconds": seconds,
        "seconds_per_image": seconds / n,
        "peak_memory_bytes": peak,
        "summary": summary,
        "measurement_summary": measured_summary,
        "per_image": per_image,
    }
    from diffvi.utils.io import atomic_write, write_json

    write_json(out / "metrics.json", metrics)
    table = format_markdown(metrics)
    atomic_write(out / "metrics.md", lambda tmp: tmp.write_text(table))
    line = (
        f"{solver.value} on {task.value}, {n} images: PSNR {summary['psnr']:.2f} dB, "
        f"SSIM {summary['ssim']:.3f}"
    )
    if measured_summary is not None:
        line += f" (measurement {measured_summary['psnr']:.2f} dB)"
    typer.echo(f"{line}; {nfe} NFE, {seconds:.1f} s ({seconds / n:.2f} s/image) -> {out}")


def _check_cvdm_flags(model, noise_std, perceptual, *knobs) -> None:
    """``--solver cvdm`` needs ``--model`` and takes none of the prior solvers' options."""
    if model is None:
        raise ValueError("--solver cvdm needs --model (a `diffvi train cvdm` run folder)")
    if noise_std > 0:
        raise ValueError(
            "--noise-std does not apply to --solver cvdm: the noise is part of its task"
        )
    if perceptual:
        raise ValueError("--perceptual does not apply to --solver cvdm")
    if any(k is not None for k in knobs):
        raise ValueError(
            "--lr, --reg-weight, --scale and --eta do not apply to --solver cvdm; its options "
            "are --model, --samples, --steps, --batch-size and --seed"
        )


def solver_options(name: str, steps: int | None, knobs: dict[str, float | None]) -> dict:
    """Constructor keywords of solver ``name`` from the options the user gave; a knob that the
    solver does not take is an error."""
    from diffvi.inverse.solvers import SOLVERS

    accepted = list(inspect.signature(SOLVERS[name].__init__).parameters)[1:]
    options: dict[str, Any] = {} if steps is None else {"steps": steps}
    for flag, value in knobs.items():
        if value is None:
            continue
        if KNOBS[flag] not in accepted:
            takes = [f for f, kw in KNOBS.items() if kw in accepted]
            raise ValueError(
                f"{flag} does not apply to solver {name}; its options are --steps"
                + "".join(f", {f}" for f in takes)
            )
        options[KNOBS[flag]] = value
    return options


def _all_options(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """Every constructor keyword of the solver: its defaults, updated with ``given``."""
    from diffvi.inverse.solvers import SOLVERS

    parameters = list(inspect.signature(SOLVERS[name].__init__).parameters.values())[1:]
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return {**defaults, **given}


def _dataset_images(name, split, start, count, shape, seed):
    """``(images, names)``: images ``start … start + count − 1`` of a data set split."""
    from diffvi.cli.evaluate import load_images

    check_dataset(name)
    check_split(name, split)
    images, _ = load_images(name, split, shape, start + count, seed)
    if start >= len(images):
        raise ValueError(
            f"--start {start} is past the end of {name} {split} ({len(images)} images)"
        )
    images = images[start:]
    return images, [f"{start + i:04d}" for i in range(len(images))]


def measurement_images(operator, y):
    """The measurement shown as images ``[N, C, H, W]`` in [0, 1], or ``None`` when it is not
    image-shaped (phase retrieval). Smaller measurements (super-resolution) are upsampled by
    nearest neighbour."""
    c, h, w = operator.input_shape
    out = tuple(operator.output_shape)
    if out == (c, h, w):
        return y.clamp(0, 1)
    if len(out) == 3 and out[0] == c and out[1] < h and h % out[1] == 0 and w % out[2] == 0:
        fh, fw = h // out[1], w // out[2]
        return y.repeat_interleave(fh, -2).repeat_interleave(fw, -1).clamp(0, 1)
    return None


def _save_png(path: Path, image) -> str:
    """Save one ``[C, H, W]`` image in [0, 1] as an 8-bit grey or RGB PNG (atomically)."""
    import numpy as np
    import torch
    from PIL import Image

    from diffvi.utils.io import atomic_write

    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    array = array[0] if array.shape[0] == 1 else np.ascontiguousarray(array.transpose(1, 2, 0))
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
    return str(path)


def _write_images(out: Path, names, restored, measured, reference) -> dict[str, list[str]]:
    """``restored/``, ``measured/`` and ``comparison.png``; returns the paths relative to out."""
    import torch

    from diffvi.evaluation.plots import save_image_grid

    files: dict[str, list[str]] = {"restored": [], "measured": []}
    for i, name in enumerate(names):
        _save_png(out / "restored" / f"{name}.png", restored[i])
        files["restored"].append(f"restored/{name}.png")
        if measured is not None:
            _save_png(out / "measured" / f"{name}.png", measured[i])
            files["measured"].append(f"measured/{name}.png")
    k = min(COMPARISON_MAX, len(names))
    rows = [reference[:k]] + ([measured[:k]] if measured is not None else []) + [restored[:k]]
    save_image_grid(torch.cat(rows).clamp(0, 1), out / "comparison.png", nrow=k)
    return files


def format_markdown(metrics: dict[str, Any]) -> str:
    """``metrics.md``: settings, then one table of the restoration and the measurement."""
    summary, measured = metrics["summary"], metrics["measurement_summary"]

    def cell(values: dict[str, float] | None, key: str) -> str:
        if values is None or key not in values or not math.isfinite(values[key]):
            return "–"
        sem = values.get(f"{key}_sem")
        return f"{values[key]:.3f}" + (f" ± {sem:.3f}" if sem is not None else "")

    options = ", ".join(f"{k}={v}" for k, v in metrics["solver_options"].items())
    rows = [("PSNR (dB)", "psnr"), ("SSIM", "ssim")]
    if "perceptual" in summary:
        rows.append(("perceptual distance", "perceptual"))
    if "fid" in summary:
        rows.append(("classifier-FID", "fid"))
    lines = [
        f"# Restoration: {metrics['task']} with {metrics['solver']}",
        "",
        f"Prior `{metrics['prior']}`, {metrics['images']} images, σ_y = {metrics['noise_std']}, "
        f"seed {metrics['seed']}, {metrics['device']}; {options}.",
        f"{metrics['nfe']} NFE per image, {metrics['seconds']:.1f} s "
        f"({metrics['seconds_per_image']:.3f} s per image).",
        "",
        "| metric | restored | measurement |",
        "|---|---|---|",
        *(f"| {label} | {cell(summary, key)} | {cell(measured, key)} |" for label, key in rows),
    ]
    return "\n".join(lines) + "\n"
