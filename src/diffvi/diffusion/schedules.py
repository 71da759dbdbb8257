"""Noise schedules of Gaussian diffusions: discrete (DDPM, Ho et al. 2020) and continuous-time
(VDM, Kingma et al. 2021) — linear, cosine and learned (VDM's monotone network, or its linear
γ with learned endpoints).

The forward (noising) chain over ``T`` steps is r(y_t | y_{t−1}) = N(√(1−β_t) y_{t−1}, β_t I),
``t = 1 … T``, with y_0 the clean variable. Its marginals are
r(y_t | y_0) = N(√ᾱ_t y_0, (1−ᾱ_t) I), ``α_t = 1 − β_t``, ``ᾱ_t = Π_{s≤t} α_s``, and the
posterior r(y_{t−1} | y_t, y_0) has variance β̃_t = β_t (1−ᾱ_{t−1}) / (1−ᾱ_t) (``ᾱ_0 = 1``).

Step ``t`` (1-based, as in the papers) is stored at index ``t − 1`` of every ``[T]`` buffer.
The log-SNR ``log(ᾱ_t / (1 − ᾱ_t))`` is kept too, so that continuous-time schedules (log-SNR
γ(t), ``t ∈ [0, 1]``; DESIGN.md) can extend this module with a discrete grid as a view; the
other way round, :class:`InterpolatedSchedule` makes the table ᾱ_n of a pretrained network a
continuous-time schedule.
"""

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def linear_betas(
    num_steps: int,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """DDPM's linear schedule: ``β_t`` evenly spaced from ``beta_start`` to ``beta_end``, ``[T]``.

    ``num_steps = 0`` gives an empty schedule (no diffusion); one step gives ``[beta_start]``.
    Needs ``0 < beta_start <= beta_end < 1``.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    if num_steps == 1:
        return torch.tensor([beta_start], dtype=dtype)
    return torch.linspace(beta_start, beta_end, num_steps, dtype=dtype)


class DiscreteSchedule(nn.Module):
    """A fixed ``T``-step variance schedule and the quantities derived from it.

    Buffers (all ``[T]``, index ``t − 1`` holds step ``t``; computed in float64, stored in the
    default dtype, and converted with the module by ``.double()`` / ``.to(...)``):
    ``betas`` β_t, ``alphas`` α_t = 1 − β_t, ``alpha_bars`` ᾱ_t, ``alpha_bars_prev`` ᾱ_{t−1}
    (``ᾱ_0 = 1``), ``posterior_variances`` β̃_t (``β̃_1 = 0``), ``log_snr`` log(ᾱ_t / (1 − ᾱ_t)).

    Args:
        betas: ``[T]`` values in (0, 1); ``T = 0`` is allowed (an empty schedule).
    """

    betas: Tensor
    alphas: Tensor
    alpha_bars: Tensor
    alpha_bars_prev: Tensor
    posterior_variances: Tensor
    log_snr: Tensor

    def __init__(self, betas: Tensor) -> None:
        super().__init__()
        betas = torch.as_tensor(betas)
        if betas.ndim != 1:
            raise ValueError(f"betas must have shape [T], got {list(betas.shape)}")
        betas = betas.detach().to(torch.float64)
        if betas.numel() and not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError(
                f"every beta must lie in (0, 1), got min {betas.min().item():.3g}, "
                f"max {betas.max().item():.3g}"
            )
        alphas = 1 - betas
        alpha_bars = torch.cumprod(alphas, 0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        posterior_variances = betas * (1 - alpha_bars_prev) / (1 - alpha_bars)
        log_snr = torch.log(alpha_bars) - torch.log1p(-alpha_bars)
        dtype = torch.get_default_dtype()
        for name, value in [
            ("betas", betas),
            ("alphas", alphas),
            ("alpha_bars", alpha_bars),
            ("alpha_bars_prev", alpha_bars_prev),
            ("posterior_variances", posterior_variances),
            ("log_snr", log_snr),
        ]:
            self.register_buffer(name, value.to(dtype))

    @classmethod
    def linear(
        cls, num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> "DiscreteSchedule":
        """The schedule of :func:`linear_betas`."""
        return cls(linear_betas(num_steps, beta_start, beta_end))

    @property
    def num_steps(self) -> int:
        """T, the number of noising steps."""
        return int(self.betas.shape[0])

    def reverse_variances(self, kind: str = "beta") -> Tensor:
        """Variances σ_t² ``[T]`` of a stochastic reverse (denoising) step.

        ``"beta"``: σ_t² = β_t. ``"posterior"``: σ_t² = β̃_t, except at ``t = 1`` where β̃_1 = 0
        would make the last step deterministic (and a density of the chain undefined): there
        it takes β̃_2 (the clipped value of Nichol & Dhariwal 2021), or β_1 when ``T = 1``.
        Ho et al. (2020, §3.2) found both choices work equally well for sampling.
        """
        if kind == "beta":
            return self.betas
        if kind == "posterior":
            if self.num_steps == 0:
                return self.posterior_variances
            first = self.posterior_variances[1:2] if self.num_steps > 1 else self.betas[:1]
            return torch.cat([first, self.posterior_variances[1:]])
        raise ValueError(f"reverse variance must be 'beta' or 'posterior', got {kind!r}")

    def add_noise(self, y0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Draw from r(y_t | y_0): ``√ᾱ_t y0 + √(1−ᾱ_t) noise``.

        ``y0, noise: [N, ...]``; ``t: [N]`` integer steps in ``1 … T``. Returns ``[N, ...]``.
        """
        if t.shape != y0.shape[:1]:
            raise ValueError(f"t must have shape [{y0.shape[0]}], got {list(t.shape)}")
        shape = (-1,) + (1,) * (y0.ndim - 1)
        alpha_bar = self.alpha_bars[t - 1].reshape(shape)
        return alpha_bar.sqrt() * y0 + (1 - alpha_bar).sqrt() * noise

    def posterior_mean(self, y0: Tensor, y_t: Tensor, t: Tensor) -> Tensor:
        """Mean of the forward posterior r(y_{t−1} | y_t, y_0) (Ho et al. 2020, eq. 7):
        ``√ᾱ_{t−1} β_t / (1−ᾱ_t) · y0 + √α_t (1−ᾱ_{t−1}) / (1−ᾱ_t) · y_t``.

        ``y0, y_t: [..., D]``; ``t``: integer steps in ``1 … T`` of shape ``y0.shape[:-1]``.
        At ``t = 1`` it is ``y0``. Returns ``[..., D]``.
        """
        if t.shape != y0.shape[:-1] or y_t.shape != y0.shape:
            raise ValueError(
                f"need y_t of y0's shape {list(y0.shape)} and t of shape {list(y0.shape[:-1])}, "
                f"got {list(y_t.shape)} and {list(t.shape)}"
            )
        i = t - 1
        scale = 1 / (1 - self.alpha_bars[i])
        coef_0 = self.alpha_bars_prev[i].sqrt() * self.betas[i] * scale
        coef_t = self.alphas[i].sqrt() * (1 - self.alpha_bars_prev[i]) * scale
        return coef_0.unsqueeze(-1) * y0 + coef_t.unsqueeze(-1) * y_t

    def extra_repr(self) -> str:
        if self.num_steps == 0:
            return "num_steps=0"
        return (
            f"num_steps={self.num_steps}, beta_1={self.betas[0].item():.3g}, "
            f"beta_T={self.betas[-1].item():.3g}, alpha_bar_T={self.alpha_bars[-1].item():.3g}"
        )


# ---------------------------------------------------------------------------------------------
# Continuous-time schedules (Kingma et al. 2021, "Variational Diffusion Models", §3.2).
#
# A schedule is γ(t) = −log SNR(t), increasing in t ∈ [0, 1] from γ(0) (almost clean) to γ(1)
# (almost pure noise). Variance preserving: α_t² = sigmoid(−γ(t)), σ_t² = sigmoid(γ(t)), and
# q(z_t | x) = N(α_t x, σ_t² I). A T-step discrete schedule is the view ``discretize(T)``.
# ---------------------------------------------------------------------------------------------


def alpha_sigma_of(gamma: Tensor) -> tuple[Tensor, Tensor]:
    """``(α, σ)`` of a log-SNR value γ = −log SNR: α² = sigmoid(−γ), σ² = sigmoid(γ)."""
    return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()


def _ddpm_time(t: Tensor, num_steps: int) -> Tensor:
    """Map ``t ∈ [0, 1]`` to DDPM's step index ``i ∈ [1, T]`` (continuous): ``1 + t (T − 1)``.

    DDPM's first noisy latent x_1 (where its reconstruction term L_0 sits) is VDM's z_0 at t = 0,
    and its last x_T is z_1 at t = 1.
    """
    return 1 + t * (num_steps - 1)


class NoiseSchedule(nn.Module):
    """Base class of continuous-time schedules: subclasses define :meth:`gamma`.

    Every method takes times ``t`` of any shape (values in [0, 1]) and returns that shape.
    """

    def gamma(self, t: Tensor) -> Tensor:
        """γ(t) = −log SNR(t), non-decreasing in ``t``."""
        raise NotImplementedError

    def forward(self, t: Tensor) -> Tensor:
        return self.gamma(t)

    def log_snr(self, t: Tensor) -> Tensor:
        """log SNR(t) = log(α_t² / σ_t²) = −γ(t)."""
        return -self.gamma(t)

    def gamma_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(γ(t), dγ/dt(t))`` by automatic differentiation; the derivative stays differentiable
        with respect to the schedule's parameters while gradients are enabled (the VDM loss
        ½ γ'(t) ‖ε − ε̂‖² trains a learned schedule through it)."""
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            t = t.detach().requires_grad_(True)
            gamma = self.gamma(t)
            (slope,) = torch.autograd.grad(gamma.sum(), t, create_graph=keep_graph)
        if not keep_graph:
            gamma = gamma.detach()
        return gamma, slope

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(α_t, σ_t)`` with α_t² = sigmoid(−γ(t)), σ_t² = sigmoid(γ(t))."""
        return alpha_sigma_of(self.gamma(t))

    def add_noise(self, x: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Draw from q(z_t | x) = N(α_t x, σ_t² I): ``α_t x + σ_t noise``.

        ``x, noise: [B, ...]``; ``t: [B]``. Returns ``[B, ...]``.
        """
        if t.shape != x.shape[:1]:
            raise ValueError(f"t must have shape [{x.shape[0]}], got {list(t.shape)}")
        alpha, sigma = self.alpha_sigma(t)
        shape = (-1,) + (1,) * (x.ndim - 1)
        return alpha.reshape(shape) * x + sigma.reshape(shape) * noise

    @property
    def gamma_min(self) -> float:
        """γ(0)."""
        return float(self.gamma(torch.zeros(1, dtype=torch.float64)).item())

    @property
    def gamma_max(self) -> float:
        """γ(1)."""
        return float(self.gamma(torch.ones(1, dtype=torch.float64)).item())

    def discretize(self, num_steps: int) -> DiscreteSchedule:
        """The ``T``-step view: step ``i = 1 … T`` sits at ``t = (i − 1) / (T − 1)`` (``t = 1``
        when ``T = 1``), so ᾱ_1 = α²(0) and ᾱ_T = α²(1); β_i = 1 − ᾱ_i / ᾱ_{i−1}."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if num_steps == 1:
            t = torch.ones(1, dtype=torch.float64)
        else:
            t = torch.linspace(0, 1, num_steps, dtype=torch.float64)
        with torch.no_grad():
            log_alpha_bars = F.logsigmoid(-self.gamma(t).double())
        log_prev = torch.cat([torch.zeros(1, dtype=torch.float64), log_alpha_bars[:-1]])
        return DiscreteSchedule(-torch.expm1(log_alpha_bars - log_prev))


class LinearSchedule(NoiseSchedule):
    """DDPM's linear-β schedule (Ho et al. 2020, §4: β from 1e-4 to 0.02 over T = 1000) in
    continuous time.

    With ``i = 1 + t (T − 1)``, −log ᾱ(t) is the running sum of the βs made continuous,
    ``S(i) = β_1 i + (β_T − β_1) i (i − 1) / (2 (T − 1))``, and γ(t) = log(exp(S) − 1).
    At the grid points ᾱ matches DDPM's Π(1 − β) to the first order in β (γ(0) ≈ −9.2,
    γ(1) ≈ 10.0 for the defaults).
    """

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, num_steps: int = 1000):
        super().__init__()
        linear_betas(num_steps, beta_start, beta_end)  # validates the arguments
        if num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {num_steps}")
        self.beta_start, self.beta_end, self.num_steps = beta_start, beta_end, num_steps

    def gamma(self, t: Tensor) -> Tensor:
        i = _ddpm_time(t.double(), self.num_steps)
        slope = (self.beta_end - self.beta_start) / (2 * (self.num_steps - 1))
        total = self.beta_start * i + slope * i * (i - 1)
        return torch.log(torch.expm1(total)).to(t.dtype)

    def extra_repr(self) -> str:
        return f"beta_start={self.beta_start}, beta_end={self.beta_end}, num_steps={self.num_steps}"


class CosineSchedule(NoiseSchedule):
    """The cosine schedule of Nichol & Dhariwal (2021, eq. 17) in continuous time.

    ᾱ(τ) = f(τ) / f(0), f(τ) = cos²(π/2 · (τ + s) / (1 + s)), at DDPM time τ = i / T with
    ``i = 1 + t (T − 1)``. So γ = log(1 − ᾱ) − log ᾱ
    = log sin(u − u₀) + log sin(u + u₀) − 2 log cos u, with u = π/2 (τ + s)/(1 + s), u₀ = u(0).
    As τ → 1, γ → ∞; like the paper's clipping β ≤ 0.999 it is capped at
    ``gamma_cap`` (default: the γ that the clip gives at the last step, ≈ 19.8 for T = 1000).
    """

    def __init__(self, s: float = 0.008, num_steps: int = 1000, gamma_cap: float | None = None):
        super().__init__()
        if s <= 0:
            raise ValueError(f"s must be > 0, got {s}")
        if num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {num_steps}")
        self.s, self.num_steps = s, num_steps
        if gamma_cap is None:
            # ᾱ_T = ᾱ_{T−1} · (1 − 0.999), Nichol & Dhariwal's clip of the last β.
            before = self._uncapped(
                torch.tensor((num_steps - 2) / (num_steps - 1), dtype=torch.float64)
            )
            log_alpha_bar = F.logsigmoid(-before) + math.log(1e-3)
            gamma_cap = float(torch.log(-torch.expm1(log_alpha_bar)) - log_alpha_bar)
        self.gamma_cap = gamma_cap

    def _uncapped(self, t: Tensor) -> Tensor:
        tau = _ddpm_time(t.double(), self.num_steps) / self.num_steps  # cos(π/2) > 0 in float64
        u = (math.pi / 2) * (tau + self.s) / (1 + self.s)
        u0 = (math.pi / 2) * self.s / (1 + self.s)
        # sin(u−u0)·sin(u+u0) = cos²u0 − cos²u, the 1 − ᾱ numerator, without cancellation.
        return (
            torch.log(torch.sin(u - u0))
            + torch.log(torch.sin(u + u0))
            - 2 * torch.log(torch.cos(u))
        )

    def gamma(self, t: Tensor) -> Tensor:
        return self._uncapped(t).clamp(max=self.gamma_cap).to(t.dtype)

    def extra_repr(self) -> str:
        return f"s={self.s}, num_steps={self.num_steps}, gamma_cap={self.gamma_cap:.3g}"


class InterpolatedSchedule(NoiseSchedule):
    """The schedule of a network trained on ``N`` discrete steps (a diffusers or ADM model), in
    continuous time.

    Step ``n = 0 … N − 1`` (diffusers' and ADM's 0-based timestep; DDPM's step ``n + 1``), with
    ᾱ_n = ``alphas_cumprod[n]``, sits at ``t_n = n / (N − 1)``, and γ(t) interpolates
    γ_n = log((1 − ᾱ_n) / ᾱ_n) linearly in between. So at every training step α_t² = ᾱ_n
    exactly (the network is called at timestep ``n``), t = 0 is the first, least noisy step and
    t = 1 the last (where the linear and cosine schedules place DDPM's steps too); in between,
    the network sees the fractional timestep ``t (N − 1)``
    (:class:`~diffvi.diffusion.discrete.DiscreteTimeDenoiser`).

    Args:
        alphas_cumprod: ᾱ ``[N]``, ``N >= 2``, strictly decreasing in (0, 1) (a schedule with
            zero terminal SNR, ᾱ_{N−1} = 0, has γ = ∞ at t = 1 and is refused).
    """

    gammas: Tensor

    def __init__(self, alphas_cumprod: Tensor | list[float]) -> None:
        super().__init__()
        table = torch.as_tensor(alphas_cumprod).detach().to(torch.float64)
        if table.ndim != 1 or table.shape[0] < 2:
            raise ValueError(
                f"alphas_cumprod must have shape [N] with N >= 2, got {list(table.shape)}"
            )
        if not bool(((table > 0) & (table < 1)).all()):
            raise ValueError(
                f"alphas_cumprod must lie in (0, 1), got min {table.min().item():.3g}, "
                f"max {table.max().item():.3g}"
            )
        if not bool((table.diff() < 0).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing, got a step that is not")
        # γ_n = log(1 − ᾱ_n) − log ᾱ_n, kept in float64 (not saved: the table rebuilds it).
        self.register_buffer("gammas", torch.log1p(-table) - torch.log(table), persistent=False)

    @property
    def num_steps(self) -> int:
        """N, the number of training steps of the network."""
        return int(self.gammas.shape[0])

    @property
    def alphas_cumprod(self) -> Tensor:
        """ᾱ_n ``[N]`` (float64), the table the schedule was built from."""
        return torch.sigmoid(-self.gammas.double())

    def step_of(self, t: Tensor) -> Tensor:
        """The (fractional) training step ``t (N − 1)`` of times ``t``, in float64."""
        return t.double() * (self.num_steps - 1)

    def gamma(self, t: Tensor) -> Tensor:
        gammas = self.gammas.to(device=t.device, dtype=torch.float64)
        u = self.step_of(t).clamp(0, self.num_steps - 1)
        lower = u.detach().floor().clamp(max=self.num_steps - 2).long()
        weight = u - lower
        value = gammas[lower] + weight * (gammas[lower + 1] - gammas[lower])
        return value.to(t.dtype)

    def extra_repr(self) -> str:
        return (
            f"num_steps={self.num_steps}, gamma_0={self.gammas[0].item():.3g}, "
            f"gamma_1={self.gammas[-1].item():.3g}"
        )


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the incoming gradient by ``scale``, read
    when the backward pass runs (so the caller may fill it after the forward pass)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale.to(grad.dtype), None


class _MonotoneLinear(nn.Linear):
    """A linear layer whose weights are |W|, so the map is non-decreasing in every input."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.abs(), self.bias)


class LearnedSchedule(NoiseSchedule):
    """The learned monotone schedule of Variational Diffusion Models (Kingma et al. 2021, §3.2
    and App. H): γ(t) = γ₀ + (γ₁ − γ₀) · ĝ(t), where ĝ is a monotone network normalised to
    ĝ(0) = 0, ĝ(1) = 1, and the endpoints γ₀, γ₁ are trainable (initialised at −13.3 and 5).

    The network is VDM's: g(t) = l₁(t) + l₃(φ(l₂(l₁(t)))) / H with positive-weight linear
    layers l₁ (1 → 1), l₂ (1 → H, ``hidden`` units), l₃ (H → 1, no bias) and
    φ(x) = 2 sigmoid(x) − 1.
    Positive weights and increasing activations make g, hence γ, monotone. At initialisation
    the nonlinear part is small, so γ starts close to linear in t.

    The continuous-time bound depends on the schedule only through γ₀ and γ₁ (VDM eq. 15): in
    expectation its gradient moves the endpoints and leaves the shape alone. So, as in VDM
    (§5.2 and App. I.2), the shape ĝ is instead trained to minimise the variance of the bound's
    estimate: with ``minimise_variance`` (the default), :meth:`gamma_and_derivative` takes
    per-item ``variance_weights`` 2 L_i, which turn the shape's gradient of mean(L) into that of
    mean(L²) within the same backward pass; the endpoints keep the bound's gradient.
    """

    def __init__(
        self,
        gamma_min: float = -13.3,
        gamma_max: float = 5.0,
        hidden: int = 1024,
        minimise_variance: bool = True,
    ):
        super().__init__()
        self.minimise_variance = minimise_variance
        if not gamma_min < gamma_max:
            raise ValueError(f"need gamma_min < gamma_max, got {gamma_min} and {gamma_max}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.gamma_0 = nn.Parameter(torch.tensor(float(gamma_min)))
        self.gamma_1 = nn.Parameter(torch.tensor(float(gamma_max)))
        self.l1 = _MonotoneLinear(1, 1)
        self.l2 = _MonotoneLinear(1, hidden)
        self.l3 = _MonotoneLinear(hidden, 1, bias=False)
        with torch.no_grad():
            self.l1.weight.fill_(1.0)
            self.l1.bias.zero_()
            nn.init.normal_(self.l2.weight)
            nn.init.normal_(self.l2.bias)
            nn.init.normal_(self.l3.weight)
        self.hidden = hidden

    def _shape(self, t: Tensor) -> Tensor:
        h = self.l1(t.unsqueeze(-1))
        nonlinear = 2 * torch.sigmoid(self.l2(h)) - 1
        return (h + self.l3(nonlinear) / self.hidden).squeeze(-1)

    def _unit(self, t: Tensor) -> Tensor:
        """ĝ(t), the shape normalised to ĝ(0) = 0, ĝ(1) = 1."""
        ends = self._shape(torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device))
        return (self._shape(t) - ends[0]) / (ends[1] - ends[0])

    def gamma(self, t: Tensor) -> Tensor:
        return self.gamma_0 + (self.gamma_1 - self.gamma_0) * self._unit(t.to(self.gamma_0.dtype))

    def gamma_and_derivative(
        self, t: Tensor, variance_weights: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(γ(t), γ'(t))``; with ``variance_weights [N]`` (filled in by the caller before
        the backward pass, e.g. with 2 L_i), the gradient reaching the shape network from item
        i is multiplied by its weight (VDM's variance-minimising gradient, App. I.2)."""
        if variance_weights is None:
            return super().gamma_and_derivative(t)
        with torch.enable_grad():
            t = t.detach().to(self.gamma_0.dtype).requires_grad_(True)
            unit = self._unit(t)
            (unit_slope,) = torch.autograd.grad(unit.sum(), t, create_graph=True)
        unit = _ScaleGradient.apply(unit, variance_weights)
        unit_slope = _ScaleGradient.apply(unit_slope, variance_weights)
        span = self.gamma_1 - self.gamma_0
        return self.gamma_0 + span * unit, span * unit_slope

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, minimise_variance={self.minimise_variance}"


class LearnableScalarSchedule(NoiseSchedule):
    """VDM's ``learnable_scalar`` schedule: γ(t) = b + |w| t, linear in t with two trainable
    scalars, so γ(0) = b and γ(1) = b + |w| are the learned endpoints and γ' = |w| ≥ 0.

    The schedule of the official CIFAR-10 and ImageNet 32/64 configs (google-research/vdm
    ``configs/cifar10.py``, ``imagenet32.py``, ``imagenet64.py``: ``gamma_type=
    'learnable_scalar'``; ``model_vdm.py``, ``NoiseSchedule_Scalar``), initialised as there at
    b = γ_min = −13.3 and w = γ_max − γ_min = 18.3. Its shape is fixed, so it trains on the
    bound's gradient alone: by VDM eq. 15 that gradient moves the endpoints, which is all this
    schedule has (the monotone network, :class:`LearnedSchedule`, is ``"learned"``).

    Args:
        gamma_min, gamma_max: γ(0) and γ(1) at initialisation (``gamma_min < gamma_max``).
    """

    def __init__(self, gamma_min: float = -13.3, gamma_max: float = 5.0) -> None:
        super().__init__()
        if not gamma_min < gamma_max:
            raise ValueError(f"need gamma_min < gamma_max, got {gamma_min} and {gamma_max}")
        self.start = nn.Parameter(torch.tensor(float(gamma_min)))  # b
        self.slope = nn.Parameter(torch.tensor(float(gamma_max - gamma_min)))  # w

    @property
    def gamma_0(self) -> Tensor:
        """γ(0) = b, a differentiable scalar."""
        return self.start

    @property
    def gamma_1(self) -> Tensor:
        """γ(1) = b + |w|, a differentiable scalar."""
        return self.start + self.slope.abs()

    def gamma(self, t: Tensor) -> Tensor:
        return self.start + self.slope.abs() * t.to(self.start.dtype)  # NoiseSchedule_Scalar

    def extra_repr(self) -> str:
        return f"gamma_0={self.gamma_0.item():.4g}, gamma_1={self.gamma_1.item():.4g}"


SCHEDULES = {
    "linear": LinearSchedule,
    "cosine": CosineSchedule,
    "learned": LearnedSchedule,
    "learnable-scalar": LearnableScalarSchedule,
}
# Schedules with trainable parameters: trained by the VDM bound (loss "vdm").
LEARNABLE_SCHEDULES = ("learned", "learnable-scalar")
# Schedules a saved spec may name but training does not offer (they need a table, not a name).
SPEC_SCHEDULES = {**SCHEDULES, "interpolated": InterpolatedSchedule}


def build_schedule(name: str, **kwargs: Any) -> NoiseSchedule:
    """A schedule by name: ``"linear"``, ``"cosine"``, ``"learned"`` (VDM's monotone network),
    ``"learnable-scalar"`` (VDM's linear γ with learned endpoints) or ``"interpolated"``
    (keyword arguments go to its constructor)."""
    if name not in SPEC_SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SPEC_SCHEDULES)}, got {name!r}")
    return SPEC_SCHEDULES[name](**kwargs)
