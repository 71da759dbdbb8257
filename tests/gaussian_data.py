"""Data from N(m, Σ), whose optimal noise predictor is analytic: with z_t = α x + σ ε,
E[ε | z_t] = σ (α² Σ + σ² I)⁻¹ (z_t − α m). Dense Σ for a few pixels; for colour images of
64 px and more, :class:`StationaryGaussianImages` (Σ = colour ⊗ circulant, diagonal in FFT
space) keeps the denoiser and the posterior mean exact and cheap."""

import functools

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


class StationaryGaussianImages(nn.Module):
    """Images ``[C, H, W]`` from N(m, Σ) with Σ = Σ_c ⊗ Σ_s: a colour covariance ``Σ_c [C, C]``
    (eigenvectors Q, eigenvalues λ) times a stationary (circulant) spatial covariance with power
    spectrum ``p [H, W]`` (real, even). Σ is diagonal in the basis (Q ⊗ DFT) with eigenvalues
    λ_c p_k, so Σ^a v = Q · ifft2(λ^a p^a · fft2(Qᵀ v)) costs a few FFTs at any size, and the
    exact noise predictor E[ε | z_t] = σ (α² Σ + σ² I)⁻¹ (z_t − α m) is one such product
    (``forward``). float64."""

    def __init__(self, schedule: NoiseSchedule, mean: Tensor, colour: Tensor, spectrum: Tensor):
        super().__init__()
        self.schedule = schedule
        lam, q = torch.linalg.eigh(colour)
        self.register_buffer("mean", mean)
        self.register_buffer("q", q)
        self.register_buffer("eig", lam[:, None, None] * spectrum)  # [C, H, W]

    def power(self, v: Tensor, exponent: float) -> Tensor:
        """Σ^exponent v for images ``v [B, C, H, W]``."""
        w = torch.einsum("ji,bjhw->bihw", self.q, v)  # Qᵀ v
        w = torch.fft.ifft2(torch.fft.fft2(w) * self.eig**exponent).real
        return torch.einsum("ij,bjhw->bihw", self.q, w)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        white = torch.randn(n, *self.mean.shape, generator=generator, dtype=self.mean.dtype)
        return self.mean + self.power(white, 0.5)

    def forward(self, z: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        alpha, sigma = (v.to(z.dtype)[:, None, None, None] for v in self.schedule.alpha_sigma(t))
        w = torch.einsum("ji,bjhw->bihw", self.q, z - alpha * self.mean)
        w = torch.fft.ifft2(torch.fft.fft2(w) / (alpha**2 * self.eig + sigma**2)).real
        return sigma * torch.einsum("ij,bjhw->bihw", self.q, w)

    def posterior_mean(self, operator, y: Tensor, noise_std: float, tol: float = 1e-12) -> Tensor:
        """The exact E[x | y] ``[B, C, H, W]`` for y = A x + σ_y n (linear ``operator``, σ_y > 0):
        x = m + Σ^½ u with (I + Σ^½ AᵀA Σ^½ / σ_y²) u = Σ^½ Aᵀ (y − A m) / σ_y², solved by
        conjugate gradients to relative residual ``tol``."""

        def apply(u: Tensor) -> Tensor:
            half = self.power(u, 0.5)
            return u + self.power(operator.adjoint(operator(half)), 0.5) / noise_std**2

        mean = self.mean.expand(y.shape[0], *self.mean.shape)
        b = self.power(operator.adjoint(y - operator(mean)), 0.5) / noise_std**2
        u, r = torch.zeros_like(b), b.clone()
        p, rr = r.clone(), (r * r).sum()
        for _ in range(20000):
            if rr.sqrt() <= tol * b.norm():
                break
            q = apply(p)
            a = rr / (p * q).sum()
            u, r = u + a * p, r - a * q
            rr, rr_old = (r * r).sum(), rr
            p = r + (rr / rr_old) * p
        else:
            raise RuntimeError("conjugate gradients did not converge")
        return mean + self.power(u, 0.5)


def stationary_gaussian_prior(shape=(3, 64, 64), seed: int = 0):
    """A prior over ``shape`` images that is exactly :class:`StationaryGaussianImages` (smooth
    images, pixel standard deviation about 0.35, correlated colours when C = 3), with the exact
    denoiser under a cosine schedule. Returns ``(model, images)`` (float64)."""
    from diffvi.diffusion import CosineSchedule, DiffusionModel

    c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    ky = torch.fft.fftfreq(h, dtype=torch.float64)[:, None] * h
    kx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :] * w
    k2 = ky**2 + kx**2
    # A smooth field (correlation length ~ a tenth of the side) plus a little white noise, so
    # that Σ is well conditioned; normalised to a pixel variance of 0.12.
    spectrum = 1.0 / (1.0 + k2 / (0.08 * h) ** 2) ** 2
    spectrum = 0.12 * spectrum / spectrum.mean() + 0.004
    mixing = torch.eye(c, dtype=torch.float64) + 0.6 * (torch.ones(c, c, dtype=torch.float64))
    colour = mixing @ mixing.T
    colour = colour / colour.diagonal().mean()
    mean = 0.2 * torch.randn(c, 1, 1, generator=g, dtype=torch.float64).expand(c, h, w)
    schedule = CosineSchedule()
    images = StationaryGaussianImages(schedule, mean.contiguous(), colour, spectrum)
    model = DiffusionModel(schedule, images, image=False)
    return model.double(), images


@functools.lru_cache(maxsize=8)
def stationary_problem(channels: int, task: str, noise_std: float = 0.05, size: int = 64):
    """One measurement of an image of :func:`stationary_gaussian_prior` through the registry's
    ``task`` operator, and its exact posterior mean (cached: the conjugate gradients take a
    second or two at 64×64). Returns ``(model, images, operator, y [1, ...], post [C, H, W])``."""
    from diffvi.inverse import build_operator

    shape = (channels, size, size)
    model, images = stationary_gaussian_prior(shape)
    operator = build_operator(task, shape, torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(0)
    x = images.sample(1, g)
    y = operator(x) + noise_std * torch.randn(
        1, *operator.output_shape, generator=g, dtype=torch.float64
    )
    return model, images, operator, y, images.posterior_mean(operator, y, noise_std, 1e-10)[0]


def debiased_error(samples: Tensor, target: Tensor) -> tuple[float, float]:
    """The bias ‖E[x̂] − target‖ of a solver from ``n`` independent answers ``samples [n, ...]``,
    and the Monte-Carlo error of their mean: ‖x̄ − target‖² − tr(Ĉ)/n is unbiased for the squared
    bias (Ĉ the unbiased sample covariance), and in thousands of dimensions its spread is a
    small fraction of tr(C)/n, so a few copies measure a bias far below the Monte-Carlo error
    of x̄ itself. Returns ``(bias, sqrt(tr(Ĉ)/n))`` (the bias is 0 where the estimate is < 0)."""
    n = samples.shape[0]
    noise2 = samples.var(0).sum().item() / n
    error2 = (samples.mean(0) - target).pow(2).sum().item()
    return max(error2 - noise2, 0.0) ** 0.5, noise2**0.5
