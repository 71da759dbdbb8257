"""``diffvi train diffusion``: an image diffusion model (schedule + UNet) on a registered data
set or on the user's own images (``--data``), exported as a named, loadable prior."""

from typing import Any

import typer

from diffvi.cli.options import RunOptions, train_command
from diffvi.diffusion.schedules import LEARNABLE_SCHEDULES
from diffvi.training.config import DiffusionConfig


@train_command(DiffusionConfig)
def train_diffusion(given: dict[str, Any], run: RunOptions) -> None:
    """Train an image diffusion model: a noise schedule and a UNet noise predictor (Ho et al.
    2020; Kingma et al. 2021), with EMA weights (see docs/methods.md).

    The run folder holds config.json, checkpoints/last.ckpt (resumable), logs/ (training
    loss, validation bits/dim) and export/ (EMA weights + model.json). `diffvi sample RUN`
    draws images from it; copy export/ to a models folder to load it by name.

    **Examples**

    ```
    diffvi train diffusion --dataset mnist --max-steps 5000
    diffvi train diffusion --dataset fashion-mnist --schedule learned --loss vdm
    diffvi train diffusion --dataset mnist --schedule learnable-scalar
    diffvi train diffusion --dataset digits --base-channels 16 --attention '' --max-steps 300
    diffvi train diffusion --run-dir runs/mnist-diffusion-cosine --resume --max-steps 10000
    diffvi train diffusion --data photos/ --size 32 --attention 8   # your own images
    ```
    """
    defaults = {"loss_type": "vdm"} if given["schedule"] in LEARNABLE_SCHEDULES else None
    result = run.train(
        "diffusion", given, defaults, lambda c: f"{c.data_name}-diffusion-{c.schedule}"
    )
    if result is None:
        return
    config, run_dir, meta = result
    bpd = meta.get("val_bpd")
    typer.echo(
        f"Run: {run_dir}  (step {meta['steps']})\n"
        + (f"Final validation bits/dim (EMA weights): {bpd:.3f}\n" if bpd else "")
        + f"Next: diffvi sample {run_dir} --steps 50 --sampler ddim --out samples.png"
    )
