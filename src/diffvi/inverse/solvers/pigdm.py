"""Pseudoinverse-guided diffusion models (ΠGDM; Song, Vahdat, Mardani & Kautz, ICLR 2023).

ΠGDM approximates p(x₀ | z_t) by N(x̂₀, r_t² I) (eq. 5), so that p(y | z_t) ≈
N(A x̂₀, r_t² A Aᵀ + σ_y² I) and its score is a vector-Jacobian product through the denoiser
(eq. 7; eq. 8 for σ_y = 0):

    ∇_{z_t} log p(y | z_t) ≈ r_t⁻² (∂x̂₀/∂z_t)ᵀ v,
    v = r_t² Aᵀ (r_t² A Aᵀ + σ_y² I)⁻¹ (y − A x̂₀)   →   A⁺y − A⁺A x̂₀   as σ_y → 0.

r_t² = σ_VE² / (1 + σ_VE²) for unit data variance with σ_VE = σ_t / α_t, which is σ_t² here
(α_t² + σ_t² = 1). The guidance g = (∂x̂₀/∂z_t)ᵀ v is added to the unconditional DDIM(η) step
with the official code's weight (RED-diff ``algos/pgdm.py``, ``awd=True``; its ᾱ is our α²):

    z_s = DDIM_η(z_t, ε̂) + scale · α_s α_t · g.

(Tweedie's formula with the guided score would give the weight α_s / α_t; the official weight
is that times α_t², which damps the guidance at high noise.) Linear operators only.

Inpainting (an operator with an :attr:`~diffvi.inverse.operators.Operator.observed_mask` m):
the official code, for its full-size inpainting degradation (``in2``), also hard-replaces the
observed pixels of x̂₀ by y and zeroes the guidance there, so only the hidden pixels are guided,

    x̂₀ ← (1 − m) ⊙ x̂₀ + m ⊙ y,    g ← (1 − m) ⊙ g,

before the DDIM step (whose ε̂ stays the network's), and so on the last step: the observed
pixels of the result are y. ``replace_observed=False`` guides every pixel instead, as for
other operators.
"""

import torch
from torch import Tensor

from diffvi.diffusion import DiffusionModel
from diffvi.diffusion.samplers import per_item
from diffvi.inverse.operators import LinearOperator
from diffvi.inverse.solvers.base import Problem
from diffvi.inverse.solvers.guided import GuidedSampler


class PiGDM(GuidedSampler):
    """ΠGDM for linear inverse problems, noiseless or with Gaussian noise σ_y.

    Args:
        steps: denoiser evaluations (= NFE): ``steps − 1`` guided DDIM steps on the even grid
            t = 1 → 0, then Tweedie's x̂₀ at t = 0. At least 2.
        scale: ≥ 0, the guidance weight (the official code's ``grad_term_weight``).
        eta: η ≥ 0 of the DDIM step (1 = ancestral, 0 = deterministic).
        clip_denoised: clamp x̂₀ to [−1, 1] for image priors (see
            :func:`~diffvi.inverse.solvers.base.denoise`).
        replace_observed: for inpainting (an operator with an ``observed_mask``), replace the
            observed pixels of x̂₀ by y and guide only the hidden ones (the official code's
            inpainting; default). Other operators are unaffected.

    Shapes: ``y [B, *A.output_shape]``; ``z_t``, ``x̂₀``, ``v``, ``g`` and the result are
    ``[B, C, H, W]``. Keeps the autograd graph of one
    denoiser call per step.
    """

    name = "pigdm"
    requires = LinearOperator

    def __init__(
        self,
        steps: int = 100,
        scale: float = 1.0,
        eta: float = 1.0,
        clip_denoised: bool = True,
        replace_observed: bool = True,
    ) -> None:
        super().__init__(steps, scale, eta, clip_denoised)
        self.replace_observed = bool(replace_observed)

    def observed_mask(self, problem: Problem, like: Tensor) -> Tensor | None:
        """The mask m ``[C, H, W]`` of the pixels to hard-replace (``like``'s dtype and
        device), or ``None``: not inpainting, or ``replace_observed`` off."""
        mask = problem.operator.observed_mask if self.replace_observed else None
        return None if mask is None else mask.to(dtype=like.dtype, device=like.device)

    @staticmethod
    def direction(problem: Problem, residual: Tensor, r2: float) -> Tensor:
        """v = r² Aᵀ(r² AAᵀ + σ_y² I)⁻¹ residual ``[B, C, H, W]`` for ``residual = y − A x̂₀``.

        By the push-through identity this is (AᵀA + (σ_y²/r²) I)⁻¹ Aᵀ residual: the damped
        pseudo-inverse, and A⁺ residual when σ_y = 0 (eq. 8)."""
        operator: LinearOperator = problem.operator  # type: ignore[assignment]
        return operator.pinv(residual, damping=problem.noise_std**2 / r2)

    def guidance(
        self,
        problem: Problem,
        prior: DiffusionModel,
        z_t: Tensor,
        x0: Tensor,
        t: Tensor,
        s: Tensor,
    ) -> Tensor:
        alpha_t, sigma_t = prior.schedule.alpha_sigma(t)
        alpha_s, _ = prior.schedule.alpha_sigma(s)
        with torch.no_grad():
            # r_t² = σ_VE² / (1 + σ_VE²) = σ_t² (Section 3.1, unit data variance).
            r2 = float(sigma_t[0]) ** 2
            v = self.direction(problem, problem.residual(x0), r2)
        # g = (∂x̂₀/∂z_t)ᵀ v: the VJP of ⟨sg(v), x̂₀⟩ (eq. 7).
        (g,) = torch.autograd.grad(x0, z_t, grad_outputs=v)
        # z_s = DDIM + scale · α_s α_t · g (official ΠGDM code, adaptive weight "awd").
        correction = self.scale * per_item(alpha_s * alpha_t, g) * g
        mask = self.observed_mask(problem, g)
        if mask is None:
            return correction
        # Inpainting: g ← (1 − m) g, and x̂₀ ← x̂₀ + m (y − x̂₀) moves DDIM's z_s by α_s m (y − x̂₀).
        replaced = per_item(alpha_s, g) * mask * (problem.y - x0.detach())
        return (1 - mask) * correction + replaced

    def finish(self, problem: Problem, x0: Tensor) -> Tensor:
        """x̂₀ at t = 0, its observed pixels replaced by y for inpainting."""
        mask = self.observed_mask(problem, x0)
        return x0 if mask is None else (1 - mask) * x0 + mask * problem.y


__all__ = ["PiGDM"]
