"""The loop shared by guided samplers (DPS, ΠGDM): the unconditional DDIM(η) chain from
z_1 ~ N(0, I), plus a measurement-guidance correction at every step that needs the autograd
graph of that step's denoiser call."""

import torch
from torch import Tensor

from diffvi.diffusion import DiffusionModel
from diffvi.diffusion.samplers import ddim_step
from diffvi.inverse.solvers.base import Problem, Solver, denoise, standard_normal, time_grid
from diffvi.utils.progress import progress as progress_bar


class GuidedSampler(Solver):
    """Base of DPS and ΠGDM: ``steps − 1`` guided DDIM(η) steps on the even grid t = 1 → 0,
    then Tweedie's x̂₀ at t = 0 (NFE = ``steps``). Subclasses define :meth:`guidance`."""

    def __init__(self, steps: int, scale: float, eta: float, clip_denoised: bool) -> None:
        if steps < 2:
            raise ValueError(f"steps must be >= 2 (the last one predicts x0), got {steps}")
        if not scale >= 0:
            raise ValueError(f"scale must be >= 0, got {scale}")
        if not eta >= 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.steps, self.scale, self.eta = int(steps), float(scale), float(eta)
        self.clip_denoised = clip_denoised

    def guidance(
        self,
        problem: Problem,
        prior: DiffusionModel,
        z_t: Tensor,
        x0: Tensor,
        t: Tensor,
        s: Tensor,
    ) -> Tensor:
        """The correction ``[B, C, H, W]`` added to the DDIM step from t to s; ``x0`` is
        Tweedie's x̂₀(z_t) with its graph to ``z_t`` (``[B]`` times)."""
        raise NotImplementedError

    def finish(self, problem: Problem, x0: Tensor) -> Tensor:
        """The result from Tweedie's x̂₀ ``[B, C, H, W]`` at t = 0: x̂₀ itself here."""
        return x0

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
        for k in progress_bar(range(self.steps - 1), desc=self.name, enable=progress):
            t, s = grid[k].expand(batch), grid[k + 1].expand(batch)
            with torch.enable_grad():
                z_t = z.detach().requires_grad_(True)
                x0, eps = denoise(prior, z_t, t, self.clip_denoised)
                correction = self.guidance(problem, prior, z_t, x0, t, s)
            z = ddim_step(prior.schedule, z_t.detach(), eps.detach(), t, s, self.eta, generator)
            z = z + correction
        with torch.no_grad():
            x0, _ = denoise(prior, z, grid[-1].expand(batch), self.clip_denoised)
        return self.finish(problem, x0), self.steps, {}
