"""Denoising Diffusion Restoration Models (DDRM; Kawar, Elad, Ermon & Song, NeurIPS 2022).

DDRM works in the variance-exploding view x_t = z_t / α_t = x₀ + σ̃_t ε with σ̃_t = σ_t / α_t,
in the spectral coordinates of A = U diag(s) Vᵀ: x̄ = Vᵀx, ȳ_i = (Uᵀy)_i / s_i (s_i > 0). Each
step from t to s < t draws every coordinate from a Gaussian built from x̂₀ = E[x₀ | z_t]
(x̄₀ = Vᵀx̂₀, ε̄ = Vᵀε̂) and y (p_θ of Section 3.3, eq. 8; η and η_b as in the paper):

- s_i = 0 (null space, DDIM-like):   x̄_i = x̄₀_i + √(1 − η²) σ̃_s ε̄_i + η σ̃_s ξ_i;
- s_i σ̃_s < σ_y (less noisy than y): x̄_i = x̄₀_i + √(1 − η²) σ̃_s (ȳ_i − x̄₀_i) s_i / σ_y
  + η σ̃_s ξ_i;
- s_i σ̃_s ≥ σ_y (noisier than y):    x̄_i = (1 − η_b) x̄₀_i + η_b ȳ_i
  + √(σ̃_s² − η_b² σ_y² / s_i²) ξ_i;

then z_s = α_s V x̄. The chain starts from p(x_1 | y) (eq. 7): x̄_i = ȳ_i +
√(σ̃_1² − σ_y² / s_i²) ξ_i where s_i σ̃_1 ≥ σ_y, else σ̃_1 ξ_i. No gradients are needed.
"""

import torch
from torch import Tensor

from diffvi.diffusion import DiffusionModel
from diffvi.inverse.operators import SVDOperator
from diffvi.inverse.solvers.base import Problem, Solver, denoise, standard_normal, time_grid
from diffvi.utils.progress import progress as progress_bar


class DDRM(Solver):
    """DDRM for linear operators with a known SVD.

    Args:
        steps: denoiser evaluations (= NFE): ``steps − 1`` DDRM steps on the even grid
            t = 1 → 0, then Tweedie's x̂₀ at t = 0. At least 2.
        eta: η ∈ [0, 1], the fresh-noise share in the null space and where A is less noisy
            than y (the paper's default 0.85).
        eta_b: η_b ∈ [0, 1], the weight of ȳ against x̂₀ where A is noisier than y (1.0).
        clip_denoised: clamp x̂₀ to [−1, 1] for image priors (see
            :func:`~diffvi.inverse.solvers.base.denoise`).

    Shapes: ``y [B, *A.output_shape]``; ``z_t`` and the result ``[B, C, H, W]``; spectral
    vectors ``[B, D]`` with ``D = C·H·W``; ``s = A.singulars()`` ``[D]``. Singular values off
    the operator's :meth:`~diffvi.inverse.operators.SVDOperator.range_mask` count as zero: at
    or below the pseudo-inverse tolerance, and below a blur's ``pinv_cutoff`` (3e-2, the
    official code's ``ZERO``, which zeroes them in its SVD).
    """

    name = "ddrm"
    requires = SVDOperator

    def __init__(
        self, steps: int = 20, eta: float = 0.85, eta_b: float = 1.0, clip_denoised: bool = True
    ) -> None:
        if steps < 2:
            raise ValueError(f"steps must be >= 2 (the last one predicts x0), got {steps}")
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        if not 0 <= eta_b <= 1:
            raise ValueError(f"eta_b must lie in [0, 1], got {eta_b}")
        self.steps, self.eta, self.eta_b = int(steps), float(eta), float(eta_b)
        self.clip_denoised = clip_denoised

    @torch.no_grad()
    def _run(
        self,
        problem: Problem,
        prior: DiffusionModel,
        generator: torch.Generator | None,
        progress: bool,
    ) -> tuple[Tensor, int, dict[str, list[float]]]:
        op: SVDOperator = problem.operator  # type: ignore[assignment]
        y, sigma_y = problem.y, problem.noise_std
        batch, dtype, device = y.shape[0], y.dtype, y.device
        s = op.singulars(dtype, device)  # [D]
        seen = op.range_mask(dtype, device)  # coordinates where A has a usable range
        s_safe = torch.where(seen, s, 1)
        y_bar = torch.where(seen, op.Ut(y) / s_safe, 0)  # ȳ = Σ⁺Uᵀy [B, D]
        y_var = torch.where(seen, sigma_y**2 / s_safe**2, torch.inf)  # σ_y²/s_i², ∞ off range

        noise = standard_normal(y_bar, generator)
        grid = time_grid(self.steps, y_bar)
        alpha, sigma = prior.schedule.alpha_sigma(grid)
        ve = (sigma / alpha).to(dtype)  # σ̃_t = σ_t / α_t [steps]
        alpha = alpha.to(dtype)

        # x_1 ~ p(x_1 | y) (eq. 7): ȳ plus the rest of σ̃_1² where y is the noisier one.
        informed = ve[0] ** 2 >= y_var
        x_bar = torch.where(
            informed, y_bar + (ve[0] ** 2 - y_var).clamp_min(0).sqrt() * noise, ve[0] * noise
        )
        z = alpha[0] * op.V(x_bar)
        for k in progress_bar(range(self.steps - 1), desc="ddrm", enable=progress):
            t = grid[k].expand(batch)
            x0, eps = denoise(prior, z, t, self.clip_denoised)
            x0_bar, eps_bar = op.Vt(x0), op.Vt(eps)
            ve_s, xi = ve[k + 1], standard_normal(x0_bar, generator)
            keep = (1 - self.eta**2) ** 0.5 * ve_s  # √(1 − η²) σ̃_s
            # Null space (eq. 8, s_i = 0): DDIM-like with the predicted noise.
            null = x0_bar + keep * eps_bar + self.eta * ve_s * xi
            # Less noisy than y (eq. 8, s_i σ̃_s < σ_y): move from x̂₀ towards ȳ.
            gap = (y_bar - x0_bar) / y_var.sqrt().clamp_min(torch.finfo(dtype).tiny)
            toward = x0_bar + keep * gap + self.eta * ve_s * xi
            # Noisier than y (eq. 8, s_i σ̃_s ≥ σ_y): mix ȳ and x̂₀, top up the noise.
            spread = (ve_s**2 - self.eta_b**2 * y_var).clamp_min(0).sqrt()
            mixed = (1 - self.eta_b) * x0_bar + self.eta_b * y_bar + spread * xi
            x_bar = torch.where(~seen, null, torch.where(ve_s**2 < y_var, toward, mixed))
            z = alpha[k + 1] * op.V(x_bar)
        x0, _ = denoise(prior, z, grid[-1].expand(batch), self.clip_denoised)
        return x0, self.steps, {}


__all__ = ["DDRM"]
