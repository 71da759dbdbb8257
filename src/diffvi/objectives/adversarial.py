"""The adversarial autoencoder (AAE; Makhzani et al. 2016, arXiv 1511.05644), a baseline of
DDVI's 2-D latent benchmarks (pinwheel, swiss roll and square priors on MNIST).

An autoencoder whose aggregated posterior q(z) = E_{p_data(x)} q(z|x) is pushed onto the prior
p(z) by a discriminator D(z) (a logit) instead of a KL term. Two losses, two optimisers:

    generator (encoder + decoder):  L_G = E_q[−log p(x|z)] + λ · E_q[softplus(−D(z))],
    discriminator:                  L_D = E_{z~p(z)}[softplus(−D(z))] + E_{z~q}[softplus(D(z))],

where softplus(−D) = −log σ(D) and softplus(D) = −log(1 − σ(D)): L_D is the logistic
(binary cross-entropy) loss of telling prior draws (label 1) from encoded ones (label 0), and
the encoder's adversarial term is the non-saturating one of Goodfellow et al. (2014, §3),
−log σ(D(z)) rather than log(1 − σ(D(z))). ``__call__`` returns L_G as ``loss``; its gradient
reaches the encoder (through z) and the decoder but never D, whose parameters enter through a
detached copy (``torch.func.functional_call``). :meth:`AAE.discriminator_loss` returns L_D for
a separate optimiser step; z (encoded and prior draws) is detached there, so only D gets a
gradient. The training loop alternates the two steps (see the class docstring).

Encoder: ``deterministic=True`` uses the posterior's mean (``extras["mean"]``, a Gaussian q:
the paper's deterministic encoder, and the official DDVI baseline); otherwise reparameterised
draws z ~ q(z|x) (the paper's "Gaussian posterior" variant).

``bound``: the AAE optimises no bound on log p(x). Reported instead, so that AAE runs are
comparable with the VAE family on the figure every objective logs, is the ELBO of the
posterior q under the model's prior, E_q[log p(x|z)] − E_q[log q(z|x) − log p(z)] (sampled KL,
``k`` draws; auxiliary-variable posteriors through
:func:`~diffvi.objectives.base.log_density_ratio`). It is a true lower bound on log p(x) for
any q. With a stochastic encoder it is computed on the same draws as the loss (and equals the
:class:`~diffvi.objectives.ELBO` estimate under the same seed); with ``deterministic=True`` on
draws of q whose scale the AAE never trains, so it is a loose, pessimistic figure there.
The official DDVI code (GitHub topwasu/DDVI, ``algorithms/aaes/aae_vanilla.py``) has no ELBO
for its AAE (a deterministic encoder with an MSE reconstruction loss).

Options and defaults, beside the official code:

- ``adversarial_weight = 1`` on a summed-over-pixels log-likelihood. Official: 0.5 · mean
  squared error (a per-pixel mean) for the reconstruction step and a factor 6 on both
  adversarial losses, each loss its own optimiser step (reconstruction, D, encoder).
- Discriminator: an MLP ``D -> 256 -> 256 -> 1`` with LeakyReLU(0.2), built on the first call
  (or by :meth:`AAE.ensure_discriminator`, which a training loop calls before making its
  optimisers), or any module ``[..., D] -> [..., 1]`` passed in. Official: 1000 hidden units,
  dropout 0.2 and multiplicative Gaussian instance noise (σ = 0.3, annealed); not here.
"""

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from diffvi.objectives.base import Objective, ObjectiveOutput, check_data, log_density_ratio

DEFAULT_HIDDEN = (256, 256)


def build_discriminator(
    latent_dim: int, hidden: Sequence[int] = DEFAULT_HIDDEN, negative_slope: float = 0.2
) -> nn.Sequential:
    """MLP ``[..., latent_dim] -> [..., 1]`` (a logit) with LeakyReLU hidden layers."""
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    sizes = [latent_dim, *hidden, 1]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(negative_slope))
    return nn.Sequential(*layers)


class AAE(Objective):
    """Adversarial-autoencoder generator loss, with the discriminator loss as a method.

    Args:
        adversarial_weight: λ ≥ 0 on the encoder's non-saturating adversarial term.
        discriminator: a module ``[..., D] -> [..., 1]`` (logits); ``None`` builds
            :func:`build_discriminator` with ``hidden`` on first use (or at once when
            ``latent_dim`` is given).
        hidden: hidden sizes of the default discriminator.
        latent_dim: D, to build the default discriminator now rather than on first use.
        k: K draws of z per data point (the ELBO ``bound`` always uses K draws; with
            ``deterministic=True`` the loss uses the one mean).
        deterministic: encode with q's mean (``extras["mean"]``) instead of draws.

    Training takes two optimisers, e.g. per batch::

        out = aae(model, posterior, x)                     # L_G: encoder + decoder
        opt_g.zero_grad(); out.loss.backward(); opt_g.step()
        d_loss = aae.discriminator_loss(model, posterior, x)  # L_D: discriminator only
        opt_d.zero_grad(); d_loss.backward(); opt_d.step()

    with ``opt_d`` over ``aae.ensure_discriminator(latent_dim).parameters()``.

    Metrics: ``rec`` (E[−log p(x|z)]), ``adv`` (the non-saturating term, unweighted),
    ``d_loss`` (L_D on this call's draws), ``d_accuracy`` (D's accuracy on prior vs. encoded
    draws, threshold 0.5), ``kl`` (the sampled KL of the reported ELBO).
    """

    config_fields: ClassVar[dict[str, str]] = {
        "k": "k",
        "adversarial_weight": "adversarial_weight",
        "deterministic": "deterministic_encoder",
    }

    name = "aae"

    def __init__(
        self,
        adversarial_weight: float = 1.0,
        discriminator: nn.Module | None = None,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        latent_dim: int | None = None,
        k: int = 1,
        deterministic: bool = False,
    ) -> None:
        weight = float(adversarial_weight)
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(
                f"adversarial_weight must be finite and >= 0, got {adversarial_weight}"
            )
        if discriminator is not None and not isinstance(discriminator, nn.Module):
            raise ValueError(
                f"discriminator must be an nn.Module or None, got {type(discriminator).__name__}"
            )
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {list(hidden)}")
        if latent_dim is not None and latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1 or None, got {latent_dim}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.adversarial_weight = weight
        self.hidden = hidden
        self.k = k
        self.deterministic = bool(deterministic)
        self.discriminator = discriminator
        if discriminator is None and latent_dim is not None:
            self.discriminator = build_discriminator(latent_dim, hidden)

    def ensure_discriminator(
        self,
        latent_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> nn.Module:
        """The discriminator, built for ``latent_dim`` (and moved to ``device``/``dtype``) if
        there is none yet. Call it before creating the discriminator's optimiser."""
        if self.discriminator is None:
            self.discriminator = build_discriminator(latent_dim, self.hidden).to(
                device=device, dtype=dtype
            )
        in_features = _in_features(self.discriminator)
        if in_features is not None and in_features != latent_dim:
            raise ValueError(
                f"the discriminator takes {in_features}-dimensional z, but the latent "
                f"dimension is {latent_dim}"
            )
        return self.discriminator

    def _encode(self, posterior, x: Tensor):
        """(z for the losses ``[K', B, D]``, the posterior sample for the bound)."""
        s = posterior.sample(x, self.k)
        if not self.deterministic:
            return s.z, s
        mean = s.extras.get("mean")
        if mean is None or mean.shape[-1] != s.z.shape[-1]:
            raise ValueError(
                "deterministic=True encodes with the posterior mean extras['mean'] covering "
                f"all of z (last dimension {s.z.shape[-1]}); this posterior gives "
                f"{None if mean is None else tuple(mean.shape)}. Use deterministic=False."
            )
        return mean.unsqueeze(0), s

    def _prior_draws(self, model, z: Tensor) -> Tensor:
        """Prior draws shaped like ``z`` (all latent layers), without gradient."""
        with torch.no_grad():
            num = z.shape[0] * z.shape[1]
            zp = model.sample_latent(num).to(device=z.device, dtype=z.dtype)
        return zp.reshape(z.shape)

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        check_data(model, x)
        z, s = self._encode(posterior, x)  # sample first: same draws as ELBO under one seed
        disc = self.ensure_discriminator(z.shape[-1], z.device, z.dtype)
        log_lik = model.log_likelihood(x, z)  # [K', B]
        rec = -log_lik.mean()
        # D with detached parameters: the gradient reaches z (the encoder) but not D.
        frozen = {name: p.detach() for name, p in disc.named_parameters()}
        frozen.update(dict(disc.named_buffers()))
        logit_q = functional_call(disc, frozen, (z,)).squeeze(-1)  # [K', B]
        adv = F.softplus(-logit_q).mean()  # −log σ(D(z)): non-saturating
        loss = rec + self.adversarial_weight * adv

        with torch.no_grad():
            zp = self._prior_draws(model, z)
            logit_p = disc(zp).squeeze(-1)
            d_loss = F.softplus(-logit_p).mean() + F.softplus(logit_q).mean()
            d_accuracy = 0.5 * ((logit_p > 0).float().mean() + (logit_q < 0).float().mean())
            kl = log_density_ratio(model, s).mean(0)  # [B]
            ll = log_lik if not self.deterministic else model.log_likelihood(x, s.z)
            bound = ll.mean(0) - kl
        metrics = {
            "rec": rec.detach(),
            "adv": adv.detach(),
            "d_loss": d_loss,
            "d_accuracy": d_accuracy,
            "kl": kl.mean(),
        }
        return ObjectiveOutput(loss=loss, bound=bound.detach(), metrics=metrics)

    def discriminator_loss(self, model, posterior, x: Tensor) -> Tensor:
        """L_D, the logistic loss of telling prior draws (1) from encoded ones (0): a scalar
        whose gradient reaches the discriminator only (encoded and prior z are detached)."""
        check_data(model, x)
        with torch.no_grad():
            z, _ = self._encode(posterior, x)
            zp = self._prior_draws(model, z)
        disc = self.ensure_discriminator(z.shape[-1], z.device, z.dtype)
        logit_q = disc(z).squeeze(-1)
        logit_p = disc(zp).squeeze(-1)
        return F.softplus(-logit_p).mean() + F.softplus(logit_q).mean()


def _in_features(module: nn.Module) -> int | None:
    """Input width where it is known: an ``in_features`` attribute (``Linear``, diffvi's
    ``MLP``) or a ``Sequential`` that starts with a ``Linear``; else ``None`` (unchecked)."""
    if hasattr(module, "in_features"):
        return int(module.in_features)
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[0], nn.Linear):
        return module[0].in_features
    return None
