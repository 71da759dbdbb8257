"""Diffusion-based variational posteriors: the q(z|x) of DDVI (Piriyakulkij, Wang & Kuleshov,
"Diffusion Variational Inference: Diffusion Models as Expressive Variational Posteriors",
arXiv 2401.02739).

The family has auxiliary latents y = (y_1, …, y_T) and y_0 := z:

    q(y, z | x) = q(y_T | x) Π_{t=1}^T q(y_{t−1} | y_t, x),
    q(y_T | x) = N(μ(x), diag σ(x)²)                 (the ``encoder``),
    q(y_{t−1} | y_t, x) = N(μ_φ(y_t, t, x), σ_t² I)  (a reverse-diffusion step),
    μ_φ(y_t, t, x) = (y_t − β_t / √(1−ᾱ_t) · ε_φ(y_t, t, c(x))) / √α_t   (DDPM's mean),

so q(z|x) = ∫ q(y, z|x) dy is a continuous mixture with no closed-form density: ``sample``
returns ``log_q = None`` and the auxiliaries needed by the auxiliary-variable bound of
:class:`~diffvi.objectives.ddvi.DDVI`: ``log_q_joint`` = log q(y, z|x) and ``log_r`` =
log r(y|z) = Σ_t log r(y_t | y_{t−1}), the forward noising chain of the schedule
(r(y_t | y_{t−1}) = N(√(1−β_t) y_{t−1}, β_t I)) evaluated on the same draws. Every draw is
reparameterised, so both are differentiable in φ.

The ε-network ``denoiser`` sees ``concat(y_t, time embedding of t, c(x))``; ``c`` is the
``context`` network of x. With ``context=None`` the reverse steps ignore x (the paper's
"latent wake-sleep" variant: an unconditional latent diffusion fitted to the prior p(z)); x
then reaches q only through q(y_T | x).

Label-conditioned (``num_labels = L > 0``): q(z|x, l) for semi-supervised training, the reverse
chain conditioned on a label l: the denoiser sees ``concat(y_t, temb(t), c(x), onehot(l))``
(one label-conditioned chain in place of the official code's one chain per class), while
q(y_T | x) stays label-free as in the official ``DiffVAE_semi``. ``sample``, ``reverse`` and
``denoising_loss`` then take ``label`` (int64 ``[B]``).

Choices, and what the official code (GitHub topwasu/DDVI: ``diffusion/gaussian.py``,
``algorithms/vaes/diff_vae.py``, ``models/simple.py``, ``conf/model/diff_vae*.yaml``) does:

- Reverse steps are stochastic (DDPM ancestral steps) by default, σ_t² = β_t
  (``reverse_variance="beta"``) or the forward posterior variance β̃_t (``"posterior"``, with
  β̃_1 clipped to β̃_2 so the last step keeps a density). The official
  ``GaussianDiffusionNoise.p_sample`` takes deterministic DDIM (η = 0) steps; then
  q(y, z|x) is concentrated on a T-fold lower-dimensional set, log q(y, z|x) is undefined and
  the auxiliary bound does not exist. ``sampler="ddim"`` is offered for sampling only: it
  returns no ``log_q_joint`` and the DDVI objective refuses it with a ValueError.
- Schedule: linear β from 1e-4 to 0.02 over few steps (official: T = 20 for ``diff_vae``,
  40 for ``diff_vae_warmup``), so ᾱ_T ≈ 0.82 (T = 20): y_T is far from pure noise and the
  encoder does much of the work. :func:`build_diffusion_posterior` uses the same defaults;
  raise ``beta_end`` (ᾱ_T ≲ 0.2) for posteriors with several modes (see objectives/ddvi.py).
- Time enters through fixed sinusoidal features of t/T (:func:`diffvi.nn.sinusoidal_embedding`)
  concatenated to the input; the official MLPs add a learned per-step embedding to every
  hidden layer (``ConditionalLinear``). Its context net keeps dropout active at evaluation
  (``F.dropout`` without ``training=self.training``); our MLPs have no dropout.
- ``T = 0`` is allowed: then z = y_T and q(z|x) is exactly the Gaussian encoder (``log_q`` is
  returned, and the DDVI bound is the ELBO).
"""

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from diffvi.diffusion.schedules import DiscreteSchedule
from diffvi.distributions.gaussian import LOG_2PI
from diffvi.nn.embeddings import sinusoidal_embedding
from diffvi.nn.mlp import MLP
from diffvi.posteriors.base import Posterior, PosteriorSample, label_one_hot

REVERSE_VARIANCES = ("beta", "posterior")
SAMPLERS = ("ddpm", "ddim")


@dataclass
class ReverseChain:
    """A run of the reverse chain from y_T down to y_0 = z.

    chain: ``[T+1, K, B, D]``, ``chain[i]`` = y_{T−i} (so ``chain[-1]`` is z).
    log_q_steps: ``[K, B]`` Σ_t log q(y_{t−1} | y_t, x) (``None`` for DDIM steps).
    log_r: ``[K, B]`` Σ_t log r(y_t | y_{t−1}) of the forward chain (``None`` for DDIM steps).
    """

    chain: Tensor
    log_q_steps: Tensor | None
    log_r: Tensor | None

    @property
    def z(self) -> Tensor:
        return self.chain[-1]


@dataclass(frozen=True)
class _StepConstants:
    """Per-step coefficients of the DDPM reverse step (index i = t − 1) and the chain's
    density constants; ``*_desc`` lists run over t = T … 1 (the order of the chain)."""

    inv_sqrt_alpha: list[float]
    eps_coef: list[float]  # β_t / (√(1 − ᾱ_t) √α_t)
    sigma: list[float]
    log_q_const: float  # Σ_t D/2 log(2π σ_t²)
    sqrt_alpha_desc: list[float]
    inv_sqrt_2beta_desc: list[float]
    log_r_const: float  # Σ_t D/2 log(2π β_t)
    ddim_y_coef: list[float]  # √(ᾱ_{t−1}/ᾱ_t)
    ddim_eps_coef: list[float]  # √(1 − ᾱ_{t−1}) − √(ᾱ_{t−1}(1 − ᾱ_t)/ᾱ_t)
    _vectors: dict = field(default_factory=dict, compare=False, repr=False)

    def vectors(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(√α_t, 1/√(2β_t))`` over t = T … 1 as ``[T, 1, 1, 1]`` tensors on ``device``,
        made once per device and dtype (no host-to-device copy per chain)."""
        key = (device, dtype)
        if key not in self._vectors:
            self._vectors[key] = tuple(
                torch.tensor(v, device=device, dtype=dtype).view(-1, 1, 1, 1)
                for v in (self.sqrt_alpha_desc, self.inv_sqrt_2beta_desc)
            )
        return self._vectors[key]


class DiffusionPosterior(Posterior):
    """q(z|x) through a reverse diffusion started from a Gaussian encoder (DDVI).

    Args:
        encoder: x flattened ``[B, F] -> [B, 2·D]`` = (mean, log σ) of q(y_T | x).
        denoiser: ε-network ``[..., D + E + C] -> [..., D]`` on ``concat(y_t, temb(t), c(x))``.
        context: ``[B, F] -> [B, C]``, or ``None`` for reverse steps that ignore x (C = 0).
        latent_dim: D.
        schedule: the T-step forward schedule (``T = 0``: q is the Gaussian encoder).
        reverse_variance: σ_t² = β_t (``"beta"``) or the clipped β̃_t (``"posterior"``).
        sampler: ``"ddpm"`` (stochastic steps; needed by the DDVI bound) or ``"ddim"``
            (deterministic η = 0 steps, for sampling only). A plain attribute: set
            ``posterior.sampler = "ddim"`` after training to sample deterministically.
        time_embedding_dim: E, the number of sinusoidal features of t/T.
        num_labels: L > 0 for a label-conditioned chain (the denoiser's input then has L more
            features, the one-hot label); 0 (the default) for q(z|x).
    """

    def __init__(
        self,
        encoder: nn.Module,
        denoiser: nn.Module,
        context: nn.Module | None,
        latent_dim: int,
        schedule: DiscreteSchedule,
        reverse_variance: str = "beta",
        sampler: str = "ddpm",
        time_embedding_dim: int = 16,
        num_labels: int = 0,
    ) -> None:
        super().__init__()
        if num_labels < 0 or num_labels == 1:
            raise ValueError(f"num_labels must be 0 or >= 2, got {num_labels}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not isinstance(schedule, DiscreteSchedule):
            raise ValueError(f"schedule must be a DiscreteSchedule, got {type(schedule).__name__}")
        if reverse_variance not in REVERSE_VARIANCES:
            raise ValueError(
                f"reverse_variance must be one of {REVERSE_VARIANCES}, got {reverse_variance!r}"
            )
        _check_sampler(sampler)
        self.encoder = encoder
        self.denoiser = denoiser
        self.context = context
        self.latent_dim = latent_dim
        self.schedule = schedule
        self.reverse_variance = reverse_variance
        self.sampler = sampler
        self.time_embedding_dim = time_embedding_dim
        self.num_labels = num_labels
        self._chain_frozen = False
        steps = torch.arange(1, schedule.num_steps + 1, dtype=torch.float64)
        features = sinusoidal_embedding(steps / max(1, schedule.num_steps), time_embedding_dim)
        self.register_buffer(
            "time_features", features.to(torch.get_default_dtype()), persistent=False
        )

    @property
    def num_steps(self) -> int:
        """T, the number of reverse steps."""
        return self.schedule.num_steps

    @property
    def conditional(self) -> bool:
        """Whether the reverse steps see x (through the context network)."""
        return self.context is not None

    # -- pieces -------------------------------------------------------------------------------

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log σ) of q(y_T | x), each ``[B, D]``."""
        out = self.encoder(x.flatten(1))
        if out.shape[-1] != 2 * self.latent_dim:
            raise ValueError(
                f"encoder must output [B, {2 * self.latent_dim}] (mean, log σ), "
                f"got {list(out.shape)}"
            )
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std

    def time_embedding(self, t: Tensor) -> Tensor:
        """Features of integer steps ``t`` (in ``1 … T``, any shape) ``-> [*t.shape, E]``."""
        return self.time_features[t - 1]

    @contextmanager
    def frozen_chain(self) -> Iterator[None]:
        """Within the block the reverse chain (denoiser and context networks) runs with its
        parameters detached: gradients still flow through y_t, c(x) and x to the encoder of
        q(y_T|x) and upstream, but not into the chain's weights. DDVI uses it to train the chain
        by the sleep term only (``DDVI(wake_updates_chain=False)``)."""
        previous, self._chain_frozen = self._chain_frozen, True
        try:
            yield
        finally:
            self._chain_frozen = previous

    def _run(self, net: nn.Module, inputs: Tensor) -> Tensor:
        if not self._chain_frozen:
            return net(inputs)
        detached = {name: p.detach() for name, p in net.named_parameters()}
        return functional_call(net, detached, (inputs,), strict=False)

    def _context(self, x: Tensor | None, batch: int) -> Tensor | None:
        if self.context is None:
            return None
        if x is None:
            raise ValueError("a conditional DiffusionPosterior needs x (got None)")
        if x.shape[0] != batch:
            raise ValueError(f"x must have batch size {batch}, got {list(x.shape)}")
        return self._run(self.context, x.flatten(1))

    def _condition(self, x: Tensor | None, batch: int, label: Tensor | None) -> Tensor | None:
        """What the denoiser is conditioned on, ``[B, C + L]``: c(x) (conditional chains) and
        the one-hot label (label-conditioned ones); ``None`` when neither."""
        c = self._context(x, batch)
        code = label_one_hot(label, self.num_labels, batch, self.time_features)
        if code is None:
            return c
        return code if c is None else torch.cat([c, code], dim=-1)

    def predict_noise(self, y_t: Tensor, temb: Tensor, c: Tensor | None) -> Tensor:
        """ε_φ: ``y_t [..., D]``, ``temb [..., E]``, ``c [..., C]`` (or None) ``-> [..., D]``."""
        parts = [y_t, temb] if c is None else [y_t, temb, c]
        return self._run(self.denoiser, torch.cat(parts, dim=-1))

    # -- the reverse chain --------------------------------------------------------------------

    def reverse(
        self,
        y_T: Tensor,
        x: Tensor | None,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> ReverseChain:
        """Run the reverse chain from ``y_T: [K, B, D]`` with context from ``x: [B, ...]``
        (``x`` may be ``None`` for an unconditional posterior) and, for a label-conditioned
        chain, the labels ``label`` (int64 ``[B]``)."""
        if y_T.ndim != 3 or y_T.shape[-1] != self.latent_dim:
            raise ValueError(
                f"y_T must have shape [K, B, {self.latent_dim}], got {list(y_T.shape)}"
            )
        _check_sampler(self.sampler)
        c = self._condition(x, y_T.shape[1], label)
        if c is not None:
            c = c.expand(y_T.shape[0], *c.shape)
        s = self.schedule
        if self.sampler == "ddim":
            return self._reverse_ddim(y_T, c)
        # DDPM ancestral steps (Ho et al. 2020, eq. 11 and Algorithm 2):
        #   y_{t−1} = (y_t − β_t/√(1−ᾱ_t) ε̂)/√α_t + σ_t n_t,  n_t ~ N(0, I).
        # The step coefficients are Python floats computed once per schedule, the time embedding
        # and c(x) enter the denoiser's first layer as a per-step bias (``_denoiser_steps``),
        # and the densities are taken over the whole chain at the end: per step only the
        # denoiser, one randn and three scaled adds run.
        k = self._step_constants()
        denoise = self._denoiser_steps(c, y_T.dtype)
        y, chain, noises = y_T, [y_T], []
        for t in range(s.num_steps, 0, -1):
            i = t - 1
            eps_hat = denoise(y, i)
            noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
            y = torch.add(
                y * k.inv_sqrt_alpha[i] - k.eps_coef[i] * eps_hat, noise, alpha=k.sigma[i]
            )
            chain.append(y)
            noises.append(noise)
        path = torch.stack(chain)  # [T+1, K, B, D], path[j] = y_{T−j}
        if not noises:
            zeros = y_T.new_zeros(y_T.shape[:-1])
            return ReverseChain(chain=path, log_q_steps=zeros, log_r=zeros)
        # Σ_t log q(y_{t−1}|y_t, x) = Σ_t [−½|n_t|² − D/2 log(2π σ_t²)]: no parameter in it.
        log_q = torch.stack(noises).square().sum((0, -1)).mul_(-0.5).sub_(k.log_q_const)
        # Σ_t log r(y_t|y_{t−1}) = Σ_t [−|y_t − √α_t y_{t−1}|²/(2β_t) − D/2 log(2π β_t)], on the
        # same draws, all steps at once (path[:-1] are y_T … y_1, path[1:] y_{T−1} … y_0).
        sqrt_alpha, scale = k.vectors(path.device, path.dtype)  # [T, 1, 1, 1] each
        resid = (path[:-1] - sqrt_alpha * path[1:]) * scale
        log_r = resid.square().sum((0, -1)).neg() - k.log_r_const
        return ReverseChain(chain=path, log_q_steps=log_q, log_r=log_r)

    def _reverse_ddim(self, y_T: Tensor, c: Tensor | None) -> ReverseChain:
        """DDIM, η = 0 (Song et al. 2021, eq. 12): y_{t−1} = √ᾱ_{t−1} ŷ_0 + √(1−ᾱ_{t−1}) ε̂,
        ŷ_0 = (y_t − √(1−ᾱ_t) ε̂)/√ᾱ_t; taken as y_{t−1} = a_t y_t + b_t ε̂ with a_t and b_t
        Python floats (``_StepConstants.ddim_*``): two operations per step."""
        k = self._step_constants()
        denoise = self._denoiser_steps(c, y_T.dtype)
        y, chain = y_T, [y_T]
        for t in range(self.schedule.num_steps, 0, -1):
            i = t - 1
            eps_hat = denoise(y, i)
            y = torch.add(y * k.ddim_y_coef[i], eps_hat, alpha=k.ddim_eps_coef[i])
            chain.append(y)
        return ReverseChain(chain=torch.stack(chain), log_q_steps=None, log_r=None)

    def _step_constants(self) -> "_StepConstants":
        """The DDPM step's coefficients as Python floats, from the schedule's buffers (computed
        in float64 once per schedule and reverse variance; recomputed if the buffers change)."""
        s = self.schedule
        key = (self.reverse_variance, s.betas.data_ptr(), s.betas._version, s.num_steps)
        cached = getattr(self, "_constants_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        betas = s.betas.detach().double().cpu()
        alphas = s.alphas.detach().double().cpu()
        alpha_bars = s.alpha_bars.detach().double().cpu()
        variances = s.reverse_variances(self.reverse_variance).detach().double().cpu()
        ab_prev = s.alpha_bars_prev.detach().double().cpu()
        dim = self.latent_dim
        desc = torch.arange(s.num_steps - 1, -1, -1)  # step index i = t − 1 for t = T … 1
        constants = _StepConstants(
            inv_sqrt_alpha=alphas.rsqrt().tolist(),
            eps_coef=(betas / (1 - alpha_bars).sqrt() / alphas.sqrt()).tolist(),
            sigma=variances.sqrt().tolist(),
            log_q_const=float(0.5 * dim * (LOG_2PI + variances.log()).sum()),
            sqrt_alpha_desc=alphas.sqrt()[desc].tolist(),
            inv_sqrt_2beta_desc=(2 * betas).rsqrt()[desc].tolist(),
            log_r_const=float(0.5 * dim * (LOG_2PI + betas.log()).sum()),
            ddim_y_coef=(ab_prev / alpha_bars).sqrt().tolist(),
            ddim_eps_coef=(
                (1 - ab_prev).sqrt() - (ab_prev * (1 - alpha_bars) / alpha_bars).sqrt()
            ).tolist(),
        )
        self._constants_cache = (key, constants)
        return constants

    def _denoiser_steps(self, c: Tensor | None, dtype: torch.dtype):
        """``denoise(y [K, B, D], i) -> ε̂`` at step t = i + 1, conditioned on ``c [K, B, C]``.

        When the denoiser is a plain ``nn.Sequential`` whose first layer is an ``nn.Linear`` on
        ``concat(y_t, temb(t), c)`` (an :class:`~diffvi.nn.MLP`), that layer is split by input:
        W [y | temb | c] + b = W_y y + (W_temb temb(t) + W_c c + b), the bracket computed for
        all T steps in one matmul per chain (time) and one per chain (context), so each step's
        first layer is a [K·B, D] × [D, H] product plus that step's bias: the same function,
        without the per-step concatenation and the wide first-layer GEMM. Other denoisers get
        :meth:`predict_noise` per step.
        """
        net = self.denoiser
        c_flat = None if c is None else c[0]  # c was expanded over K: [B, C]
        dim, emb = self.latent_dim, self.time_embedding_dim
        first = net[0] if isinstance(net, nn.Sequential) and len(net) > 0 else None
        width = dim + emb + (0 if c_flat is None else c_flat.shape[-1])
        if (
            type(net).forward is not nn.Sequential.forward
            or type(first) is not nn.Linear
            or first.in_features != width
        ):
            temb = self.time_features.to(dtype)
            return lambda y, i: self.predict_noise(y, temb[i].expand(*y.shape[:-1], -1), c)
        weight, bias = first.weight, first.bias
        if self._chain_frozen:
            weight, bias = weight.detach(), None if bias is None else bias.detach()
        step_bias = F.linear(self.time_features.to(weight.dtype), weight[:, dim : dim + emb], bias)
        if c_flat is not None:
            step_bias = step_bias.unsqueeze(1) + c_flat @ weight[:, dim + emb :].t()  # [T, B, H]
        # One unbind (its backward stacks the T gradients once), not T selections (each of
        # whose backward would zero-fill a whole [T, B, H] gradient).
        biases = step_bias.unbind(0)
        w_y = weight[:, :dim].t()
        rest = nn.Sequential(*list(net)[1:])  # (slicing an MLP would call MLP.__init__)
        return lambda y, i: self._run(rest, torch.matmul(y, w_y) + biases[i])

    def sample(
        self,
        x: Tensor,
        k: int = 1,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> PosteriorSample:
        """``z: [K, B, D]`` (for a label-conditioned chain, given ``label`` ``[B]``) with
        ``log_q = None`` (the exact log q(z|x) when T = 0) and extras
        ``log_q_joint`` ``[K, B]`` = log q(y_T|x) + Σ_t log q(y_{t−1}|y_t, x), ``log_r``
        ``[K, B]`` = Σ_t log r(y_t|y_{t−1}) with y_0 = z, ``y_T`` ``[K, B, D]``, and the encoder's
        ``y_T_mean``/``y_T_log_std`` ``[B, D]`` (also as ``mean``/``log_std`` when T = 0, where
        they are q(z|x)'s own). With ``sampler="ddim"`` there is no ``log_q_joint``/``log_r``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        mean, log_std = self.encode(x)
        eps = torch.randn(
            (k, *mean.shape), generator=generator, device=mean.device, dtype=mean.dtype
        )
        y_T = mean + torch.exp(log_std) * eps
        log_q_T = -0.5 * (eps.square() + LOG_2PI).sum(-1) - log_std.sum(-1)
        out = self.reverse(y_T, x, generator, label)
        extras = {"y_T": y_T, "y_T_mean": mean, "y_T_log_std": log_std}
        if out.log_q_steps is not None:
            extras["log_q_joint"] = log_q_T + out.log_q_steps
            extras["log_r"] = out.log_r
        log_q = None
        if self.num_steps == 0:
            log_q = log_q_T
            extras.update(mean=mean, log_std=log_std)
        return PosteriorSample(z=out.z, log_q=log_q, extras=extras)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        raise NotImplementedError(
            "a diffusion posterior q(z|x) = ∫ q(y, z|x) dy has no tractable density; use the "
            "auxiliary-variable bound (the DDVI objective: log_q_joint and log_r from sample())"
        )

    # -- the sleep term -----------------------------------------------------------------------

    def denoising_loss(
        self,
        z: Tensor,
        x: Tensor | None = None,
        generator: torch.Generator | None = None,
        huber: bool = False,
        label: Tensor | None = None,
    ) -> Tensor:
        """Noise-prediction loss of the reverse chain on clean latents ``z: [N, D]`` paired with
        ``x: [N, ...]`` (ignored, and may be ``None``, when the posterior is unconditional) and,
        for a label-conditioned chain, with their labels ``label`` (int64 ``[N]``).

        Draws t ~ U{1, …, T}, ε ~ N(0, I), y_t = √ᾱ_t z + √(1−ᾱ_t) ε, and returns
        Σ_d (ε − ε_φ(y_t, t, c(x)))² (DDPM's L_simple, Ho et al. 2020 eq. 14, summed over the
        latent dimensions), or with ``huber`` the summed smooth-L1 (Huber, δ = 1) loss of the
        official code. ``[N]``, ≥ 0; zeros when T = 0 (nothing to denoise).
        """
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape [N, {self.latent_dim}], got {list(z.shape)}")
        n = z.shape[0]
        if self.num_steps == 0:
            return z.new_zeros(n)
        c = self._condition(x, n, label)
        t = torch.randint(1, self.num_steps + 1, (n,), generator=generator, device=z.device)
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        y_t = self.schedule.add_noise(z, t, noise)
        eps_hat = self.predict_noise(y_t, self.time_embedding(t), c)
        if huber:
            return F.smooth_l1_loss(eps_hat, noise, reduction="none").sum(-1)
        return (eps_hat - noise).square().sum(-1)


class ChainView:
    """The read-only description of a diffusion chain (``conditional``, ``num_steps``,
    ``schedule``, ``encode``), forwarded to ``self.wrapped``: for posteriors that wrap a
    :class:`DiffusionPosterior`."""

    @property
    def wrapped(self) -> "DiffusionPosterior":
        raise NotImplementedError

    @property
    def conditional(self) -> bool:
        return self.wrapped.conditional

    @property
    def num_steps(self) -> int:
        return self.wrapped.num_steps

    @property
    def schedule(self) -> DiscreteSchedule:
        return self.wrapped.schedule

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log σ) of q(y_T|x)."""
        return self.wrapped.encode(x)


class TwoStagePosterior(ChainView, Posterior):
    """Two diffusion posteriors trained one after the other, of which one at a time is q(z|x):
    the posterior of the official DDVI pipeline (GitHub topwasu/DDVI: ``DiffVAE``, then
    ``DiffVAEWarmup``, whose q(y_T|x) starts from the first stage's encoder and whose reverse
    chain is a new, longer, x-conditional one).

    ``stage`` (a persistent buffer, saved with the weights) says which is active: 1 (``first``)
    until :meth:`start_second_stage`, then 2 (``second``). Sampling, ``encode``, ``reverse``,
    the sleep term's ``denoising_loss`` and the chain's properties are the active stage's;
    setting ``sampler`` sets both stages'. Train each stage through ``first`` and ``second``.

    Args:
        first: the first stage's posterior.
        second: the second stage's, of the same latent size; its encoder is overwritten by the
            first's when the second stage starts.
    """

    stage: Tensor

    def __init__(self, first: DiffusionPosterior, second: DiffusionPosterior) -> None:
        super().__init__()
        if first.latent_dim != second.latent_dim:
            raise ValueError(
                f"both stages need the same latent size, got {first.latent_dim} and "
                f"{second.latent_dim}"
            )
        self.first, self.second = first, second
        self.latent_dim = first.latent_dim
        self.register_buffer("stage", torch.ones((), dtype=torch.long))

    @property
    def active(self) -> DiffusionPosterior:
        """The posterior of the current stage."""
        return self.second if int(self.stage) == 2 else self.first

    wrapped = active

    @torch.no_grad()
    def start_second_stage(self) -> None:
        """Copy the first stage's encoder of q(y_T|x) into the second and make it active (the
        official ``DiffVAEWarmup`` loads ``Q`` from ``DiffVAE``'s saved model)."""
        self.second.encoder.load_state_dict(self.first.encoder.state_dict())
        self.stage.fill_(2)

    @property
    def sampler(self) -> str:
        return self.active.sampler

    @sampler.setter
    def sampler(self, value: str) -> None:
        _check_sampler(value)
        self.first.sampler = self.second.sampler = value

    def reverse(
        self, y_T: Tensor, x: Tensor | None, generator: torch.Generator | None = None
    ) -> ReverseChain:
        return self.active.reverse(y_T, x, generator)

    def frozen_chain(self) -> AbstractContextManager[None]:
        return self.active.frozen_chain()

    def sample(
        self, x: Tensor, k: int = 1, generator: torch.Generator | None = None
    ) -> PosteriorSample:
        return self.active.sample(x, k, generator)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        return self.active.log_prob(x, z)

    def denoising_loss(
        self,
        z: Tensor,
        x: Tensor | None = None,
        generator: torch.Generator | None = None,
        huber: bool = False,
    ) -> Tensor:
        return self.active.denoising_loss(z, x, generator, huber)


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def build_diffusion_posterior(
    data_dim: int,
    latent_dim: int,
    num_steps: int = 20,
    hidden: Sequence[int] = (128, 128, 128),
    context_dim: int = 32,
    conditional: bool = True,
    encoder_hidden: Sequence[int] | None = None,
    context_hidden: Sequence[int] | None = None,
    time_embedding_dim: int = 16,
    activation: str = "silu",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    reverse_variance: str = "beta",
    sampler: str = "ddpm",
    zero_init_denoiser: bool = True,
    num_labels: int = 0,
) -> DiffusionPosterior:
    """A :class:`DiffusionPosterior` with MLP networks and a linear β schedule.

    Encoder ``F -> encoder_hidden -> 2D``, context ``F -> context_hidden -> C`` (only when
    ``conditional``), denoiser ``D + E + C + L -> hidden -> D`` (L = ``num_labels``, 0 unless
    the chain is label-conditioned); the hidden sizes default to
    ``hidden``. ``zero_init_denoiser`` zeroes the denoiser's output layer, so that at
    initialisation ε̂ = 0 and each reverse step is a slight rescaling plus Gaussian noise: q
    starts close to the Gaussian encoder.
    """
    if data_dim < 1 or latent_dim < 1:
        raise ValueError(f"data_dim and latent_dim must be >= 1, got {data_dim}, {latent_dim}")
    if conditional and context_dim < 1:
        raise ValueError(f"a conditional posterior needs context_dim >= 1, got {context_dim}")
    enc_hidden = list(encoder_hidden if encoder_hidden is not None else hidden)
    ctx_hidden = list(context_hidden if context_hidden is not None else hidden)
    encoder = MLP(data_dim, enc_hidden, 2 * latent_dim, activation)
    context = MLP(data_dim, ctx_hidden, context_dim, activation) if conditional else None
    c_dim = context_dim if conditional else 0
    denoiser = MLP(
        latent_dim + time_embedding_dim + c_dim + num_labels, list(hidden), latent_dim, activation
    )
    if zero_init_denoiser:
        nn.init.zeros_(denoiser[-1].weight)
        nn.init.zeros_(denoiser[-1].bias)
    schedule = DiscreteSchedule.linear(num_steps, beta_start, beta_end)
    return DiffusionPosterior(
        encoder,
        denoiser,
        context,
        latent_dim,
        schedule,
        reverse_variance=reverse_variance,
        sampler=sampler,
        time_embedding_dim=time_embedding_dim,
        num_labels=num_labels,
    )
