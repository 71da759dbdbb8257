"""The Lightning module that trains a VAE and its posterior with a variational objective."""

from typing import Any

import lightning as L
import torch
from torch import Tensor

from diffvi.models.vae import VAE, build_vae
from diffvi.objectives import AAE, DDVI, ELBO, IWAE, Objective, OfficialDDVI, SemiSupervised
from diffvi.objectives.semisupervised import prior_log_responsibilities, top_layer
from diffvi.posteriors.base import Posterior
from diffvi.training.config import (
    ADAM_PRESETS,
    DEFAULT_MADE_HIDDEN,
    TrainConfig,
    iwae_lr_factor,
)

# Width of the context features c(x) that the conditional diffusion posterior's denoiser sees.
DIFFUSION_CONTEXT_DIM = 32


def build_objective_from_config(config: TrainConfig, latent_dim: int | None = None) -> Objective:
    """The training objective a config names (``k`` is IWAE's k, the ELBO's sample count,
    DDVI's number of chain draws, or the AAE's draws per data point). ``latent_dim`` (the
    model's) builds the AAE's discriminator at once; without it, it is built on first use."""
    if config.objective == "aae":
        return AAE(
            adversarial_weight=config.adversarial_weight,
            latent_dim=latent_dim,
            num_samples=config.k,
            deterministic=config.deterministic_encoder,
        )
    if config.objective == "elbo":
        return ELBO(num_samples=config.k, analytic_kl=config.analytic_kl)
    if config.objective == "ddvi-official":
        return OfficialDDVI(
            num_samples=config.k,
            kl_weight=config.beta_reg,
            beta_sleep=config.beta_sleep,
            sleep_steps=config.sleep_steps,
        )
    if config.objective == "ddvi":
        return DDVI(
            num_samples=config.k,
            beta_reg=config.beta_reg,
            beta_sleep=config.beta_sleep,
            sleep_steps=config.sleep_steps,
            wake_updates_chain=config.wake_updates_chain,
        )
    return IWAE(k=config.k, estimator=config.estimator)


def build_model_from_config(config: TrainConfig) -> tuple[VAE, Posterior]:
    """The model p (with the config's prior) and posterior q a config names.

    ``posterior="gaussian"``: :func:`build_vae`'s mirrored MLPs. ``"diffusion"``: the same
    decoder with :func:`~diffvi.posteriors.build_diffusion_posterior` (encoder, context and
    denoiser MLPs of ``hidden[0]``, T = ``diffusion_steps``, β linear from 1e-4 to
    ``beta_end``) in place of the Gaussian encoder. ``"iaf"``: the same decoder with
    :func:`~diffvi.posteriors.build_iaf_posterior` (encoder MLP of ``hidden[0]``,
    ``iaf_flows`` steps of MADE ``made_hidden``).
    """
    from diffvi.distributions.likelihoods import build_likelihood
    from diffvi.distributions.smoothed import SmoothedPrior
    from diffvi.distributions.toy2d import build_prior
    from diffvi.posteriors.diffusion import build_diffusion_posterior
    from diffvi.posteriors.iaf import build_iaf_posterior

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
    if config.posterior == "diffusion":
        hidden = config.hidden[0] if config.hidden else build_vae_hidden(config)
        posterior = build_diffusion_posterior(
            model.data_dim,
            model.latent_dim,
            num_steps=config.diffusion_steps,
            hidden=hidden,
            context_dim=DIFFUSION_CONTEXT_DIM,
            conditional=config.conditional,
            activation=config.activation,
            beta_end=config.beta_end,
        )
    elif config.posterior == "iaf":
        posterior = build_iaf_posterior(
            model.data_dim,
            model.latent_dim,
            encoder_hidden=config.hidden[0] if config.hidden else build_vae_hidden(config),
            num_flows=config.iaf_flows,
            made_hidden=config.made_hidden or DEFAULT_MADE_HIDDEN,
            activation=config.activation,
        )
    return model, posterior


def build_vae_hidden(config: TrainConfig) -> list[int]:
    """The bottom layer's hidden sizes of the config's architecture preset."""
    from diffvi.models.vae import ARCHITECTURES

    return list(ARCHITECTURES[config.architecture]["hidden"][0])


class VAEModule(L.LightningModule):
    """Trains ``model`` (p) and ``posterior`` (q) by minimising ``objective``'s loss.

    Logged: ``train/bound`` (the bound, not the surrogate loss), ``val/bound`` (the training
    objective's bound on held-out data), ``val/iwae`` (IWAE bound with ``val_k`` samples).
    Semi-supervised runs (``config.num_labelled > 0``) also train the label classifier
    ``classifier`` (q(l|x), in the same Adam) with :class:`~diffvi.objectives.SemiSupervised`
    on the batch's labels (``-1`` = unlabelled), log its terms (``train/label_term``,
    ``train/classifier_loss``, ``train/labelled_fraction``), and validate on the held-out labels:
    ``val/accuracy`` (argmax q(l|x)) and ``val/latent_accuracy`` (argmax_l p(l|z) for one
    posterior draw z: the prior partition the latent falls in). ``val/bound`` stays the
    unsupervised bound.
    Built from a ``TrainConfig`` only, so a checkpoint's hyperparameters rebuild it; the
    config picks the posterior (Gaussian, or DDVI's diffusion posterior) and the prior
    (:func:`build_model_from_config`).

    ``objective="aae"`` trains by manual optimisation: per batch a generator step (decoder and
    posterior, on the AAE's reconstruction + adversarial loss) then a discriminator step, each
    with its own Adam. The discriminator is the submodule ``discriminator`` (checkpointed,
    moved and wrapped with the module). ``global_step`` counts batches, as for the other
    objectives; the IWAE schedule sets both learning rates at the start of each epoch.
    """

    def __init__(self, config: TrainConfig | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        if not config.event_shape:
            raise ValueError("config.event_shape must be set (the shape of one observation)")
        self.config = config
        self.save_hyperparameters({"config": config.to_dict()})
        self.model, self.posterior = build_model_from_config(config)
        self.objective = build_objective_from_config(config, self.model.latent_dim)
        self.semisupervised: SemiSupervised | None = None
        if config.num_labelled > 0:
            from diffvi.models.semisupervised import build_label_classifier

            self.classifier = build_label_classifier(
                self.model.data_dim,
                self.model.prior.num_partitions,
                config.hidden[0] if config.hidden else build_vae_hidden(config),
                config.activation,
            )
            self.semisupervised = SemiSupervised(
                self.objective, config.label_weight, config.classifier_weight
            )
        self.adversarial = isinstance(self.objective, AAE)
        if self.adversarial:
            self.automatic_optimization = False
            self.discriminator = self.objective.ensure_discriminator(self.model.latent_dim)
        self.val_objective = IWAE(k=config.val_k)
        # Non-finite losses are flagged on the device and checked at log/epoch/checkpoint
        # time, which avoids a host sync on every step.
        self.register_buffer("_nonfinite_steps", torch.zeros((), dtype=torch.long))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x = batch[0]
        if self.adversarial:
            return self._adversarial_step(x)
        if self.semisupervised is not None:
            out = self.semisupervised(self.model, self.posterior, x, batch[1], self.classifier)
        else:
            out = self.objective(self.model, self.posterior, x)
        self._nonfinite_steps += (~torch.isfinite(out.loss)).long()
        self._log_train(out, x.shape[0])
        return out.loss

    def _log_train(self, out: Any, batch_size: int) -> None:
        self.log("train/bound", out.bound.mean(), prog_bar=True, batch_size=batch_size)
        for name, value in out.metrics.items():
            self.log(f"train/{name}", value, batch_size=batch_size)

    def _adversarial_step(self, x: Tensor) -> Tensor:
        """The AAE's two steps on one batch: generator (decoder + posterior), then
        discriminator on fresh encodings by the updated posterior."""
        opt_g, opt_d = self.optimizers()
        out = self.objective(self.model, self.posterior, x)
        opt_g.zero_grad()
        self.manual_backward(out.loss)
        opt_g.step()
        d_loss = self.objective.discriminator_loss(self.model, self.posterior, x)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        # The wrapped optimiser's step would count a second global step per batch; the raw
        # one keeps global_step (max_steps, logging, checkpoints) counting batches.
        getattr(opt_d, "optimizer", opt_d).step()
        finite = torch.isfinite(out.loss) & torch.isfinite(d_loss)
        self._nonfinite_steps += (~finite).long()
        self._log_train(out, x.shape[0])
        self.log("train/d_step_loss", d_loss.detach(), batch_size=x.shape[0])
        return out.loss.detach()

    def on_train_epoch_start(self) -> None:
        # Manual optimisation: Lightning steps no scheduler, so the IWAE schedule is applied
        # here, from the epoch alone (nothing to restore on resume).
        if not self.adversarial or self.config.schedule != "iwae":
            return
        factor = iwae_lr_factor(self.current_epoch)
        for optimizer, base in zip(self.optimizers(), self._base_lrs(), strict=True):
            for group in optimizer.param_groups:
                group["lr"] = base * factor

    def _base_lrs(self) -> tuple[float, float]:
        """(generator, discriminator) learning rates before any schedule."""
        d_lr = self.config.discriminator_lr
        return self.config.lr, self.config.lr if d_lr is None else d_lr

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (self.global_step % self.trainer.log_every_n_steps) == 0:
            self.check_finite()

    def check_finite(self) -> None:
        """Stop training with a clear message once any loss was NaN or infinite."""
        if int(self._nonfinite_steps) > 0:
            raise FloatingPointError(
                f"the training loss became NaN or infinite (by step {self.global_step}, "
                f"epoch {self.current_epoch}); stopping before writing a checkpoint. "
                "Try a lower learning rate, or check the data range for the likelihood."
            )

    def on_train_epoch_end(self) -> None:
        self.check_finite()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x = batch[0]
        out = self.objective(self.model, self.posterior, x)
        bound = out.bound.mean()
        iwae = self.val_objective(self.model, self.posterior, x).bound.mean()
        self.log("val/bound", bound, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        self.log("val/iwae", iwae, batch_size=x.shape[0], sync_dist=True)
        if self.semisupervised is not None:
            self._log_accuracy(x, batch[1], out.z)

    def _log_accuracy(self, x: Tensor, labels: Tensor, z: Tensor | None) -> None:
        """``val/accuracy`` of argmax q(l|x) and ``val/latent_accuracy`` of argmax_l p(l|z) on
        the first posterior draw ``z[0]`` (items with label ``-1`` are skipped)."""
        known = labels >= 0
        count = int(known.sum())
        if count == 0:
            return
        predicted = self.classifier(x).argmax(-1)
        accuracy = (predicted == labels)[known].float().mean()
        self.log("val/accuracy", accuracy, prog_bar=True, batch_size=count, sync_dist=True)
        if z is not None:
            latent = top_layer(self.model, z[0])
            picked = prior_log_responsibilities(self.model.prior, latent).argmax(-1)
            latent_accuracy = (picked == labels)[known].float().mean()
            self.log("val/latent_accuracy", latent_accuracy, batch_size=count, sync_dist=True)

    def _adam(self, parameters: Any, lr: float) -> torch.optim.Adam:
        preset = ADAM_PRESETS[self.config.adam]
        # fused: one kernel for all parameters, ~2x faster steps on CPU than foreach.
        return torch.optim.Adam(
            parameters, lr=lr, betas=preset["betas"], eps=preset["eps"], fused=True
        )

    def configure_optimizers(self) -> Any:
        if self.adversarial:
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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_finite()
        # RNG states make a resumed run draw the same noise as an uninterrupted one.
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Applied in on_train_start: the sanity-check validation that Lightning runs after
        # restoring would otherwise consume random numbers the uninterrupted run did not.
        self._restored_rng = checkpoint.get("rng")

    def on_train_start(self) -> None:
        rng = getattr(self, "_restored_rng", None)
        if rng is None:
            return
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self._restored_rng = None
