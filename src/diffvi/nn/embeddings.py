"""Time embeddings for denoising networks (transformer positional encodings, Vaswani et al. 2017,
as used by DDPM, Ho et al. 2020).

Two time conventions meet here: continuous times ``t ∈ [0, 1]`` (the library's diffusion
convention, DESIGN.md) and integer step indices ``t ∈ {0, 1, …}``. Floating-point times are
multiplied by ``time_scale`` (1000 by default, so ``t = 0.25`` embeds like step 250 of a
1000-step DDPM); integer steps are used as they are.
"""

import math

import torch
from torch import Tensor, nn

from diffvi.nn.activations import build_activation


def sinusoidal_embedding(
    t: Tensor, dim: int, max_period: float = 10_000.0, time_scale: float = 1000.0
) -> Tensor:
    """Sinusoidal features of times: ``t [N]`` (or a scalar) ``-> [N, dim]``.

    ``[sin(p·ω_0), …, sin(p·ω_{h−1}), cos(p·ω_0), …, cos(p·ω_{h−1})]`` with ``h = dim / 2``,
    frequencies ``ω_k = max_period^(−k/h)`` and position ``p = time_scale · t`` for a float
    ``t`` (meant to lie in [0, 1]; values are not checked, to keep the hot path free of
    device synchronisation) or ``p = t`` for an integer ``t``. The output has ``t``'s dtype
    when ``t`` is floating point, else the default dtype.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even number >= 2, got {dim}")
    if max_period <= 1:
        raise ValueError(f"max_period must be > 1, got {max_period}")
    if t.ndim > 1:
        raise ValueError(f"t must be a scalar or have shape [N], got {list(t.shape)}")
    if t.is_floating_point():
        position = t.reshape(-1) * time_scale
    else:
        position = t.reshape(-1).to(torch.get_default_dtype())
    half = dim // 2
    exponent = torch.arange(half, device=t.device, dtype=position.dtype) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    angles = position[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class TimeEmbedding(nn.Module):
    """Sinusoidal features followed by a small MLP: ``t [N] -> [N, out_dim]``.

    ``Linear(dim, hidden) → activation → Linear(hidden, out_dim)``, the DDPM/ADM time MLP.

    Args:
        dim: number of sinusoidal features (even).
        out_dim: output width; default ``4 · dim``.
        hidden: hidden width; default ``out_dim``.
        activation: a name from :data:`diffvi.nn.activations.ACTIVATIONS`.
    """

    def __init__(
        self,
        dim: int,
        out_dim: int | None = None,
        hidden: int | None = None,
        activation: str = "silu",
        max_period: float = 10_000.0,
        time_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even number >= 2, got {dim}")
        act = build_activation(activation)
        self.dim = dim
        self.out_dim = out_dim if out_dim is not None else 4 * dim
        hidden = hidden if hidden is not None else self.out_dim
        if self.out_dim < 1 or hidden < 1:
            raise ValueError(f"out_dim and hidden must be >= 1, got {self.out_dim} and {hidden}")
        self.max_period = max_period
        self.time_scale = time_scale
        self.net = nn.Sequential(nn.Linear(dim, hidden), act, nn.Linear(hidden, self.out_dim))

    def forward(self, t: Tensor) -> Tensor:
        features = sinusoidal_embedding(t, self.dim, self.max_period, self.time_scale)
        weight = self.net[0].weight
        return self.net(features.to(device=weight.device, dtype=weight.dtype))
