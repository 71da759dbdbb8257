"""Diffusion Posterior Sampling (DPS; Chung, Kim, Mccann, Klasky & Ye, ICLR 2023).

Each reverse step runs the unconditional DDIM(η) step and then moves the result down the gradient
of the measurement error of Tweedie's estimate, taken through the denoiser (Algorithm 1):

    x̂₀ = (z_t − σ_t ε̂(z_t)) / α_t,    z_s = DDIM_η(z_t, ε̂) − ζ_t ∇_{z_t} ‖y − A(x̂₀)‖²,

with the paper's step size ζ_t = ζ / ‖y − A(x̂₀)‖ per image (Section 4 / App. C), so the update is
2ζ ∇_{z_t} ‖y − A(x̂₀)‖ (the gradient of the un-squared norm). Only ``A``'s forward pass is used,
so nonlinear operators work too.
"""

import torch
from torch import Tensor

from diffvi.diffusion import DiffusionModel
from diffvi.inverse.solvers.base import Problem
from diffvi.inverse.solvers.guided import GuidedSampler


class DPS(GuidedSampler):
    """DPS with an ancestral (η = 1) or DDIM (η < 1) unconditional step.

    Args:
        steps: denoiser evaluations (= NFE): ``steps − 1`` guided steps on the even grid
            t = 1 → 0, then Tweedie's x̂₀ at t = 0. At least 2.
        scale: ζ ≥ 0, the step size of the measurement-gradient term (ζ_t = ζ / ‖y − A(x̂₀)‖).
            The DPS repository's code applies ``scale · ∇‖y − A(x̂₀)‖`` instead, so its
            ``scale`` is 2ζ here.
        eta: η ≥ 0 of the unconditional DDIM step (1 = DDPM's ancestral step).
        clip_denoised: clamp x̂₀ to [−1, 1] for image priors (see
            :func:`~diffvi.inverse.solvers.base.denoise`).

    Shapes: ``y [B, *A.output_shape]``; the chain ``z_t`` and the result are ``[B, C, H, W]``.
    The step keeps the autograd graph of one denoiser call (memory ~ a backward pass).
    """

    name = "dps"

    def __init__(
        self, steps: int = 1000, scale: float = 1.0, eta: float = 1.0, clip_denoised: bool = True
    ) -> None:
        super().__init__(steps, scale, eta, clip_denoised)

    def guidance(
        self,
        problem: Problem,
        prior: DiffusionModel,
        z_t: Tensor,
        x0: Tensor,
        t: Tensor,
        s: Tensor,
    ) -> Tensor:
        sq = problem.residual(x0).flatten(1).pow(2).sum(1)  # ‖y − A(x̂₀)‖² [B]
        # ζ_t = ζ / ‖y − A(x̂₀)‖ (detached), per image: −∇ Σ_b ζ_t,b ‖r_b‖².
        weight = self.scale / sq.detach().sqrt().clamp_min(torch.finfo(sq.dtype).tiny)
        (grad,) = torch.autograd.grad((weight * sq).sum(), z_t)
        return -grad


__all__ = ["DPS"]
