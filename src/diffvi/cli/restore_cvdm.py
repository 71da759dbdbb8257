"""``diffvi restore --solver cvdm``: restore measurements with a trained conditional model
(``diffvi train cvdm``) and write the mean of its samples with the uncertainty map (their
pixel-wise standard deviation), as PNG and float TIFF."""

from pathlib import Path
from typing import Any


def restore_with_cvdm(
    model_path: str,
    input_path: Path | None,
    dataset: str | None,
    split: str,
    count: int,
    start: int,
    out: Path,
    samples: int,
    steps: int | None,
    batch_size: int,
    seed: int,
    device: str,
    progress: bool,
) -> dict[str, Any]:
    """Restore ``--input`` measurements, or pairs ``start … start + count − 1`` of the model's
    own task (``--dataset TASK``, scored against the truth), and write the files; returns the
    metrics written to ``metrics.json``."""
    import torch

    from diffvi.data.paired import load_paired, paired_task
    from diffvi.evaluation.conditional import sample_images, score_samples
    from diffvi.training.cvdm_module import load_cvdm
    from diffvi.utils.runtime import resolve_device

    if (input_path is None) == (dataset is None):
        raise ValueError(
            "give exactly one source: --input FILE_OR_FOLDER (measurements) or --dataset TASK "
            "(simulated pairs of the model's task, scored against the truth)"
        )
    torch_device = resolve_device(device)
    model, spec = load_cvdm(model_path, torch_device)
    task_name, options = spec["task"], {**paired_task(spec["task"]).options, **spec["task_options"]}
    task = paired_task(task_name)
    size = int(spec["image_size"])
    if dataset is not None:
        if dataset != task_name:
            raise ValueError(
                f"this model was trained on task {task_name!r}; pass --dataset {task_name} "
                f"(got {dataset!r})"
            )
        if split not in task.splits:
            raise ValueError(f"--split must be one of {list(task.splits)} for {task_name}")
        data = load_paired(task_name, split, start + count, 0, **spec["task_options"])[start:]
        if len(data) == 0:
            raise ValueError(f"--start {start} is past the end of the {split} pairs")
        condition = data.condition
        names = [f"{start + i:04d}" for i in range(len(data))]
    else:
        from diffvi.data.files import read_measurement_files

        side = size // task.factor
        measured, names = read_measurement_files(input_path, task.measurement_channels, side, side)
        condition = task.from_measurement(measured, options)
        data = None
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    draws = sample_images(
        model,
        condition.to(torch_device),
        task_name,
        samples,
        steps,
        generator,
        batch_size,
        progress,
    ).cpu()
    mean, std = draws.mean(0), draws.std(0, correction=0)
    baseline = task.baseline(condition, options)
    scale = max(float(std.max()), 1e-12)
    files = _write_outputs(out, names, mean, std, scale, baseline)

    metrics: dict[str, Any] = {
        "model": model_path,
        "task": task_name,
        "schedule": spec["schedule"],
        "samples": samples,
        "steps": steps if steps is not None else spec.get("timesteps"),
        "seed": seed,
        "device": str(torch_device),
        "images": len(names),
        "uncertainty_png_scale": scale,
        "per_image": [
            {"name": n, **{k: v[i] for k, v in files.items()}} for i, n in enumerate(names)
        ],
    }
    if data is not None:
        scores = score_samples(draws, data, stochastic=spec["schedule"] != "regression")
        metrics["summary"] = {k: _nanmean(v) for k, v in scores.items()}
        for i, entry in enumerate(metrics["per_image"]):
            entry.update({k: float(v[i]) for k, v in scores.items()})
    _save_comparison(out, baseline, data.images() if data is not None else None, mean, std, scale)
    from diffvi.utils.io import atomic_write, write_json

    write_json(out / "metrics.json", metrics)
    atomic_write(out / "metrics.md", lambda tmp: tmp.write_text(format_markdown(metrics)))
    return metrics


def _nanmean(values) -> float | None:
    import torch

    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else None


def _write_outputs(out: Path, names, mean, std, scale, baseline) -> dict[str, list[str]]:
    """``restored/`` (mean, PNG + TIFF), ``uncertainty/`` (std, PNG scaled by 1 / ``scale`` +
    raw TIFF) and ``input/`` (the classical estimate, PNG); paths relative to ``out``."""
    from diffvi.cli.restore import _save_png
    from diffvi.utils.io import write_float_tiff

    files: dict[str, list[str]] = {k: [] for k in ("restored", "uncertainty", "input")}
    for i, name in enumerate(names):
        _save_png(out / "restored" / f"{name}.png", mean[i])
        write_float_tiff(out / "restored" / f"{name}.tif", mean[i])
        _save_png(out / "uncertainty" / f"{name}.png", std[i] / scale)
        write_float_tiff(out / "uncertainty" / f"{name}.tif", std[i])
        _save_png(out / "input" / f"{name}.png", baseline[i])
        files["restored"].append(f"restored/{name}.png")
        files["uncertainty"].append(f"uncertainty/{name}.png")
        files["input"].append(f"input/{name}.png")
    return files


def _save_comparison(out: Path, baseline, truth, mean, std, scale, limit: int = 16) -> None:
    """``comparison.png``: rows classical estimate, [truth], mean, std / max std."""
    import torch

    from diffvi.evaluation.plots import save_image_grid

    k = min(limit, mean.shape[0])
    rows = [baseline[:k]] + ([truth[:k]] if truth is not None else []) + [mean[:k]]
    rows.append(std[:k] / scale)
    save_image_grid(torch.cat(rows).clamp(0, 1), out / "comparison.png", nrow=k)


def format_markdown(metrics: dict[str, Any]) -> str:
    """``metrics.md``: settings and, for simulated pairs, the scores."""
    lines = [
        f"# CVDM restoration: {metrics['task']} ({metrics['schedule']} schedule)",
        "",
        f"Model `{metrics['model']}`, {metrics['images']} items, mean and std of "
        f"{metrics['samples']} samples of {metrics['steps']} steps, seed {metrics['seed']}, "
        f"{metrics['device']}. Uncertainty PNGs are std / {metrics['uncertainty_png_scale']:.4g}"
        " (TIFFs hold the raw std).",
    ]
    summary = metrics.get("summary")
    if summary:
        labels = {
            "psnr": "PSNR of the mean (dB)",
            "ssim": "SSIM of the mean",
            "psnr_sample": "PSNR of one sample (dB)",
            "psnr_baseline": "PSNR of the classical estimate (dB)",
            "spearman": "Spearman(std, |error|)",
            "coverage": "±2σ coverage",
        }
        lines += ["", "| metric | value |", "|---|---|"]
        for key, label in labels.items():
            if summary.get(key) is not None:
                lines.append(f"| {label} | {summary[key]:.3f} |")
    return "\n".join(lines) + "\n"
