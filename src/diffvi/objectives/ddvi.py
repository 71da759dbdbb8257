"""Denoising diffusion variational inference (DDVI; Piriyakulkij, Wang & Kuleshov, arXiv
2401.02739): the regularised ELBO that trains a :class:`~diffvi.posteriors.DiffusionPosterior`.

With auxiliary latents y = (y_1 … y_T), y_0 = z, the posterior's joint q(y, z|x) and the
forward noising chain r(y|z) = Π_t r(y_t | y_{t−1}), the objective to maximise is

    L(x) = L_rec + β_reg · L_reg − β_sleep · L_sleep,
    L_rec = E_q[log p(x|z)],
    L_reg = −KL(q(y, z|x) ‖ r(y|z) p(z))
          = E_q[log p(z) + log r(y|z) − log q(y_T|x) − Σ_t log q(y_{t−1}|y_t, x)],
    L_sleep = E_{z~p(z), x̂~p(x|z)} E_{t, ε} ‖ε − ε_φ(√ᾱ_t z + √(1−ᾱ_t) ε, t, x̂)‖².

L_rec + L_reg is the auxiliary-variable ELBO (Agakov & Barber 2004; Ranganath et al. 2016's
hierarchical variational models): since ∫ r(y|z) dy = 1, log p(x) ≥ L_rec + L_reg for any
r, with equality when q(y, z|x) = p(z|x) r(y|z). That (with β_reg = 1 whatever the training
weight) is the ``bound`` this objective reports. Every term is estimated on the same
reparameterised draws of the whole chain.

L_sleep is the denoising (ε-prediction) loss of the reverse chain on "fantasy" pairs from the
model (wake-sleep, Hinton et al. 1995). Up to weights and constants it is the reverse-step part
of a bound on E_p(x) KL(p(z|x) ‖ q(z|x)), the forward KL that makes q cover all of p(z|x)'s
modes (with DDPM's simplified weights, Ho et al. 2020 eq. 14; the KL(r(y_T|z) ‖ q(y_T|x̂)) term,
which would train the encoder, is left out). It trains q only: z and x̂ are drawn without
gradient, so no gradient reaches the model. The unconditional ("latent wake-sleep") posterior
ignores x̂, and then only z ~ p(z) is drawn.

Mode coverage depends on the schedule. The bound is tight when q(y, z|x) = p(z|x) r(y|z), whose
y_T-marginal ∫ p(z|x) r(y_T|z) dz is as multimodal as p(z|x) when ᾱ_T is near 1. With the
official schedule (β from 1e-4 to 0.02, T = 20: ᾱ_T ≈ 0.82) a Gaussian q(y_T|x) cannot match
it, and on a bimodal toy (p(z) = N(0, 1), p(x|z) = N(|z|, σ²)) the wake term drives q to one
mode within a few hundred steps even with the sleep term on. A schedule that noises to
ᾱ_T ≲ 0.2 (T = 5 with β up to 0.5, as in tests/objectives/test_ddvi.py) makes r(y_T|z) nearly
forget z, and q then keeps both modes (σ = 0.5); with a sharp likelihood (σ ≤ 0.2) a few
hundred steps still end in one mode.

Options and defaults, beside the official code (GitHub topwasu/DDVI,
``algorithms/vaes/diff_vae.py`` classes ``DiffVAE``, ``DiffVAEWarmup``; configs
``conf/model/diff_vae*.yaml``):

- ``beta_reg = 1`` (the bound itself). Official: a KL weight of 0.01 (``diff_vae``) or 0.003
  (``diff_vae_warmup``) on a different regulariser: KL(q(y_T|x) ‖ N(0, I)) in ``DiffVAE``;
  ``DiffVAEWarmup`` adds −log p(z) and, weighted by ``diff_weight``, a Huber loss between the
  reverse mean and the forward posterior mean on the wake chain in place of the reverse-step
  terms. Its ``get_elbo`` treats r(y_T | ·) as N(0, I), which is not a bound when ᾱ_T ≈ 0.8.
  Here log r(y|z) is the exact forward chain, so L_rec + L_reg is a bound for any schedule.
- ``beta_sleep = 1``, ``sleep_steps = 1``, ``sleep_batch = B``. Official: ``diff_weight = 1``
  and ``diff_ct = 3`` sleep batches of 128, each its own optimiser step after the wake step.
  Here the ``sleep_steps`` batches are averaged into the one returned loss (same expected
  gradient, one optimiser step); call :meth:`DDVI.sleep_loss` for separate sleep steps.
- ``sleep_x = "sample"`` draws x̂ ~ p(x|z); ``"mean"`` uses E[x|z] (the official code feeds
  the decoder's output to the context network).
- ``huber = False`` (squared error, L_simple); ``True`` uses the official smooth-L1 loss.
- The official pipeline has two stages: ``DiffVAE`` (:class:`OfficialDDVI`, an unconditional
  T = 20 chain) and then ``DiffVAEWarmup`` (:class:`OfficialDDVIStage2`: a new x-conditional
  T = 40 chain, a −log p_KDE(z) term, a wake Huber loss on the chain's steps, separate sleep
  optimiser steps, the decoder frozen for its first 30 of 100 epochs). Scheduling the stages,
  their optimisers and the frozen decoder is the training loop's job (``TrainConfig.stage2``,
  ``diffvi train ddvae --recipe official``). The official reverse steps are deterministic
  DDIM, for which this bound does not exist: a ``DiffusionPosterior`` with ``sampler="ddim"``
  is refused here with a ValueError.
"""

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from diffvi.distributions.gaussian import kl_to_standard_normal
from diffvi.objectives.base import Objective, ObjectiveOutput, check_data, log_density_ratio

SLEEP_X = ("sample", "mean")


class DDVI(Objective):
    """DDVI's wake-sleep regularised auxiliary ELBO.

    Args:
        k: K draws of the chain per data point for the wake terms.
        beta_reg: weight of L_reg in the training loss (the reported bound uses 1).
        beta_sleep: weight of the sleep (denoising) loss; 0 skips it.
        sleep_steps: number of fantasy batches whose losses are averaged.
        sleep_batch: fantasy pairs per sleep batch; ``None``: the data batch size B.
        sleep_x: ``"sample"`` (x̂ ~ p(x|z)) or ``"mean"`` (x̂ = E[x|z]).
        huber: smooth-L1 instead of squared error in the sleep loss.
        wake_updates_chain: whether the wake terms (L_rec, L_reg) train the reverse chain's
            denoiser and context networks; ``False`` leaves them to the sleep term, and the
            wake terms then train only the encoder of q(y_T|x) and the model.
    """

    diffusion_posterior = True
    config_fields: ClassVar[dict[str, str]] = {
        "k": "k",
        "beta_reg": "beta_reg",
        "beta_sleep": "beta_sleep",
        "sleep_steps": "sleep_steps",
        "wake_updates_chain": "wake_updates_chain",
    }

    name = "ddvi"

    def __init__(
        self,
        k: int = 1,
        beta_reg: float = 1.0,
        beta_sleep: float = 1.0,
        sleep_steps: int = 1,
        sleep_batch: int | None = None,
        sleep_x: str = "sample",
        huber: bool = False,
        wake_updates_chain: bool = True,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if beta_reg < 0 or beta_sleep < 0:
            raise ValueError(
                f"beta_reg and beta_sleep must be >= 0, got beta_reg={beta_reg}, "
                f"beta_sleep={beta_sleep}"
            )
        if sleep_steps < 1:
            raise ValueError(f"sleep_steps must be >= 1, got {sleep_steps}")
        if sleep_batch is not None and sleep_batch < 1:
            raise ValueError(f"sleep_batch must be >= 1 or None, got {sleep_batch}")
        if sleep_x not in SLEEP_X:
            raise ValueError(f"sleep_x must be one of {SLEEP_X}, got {sleep_x!r}")
        self.k = k
        self.beta_reg = float(beta_reg)
        self.beta_sleep = float(beta_sleep)
        self.sleep_steps = sleep_steps
        self.sleep_batch = sleep_batch
        self.sleep_x = sleep_x
        self.huber = huber
        self.wake_updates_chain = wake_updates_chain

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        check_diffusion_posterior(posterior)
        check_data(model, x)
        if self.wake_updates_chain:
            s = posterior.sample(x, self.k)
        else:
            with posterior.frozen_chain():
                s = posterior.sample(x, self.k)
        rec = model.log_likelihood(x, s.z)  # [K, B]  L_rec
        # L_reg: log p(z) + log r(y|z) − log q(y, z|x) on the same draws of the chain.
        reg = -log_density_ratio(model, s)  # [K, B]
        bound = (rec + reg).mean(0)  # [B] the auxiliary ELBO, β_reg = 1
        wake = (rec + self.beta_reg * reg).mean(0).mean()
        loss = -wake
        metrics = {"rec": rec.detach().mean(), "reg": reg.detach().mean()}
        if self.beta_sleep > 0:
            batch = self.sleep_batch if self.sleep_batch is not None else x.shape[0]
            sleep = self.sleep_loss(model, posterior, batch)
            loss = loss + self.beta_sleep * sleep
            metrics["sleep"] = sleep.detach()
        else:
            metrics["sleep"] = torch.zeros((), dtype=bound.dtype, device=bound.device)
        return ObjectiveOutput(loss=loss, bound=bound.detach(), metrics=metrics, z=s.z)

    def sleep_loss(
        self,
        model,
        posterior,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Mean denoising loss of q on ``sleep_steps`` batches of ``batch_size`` fantasy pairs
        (z ~ p(z), x̂ ~ p(x|z), drawn without gradient): a scalar whose gradient reaches only
        the posterior's parameters. A label-conditioned chain (``posterior.num_labels`` > 0)
        learns from fantasy triples (l, z) ~ p(l) p(z|l) of the partitioned prior, x̂ ~ p(x|z),
        each denoised with its label."""
        check_diffusion_posterior(posterior)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        labelled = getattr(posterior, "num_labels", 0) > 0
        if labelled and len(getattr(model, "latent_dims", [0])) != 1:
            raise ValueError("a label-conditioned chain needs a model with one latent layer")
        total = None
        for _ in range(self.sleep_steps):
            options = {}  # the fantasies' labels, for a label-conditioned chain
            with torch.no_grad():
                if labelled:
                    z, options["label"] = model.prior.sample_with_labels(batch_size, generator)
                else:
                    z = model.sample_latent(batch_size, generator=generator)  # [N, D]
                x_hat = self._fantasy_x(model, z, generator) if posterior.conditional else None
            loss = posterior.denoising_loss(
                z, x_hat, generator=generator, huber=self.huber, **options
            )
            total = loss.mean() if total is None else total + loss.mean()
        return total / self.sleep_steps

    def _fantasy_x(self, model, z: Tensor, generator: torch.Generator | None) -> Tensor:
        params = model.decode(z)
        if self.sleep_x == "mean":
            x_hat = model.likelihood.mean(params)
        else:
            x_hat = model.likelihood.sample(params, generator)
        return x_hat.reshape(z.shape[0], *model.event_shape)


# The official diff_vae weights (kld_weight 0.01, diff_weight 1 against a reconstruction loss
# averaged over the 784 MNIST pixels), rewritten per image: multiplied by 784. The sleep weight
# multiplies the official sleep loss itself, ``F.smooth_l1_loss`` averaged over the batch *and*
# the D latent dimensions (``OfficialDDVI.sleep_loss``), not DDVI's loss summed over D.
OFFICIAL_KL_WEIGHT = 0.01 * 784
OFFICIAL_SLEEP_WEIGHT = 1.0 * 784
# OfficialDDVI's wake reconstruction: −log p(x|z), or the official `criterion: mse`.
RECONSTRUCTIONS = ("likelihood", "mse")


class OfficialDDVI(Objective):
    """The objective the official DDVI code trains (``DiffVAE._train_epoch``), offered beside
    :class:`DDVI` to reproduce its figures. It is not a bound.

    Per image, with y_T ~ q(y_T|x) = N(μ(x), σ(x)²) and z = the **deterministic DDIM** (η = 0)
    reverse chain from y_T:

        loss = −log p(x|z) + kl_weight · KL(q(y_T|x) ‖ N(0, I)) + beta_sleep · L_sleep,

    L_sleep the (Huber by default) noise-prediction loss on fantasy pairs as in DDVI, but
    averaged over the D latent dimensions as the official ``F.smooth_l1_loss`` (reduction
    ``'mean'`` over all N·D elements) is, where :class:`DDVI` sums over them
    (:meth:`sleep_loss`). The prior enters only through the sleep term: the chain is trained to
    carry N(0, I)-like y_T onto p(z), and the KL keeps the encoder's y_T near N(0, I). Defaults
    are the official weights in per-image units (``OFFICIAL_KL_WEIGHT`` = 7.84,
    ``OFFICIAL_SLEEP_WEIGHT`` = 784: its reconstruction loss is the mean over 784 pixels), so
    the loss is 784 × the official one; Huber sleep loss and x̂ = E[x|z] (the decoder's output,
    as the official code feeds it).

    A deterministic chain has no density, so there is nothing to bound with: ``bound`` reports,
    without gradient, DDVI's auxiliary bound of the **same networks run with stochastic DDPM
    steps** (a valid lower bound on log p(x) for that stochastic q, which is not the DDIM map
    the latents come from). ``posterior.sampler`` must be ``"ddpm"`` outside this call; the
    DDIM steps are switched on for the wake pass only. Reporting that bound costs one extra
    no-grad pass of the chain per call (~+30% per training step). Embed the latents of a model
    trained so with ``posterior.sampler = "ddim"`` (``diffvi embed`` does it for such runs).
    """

    diffusion_posterior = True
    ddim_chain = True
    config_fields: ClassVar[dict[str, str]] = {
        "k": "k",
        "kl_weight": "beta_reg",
        "beta_sleep": "beta_sleep",
        "sleep_steps": "sleep_steps",
    }

    name = "ddvi-official"

    def __init__(
        self,
        k: int = 1,
        kl_weight: float = OFFICIAL_KL_WEIGHT,
        beta_sleep: float = OFFICIAL_SLEEP_WEIGHT,
        sleep_steps: int = 1,
        sleep_batch: int | None = None,
        sleep_x: str = "mean",
        huber: bool = True,
        reconstruction: str = "likelihood",
    ) -> None:
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(
                f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}"
            )
        self.kl_weight = float(kl_weight)
        self.reconstruction = reconstruction
        # The sleep term, its checks and its options are DDVI's.
        self.sleep = DDVI(
            k=k,
            beta_sleep=beta_sleep,
            sleep_steps=sleep_steps,
            sleep_batch=sleep_batch,
            sleep_x=sleep_x,
            huber=huber,
        )

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        check_diffusion_posterior(posterior)
        check_data(model, x)
        mean, log_std = posterior.encode(x)
        k = self.sleep.k
        eps = torch.randn((k, *mean.shape), device=mean.device, dtype=mean.dtype)
        posterior.sampler = "ddim"
        try:
            z = posterior.reverse(mean + torch.exp(log_std) * eps, x).z  # [K, B, D]
        finally:
            posterior.sampler = "ddpm"
        if self.reconstruction == "mse":  # −mean_f (x_f − E[x_f|z])²
            flat = x.reshape(x.shape[0], -1)
            rec = -(model.likelihood.mean(model.decode(z)) - flat).square().mean(-1)
        else:
            rec = model.log_likelihood(x, z)  # [K, B]
        kl = kl_to_standard_normal(mean, log_std)  # [B]
        loss = -(rec.mean(0) - self.kl_weight * kl).mean()
        with torch.no_grad():
            s = posterior.sample(x, k)
            bound = (model.log_likelihood(x, s.z) - log_density_ratio(model, s)).mean(0)
        metrics = {"rec": rec.detach().mean(), "kl_y_T": kl.detach().mean()}
        beta_sleep = self.sleep.beta_sleep
        if beta_sleep > 0:
            batch = self.sleep.sleep_batch or x.shape[0]
            sleep = self.sleep_loss(model, posterior, batch)
            loss = loss + beta_sleep * sleep
            metrics["sleep"] = sleep.detach()
        return ObjectiveOutput(loss=loss, bound=bound, metrics=metrics, z=z)

    def sleep_loss(
        self,
        model,
        posterior,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The official sleep loss: the denoising loss of :meth:`DDVI.sleep_loss` averaged over
        the ``posterior.latent_dim`` latent dimensions as well as the fantasy pairs (the
        official ``F.smooth_l1_loss(ε, ε̂)``, reduction ``'mean'``); a scalar."""
        return self.sleep.sleep_loss(model, posterior, batch_size, generator) / posterior.latent_dim


# The official diff_vae_warmup weights (conf/model/diff_vae_warmup.yaml: kld_weight 0.003 on
# the KL and, through prior_z_weight 1, on −log p_KDE(z); diff_weight 1 on the wake and sleep
# Huber losses; diff_ct 3 sleep steps per batch), per image as above: × 784.
OFFICIAL_STAGE2_KL_WEIGHT = 0.003 * 784
OFFICIAL_STAGE2_PRIOR_WEIGHT = 0.003 * 784
OFFICIAL_STAGE2_WAKE_WEIGHT = 1.0 * 784
OFFICIAL_STAGE2_SLEEP_WEIGHT = 1.0 * 784
OFFICIAL_STAGE2_SLEEP_STEPS = 3


class OfficialDDVIStage2(Objective):
    """The second stage of the official DDVI pipeline (``DiffVAEWarmup._train_epoch``), trained
    after :class:`OfficialDDVI` on a new, x-conditional reverse chain (official: T = 40, a
    context network of x with 2 outputs). Not a bound.

    Per image, with y_T ~ q(y_T|x), the **deterministic DDIM** chain y_T → … → y_0 = z, and a
    step t ~ U{1, …, T} per draw, the wake loss (one optimiser step) is

        loss = −log p(x|z) + kl_weight · KL(q(y_T|x) ‖ N(0, I)) − prior_weight · log p(z)
               + wake_weight · Huber(y_{t−1}, μ̃_t(y_t, z)),

    μ̃_t(y_t, z) the mean of the forward posterior r(y_{t−1} | y_t, y_0 = z)
    (:meth:`~diffvi.diffusion.DiscreteSchedule.posterior_mean`) and y_{t−1} the chain's own step
    from y_t (the official ``weird_loss_at_step_t``), the Huber (smooth-L1, δ = 1) loss averaged
    over the draws and the D latent dimensions, gradients through both sides (the official code
    detaches neither). log p(z) is ``prior_score(z)`` where one is given (the official code's
    kernel density score, :class:`~diffvi.distributions.KernelDensityScore`), else the model's
    log prior. The sleep term is not in this loss: the official code takes ``sleep_steps``
    separate optimiser steps on ``beta_sleep`` · :meth:`sleep_loss` after each wake step (the
    training loop's job; ``VAEFamily`` does it).

    Defaults are the official weights per image (×784, as :class:`OfficialDDVI`'s):
    ``OFFICIAL_STAGE2_*``. ``bound`` reports, without gradient, DDVI's auxiliary bound of the
    same networks run with stochastic DDPM steps (as :class:`OfficialDDVI` does).
    """

    diffusion_posterior = True
    name = "ddvi-official-stage2"

    def __init__(
        self,
        k: int = 1,
        kl_weight: float = OFFICIAL_STAGE2_KL_WEIGHT,
        prior_weight: float = OFFICIAL_STAGE2_PRIOR_WEIGHT,
        wake_weight: float = OFFICIAL_STAGE2_WAKE_WEIGHT,
        beta_sleep: float = OFFICIAL_STAGE2_SLEEP_WEIGHT,
        sleep_steps: int = OFFICIAL_STAGE2_SLEEP_STEPS,
        sleep_batch: int | None = None,
        sleep_x: str = "mean",
        huber: bool = True,
        prior_score: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        weights = {
            "kl_weight": kl_weight,
            "prior_weight": prior_weight,
            "wake_weight": wake_weight,
            "beta_sleep": beta_sleep,
        }
        for name, value in weights.items():
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.kl_weight = float(kl_weight)
        self.prior_weight = float(prior_weight)
        self.wake_weight = float(wake_weight)
        self.beta_sleep = float(beta_sleep)
        self.sleep_steps = sleep_steps
        self.prior_score = prior_score
        if sleep_steps < 1:
            raise ValueError(f"sleep_steps must be >= 1, got {sleep_steps}")
        # One fantasy batch per sleep_loss call; its checks and options are DDVI's.
        self.sleep = DDVI(k=k, sleep_steps=1, sleep_batch=sleep_batch, sleep_x=sleep_x, huber=huber)

    @property
    def k(self) -> int:
        return self.sleep.k

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        check_diffusion_posterior(posterior)
        check_data(model, x)
        if posterior.num_steps < 1:
            raise ValueError("the official second stage needs a reverse chain of T >= 1 steps")
        mean, log_std = posterior.encode(x)
        eps = torch.randn((self.k, *mean.shape), device=mean.device, dtype=mean.dtype)
        posterior.sampler = "ddim"
        try:
            chain = posterior.reverse(mean + torch.exp(log_std) * eps, x).chain  # [T+1, K, B, D]
        finally:
            posterior.sampler = "ddpm"
        z = chain[-1]
        rec = model.log_likelihood(x, z)  # [K, B]
        kl = kl_to_standard_normal(mean, log_std)  # [B]
        log_prior = self.prior_score(z) if self.prior_score is not None else model.log_prior(z)
        wake = self.wake_loss(posterior.schedule, chain)
        loss = (
            -(rec.mean(0) - self.kl_weight * kl).mean()
            - self.prior_weight * log_prior.mean()
            + self.wake_weight * wake
        )
        with torch.no_grad():
            s = posterior.sample(x, self.k)
            bound = (model.log_likelihood(x, s.z) - log_density_ratio(model, s)).mean(0)
        metrics = {
            "rec": rec.detach().mean(),
            "kl_y_T": kl.detach().mean(),
            "log_prior": log_prior.detach().mean(),
            "wake": wake.detach(),
        }
        return ObjectiveOutput(loss=loss, bound=bound, metrics=metrics, z=z)

    @staticmethod
    def wake_loss(schedule, chain: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The official wake Huber loss on a run of the reverse chain ``chain [T+1, K, B, D]``
        (``chain[i]`` = y_{T−i}): one step t ~ U{1, …, T} per draw, Huber(y_{t−1},
        μ̃_t(y_t, y_0)) averaged over the K·B draws and the D dimensions; a scalar."""
        steps = chain.shape[0] - 1
        if steps != schedule.num_steps:
            raise ValueError(
                f"chain must hold T + 1 = {schedule.num_steps + 1} states, got {chain.shape[0]}"
            )
        draws = chain.shape[1:-1]
        t = torch.randint(1, steps + 1, draws, generator=generator, device=chain.device)
        index = (steps - t).unsqueeze(0).unsqueeze(-1).expand(1, *chain.shape[1:])
        y_t = chain.gather(0, index)[0]
        y_prev = chain.gather(0, index + 1)[0]
        target = schedule.posterior_mean(chain[-1], y_t, t)
        return F.smooth_l1_loss(y_prev, target)

    def sleep_loss(
        self,
        model,
        posterior,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One official sleep batch (``DiffVAEWarmup``'s ``diff_ct`` loop body): the Huber
        noise-prediction loss of the chain on ``batch_size`` fantasy pairs (z ~ p(z), x̂ the
        decoder's output, no gradient to the model), averaged over the pairs and the D latent
        dimensions; unweighted (the caller multiplies by ``beta_sleep``)."""
        return self.sleep.sleep_loss(model, posterior, batch_size, generator) / posterior.latent_dim


def check_diffusion_posterior(posterior) -> None:
    """ValueError unless ``posterior`` is a diffusion posterior with stochastic steps (what
    DDVI's bound and sleep term need)."""
    sampler = getattr(posterior, "sampler", None)
    if sampler == "ddim":
        raise ValueError(
            "DDVI needs stochastic reverse steps: with sampler='ddim' the chain is "
            "deterministic, q(y, z|x) has no density and the bound does not exist; "
            "set posterior.sampler = 'ddpm'"
        )
    if not hasattr(posterior, "denoising_loss"):
        raise ValueError(
            "DDVI needs a DiffusionPosterior (auxiliary log_q_joint, log_r and a denoising "
            f"loss), got {type(posterior).__name__}; use ELBO or IWAE for this posterior"
        )
