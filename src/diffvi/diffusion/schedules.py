"""Noise schedules of Gaussian diffusions (DDPM, Ho et al. 2020).

The forward (noising) chain over ``T`` steps is r(y_t | y_{t−1}) = N(√(1−β_t) y_{t−1}, β_t I),
``t = 1 … T``, with y_0 the clean variable. Its marginals are
r(y_t | y_0) = N(√ᾱ_t y_0, (1−ᾱ_t) I), ``α_t = 1 − β_t``, ``ᾱ_t = Π_{s≤t} α_s``, and the
posterior r(y_{t−1} | y_t, y_0) has variance β̃_t = β_t (1−ᾱ_{t−1}) / (1−ᾱ_t) (``ᾱ_0 = 1``).

Step ``t`` (1-based, as in the papers) is stored at index ``t − 1`` of every ``[T]`` buffer.
The log-SNR ``log(ᾱ_t / (1 − ᾱ_t))`` is kept too, so that continuous-time schedules (log-SNR
γ(t), ``t ∈ [0, 1]``; DESIGN.md) can extend this module with a discrete grid as a view.
"""

import torch
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

    def extra_repr(self) -> str:
        if self.num_steps == 0:
            return "num_steps=0"
        return (
            f"num_steps={self.num_steps}, beta_1={self.betas[0].item():.3g}, "
            f"beta_T={self.betas[-1].item():.3g}, alpha_bar_T={self.alpha_bars[-1].item():.3g}"
        )
