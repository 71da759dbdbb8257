"""``diffvi train cvdm``: a conditional diffusion model with a learned per-pixel schedule (CVDM,
della Maggiora et al. 2024), or an SR3-style / regression baseline, on a paired restoration
task (super-resolution, microscopy, phase imaging), exported as a loadable model."""

from pathlib import Path
from typing import Annotated, Any

import typer

from diffvi.cli.options import RunOptions, train_command
from diffvi.training.config import DATA, CVDMConfig


@train_command(CVDMConfig)
def train_cvdm(
    given: dict[str, Any],
    run: RunOptions,
    size: Annotated[
        int | None,
        typer.Option(
            min=2,
            rich_help_panel=DATA,
            help="Target image size of microscopy-sr (--task-option size=N).",
        ),
    ] = None,
    pairs: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            metavar="LOW HIGH",
            rich_help_panel=DATA,
            help="Train on your own pairs instead of --task: two folders of PNG/TIFF images "
            "matched by file name, or two TIFF stacks; low-resolution inputs first. Any size "
            "and channels; the scale factor is read from the shapes. --task-option "
            "normalize=minmax scales each image to [0, 1].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a conditional variational diffusion model (CVDM): a UNet noise predictor
    conditioned on the observation, with a per-pixel noise schedule learned jointly from it;
    EMA weights. Baselines: fixed linear / cosine schedules, and L2 regression.

    The run folder holds config.json, checkpoints/last.ckpt (resumable), logs/ (each loss
    term, the learned schedule's end points, validation loss and PSNR) and export/ (EMA
    weights + model.json).

    **Examples**

    ```
    diffvi train cvdm --task microscopy-sr --schedule learned --max-steps 5000
    diffvi train cvdm --task mnist-sr4 --schedule cosine --max-steps 2000
    diffvi train cvdm --task microscopy-sr --size 16 --base-channels 8 --max-steps 50
    diffvi train cvdm --run-dir runs/microscopy-sr-cvdm-learned --resume --max-steps 10000
    diffvi train cvdm --pairs widefield/ sim/ --patch 64 --max-steps 20000
    ```

    With --pairs the model restores images of any size tile by tile: `diffvi restore --solver
    cvdm --model RUN --input IMAGES --tile 64 --overlap 16`.
    """
    if size is not None:
        given["task_options"] = {**(given["task_options"] or {}), "size": size}
    if pairs is not None:
        given["pairs"] = [str(p) for p in pairs]
    result = run.train("cvdm", given, run_name=_run_name)
    if result is None:
        return
    config, run_dir, meta = result
    psnr = meta.get("val_psnr")
    typer.echo(
        f"Run: {run_dir}  (step {meta['steps']})\n"
        + (f"Final validation PSNR (EMA weights, one sample): {psnr:.2f} dB\n" if psnr else "")
        + f"Export: {run_dir / 'export'} (load with diffvi.load)"
    )


def _run_name(config: CVDMConfig) -> str:
    """``<task>-cvdm-<schedule>``; your own pairs are named after the targets' folder."""
    name = config.task if config.pairs is None else Path(config.pairs[1]).stem
    return f"{name}-cvdm-{config.schedule}"
