"""A linear-Gaussian VAE whose log p(x) and posterior are known exactly (float64).

p(z) = N(0, I_D), p(x|z) = N(Wz + b, σ² I_F). Then p(x) = N(b, WWᵀ + σ²I) and
p(z|x) = N(m, S) with S = (I + WᵀW/σ²)⁻¹, m = S Wᵀ(x − b)/σ². W has orthogonal columns, so
WᵀW and S are diagonal and the exact posterior is a diagonal Gaussian whose mean is affine in x:
an encoder with fixed tensors represents it exactly. The ``linear_gaussian`` fixture of
tests/conftest.py builds one.
"""

import math

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from diffvi.distributions import GaussianLikelihood
from diffvi.models import VAE
from diffvi.posteriors import GaussianPosterior

F64 = torch.float64


class AffineGaussianEncoder(nn.Module):
    """Fixed encoder ``h [..., F] -> [..., 2D]``: mean ``h Aᵀ + c`` and a constant log σ."""

    def __init__(self, weight: Tensor, bias: Tensor, log_std: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("log_std", log_std)

    def forward(self, h: Tensor) -> Tensor:
        mean = h @ self.weight.T + self.bias
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)


class LinearGaussian:
    def __init__(self, data_dim: int = 4, scales: tuple[float, ...] = (1.5, 0.8), sigma=0.7):
        g = torch.Generator().manual_seed(0)
        self.data_dim, self.latent_dim, self.sigma = data_dim, len(scales), sigma
        q, _ = torch.linalg.qr(torch.randn(data_dim, self.latent_dim, generator=g, dtype=F64))
        self.W = q * torch.tensor(scales, dtype=F64)  # orthogonal columns: WᵀW = diag(scales²)
        self.b = torch.randn(data_dim, generator=g, dtype=F64)
        decoder = nn.Linear(self.latent_dim, data_dim).double()
        with torch.no_grad():
            decoder.weight.copy_(self.W)
            decoder.bias.copy_(self.b)
        self.model = VAE(
            event_shape=(data_dim,),
            latent_dims=[self.latent_dim],
            decoder=decoder,
            likelihood=GaussianLikelihood(scale=sigma, sigmoid_mean=False),
        ).double()
        eye = torch.eye(self.latent_dim, dtype=F64)
        self.S = torch.linalg.inv(eye + self.W.T @ self.W / sigma**2)  # exact posterior cov
        self.A = self.S @ self.W.T / sigma**2  # m = A x + c
        self.c = -self.A @ self.b
        self.log_std = 0.5 * torch.log(torch.diagonal(self.S))

    def log_px(self, x: Tensor) -> Tensor:
        """Exact log p(x): ``[N, F] -> [N]``."""
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.data_dim, dtype=F64)
        return MultivariateNormal(self.b, cov).log_prob(x)

    def closed_form_elbo(self, x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
        """E_q[log p(x|z)] + E_q[log p(z)] + H[q] for q = N(mean, diag exp(log_std)²), in
        closed form, differentiable in q's parameters and in the decoder's W and b: ``[N]``."""
        W, b, var = self.model.decoder.weight, self.model.decoder.bias, torch.exp(2 * log_std)
        resid = x - b - mean @ W.T
        trace = (var * W.square().sum(0)).sum(-1)  # tr(W diag(var) Wᵀ)
        log_2pi = math.log(2 * math.pi)
        e_log_lik = (
            -0.5 * self.data_dim * (log_2pi + 2 * math.log(self.sigma))
            - 0.5 * (resid.square().sum(-1) + trace) / self.sigma**2
        )
        e_log_prior = -0.5 * self.latent_dim * log_2pi - 0.5 * (mean.square() + var).sum(-1)
        entropy = 0.5 * self.latent_dim * (log_2pi + 1) + log_std.sum(-1)
        return e_log_lik + e_log_prior + entropy

    def posterior_mean(self, x: Tensor) -> Tensor:
        return (x - self.b) @ self.W @ self.S.T / self.sigma**2

    def posterior(self, shift: float = 0.0, widen: float = 1.0) -> GaussianPosterior:
        """The exact posterior, or one with its mean moved by ``shift`` posterior standard
        deviations and its standard deviations multiplied by ``widen`` (fixed tensors)."""
        bias = self.c + shift * self.log_std.exp()
        encoder = AffineGaussianEncoder(self.A, bias, self.log_std + math.log(widen))
        return GaussianPosterior([encoder], [self.latent_dim]).double()

    def learnable_posterior(self, shift: float = 0.0, widen: float = 1.0) -> GaussianPosterior:
        """Same family with an ``nn.Linear`` encoder (trainable φ) started at that posterior."""
        encoder = nn.Linear(self.data_dim, 2 * self.latent_dim).double()
        with torch.no_grad():
            encoder.weight.copy_(torch.cat([self.A, torch.zeros_like(self.A)]))
            encoder.bias.copy_(
                torch.cat([self.c + shift * self.log_std.exp(), self.log_std + math.log(widen)])
            )
        return GaussianPosterior([encoder], [self.latent_dim])

    def data(self, n: int, seed: int = 1) -> Tensor:
        """``[n, F]`` draws from the model."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g, dtype=F64)
        noise = torch.randn(n, self.data_dim, generator=g, dtype=F64)
        return z @ self.W.T + self.b + self.sigma * noise
