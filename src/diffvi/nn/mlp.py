"""Multi-layer perceptrons: the encoders and decoders of the classic VI models, and a noise
predictor for diffusion models of low-dimensional data."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from diffvi.nn.activations import ACTIVATIONS, build_activation
from diffvi.nn.embeddings import TimeEmbedding


class MLP(nn.Sequential):
    """Fully connected network ``in_features -> hidden... -> out_features``.

    Acts on the last axis, so any leading shape passes through: ``[..., in] -> [..., out]``.
    The last layer is linear (no activation).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "tanh",
    ) -> None:
        if activation not in ACTIVATIONS:  # checked even without hidden layers
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(build_activation(activation))
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = out_features


class MLPDenoiser(nn.Module):
    """Noise predictor for low-dimensional data: ``(x_t [B, D], t [B], cond [B, C] | None)
    -> ε̂ [B, D]``.

    An MLP on ``[x_t, time features, cond]``, where the time features come from a sinusoidal
    :class:`~diffvi.nn.embeddings.TimeEmbedding` of ``t ∈ [0, 1]``.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        time_dim: int = 64,
        cond_dim: int = 0,
        activation: str = "silu",
    ) -> None:
        super().__init__()
        if dim < 1 or cond_dim < 0:
            raise ValueError(f"need dim >= 1 and cond_dim >= 0, got {dim} and {cond_dim}")
        self.dim, self.cond_dim = dim, cond_dim
        self.time = TimeEmbedding(time_dim, out_dim=time_dim, activation=activation)
        self.net = MLP(dim + time_dim + cond_dim, hidden, dim, activation)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [B, {self.dim}], got {list(x.shape)}")
        if (cond is None) != (self.cond_dim == 0):
            raise ValueError(f"this denoiser takes cond_dim={self.cond_dim} conditioning features")
        parts = [x, self.time(t).to(x.dtype)] + ([cond] if cond is not None else [])
        return self.net(torch.cat(parts, dim=-1))
