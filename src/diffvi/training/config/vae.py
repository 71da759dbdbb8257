"""The VAE family's config: :class:`TrainConfig` (VAE, IWAE, IAF, AAE, DD-VAE, semi-supervised)."""

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

from diffvi.distributions.likelihoods import LIKELIHOODS
from diffvi.distributions.priors import PRIORS
from diffvi.models.vae import ARCHITECTURES
from diffvi.nn.activations import ACTIVATIONS
from diffvi.objectives import OBJECTIVES
from diffvi.objectives.ddvi import (
    OFFICIAL_STAGE2_KL_WEIGHT,
    OFFICIAL_STAGE2_PRIOR_WEIGHT,
    OFFICIAL_STAGE2_SLEEP_STEPS,
    OFFICIAL_STAGE2_SLEEP_WEIGHT,
    OFFICIAL_STAGE2_WAKE_WEIGHT,
)
from diffvi.objectives.iwae import ESTIMATORS
from diffvi.objectives.semisupervised import OFFICIAL_CLASSIFIER_WEIGHT, OFFICIAL_ENTROPY_WEIGHT
from diffvi.posteriors.registry import POSTERIORS
from diffvi.training.config.base import (
    MODEL,
    OPTIM,
    SEMI,
    ImageDataConfig,
    RunConfig,
    batch_size_option,
    dataset_option,
    lr_option,
    option,
)

# Adam settings. The IWAE paper (§5) reports β1 = 0.9, β2 = 0.999, ε = 1e-4; the official code
# (yburda/iwae) used β1 = 0.99 with ε = 1e-4. "torch" is PyTorch's default.
ADAM_PRESETS: dict[str, dict[str, Any]] = {
    "torch": {"betas": (0.9, 0.999), "eps": 1e-8},
    "iwae-paper": {"betas": (0.9, 0.999), "eps": 1e-4},
    "iwae-code": {"betas": (0.99, 0.999), "eps": 1e-4},
}
SCHEDULES = ("constant", "iwae")
# Priors that exist in 2-D only (``diffvi.distributions.toy2d.build_prior``).
PRIORS_2D = ("pinwheel", "swiss-roll", "square")
# Priors with labelled partitions p(z) = Σ_l p(l) p(z|l), which semi-supervised runs need.
PARTITIONED_PRIORS = ("pinwheel", "swiss-roll", "square", "mixture")
# The posteriors q(z, l|x) of semi-supervised runs (objectives/semisupervised.py): conditional,
# q(l|x) q(z|x, l) (the default); factorised, q(z|x) q(l|x) with a p(l|z) term.
SEMI_POSTERIORS = ("conditional", "factorised")
# The settings of the official DDVI code's second stage (``TrainConfig.stage2``; GitHub
# topwasu/DDVI ``DiffVAEWarmup``, conf/model/diff_vae_warmup.yaml) and their defaults, the
# official values (weights per image, ×784, as objectives/ddvi.py explains).
STAGE2_DEFAULTS: dict[str, Any] = {
    "diffusion_steps": 40,  # T of the new reverse chain (timesteps 40)
    "context_dim": 2,  # outputs of its context network of x (context_size 2)
    "kl_weight": OFFICIAL_STAGE2_KL_WEIGHT,  # on KL(q(y_T|x) || N(0, I)) (kld_weight 0.003)
    "prior_weight": OFFICIAL_STAGE2_PRIOR_WEIGHT,  # on −log p_KDE(z) (0.003 × prior_z_weight 1)
    "wake_weight": OFFICIAL_STAGE2_WAKE_WEIGHT,  # on the wake Huber loss (diff_weight 1)
    "beta_sleep": OFFICIAL_STAGE2_SLEEP_WEIGHT,  # on each sleep step's Huber loss (diff_weight 1)
    "sleep_steps": OFFICIAL_STAGE2_SLEEP_STEPS,  # sleep optimiser steps per batch (diff_ct 3)
    "kde_samples": 10_000,  # prior samples of the KDE of log p(z) (BasePrior.evaluate)
    "first_fraction": 0.5,  # stage 1's share of the budget (100 of 100 + 100 epochs)
    "frozen_fraction": 0.3,  # share of stage 2 with the decoder frozen (30 of 100 epochs)
    "start_step": None,  # the step stage 2 starts at (None: from first_fraction)
    "decoder_free_step": None,  # the step the decoder trains from again (None: frozen_fraction)
}


@dataclass
class TrainConfig(RunConfig, ImageDataConfig):
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
    KL(q(y_T|x) ‖ N(0, I)) and ``beta_sleep`` its weight on the sleep loss averaged over the
    latent dimensions (the official code's reduction), both per image. ``stage2`` (a dict of
    :data:`STAGE2_DEFAULTS`' settings, ``None``: off) adds the official second stage
    (:class:`~diffvi.objectives.OfficialDDVIStage2`) after it: see
    :class:`~diffvi.training.families.vae.VAEFamily`. ``objective="ddvi-heads"`` with
    ``prior="cluster-heads"`` (K = ``mixture_components`` heads) is the official code's
    genotype clustering model on DDVI's bound: learned heads with an η-margin repulsion
    (:class:`~diffvi.objectives.ClusterHeadsDDVI`; ``eta`` etc. via ``objective_options``);
    ``objective="ddvi-heads-official"`` trains it by the official code's own loop
    (:class:`~diffvi.objectives.OfficialClusterHeads`, options via ``objective_options``).

    IAF (Kingma et al. 2016): ``posterior="iaf"`` (one latent layer; ELBO, IWAE or AAE) with
    ``iaf_flows`` steps of MADE ``made_hidden`` (default: the builder's, 128-128-128); its encoder
    MLP uses ``hidden[0]``. See :func:`~diffvi.posteriors.build_iaf_posterior`.

    AAE (Makhzani et al. 2016): ``objective="aae"`` with a Gaussian or IAF posterior, one latent
    layer; ``adversarial_weight`` is λ, ``deterministic_encoder`` encodes with q's mean (Gaussian
    posterior only), ``k`` is the number of draws per data point, and the discriminator gets its
    own Adam at ``discriminator_lr`` (default ``lr``). See :class:`~diffvi.objectives.AAE`.

    Semi-supervised (M2 of Kingma et al. 2014, DDVI's semi-supervised DD-VAE):
    ``num_labelled > 0`` keeps the labels of exactly that many training images (balanced over
    classes, chosen by ``seed``; a multiple of the number of classes) and hides the others;
    every batch gets ``labelled_batch`` labelled images on top of its ``batch_size``. A
    classifier q(l|x) (an MLP of ``hidden[0]`` and ``activation``) is trained beside the model,
    and the prior must be partitioned (``PARTITIONED_PRIORS``), one partition per class. The
    objective (``elbo`` or ``ddvi``; not ``iwae`` or ``aae``) is wrapped by ``semi_posterior``:
    ``"conditional"`` (the default with ``num_labelled > 0``): the posterior sees the label,
    q(l|x) q(z|x, l) (:class:`~diffvi.objectives.LabelConditionedSemiSupervised`, with
    ``classifier_weight``, default 78.4, and ``entropy_weight``; the classifier is part of the
    posterior, and the model embeds with the chain of argmax q(l|x)); ``"factorised"``:
    q(z|x) q(l|x) (:class:`~diffvi.objectives.SemiSupervised`, with ``label_weight`` and
    ``classifier_weight``, default 1). A config saved before ``semi_posterior`` existed (it has an
    ``event_shape`` but no ``semi_posterior``) loads as ``"factorised"``, as it was trained.
    ``num_labelled = 0`` (the default) is unsupervised training.

    The data is a registered ``dataset`` or the user's own images, ``data`` (a folder or an
    array file; with ``labels``, ``size``, ``crop``, ``val_fraction``: :class:`ImageDataConfig`).
    """

    dataset: str | None = dataset_option("mnist-dynamic")
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
    batch_size: int = batch_size_option(20)
    lr: float = lr_option(1e-3)
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
    # Set from the data, as event_shape is: a table's feature columns and its training rows'
    # mean and std (diffvi.data.tables.TableFeatures.to_dict), so that the model applies to new
    # rows; None for images.
    features: dict[str, Any] | None = None
    posterior: str = option(
        "gaussian",
        "Posterior q(z|x): Gaussian, an inverse autoregressive flow, or a diffusion model "
        "(`train ddvae`).",
        panel=MODEL,
        choices=POSTERIORS,
    )
    posterior_options: dict[str, Any] = option(
        {},
        "An option of the posterior's builder that no other flag sets (VALUE is read as JSON, "
        "else as text); repeat for several.",
        flag="--posterior-option",
        panel=MODEL,
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
    stage2: dict[str, Any] | None = option(
        None,
        "A setting of the official DDVI code's second stage (NAME=VALUE; `--recipe official` "
        "turns the stage on with the official values, docs/methods.md lists them).",
        flag="--stage2-option",
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
    semi_posterior: str | None = option(
        None,
        "Posterior q(z, l|x) of a --labelled run: conditional = q(l|x) q(z|x, l), the posterior "
        "(DD-VAE: its reverse chain) sees the label, as in M2 and the official DDVI code; "
        "factorised = q(z|x) q(l|x) with a p(l|z) term (default: conditional).",
        panel=SEMI,
        choices=SEMI_POSTERIORS,
    )
    label_weight: float = option(
        1.0,
        "Factorised posterior: weight of the label term (log p(l|z), or −KL(q(l|x) ‖ p(l|z)) "
        "when unlabelled).",
        panel=SEMI,
        min=0,
    )
    entropy_weight: float = option(
        OFFICIAL_ENTROPY_WEIGHT,
        "Conditional posterior: weight of H(q(l|x)) of unlabelled images, added to the "
        "regulariser as in the official code (0.001; it sharpens q(l|x)); -1 with --beta-reg 1 "
        "trains M2's bound.",
        panel=SEMI,
    )
    classifier_weight: float | None = option(
        None,
        "Weight of the label classifier's cross-entropy on labelled images (default: 78.4, the "
        "official weight per image, for the conditional posterior; 1 for the factorised one).",
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
            (self.posterior in POSTERIORS, f"posterior must be one of {sorted(POSTERIORS)}"),
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
            (math.isfinite(self.entropy_weight), "entropy_weight must be finite"),
            (
                self.classifier_weight is None or self.classifier_weight >= 0,
                "classifier_weight must be None or >= 0",
            ),
        ]
        self.check_run()
        self.check_data()
        for ok, message in checks:
            if not ok:
                field_name = message.split()[0]
                raise ValueError(f"{message}, got {getattr(self, field_name)!r}")
        self._check_objective_options()
        self._check_posterior_options()
        self._check_posterior_and_prior()
        self._check_stage2()
        if self.features is not None:
            from diffvi.data.tables import TableFeatures

            TableFeatures.from_dict(self.features)  # a ValueError if malformed

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
        if self.objective in ("ddvi-heads", "ddvi-heads-official"):
            self._check_heads()
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
        if self.posterior != "gaussian" and len(dims) != 1:
            raise ValueError(
                f"the {self.posterior} posterior has one latent layer: latent_dims must have one "
                f"entry, got {dims}"
            )
        self._check_aae()
        self._check_semisupervised()

    def _check_stage2(self) -> None:
        """``stage2``: ``None`` (one stage), or the official second stage's settings, filled in
        from :data:`STAGE2_DEFAULTS` (so that a saved config names every one)."""
        if self.stage2 is None:
            return
        unknown = set(self.stage2) - set(STAGE2_DEFAULTS)
        if unknown:
            raise ValueError(
                f"stage2 settings {sorted(unknown)} are unknown; the second stage takes "
                f"{sorted(STAGE2_DEFAULTS)}"
            )
        self.stage2 = {**STAGE2_DEFAULTS, **self.stage2}
        s = self.stage2
        conflicts = [
            (self.objective != "ddvi-official", f"objective={self.objective!r}"),
            (self.num_labelled > 0, f"num_labelled={self.num_labelled}"),
            (self.ema_decay is not None, f"ema_decay={self.ema_decay}"),
            (self.schedule != "constant", f"schedule={self.schedule!r}"),
            (self.grad_clip > 0, f"grad_clip={self.grad_clip}"),
        ]
        _refuse_conflicts(
            conflicts,
            "the official second stage (stage2) follows the official first stage "
            "(objective 'ddvi-official') with its own optimisers, unsupervised, with a "
            "constant learning rate and no moving average or clipping; got ",
        )
        for name in ("diffusion_steps", "context_dim", "sleep_steps", "kde_samples"):
            if not (isinstance(s[name], int) and s[name] >= 1):
                raise ValueError(f"stage2 {name} must be an integer >= 1, got {s[name]!r}")
        for name in ("kl_weight", "prior_weight", "wake_weight", "beta_sleep"):
            if not (isinstance(s[name], int | float) and s[name] >= 0):
                raise ValueError(f"stage2 {name} must be a number >= 0, got {s[name]!r}")
        if not (isinstance(s["first_fraction"], int | float) and 0 < s["first_fraction"] < 1):
            raise ValueError(
                f"stage2 first_fraction must be in (0, 1), got {s['first_fraction']!r}"
            )
        if not (isinstance(s["frozen_fraction"], int | float) and 0 <= s["frozen_fraction"] <= 1):
            raise ValueError(
                f"stage2 frozen_fraction must be in [0, 1], got {s['frozen_fraction']!r}"
            )
        start, free = s["start_step"], s["decoder_free_step"]
        if start is not None and not (isinstance(start, int) and start >= 1):
            raise ValueError(f"stage2 start_step must be None or an integer >= 1, got {start!r}")
        if free is not None and not (isinstance(start, int) and isinstance(free, int)):
            raise ValueError(
                f"stage2 decoder_free_step needs start_step set and must be an integer, got "
                f"start_step={start!r}, decoder_free_step={free!r}"
            )
        if free is not None and free < start:
            raise ValueError(
                f"stage2 decoder_free_step must be >= start_step, got {free} < {start}"
            )
        if (start is None or free is None) and self.max_epochs < 1 and self.max_steps < 1:
            raise ValueError(
                "the official recipe splits a budget of epochs or steps between its stages; "
                "set max_epochs or max_steps (or stage2 start_step and decoder_free_step)"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """As :meth:`JSONConfig.from_dict`; a semi-supervised config saved before
        ``semi_posterior`` existed (an ``event_shape``, set from the data when a run starts, and
        no ``semi_posterior``) gets ``"factorised"``, the posterior it was trained with."""
        if (
            values.get("num_labelled", 0)
            and values.get("event_shape")
            and "semi_posterior" not in values
        ):
            values = {**values, "semi_posterior": "factorised"}
        return super().from_dict(values)

    @property
    def label_conditioned(self) -> bool:
        """Whether the run trains the label-conditioned posterior q(l|x) q(z|x, l)."""
        return self.num_labelled > 0 and self.semi_posterior == "conditional"

    def _check_semisupervised(self) -> None:
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if self.num_labelled == 0:
            if self.semi_posterior is not None:
                raise ValueError(
                    f"semi_posterior={self.semi_posterior!r} is the posterior of a semi-supervised "
                    "run: set num_labelled (--labelled N) too, or leave it unset"
                )
            return
        if self.semi_posterior is None:
            self.semi_posterior = "conditional"
        if self.classifier_weight is None:
            conditional = self.semi_posterior == "conditional"
            self.classifier_weight = OFFICIAL_CLASSIFIER_WEIGHT if conditional else 1.0
        if self.semi_posterior not in SEMI_POSTERIORS:
            raise ValueError(
                f"semi_posterior must be one of {SEMI_POSTERIORS}, got {self.semi_posterior!r}"
            )
        # The other posterior's weight, changed, would be silently ignored: refuse it.
        ignored = "label_weight" if self.semi_posterior == "conditional" else "entropy_weight"
        if getattr(self, ignored) != defaults[ignored]:
            raise ValueError(
                f"{ignored}={getattr(self, ignored)!r} is a weight of the other semi-supervised "
                f"posterior, not of semi_posterior={self.semi_posterior!r}: leave it unset or "
                "choose the other semi_posterior"
            )
        if self.semi_posterior == "conditional" and self.analytic_kl:
            raise ValueError(
                "the conditional semi-supervised posterior scores log p(z, l) on the draws: "
                "use the sampled KL (analytic_kl=False)"
            )
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
        # A config field only other objectives read, changed from its default, would be
        # silently ignored (--analytic-kl with IWAE): refuse it.
        defaults = {
            f.name: f.default
            for f in dataclasses.fields(self)
            if f.default is not dataclasses.MISSING
        }
        mine = set(cls.config_fields.values())
        for field_name in sorted(
            {f for o in OBJECTIVES.values() for f in o.config_fields.values()}
        ):
            if field_name in mine or field_name not in defaults:
                continue
            if getattr(self, field_name) != defaults[field_name]:
                users = sorted(
                    n for n, o in OBJECTIVES.items() if field_name in o.config_fields.values()
                )
                raise ValueError(
                    f"{field_name}={getattr(self, field_name)!r} is among the options of "
                    f"objective {' / '.join(map(repr, users))}, not of {self.objective!r}: "
                    "leave it unset or choose one of those objectives"
                )
        free = set(inspect.signature(cls).parameters) - set(cls.config_fields) - {"latent_dim"}
        unknown = set(self.objective_options) - free
        if unknown:
            raise ValueError(
                f"objective_options {sorted(unknown)} are not options of objective "
                f"{self.objective!r}; it takes {sorted(free)} (the others are config fields)"
            )

    def _check_posterior_options(self) -> None:
        """``posterior_options`` may set the builder's keywords that no config field sets."""
        entry = POSTERIORS[self.posterior]
        free = set()
        if entry.build is not None:
            # num_labels: set by semi_posterior (one label per prior partition)
            taken = {
                "data_dim", "latent_dim", "hidden", "activation", "num_labels",
                *entry.config_fields,
            }  # fmt: skip
            free = set(inspect.signature(entry.build).parameters) - taken
        unknown = set(self.posterior_options) - free
        if unknown:
            raise ValueError(
                f"posterior_options {sorted(unknown)} are not options of posterior "
                f"{self.posterior!r}; it takes {sorted(free)} (the others are config fields)"
            )

    def _check_heads(self) -> None:
        """The cluster-heads objectives learn the heads of prior 'cluster-heads'; the official
        loop (``ddvi-heads-official``) steps its own optimisers, unsupervised."""
        if self.prior != "cluster-heads":
            raise ValueError(
                f"objective {self.objective!r} learns the heads of prior 'cluster-heads' (the "
                f"official clustering model), got prior={self.prior!r}"
            )
        if self.objective != "ddvi-heads-official":
            return
        conflicts = [
            (self.num_labelled > 0, f"num_labelled={self.num_labelled}"),
            (self.schedule != "constant", f"schedule={self.schedule!r}"),
            (self.grad_clip > 0, f"grad_clip={self.grad_clip}"),
        ]
        _refuse_conflicts(
            conflicts,
            "objective 'ddvi-heads-official' is the official clustering loop, with its own "
            "optimisers and clipping, unsupervised, at a constant learning rate; got ",
        )

    def _check_aae(self) -> None:
        if self.objective != "aae":
            if self.deterministic_encoder or self.discriminator_lr is not None:
                raise ValueError(
                    "deterministic_encoder and discriminator_lr are options of objective 'aae', "
                    f"got objective={self.objective!r}"
                )
            return
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


def _refuse_conflicts(conflicts: list[tuple[bool, str]], why: str) -> None:
    """ValueError ``why`` + the setting of the first ``(bad, setting)`` pair that is bad."""
    for bad, setting in conflicts:
        if bad:
            raise ValueError(why + setting)


def iwae_lr_factor(epoch: int) -> float:
    """Learning-rate factor of the IWAE schedule at ``epoch`` (0-based): 10^(-i/7) during the
    3^i epochs of stage i (stage 0 = epoch 0, stage 1 = epochs 1–3, …, i = 0…7)."""
    stage, end = 0, 1
    while epoch >= end and stage < 7:
        stage += 1
        end += 3**stage
    return 10 ** (-stage / 7)
