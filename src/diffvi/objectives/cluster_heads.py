"""DDVI with learned cluster heads: the official DDVI code's clustering model for genotypes
(GitHub topwasu/DDVI, ``algorithms/vaes/diff_vae.py``, ``AutoClusteringDiffVAE``) on DDVI's
bound.

The model's prior is :class:`~diffvi.distributions.ClusterHeadsPrior`, p(z) = (1/K) Σ_k
N(z; h_k, s² I) with learnable heads h. The loss to minimise is

    loss = −(L_rec + β_reg L_reg) + β_sleep L_sleep(h) + λ_rep R_η(h) + λ_box B_c(h),

the first two terms :class:`~diffvi.objectives.DDVI`'s, except that the sleep term's fantasy
latents z = h_k + s ε are drawn **with** gradient to the heads (x̂ = E or a draw of p(x|z)
without it), so the denoising loss of the reverse chain also moves the heads, as in the
official code, where the heads are trained by that loss on prior samples plus the repulsion
R_η (heads closer than η are pushed apart, ``ClusterHeadsPrior.repulsion``) and a box
penalty B_c (heads kept in [−c, c]^D, ``ClusterHeadsPrior.box_penalty``). Here L_reg's log
p(z) trains the heads too (it pulls them to the posterior's latents, as EM moves a mixture's
means); the official wake loss has no log p(z) (it is :class:`~diffvi.objectives.OfficialDDVI`'s:
reconstruction + a KL of q(y_T|x) to N(0, I)). The ``bound`` is DDVI's auxiliary ELBO under the
heads prior; the head losses enter only the training loss.

What differs from the official training loop (``AutoClusteringDiffVAE._train_epoch``), which
is not a single loss: after every epoch e it takes e + 1 steps of the heads alone (Adam, lr
0.01) on the denoising loss plus w_e R_η + 100 B_2.5 (w_e = 1 to epoch 100, then rising by 1
every 10 epochs), then e + 1 sleep steps of the chain alone (Adam, lr 10⁻³); the wake steps
clip the chain's gradient norm to 0.1. Here all terms are one loss and one optimiser step per
batch, λ_rep is constant (100 by default: log p(z) pulls the heads here, so the official 1
would leave them closer than η), and the repulsion and box terms are their expectations over
head pairs (no sampled pairs).

:class:`OfficialClusterHeads` (``ddvi-heads-official``) is that official loop itself, for the
family to run (``diffvi embed genotypes --clustering heads-official``): its call is the wake
loss, and it gives the per-epoch heads and sleep losses and their schedule.
"""

from typing import ClassVar

import torch
from torch import Tensor

from diffvi.distributions.cluster_heads import ClusterHeadsPrior
from diffvi.objectives.base import ObjectiveOutput
from diffvi.objectives.ddvi import DDVI, OfficialDDVI, check_diffusion_posterior

OFFICIAL_ETA = 1.5  # conf/model/diff_vae_autoclustering*.yaml: eta
OFFICIAL_BOX = 2.5  # _calc_cluster_loss: "make sure stays within 2.5"
OFFICIAL_BOX_WEIGHT = 100.0
# λ_rep. The official weight is 1 (to epoch 100), but there the heads' only other gradient is
# the denoising loss; here the bound's log p(z) pulls them too, by (z − h_k)/s² (s = 0.125: 64
# per unit of offset), and at 1 heads stay closer than η. Chosen on the tuning seed (0) of the
# simulated cohorts, 20 epochs, σ = 0.03, λ ∈ {1, 10, 100, 1000}: nearest-head NMI 0.562, 0.566,
# 0.604, 0.592 (GMM NMI 0.577-0.585 throughout); docs/methods.md.
REPULSION_WEIGHT = 100.0
# The official loop's settings (conf/model/diff_vae_autoclustering_mse.yaml and
# AutoClusteringDiffVAE): kld_weight on the MSE reconstruction, g_norm (the wake steps' clip of
# the chain's gradient norm), the heads' Adam (cluster_optim) and the sleep Adam (diff_optim).
OFFICIAL_LOOP_KL_WEIGHT = 0.005
OFFICIAL_LOOP_CHAIN_CLIP = 0.1
OFFICIAL_HEADS_LR = 1e-2
OFFICIAL_SLEEP_LR = 1e-3
OFFICIAL_REPULSION_RAMP = 100  # the repulsion's weight is 1 to this epoch, then rises


class ClusterHeadsDDVI(DDVI):
    """DDVI with the official clustering model's learned heads; see the module docstring.

    Args (beyond :class:`~diffvi.objectives.DDVI`'s):
        eta: η, the margin of the heads' repulsion.
        repulsion_weight: λ_rep (default :data:`REPULSION_WEIGHT`, 100; official 1).
        box: c, the half-width of the box the heads are kept in.
        box_weight: λ_box.
        sleep_moves_heads: whether the sleep term's gradient reaches the heads (official:
            yes); ``False`` draws its fantasies without gradient, as :class:`DDVI` does.
        bound_moves_heads: whether the bound's log p(z) trains the heads too; ``False`` leaves
            them to the sleep, repulsion and box terms, as the official code does.
    """

    name = "ddvi-heads"
    config_fields: ClassVar[dict[str, str]] = DDVI.config_fields

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
        eta: float = OFFICIAL_ETA,
        repulsion_weight: float = REPULSION_WEIGHT,
        box: float = OFFICIAL_BOX,
        box_weight: float = OFFICIAL_BOX_WEIGHT,
        sleep_moves_heads: bool = True,
        bound_moves_heads: bool = True,
    ) -> None:
        super().__init__(
            k, beta_reg, beta_sleep, sleep_steps, sleep_batch, sleep_x, huber, wake_updates_chain
        )
        for label, value in (
            ("eta", eta),
            ("repulsion_weight", repulsion_weight),
            ("box_weight", box_weight),
        ):
            if not 0 <= value < float("inf"):
                raise ValueError(f"{label} must be finite and >= 0, got {value}")
        if not 0 < box < float("inf"):
            raise ValueError(f"box must be finite and > 0, got {box}")
        self.eta = float(eta)
        self.repulsion_weight = float(repulsion_weight)
        self.box = float(box)
        self.box_weight = float(box_weight)
        self.sleep_moves_heads = bool(sleep_moves_heads)
        self.bound_moves_heads = bool(bound_moves_heads)

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        prior = heads_prior(model)
        with prior.frozen_heads(not self.bound_moves_heads):  # sleep_loss decides its own
            out = super().__call__(model, posterior, x)
        repulsion = prior.repulsion(self.eta)
        box = prior.box_penalty(self.box)
        loss = out.loss + self.repulsion_weight * repulsion + self.box_weight * box
        metrics = {
            **out.metrics,
            "repulsion": repulsion.detach(),
            "box": box.detach(),
            "head_gap": prior.min_gap(),
        }
        return ObjectiveOutput(loss=loss, bound=out.bound, metrics=metrics, z=out.z)

    def sleep_loss(
        self,
        model,
        posterior,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """:meth:`DDVI.sleep_loss` on fantasies z = h_k + s ε, k ~ U{1, …, K}, whose gradient
        reaches the heads (with ``sleep_moves_heads``; the official heads step,
        ``AutoClusteringDiffVAE._train_epoch``); x̂ from p(x|z) without gradient. A scalar."""
        if not self.sleep_moves_heads:
            return super().sleep_loss(model, posterior, batch_size, generator)
        check_diffusion_posterior(posterior)
        prior = heads_prior(model)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        total = None
        for _ in range(self.sleep_steps):
            with prior.frozen_heads(False):
                z, _ = prior.sample_with_labels(batch_size, generator)  # [N, D], grad to h
            x_hat = None
            if posterior.conditional:
                with torch.no_grad():
                    x_hat = self._fantasy_x(model, z.detach(), generator)
            loss = posterior.denoising_loss(z, x_hat, generator=generator, huber=self.huber)
            total = loss.mean() if total is None else total + loss.mean()
        return total / self.sleep_steps


class OfficialClusterHeads(OfficialDDVI):
    """The official clustering model's training loop (``AutoClusteringDiffVAE._train_epoch``),
    run by :class:`~diffvi.training.families.vae.VAEFamily` with three Adams. Not a bound.

    - Per batch, the **wake** step (this call, :class:`~diffvi.objectives.OfficialDDVI` without
      a sleep term, by default on the official MSE): y_T ~ q(y_T|x), z the deterministic DDIM
      chain from y_T, loss = mean_f (x_f − E[x_f|z])² + kl_weight · KL(q(y_T|x) ‖ N(0, I)),
      one step of the model and the posterior, the chain's gradient norm clipped to
      ``chain_clip``. No log p(z): the heads are not in it.
    - After every epoch e (from 0), e + 1 **heads** steps (:meth:`heads_loss`, only the heads
      stepped, Adam at ``heads_lr``) and then e + 1 **sleep** steps (:meth:`sleep_loss`, only
      the chain, Adam at ``sleep_lr``), each on ``sleep_batch`` fantasies.

    Args:
        k: posterior draws per item in the wake loss (official 1).
        kl_weight: on KL(q(y_T|x) ‖ N(0, I)) (official 0.005 against the MSE).
        reconstruction: ``"mse"`` (official) or ``"likelihood"`` (−log p(x|z)).
        eta, box, box_weight: the head losses' η, c and λ_box (official 1.5, 2.5, 100).
        chain_clip: the wake steps' clip of the chain's gradient norm (official 0.1).
        heads_lr, sleep_lr: the heads' and the sleep steps' Adam learning rates (official
            10⁻², 10⁻³); the wake Adam's is the run's ``lr`` (official 10⁻⁴).
        sleep_batch: fantasies per heads or sleep step (official 128; ``None``: the batch size).
    """

    name = "ddvi-heads-official"
    config_fields: ClassVar[dict[str, str]] = {"k": "k"}

    def __init__(
        self,
        k: int = 1,
        kl_weight: float = OFFICIAL_LOOP_KL_WEIGHT,
        reconstruction: str = "mse",
        eta: float = OFFICIAL_ETA,
        box: float = OFFICIAL_BOX,
        box_weight: float = OFFICIAL_BOX_WEIGHT,
        chain_clip: float = OFFICIAL_LOOP_CHAIN_CLIP,
        heads_lr: float = OFFICIAL_HEADS_LR,
        sleep_lr: float = OFFICIAL_SLEEP_LR,
        sleep_batch: int | None = None,
    ) -> None:
        super().__init__(
            k=k,
            kl_weight=kl_weight,
            beta_sleep=0.0,
            sleep_batch=sleep_batch,
            reconstruction=reconstruction,
        )
        # The head losses' checks are ClusterHeadsDDVI's; its sleep loss moves the heads.
        self.heads = ClusterHeadsDDVI(
            eta=eta, box=box, box_weight=box_weight, huber=True, sleep_batch=sleep_batch
        )
        for label, value in (
            ("chain_clip", chain_clip),
            ("heads_lr", heads_lr),
            ("sleep_lr", sleep_lr),
        ):
            if not 0 < value < float("inf"):
                raise ValueError(f"{label} must be finite and > 0, got {value}")
        self.chain_clip = float(chain_clip)
        self.heads_lr = float(heads_lr)
        self.sleep_lr = float(sleep_lr)

    @staticmethod
    def steps_after_epoch(epoch: int) -> int:
        """Heads steps, and then sleep steps, taken after epoch ``epoch`` (from 0): e + 1."""
        return epoch + 1

    @staticmethod
    def repulsion_weight(epoch: int) -> float:
        """w_e: 1 to epoch 100, then 1 more every 10 epochs (official ``cluster_w``)."""
        if epoch <= OFFICIAL_REPULSION_RAMP:
            return 1.0
        return float((epoch - OFFICIAL_REPULSION_RAMP) // 10 + 1)

    def heads_loss(self, model, posterior, batch_size: int, epoch: int) -> Tensor:
        """One official heads step's loss: w_e (R_η(h) + λ_box B_c(h)) plus the chain's Huber
        denoising loss on fantasies z = h_k + s ε drawn with gradient to the heads, averaged
        over the pairs and the D latent dimensions; a scalar (only the heads are stepped). R_η
        and B_c are the expectations over uniform head pairs of the official sampled ones."""
        prior = heads_prior(model)
        sleep = self.heads.sleep_loss(model, posterior, batch_size) / posterior.latent_dim
        penalty = prior.repulsion(self.heads.eta) + self.heads.box_weight * prior.box_penalty(
            self.heads.box
        )
        return self.repulsion_weight(epoch) * penalty + sleep

    def sleep_loss(
        self,
        model,
        posterior,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One official sleep step's loss: the chain's Huber denoising loss on fantasies of the
        heads prior (no gradient to the heads), averaged over pairs and latent dimensions."""
        with heads_prior(model).frozen_heads():
            return super().sleep_loss(model, posterior, batch_size, generator)


def heads_prior(model) -> ClusterHeadsPrior:
    """``model.prior`` when it is a :class:`~diffvi.distributions.ClusterHeadsPrior` over the
    model's one latent layer; else a ValueError."""
    prior = getattr(model, "prior", None)
    if not isinstance(prior, ClusterHeadsPrior):
        raise ValueError(
            "objective 'ddvi-heads' learns the heads of a cluster-heads prior: the model's prior "
            f"must be ClusterHeadsPrior (prior 'cluster-heads'), got {type(prior).__name__}"
        )
    if len(getattr(model, "latent_dims", [prior.dim])) != 1:
        raise ValueError(
            f"objective 'ddvi-heads' needs a model with one latent layer, got latent_dims "
            f"{model.latent_dims}"
        )
    return prior
