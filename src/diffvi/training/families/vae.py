"""The VAE family: a VAE p(z) p(x|z) and its posterior q(z|x) (Gaussian, IAF or diffusion),
trained with a variational objective (ELBO, IWAE, DDVI, AAE), optionally semi-supervised.

Logged: ``train/bound`` (the bound, not the surrogate loss), ``val/bound`` (the training
objective's bound on held-out data), ``val/iwae`` (IWAE bound with ``val_k`` samples).
Semi-supervised runs (``config.num_labelled > 0``) also train the label classifier
``classifier`` (q(l|x), in the same Adam) with :class:`~diffvi.objectives.SemiSupervised` on the
batch's labels (``-1`` = unlabelled), log its terms, and validate on the held-out labels:
``val/accuracy`` (argmax q(l|x)) and ``val/latent_accuracy`` (argmax_l p(l|z) for one posterior
draw z: the prior partition the latent falls in).

``objective="aae"`` trains by manual optimisation: per batch a generator step (decoder and
posterior, on the AAE's reconstruction + adversarial loss) then a discriminator step, each with
its own Adam; ``global_step`` counts batches, as for the other objectives.
"""

import inspect
from typing import Any

import lightning as L
import torch
from torch import Tensor

from diffvi.models.vae import VAE, build_vae
from diffvi.objectives import AAE, IWAE, OBJECTIVES, Objective, SemiSupervised
from diffvi.objectives.semisupervised import prior_log_responsibilities, top_layer
from diffvi.posteriors import POSTERIORS
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
    ``made_hidden`` for ``"iaf"``) and ``posterior_options``.
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
    model, posterior = build_vae(
        config.event_shape,
        config.architecture,
        build_likelihood(config.likelihood, config.likelihood_scale, config.likelihood_min_scale),
        config.latent_dims,
        config.hidden,
        config.activation,
        prior=prior,
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
        )
    return model, posterior


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
    training_only = ("val_objective.",)

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        if not config.event_shape:
            raise ValueError("config.event_shape must be set (the shape of one observation)")
        self.model, self.posterior = build_model_from_config(config)
        self.objective = build_objective_from_config(config, self.model.latent_dim)
        self.semisupervised: SemiSupervised | None = None
        if config.num_labelled > 0:
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
        self.val_objective = IWAE(k=config.val_k)

    @property
    def manual_optimization(self) -> bool:  # type: ignore[override]
        return isinstance(self.objective, AAE)

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
        trained with ``ddvi-official`` maps items by its deterministic DDIM chain, as it
        trained."""
        from diffvi.evaluation.representation import embed_latents

        device = next(self.posterior.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        official = self.config.objective == "ddvi-official"
        sampler = getattr(self.posterior, "sampler", None)
        if official:
            self.posterior.sampler = "ddim"
        try:
            return embed_latents(self.posterior, x, generator, batch_size, progress, "embed")
        finally:
            if official:
                self.posterior.sampler = sampler

    def callbacks(self, progress_bar: bool) -> list[L.Callback]:
        if not self.config.warmup_steps:
            return []
        from diffvi.training.callbacks import PosteriorWarmup

        return [PosteriorWarmup(self.config.warmup_steps, progress=progress_bar)]

    # -- training -------------------------------------------------------------------------
    def loss(self, batch: tuple[Tensor, Tensor]) -> LossOutput:
        x = batch[0]
        if self.semisupervised is not None:
            out = self.semisupervised(self.model, self.posterior, x, batch[1], self.classifier)
        else:
            out = self.objective(self.model, self.posterior, x)
        return LossOutput(out.loss, {"bound": out.bound.mean(), **out.metrics}, x.shape[0])

    def manual_step(self, batch: Any, optimizers: list[Any], backward: Any) -> LossOutput:
        """The AAE's two steps on one batch: generator (decoder + posterior), then
        discriminator on fresh encodings by the updated posterior."""
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

    def validate(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Metric]:
        x = batch[0]
        out = self.objective(self.model, self.posterior, x)
        metrics: dict[str, Metric] = {
            "bound": out.bound.mean(),
            "iwae": self.val_objective(self.model, self.posterior, x).bound.mean(),
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
        predicted = self.classifier(x).argmax(-1)
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
