"""Conditional Variational Diffusion Models (CVDM; della Maggiora, Croquevielle et al., ICLR 2024,
arXiv 2312.02246): a conditional diffusion model whose variance schedule is learned per pixel
from the condition, trained jointly with the denoiser.

Notation. The condition is ``x`` (a low-resolution or defocused observation, ``[B, C_x, H, W]``)
and the target ``y₀`` (``[B, C_y, H, W]``, same ``H × W``). CVDM's forward process is

    q(y_t | y₀, x) = N(√γ̄(t, x) y₀, (1 − γ̄(t, x)) I),   t ∈ [0, 1],            (paper §3.1)

where **γ̄ is the signal variance** (the paper's γ; DDPM's ᾱ). It is *not* the VDM log-SNR
``γ_VDM(t) = −log SNR`` of :mod:`diffvi.diffusion.schedules`: in code CVDM's quantity is always
called ``gamma_bar`` / "signal variance", and for a fixed schedule γ̄(t) = α_t² =
sigmoid(−γ_VDM(t)). The continuous-time chain with rate β(t, x) has
∂_t γ̄ = −β γ̄, γ̄(0) = 1 (paper §3.2). CVDM factorises (paper §3.3; official code
``cvdm/diffusion_models/variance_model.py``, ``variance_model``)

    β(t, x) = λ(x) τ₁(t),    γ̄(t, x) = exp(−λ(x) τ₂(t)),

with λ(x) ≥ 0 a per-pixel map from a conv net on x (softplus output) and τ₁, τ₂ shared monotone
time functions with τ(0) = 0. Since λ ≥ 0 and τ₂ is non-decreasing, γ̄ is non-increasing in t for
every pixel and condition, and γ̄(0, x) = 1 exactly. β and γ̄ are tied only softly, by the loss.

Loss (terms and weights of the official code ``cvdm/diffusion_models/joint_model.py``,
``create_joint_model``, and the Keras ``loss_weights=[1, 2, 2, 2]`` of ``instantiate_cvdm``;
each term is a per-pixel mean):

    L = ‖ε − ε̂(y_t, x, γ̄_t)‖²                                   noise term (weight 1)
      + 2 [(∂_t γ̄ + β γ̄)² + (γ̄(t₀) − 1)² + γ̄(t_T)²]            L_β (weight 2)
      + 2 L_prior                                                 prior (weight 2)
      + 2 α (∂²_t γ̄)²,  α = 1e-3                                  L_γ regulariser (weight 2)

with t ~ U(0, 1) per item, t₀ = 1/T and t_T = 1 − 1/T (``T`` = ``timesteps``). The prior term
has two directions (:func:`prior_kl`, ``CVDM(prior_kl=...)``): ``"paper"`` (default), the
variational bound's L_T = KL(q(y_{t_T} | y₀, x) ‖ N(0, I)) (the paper builds its loss on VDM's
bound, whose prior term is KL(q(z₁ | x) ‖ p(z₁)), VDM eq. 11); and ``"official"``, what
``joint_model.py`` computes: ``normal_kl(0, 0, √γ̄ y₀, log(1 − γ̄ + 1e-7))`` of ``loss_utils.py``,
i.e. KL(N(0, I) ‖ q(y_{t_T} | y₀, x)). At γ̄_T = 1/2 and y₀ = 1 they are ½ log 2 ≈ 0.347 and
1 − ½ log 2 ≈ 0.653. L_γ is the
paper's curvature penalty on the SNR, whose official implementation (``taylor_expand_gamma`` with
``snr_expansion_n = 1`` in every shipped config) reduces the SNR γ̄/(1 − γ̄) = Σ_n γ̄ⁿ to its first
term γ̄. The denoiser sees γ̄, never t.

Sampling (official ``cvdm/utils/inference_utils.py``, ``ddpm_obtain_sr_img``) runs a ``T``-step
ancestral chain whose per-pixel steps come from the learned β: α_k = 1 − β(t_k, x) / T (clipped
to [1e-6, 0.99999]), γ̄_k = Π_{j≤k} α_j.

Super-resolution residuals: this module models y₀ given x, whatever y₀ is. The SR convention
(y₀ = high-resolution image − upsampled input, and adding the upsampled input back after
sampling) lives in the task code; residuals are not images in [0, 1], so such a model is built
with ``image=False``.
"""

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.diffusion.model import stratified_times
from diffvi.diffusion.samplers import standard_normal
from diffvi.diffusion.schedules import NoiseSchedule, _MonotoneLinear
from diffvi.nn.tiling import Tiling
from diffvi.nn.unet import UNet

# Official loss weights: Keras loss_weights=[1, 2, 2, 2] over (noise, L_β, prior KL, L_γ).
LOSS_WEIGHTS = {"noise": 1.0, "beta": 2.0, "prior": 2.0, "regulariser": 2.0}
# Official clipping of the per-step α_k = 1 − β_k / T of the sampler.
ALPHA_MIN, ALPHA_MAX = 1e-6, 0.99999
# Official floor of the sampler's γ̄_k (np.clip(gamma_vec, 1e-10, 0.99999)): no division by 0.
LOG_GAMMA_BAR_MIN = math.log(1e-10)
SAMPLE_LEVELS = ("beta", "gamma")
# Directions of the prior term: the paper's bound, KL(q ‖ N(0, I)), or the official code's reverse.
PRIOR_KL = ("paper", "official")
# The official code's floor on the variance 1 − γ̄_T in that KL (log(n_sample_LT[3] + 1e-7)).
OFFICIAL_VAR_FLOOR = 1e-7

Bounds = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``bounds(x) -> (low, high)``: the range of valid targets y₀ given the model-space condition
``x [B, C_x, H, W]``, each broadcastable to ``[B, C_y, H, W]`` (e.g. a task's
``target_bounds``)."""


def _inverse_softplus(y: float) -> float:
    """``x`` with ``softplus(x) = y`` (y > 0)."""
    return y + math.log(-math.expm1(-y))


def prior_kl(log_gamma_bar: Tensor, y0: Tensor, direction: str = "paper") -> Tensor:
    """Per-pixel KL between q(y_T | y₀, x) = N(√γ̄ y₀, 1 − γ̄) and N(0, 1), in either direction.

    ``log_gamma_bar``: log γ̄_T, broadcastable to ``y0`` (model space, ``[B, C, H, W]``);
    returns ``y0``'s broadcast shape. With v = 1 − γ̄ (computed as −expm1(log γ̄)):

    - ``"paper"``: KL(q ‖ N(0, 1)) = ½ (v + γ̄ y₀² − 1 − log v) = ½ (γ̄ y₀² − γ̄ − log v), the
      bound's prior term L_T (VDM eq. 11; CVDM builds on that bound).
    - ``"official"``: KL(N(0, 1) ‖ q) = ½ (log v' + (1 + γ̄ y₀²) / v' − 1), v' = v + 1e-7, what
      the official ``joint_model.py`` computes (``normal_kl(0, 0, √γ̄ y₀, log v')``).

    Both are 0 at γ̄ = 0 and grow with γ̄; at γ̄ = ½, y₀ = 1: ½ log 2 and 1 − ½ log 2.
    """
    if direction not in PRIOR_KL:
        raise ValueError(f"prior_kl must be one of {PRIOR_KL}, got {direction!r}")
    gamma_bar = torch.exp(log_gamma_bar)
    mean_sq = gamma_bar * y0.pow(2)
    if direction == "paper":
        return 0.5 * (mean_sq - gamma_bar - torch.log(-torch.expm1(log_gamma_bar)))
    var = -torch.expm1(log_gamma_bar) + OFFICIAL_VAR_FLOOR
    return 0.5 * (torch.log(var) + (1 + mean_sq) / var - 1)


def _derivatives(fn, t: Tensor, order: int) -> list[Tensor]:
    """``[f(t), f'(t), …, f⁽ᵒʳᵈᵉʳ⁾(t)]`` of an elementwise time function, by autograd on ``t [N]``.

    The derivatives stay differentiable in ``fn``'s parameters while gradients are enabled (the
    consistency and curvature terms train the time functions through them)."""
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        t = t.detach().requires_grad_(True)
        values = [fn(t)]
        for _ in range(order):
            (slope,) = torch.autograd.grad(
                values[-1].sum(), t, create_graph=True, allow_unused=True
            )
            values.append(torch.zeros_like(t) if slope is None else slope)
    if not keep_graph:
        values = [v.detach() for v in values]
    return values


class MonotoneTime(nn.Module):
    """A non-decreasing time function with τ(0) = 0 exactly: ``τ(t) = t · softplus(f(t))``.

    ``f(t) = a t + b + l₃(φ(l₂ t)) / H`` with weights a, l₂, l₃ ≥ 0 (|W|, the positive-weight
    layers of VDM's monotone network, :class:`~diffvi.diffusion.schedules.LearnedSchedule`) and
    φ(u) = 2 sigmoid(u) − 1, so f is non-decreasing; g = softplus(f) > 0 is non-decreasing too,
    and τ'(t) = g(t) + t g'(t) ≥ 0 on t ≥ 0. (The official ``time_model`` also multiplies by t
    but leaves the factor unconstrained in sign, so there τ may decrease; softplus fixes that.)

    Args:
        hidden: width H of the nonlinear part.
        start, end: g(0) ≈ ``start`` and g(1) ≈ ``end`` at initialisation (both > 0), i.e.
            τ(t) ≈ t · g(t) with g roughly linear between them.
    """

    def __init__(self, hidden: int = 64, start: float = 1.0, end: float = 1.0) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if not (start > 0 and end > 0):
            raise ValueError(f"start and end must be > 0, got {start} and {end}")
        self.hidden = hidden
        self.linear = _MonotoneLinear(1, 1)
        self.l2 = _MonotoneLinear(1, hidden)
        self.l3 = _MonotoneLinear(hidden, 1, bias=False)
        b0, b1 = _inverse_softplus(start), _inverse_softplus(end)
        with torch.no_grad():
            # |W| has zero gradient at W = 0: keep every weight away from 0.
            self.linear.weight.fill_(max(b1 - b0, 1e-2))
            self.linear.bias.fill_(b0)
            nn.init.normal_(self.l2.weight)
            nn.init.normal_(self.l2.bias)
            nn.init.normal_(self.l3.weight, std=1e-2)

    def inner(self, t: Tensor) -> Tensor:
        """f(t), non-decreasing: ``t [N] -> [N]``."""
        u = t.unsqueeze(-1)
        nonlinear = self.l3(2 * torch.sigmoid(self.l2(u)) - 1) / self.hidden
        return (self.linear(u) + nonlinear).squeeze(-1)

    def forward(self, t: Tensor) -> Tensor:
        """τ(t) = t · softplus(f(t)): ``t [N] -> [N]``; τ(0) = 0 exactly."""
        return t * F.softplus(self.inner(t))

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}"


def _lambda_net(in_channels: int, out_channels: int, hidden: int, init: float) -> nn.Module:
    """The default λ-network: three 3×3 convs with SiLU, ``[B, C_x, H, W] -> [B, C_λ, H, W]``
    (pre-softplus); the last layer starts near the constant softplus⁻¹(``init``)."""
    last = nn.Conv2d(hidden, out_channels, 3, padding=1)
    with torch.no_grad():
        last.weight.mul_(0.1)
        last.bias.fill_(_inverse_softplus(init))
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.SiLU(),
        last,
    )


class _FactorisedSchedule(nn.Module):
    """Shared maths of schedules of the form β = λ(x) τ₁(t), γ̄ = exp(−λ(x) τ₂(t)).

    Subclasses define :meth:`lam` (``x [B, C_x, H, W] -> [B, C_λ, H', W']``, broadcastable to
    the target) and :meth:`time_terms` (τ₁, τ₂, τ₂', τ₂'' at ``t [N]``). Every method below takes
    one time per item, ``t [B]`` in [0, 1], and returns per-pixel maps ``[B, C_λ, H', W']``.
    """

    def lam(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def time_terms(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(τ₁, τ₂, τ₂', τ₂'')`` at ``t [N]``, each ``[N]``."""
        raise NotImplementedError

    def tau_2(self, t: Tensor) -> Tensor:
        """τ₂(t) only (no derivatives): ``t [N] -> [N]``."""
        return self.time_terms(t)[1]

    def _check_t(self, t: Tensor, x: Tensor) -> Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(
                f"t must have shape [{x.shape[0]}] (or be a scalar), got {list(t.shape)}"
            )
        return t.to(x.dtype)

    @staticmethod
    def _pix(v: Tensor) -> Tensor:
        return v.reshape(-1, 1, 1, 1)

    def log_gamma_bar(self, t: Tensor, x: Tensor) -> Tensor:
        """log γ̄(t, x) = −λ(x) τ₂(t) ≤ 0 (CVDM's γ, the signal variance; paper §3.3)."""
        t = self._check_t(t, x)
        return -self.lam(x) * self._pix(self.tau_2(t))

    def gamma_bar(self, t: Tensor, x: Tensor) -> Tensor:
        """γ̄(t, x) ∈ (0, 1], the signal variance (CVDM's γ, DDPM's ᾱ; not VDM's log-SNR)."""
        return torch.exp(self.log_gamma_bar(t, x))

    def beta(self, t: Tensor, x: Tensor) -> Tensor:
        """β(t, x) = λ(x) τ₁(t) ≥ 0 (paper §3.3)."""
        t = self._check_t(t, x)
        return self.lam(x) * self._pix(self.time_terms(t)[0])

    def signal_noise(self, log_gamma_bar: Tensor) -> tuple[Tensor, Tensor]:
        """``(γ̄, 1 − γ̄)`` from log γ̄, the second without cancellation (−expm1)."""
        return torch.exp(log_gamma_bar), -torch.expm1(log_gamma_bar)

    def terms(self, t: Tensor, x: Tensor) -> dict[str, Tensor]:
        """Everything the loss needs at ``t [B]``: per-pixel maps ``log_gamma_bar``,
        ``gamma_bar``, ``beta``, ``d_gamma_bar`` (∂_t γ̄ = −λ τ₂' γ̄) and ``d2_gamma_bar``
        (∂²_t γ̄ = λ (λ τ₂'² − τ₂'') γ̄), closed form in λ, autograd in t."""
        t = self._check_t(t, x)
        lam = self.lam(x)
        tau_1, tau_2, d_tau_2, d2_tau_2 = (self._pix(v) for v in self.time_terms(t))
        log_gamma_bar = -lam * tau_2
        gamma_bar = torch.exp(log_gamma_bar)
        return {
            "lambda": lam,
            "log_gamma_bar": log_gamma_bar,
            "gamma_bar": gamma_bar,
            "beta": lam * tau_1,
            "d_gamma_bar": -lam * d_tau_2 * gamma_bar,
            "d2_gamma_bar": lam * (lam * d_tau_2.pow(2) - d2_tau_2) * gamma_bar,
        }


class ConditionalSchedule(_FactorisedSchedule):
    """CVDM's learned per-pixel schedule: β(t, x) = λ(x) τ₁(t), γ̄(t, x) = exp(−λ(x) τ₂(t)).

    Args:
        x_channels: channels ``C_x`` of the condition.
        out_channels: channels of λ: ``C_y`` (one schedule per target channel, as the official
            ``variance_model``) or 1 (one per pixel, shared by the channels).
        hidden: width of the default λ-network.
        time_hidden: width of the monotone time networks τ₁, τ₂.
        lambda_init: λ ≈ this at initialisation.
        lambda_net: a replacement λ-network ``[B, C_x, H, W] -> [B, out_channels, H, W]``
            (pre-softplus), e.g. a small UNet as in the official code.

    At initialisation τ₂(t) ≈ 10 t² (g₂ from 0.05 to 10) and τ₁ ≈ 20 t ≈ τ₂', i.e. γ̄ ≈
    exp(−10 λ t²), close to DDPM's linear schedule (−log ᾱ ≈ 0.1 t + 9.95 t²) when λ = 1.
    """

    def __init__(
        self,
        x_channels: int,
        out_channels: int = 1,
        hidden: int = 32,
        time_hidden: int = 64,
        lambda_init: float = 1.0,
        lambda_net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if x_channels < 1 or out_channels < 1 or hidden < 1:
            raise ValueError(
                "need x_channels, out_channels and hidden >= 1, got "
                f"{x_channels}, {out_channels}, {hidden}"
            )
        if not lambda_init > 0:
            raise ValueError(f"lambda_init must be > 0, got {lambda_init}")
        self.x_channels, self.out_channels = x_channels, out_channels
        self.lambda_net = (
            lambda_net
            if lambda_net is not None
            else _lambda_net(x_channels, out_channels, hidden, lambda_init)
        )
        self.tau_1 = MonotoneTime(time_hidden, start=12.0, end=24.0)
        self.tau_2_net = MonotoneTime(time_hidden, start=0.05, end=10.0)

    def lam(self, x: Tensor) -> Tensor:
        """λ(x) = softplus(net(x)) ≥ 0: ``[B, C_x, H, W] -> [B, out_channels, H, W]``."""
        if x.ndim != 4 or x.shape[1] != self.x_channels:
            raise ValueError(f"x must have shape [B, {self.x_channels}, H, W], got {list(x.shape)}")
        return F.softplus(self.lambda_net(x))

    def tau_2(self, t: Tensor) -> Tensor:
        return self.tau_2_net(t)

    def time_terms(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        tau_2, d_tau_2, d2_tau_2 = _derivatives(self.tau_2_net, t, 2)
        return self.tau_1(t), tau_2, d_tau_2, d2_tau_2


class FixedConditionalSchedule(_FactorisedSchedule):
    """A fixed schedule in CVDM's form, for the SR3-style baselines: λ ≡ 1, γ̄(t) = α_t² =
    sigmoid(−γ_VDM(t)) of a :class:`~diffvi.diffusion.schedules.NoiseSchedule` (linear, cosine),
    the same for every pixel and condition, and β = −∂_t log γ̄ = sigmoid(γ_VDM) γ_VDM'(t)
    exactly — so the consistency term (∂_t γ̄ + β γ̄)² vanishes identically.

    Maps are returned as ``[B, 1, 1, 1]`` (broadcast per pixel by the caller).
    """

    def __init__(self, schedule: NoiseSchedule) -> None:
        super().__init__()
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.schedule = schedule

    def lam(self, x: Tensor) -> Tensor:
        return torch.ones(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)

    def _tau(self, t: Tensor) -> Tensor:
        # τ₂(t) = −log γ̄(t) = −log sigmoid(−γ_VDM(t)) = softplus(γ_VDM(t)).
        return F.softplus(self.schedule.gamma(t).to(t.dtype))

    def tau_2(self, t: Tensor) -> Tensor:
        return self._tau(t)

    def time_terms(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        tau_2, d_tau_2, d2_tau_2 = _derivatives(self._tau, t, 2)
        return d_tau_2, tau_2, d_tau_2, d2_tau_2

    def _noise_levels(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(γ̄, 1 − γ̄)`` at ``t [B]`` straight from the schedule's γ_VDM, ``[B, 1, 1, 1]``."""
        gamma_vdm = self.schedule.gamma(t).to(like.dtype).reshape(-1, 1, 1, 1)
        return torch.sigmoid(-gamma_vdm), torch.sigmoid(gamma_vdm)

    def extra_repr(self) -> str:
        return f"schedule={type(self.schedule).__name__}"


def _clamp(v: Tensor, low: Tensor | float, high: Tensor | float) -> Tensor:
    """``v`` clamped to ``[low, high]`` (floats or tensors broadcastable to ``v``)."""
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        return torch.minimum(torch.maximum(v, torch.as_tensor(low)), torch.as_tensor(high))
    return v.clamp(low, high)


class CVDM(nn.Module):
    """A conditional diffusion model with a learned (or fixed) per-pixel schedule.

    Args:
        schedule: a :class:`ConditionalSchedule` (CVDM) or :class:`FixedConditionalSchedule`
            (the linear / cosine baselines, same code path).
        denoiser: ``denoiser(y_t [B, C_y, H, W], s [B], cond [B, C_x + C_y, H, W]) -> ε̂``,
            e.g. our :class:`~diffvi.nn.unet.UNet` with ``cond_channels = C_x + C_y``.
            γ̄ reaches it twice (the official ``noise_model`` feeds the per-pixel γ̄ map through
            its own conv and adds it to the first features): as the map γ̄ ``[B, C_y, H, W]``
            concatenated with x to the conditioning channels, and through the UNet's time
            embedding of the scalar summary s = mean over pixels of √(1 − γ̄) ∈ [0, 1] (the mean
            noise standard deviation), since our UNet expects a per-item "time". t itself is
            never given to the network.
        y_channels, x_channels: ``C_y`` and ``C_x``.
        image: y₀ and x are images in [0, 1], mapped to [−1, 1] inside (samples are mapped back
            and clamped); otherwise both pass unchanged (e.g. SR residuals).
        timesteps: ``T``: boundary times t₀ = 1/T, t_T = 1 − 1/T of the loss, and the default
            number of sampling steps.
        alpha: weight α of the curvature regulariser (1e-3, the official configs).
        weights: loss weights; default :data:`LOSS_WEIGHTS` (official ``[1, 2, 2, 2]``).
        prior_kl: direction of the prior term (:func:`prior_kl`): ``"paper"``,
            KL(q(y_{t_T} | y₀, x) ‖ N(0, I)), the bound's; ``"official"``, the reverse
            KL(N(0, I) ‖ q(y_{t_T} | y₀, x)) that the official code computes.
    """

    def __init__(
        self,
        schedule: _FactorisedSchedule,
        denoiser: nn.Module,
        y_channels: int,
        x_channels: int,
        image: bool = True,
        timesteps: int = 200,
        alpha: float = 1e-3,
        weights: dict[str, float] | None = None,
        prior_kl: str = "paper",
    ) -> None:
        super().__init__()
        if not isinstance(schedule, _FactorisedSchedule):
            raise ValueError(
                "schedule must be a ConditionalSchedule or FixedConditionalSchedule, got "
                f"{type(schedule).__name__}"
            )
        if y_channels < 1 or x_channels < 1:
            raise ValueError(f"need y_channels, x_channels >= 1, got {y_channels}, {x_channels}")
        if timesteps < 2:
            raise ValueError(f"timesteps must be >= 2, got {timesteps}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if prior_kl not in PRIOR_KL:
            raise ValueError(f"prior_kl must be one of {PRIOR_KL}, got {prior_kl!r}")
        weights = dict(LOSS_WEIGHTS if weights is None else weights)
        if set(weights) != set(LOSS_WEIGHTS):
            raise ValueError(
                f"weights must have the keys {sorted(LOSS_WEIGHTS)}, got {sorted(weights)}"
            )
        self.schedule = schedule
        self.denoiser = denoiser
        self.y_channels, self.x_channels = y_channels, x_channels
        self.image = image
        self.timesteps = timesteps
        self.alpha = alpha
        self.weights = weights
        self.prior_kl = prior_kl

    @classmethod
    def build(
        cls,
        y_channels: int = 1,
        x_channels: int = 1,
        image_size: int = 32,
        schedule: str | NoiseSchedule = "learned",
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        attention_resolutions: Sequence[int] = (),
        num_groups: int = 8,
        per_channel_schedule: bool = True,
        **kwargs,
    ) -> "CVDM":
        """A CVDM with our UNet as denoiser. ``schedule``: ``"learned"`` (CVDM), or a fixed
        :class:`~diffvi.diffusion.schedules.NoiseSchedule` instance (baselines). Other keyword
        arguments go to :class:`CVDM`."""
        if isinstance(schedule, NoiseSchedule):
            sched: _FactorisedSchedule = FixedConditionalSchedule(schedule)
        elif schedule == "learned":
            sched = ConditionalSchedule(x_channels, y_channels if per_channel_schedule else 1)
        else:
            raise ValueError(f"schedule must be 'learned' or a NoiseSchedule, got {schedule!r}")
        denoiser = UNet(
            in_channels=y_channels,
            base_channels=base_channels,
            channel_mults=channel_mults,
            attention_resolutions=attention_resolutions,
            cond_channels=x_channels + y_channels,
            num_groups=num_groups,
            image_size=image_size,
        )
        return cls(sched, denoiser, y_channels, x_channels, **kwargs)

    # -- validation and scaling ----------------------------------------------------------------
    def _check_x(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.x_channels:
            raise ValueError(f"x must have shape [B, {self.x_channels}, H, W], got {list(x.shape)}")
        self._check_range("x", x)

    def _check_range(self, name: str, v: Tensor) -> None:
        if self.image and v.numel() and (v.min() < 0 or v.max() > 1):
            raise ValueError(
                f"{name} must lie in [0, 1] (image=True), got values in "
                f"[{v.min().item():.3g}, {v.max().item():.3g}]"
            )

    def _check_pair(self, y0: Tensor, x: Tensor) -> None:
        self._check_x(x)
        expected = (x.shape[0], self.y_channels, *x.shape[2:])
        if tuple(y0.shape) != expected:
            raise ValueError(f"y0 must have shape {list(expected)}, got {list(y0.shape)}")
        self._check_range("y0", y0)

    def to_model_space(self, v: Tensor) -> Tensor:
        """Public data → model space (``2v − 1`` for images)."""
        return 2 * v - 1 if self.image else v

    def from_model_space(self, v: Tensor) -> Tensor:
        """Model space → public data (``(v + 1) / 2`` clamped to [0, 1] for images)."""
        return ((v + 1) / 2).clamp(0, 1) if self.image else v

    # -- the network -----------------------------------------------------------------------------
    def predict_noise(
        self, y_t: Tensor, x: Tensor, gamma_bar: Tensor, tiling: Tiling | None = None,
        tile_batch: int = 16,
    ) -> Tensor:  # fmt: skip
        """ε̂(y_t, x, γ̄) in model space: ``y_t [B, C_y, H, W]``, ``x`` (model space),
        ``gamma_bar`` broadcastable to ``y_t`` → ``[B, C_y, H, W]``.

        With a ``tiling`` of ``H × W`` the denoiser sees ``tile_batch`` tiles at a time and
        the tiles are blended (:class:`~diffvi.nn.tiling.Tiling`); every tile gets the summary
        s of the whole image."""
        gamma_map = gamma_bar.expand_as(y_t)
        summary = (1 - gamma_map).clamp_min(0).sqrt().flatten(1).mean(1)
        cond = torch.cat([x, gamma_map], dim=1)
        if tiling is None:
            return self.denoiser(y_t, summary, cond)
        return tiling.apply(
            lambda items, y, c: self.denoiser(y, summary[items], c),
            y_t, cond, batch_size=tile_batch,
        )  # fmt: skip

    # -- loss --------------------------------------------------------------------------------------
    def loss(
        self,
        y0: Tensor,
        x: Tensor,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Per-item loss terms ``[B]`` for targets ``y0 [B, C_y, H, W]`` given ``x [B, C_x, H, W]``.

        Keys: ``noise`` (‖ε − ε̂‖², the conditional DDPM ε-loss), ``consistency``
        ((∂_t γ̄ + β γ̄)²), ``boundary`` ((γ̄(t₀) − 1)² + γ̄(t_T)²), ``beta`` (their sum, the
        official L_β), ``prior`` (KL(q(y_{t_T} | y₀, x) ‖ N(0, I)), or the reverse with
        ``prior_kl="official"``: :func:`prior_kl`), ``regulariser``
        (α (∂²_t γ̄)²) — each a mean over pixels — and ``total`` (the weighted sum). ``t [B]``
        and ``noise`` (ε, shaped like y0) may be given; otherwise t is drawn stratified and ε
        normal, in DiffusionModel.loss's order.
        """
        self._check_pair(y0, x)
        y0, x = self.to_model_space(y0), self.to_model_space(x)
        batch = y0.shape[0]
        if t is None:
            t = stratified_times(batch, y0, generator)
        elif t.shape != (batch,) or (t.numel() and (t.min() < 0 or t.max() > 1)):
            raise ValueError(
                f"t must have shape [{batch}] with values in [0, 1], got {list(t.shape)}"
            )
        if noise is None:
            noise = standard_normal(y0, generator)
        elif noise.shape != y0.shape:
            raise ValueError(f"noise must have shape {list(y0.shape)}, got {list(noise.shape)}")
        t = t.to(y0.dtype)
        s = self.schedule
        terms = s.terms(t, x)
        gamma_bar = terms["gamma_bar"].expand_as(y0)
        if isinstance(s, FixedConditionalSchedule):
            signal, noise_var = s._noise_levels(t, y0)
        else:
            signal, noise_var = s.signal_noise(terms["log_gamma_bar"])
        y_t = signal.sqrt() * y0 + noise_var.sqrt() * noise  # q(y_t | y₀, x), paper §3.1
        eps_hat = self.predict_noise(y_t, x, gamma_bar)

        def mean(v: Tensor) -> Tensor:
            return v.expand_as(y0).flatten(1).mean(1)

        noise_term = mean((noise - eps_hat).pow(2))
        # L_β: ∂_t γ̄ = −β γ̄ (paper §3.2) and the boundary values γ̄(t₀) = 1, γ̄(t_T) = 0.
        consistency = mean((terms["d_gamma_bar"] + terms["beta"] * terms["gamma_bar"]).pow(2))
        ends = torch.tensor(
            [1 / self.timesteps, 1 - 1 / self.timesteps], dtype=y0.dtype, device=y0.device
        )
        tau_ends = s.tau_2(ends)
        lam = terms["lambda"]
        log_g0 = -lam * tau_ends[0]
        log_gT = -lam * tau_ends[1]
        boundary = mean(torch.expm1(log_g0).pow(2)) + mean(torch.exp(2 * log_gT))
        # Prior at t_T: KL(q(y_{t_T} | y₀, x) ‖ N(0, I)) (paper) or its reverse (official code).
        prior = mean(prior_kl(log_gT, y0, self.prior_kl))
        # L_γ: α (∂²_t γ̄)², the SNR curvature penalty at first order (snr_expansion_n = 1).
        regulariser = self.alpha * mean(terms["d2_gamma_bar"].pow(2))
        w = self.weights
        out = {
            "noise": noise_term,
            "consistency": consistency,
            "boundary": boundary,
            "beta": consistency + boundary,
            "prior": prior,
            "regulariser": regulariser,
        }
        out["total"] = (
            w["noise"] * noise_term
            + w["beta"] * out["beta"]
            + w["prior"] * prior
            + w["regulariser"] * regulariser
        )
        return out

    # -- sampling ------------------------------------------------------------------------------
    def _lambda(self, x: Tensor, tiling: Tiling | None, tile_batch: int) -> Tensor:
        """λ(x) of the schedule, tile by tile for a learned schedule with a ``tiling``."""
        s = self.schedule
        if tiling is None or not isinstance(s, ConditionalSchedule):
            return s.lam(x)
        return tiling.apply(lambda _, crop: s.lam(crop), x, batch_size=tile_batch)

    def _log_alphas(
        self, x: Tensor, steps: int, levels: str, lam: Tensor
    ) -> tuple[Callable[[int], Tensor], Tensor]:
        """``log_alpha(k)``: the per-step log α_{k+1} map for k = 0 … T − 1 (broadcastable to
        the target; computed on demand, so memory does not grow with T), and
        log γ̄_T = Σ_k log α_k, for λ = ``lam``."""
        s = self.schedule
        grid = torch.arange(1, steps + 1, dtype=x.dtype, device=x.device) / steps
        lo, hi = math.log(ALPHA_MIN), math.log(ALPHA_MAX)
        if levels == "beta":
            # Official sampler: α_k = clip(1 − β(t_k, x) / T, 1e-6, 0.99999).
            tau_1 = s.time_terms(grid)[0]

            def log_alpha(k: int) -> Tensor:
                return torch.log((1 - lam * tau_1[k] / steps).clamp(ALPHA_MIN, ALPHA_MAX))
        else:
            # α_k = γ̄(t_k) / γ̄(t_{k−1}) straight from the schedule (t_0 = 0), same clipping.
            tau_2 = s.tau_2(torch.cat([grid.new_zeros(1), grid]))

            def log_alpha(k: int) -> Tensor:
                return (-lam * (tau_2[k + 1] - tau_2[k])).clamp(lo, hi)

        total = torch.zeros_like(log_alpha(0))
        for k in range(steps):
            total = total + log_alpha(k)
        return log_alpha, total

    @torch.no_grad()
    def sample(
        self,
        x: Tensor,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        clip: bool | Bounds | None = None,
        levels: str = "beta",
        *,
        tile: int | None = None,
        overlap: int = 0,
        tile_batch: int = 16,
    ) -> Tensor:
        """Draw y₀ ~ p(y₀ | x): ``x [B, C_x, H, W] -> [B, C_y, H, W]`` (public range).

        Ancestral (DDPM) sampling over ``steps`` = T levels (default ``timesteps``) with
        per-pixel α_k from the learned β (``levels="beta"``, the official sampler) or from γ̄
        (``"gamma"``); γ̄_k = Π_{j≤k} α_j. For k = T … 2: x̂₀ = (y_k − √(1 − γ̄_k) ε̂) / √γ̄_k
        (clipped to [−1, 1] when ``clip`` is True, default for images, or to ``clip(x)`` when
        it is a :data:`Bounds` function of the condition, e.g. a residual task's
        ``[−1 − x, 1 − x]`` — without it a schedule whose γ̄_T is tiny (cosine: 2.5e-9 at
        t = 1 − 1/T) amplifies the network's error 1/√γ̄ times), then y_{k−1} from the
        posterior q(y_{k−1} | y_k, x̂₀) = N(√γ̄_{k−1} β_k / (1 − γ̄_k) x̂₀
        + √α_k (1 − γ̄_{k−1}) / (1 − γ̄_k) y_k, β_k (1 − γ̄_{k−1}) / (1 − γ̄_k)); the result is
        x̂₀ at k = 1. ``noise`` fixes y_T (``[B, C_y, H, W]``). T network evaluations. As in
        the official sampler, γ̄_k is floored at 1e-10 where it enters a division.

        ``tile``: the networks (λ and ε̂) see ``tile × tile`` crops of the image, ``tile_batch``
        at a time, neighbours overlapping by ``overlap`` pixels and blended per step
        (:class:`~diffvi.nn.tiling.Tiling`), while the chain itself (y_k, noise, clipping)
        stays whole-image and pixel-wise: the noise is the untiled sampler's, and for networks
        whose receptive radius is at most ``overlap // 4`` the draw equals the untiled one.
        Memory is ``O(B · H · W)`` plus the network's on ``tile_batch`` tiles, whatever the
        image size; ``tile`` (and ``H``, ``W`` where smaller) must suit the denoiser (a UNet
        needs multiples of ``2 ** (levels − 1)``).
        """
        self._check_x(x)
        steps = self.timesteps if steps is None else steps
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}")
        if levels not in SAMPLE_LEVELS:
            raise ValueError(f"levels must be one of {SAMPLE_LEVELS}, got {levels!r}")
        clip = self.image if clip is None else clip
        x = self.to_model_space(x)
        low, high = clip(x) if callable(clip) else (-1.0, 1.0) if clip else (None, None)
        shape = (x.shape[0], self.y_channels, *x.shape[2:])
        if noise is None:
            y = standard_normal(x, generator, shape)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}")
        else:
            y = noise.to(x.dtype)
        tiling = None if tile is None else Tiling(x.shape[-2], x.shape[-1], tile, overlap)
        log_alpha, log_g = self._log_alphas(x, steps, levels, self._lambda(x, tiling, tile_batch))
        log_g = log_g.expand(shape)
        for k in range(steps, 0, -1):
            log_a = log_alpha(k - 1).expand(shape)
            log_g_safe = log_g.clamp_min(LOG_GAMMA_BAR_MIN)
            g, one_minus_g = torch.exp(log_g_safe), -torch.expm1(log_g_safe)
            eps_hat = self.predict_noise(y, x, g, tiling, tile_batch)
            x0 = (y - one_minus_g.sqrt() * eps_hat) / g.sqrt()
            if low is not None:
                x0 = _clamp(x0, low, high)
            if k == 1:
                return self.from_model_space(x0)
            log_g_prev = log_g - log_a
            log_g_prev_safe = log_g_prev.clamp_min(LOG_GAMMA_BAR_MIN)
            g_prev, one_minus_prev = torch.exp(log_g_prev_safe), -torch.expm1(log_g_prev_safe)
            beta_k = -torch.expm1(log_a)
            mean = (g_prev.sqrt() * beta_k / one_minus_g) * x0 + (
                torch.exp(0.5 * log_a) * one_minus_prev / one_minus_g
            ) * y
            var = (beta_k * one_minus_prev / one_minus_g).clamp_min(0)
            y = mean + var.sqrt() * standard_normal(x, generator, shape)
            log_g = log_g_prev
        raise AssertionError("unreachable")  # pragma: no cover

    @torch.no_grad()
    def sample_many(
        self,
        x: Tensor,
        n: int = 20,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        chunk: int | None = None,
        **kwargs,
    ) -> tuple[Tensor, Tensor]:
        """Pixel-wise mean and standard deviation (population, ÷ n) of ``n`` samples given
        ``x [B, C_x, H, W]``: two ``[B, C_y, H, W]`` maps (the paper's uncertainty maps).
        ``chunk`` samples are drawn per batched call (default all n at once)."""
        self._check_x(x)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        chunk = n if chunk is None else chunk
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        draws = []
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            out = self.sample(x.repeat(m, 1, 1, 1), steps, generator=generator, **kwargs)
            draws.append(out.reshape(m, *x.shape[:1], *out.shape[1:]))
        samples = torch.cat(draws)
        return samples.mean(0), samples.std(0, correction=0)
