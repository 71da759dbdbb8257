"""Data from N(m, Σ), whose optimal noise predictor is analytic: with z_t = α x + σ ε,
E[ε | z_t] = σ (α² Σ + σ² I)⁻¹ (z_t − α m)."""

import torch
from torch import Tensor, nn

from diffvi.diffusion import NoiseSchedule

MEAN = torch.tensor([1.0, -2.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)


class ExactGaussianDenoiser(nn.Module):
    """ε*(z_t, t) for data from N(``mean``, ``cov``) under ``schedule``: ``[B, D] -> [B, D]``."""

    def __init__(self, schedule: NoiseSchedule, mean: Tensor = MEAN, cov: Tensor = COV):
        super().__init__()
        self.schedule = schedule
        self.register_buffer("mean", mean)
        self.register_buffer("cov", cov)

    def forward(self, z: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        alpha, sigma = (v.to(z.dtype) for v in self.schedule.alpha_sigma(t))
        eye = torch.eye(z.shape[1], dtype=z.dtype)
        marginal = alpha[:, None, None] ** 2 * self.cov + sigma[:, None, None] ** 2 * eye
        centred = (z - alpha[:, None] * self.mean).unsqueeze(-1)
        return sigma[:, None] * torch.linalg.solve(marginal, centred).squeeze(-1)
