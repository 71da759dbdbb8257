"""``diffvi train …``: one sub-command per model family (``vae``, ``ddvae`` here; ``diffusion``,
``cvdm``, ``sbn``, ``vaedgp`` in their modules). Their options are generated from the config
dataclasses (:func:`~diffvi.cli.options.train_command`)."""

from pathlib import Path
from typing import Annotated, Any

import typer

from diffvi.cli.options import RunOptions, choice, train_command
from diffvi.objectives.ddvi import OFFICIAL_KL_WEIGHT, OFFICIAL_SLEEP_WEIGHT
from diffvi.training.config import PRIORS_2D, STAGE2_DEFAULTS, TrainConfig

train_app = typer.Typer(
    help="Train a model; one sub-command per model family.",
    no_args_is_help=True,
)

# Fields of the diffusion posterior (`train ddvae`), and those of `train vae` only.
DDVAE_FIELDS = (
    "diffusion_steps", "beta_end", "beta_reg", "beta_sleep", "sleep_steps", "conditional",
    "wake_updates_chain", "warmup_steps", "stage2",
)  # fmt: skip
VAE_FIELDS = (
    "objective", "posterior", "iaf_flows", "made_hidden", "adversarial_weight",
    "deterministic_encoder", "discriminator_lr", "estimator", "analytic_kl", "architecture",
)  # fmt: skip
# DD-VAE defaults for a new run (a 2-D latent, as in DDVI's MNIST experiments). The MLPs are
# 512-512 for the 28x28 data sets and 256-256 for the 8x8 digits (DDVAE_HIDDEN_SMALL).
# β_reg = 1 (the bound) on the kernel-smoothed 2-D prior (smooth_prior: for 2-D priors only)
# with the reverse chain warmed up on the prior for 500 steps: on the exact pinwheel density
# β_reg = 1 collapses (MNIST kNN 0.11, chance) and only β_reg = 0.01 kept the latents apart;
# smoothed, β_reg = 1 keeps them apart and has the lowest latent NLL (docs/results.md).
DDVAE_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "objective": "ddvi",
    "beta_reg": 1.0,
    "warmup_steps": 500,
    "posterior": "diffusion",
    "prior": "pinwheel",
    "smooth_prior": True,
    "latent_dims": [2],
    "hidden": [[512, 512]],
    "activation": "silu",
    "k": 1,
    "batch_size": 128,
    "lr": 1e-3,
    "adam": "torch",
    "max_epochs": 50,
}
DDVAE_HIDDEN_SMALL: dict[str, list[list[int]]] = {"digits": [[256, 256]]}
# `train ddvae --recipe official|official-stage1`: the official code's first stage (DiffVAE: its
# weights in per-image units, an unconditional chain pretrained on the prior first).
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "beta_reg": OFFICIAL_KL_WEIGHT,
    "beta_sleep": OFFICIAL_SLEEP_WEIGHT,
    "warmup_steps": 500,
    "conditional": False,
}
# `--recipe`: bound (DDVI's bound, the default), official (the official code's two stages,
# DiffVAE then DiffVAEWarmup), official-stage1 (DiffVAE alone; `--official`).
RECIPES = ("bound", "official", "official-stage1")


def _labelled(config) -> str:
    """``-labelledN`` for a semi-supervised run, so that it gets its own default folder."""
    return f"-labelled{config.num_labelled}" if config.num_labelled else ""


def _vae_run_name(config) -> str:
    posterior = "" if config.posterior == "gaussian" else f"{config.posterior}-"
    return f"{config.data_name}-{posterior}{config.objective}-k{config.k}{_labelled(config)}"


def _ddvae_run_name(config) -> str:
    """``DATASET-ddvae-PRIOR``, then ``-official`` (the two-stage recipe) or
    ``-official-stage1`` and ``-labelledN`` where they apply: each recipe and the
    semi-supervised runs get their own folders."""
    official = ""
    if config.objective == "ddvi-official":
        official = "-official" if config.stage2 is not None else "-official-stage1"
    return f"{config.data_name}-ddvae-{config.prior}{official}{_labelled(config)}"


def table_model_hints(run_dir: Path, data: str, evaluate: bool = True) -> list[str]:
    """What to do next with a model trained on the table ``data``: embed new rows of its kind
    (a file of its format, ``NEW.csv`` for a CSV) and, where ``evaluate``, score them."""
    from diffvi.data.tables import table_format

    new = f"NEW.{table_format(data)}"
    hints = [
        f"Next: diffvi embed table {new} --model {run_dir} --out {run_dir / 'embedding'}"
        "  (latents of new rows)"
    ]
    if evaluate:
        hints.append(f"      diffvi evaluate {run_dir} --data {new}  (bounds on new rows)")
    return hints


def train_and_report(
    given: dict[str, Any], run: RunOptions, defaults: dict[str, Any] | None = None, run_name=None
) -> None:
    """Train a VAE-family run and print a summary."""
    result = run.train("vae", given, defaults, run_name or _vae_run_name)
    if result is None:
        return
    config, run_dir, meta = result
    summary = [f"Run: {run_dir}  ({meta['epochs']:g} epochs, step {meta['steps']})"]
    if "val_bound" in meta:
        names = {
            "elbo": "ELBO",
            "ddvi": f"DDVI bound (k={config.k})",
            "ddvi-official": f"DDVI bound of the DDPM chain (k={config.k}; trained with DDIM)",
            "aae": "ELBO of q (AAE; not its training loss)",
        }
        name = names.get(config.objective, f"IWAE bound (k={config.k})")
        summary.append(f"Final validation {name}: {meta['val_bound']:.3f}")
    if "val_iwae" in meta:
        summary.append(f"Final validation IWAE bound (k={config.val_k}): {meta['val_iwae']:.3f}")
    if "val_accuracy" in meta:
        line = f"Final validation accuracy of q(l|x): {meta['val_accuracy']:.3f}"
        if "val_latent_accuracy" in meta:
            line += f"; of the prior partition of z: {meta['val_latent_accuracy']:.3f}"
        summary.append(line)
    if "val_bound" not in meta:
        summary.append("No validation ran (training stopped before the end of an epoch).")
    if config.features is not None:  # a table: apply the model to new rows of its kind
        summary.extend(table_model_hints(run_dir, config.data))
    elif config.data is not None:  # evaluate and embed read registered data sets
        summary.append(f"Next: diffvi sample {run_dir} --num 16 -o samples.png")
    elif config.posterior == "diffusion":
        summary.append(f"Next: diffvi embed {run_dir} --out {run_dir / 'embedding'}")
    else:
        summary.append(f"Next: diffvi evaluate {run_dir}")
    typer.echo("\n".join(summary))


@train_app.command("vae")
@train_command(TrainConfig, exclude=DDVAE_FIELDS)
def train_vae(given: dict[str, Any], run: RunOptions) -> None:
    """Train a VAE with the ELBO or the IWAE bound (Burda et al. 2016), with a Gaussian or IAF
    posterior (Kingma et al. 2016), or an adversarial autoencoder (AAE; Makhzani et al. 2016).

    The run folder gets config.json, checkpoints/last.ckpt (written every epoch),
    logs/ (metrics.csv) and export/ (model.safetensors + config.json).

    **Examples**

    ```
    diffvi train vae --dataset mnist-dynamic --objective iwae --k 50
    diffvi train vae --dataset digits --objective elbo --k 1 --run-dir runs/d
    diffvi train vae --run-dir runs/d --resume --max-epochs 200
    diffvi train vae --dataset mnist --strategy ddp --devices 4
    diffvi train vae --dataset digits --objective elbo --k 1 --posterior iaf --iaf-flows 2
    diffvi train vae --dataset digits --objective aae --k 1 --prior pinwheel --latent-dim 2
    diffvi train vae --dataset digits --objective elbo --k 1 --prior mixture --labelled 100
    diffvi train vae --data photos/ --size 32 --objective elbo --k 1   # your own images
    ```

    `--data` trains on your own images: a folder of PNG/JPEG/TIFF files or a .npy/.npz/.h5
    array, with --labels, --size, --crop and --val-fraction (the Data options).
    """
    train_and_report(given, run)


@train_app.command("ddvae")
@train_command(TrainConfig, defaults=DDVAE_DEFAULTS, exclude=VAE_FIELDS)
def train_ddvae(
    given: dict[str, Any],
    run: RunOptions,
    recipe: Annotated[
        choice(RECIPES) | None,
        typer.Option(
            "--recipe",
            help="bound: DDVI's bound. official: the official code's pipeline, two stages "
            "(not a bound; docs/methods.md): its first stage (DDIM chain, unconditional, "
            "KL(q(y_T|x) || N(0,I)), Huber sleep) for the first half of the budget "
            "(--max-epochs or --max-steps; officially 100 + 100 epochs), then its second "
            f"stage (a new x-conditional chain of T = {STAGE2_DEFAULTS['diffusion_steps']} "
            "with a context network, -log p_KDE(z), a wake Huber loss, "
            f"{STAGE2_DEFAULTS['sleep_steps']} sleep optimiser steps per batch) with the "
            "decoder frozen for its first 30% (officially 30 of 100 epochs). "
            "official-stage1: the first stage alone. The official recipes default to "
            f"--beta-reg {OFFICIAL_KL_WEIGHT:g} and --beta-sleep {OFFICIAL_SLEEP_WEIGHT:g} "
            "(its weights per image), --unconditional, --warmup-steps "
            f"{OFFICIAL_DEFAULTS['warmup_steps']}.",
            show_default="bound",
        ),
    ] = None,
    official: Annotated[
        bool,
        typer.Option(
            "--official",
            help="The same as --recipe official-stage1 (the official code's first stage alone).",
        ),
    ] = False,
) -> None:
    """Train a DD-VAE: a VAE whose posterior is a diffusion model, with the DDVI objective
    (Piriyakulkij, Wang & Kuleshov 2024; see docs/methods.md), or with the official code's
    recipe (--recipe official).

    The run folder is that of `train vae` (default: runs/DATASET-ddvae-PRIOR, with -official,
    -official-stage1 and -labelledN where they apply); the logged bound is DDVI's auxiliary
    ELBO (β_reg = 1). Then `diffvi embed RUN --out DIR` writes the 2-D latents, their plot, the
    kNN accuracy and the latent NLL. The MLPs default to 256,256 on the 8x8 digits.

    **Examples**

    ```
    diffvi train ddvae --dataset mnist --prior pinwheel --max-epochs 50
    diffvi train ddvae --dataset digits --prior swiss-roll --diffusion-steps 5 --run-dir runs/dd
    diffvi train ddvae --dataset digits --prior standard-normal --latent-dim 8 --unconditional
    diffvi train ddvae --run-dir runs/dd --resume --max-epochs 100
    diffvi train ddvae --dataset mnist --prior pinwheel --labelled 1000
    diffvi train ddvae --dataset mnist --prior pinwheel --recipe official --max-epochs 30
    diffvi train ddvae --data photos/ --size 32 --prior standard-normal --latent-dim 8
    ```
    """
    if official:
        if recipe not in (None, "official-stage1"):
            raise ValueError(
                f"--official is --recipe official-stage1; it cannot go with --recipe {recipe}"
            )
        recipe = "official-stage1"
    defaults = dict(DDVAE_DEFAULTS)
    if recipe == "bound":
        given["objective"] = "ddvi"
    elif recipe is not None:  # the official recipes
        defaults.update(OFFICIAL_DEFAULTS)
        given["objective"] = "ddvi-official"
        if recipe == "official" and not run.resume:  # a resumed run keeps its saved stage2
            given["stage2"] = given["stage2"] or {}
    if given["stage2"] is not None and recipe != "official" and not run.resume:
        raise ValueError("--stage2-option sets the official second stage: add --recipe official")
    defaults["smooth_prior"] = (given["prior"] or defaults["prior"]) in PRIORS_2D
    if given["data"] is not None:  # the user's own images replace the default data set
        del defaults["dataset"]
    dataset = given["dataset"] or defaults.get("dataset", "")
    defaults["hidden"] = DDVAE_HIDDEN_SMALL.get(dataset, defaults["hidden"])
    train_and_report(given, run, defaults, _ddvae_run_name)
