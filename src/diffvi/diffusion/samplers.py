"""Samplers of continuous-time diffusion models: ancestral DDPM and DDIM.

One DDIM step from time t to s < t (Song et al. 2021, eq. 12, in VDM's notation):

    z_s = α_s x̂₀ + √(σ_s² − c²) ε̂ + c ξ,    c² = η² σ_s² (1 − SNR_t / SNR_s),

with x̂₀ = (z_t − σ_t ε̂) / α_t (Tweedie) and ξ ~ N(0, I). σ_s² (1 − SNR_t/SNR_s) is the variance
of q(z_s | z_t, x), so η = 1 is DDPM's ancestral step (Ho et al. 2020, eq. 7 with σ² = β̃) and
η = 0 the deterministic DDIM update.

x̂₀ may be clamped to [−clip, clip] at every step, ε̂ then recomputed from it,
ε̂ = (z_t − α_t x̂₀)/σ_t (guided-diffusion's ``clip_denoised``; diffusers' ``clip_sample`` with
``use_clipped_model_output=True``); the model says whether and where (its ``clip_sample`` and
``clip_range``).

The ancestral step (η = 1) keeps its mean, the mean of q(z_s | z_t, x̂₀), and may take another
variance for its noise: β = 1 − ᾱ_t/ᾱ_s (``"fixed_large"``, DDPM's other choice, Ho et al.
2020 §3.2), or a network's learned Σ (``"learned"``, Nichol & Dhariwal 2021 eq. 15: log Σ =
v log β + (1 − v) log β̃); :func:`step_log_betas` gives log β and log β̃ of a step t → s.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from diffvi.diffusion.schedules import NoiseSchedule, alpha_sigma_of
from diffvi.utils.progress import progress as progress_bar

# Sampler name → its default η.
SAMPLERS = {"ddpm": 1.0, "ddim": 0.0}
# The variances of the ancestral step's noise: β̃ (q(z_s | z_t, x)'s), β, or the network's.
REVERSE_VARIANCES = ("fixed_small", "fixed_large", "learned")


def standard_normal(
    like: Tensor, generator: torch.Generator | None = None, shape: tuple[int, ...] | None = None
) -> Tensor:
    """N(0, I) noise on ``like``'s device and dtype, of ``like``'s shape (or ``shape``)."""
    size = tuple(like.shape) if shape is None else tuple(shape)
    return torch.randn(size, generator=generator, device=like.device, dtype=like.dtype)


def ddim_step(
    schedule: NoiseSchedule,
    z: Tensor,
    noise_pred: Tensor,
    t: Tensor,
    s: Tensor,
    eta: float,
    generator: torch.Generator | None = None,
    clip: float | None = None,
    log_variance: Tensor | None = None,
) -> Tensor:
    """One step ``z_t → z_s`` (``s < t`` scalars or ``[B]``) with ε̂ = ``noise_pred``.

    ``clip`` clamps x̂₀ to [−clip, clip] (ε̂ recomputed from it); ``log_variance``
    (``[B, ...]`` or ``[B]``, η = 1 only) is the log-variance of the added noise in place
    of c² = β̃ (the mean stays the ancestral step's)."""
    gamma_t, gamma_s = schedule.gamma(t), schedule.gamma(s)
    alpha_t, sigma_t = (per_item(v, z) for v in alpha_sigma_of(gamma_t))
    alpha_s, sigma_s = (per_item(v, z) for v in alpha_sigma_of(gamma_s))
    x0 = (z - sigma_t * noise_pred) / alpha_t
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        noise_pred = (z - alpha_t * x0) / sigma_t
    # 1 − SNR_t / SNR_s = −expm1(γ_s − γ_t): the posterior's share of σ_s².
    share = per_item(-torch.expm1(gamma_s - gamma_t), z)
    c2 = eta**2 * sigma_s**2 * share
    z_s = alpha_s * x0 + (sigma_s**2 - c2).clamp_min(0).sqrt() * noise_pred
    if log_variance is not None:
        if eta != 1:
            raise ValueError(f"log_variance needs the ancestral step (eta = 1), got eta = {eta}")
        z_s = z_s + torch.exp(0.5 * per_item(log_variance, z)) * standard_normal(z, generator)
    elif eta > 0:
        z_s = z_s + c2.sqrt() * standard_normal(z, generator)
    return z_s


def step_log_betas(gamma_t: Tensor, gamma_s: Tensor) -> tuple[Tensor, Tensor]:
    """``(log β, log β̃)`` of a reverse step t → s from its log-SNRs γ_t > γ_s (float64, any
    shape): β = 1 − ᾱ_t/ᾱ_s (the step's forward variance) and β̃ = β (1 − ᾱ_s)/(1 − ᾱ_t) =
    σ_s² (1 − SNR_t/SNR_s) (the variance of q(z_s | z_t, x)), floored at 10⁻²⁰ as diffusers
    does (β̃ = 0 where the step ends at ᾱ_s = 1)."""
    gamma_t, gamma_s = gamma_t.double(), gamma_s.double()
    # ᾱ_t/ᾱ_s = sigmoid(−γ_t)/sigmoid(−γ_s); 1 − SNR_t/SNR_s = −expm1(γ_s − γ_t).
    log_ratio = F.logsigmoid(-gamma_t) - F.logsigmoid(-gamma_s)
    log_beta = torch.log(-torch.expm1(log_ratio))
    log_beta_tilde = F.logsigmoid(gamma_s) + torch.log(-torch.expm1(gamma_s - gamma_t))
    return log_beta, log_beta_tilde.clamp_min(math.log(1e-20))


def sample_chain(
    schedule: NoiseSchedule,
    predict_noise: Callable[[Tensor, Tensor], Tensor | tuple[Tensor, Tensor | None]],
    z: Tensor,
    steps: int,
    eta: float,
    generator: torch.Generator | None = None,
    clip: float | None = None,
    progress: bool = False,
    times: Tensor | None = None,
    step_log_variance: Callable[[Tensor | None, Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """Run the reverse chain from ``z = z_1 [B, ...]`` and return x̂₀ ``[B, ...]`` (model space).

    ``steps`` network evaluations: ``steps − 1`` DDIM(η) steps on the even grid
    ``t_k = 1 − k / (steps − 1)``, then Tweedie's x̂₀ at the last time (t = 0: DDPM's
    noiseless last step). ``steps = 1000`` with η = 1 is DDPM's sampler; ``steps = 50`` with
    η = 0 is DDIM-50. ``times`` replaces the even grid by any strictly decreasing ``[steps]``
    sequence in [0, 1] (e.g. a subset of a discrete model's training steps). ``clip`` clamps
    x̂₀ to [−clip, clip] at every step (None: never).

    ``step_log_variance(extras, t, s) -> log Σ [B, ...]`` (η = 1 only) sets the variance of
    each ancestral step's noise (module docstring); ``predict_noise`` then returns
    ``(ε̂, extras)``, e.g. a learned variance's values
    (:meth:`~diffvi.diffusion.discrete.DiscreteTimeDenoiser.predict` and
    ``reverse_log_variance``).
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (the last one predicts x0), got {steps}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if step_log_variance is not None and eta != 1:
        raise ValueError(f"step_log_variance needs the ancestral sampler (eta = 1), got {eta}")
    if times is None:
        grid = torch.linspace(1, 0, steps, device=z.device, dtype=z.dtype)
    else:
        grid = torch.as_tensor(times, device=z.device, dtype=z.dtype)
        if grid.shape != (steps,) or not bool((grid.diff() < 0).all()):
            raise ValueError(f"times must be a decreasing sequence of {steps} values in [0, 1]")
        if grid.min() < 0 or grid.max() > 1:
            raise ValueError("times must lie in [0, 1]")
    batch = z.shape[0]
    for k in progress_bar(range(steps - 1), desc="sampling", enable=progress):
        t, s = grid[k].expand(batch), grid[k + 1].expand(batch)
        eps, log_variance = predict_noise(z, t), None
        if step_log_variance is not None:
            eps, extras = eps
            log_variance = step_log_variance(extras, t, s)
        z = ddim_step(schedule, z, eps, t, s, eta, generator, clip, log_variance)
    t = grid[-1].expand(batch)
    eps = predict_noise(z, t)
    if step_log_variance is not None:
        eps = eps[0]
    alpha, sigma = (per_item(v, z) for v in schedule.alpha_sigma(t))
    x0 = (z - sigma * eps) / alpha
    return x0.clamp(-clip, clip) if clip is not None else x0


def per_item(value: Tensor, like: Tensor) -> Tensor:
    """``[B]`` (or a scalar) → ``[B, 1, …]`` in ``like``'s dtype."""
    value = value.to(like.dtype)
    return value.reshape(value.shape + (1,) * (like.ndim - value.ndim))
