"""A diffusion model: a noise schedule and a denoiser, with its losses, the VDM bound in bits per
dimension, Tweedie's x₀-prediction and sampling.

Notation of Variational Diffusion Models (Kingma et al. 2021): q(z_t | x) = N(α_t x, σ_t² I)
with α_t² = sigmoid(−γ(t)), σ_t² = sigmoid(γ(t)), ``t ∈ [0, 1]``. The denoiser predicts the
noise: ε̂(z_t, t) ≈ E[ε | z_t]. Images enter and leave the public methods in [0, 1] and are
mapped to [−1, 1] inside (``image=True``); other data pass through unchanged.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.diffusion.samplers import (
    REVERSE_VARIANCES,
    SAMPLERS,
    per_item,
    sample_chain,
    standard_normal,
    step_log_betas,
)
from diffvi.diffusion.schedules import NoiseSchedule, alpha_sigma_of

LOSSES = ("simple", "vdm")
# 8-bit images: pixel values k / 255, k = 0 … 255.
PIXEL_LEVELS = 256


class DiffusionModel(nn.Module):
    """``schedule`` + ``denoiser(z_t [B, ...], t [B], cond | None) -> ε̂ [B, ...]``.

    Args:
        schedule: a :class:`~diffvi.diffusion.schedules.NoiseSchedule` (γ(t)).
        denoiser: the noise-prediction network.
        loss_type: ``"simple"`` — Ho et al.'s ‖ε − ε̂‖² at t ~ U(0, 1), averaged over dimensions;
            ``"vdm"`` — the VDM continuous-time bound in bits per dimension (:meth:`bound`).
        image: data are 8-bit images in [0, 1] (scaled to [−1, 1] inside; the bound then uses
            VDM's discrete 256-level decoder). Otherwise data are real vectors, with a Gaussian
            decoder p(x | z_0) = N(z_0 / α_0, σ_0² / α_0²).
        clip_sample: whether :meth:`sample` clamps x̂₀ to [−clip_range, clip_range] (model
            space) at every step by default (default: for images; a pretrained prior's
            scheduler config says, diffusers' ``clip_sample``).
        clip_range: the bound of that clamp (diffusers' ``clip_sample_range``).
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        denoiser: nn.Module | Callable[..., Tensor],
        loss_type: str = "simple",
        image: bool = True,
        clip_sample: bool | None = None,
        clip_range: float = 1.0,
    ) -> None:
        super().__init__()
        if loss_type not in LOSSES:
            raise ValueError(f"loss_type must be one of {LOSSES}, got {loss_type!r}")
        if not clip_range > 0:
            raise ValueError(f"clip_range must be > 0, got {clip_range}")
        self.schedule = schedule
        self.denoiser = denoiser
        self.loss_type = loss_type
        self.image = image
        self.clip_sample = image if clip_sample is None else bool(clip_sample)
        self.clip_range = float(clip_range)

    # -- scaling between the public data range and the model's ---------------------------------
    def to_model_space(self, x: Tensor) -> Tensor:
        """Public data → model space (``2x − 1`` for images)."""
        return 2 * x - 1 if self.image else x

    def from_model_space(self, x: Tensor) -> Tensor:
        """Model space → public data (``(x + 1) / 2`` for images, clamped to [0, 1])."""
        return ((x + 1) / 2).clamp(0, 1) if self.image else x

    # -- the network and Tweedie's formula (model space) ---------------------------------------
    def predict_noise(self, z: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """ε̂(z_t, t): ``z [B, ...]``, ``t [B]`` → ``[B, ...]``."""
        return self.denoiser(z, t, cond)

    def predict_x0(
        self, z: Tensor, t: Tensor, cond: Tensor | None = None, noise: Tensor | None = None
    ) -> Tensor:
        """Tweedie's estimate E[x | z_t] = (z_t − σ_t ε̂) / α_t, in model space ``[B, ...]``.

        ``noise`` is a precomputed ε̂ (then the network is not run)."""
        eps = self.predict_noise(z, t, cond) if noise is None else noise
        alpha, sigma = (per_item(v, z) for v in self.schedule.alpha_sigma(t))
        return (z - sigma * eps) / alpha

    # -- losses --------------------------------------------------------------------------------
    def _check(self, x: Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"data must have shape [B, ...], got {list(x.shape)}")
        if self.image and x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"images must lie in [0, 1], got values in [{x.min().item():.3g}, "
                f"{x.max().item():.3g}]"
            )

    def loss(
        self, x: Tensor, cond: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Per-item training loss ``[B]`` for data ``x [B, ...]``: the simple ε-loss, or the VDM
        bound in bits per dimension, as ``loss_type`` says."""
        if self.loss_type == "vdm":
            return self.bound(x, cond, generator)
        self._check(x)
        x = self.to_model_space(x)
        t = stratified_times(x.shape[0], x, generator)
        noise = standard_normal(x, generator)
        z = self.schedule.add_noise(x, t, noise)
        return (noise - self.predict_noise(z, t, cond)).pow(2).flatten(1).mean(1)

    def bound_terms(
        self, x: Tensor, cond: Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The three terms of −log p(x) ≤ L (VDM eq. 11 with the continuous-time diffusion
        loss, eq. 17), in nats per item ``[B]``:

        - ``prior``: KL(q(z_1 | x) ‖ N(0, I));
        - ``reconstruction``: −E log p(x | z_0) (images: VDM's 256-level decoder, App. C);
        - ``diffusion``: ½ γ'(t) ‖ε − ε̂(z_t, t)‖², one t ~ U(0, 1) per item (unbiased).

        Images are scored as 8-bit: values are rounded to the nearest k / 255 first.
        """
        self._check(x)
        if self.image:  # the bound is over 8-bit images: x on the grid k / 255
            x = torch.round(x * (PIXEL_LEVELS - 1)) / (PIXEL_LEVELS - 1)
        x = self.to_model_space(x)
        ends = torch.tensor([0.0, 1.0], device=x.device, dtype=x.dtype)
        gamma_0, gamma_1 = self.schedule.gamma(ends).to(x.dtype).unbind()
        # Prior: KL(N(α₁x, σ₁²) ‖ N(0, 1)) per dimension = ½ (σ₁² + α₁² x² − log σ₁² − 1).
        var_1 = torch.sigmoid(gamma_1)
        prior = 0.5 * (var_1 + torch.sigmoid(-gamma_1) * x.pow(2) - F.logsigmoid(gamma_1) - 1)
        reconstruction = self._reconstruction(x, gamma_0, generator)
        t = stratified_times(x.shape[0], x, generator)
        weights = None
        if getattr(self.schedule, "minimise_variance", False) and torch.is_grad_enabled():
            weights = torch.zeros_like(t)  # filled below, read by the backward pass
            gamma_t, slope = self.schedule.gamma_and_derivative(t, variance_weights=weights)
        else:
            gamma_t, slope = self.schedule.gamma_and_derivative(t)
        noise = standard_normal(x, generator)
        alpha, sigma = (per_item(v, x) for v in alpha_sigma_of(gamma_t))
        z = alpha * x + sigma * noise
        error = (noise - self.predict_noise(z, t, cond)).pow(2).flatten(1).sum(1)
        terms = {
            "prior": prior.flatten(1).sum(1),
            "reconstruction": reconstruction,
            "diffusion": 0.5 * slope.to(x.dtype) * error,
        }
        if weights is not None:  # d mean(L²) = mean(2 L dL), L in the units of bound()
            total = sum(v.detach() for v in terms.values()) / (x[0].numel() * math.log(2))
            weights.copy_(2 * total)
        return terms

    def _reconstruction(self, x: Tensor, gamma_0: Tensor, generator: torch.Generator | None):
        """−log p(x | z_0) summed over dimensions ``[B]``, with z_0 ~ q(z_0 | x)."""
        alpha_0, sigma_0 = alpha_sigma_of(gamma_0)
        z_0 = alpha_0 * x + sigma_0 * standard_normal(x, generator)
        scaled = z_0 / alpha_0  # = x + noise of std exp(γ₀/2)
        if not self.image:
            std = torch.exp(0.5 * gamma_0)
            nll = 0.5 * ((scaled - x) / std).pow(2) + torch.log(std) + 0.5 * math.log(2 * math.pi)
            return nll.flatten(1).sum(1)
        # p(x_i = v_k | z_0) ∝ exp(−½ SNR₀ (z_0/α_0 − v_k)²), v_k = 2k/255 − 1 (VDM App. C).
        # The normaliser sums over the levels within 8 standard deviations of z_0/α_0 only (the
        # rest weigh < e⁻³²): at γ₀ = −13.3 that is 5 levels instead of 256.
        snr_0, step = torch.exp(-gamma_0), 2 / (PIXEL_LEVELS - 1)
        reach = math.ceil(8 * math.exp(0.5 * gamma_0.item()) / step) + 1
        nearest = torch.round((scaled + 1) / step).clamp(0, PIXEL_LEVELS - 1)
        offsets = torch.arange(-reach, reach + 1, device=x.device, dtype=x.dtype)
        levels = nearest.unsqueeze(-1) + offsets
        logits = -0.5 * snr_0 * (scaled.unsqueeze(-1) - (levels * step - 1)).pow(2)
        logits = logits.masked_fill((levels < 0) | (levels > PIXEL_LEVELS - 1), -math.inf)
        target = -0.5 * snr_0 * (scaled - x).pow(2)  # x is on the grid of levels
        return -(target - logits.logsumexp(-1)).flatten(1).sum(1)

    def bound(
        self, x: Tensor, cond: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """The VDM bound on −log p(x) in bits per dimension, ``[B]`` (one-sample unbiased
        estimate; average over items and repeats for a test figure)."""
        terms = self.bound_terms(x, cond, generator)
        total = terms["prior"] + terms["reconstruction"] + terms["diffusion"]
        return total / (x[0].numel() * math.log(2))

    # -- sampling ------------------------------------------------------------------------------
    @property
    def reverse_variance(self) -> str:
        """The variance of the ancestral (DDPM) step's noise by default: the denoiser's own
        (``"learned"``, ``"fixed_large"``; a pretrained network's scheduler's), else
        ``"fixed_small"`` (β̃, the variance of q(z_s | z_t, x))."""
        return getattr(self.denoiser, "reverse_variance", "fixed_small")

    @torch.no_grad()
    def sample(
        self,
        shape: tuple[int, ...] | list[int],
        steps: int = 1000,
        sampler: str = "ddpm",
        eta: float | None = None,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        clip: bool | None = None,
        progress: bool = False,
        times: Tensor | None = None,
        variance: str | None = None,
    ) -> Tensor:
        """Draw ``shape = [B, ...]`` samples, returned in the public data range.

        ``steps`` network evaluations on the grid ``t = 1 → 0``
        (:func:`~diffvi.diffusion.samplers.sample_chain`); ``sampler="ddpm"`` (ancestral,
        η = 1) or ``"ddim"`` (η = 0 unless given). ``noise`` fixes z_1 (``[B, ...]``);
        ``clip`` clamps x̂₀ to [−``clip_range``, ``clip_range``] at every step (default:
        ``clip_sample``, the model's own: on for images, a pretrained prior's scheduler
        config's); ``times`` is a custom decreasing grid of ``steps`` times (default: even
        from 1 to 0).

        ``variance``, of the ancestral step's noise (η = 1): ``"learned"`` (a network with a
        learned variance, Nichol & Dhariwal 2021 eq. 15), ``"fixed_small"`` (β̃) or
        ``"fixed_large"`` (β); default :attr:`reverse_variance`, the model's own, for η = 1,
        and DDIM's η-scaled β̃ otherwise.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}")
        eta = SAMPLERS[sampler] if eta is None else eta
        device = next(iter(self.parameters()), torch.empty(0)).device
        dtype = next(iter(self.parameters()), torch.empty(0)).dtype
        if noise is None:
            noise = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
        elif tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}")
        clip = self.clip_sample if clip is None else clip
        predict, step_log_variance = self._reverse_step(variance, eta, cond)
        x0 = sample_chain(
            self.schedule,
            predict,
            noise,
            steps,
            eta,
            generator=generator,
            clip=self.clip_range if clip else None,
            progress=progress,
            times=times,
            step_log_variance=step_log_variance,
        )
        return self.from_model_space(x0)

    def _reverse_step(
        self, variance: str | None, eta: float, cond: Tensor | None
    ) -> tuple[Callable[[Tensor, Tensor], object], Callable[..., Tensor] | None]:
        """``(predict, step_log_variance)`` of :func:`sample_chain` for ``variance``."""
        if variance is not None and variance not in REVERSE_VARIANCES:
            raise ValueError(f"variance must be one of {list(REVERSE_VARIANCES)}, got {variance!r}")
        if variance is None:
            variance = self.reverse_variance if eta == 1 else "fixed_small"
        elif variance != "fixed_small" and eta != 1:
            raise ValueError(
                f"variance {variance!r} is the ancestral step's (sampler 'ddpm', eta = 1), "
                f"got eta = {eta}"
            )
        if variance == "learned":
            if not getattr(self.denoiser, "learned_variance", False):
                raise ValueError("variance 'learned' needs a network with a learned variance")
            return (
                lambda z, t: self.denoiser.predict(z, t, cond),
                self.denoiser.reverse_log_variance,
            )
        if variance == "fixed_large":

            def log_beta(_: object, t: Tensor, s: Tensor) -> Tensor:
                return step_log_betas(self.schedule.gamma(t), self.schedule.gamma(s))[0]

            return (lambda z, t: (self.predict_noise(z, t, cond), None)), log_beta
        return (lambda z, t: self.predict_noise(z, t, cond)), None


def stratified_times(batch: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """t ~ U(0, 1) per item ``[batch]``, stratified over the batch (VDM's low-discrepancy
    sampler: one uniform u, then (u + k / B) mod 1)."""
    u = torch.rand((), generator=generator, device=like.device, dtype=like.dtype)
    offsets = torch.arange(batch, device=like.device, dtype=like.dtype) / batch
    return torch.remainder(u + offsets, 1.0)
