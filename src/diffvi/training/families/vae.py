"""The VAE family: a VAE p(z) p(x|z) and its posterior q(z|x) (Gaussian, IAF or diffusion),
trained with a variational objective (ELBO, IWAE, DDVI, AAE), optionally semi-supervised.

Logged: ``train/bound`` (the bound, not the surrogate loss), ``val/bound`` (the training
objective's bound on held-out data), ``val/iwae`` (IWAE bound with ``val_k`` samples).
Semi-supervised runs (``config.num_labelled > 0``) also train the label classifier q(l|x) (in
the same Adam) on the batch's labels (``-1`` = unlabelled), log its terms, and validate on the
held-out labels: ``val/accuracy`` (argmax q(l|x)) and ``val/latent_accuracy`` (argmax_l p(l|z)
for one posterior draw z: the prior partition the latent falls in). With
``semi_posterior="conditional"`` (the default) the posterior is a
:class:`~diffvi.posteriors.LabelConditionedPosterior`, q(l|x) q(z|x, l), whose ``classifier``
is q(l|x), trained with :class:`~diffvi.objectives.LabelConditionedSemiSupervised`; validation,
``encode`` and ``diffvi embed`` use the posterior of the predicted label, q(z|x, argmax q(l|x)).
With ``"factorised"`` the classifier is the family's ``classifier`` and the objective
:class:`~diffvi.objectives.SemiSupervised`.

``objective="aae"`` trains by manual optimisation: per batch a generator step (decoder and
posterior, on the AAE's reconstruction + adversarial loss) then a discriminator step, each with
its own Adam; ``global_step`` counts batches, as for the other objectives.

``stage2`` set (with ``objective="ddvi-official"``; ``diffvi train ddvae --recipe official``)
trains the official DDVI pipeline (GitHub topwasu/DDVI, ``run.py`` with ``diff_vae`` then
``diff_vae_warmup``) in one run, by manual optimisation. The posterior is a
:class:`~diffvi.posteriors.TwoStagePosterior`:

1. steps ``0 … start − 1``: :class:`~diffvi.objectives.OfficialDDVI` on the first posterior
   (the config's chain; the official one is unconditional, T = 20), one Adam step per batch on
   the model and that posterior (``DiffVAE``);
2. from step ``start``: the second posterior (a new x-conditional chain of ``stage2``'s
   ``diffusion_steps`` and ``context_dim``, whose encoder of q(y_T|x) starts as a copy of the
   first's) trains with :class:`~diffvi.objectives.OfficialDDVIStage2`: per batch a wake step,
   on the posterior only (decoder and prior frozen) before ``decoder_free`` and on the model
   too from then on, each by its own Adam, then ``sleep_steps`` sleep steps on
   ``beta_sleep`` · the sleep loss by the second Adam (``DiffVAEWarmup``'s ``middle_optim`` and
   ``optim``). log p(z) is the official kernel density score of 10,000 of the official prior
   samples where the prior is one of the paper's 2-D priors, else the model's prior.

``objective="ddvi-heads-official"`` (with ``prior="cluster-heads"``; ``diffvi embed genotypes
--clustering heads-official``) trains the official clustering model's loop
(:class:`~diffvi.objectives.OfficialClusterHeads`) by manual optimisation with three Adams: per
batch a wake step of the model (its heads excepted) and the posterior at ``lr``, the chain's
gradient norm clipped; on an epoch's last batch then e + 1 steps of the heads alone and e + 1
sleep steps of the chain alone (e the epoch, from 0; :class:`~diffvi.training.callbacks.
BatchClock` tells the family where it stands).

``start`` and ``decoder_free`` are ``stage2``'s ``start_step`` and ``decoder_free_step`` or,
unset, fixed when a run starts from its budget B in steps (:class:`~diffvi.training.callbacks.
StageSchedule`): start = round(``first_fraction`` · B), decoder_free = start +
round(``frozen_fraction`` · (B − start)) (official: 100 + 100 epochs, 30 of them frozen). They
are saved in the checkpoint, so a resumed run keeps them whatever budget it resumes with, and
the stage the posterior is in is saved with its weights (and exported). ``global_step`` counts
batches.
"""

import inspect
from typing import Any

import lightning as L
import torch
from torch import Tensor

from diffvi.models.vae import VAE, build_vae
from diffvi.objectives import (
    AAE,
    IWAE,
    OBJECTIVES,
    LabelConditionedSemiSupervised,
    Objective,
    OfficialClusterHeads,
    OfficialDDVIStage2,
    SemiSupervised,
)
from diffvi.objectives.semisupervised import prior_log_responsibilities, top_layer
from diffvi.posteriors import POSTERIORS, TwoStagePosterior, build_diffusion_posterior
from diffvi.posteriors.base import Posterior
from diffvi.training.config import ADAM_PRESETS, TrainConfig, iwae_lr_factor
from diffvi.training.families.tables import TableInputs
from diffvi.training.family import Family, LossOutput, Metric


def build_objective_from_config(config: TrainConfig, latent_dim: int | None = None) -> Objective:
    """The objective registered as ``config.objective``, built from the config fields its class
    reads (:attr:`~diffvi.objectives.base.Objective.config_fields`) and from
    ``config.objective_options``. ``latent_dim`` (the model's) is passed to objectives that take
    one (the AAE builds its discriminator at once; without it, on first use)."""
    cls = OBJECTIVES[config.objective]
    options = {name: getattr(config, field) for name, field in cls.config_fields.items()}
    if "latent_dim" in inspect.signature(cls).parameters:
        options["latent_dim"] = latent_dim
    return cls(**options, **config.objective_options)


def build_model_from_config(config: TrainConfig) -> tuple[VAE, Posterior]:
    """The model p (with the config's prior) and posterior q a config names.

    ``posterior="gaussian"``: :func:`build_vae`'s mirrored MLPs. Any other name is built by its
    :data:`~diffvi.posteriors.POSTERIORS` entry in place of the Gaussian encoder, from the
    bottom layer's hidden sizes (``hidden[0]``), the activation, the config fields the entry
    names (e.g. ``diffusion_steps``, ``beta_end`` for ``"diffusion"``; ``iaf_flows``,
    ``made_hidden`` for ``"iaf"``) and ``posterior_options``. A label-conditioned
    semi-supervised run (``config.label_conditioned``) builds it with one label per prior
    partition and joins it to a classifier q(l|x): a
    :class:`~diffvi.posteriors.LabelConditionedPosterior`.
    """
    from diffvi.distributions.likelihoods import build_likelihood
    from diffvi.distributions.priors import build_prior
    from diffvi.distributions.smoothed import SmoothedPrior

    dims = config.resolved_latent_dims()
    # None keeps build_vae's own N(0, I), so runs from before the prior option are unchanged.
    prior = (
        None
        if config.prior == "standard-normal"
        else build_prior(config.prior, dims[-1], config.mixture_components)
    )
    if config.smooth_prior:
        prior = SmoothedPrior(prior, seed=config.seed)
    labels = {}
    if config.label_conditioned:  # _check_semisupervised: a partitioned prior
        labels["num_labels"] = prior.num_partitions
    model, posterior = build_vae(
        config.event_shape,
        config.architecture,
        build_likelihood(config.likelihood, config.likelihood_scale, config.likelihood_min_scale),
        config.latent_dims,
        config.hidden,
        config.activation,
        prior=prior,
        **labels,
    )
    entry = POSTERIORS[config.posterior]
    if entry.build is not None:  # else the VAE's own Gaussian posterior
        options = {
            keyword: getattr(config, name)
            for keyword, name in entry.config_fields.items()
            if getattr(config, name) is not None  # unset: the builder's default
        }
        posterior = entry.build(
            model.data_dim,
            model.latent_dim,
            hidden=bottom_hidden(config),
            activation=config.activation,
            **options,
            **config.posterior_options,
            **labels,
        )
    if labels:
        from diffvi.models.semisupervised import build_label_classifier
        from diffvi.posteriors import label_conditioned

        classifier = build_label_classifier(
            model.data_dim, labels["num_labels"], bottom_hidden(config), config.activation
        )
        posterior = label_conditioned(posterior, classifier)
    return model, posterior


def build_second_stage(
    config: TrainConfig, model: VAE, first: Posterior
) -> tuple[TwoStagePosterior, OfficialDDVIStage2]:
    """The official second stage a config's ``stage2`` names: the two-stage posterior around
    ``first`` (the second chain an x-conditional MLP posterior of ``stage2``'s
    ``diffusion_steps`` and ``context_dim``, with the config's hidden sizes, activation, β
    schedule and ``posterior_options``) and its objective, whose log p(z) is the official kernel
    density score of ``kde_samples`` official prior samples (seeded by ``config.seed``) for the
    paper's 2-D priors, else the model's log prior."""
    from diffvi.distributions import (
        OFFICIAL_REFERENCE_PRIORS,
        KernelDensityScore,
        official_prior_samples,
    )

    settings = config.stage2
    if settings is None:
        raise ValueError("config.stage2 is not set: the run has one stage")
    options = {
        **config.posterior_options,
        "num_steps": settings["diffusion_steps"],
        "context_dim": settings["context_dim"],
        "conditional": True,
    }
    second = build_diffusion_posterior(
        model.data_dim,
        model.latent_dim,
        hidden=bottom_hidden(config),
        activation=config.activation,
        beta_end=config.beta_end,
        **options,
    )
    score = None
    if config.prior in OFFICIAL_REFERENCE_PRIORS:
        generator = torch.Generator().manual_seed(config.seed)
        samples = official_prior_samples(
            config.prior, settings["kde_samples"], generator, dtype=torch.get_default_dtype()
        )
        score = KernelDensityScore(samples)
    objective = OfficialDDVIStage2(
        k=config.k,
        kl_weight=settings["kl_weight"],
        prior_weight=settings["prior_weight"],
        wake_weight=settings["wake_weight"],
        beta_sleep=settings["beta_sleep"],
        sleep_steps=settings["sleep_steps"],
        prior_score=score,
    )
    return TwoStagePosterior(first, second), objective


def _extra_steps(
    optimizer: Any, backward: Any, count: int, loss_of: Any, weight: float = 1.0
) -> Tensor:
    """``count`` steps of ``optimizer``, each on ``weight`` · ``loss_of()``, by the raw optimiser
    under Lightning's wrapper (so that ``global_step`` counts batches, not these steps); the
    mean of the unweighted losses, detached."""
    raw, losses = getattr(optimizer, "optimizer", optimizer), []
    for _ in range(count):
        loss = loss_of()
        raw.zero_grad()
        backward(weight * loss)
        raw.step()
        losses.append(loss.detach())
    return torch.stack(losses).mean()


def bottom_hidden(config: TrainConfig) -> list[int]:
    """The bottom layer's hidden sizes: ``hidden[0]``, else the architecture preset's."""
    if config.hidden:
        return list(config.hidden[0])
    from diffvi.models.vae import ARCHITECTURES

    return list(ARCHITECTURES[config.architecture]["hidden"][0])


class VAEFamily(TableInputs, Family):
    """``model`` (p) and ``posterior`` (q) trained by minimising ``objective``'s loss; see the
    module docstring. Built from a :class:`TrainConfig` with ``event_shape`` set. A model
    trained on a table reads and encodes new rows (:class:`TableInputs`)."""

    kind = "vae"
    table_command = "train vae|ddvae --data TABLE"
    config_class = TrainConfig
    progress_metrics = ("bound", "accuracy")
    training_only = ("val_objective.", "stage_boundaries")

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        if not config.event_shape:
            raise ValueError("config.event_shape must be set (the shape of one observation)")
        self.model, self.posterior = build_model_from_config(config)
        self.objective = build_objective_from_config(config, self.model.latent_dim)
        self.semisupervised: SemiSupervised | LabelConditionedSemiSupervised | None = None
        if config.label_conditioned:  # the classifier is the posterior's
            self.semisupervised = LabelConditionedSemiSupervised(
                self.objective, config.classifier_weight, config.entropy_weight
            )
        elif config.num_labelled > 0:
            from diffvi.models.semisupervised import build_label_classifier

            self.classifier = build_label_classifier(
                self.model.data_dim,
                self.model.prior.num_partitions,
                bottom_hidden(config),
                config.activation,
            )
            self.semisupervised = SemiSupervised(
                self.objective, config.label_weight, config.classifier_weight
            )
        if isinstance(self.objective, AAE):
            self.discriminator = self.objective.ensure_discriminator(self.model.latent_dim)
        self.stage2_objective: OfficialDDVIStage2 | None = None
        if config.stage2 is not None:
            self.posterior, self.stage2_objective = build_second_stage(
                config, self.model, self.posterior
            )
            # A module, so that the KDE's reference samples follow the family to its device.
            self.prior_score = self.stage2_objective.prior_score
            # (start, decoder_free) steps of stage 2; −1 until fix_stage_boundaries.
            self.register_buffer("stage_boundaries", torch.full((2,), -1, dtype=torch.long))
            self.current_step = 0  # the global step of the batch being trained (StageSchedule)
        elif isinstance(self.objective, OfficialClusterHeads):
            # where the batch being trained stands (BatchClock): its epoch, and whether it ends it
            self.current_epoch, self.epoch_ending = 0, False
        self.val_objective = IWAE(k=config.val_k)

    @property
    def label_classifier(self) -> torch.nn.Module | None:
        """q(l|x) of a semi-supervised run (logits ``[B, L]``): the label-conditioned
        posterior's classifier, or the family's own for the factorised posterior; ``None``
        for an unsupervised run."""
        if self.config.label_conditioned:
            return self.posterior.classifier
        return getattr(self, "classifier", None)

    @property
    def manual_optimization(self) -> bool:  # type: ignore[override]
        return (
            isinstance(self.objective, AAE | OfficialClusterHeads)
            or self.stage2_objective is not None
        )

    def active_stage(self) -> tuple[Posterior, Objective]:
        """The posterior being trained and its objective: the second stage's once it started
        (of a ``stage2`` run), else the run's own."""
        if self.stage2_objective is not None and int(self.posterior.stage) == 2:
            return self.posterior.second, self.stage2_objective
        posterior = self.posterior.first if self.stage2_objective is not None else self.posterior
        return posterior, self.objective

    def fix_stage_boundaries(self, budget: int | None) -> tuple[int, int]:
        """The steps ``(start, decoder_free)`` of a ``stage2`` run (see the module docstring):
        kept where already fixed (a resumed run), else ``stage2``'s ``start_step`` and
        ``decoder_free_step`` or, unset, shares of ``budget`` (steps; needed then)."""
        fixed = [int(v) for v in self.stage_boundaries]
        if fixed[0] >= 0:
            return fixed[0], fixed[1]
        settings = self.config.stage2
        start, free = settings["start_step"], settings["decoder_free_step"]
        if start is None or free is None:
            if budget is None:
                raise ValueError(
                    "the official recipe splits a budget of epochs or steps between its "
                    "stages; set max_epochs or max_steps (or stage2 start_step and "
                    "decoder_free_step)"
                )
            if start is None:
                start = max(1, _round_half_up(settings["first_fraction"] * budget))
            free = start + _round_half_up(settings["frozen_fraction"] * max(0, budget - start))
        self.stage_boundaries.copy_(torch.tensor([start, free]))
        return start, free

    # -- data -----------------------------------------------------------------------------
    @classmethod
    def build_data(cls, config: TrainConfig) -> L.LightningDataModule:
        from diffvi.training.families.images import build_image_data
        from diffvi.training.families.tables import build_table_data, uses_table

        if uses_table(config):  # a CSV/TSV, Parquet, 2-D .npy or .h5ad table
            return build_table_data(config)
        return build_image_data(
            config, num_labelled=config.num_labelled, labelled_batch=config.labelled_batch
        )

    @classmethod
    def fit_config_to_data(cls, config: TrainConfig, data: L.LightningDataModule) -> None:
        from diffvi.data.modules import FeatureDataModule, ImageDataModule

        if config.num_labelled and not isinstance(data, ImageDataModule):
            raise ValueError(
                "semi-supervised training (num_labelled > 0) needs a registered data set"
            )
        if isinstance(data, FeatureDataModule) and config.likelihood != "real-gaussian":
            # standardised features are real-valued: the Bernoulli default becomes a Gaussian
            # of unbounded mean; a Gaussian of mean in (0, 1) cannot fit them
            if config.likelihood != "bernoulli":
                raise ValueError(
                    f"likelihood {config.likelihood!r} cannot fit standardised table features "
                    "(real-valued): use likelihood 'real-gaussian' (--likelihood real-gaussian)"
                )
            config.likelihood = "real-gaussian"
        config.event_shape = list(data.event_shape)
        saved = getattr(data, "table_features", None)  # a table's columns, mean and std
        config.features = None if saved is None else saved.to_dict()

    def attach_data(self, data: L.LightningDataModule, resumed: bool) -> None:
        if self.config.num_labelled == 0:
            return
        classes, parts = data.num_classes, self.model.prior.num_partitions
        if classes is None or classes > parts:
            raise ValueError(
                f"semi-supervised training needs one prior partition per class: "
                f"{self.config.data_name} has {classes} classes, prior {self.config.prior!r} has "
                f"{parts} partitions"
            )

    @torch.no_grad()
    def encode(
        self, x: Tensor, *, seed: int = 0, batch_size: int = 500, progress: bool = False
    ) -> Tensor:
        """Latents ``[N, d]`` of model inputs ``x [N, *event_shape]`` (images, or a table's
        standardised rows): one posterior draw per item (DDVI's protocol, as ``diffvi
        embed``), noise from a generator seeded with ``seed``; float32 on the CPU. A model
        trained on the deterministic DDIM chain (``ddvi-official``, ``ddvi-heads-official``)
        maps items by that chain, as it trained."""
        from diffvi.evaluation.representation import embed_latents

        device = next(self.posterior.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        official = OBJECTIVES[self.config.objective].ddim_chain
        sampler = getattr(self.posterior, "sampler", None)
        if official:
            self.posterior.sampler = "ddim"
        try:
            return embed_latents(self.posterior, x, generator, batch_size, progress, "embed")
        finally:
            if official:
                self.posterior.sampler = sampler

    def callbacks(self, progress_bar: bool) -> list[L.Callback]:
        from diffvi.training.callbacks import BatchClock, PosteriorWarmup, StageSchedule

        callbacks: list[L.Callback] = []
        if self.config.warmup_steps:
            callbacks.append(PosteriorWarmup(self.config.warmup_steps, progress=progress_bar))
        if self.stage2_objective is not None:
            callbacks.append(StageSchedule())
        elif isinstance(self.objective, OfficialClusterHeads):
            callbacks.append(BatchClock())
        return callbacks

    # -- training -------------------------------------------------------------------------
    def loss(self, batch: tuple[Tensor, Tensor]) -> LossOutput:
        x = batch[0]
        if self.config.label_conditioned:
            out = self.semisupervised(self.model, self.posterior, x, batch[1])
        elif self.semisupervised is not None:
            out = self.semisupervised(self.model, self.posterior, x, batch[1], self.classifier)
        else:
            out = self.objective(self.model, self.posterior, x)
        return LossOutput(out.loss, {"bound": out.bound.mean(), **out.metrics}, x.shape[0])

    def manual_step(self, batch: Any, optimizers: list[Any], backward: Any) -> LossOutput:
        """The AAE's two steps on one batch: generator (decoder + posterior), then
        discriminator on fresh encodings by the updated posterior; or a step of the official
        two-stage recipe (:meth:`official_step`)."""
        if self.stage2_objective is not None:
            return self.official_step(batch, optimizers, backward)
        if isinstance(self.objective, OfficialClusterHeads):
            return self.heads_loop_step(batch, optimizers, backward)
        x = batch[0]
        opt_g, opt_d = optimizers
        out = self.objective(self.model, self.posterior, x)
        opt_g.zero_grad()
        backward(out.loss)
        opt_g.step()
        d_loss = self.objective.discriminator_loss(self.model, self.posterior, x)
        opt_d.zero_grad()
        backward(d_loss)
        # The wrapped optimiser's step would count a second global step per batch; the raw
        # one keeps global_step (max_steps, logging, checkpoints) counting batches.
        getattr(opt_d, "optimizer", opt_d).step()
        metrics = {"bound": out.bound.mean(), **out.metrics, "d_step_loss": d_loss.detach()}
        # Both losses must be finite: the module checks this one.
        return LossOutput(out.loss.detach() + 0 * d_loss.detach(), metrics, x.shape[0])

    def official_step(self, batch: Any, optimizers: list[Any], backward: Any) -> LossOutput:
        """One batch of the official recipe at ``current_step`` (see the module docstring):
        stage 1, one step of the first optimiser; stage 2, a wake step (the second optimiser
        while the decoder is frozen, the third after) then ``sleep_steps`` sleep steps of the
        third. Only the first step of a batch goes through Lightning's wrapper, so that
        ``global_step`` counts batches."""
        x = batch[0]
        first_opt, frozen_opt, full_opt = optimizers
        start, free = (int(v) for v in self.stage_boundaries)
        if start < 0:
            raise RuntimeError(
                "the stage boundaries are not fixed: train a stage2 run with diffvi.training.fit "
                "(its StageSchedule callback), or call fix_stage_boundaries first"
            )
        step = self.current_step
        one = torch.ones((), device=x.device)
        if step < start:
            out = self.objective(self.model, self.posterior.first, x)
            first_opt.zero_grad()
            backward(out.loss)
            first_opt.step()
            metrics = {"bound": out.bound.mean(), **out.metrics, "stage": one}
            return LossOutput(out.loss.detach(), metrics, x.shape[0])
        if int(self.posterior.stage) == 1:
            self.posterior.start_second_stage()
        posterior, objective = self.posterior.second, self.stage2_objective
        frozen = step < free
        out = objective(self.model, posterior, x)
        frozen_opt.zero_grad()
        full_opt.zero_grad()
        backward(out.loss)
        (frozen_opt if frozen else full_opt).step()
        sleep = _extra_steps(
            full_opt,
            backward,
            objective.sleep_steps,
            lambda: objective.sleep_loss(self.model, posterior, x.shape[0]),
            weight=objective.beta_sleep,
        )
        metrics = {
            "bound": out.bound.mean(),
            **out.metrics,
            "sleep": sleep,
            "stage": 2 * one,
            "decoder_frozen": one * frozen,
        }
        # Both losses must be finite: the module checks this one.
        return LossOutput(out.loss.detach() + 0 * sleep, metrics, x.shape[0])

    def heads_loop_step(self, batch: Any, optimizers: list[Any], backward: Any) -> LossOutput:
        """One batch of the official clustering model's loop (see the module docstring): the
        wake step, and on an epoch's last batch the heads and sleep steps after it. Only the
        wake step goes through Lightning's wrapper, so that ``global_step`` counts batches."""
        x = batch[0]
        objective: OfficialClusterHeads = self.objective  # type: ignore[assignment]
        wake_opt, heads_opt, sleep_opt = optimizers
        out = objective(self.model, self.posterior, x)
        wake_opt.zero_grad()
        backward(out.loss)
        torch.nn.utils.clip_grad_norm_(self._chain_parameters(), objective.chain_clip)
        wake_opt.step()
        metrics = {"bound": out.bound.mean(), **out.metrics}
        if self.epoch_ending:
            epoch, model, posterior = self.current_epoch, self.model, self.posterior
            count = objective.steps_after_epoch(epoch)
            fantasies = objective.sleep.sleep_batch or x.shape[0]
            metrics["heads_loss"] = _extra_steps(
                heads_opt, backward, count,
                lambda: objective.heads_loss(model, posterior, fantasies, epoch),
            )  # fmt: skip
            metrics["sleep"] = _extra_steps(
                sleep_opt, backward, count,
                lambda: objective.sleep_loss(model, posterior, fantasies),
            )  # fmt: skip
            metrics["head_gap"] = model.prior.min_gap()
        return LossOutput(out.loss.detach(), metrics, x.shape[0])

    def _chain_parameters(self) -> list[torch.nn.Parameter]:
        """The diffusion posterior's reverse chain (all but its encoder of q(y_T|x)): the
        official ``G``."""
        return [
            p for name, p in self.posterior.named_parameters() if not name.startswith("encoder.")
        ]

    def validate(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Metric]:
        x = batch[0]
        posterior, objective = self.active_stage()
        out = objective(self.model, posterior, x)
        metrics: dict[str, Metric] = {
            "bound": out.bound.mean(),
            "iwae": self.val_objective(self.model, posterior, x).bound.mean(),
        }
        if self.semisupervised is not None:
            metrics.update(self._accuracy(x, batch[1], out.z))
        return metrics

    def _accuracy(self, x: Tensor, labels: Tensor, z: Tensor | None) -> dict[str, Metric]:
        """``accuracy`` of argmax q(l|x) and ``latent_accuracy`` of argmax_l p(l|z) on the
        first posterior draw ``z[0]`` (items with label ``-1`` are skipped)."""
        known = labels >= 0
        count = int(known.sum())
        if count == 0:
            return {}
        predicted = self.label_classifier(x).argmax(-1)
        metrics: dict[str, Metric] = {
            "accuracy": ((predicted == labels)[known].float().mean(), count)
        }
        if z is not None:
            latent = top_layer(self.model, z[0])
            picked = prior_log_responsibilities(self.model.prior, latent).argmax(-1)
            metrics["latent_accuracy"] = ((picked == labels)[known].float().mean(), count)
        return metrics

    def _adam(self, parameters: Any, lr: float) -> torch.optim.Adam:
        preset = ADAM_PRESETS[self.config.adam]
        # fused: one kernel for all parameters, ~2x faster steps on CPU than foreach.
        return torch.optim.Adam(
            parameters, lr=lr, betas=preset["betas"], eps=preset["eps"], fused=True
        )

    def configure_optimizers(self) -> Any:
        if self.stage2_objective is not None:
            # Stage 1 (model + first posterior); stage 2 with the decoder frozen (second
            # posterior) and with it trained (model + second posterior): DiffVAE's optim,
            # DiffVAEWarmup's middle_optim and optim.
            lr, model = self.config.lr, list(self.model.parameters())
            first = list(self.posterior.first.parameters())
            second = list(self.posterior.second.parameters())
            return [
                self._adam(model + first, lr),
                self._adam(second, lr),
                self._adam(model + second, lr),
            ]
        if isinstance(self.objective, OfficialClusterHeads):
            # AutoClusteringDiffVAE's optim (model and posterior), cluster_optim, diff_optim.
            prior = self.model.prior
            heads = {id(p) for p in prior.parameters()}
            wake = [p for p in self.model.parameters() if id(p) not in heads]
            return [
                self._adam(wake + list(self.posterior.parameters()), self.config.lr),
                self._adam(prior.parameters(), self.objective.heads_lr / prior.speed),
                self._adam(self._chain_parameters(), self.objective.sleep_lr),
            ]
        if self.manual_optimization:
            g_lr, d_lr = self._base_lrs()
            generator = [*self.model.parameters(), *self.posterior.parameters()]
            return [self._adam(generator, g_lr), self._adam(self.discriminator.parameters(), d_lr)]
        optimizer = self._adam(self.parameters(), self.config.lr)
        if self.config.schedule == "constant":
            return {"optimizer": optimizer}
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, iwae_lr_factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def _base_lrs(self) -> tuple[float, float]:
        """(generator, discriminator) learning rates before any schedule."""
        d_lr = self.config.discriminator_lr
        return self.config.lr, self.config.lr if d_lr is None else d_lr

    def on_train_epoch_start(self, optimizers: list[Any], epoch: int) -> None:
        """Manual optimisation steps no scheduler: the AAE applies the IWAE schedule to both
        optimisers at the start of each epoch, from the epoch alone (nothing to restore)."""
        if self.config.schedule != "iwae":
            return
        factor = iwae_lr_factor(epoch)
        for optimizer, base in zip(optimizers, self._base_lrs(), strict=True):
            for group in optimizer.param_groups:
                group["lr"] = base * factor


def _round_half_up(value: float) -> int:
    """The nearest integer to ``value`` >= 0, halves rounded up."""
    return int(value + 0.5)
