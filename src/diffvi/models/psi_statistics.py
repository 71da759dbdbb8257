"""Kernels with Ψ-statistics, the expectations of a kernel under a Gaussian input
q(x_n) = N(μ_n, diag s_n) that make the variational deep GP bound of :mod:`diffvi.models.dgp`
closed form (Titsias & Lawrence 2010, "Bayesian Gaussian process latent variable model", §3.2):

    ψ0_n = E[k(x_n, x_n)],   ψ1_nm = E[k(x_n, z_m)],   ψ2_n,mm' = E[k(z_m, x_n) k(x_n, z_m')].

Shapes: input means and variances ``[B, Q]``, inducing inputs ``z: [M, Q]``; ``ψ0: [B]``,
``ψ1: [B, M]``, ``ψ2: [B, M, M]`` (never ``[B, M, M, Q]``). With ``s = 0`` they reduce to the
plain kernel values: ψ1 = k(μ, Z), ψ2 = k(Z, μ) k(μ, Z). Hyper-parameters are log-parameterised.
"""

import math

import torch
from torch import Tensor, nn


class Kernel(nn.Module):
    """A covariance function on ``input_dim`` inputs with its Ψ-statistics."""

    input_dim: int

    def K(self, x: Tensor, z: Tensor) -> Tensor:
        """Cross-covariance ``k(x, z)``: ``[N, Q], [M, Q] -> [N, M]``."""
        raise NotImplementedError

    def Kdiag(self, x: Tensor) -> Tensor:
        """The diagonal ``k(x_n, x_n)``: ``[N, Q] -> [N]``."""
        raise NotImplementedError

    def psi0(self, mean: Tensor, var: Tensor, z: Tensor | None = None) -> Tensor:
        """ψ0 ``[B]``."""
        raise NotImplementedError

    def psi1(self, mean: Tensor, var: Tensor, z: Tensor) -> Tensor:
        """ψ1 ``[B, M]``."""
        raise NotImplementedError

    def psi2(self, mean: Tensor, var: Tensor, z: Tensor) -> Tensor:
        """ψ2 ``[B, M, M]``."""
        raise NotImplementedError


class RBFKernel(Kernel):
    """ARD squared exponential k(x, x') = σ_f² exp(−½ Σ_q (x_q − x'_q)² / ℓ_q²).

    Args:
        input_dim: Q.
        variance: initial σ_f².
        lengthscale: initial ℓ_q (the same for every input dimension).
    """

    def __init__(self, input_dim: int, variance: float = 1.0, lengthscale: float = 1.0) -> None:
        super().__init__()
        if input_dim < 1 or variance <= 0 or lengthscale <= 0:
            raise ValueError(
                "need input_dim >= 1 and positive variance and lengthscale, got "
                f"{input_dim}, {variance}, {lengthscale}"
            )
        self.input_dim = input_dim
        self.log_variance = nn.Parameter(torch.tensor(math.log(variance)))
        self.log_lengthscale = nn.Parameter(torch.full((input_dim,), math.log(lengthscale)))

    @property
    def variance(self) -> Tensor:
        return self.log_variance.exp()

    @property
    def lengthscale(self) -> Tensor:
        return self.log_lengthscale.exp()

    def K(self, x: Tensor, z: Tensor) -> Tensor:
        diff = (x[:, None, :] - z[None, :, :]) / self.lengthscale  # [N, M, Q]
        return torch.exp(self.log_variance - 0.5 * diff.pow(2).sum(-1))

    def Kdiag(self, x: Tensor) -> Tensor:
        return self.variance.expand(x.shape[0])

    def psi0(self, mean: Tensor, var: Tensor, z: Tensor | None = None) -> Tensor:
        return self.variance.expand(mean.shape[0])  # ψ0 = σ_f²

    def psi1(self, mean: Tensor, var: Tensor, z: Tensor) -> Tensor:
        # Ψ1 (T&L 2010): σ² ∏_q (1 + s_q/ℓ_q²)^{-1/2} exp(−½ (μ_q − z_q)² / (ℓ_q² + s_q)).
        ls2 = self.lengthscale.pow(2)
        log_norm = -0.5 * torch.log1p(var / ls2).sum(-1, keepdim=True)  # [B, 1]
        diff = (mean[:, None, :] - z[None, :, :]) / (ls2 + var).sqrt()[:, None, :]  # [B, M, Q]
        return torch.exp(self.log_variance + log_norm - 0.5 * diff.pow(2).sum(-1))

    def psi2(self, mean: Tensor, var: Tensor, z: Tensor) -> Tensor:
        # Ψ2 (T&L 2010): σ⁴ ∏_q (1 + 2s_q/ℓ_q²)^{-1/2}
        #   · exp(−(z_mq − z_m'q)² / (4ℓ_q²) − (μ_q − z̄_q)² / (ℓ_q² + 2s_q)), z̄ = (z_m + z_m')/2,
        # factorised: with d_m = (μ − z_m) / √(ℓ² + 2s), Σ_q (μ − z̄)²/(ℓ² + 2s) = ¼‖d_m + d_m'‖².
        ls2 = self.lengthscale.pow(2)
        zs = z / self.lengthscale
        z_sq = zs.pow(2).sum(-1)
        z_dist = (z_sq[:, None] + z_sq[None, :] - 2 * zs @ zs.T).clamp_min(0)  # [M, M]
        d = (mean[:, None, :] - z[None, :, :]) / (ls2 + 2 * var).sqrt()[:, None, :]  # [B, M, Q]
        gram = d @ d.transpose(-1, -2)  # [B, M, M]
        sq = gram.diagonal(dim1=-2, dim2=-1)  # [B, M]
        mid = (0.25 * (sq[:, :, None] + sq[:, None, :] + 2 * gram)).clamp_min(0)
        log_norm = -0.5 * torch.log1p(2 * var / ls2).sum(-1)[:, None, None]  # [B, 1, 1]
        return torch.exp(2 * self.log_variance + log_norm - 0.25 * z_dist - mid)


class LinearKernel(Kernel):
    """ARD linear kernel k(x, x') = Σ_q α_q x_q x'_q (rank ≤ Q: use ``num_inducing <= Q``).

    Args:
        input_dim: Q.
        variance: initial α_q (the same for every input dimension).
    """

    def __init__(self, input_dim: int, variance: float = 1.0) -> None:
        super().__init__()
        if input_dim < 1 or variance <= 0:
            raise ValueError(f"need input_dim >= 1 and variance > 0, got {input_dim}, {variance}")
        self.input_dim = input_dim
        self.log_variances = nn.Parameter(torch.full((input_dim,), math.log(variance)))

    @property
    def variances(self) -> Tensor:
        return self.log_variances.exp()

    def K(self, x: Tensor, z: Tensor) -> Tensor:
        return (x * self.variances) @ z.T

    def Kdiag(self, x: Tensor) -> Tensor:
        return (x.pow(2) * self.variances).sum(-1)

    def psi0(self, mean: Tensor, var: Tensor, z: Tensor | None = None) -> Tensor:
        return ((mean.pow(2) + var) * self.variances).sum(-1)  # ψ0 = Σ_q α_q (μ_q² + s_q)

    def psi1(self, mean: Tensor, var: Tensor, z: Tensor) -> Tensor:
        return (mean * self.variances) @ z.T  # ψ1 = μ diag(α) Zᵀ

    def psi2(self, mean: Tensor, var: Tensor, z: Tensor) -> Tensor:
        # ψ2 = Z diag(α) (μμᵀ + diag s) diag(α) Zᵀ = ψ1ᵀψ1 + Z diag(α² s) Zᵀ.
        psi1 = self.psi1(mean, var, z)
        spread = (z[None, :, :] * (self.variances.pow(2) * var)[:, None, :]) @ z.T  # [B, M, M]
        return psi1[:, :, None] * psi1[:, None, :] + spread


KERNELS: dict[str, type[Kernel]] = {"rbf": RBFKernel, "linear": LinearKernel}


def build_kernel(kernel: str | Kernel, input_dim: int) -> Kernel:
    """A kernel by name (``"rbf"`` or ``"linear"``) on ``input_dim`` inputs, or ``kernel`` itself
    when it is already a :class:`Kernel` of that input dimension."""
    if isinstance(kernel, Kernel):
        if kernel.input_dim != input_dim:
            raise ValueError(f"kernel takes {kernel.input_dim} inputs, the layer {input_dim}")
        return kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    return KERNELS[kernel](input_dim)
