"""Priors p(z) over the top latent layer."""

import torch
from torch import Tensor, nn

from diffvi.distributions.gaussian import standard_normal_log_prob


class StandardNormal(nn.Module):
    """p(z) = N(0, I_D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"latent dimension must be >= 1, got {dim}")
        self.dim = dim
        # A buffer so that samples follow the module's device and dtype.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: Tensor) -> Tensor:
        """``[..., D] -> [...]``."""
        return standard_normal_log_prob(z)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """Draw ``[*shape, D]`` samples."""
        return torch.randn(
            (*shape, self.dim),
            generator=generator,
            device=self._anchor.device,
            dtype=self._anchor.dtype,
        )
