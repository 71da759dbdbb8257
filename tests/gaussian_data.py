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


class FlatGaussianDenoiser(ExactGaussianDenoiser):
    """:class:`ExactGaussianDenoiser` for data of any shape ``[B, ...]`` (flattened inside)."""

    def forward(self, z: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return super().forward(z.flatten(1), t, cond).view_as(z)


def gaussian_image_prior(shape=(1, 4, 4), seed: int = 0):
    """A prior over ``shape`` images that is exactly N(m, Σ) (random m, Σ; float64), with the
    exact denoiser under a cosine schedule. Returns ``(model, mean [D], cov [D, D])``."""
    from diffvi.diffusion import CosineSchedule, DiffusionModel

    g = torch.Generator().manual_seed(seed)
    dim = int(torch.tensor(shape).prod())
    mean = 0.5 * torch.randn(dim, generator=g, dtype=torch.float64)
    factor = torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim**0.5
    cov = 0.3 * factor @ factor.T + 0.05 * torch.eye(dim, dtype=torch.float64)
    # Smooth correlations between neighbouring pixels make the prior informative.
    idx = torch.arange(dim, dtype=torch.float64)
    cov = cov + 0.5 * torch.exp(-((idx[:, None] - idx[None]) ** 2) / 8)
    schedule = CosineSchedule()
    model = DiffusionModel(schedule, FlatGaussianDenoiser(schedule, mean, cov), image=False)
    return model.double(), mean, cov


def gaussian_posterior(matrix: Tensor, y: Tensor, noise_std: float, mean: Tensor, cov: Tensor):
    """Exact posterior N(μ, C) of x ~ N(mean, cov) given y = M x + σ n (``noise_std > 0``):
    ``matrix [M, D]``, ``y [B, M]`` → ``(μ [B, D], C [D, D])``."""
    precision = torch.linalg.inv(cov) + matrix.T @ matrix / noise_std**2
    post_cov = torch.linalg.inv(precision)
    post_mean = (torch.linalg.solve(cov, mean) + y @ matrix / noise_std**2) @ post_cov.T
    return post_mean, post_cov


def operator_matrix(operator, shape) -> Tensor:
    """Dense matrix ``[M, D]`` of a linear operator on ``shape`` images (float64)."""
    dim = int(torch.tensor(shape).prod())
    basis = torch.eye(dim, dtype=torch.float64).view(dim, *shape)
    return operator(basis).flatten(1).T
