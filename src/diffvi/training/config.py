"""Plain-data configuration of a training run: what a checkpoint stores to rebuild the run.

One dataclass per model family (:class:`TrainConfig` for the VAE family, :class:`DiffusionConfig`,
:class:`CVDMConfig`, :class:`SBNConfig`, :class:`VAEDGPConfig`), all deriving from
:class:`RunConfig`. They import no Lightning, so the command line builds its options from them
quickly: a field made with :func:`option` is a ``diffvi train`` option, with its help, name,
choices (the registry the config validates against) and default taken from the field.
"""

import copy
import inspect
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Self

import torch

from diffvi.data.paired import PAIRED_TASKS, paired_task
from diffvi.data.registry import available_datasets
from diffvi.diffusion.model import LOSSES
from diffvi.diffusion.schedules import SCHEDULES as NOISE_SCHEDULES
from diffvi.distributions.likelihoods import LIKELIHOODS
from diffvi.distributions.priors import PRIORS
from diffvi.models.vae import ARCHITECTURES
from diffvi.nn.activations import ACTIVATIONS
from diffvi.objectives import NVIL, OBJECTIVES, RWS, SCORE_FUNCTION_ESTIMATORS, VIMCO
from diffvi.objectives.iwae import ESTIMATORS
from diffvi.posteriors.bernoulli import check_layers

# Adam settings. The IWAE paper (§5) reports β1 = 0.9, β2 = 0.999, ε = 1e-4; the official code
# (yburda/iwae) used β1 = 0.99 with ε = 1e-4. "torch" is PyTorch's default.
ADAM_PRESETS: dict[str, dict[str, Any]] = {
    "torch": {"betas": (0.9, 0.999), "eps": 1e-8},
    "iwae-paper": {"betas": (0.9, 0.999), "eps": 1e-4},
    "iwae-code": {"betas": (0.99, 0.999), "eps": 1e-4},
}
SCHEDULES = ("constant", "iwae")
POSTERIORS = ("gaussian", "diffusion", "iaf")
# MADE hidden sizes of each IAF step when ``made_hidden`` is unset.
DEFAULT_MADE_HIDDEN = [128, 128, 128]
# Priors that exist in 2-D only (``diffvi.distributions.toy2d.build_prior``).
PRIORS_2D = ("pinwheel", "swiss-roll", "square")
# Priors with labelled partitions p(z) = Σ_l p(l) p(z|l), which semi-supervised runs need.
PARTITIONED_PRIORS = ("pinwheel", "swiss-roll", "square", "mixture")
# Lightning's precision settings that every family accepts.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
CVDM_SCHEDULES = ("learned", "linear", "cosine", "regression")
SBN_ESTIMATORS = tuple(SCORE_FUNCTION_ESTIMATORS)
VIMCO_MEANS = ("geometric", "arithmetic")
KERNELS = ("rbf", "linear")
# Latent widths (bottom, next to the data, first) that ``train vaedgp --layers L`` gives.
DEFAULT_LATENT_DIMS = {1: [5], 2: [10, 5], 3: [20, 10, 5]}

# Sections of ``diffvi train … --help``.
MODEL, OPTIM, BUDGET, DATA = "Model", "Optimisation", "Budget", "Data"
SEMI, ESTIMATOR = "Semi-supervised", "Estimator"
HARDWARE = "Hardware (passed to Lightning's Trainer)"
CLI_KEYS = ("flag", "panel", "choices", "min", "max")


def option(default: Any = MISSING, help: str = "", **cli: Any) -> Any:
    """A config field that the ``diffvi train`` commands offer as a command-line option.

    ``help`` is its help text; ``cli`` may set ``flag`` (its name on the command line, e.g.
    ``"--val-every"`` or ``("--k", "-k")``, default ``--field-name``; a bool's may read
    ``"--on/--off"``), ``panel`` (its section of ``--help``), ``choices`` (the valid values: a
    registry, whose keys they are) and ``min`` / ``max``. A list or dict default is copied for
    each instance. A field that only overrides an option's default (``max_steps: int = 5000``)
    stays that option.
    """
    unknown = set(cli) - set(CLI_KEYS)
    if unknown:
        raise TypeError(f"unknown option settings {sorted(unknown)}; known: {CLI_KEYS}")
    metadata = {"help": help, **cli}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _dataset(default: str) -> Any:
    return option(default, f"Data set: {', '.join(available_datasets())}.")


def _batch_size(default: int) -> Any:
    return option(default, "Examples per training step.", panel=OPTIM, min=1)


def _lr(default: float) -> Any:
    return option(default, "Learning rate.", panel=OPTIM)


def _warmup_steps(default: int) -> Any:
    return option(default, "Steps of linear learning-rate warm-up.", panel=OPTIM, min=0)


class JSONConfig:
    """To and from plain dicts, for the dataclass configs that runs save as ``config.json``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from a dict, rejecting unknown keys (so a typo is an error, not a no-op)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known keys: {sorted(known)}")
        return cls(**values)


@dataclass
class RunConfig(JSONConfig):
    """What every family's config has: the seed, the budget, validation cadence and numerics.

    Training stops at whichever of ``max_epochs``, ``max_steps`` (optimiser steps in total,
    counted across resumes) and ``max_minutes`` (wall clock of this session) comes first; ``-1``
    / ``None`` is no limit, and at least one must be set. ``val_every_n_steps`` validates and
    checkpoints every N steps (``None``: at the end of every epoch). ``grad_clip`` clips the
    gradient norm (0: off), ``ema_decay`` keeps an exponential moving average of the weights
    that validation scores and export saves (``None``: off; warmed up as
    min(decay, (1 + n) / (10 + n)) after n updates), ``precision`` is Lightning's.
    """

    seed: int = option(0, "Seed of weights, noise and data order.")
    max_epochs: int = option(-1, "-1: no limit.", panel=BUDGET, min=-1)
    max_steps: int = option(
        -1, "Optimiser steps in total (across resumes); -1: no limit.", panel=BUDGET, min=-1
    )
    max_minutes: float | None = option(
        None, "Wall-clock minutes of this session (default: no limit).", panel=BUDGET, min=0
    )
    val_every_n_steps: int | None = option(
        None,
        "Validate and checkpoint every N steps (default: at the end of every epoch).",
        flag="--val-every",
        min=1,
    )
    grad_clip: float = option(0.0, "Clip the gradient norm at this value (0: off).", panel=OPTIM)
    ema_decay: float | None = option(
        None,
        "Decay of the moving average of the weights that validation scores and export saves "
        "(default: none).",
        panel=OPTIM,
        min=0,
        max=0.99999,
    )
    precision: str = option(
        "32-true", "Lightning's precision; 16-mixed needs CUDA.", panel=HARDWARE, choices=PRECISIONS
    )
    flush_denormal: bool = True

    def check_run(self) -> None:
        """Raise ``ValueError`` on a bad budget, cadence or precision."""
        if self.max_epochs < 1 and self.max_steps < 1 and self.max_minutes is None:
            raise ValueError(
                "no training budget: set max_epochs, max_steps or max_minutes, got "
                f"{self.max_epochs}, {self.max_steps}, {self.max_minutes}"
            )
        if self.max_epochs == 0 or self.max_epochs < -1 or self.max_steps < -1:
            raise ValueError(
                f"max_epochs and max_steps must be >= 1 or -1 (no limit), got "
                f"{self.max_epochs}, {self.max_steps}"
            )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 (or None), got {self.max_minutes}")
        if self.val_every_n_steps is not None and self.val_every_n_steps < 1:
            raise ValueError(f"val_every_n_steps must be >= 1, got {self.val_every_n_steps}")
        if not self.grad_clip >= 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) or None, got {self.ema_decay}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class TrainConfig(RunConfig):
    """Everything that defines a VAE/IWAE training run (all fields are JSON-serialisable).

    ``objective`` is any name registered in :data:`diffvi.objectives.OBJECTIVES`; the objective
    reads the config fields its class names (``Objective.config_fields``) and its other
    constructor keywords from ``objective_options``. ``k`` is the number of samples per data
    point: IWAE's k, or the ELBO's sample count.
    ``likelihood_scale`` fixes the σ of a Gaussian likelihood (``None``: learned per pixel);
    ``likelihood_min_scale`` floors a learned σ (needed where pixels never vary, e.g. MNIST).
    ``schedule="iwae"`` is the IWAE paper's: 3^i epochs at lr·10^(-i/7), i = 0…7 (3280 epochs),
    cut at ``max_epochs``.

    DD-VAE (DDVI, Piriyakulkij et al. 2024): ``posterior="diffusion"`` with ``objective="ddvi"``
    (one needs the other). ``k`` is then DDVI's number of chain draws per data point; the
    diffusion posterior's encoder, context and denoiser MLPs use ``hidden[0]`` and
    ``activation``; ``diffusion_steps`` (T), ``beta_end`` (linear β schedule from 1e-4),
    ``beta_reg``, ``beta_sleep``, ``sleep_steps`` and ``conditional`` are those of
    :class:`~diffvi.objectives.DDVI` and :func:`~diffvi.posteriors.build_diffusion_posterior`.
    ``prior`` is any ``build_prior`` name over the top latent layer (``mixture``: a learnable
    mixture of ``mixture_components`` Gaussians); the 2-D ones
    (``PRIORS_2D``) need ``latent_dims == [2]``; ``smooth_prior`` replaces their exact density by
    the kernel-smoothed one the official DDVI code scores with
    (:class:`~diffvi.distributions.SmoothedPrior`). ``wake_updates_chain=False`` trains the
    reverse chain by the sleep term only; ``warmup_steps`` pretrains it on the prior before the
    first step (:class:`~diffvi.training.callbacks.PosteriorWarmup`). ``objective=
    "ddvi-official"`` trains the same posterior with the official code's objective
    (:class:`~diffvi.objectives.OfficialDDVI`; not a bound): ``beta_reg`` is then its weight on
    KL(q(y_T|x) ‖ N(0, I)) and ``beta_sleep`` its sleep weight, both per image.

    IAF (Kingma et al. 2016): ``posterior="iaf"`` (one latent layer; ELBO, IWAE or AAE) with
    ``iaf_flows`` steps of MADE ``made_hidden`` (default ``DEFAULT_MADE_HIDDEN``); its encoder
    MLP uses ``hidden[0]``. See :func:`~diffvi.posteriors.build_iaf_posterior`.

    AAE (Makhzani et al. 2016): ``objective="aae"`` with a Gaussian or IAF posterior, one latent
    layer; ``adversarial_weight`` is λ, ``deterministic_encoder`` encodes with q's mean (Gaussian
    posterior only), ``k`` is the number of draws per data point, and the discriminator gets its
    own Adam at ``discriminator_lr`` (default ``lr``). See :class:`~diffvi.objectives.AAE`.

    Semi-supervised (M2 of Kingma et al. 2014, DDVI's semi-supervised DD-VAE):
    ``num_labelled > 0`` keeps the labels of exactly that many training images (balanced over
    classes, chosen by ``seed``; a multiple of the number of classes) and hides the others;
    every batch gets ``labelled_batch`` labelled images on top of its ``batch_size``. The
    objective (``elbo`` or ``ddvi``; not ``iwae`` or ``aae``) is wrapped in
    :class:`~diffvi.objectives.SemiSupervised` with ``label_weight`` and ``classifier_weight``,
    a classifier q(l|x) (an MLP of ``hidden[0]`` and ``activation``) is trained beside the
    model, and the prior must be partitioned (``PARTITIONED_PRIORS``), one partition per class.
    ``num_labelled = 0`` (the default) is unsupervised training.
    """

    dataset: str = _dataset("mnist-dynamic")
    architecture: str = option("iwae-1", "Network preset.", panel=MODEL, choices=ARCHITECTURES)
    likelihood: str = option(
        "bernoulli", "Observation model p(x|z).", panel=MODEL, choices=LIKELIHOODS
    )
    likelihood_scale: float | None = None
    likelihood_min_scale: float = 0.0
    latent_dims: list[int] | None = option(
        None,
        "Latent size; repeat for several stochastic layers, bottom first (default: the "
        "architecture's).",
        flag="--latent-dim",
        panel=MODEL,
    )
    hidden: list[list[int]] | None = option(
        None,
        "Hidden sizes of one stochastic layer's MLPs, e.g. 256,256; repeat per layer (DD-VAE: "
        "of the decoder, encoder, context and denoiser MLPs; default: the architecture's).",
        panel=MODEL,
    )
    activation: str = option("tanh", "MLP activation.", panel=MODEL, choices=ACTIVATIONS)
    objective: str = option(
        "iwae",
        "Training objective (aae: adversarial autoencoder; ddvi: use `train ddvae`).",
        choices=OBJECTIVES,
    )
    objective_options: dict[str, Any] = option(
        {},
        "An option of the objective that no other flag sets (its constructor keyword; VALUE is "
        "read as JSON, else as text); repeat for several.",
        flag="--objective-option",
    )
    k: int = option(
        50,
        "Samples per data point: IWAE's k, the ELBO's sample count, DDVI's chain draws.",
        flag=("--k", "-k"),
        min=1,
    )
    estimator: str = option(
        "standard", "IWAE gradient estimator for q's parameters.", choices=ESTIMATORS
    )
    analytic_kl: bool = option(
        False,
        "ELBO only: closed-form KL (one latent layer).",
        flag="--analytic-kl/--sampled-kl",
        panel=MODEL,
    )
    batch_size: int = _batch_size(20)
    lr: float = _lr(1e-3)
    adam: str = option(
        "iwae-paper",
        "Adam betas/eps preset: IWAE paper, IWAE code, or PyTorch's.",
        panel=OPTIM,
        choices=ADAM_PRESETS,
    )
    schedule: str = option(
        "constant",
        "Learning-rate schedule; iwae = 3^i epochs at lr·10^(-i/7).",
        panel=OPTIM,
        choices=SCHEDULES,
    )
    max_epochs: int = 10
    val_k: int = 50
    val_size: int = 1000
    event_shape: list[int] = field(default_factory=list)
    posterior: str = option(
        "gaussian",
        "Posterior q(z|x): Gaussian, an inverse autoregressive flow, or a diffusion model "
        "(`train ddvae`).",
        panel=MODEL,
        choices=POSTERIORS,
    )
    prior: str = option(
        "standard-normal",
        f"Prior p(z); {', '.join(PRIORS_2D)} are 2-D (--latent-dim 2).",
        panel=MODEL,
        choices=PRIORS,
    )
    mixture_components: int = 10
    diffusion_steps: int = option(
        20, "T, the reverse-diffusion steps of the posterior.", panel=MODEL, min=1
    )
    beta_end: float = option(
        0.02, "Last β of the linear noise schedule (from 1e-4).", panel=MODEL, min=1e-6, max=0.999
    )
    beta_reg: float = option(1.0, "Weight of the regulariser L_reg (1 = the bound).", min=0)
    beta_sleep: float = option(1.0, "Weight of the sleep (denoising) loss.", min=0)
    sleep_steps: int = option(1, "Fantasy batches averaged per step.", min=1)
    conditional: bool = option(
        True,
        "Whether the denoiser sees x (unconditional: latent wake-sleep).",
        flag="--conditional/--unconditional",
        panel=MODEL,
    )
    wake_updates_chain: bool = option(
        True,
        "Whether the wake terms also train the reverse chain (denoiser, context); "
        "--sleep-trains-chain leaves it to the sleep term.",
        flag="--wake-updates-chain/--sleep-trains-chain",
    )
    warmup_steps: int = option(
        0,
        "Pretrain the reverse chain on the prior for this many steps first (the official "
        "code's first stage).",
        min=0,
    )
    smooth_prior: bool = option(
        False,
        "Score a 2-D prior with the kernel-smoothed density of the official DDVI code "
        "(bandwidths 0.005-0.05) instead of its exact, very rugged, density.",
        flag="--smooth-prior/--exact-prior",
        panel=MODEL,
    )
    iaf_flows: int = option(4, "IAF steps (--posterior iaf).", panel=MODEL, min=1)
    made_hidden: list[int] | None = option(
        None,
        "Hidden sizes of each IAF step's MADE, e.g. 64,64 (default: 128,128,128).",
        panel=MODEL,
    )
    adversarial_weight: float = option(1.0, "AAE: weight λ of the adversarial term.", min=0)
    deterministic_encoder: bool = option(
        False,
        "AAE: encode with the Gaussian posterior's mean.",
        flag="--deterministic-encoder/--stochastic-encoder",
    )
    discriminator_lr: float | None = option(
        None, "AAE: discriminator learning rate (default: --lr).", panel=OPTIM
    )
    num_labelled: int = option(
        0,
        "Train semi-supervised with exactly N labelled training images (balanced over "
        "classes), the rest unlabelled. Needs a partitioned prior "
        f"({', '.join(PARTITIONED_PRIORS)}) and objective elbo or ddvi.",
        flag="--labelled",
        panel=SEMI,
        min=0,
    )
    labelled_batch: int = option(
        100, "Labelled images added to every batch (with --labelled).", panel=SEMI, min=1
    )
    label_weight: float = option(
        1.0,
        "Weight of the label term (log p(l|z), or −KL(q(l|x) ‖ p(l|z)) when unlabelled).",
        panel=SEMI,
        min=0,
    )
    classifier_weight: float = option(
        1.0,
        "Weight of the label classifier's cross-entropy on labelled images.",
        panel=SEMI,
        min=0,
    )

    def __post_init__(self) -> None:
        checks = [
            (self.objective in OBJECTIVES, f"objective must be one of {sorted(OBJECTIVES)}"),
            (self.adam in ADAM_PRESETS, f"adam must be one of {sorted(ADAM_PRESETS)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.k >= 1, "k must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.posterior in POSTERIORS, f"posterior must be one of {POSTERIORS}"),
            (self.diffusion_steps >= 1, "diffusion_steps must be >= 1"),
            (self.mixture_components >= 1, "mixture_components must be >= 1"),
            (
                self.likelihood_scale is None or self.likelihood_scale > 0,
                "likelihood_scale must be None (learned) or > 0",
            ),
            (self.likelihood_min_scale >= 0, "likelihood_min_scale must be >= 0"),
            (0 < self.beta_end < 1, "beta_end must be in (0, 1)"),
            (self.beta_reg >= 0, "beta_reg must be >= 0"),
            (self.beta_sleep >= 0, "beta_sleep must be >= 0"),
            (self.sleep_steps >= 1, "sleep_steps must be >= 1"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.iaf_flows >= 1, "iaf_flows must be >= 1"),
            (
                self.made_hidden is None
                or (len(self.made_hidden) > 0 and min(self.made_hidden) >= 1),
                "made_hidden must be None or a non-empty list of sizes >= 1",
            ),
            (
                0 <= self.adversarial_weight < float("inf"),
                "adversarial_weight must be finite and >= 0",
            ),
            (
                self.discriminator_lr is None or self.discriminator_lr > 0,
                "discriminator_lr must be None or > 0",
            ),
            (self.num_labelled >= 0, "num_labelled must be >= 0"),
            (self.labelled_batch >= 1, "labelled_batch must be >= 1"),
            (self.label_weight >= 0, "label_weight must be >= 0"),
            (self.classifier_weight >= 0, "classifier_weight must be >= 0"),
        ]
        self.check_run()
        for ok, message in checks:
            if not ok:
                field_name = message.split()[0]
                raise ValueError(f"{message}, got {getattr(self, field_name)!r}")
        self._check_objective_options()
        self._check_posterior_and_prior()

    def resolved_latent_dims(self) -> list[int]:
        """``latent_dims``, or the architecture preset's when unset."""
        if self.latent_dims is not None:
            return list(self.latent_dims)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {sorted(ARCHITECTURES)}, got {self.architecture!r}"
            )
        return list(ARCHITECTURES[self.architecture]["latent_dims"])

    def _check_posterior_and_prior(self) -> None:
        if self.warmup_steps and self.posterior != "diffusion":
            raise ValueError(
                f"warmup_steps pretrains a diffusion posterior's reverse chain; got "
                f"warmup_steps={self.warmup_steps} with posterior={self.posterior!r}"
            )
        if OBJECTIVES[self.objective].diffusion_posterior != (self.posterior == "diffusion"):
            raise ValueError(
                "objective 'ddvi' and posterior 'diffusion' go together (DDVI's bound needs the "
                "diffusion posterior's auxiliary chain; ELBO/IWAE train the Gaussian one), got "
                f"objective={self.objective!r} with posterior={self.posterior!r}"
            )
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {sorted(PRIORS)}, got {self.prior!r}")
        dims = self.resolved_latent_dims()
        if self.smooth_prior and self.prior not in PRIORS_2D:
            raise ValueError(
                f"smooth_prior smooths a fixed 2-D prior, one of {PRIORS_2D}; got "
                f"prior={self.prior!r} (which has a smooth density already)"
            )
        if self.prior in PRIORS_2D and dims != [2]:
            raise ValueError(
                f"prior {self.prior!r} is 2-D: it needs latent_dims [2], got {dims} "
                "(pass --latent-dim 2, or choose prior standard-normal or mixture)"
            )
        if self.posterior in ("diffusion", "iaf") and len(dims) != 1:
            raise ValueError(
                f"the {self.posterior} posterior has one latent layer: latent_dims must have one "
                f"entry, got {dims}"
            )
        self._check_aae()
        self._check_semisupervised()

    def _check_semisupervised(self) -> None:
        if self.num_labelled == 0:
            return
        if self.objective not in ("elbo", "ddvi"):
            raise ValueError(
                f"semi-supervised training (num_labelled={self.num_labelled}) adds a per-draw "
                f"label term to the ELBO or DDVI objective; got objective={self.objective!r} "
                "(use elbo or ddvi)"
            )
        if self.prior not in PARTITIONED_PRIORS:
            raise ValueError(
                f"semi-supervised training (num_labelled={self.num_labelled}) needs a prior with "
                f"one partition per class, one of {PARTITIONED_PRIORS}; got prior={self.prior!r}"
            )

    def _check_objective_options(self) -> None:
        """``objective_options`` may set the objective's constructor keywords that no config
        field sets (``Objective.config_fields``)."""
        cls = OBJECTIVES[self.objective]
        free = set(inspect.signature(cls).parameters) - set(cls.config_fields) - {"latent_dim"}
        unknown = set(self.objective_options) - free
        if unknown:
            raise ValueError(
                f"objective_options {sorted(unknown)} are not options of objective "
                f"{self.objective!r}; it takes {sorted(free)} (the others are config fields)"
            )

    def _check_aae(self) -> None:
        if self.objective != "aae":
            if self.deterministic_encoder or self.discriminator_lr is not None:
                raise ValueError(
                    "deterministic_encoder and discriminator_lr are options of objective 'aae', "
                    f"got objective={self.objective!r}"
                )
            return
        if self.posterior not in ("gaussian", "iaf"):
            raise ValueError(
                "objective 'aae' trains a Gaussian or IAF posterior, got "
                f"posterior={self.posterior!r}"
            )
        dims = self.resolved_latent_dims()
        if len(dims) != 1:
            raise ValueError(
                f"objective 'aae' needs one latent layer: latent_dims must have one entry, "
                f"got {dims}"
            )
        if self.deterministic_encoder and self.posterior != "gaussian":
            raise ValueError(
                "deterministic_encoder encodes with the Gaussian posterior's mean; it needs "
                f"posterior 'gaussian', got {self.posterior!r}"
            )


def iwae_lr_factor(epoch: int) -> float:
    """Learning-rate factor of the IWAE schedule at ``epoch`` (0-based): 10^(-i/7) during the
    3^i epochs of stage i (stage 0 = epoch 0, stage 1 = epochs 1–3, …, i = 0…7)."""
    stage, end = 0, 1
    while epoch >= end and stage < 7:
        stage += 1
        end += 3**stage
    return 10 ** (-stage / 7)


def _channel_mults() -> Any:
    return option([1, 2, 2], "UNet width multiplier per level, e.g. 1,2,2.", panel=MODEL)


@dataclass
class DiffusionConfig(RunConfig):
    """Everything that defines a diffusion training run (JSON-serialisable).

    The UNet is ``base_channels · channel_mults`` wide per level with ``num_res_blocks`` blocks
    and attention at the ``attention_resolutions``; ``ema_decay`` is the decay of the exported
    weights' moving average. ``event_shape`` is set from the data set.
    """

    dataset: str = _dataset("mnist")
    schedule: str = option(
        "cosine",
        "Noise schedule γ(t): linear (DDPM), cosine (Nichol & Dhariwal), learned (VDM; needs "
        "--loss vdm).",
        panel=MODEL,
        choices=NOISE_SCHEDULES,
    )
    loss_type: str = option(
        "simple",
        "simple: DDPM's ε-loss; vdm: the VDM continuous-time bound in bits/dim (the default "
        "with --schedule learned).",
        flag="--loss",
        choices=LOSSES,
    )
    base_channels: int = option(32, "UNet width of the first level.", panel=MODEL, min=1)
    channel_mults: list[int] = _channel_mults()
    num_res_blocks: int = option(1, "Blocks per level.", flag="--res-blocks", panel=MODEL, min=1)
    attention_resolutions: list[int] = option(
        [7],
        "Resolutions with self-attention, e.g. 14,7 ('' for none).",
        flag="--attention",
        panel=MODEL,
    )
    dropout: float = option(0.0, "Dropout in the UNet blocks.", panel=MODEL, min=0, max=0.9)
    batch_size: int = _batch_size(64)
    lr: float = _lr(2e-4)
    warmup_steps: int = _warmup_steps(200)
    grad_clip: float = 1.0
    max_steps: int = 5000
    ema_decay: float | None = 0.999
    val_size: int = 1000
    val_every_n_steps: int | None = 1000
    event_shape: list[int] | None = None

    def __post_init__(self) -> None:
        self.check_run()
        if self.schedule not in NOISE_SCHEDULES:
            raise ValueError(
                f"schedule must be one of {sorted(NOISE_SCHEDULES)}, got {self.schedule!r}"
            )
        if self.loss_type not in LOSSES:
            raise ValueError(f"loss_type must be one of {LOSSES}, got {self.loss_type!r}")
        if self.schedule == "learned" and self.loss_type != "vdm":
            raise ValueError("a learned schedule is trained by the VDM bound: use loss_type 'vdm'")
        for name in ("batch_size", "base_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def model_spec(self) -> dict[str, Any]:
        """The spec of :func:`~diffvi.diffusion.pretrained.build_diffusion_model`."""
        if self.event_shape is None:
            raise ValueError("event_shape is set from the data set before the model is built")
        channels, height, _ = self.event_shape
        return {
            "kind": "diffusion",
            "schedule": {"name": self.schedule},
            "denoiser": {
                "name": "unet",
                "in_channels": channels,
                "base_channels": self.base_channels,
                "channel_mults": list(self.channel_mults),
                "num_res_blocks": self.num_res_blocks,
                "attention_resolutions": list(self.attention_resolutions),
                "dropout": self.dropout,
                "image_size": height,
            },
            "loss_type": self.loss_type,
            "image": True,
            "event_shape": list(self.event_shape),
        }


@dataclass
class CVDMConfig(RunConfig):
    """Everything that defines a CVDM training run (JSON-serialisable).

    ``task`` is a :data:`~diffvi.data.paired.PAIRED_TASKS` name built with ``task_options``
    (e.g. ``{"size": 32}`` for ``microscopy-sr``) from ``train_size`` training pairs (``None``:
    the task's default) and ``val_size`` held-out pairs (``valid`` split where the task has one,
    else ``test``), both drawn with ``data_seed``; ``seed`` seeds the weights, noise and batch
    order. The denoiser UNet (and the regression UNet) is ``base_channels · channel_mults``
    wide with attention at ``attention_resolutions``; ``timesteps`` is CVDM's T (boundary times
    of the loss, default sampling steps). Validation every ``val_every_n_steps`` steps scores
    the EMA weights: the loss on the held-out pairs, and the image MSE / PSNR of one sample
    (``sample_steps`` steps) for the first ``val_sample_size`` of them. ``x_channels``,
    ``y_channels`` and ``image_size`` are set from the data.
    """

    task: str = option(
        "microscopy-sr",
        "Paired restoration task (super-resolution, microscopy, phase imaging).",
        panel=DATA,
        choices=PAIRED_TASKS,
    )
    schedule: str = option(
        "learned",
        "learned: CVDM's per-pixel schedule; linear / cosine: fixed schedules (SR3-style); "
        "regression: a deterministic UNet trained with L2.",
        panel=MODEL,
        choices=CVDM_SCHEDULES,
    )
    task_options: dict[str, Any] = option(
        {},
        "An option of the task (VALUE read as JSON, else as text), e.g. size=32 for "
        "microscopy-sr; repeat for several.",
        flag="--task-option",
        panel=DATA,
    )
    train_size: int | None = option(
        None, "Training pairs (default: the task's whole split).", panel=DATA, min=1
    )
    base_channels: int = option(32, "UNet width of the first level.", panel=MODEL, min=1)
    channel_mults: list[int] = _channel_mults()
    attention_resolutions: list[int] = option(
        [],
        "Resolutions with self-attention, e.g. 16,8 ('' for none).",
        flag="--attention",
        panel=MODEL,
    )
    num_groups: int = 8
    timesteps: int = option(
        200,
        "T: boundary times 1/T, 1-1/T of the loss and default sampling steps.",
        panel=MODEL,
        min=2,
    )
    batch_size: int = _batch_size(16)
    lr: float = _lr(1e-4)
    warmup_steps: int = _warmup_steps(200)
    grad_clip: float = 1.0
    max_steps: int = 5000
    ema_decay: float | None = 0.999
    data_seed: int = 0
    val_size: int = option(64, "Validation pairs.", panel=DATA, min=1)
    val_every_n_steps: int | None = 500
    sample_steps: int = option(50, "Sampling steps of the validation samples.", min=2)
    val_sample_size: int = 16
    x_channels: int | None = None
    y_channels: int | None = None
    image_size: int | None = None

    def __post_init__(self) -> None:
        self.check_run()
        task = paired_task(self.task)  # ValueError listing the valid tasks
        unknown = set(self.task_options) - set(task.options)
        if unknown:
            raise ValueError(
                f"unknown task_options {sorted(unknown)} for {self.task!r}; valid: "
                f"{sorted(task.options)}"
            )
        if self.schedule not in CVDM_SCHEDULES:
            raise ValueError(
                f"schedule must be one of {list(CVDM_SCHEDULES)}, got {self.schedule!r}"
            )
        for name in ("batch_size", "base_channels", "val_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size is not None and self.train_size < self.batch_size:
            raise ValueError(
                f"train_size ({self.train_size}) must be >= batch_size ({self.batch_size})"
            )
        if self.timesteps < 2 or self.sample_steps < 2:
            raise ValueError(
                f"timesteps and sample_steps must be >= 2, got {self.timesteps}, "
                f"{self.sample_steps}"
            )
        if self.val_sample_size < 0:
            raise ValueError(f"val_sample_size must be >= 0, got {self.val_sample_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def model_spec(self) -> dict[str, Any]:
        """The spec of :func:`build_cvdm_model` (saved as ``export/model.json``)."""
        if None in (self.x_channels, self.y_channels, self.image_size):
            raise ValueError("x_channels, y_channels and image_size are set from the data first")
        return {
            "kind": "cvdm",
            "task": self.task,
            "task_options": dict(self.task_options),
            "schedule": self.schedule,
            "x_channels": self.x_channels,
            "y_channels": self.y_channels,
            "image_size": self.image_size,
            "base_channels": self.base_channels,
            "channel_mults": list(self.channel_mults),
            "attention_resolutions": list(self.attention_resolutions),
            "num_groups": self.num_groups,
            "timesteps": self.timesteps,
        }


@dataclass
class SBNConfig(RunConfig):
    """Everything that defines an SBN training run (JSON-serialisable).

    ``layers`` are the SBN's binary layers bottom first (``[200]``, ``[200, 200]``,
    ``[200, 200, 200]``); ``estimator`` one of :data:`SBN_ESTIMATORS` with ``k`` samples per
    data point (VIMCO needs k ≥ 2). NVIL's pieces switch with ``nvil_baseline``,
    ``nvil_centering``, ``nvil_normalise`` and ``nvil_local_signals``; VIMCO's leave-one-out
    stand-in is ``vimco_mean``; RWS adds the sleep phase with ``rws_sleep``. Adam with ``lr``
    on mini-batches of ``batch_size``; validation every ``val_every_n_steps`` steps on the
    first ``val_size`` held-out images with a ``val_k``-sample bound. ``event_shape`` is set
    from the data set.
    """

    dataset: str = _dataset("binarized-mnist")
    layers: list[int] = option([200], "Binary layers bottom first, e.g. 200,200,200.", panel=MODEL)
    estimator: str = option(
        "nvil", "Score-function estimator.", panel=ESTIMATOR, choices=SBN_ESTIMATORS
    )
    k: int = option(
        1,
        "Samples per data point (VIMCO: >= 2; the papers: NVIL 1, VIMCO 5 or 50, RWS 5).",
        flag=("--k", "-k"),
        panel=ESTIMATOR,
        min=1,
    )
    nvil_baseline: bool = option(True, "NVIL: input-dependent baselines.", panel=ESTIMATOR)
    nvil_centering: bool = option(True, "NVIL: moving-average centring.", panel=ESTIMATOR)
    nvil_normalise: bool = option(True, "NVIL: variance normalisation.", panel=ESTIMATOR)
    nvil_local_signals: bool = option(True, "NVIL: per-layer learning signals.", panel=ESTIMATOR)
    vimco_mean: str = option(
        "geometric",
        "VIMCO: geometric (paper) or arithmetic leave-one-out mean.",
        panel=ESTIMATOR,
        choices=VIMCO_MEANS,
    )
    rws_sleep: bool = option(False, "RWS: add the sleep-phase q update.", panel=ESTIMATOR)
    batch_size: int = _batch_size(24)
    lr: float = _lr(3e-4)
    max_steps: int = 10000
    val_every_n_steps: int | None = 1000
    val_size: int = 1000
    val_k: int = option(100, "Samples of the validation bound.", min=1)
    event_shape: list[int] | None = None

    def __post_init__(self) -> None:
        self.check_run()
        if self.dataset not in available_datasets():
            raise ValueError(
                f"unknown dataset {self.dataset!r}; valid: {sorted(available_datasets())}"
            )
        self.layers = list(check_layers(self.layers))
        if self.estimator not in SBN_ESTIMATORS:
            raise ValueError(
                f"estimator must be one of {list(SBN_ESTIMATORS)}, got {self.estimator!r}"
            )
        if self.k < 1 or (self.estimator == "vimco" and self.k < 2):
            raise ValueError(f"k must be >= 1 (>= 2 for vimco), got {self.k}")
        if self.vimco_mean not in VIMCO_MEANS:
            raise ValueError(
                f"vimco_mean must be one of {list(VIMCO_MEANS)}, got {self.vimco_mean!r}"
            )
        for name in ("batch_size", "val_size", "val_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def build_estimator(self):
        """The configured estimator (NVIL is a module with baselines and moving averages)."""
        if self.estimator == "nvil":
            return NVIL(
                self.k, self.nvil_baseline, self.nvil_centering, self.nvil_normalise,
                self.nvil_local_signals,
            )  # fmt: skip
        if self.estimator == "vimco":
            return VIMCO(self.k, self.vimco_mean)
        if self.estimator == "rws":
            return RWS(self.k, sleep=self.rws_sleep)
        return SCORE_FUNCTION_ESTIMATORS[self.estimator](self.k)


@dataclass
class VAEDGPConfig(RunConfig):
    """Everything that defines a VAE-DGP training run (JSON-serialisable).

    ``latent_dims`` are the latent widths ``Q_1 … Q_L`` bottom first (one GP layer each);
    ``num_inducing`` inducing points per layer; ``recognition_hidden`` the hidden widths of each
    recognition MLP; ``recognition=False`` trains a Bayesian GP-LVM (free q(x_n) per training
    point; with one layer, Titsias & Lawrence 2010). The first ``train_size`` training images
    are used (all when ``None``); validation uses the first ``val_size`` held-out images with
    ``val_missing`` of their pixels hidden (imputed after ``refine_steps`` of test-time
    inference). Mini-batches of ``batch_size``; q(U) moves by natural-gradient steps of size
    ``natural_step`` (0: Adam at ``lr`` instead), the GP hyperparameters, inducing inputs and
    a GP-LVM's free q(X) by Adam at ``lr``, the recognition MLPs by Adam at
    ``recognition_lr``; ``double`` trains in float64 (the K_zz solves lose precision in
    float32). ``data_dim`` and ``num_points`` (training points) are set from the data.
    """

    dataset: str = _dataset("frey-faces")
    latent_dims: list[int] = option(
        [5], "Latent widths bottom first, one GP layer each, e.g. 10,5.", panel=MODEL
    )
    num_inducing: int = option(50, "Inducing points per layer.", panel=MODEL, min=1)
    recognition_hidden: list[int] = option(
        [200], "Hidden widths of each recognition (encoder) MLP.", panel=MODEL
    )
    recognition: bool = option(
        True,
        "Amortise q(X) with MLPs (VAE-DGP); --no-recognition: Bayesian GP-LVM.",
        panel=MODEL,
    )
    kernel: str = option("rbf", "GP kernel.", panel=MODEL, choices=KERNELS)
    train_size: int | None = option(
        None, "Use the first N training images (default: all).", panel=DATA, min=2
    )
    batch_size: int = _batch_size(100)
    lr: float = _lr(1e-2)
    recognition_lr: float = option(3e-4, "Learning rate of the recognition MLPs.", panel=OPTIM)
    natural_step: float = option(
        0.1, "Natural-gradient step on q(U); 0 = Adam.", panel=OPTIM, min=0, max=1
    )
    refine_steps: int = 200
    max_steps: int = 3000
    val_every_n_steps: int | None = 500
    val_size: int = 200
    val_missing: float = 0.5
    double: bool = True
    data_dim: int | None = None
    num_points: int | None = None

    def __post_init__(self) -> None:
        self.check_run()
        if self.dataset not in available_datasets():
            raise ValueError(
                f"unknown dataset {self.dataset!r}; valid: {sorted(available_datasets())}"
            )
        self.latent_dims = list(self.latent_dims)
        if not self.latent_dims or any(int(q) != q or q < 1 for q in self.latent_dims):
            raise ValueError(f"latent_dims must be one or more ints >= 1, got {self.latent_dims}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {list(KERNELS)}, got {self.kernel!r}")
        for name in ("num_inducing", "batch_size", "val_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size is not None and self.train_size < 2:
            raise ValueError(f"train_size must be >= 2 (or None for all), got {self.train_size}")
        if not 0 <= self.natural_step <= 1:
            raise ValueError(f"natural_step must be in [0, 1], got {self.natural_step}")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {self.refine_steps}")
        if not 0 < self.val_missing < 1:
            raise ValueError(f"val_missing must be in (0, 1), got {self.val_missing}")
        for name in ("lr", "recognition_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.double else torch.float32
