"""``diffvi train …``: one sub-command per model family (``vae``, ``ddvae`` here; ``diffusion``,
``cvdm``, ``sbn``, ``vaedgp`` in their modules). Every sub-command resolves its config and trains
through :func:`~diffvi.cli.common.run_training`."""

from pathlib import Path
from typing import Annotated, Any

import typer

from diffvi.cli import choices
from diffvi.cli.common import (
    AcceleratorOpt,
    ConfigFileOpt,
    DevicesOpt,
    FlushDenormalOpt,
    LogEveryOpt,
    MaxEpochsOpt,
    MaxMinutesOpt,
    MaxStepsOpt,
    NumNodesOpt,
    PrecisionOpt,
    ProgressOpt,
    ResumeOpt,
    SeedOpt,
    StrategyOpt,
    ThreadsOpt,
    batch_size_opt,
    check_dataset,
    dataset_opt,
    lr_opt,
    parse_sizes,
    report_errors,
    run_dir_opt,
    run_training,
)
from diffvi.objectives.ddvi import OFFICIAL_KL_WEIGHT, OFFICIAL_SLEEP_WEIGHT
from diffvi.training.config import PRIORS_2D

train_app = typer.Typer(
    help="Train a model; one sub-command per model family.",
    no_args_is_help=True,
)

_MODEL = "Model"
_OPTIM = "Optimisation"


def _vae_run_name(config) -> str:
    posterior = "" if config.posterior == "gaussian" else f"{config.posterior}-"
    return f"{config.dataset}-{posterior}{config.objective}-k{config.k}"


ObjectiveOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="NAME=VALUE",
        help="An option of the objective that no other flag sets (its constructor keyword; "
        "VALUE is read as JSON, else as text); repeat for several.",
    ),
]


def parse_options(pairs: list[str] | None) -> dict[str, Any] | None:
    """``NAME=VALUE`` pairs as a dict (VALUE parsed as JSON where it is JSON, else text)."""
    if not pairs:
        return None
    import json

    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--objective-option takes NAME=VALUE, got {pair!r}")
        try:
            options[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            options[name.strip()] = text
    return options


def _parse_hidden(hidden: list[str] | None) -> list[list[int]] | None:
    return [parse_sizes(spec, "--hidden") for spec in hidden] if hidden else None


# -- options shared by the sub-commands -------------------------------------------------------

_SEMI = "Semi-supervised"
LabelledOpt = Annotated[
    int | None,
    typer.Option(
        "--labelled",
        min=0,
        show_default="0 = unsupervised",
        rich_help_panel=_SEMI,
        help="Train semi-supervised with exactly N labelled training images (balanced over "
        "classes), the rest unlabelled. Needs a partitioned prior (pinwheel, swiss-roll, "
        "square, mixture) and objective elbo or ddvi.",
    ),
]
LabelledBatchOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        show_default="100",
        rich_help_panel=_SEMI,
        help="Labelled images added to every batch (with --labelled).",
    ),
]
LabelWeightOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        show_default="1",
        rich_help_panel=_SEMI,
        help="Weight of the label term (log p(l|z), or −KL(q(l|x) ‖ p(l|z)) when unlabelled).",
    ),
]
ClassifierWeightOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        show_default="1",
        rich_help_panel=_SEMI,
        help="Weight of the label classifier's cross-entropy on labelled images.",
    ),
]


def latent_dim_opt(default: str, help: str) -> Any:
    return Annotated[
        list[int] | None,
        typer.Option(min=1, show_default=default, rich_help_panel=_MODEL, help=help),
    ]


def hidden_opt(default: str, help: str) -> Any:
    return Annotated[
        list[str] | None, typer.Option(show_default=default, rich_help_panel=_MODEL, help=help)
    ]


def activation_opt(default: str) -> Any:
    return Annotated[
        choices.Activation | None,
        typer.Option(show_default=default, rich_help_panel=_MODEL, help="MLP activation."),
    ]


def likelihood_opt(default: str) -> Any:
    return Annotated[
        choices.Likelihood | None,
        typer.Option(
            help="Observation model p(x|z).", show_default=default, rich_help_panel=_MODEL
        ),
    ]


def prior_opt(default: str) -> Any:
    return Annotated[
        choices.Prior | None,
        typer.Option(
            help="Prior p(z); pinwheel, swiss-roll and square are 2-D (--latent-dim 2).",
            show_default=default,
            rich_help_panel=_MODEL,
        ),
    ]


def smooth_prior_opt(default: str) -> Any:
    return Annotated[
        bool | None,
        typer.Option(
            "--smooth-prior/--exact-prior",
            help="Score a 2-D prior with the kernel-smoothed density of the official DDVI code "
            "(bandwidths 0.005-0.05) instead of its exact, very rugged, density.",
            show_default=default,
            rich_help_panel=_MODEL,
        ),
    ]


def adam_opt(default: str) -> Any:
    return Annotated[
        choices.Adam | None,
        typer.Option(
            show_default=default,
            rich_help_panel=_OPTIM,
            help="Adam betas/eps preset: IWAE paper, IWAE code, or PyTorch's.",
        ),
    ]


def schedule_opt(default: str) -> Any:
    return Annotated[
        choices.Schedule | None,
        typer.Option(
            show_default=default,
            rich_help_panel=_OPTIM,
            help="Learning-rate schedule; iwae = 3^i epochs at lr·10^(-i/7).",
        ),
    ]


def _value(choice: Any) -> Any:
    """An enum option's string value (``None`` stays ``None``)."""
    return choice.value if choice is not None else None


def train_and_report(
    given: dict[str, Any],
    run_dir: Path | None,
    resume: bool,
    hardware: dict[str, Any],
    config_file: Path | None,
    defaults: dict[str, Any] | None = None,
    run_name=_vae_run_name,
) -> None:
    """Train a VAE-family run (:func:`~diffvi.cli.common.run_training`) and print a summary."""
    if given.get("dataset") is not None:
        check_dataset(given["dataset"])
    given = {**given, "hidden": _parse_hidden(given.get("hidden"))}
    if given.get("latent_dims"):
        given["latent_dims"] = list(given["latent_dims"])
    result = run_training("vae", given, run_dir, resume, hardware, config_file, defaults, run_name)
    if result is None:
        return
    config, run_dir, meta = result
    summary = [f"Run: {run_dir}  (epoch {meta['epochs']}, step {meta['steps']})"]
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
    if config.posterior == "diffusion":
        summary.append(f"Next: diffvi embed {run_dir} --out {run_dir / 'embedding'}")
    else:
        summary.append(f"Next: diffvi evaluate {run_dir}")
    typer.echo("\n".join(summary))


@train_app.command("vae")
@report_errors
def train_vae(
    dataset: dataset_opt("mnist-dynamic") = None,
    objective: Annotated[
        choices.Objective | None,
        typer.Option(
            help="Training objective (aae: adversarial autoencoder; ddvi: use `train ddvae`).",
            show_default="iwae",
        ),
    ] = None,
    objective_option: ObjectiveOptionOpt = None,
    posterior: Annotated[
        choices.VAEPosterior | None,
        typer.Option(
            help="Posterior q(z|x): Gaussian, or an inverse autoregressive flow (one layer).",
            show_default="gaussian",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    iaf_flows: Annotated[
        int | None,
        typer.Option(
            min=1, show_default="4", rich_help_panel=_MODEL, help="IAF steps (--posterior iaf)."
        ),
    ] = None,
    made_hidden: Annotated[
        str | None,
        typer.Option(
            show_default="128,128,128",
            rich_help_panel=_MODEL,
            help="Hidden sizes of each IAF step's MADE, e.g. 64,64.",
        ),
    ] = None,
    adversarial_weight: Annotated[
        float | None,
        typer.Option(min=0.0, show_default="1", help="AAE: weight λ of the adversarial term."),
    ] = None,
    deterministic_encoder: Annotated[
        bool | None,
        typer.Option(
            "--deterministic-encoder/--stochastic-encoder",
            show_default="stochastic",
            help="AAE: encode with the Gaussian posterior's mean.",
        ),
    ] = None,
    discriminator_lr: Annotated[
        float | None,
        typer.Option(
            min=1e-12, show_default="--lr", rich_help_panel=_OPTIM, help="AAE: discriminator lr."
        ),
    ] = None,
    prior: prior_opt("standard-normal") = None,
    smooth_prior: smooth_prior_opt("exact-prior") = None,
    labelled: LabelledOpt = None,
    labelled_batch: LabelledBatchOpt = None,
    label_weight: LabelWeightOpt = None,
    classifier_weight: ClassifierWeightOpt = None,
    k: Annotated[
        int | None,
        typer.Option(
            "--k",
            "-k",
            min=1,
            show_default="50",
            help="Samples per data point: IWAE's k, or the ELBO's sample count.",
        ),
    ] = None,
    estimator: Annotated[
        choices.Estimator | None,
        typer.Option(help="IWAE gradient estimator for q's parameters.", show_default="standard"),
    ] = None,
    analytic_kl: Annotated[
        bool | None,
        typer.Option(
            "--analytic-kl/--sampled-kl",
            show_default="sampled",
            help="ELBO only: closed-form KL (one latent layer).",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    architecture: Annotated[
        choices.Architecture | None,
        typer.Option(help="Network preset.", show_default="iwae-1", rich_help_panel=_MODEL),
    ] = None,
    latent_dim: latent_dim_opt(
        "the architecture's", "Latent size; repeat for several stochastic layers, bottom first."
    ) = None,
    hidden: hidden_opt(
        "the architecture's",
        "Hidden sizes of one stochastic layer's MLPs, e.g. 256,256; repeat per layer.",
    ) = None,
    activation: activation_opt("tanh") = None,
    likelihood: likelihood_opt("bernoulli") = None,
    batch_size: batch_size_opt("20") = None,
    lr: lr_opt("1e-3") = None,
    adam: adam_opt("iwae-paper") = None,
    schedule: schedule_opt("constant") = None,
    max_epochs: MaxEpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    max_minutes: MaxMinutesOpt = None,
    config: ConfigFileOpt = None,
    run_dir: run_dir_opt("runs/DATASET-OBJECTIVE-kK") = None,
    resume: ResumeOpt = False,
    seed: SeedOpt = None,
    precision: PrecisionOpt = None,
    accelerator: AcceleratorOpt = "auto",
    devices: DevicesOpt = "auto",
    num_nodes: NumNodesOpt = 1,
    strategy: StrategyOpt = "auto",
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
    progress: ProgressOpt = True,
    log_every_n_steps: LogEveryOpt = 50,
) -> None:
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
    ```
    """
    explicit: dict[str, Any] = {
        "dataset": dataset,
        "objective": _value(objective),
        "objective_options": parse_options(objective_option),
        "posterior": _value(posterior),
        "iaf_flows": iaf_flows,
        "made_hidden": parse_sizes(made_hidden, "--made-hidden") if made_hidden else None,
        "adversarial_weight": adversarial_weight,
        "deterministic_encoder": deterministic_encoder,
        "discriminator_lr": discriminator_lr,
        "prior": _value(prior),
        "smooth_prior": smooth_prior,
        "num_labelled": labelled,
        "labelled_batch": labelled_batch,
        "label_weight": label_weight,
        "classifier_weight": classifier_weight,
        "k": k,
        "estimator": _value(estimator),
        "analytic_kl": analytic_kl,
        "architecture": _value(architecture),
        "latent_dims": latent_dim,
        "hidden": hidden,
        "activation": _value(activation),
        "likelihood": _value(likelihood),
        "batch_size": batch_size,
        "lr": lr,
        "adam": _value(adam),
        "schedule": _value(schedule),
        "max_epochs": max_epochs,
        "max_steps": max_steps,
        "max_minutes": max_minutes,
        "seed": seed,
        "precision": precision,
    }
    hardware = dict(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        flush_denormal=flush_denormal, threads=threads, progress=progress,
        log_every_n_steps=log_every_n_steps,
    )  # fmt: skip
    train_and_report(explicit, run_dir, resume, hardware, config)


# DD-VAE defaults for a new run (a 2-D latent, as in DDVI's MNIST experiments). The MLPs are
# 512-512 for the 28x28 data sets and 256-256 for the 8x8 digits (DDVAE_HIDDEN_SMALL).
# β_reg = 1 (the bound) on the kernel-smoothed 2-D prior (added for 2-D priors in train_ddvae)
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
# `train ddvae --official`: the official code's weights in per-image units and its first stage.
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "beta_reg": OFFICIAL_KL_WEIGHT,
    "beta_sleep": OFFICIAL_SLEEP_WEIGHT,
    "warmup_steps": 500,
}


def _ddvae_run_name(config) -> str:
    return f"{config.dataset}-ddvae-{config.prior}"


@train_app.command("ddvae")
@report_errors
def train_ddvae(
    dataset: dataset_opt("mnist") = None,
    prior: prior_opt("pinwheel") = None,
    smooth_prior: smooth_prior_opt("smooth-prior for 2-D priors") = None,
    labelled: LabelledOpt = None,
    labelled_batch: LabelledBatchOpt = None,
    label_weight: LabelWeightOpt = None,
    classifier_weight: ClassifierWeightOpt = None,
    objective_option: ObjectiveOptionOpt = None,
    diffusion_steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default="20",
            rich_help_panel=_MODEL,
            help="T, the reverse-diffusion steps of the posterior.",
        ),
    ] = None,  # fmt: skip
    beta_end: Annotated[
        float | None,
        typer.Option(
            min=1e-6,
            max=0.999,
            show_default="0.02",
            rich_help_panel=_MODEL,
            help="Last β of the linear noise schedule (from 1e-4).",
        ),
    ] = None,  # fmt: skip
    beta_reg: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            show_default="1",
            help="Weight of the regulariser L_reg (1 = the bound).",
        ),
    ] = None,
    beta_sleep: Annotated[
        float | None,
        typer.Option(min=0.0, show_default="1", help="Weight of the sleep (denoising) loss."),
    ] = None,
    sleep_steps: Annotated[
        int | None,
        typer.Option(min=1, show_default="1", help="Fantasy batches averaged per step."),
    ] = None,
    conditional: Annotated[
        bool | None,
        typer.Option(
            "--conditional/--unconditional",
            show_default="conditional",
            rich_help_panel=_MODEL,
            help="Whether the denoiser sees x (unconditional: latent wake-sleep).",
        ),
    ] = None,
    official: Annotated[
        bool,
        typer.Option(
            "--official",
            help="Train with the official code's objective (DDIM chain, KL(q(y_T|x) || N(0,I)), "
            "Huber sleep; not a bound; docs/methods.md); defaults then --beta-reg 7.84 "
            "(its KL weight per image), --beta-sleep 784, --warmup-steps 500.",
        ),
    ] = False,
    wake_updates_chain: Annotated[
        bool | None,
        typer.Option(
            "--wake-updates-chain/--sleep-trains-chain",
            show_default="wake-updates-chain",
            help="Whether the wake terms also train the reverse chain (denoiser, context); "
            "--sleep-trains-chain leaves it to the sleep term.",
        ),
    ] = None,
    warmup_steps: Annotated[
        int | None,
        typer.Option(
            min=0,
            show_default="500",
            help="Pretrain the reverse chain on the prior for this many steps first "
            "(the official code's first stage).",
        ),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("--k", "-k", min=1, show_default="1", help="Chain draws per data point."),
    ] = None,
    latent_dim: latent_dim_opt("2", "Latent size.") = None,
    hidden: hidden_opt(
        "512,512 (256,256 on digits)",
        "Hidden sizes of the decoder, encoder, context and denoiser MLPs, e.g. 256,256.",
    ) = None,
    activation: activation_opt("silu") = None,
    likelihood: likelihood_opt("bernoulli") = None,
    batch_size: batch_size_opt("128") = None,
    lr: lr_opt("1e-3") = None,
    adam: adam_opt("torch") = None,
    schedule: schedule_opt("constant") = None,
    max_epochs: MaxEpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    max_minutes: MaxMinutesOpt = None,
    config: ConfigFileOpt = None,
    run_dir: run_dir_opt("runs/DATASET-ddvae-PRIOR") = None,
    resume: ResumeOpt = False,
    seed: SeedOpt = None,
    precision: PrecisionOpt = None,
    accelerator: AcceleratorOpt = "auto",
    devices: DevicesOpt = "auto",
    num_nodes: NumNodesOpt = 1,
    strategy: StrategyOpt = "auto",
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
    progress: ProgressOpt = True,
    log_every_n_steps: LogEveryOpt = 50,
) -> None:
    """Train a DD-VAE: a VAE whose posterior is a diffusion model, with the DDVI objective
    (Piriyakulkij, Wang & Kuleshov 2024; see docs/methods.md).

    The run folder is that of `train vae`; the logged bound is DDVI's auxiliary ELBO
    (β_reg = 1). Then `diffvi embed RUN --out DIR` writes the 2-D latents, their plot, the
    kNN accuracy and the latent NLL.

    **Examples**

    ```
    diffvi train ddvae --dataset mnist --prior pinwheel --max-epochs 50
    diffvi train ddvae --dataset digits --prior swiss-roll --diffusion-steps 5 --run-dir runs/dd
    diffvi train ddvae --dataset digits --prior standard-normal --latent-dim 8 --unconditional
    diffvi train ddvae --run-dir runs/dd --resume --max-epochs 100
    diffvi train ddvae --dataset mnist --prior pinwheel --labelled 1000
    ```
    """
    explicit: dict[str, Any] = {
        "dataset": dataset,
        "prior": _value(prior),
        "smooth_prior": smooth_prior,
        "objective": "ddvi-official" if official else None,
        "objective_options": parse_options(objective_option),
        "num_labelled": labelled,
        "labelled_batch": labelled_batch,
        "label_weight": label_weight,
        "classifier_weight": classifier_weight,
        "diffusion_steps": diffusion_steps,
        "beta_end": beta_end,
        "beta_reg": beta_reg,
        "beta_sleep": beta_sleep,
        "sleep_steps": sleep_steps,
        "conditional": conditional,
        "wake_updates_chain": wake_updates_chain,
        "warmup_steps": warmup_steps,
        "k": k,
        "latent_dims": latent_dim,
        "hidden": hidden,
        "activation": _value(activation),
        "likelihood": _value(likelihood),
        "batch_size": batch_size,
        "lr": lr,
        "adam": _value(adam),
        "schedule": _value(schedule),
        "max_epochs": max_epochs,
        "max_steps": max_steps,
        "max_minutes": max_minutes,
        "seed": seed,
        "precision": precision,
    }
    defaults = dict(DDVAE_DEFAULTS)
    defaults["smooth_prior"] = (_value(prior) or defaults["prior"]) in PRIORS_2D
    if official:
        defaults.update(OFFICIAL_DEFAULTS)
    defaults["hidden"] = DDVAE_HIDDEN_SMALL.get(dataset or defaults["dataset"], defaults["hidden"])
    hardware = dict(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        flush_denormal=flush_denormal, threads=threads, progress=progress,
        log_every_n_steps=log_every_n_steps,
    )  # fmt: skip
    train_and_report(explicit, run_dir, resume, hardware, config, defaults, _ddvae_run_name)
