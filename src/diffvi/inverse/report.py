"""Files of a restoration (what ``diffvi restore`` writes): the restored images, the
measurements or classical estimates beside them, ``comparison.png``, ``metrics.json`` and
``metrics.md``.

Two layouts, chosen by the result:

- one restoration per item (the solvers): ``restored/NAME.png``, ``measured/NAME.png`` (the
  measurement as an image, when it is one) and ``comparison.png`` with rows labelled truth,
  measurement and the solver's name;
- the mean of several draws (CVDM): ``restored/NAME.{png,tif}`` (the mean),
  ``uncertainty/NAME.{png,tif}`` (their standard deviation; the PNGs share one scale, given in
  ``metrics.json``; the TIFFs hold the raw values), ``input/NAME.png`` (the classical estimate)
  and ``comparison.png`` with rows labelled input (or TIE), [truth], mean, std. The PNGs of
  images with other than 1 or 3 channels show the channels side by side (the TIFFs hold one
  frame per channel).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffvi.evaluation.plots import save_image_grid
from diffvi.inverse.restore import RestoreResult
from diffvi.utils.io import atomic_write, write_float_tiff, write_json, write_png
from diffvi.utils.text import plural

__all__ = ["COMPARISON_MAX", "format_markdown", "summary_line", "write_restoration"]

COMPARISON_MAX = 16
"""Items shown in ``comparison.png``."""


def write_restoration(
    out: str | os.PathLike[str],
    names: list[str],
    result: RestoreResult,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Write ``result`` (items named ``names``) to folder ``out``; ``settings`` (task, method,
    seed, …) lead ``metrics.json``. Returns the metrics as written."""
    out = Path(out)
    if len(names) != len(result):
        raise ValueError(f"expected {len(result)} names, got {len(names)}")
    if result.samples is None:
        metrics = _write_restorations(out, names, result, settings)
    else:
        metrics = _write_draws(out, names, result, settings)
    write_json(out / "metrics.json", metrics)
    table = format_markdown(metrics)
    atomic_write(out / "metrics.md", lambda tmp: tmp.write_text(table))
    return metrics


def _comparison(out: Path, rows: dict[str, Tensor | None], k: int) -> None:
    """``comparison.png``: the first ``k`` items of each row that is not ``None``, labelled
    with its key."""
    shown = {label: row[:k] for label, row in rows.items() if row is not None}
    grid = torch.cat(list(shown.values()))
    save_image_grid(grid.clamp(0, 1), out / "comparison.png", nrow=k, row_labels=list(shown))


def _write_restorations(
    out: Path, names: list[str], result: RestoreResult, settings: dict[str, Any]
) -> dict[str, Any]:
    baseline, n = result.baseline, len(names)
    per_image = []
    for i, name in enumerate(names):
        write_png(out / "restored" / f"{name}.png", result.restored[i])
        entry: dict[str, Any] = {"name": name, "restored": f"restored/{name}.png"}
        own = {k: v for k, v in result.scores.items() if not k.endswith("_baseline")}
        entry.update({k: v[i].item() for k, v in own.items()})
        if baseline is not None:
            write_png(out / "measured" / f"{name}.png", baseline[i])
            entry["measured"] = f"measured/{name}.png"
            entry.update(
                {
                    f"measured_{k.removesuffix('_baseline')}": v[i].item()
                    for k, v in result.scores.items()
                    if k.endswith("_baseline")
                }
            )
        per_image.append(entry)
    k = min(COMPARISON_MAX, n)
    rows = {"truth": result.reference, "measurement": baseline}
    _comparison(out, {**rows, str(settings.get("solver", "restored")): result.restored}, k)
    return {
        **settings,
        "images": n,
        "nfe": result.nfe,
        "seconds": result.seconds,
        "seconds_per_image": result.seconds / n,
        "peak_memory_bytes": result.peak_memory,
        "summary": result.summary,
        "measurement_summary": result.baseline_summary,
        "per_image": per_image,
    }


def _preview(images: Tensor | None) -> Tensor | None:
    """``images [N, C, H, W]`` as PNG-able grey or RGB images: unchanged for C = 1 or 3, else
    the channels side by side, ``[N, 1, H, C · W]``."""
    if images is None or images.shape[1] in (1, 3):
        return images
    n, c, h, w = images.shape
    return images.permute(0, 2, 1, 3).reshape(n, 1, h, c * w)


def _nanmean(values: Tensor) -> float | None:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else None


def _write_draws(
    out: Path, names: list[str], result: RestoreResult, settings: dict[str, Any]
) -> dict[str, Any]:
    mean, std, baseline = result.restored, result.std, result.baseline
    scale = max(float(std.max()), 1e-12)
    shown_mean, shown_std, shown_baseline = _preview(mean), _preview(std), _preview(baseline)
    per_image = []
    for i, name in enumerate(names):
        write_png(out / "restored" / f"{name}.png", shown_mean[i])
        write_float_tiff(out / "restored" / f"{name}.tif", mean[i])
        write_png(out / "uncertainty" / f"{name}.png", shown_std[i] / scale)
        write_float_tiff(out / "uncertainty" / f"{name}.tif", std[i])
        entry = {
            "name": name,
            "restored": f"restored/{name}.png",
            "uncertainty": f"uncertainty/{name}.png",
        }
        if shown_baseline is not None:
            write_png(out / "input" / f"{name}.png", shown_baseline[i])
            entry["input"] = f"input/{name}.png"
        per_image.append(entry)
    metrics: dict[str, Any] = {
        **settings,
        "images": len(names),
        "uncertainty_png_scale": scale,
        "seconds": result.seconds,
        "peak_memory_bytes": result.peak_memory,
        "per_image": per_image,
    }
    if result.scores:
        metrics["summary"] = {k: _nanmean(v) for k, v in result.scores.items()}
        for i, entry in enumerate(per_image):
            entry.update({k: float(v[i]) for k, v in result.scores.items()})
    k = min(COMPARISON_MAX, len(names))
    estimate = "TIE" if settings.get("task") == "phase" else "input"
    rows = {
        estimate: shown_baseline,
        "truth": _preview(result.reference),
        "mean": shown_mean,
        "std": shown_std / scale,
    }
    _comparison(out, rows, k)
    return metrics


def summary_line(metrics: dict[str, Any]) -> str:
    """One line on the restoration: method, task, items and the mean scores."""
    summary = metrics.get("summary")
    if "uncertainty_png_scale" in metrics:
        line = f"cvdm ({metrics['schedule']}) on {metrics['task']}, "
        line += plural(metrics["images"], "item")
        if summary:
            line += f": PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.3f}"
            if summary.get("spearman") is not None:
                line += f", Spearman(std, |error|) {summary['spearman']:.2f}"
        return line
    n, seconds, measured = metrics["images"], metrics["seconds"], metrics["measurement_summary"]
    line = (
        f"{metrics['solver']} on {metrics['task']}, {plural(n, 'image')}: "
        f"PSNR {summary['psnr']:.2f} dB, "
        f"SSIM {summary['ssim']:.3f}"
    )
    if measured is not None:
        line += f" (measurement {measured['psnr']:.2f} dB)"
    return f"{line}; {metrics['nfe']} NFE, {seconds:.1f} s ({seconds / n:.2f} s/image)"


def format_markdown(metrics: dict[str, Any]) -> str:
    """``metrics.md``: the settings, then a table of the scores."""
    if "uncertainty_png_scale" in metrics:
        return _draws_markdown(metrics)
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
        f"Prior `{metrics['prior']}`, {plural(metrics['images'], 'image')}, "
        f"σ_y = {metrics['noise_std']}, "
        f"seed {metrics['seed']}, {metrics['device']}; {options}.",
        f"{metrics['nfe']} NFE per image, {metrics['seconds']:.1f} s "
        f"({metrics['seconds_per_image']:.3f} s per image).",
        "",
        "| metric | restored | measurement |",
        "|---|---|---|",
        *(f"| {label} | {cell(summary, key)} | {cell(measured, key)} |" for label, key in rows),
    ]
    return "\n".join(lines) + "\n"


_DRAW_LABELS = {
    "psnr": "PSNR of the mean (dB)",
    "ssim": "SSIM of the mean",
    "psnr_sample": "PSNR of one sample (dB)",
    "psnr_baseline": "PSNR of the classical estimate (dB)",
    "spearman": "Spearman(std, |error|)",
    "coverage": "±2σ coverage",
}


def _draws_markdown(metrics: dict[str, Any]) -> str:
    lines = [
        f"# CVDM restoration: {metrics['task']} ({metrics['schedule']} schedule)",
        "",
        f"Model `{metrics['model']}`, {plural(metrics['images'], 'item')}, mean and std of "
        f"{metrics['samples']} samples of {metrics['steps']} steps, seed {metrics['seed']}, "
        f"{metrics['device']}. Uncertainty PNGs are std / {metrics['uncertainty_png_scale']:.4g}"
        " (TIFFs hold the raw std).",
    ]
    summary = metrics.get("summary")
    if summary:
        lines += ["", "| metric | value |", "|---|---|"]
        for key, label in _DRAW_LABELS.items():
            if summary.get(key) is not None:
                lines.append(f"| {label} | {summary[key]:.3f} |")
    return "\n".join(lines) + "\n"
