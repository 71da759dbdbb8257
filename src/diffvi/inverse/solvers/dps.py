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
from diffvi.diffusion.samplers import ddim_step
from diffvi.inverse.solvers.base import Problem, Solver, denoise, standard_normal, time_grid
from diffvi.utils.progress import progress as progress_bar


class DPS(Solver):
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
        if steps < 2:
            raise ValueError(f"steps must be >= 2 (the last one predicts x0), got {steps}")
        if not scale >= 0:
            raise ValueError(f"scale must be >= 0, got {scale}")
        if not eta >= 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.steps, self.scale, self.eta = int(steps), float(scale), float(eta)
        self.clip_denoised = clip_denoised

    def _run(
        self,
        problem: Problem,
        prior: DiffusionModel,
        generator: torch.Generator | None,
        progress: bool,
    ) -> tuple[Tensor, int, dict[str, list[float]]]:
        y = problem.y
        shape = (y.shape[0], *problem.operator.input_shape)
        z = standard_normal(y.new_empty(shape), generator)
        grid = time_grid(self.steps, z)
        batch = z.shape[0]
        for k in progress_bar(range(self.steps - 1), desc="dps", enable=progress):
            t, s = grid[k].expand(batch), grid[k + 1].expand(batch)
            with torch.enable_grad():
                z_t = z.detach().requires_grad_(True)
                x0, eps = denoise(prior, z_t, t, self.clip_denoised)
                sq = problem.residual(x0).flatten(1).pow(2).sum(1)  # ‖y − A(x̂₀)‖² [B]
                # ζ_t = ζ / ‖y − A(x̂₀)‖ (detached), per image: Σ_b ζ_t,b ‖r_b‖².
                weight = self.scale / sq.detach().sqrt().clamp_min(torch.finfo(sq.dtype).tiny)
                (grad,) = torch.autograd.grad((weight * sq).sum(), z_t)
            z = ddim_step(prior.schedule, z_t.detach(), eps.detach(), t, s, self.eta, generator)
            z = z - grad
        t = grid[-1].expand(batch)
        with torch.no_grad():
            x0, _ = denoise(prior, z, t, self.clip_denoised)
        return x0, self.steps, {}


__all__ = ["DPS"]
