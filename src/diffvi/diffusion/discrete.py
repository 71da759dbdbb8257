"""Pretrained discrete-time diffusion networks as continuous-time denoisers.

A network trained on ``N`` discrete steps (diffusers' ``UNet2DModel``, OpenAI's ADM) takes
``(x [B, C, H, W] in [−1, 1], timesteps [B])``, where timestep ``n ∈ {0, …, N − 1}`` has the
noise level ᾱ_n (diffusers' ``alphas_cumprod[n]``; DDPM's step n + 1), x_n = α x₀ + σ ε with
α = √ᾱ_n, σ = √(1 − ᾱ_n), and it predicts one of

- ``"epsilon"``: the noise ε (Ho et al. 2020);
- ``"sample"``: x₀ itself;
- ``"v_prediction"``: v = α ε − σ x₀ (Salimans & Ho 2022, §4; diffusers' convention).

Our contract (:class:`~diffvi.diffusion.model.DiffusionModel`) is a continuous time t ∈ [0, 1]
and a noise prediction ε̂(z_t, t). :class:`~diffvi.diffusion.schedules.InterpolatedSchedule`
places step n at t_n = n / (N − 1) and interpolates the log-SNR in between, so α_t, σ_t at t_n
are the network's own; :class:`DiscreteTimeDenoiser` calls the network at the timestep
τ = t (N − 1) (fractional between the grid points) and turns its output into ε̂:

    ε̂ = output                  (epsilon)
    ε̂ = (z − α_t x̂₀) / σ_t      (sample)
    ε̂ = α_t v̂ + σ_t z           (v_prediction; then x̂₀ = α_t z − σ_t v̂)

(the last from z = α x₀ + σ ε and α² + σ² = 1: α v + σ z = α² ε − ασ x₀ + σα x₀ + σ² ε = ε).

A network with a learned variance (Nichol & Dhariwal 2021, eq. 15; diffusers'
``variance_type="learned_range"``, guided-diffusion's ``LEARNED_RANGE``) returns 2C channels:
the first C are the prediction above, the last C values v ∈ [−1, 1] that interpolate the
log-variance of a reverse step t → s between its two fixed choices,

    log Σ = ½(v + 1) log β + ½(1 − v) log β̃,   β = 1 − ᾱ_t/ᾱ_s,   β̃ = β (1 − ᾱ_s)/(1 − ᾱ_t)

(:meth:`DiscreteTimeDenoiser.reverse_log_variance`; the step's β and β̃, so a chain on a
subset of the training steps gets the respaced variances, as guided-diffusion's respacing and
diffusers' DDPMScheduler do). diffusers' plain ``"learned"`` takes the values as Σ itself.
The ancestral sampler (``DiffusionModel.sample(sampler="ddpm")``, η = 1) uses this learned
variance by default, as diffusers' DDPMScheduler and guided-diffusion's ``p_sample`` do, and
the scheduler's fixed one, β̃ (``fixed_small``) or β (``fixed_large``), for a network without
(:attr:`DiscreteTimeDenoiser.reverse_variance`); ``variance="fixed_small"`` overrides it. DDIM
(η < 1) and the solvers use ε̂ only.

:func:`named_betas` reproduces diffusers' named β schedules and :func:`discrete_times` its
schedulers' timesteps (``set_timesteps``) as times t, so that our DDIM on a pretrained network
walks the steps diffusers' does. The network is any ``nn.Module`` with that (x, timesteps)
signature; diffusers itself is never imported here (:mod:`diffvi.diffusion.hub` loads its
folders).
"""

import math

import torch
from torch import Tensor, nn

from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.samplers import per_item, step_log_betas
from diffvi.diffusion.schedules import InterpolatedSchedule

PREDICTIONS = ("epsilon", "sample", "v_prediction")
# diffusers' variance_type values; the learned ones return 2C channels.
VARIANCE_TYPES = (
    "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range",
)  # fmt: skip
LEARNED_VARIANCES = ("learned", "learned_range")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
SPACINGS = ("leading", "trailing", "linspace")
# Fractional timesteps this close to an integer are that integer (float32 rounding of n/(N−1)).
SNAP = 1e-3


def named_betas(
    name: str, num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """β_n ``[num_steps]`` (float64) of diffusers' named schedules:

    - ``"linear"``: evenly from ``beta_start`` to ``beta_end`` (DDPM);
    - ``"scaled_linear"``: the square of evenly spaced √β (latent diffusion);
    - ``"squaredcos_cap_v2"``: the cosine schedule, β_n = min(1 − f((n+1)/N) / f(n/N), 0.999)
      with f(τ) = cos²(π/2 · (τ + 0.008)/1.008) (Nichol & Dhariwal 2021, eq. 17; no
      ``beta_start``/``beta_end``);
    - ``"sigmoid"``: ``beta_start + (beta_end − beta_start) · sigmoid(u)``, u evenly in [−6, 6]
      (GeoDiff).
    """
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    if name == "linear":
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    if name == "scaled_linear":
        roots = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64)
        return roots**2
    if name == "squaredcos_cap_v2":

        def f(tau: float) -> float:
            return math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [
            min(1 - f((n + 1) / num_steps) / f(n / num_steps), 0.999) for n in range(num_steps)
        ]
        return torch.tensor(betas, dtype=torch.float64)
    if name == "sigmoid":
        u = torch.linspace(-6, 6, num_steps, dtype=torch.float64)
        return torch.sigmoid(u) * (beta_end - beta_start) + beta_start
    raise ValueError(f"beta schedule must be one of {list(BETA_SCHEDULES)}, got {name!r}")


def discrete_times(
    steps: int, num_train_steps: int, spacing: str = "leading", offset: int = 0
) -> Tensor:
    """The timesteps of diffusers' ``scheduler.set_timesteps(steps)`` as a decreasing time grid
    ``t = τ / (N − 1)`` ``[steps]`` (float64), for ``DiffusionModel.sample(times=...)``.

    ``spacing`` (the scheduler's ``timestep_spacing``): ``"leading"`` τ = k ⌊N/S⌋ + ``offset``
    (``steps_offset``), ``"trailing"`` τ = round(N − k N/S) − 1, ``"linspace"``
    τ = round(k (N − 1)/(S − 1)). Our chain steps from each listed timestep to the next and
    ends with x̂₀ at the last, as diffusers' DDIM does with ``set_alpha_to_one``; diffusers steps
    from τ to τ − ⌊N/S⌋ whatever the spacing, which is the next listed timestep for
    ``"leading"`` only.
    """
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {list(SPACINGS)}, got {spacing!r}")
    if not 2 <= steps <= num_train_steps:
        raise ValueError(f"steps must be in [2, {num_train_steps}], got {steps}")
    n = num_train_steps
    if spacing == "leading":
        tau = torch.arange(steps - 1, -1, -1, dtype=torch.float64) * (n // steps) + offset
    elif spacing == "trailing":
        tau = torch.round(torch.arange(n, 0, -n / steps, dtype=torch.float64)) - 1
    else:
        tau = torch.round(torch.linspace(0, n - 1, steps, dtype=torch.float64)).flip(0)
    if tau.shape != (steps,) or tau.min() < 0 or tau.max() > n - 1 or (tau.diff() >= 0).any():
        raise ValueError(
            f"{spacing!r} spacing with offset {offset} gives no {steps} distinct timesteps in "
            f"[0, {n - 1}]"
        )
    return tau / (n - 1)


class DiscreteTimeDenoiser(nn.Module):
    """A discrete-time network as a continuous-time noise predictor:
    ``(z_t [B, C, ...], t [B], cond) -> ε̂ [B, C, ...]`` (see the module docstring).

    Args:
        network: ``network(x [B, C, ...], timesteps [B] float in [0, N − 1]) -> [B, C or 2C,
            ...]`` (called with a third argument, ``cond``, when one is given: class labels).
        schedule: the network's ᾱ table as a continuous-time schedule (its ``N``).
        prediction: what the network predicts: ``"epsilon"``, ``"sample"`` (x₀) or
            ``"v_prediction"``.
        learned_variance: the network returns 2C channels, the last C its learned-range
            variance values (short for ``variance_type="learned_range"``).
        variance_type: the reverse variance of the network's scheduler, one of
            :data:`VARIANCE_TYPES` (diffusers' names; default ``"learned_range"`` with
            ``learned_variance``, else ``"fixed_small"``).
    """

    def __init__(
        self,
        network: nn.Module,
        schedule: InterpolatedSchedule,
        prediction: str = "epsilon",
        learned_variance: bool = False,
        variance_type: str | None = None,
    ) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {list(PREDICTIONS)}, got {prediction!r}")
        if not isinstance(schedule, InterpolatedSchedule):
            raise ValueError(
                f"schedule must be an InterpolatedSchedule, got {type(schedule).__name__}"
            )
        if variance_type is None:
            variance_type = "learned_range" if learned_variance else "fixed_small"
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(
                f"variance_type must be one of {list(VARIANCE_TYPES)}, got {variance_type!r}"
            )
        if learned_variance and variance_type not in LEARNED_VARIANCES:
            raise ValueError(
                f"learned_variance=True needs a learned variance_type, got {variance_type!r}"
            )
        self.network, self.schedule = network, schedule
        self.prediction, self.variance_type = prediction, variance_type
        self.learned_variance = variance_type in LEARNED_VARIANCES

    @property
    def reverse_variance(self) -> str:
        """The variance of the ancestral step's noise that the network's own scheduler uses:
        ``"learned"``, ``"fixed_large"`` (β) or ``"fixed_small"`` (β̃; the ``_log`` variants
        are the same variances)."""
        if self.learned_variance:
            return "learned"
        return "fixed_large" if self.variance_type.startswith("fixed_large") else "fixed_small"

    def network_timesteps(self, t: Tensor) -> Tensor:
        """The network's timesteps τ = t (N − 1) ``[B]`` (float32) of times ``t [B]``; values
        within 10⁻³ of an integer are that integer, so that the grid t = n / (N − 1) calls the
        network at exactly its training steps."""
        tau = self.schedule.step_of(t)
        rounded = tau.round()
        tau = torch.where((tau - rounded).abs() < SNAP, rounded, tau)
        return tau.clamp(0, self.schedule.num_steps - 1).float()

    def predict(
        self, z: Tensor, t: Tensor, cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``(ε̂ [B, C, ...], learned-range values [B, C, ...] or None)`` at ``z [B, C, ...]``,
        ``t [B]``."""
        if t.ndim == 0:
            t = t.expand(z.shape[0])
        timesteps = self.network_timesteps(t)
        args = (z, timesteps) if cond is None else (z, timesteps, cond)
        out = self.network(*args)
        channels = z.shape[1] * (2 if self.learned_variance else 1)
        expected = (z.shape[0], channels, *z.shape[2:])
        if not isinstance(out, Tensor) or tuple(out.shape) != expected:
            got = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the network must return shape {list(expected)}, got {got}")
        out = out.to(z.dtype)
        values = None
        if self.learned_variance:
            out, values = out.split(z.shape[1], dim=1)
        return self.to_noise(out, z, t), values

    def to_noise(self, output: Tensor, z: Tensor, t: Tensor) -> Tensor:
        """The network's prediction ``output [B, ...]`` at ``z [B, ...]``, ``t [B]`` as ε̂."""
        if self.prediction == "epsilon":
            return output
        alpha, sigma = (per_item(v, z) for v in self.schedule.alpha_sigma(t))
        if self.prediction == "sample":
            return (z - alpha * output) / sigma
        return alpha * output + sigma * z

    def forward(self, z: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """ε̂(z_t, t) ``[B, C, ...]``."""
        return self.predict(z, t, cond)[0]

    def reverse_log_variance(self, values: Tensor, t: Tensor, s: Tensor) -> Tensor:
        """log Σ of the learned reverse step ``t → s`` (``s < t``, ``[B]``) from the network's
        values ``[B, C, ...]``: for ``learned_range`` (v ∈ [−1, 1]) ½(v + 1) log β +
        ½(1 − v) log β̃, with the step's β = 1 − ᾱ_t/ᾱ_s and β̃ = β (1 − ᾱ_s)/(1 − ᾱ_t)
        (diffusers' ``learned_range``, guided-diffusion's ``LEARNED_RANGE``; β̃ is floored at
        10⁻²⁰ where the step ends at ᾱ_s = 1); for diffusers' ``learned``, log v (v floored
        at 10⁻²⁰)."""
        if self.variance_type == "learned":
            return values.double().clamp_min(1e-20).log().to(values.dtype)
        log_beta, log_beta_tilde = (
            per_item(v, values.double())
            for v in step_log_betas(self.schedule.gamma(t), self.schedule.gamma(s))
        )
        frac = (values.double() + 1) / 2
        return (frac * log_beta + (1 - frac) * log_beta_tilde).to(values.dtype)

    def extra_repr(self) -> str:
        return f"prediction={self.prediction!r}, variance_type={self.variance_type!r}"


def discrete_diffusion_model(
    network: nn.Module,
    alphas_cumprod: Tensor | list[float],
    prediction: str = "epsilon",
    learned_variance: bool = False,
    variance_type: str | None = None,
    clip_sample: bool = True,
    clip_range: float = 1.0,
) -> DiffusionModel:
    """A :class:`DiffusionModel` of images from a pretrained discrete-time ``network`` and its
    ᾱ table ``[N]`` (the network's arguments as :class:`DiscreteTimeDenoiser`; ``clip_sample``
    and ``clip_range`` its scheduler's: whether its samplers clamp x̂₀ to
    [−clip_range, clip_range]), in eval mode."""
    schedule = InterpolatedSchedule(alphas_cumprod)
    denoiser = DiscreteTimeDenoiser(network, schedule, prediction, learned_variance, variance_type)
    return DiffusionModel(
        schedule, denoiser, loss_type="simple", image=True, clip_sample=clip_sample,
        clip_range=clip_range,
    ).eval()  # fmt: skip
