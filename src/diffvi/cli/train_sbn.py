"""``diffvi train sbn``: a sigmoid belief network with binary latent layers, trained with a
score-function estimator (REINFORCE, NVIL, VIMCO, reweighted wake-sleep) on binary images: a
registered data set, or one's own images (``--data``), binarised with their grey levels as
probabilities."""

from typing import Any

import typer

from diffvi.cli.options import RunOptions, train_command
from diffvi.training.config import SBNConfig


def _run_name(config) -> str:
    """``sbn-LAYERS-ESTIMATOR-kK``; ``sbn-DATA-…`` on one's own images (``--data``)."""
    data = "" if config.data is None else f"{config.data_name}-"
    return f"sbn-{data}{'-'.join(map(str, config.layers))}-{config.estimator}-k{config.k}"


@train_command(SBNConfig)
def train_sbn(given: dict[str, Any], run: RunOptions) -> None:
    """Train a sigmoid belief network (binary latent layers) with a score-function estimator:
    REINFORCE, NVIL (baselines, centring, variance normalisation, local signals), VIMCO
    (multi-sample bound, leave-one-out baselines) or reweighted wake-sleep.

    --data trains on your own images instead of --dataset: a folder of PNG/JPEG/TIFF files or
    an array file (.npy/.npz/.h5), with --size, --crop, --labels and --val-fraction as in
    `train vae`. Their grey levels are the probabilities of binary pixels: every training image
    is drawn afresh in every epoch (dynamic binarisation, seeded), every held-out image once
    (the same bits at every validation); binary images stay as they are, colour keeps its
    channels.

    The run folder holds config.json, checkpoints/last.ckpt (resumable), logs/ (training bound,
    validation ELBO and K-sample bound) and export/ (model.safetensors + model.json, loadable
    with diffvi.load).

    **Examples**

    ```
    diffvi train sbn --layers 200,200,200 --estimator vimco --k 5
    diffvi train sbn --layers 200 --estimator nvil --max-steps 50000
    diffvi train sbn --layers 200,200 --estimator rws --k 5 --rws-sleep
    diffvi train sbn --run-dir runs/sbn-200-nvil-k1 --resume --max-steps 100000
    diffvi train sbn --data glyphs/ --size 28 --layers 200 --estimator vimco --k 5
    ```
    """
    result = run.train("sbn", given, run_name=_run_name)
    if result is None:
        return
    config, run_dir, meta = result
    bound = meta.get(f"val_bound_k{config.val_k}")
    typer.echo(
        f"Run: {run_dir}  (step {meta['steps']})\n"
        + (f"Validation bound (K = {config.val_k}): {bound:.2f} nats\n" if bound else "")
        + f"Export: {run_dir / 'export'} (load with diffvi.load)"
    )
