"""RED-diff: variational sampling as stochastic optimisation (Mardani, Song, Kautz, Vahdat 2023).

The posterior is approximated by q(x₀ | y) = N(μ, σ²I) with σ → 0, and μ minimises (paper eq. 9)

    ½‖y − A(μ)‖² / v  +  λ E_t [ w(t) ⟨sg(ε̂(x_t, t) − ε), μ⟩ ],    x_t = α_t μ + σ_t ε,

by Adam over a sequence of times t — the denoisers of all noise levels act as a regulariser
("regularisation by denoising"). With w(t) = σ_t/α_t (= 1/√SNR, the paper's SNR weighting) the
gradient of the regulariser is λ (μ − x̂₀(x_t)), Tweedie's denoising of the noisy μ. The
denoiser runs under ``no_grad``: its gradient is never back-propagated (the official code builds
that graph and pays its memory for nothing).

Both terms are averaged over the dimensions of each image, as in the reference implementation
(``v`` = number of measurements per image, times ``1 / obs_weight``), so λ keeps its meaning
across operators.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from diffvi.diffusion import DiffusionModel
from diffvi.diffusion.samplers import per_item
from diffvi.inverse.solvers.base import Problem, Solver, denoise, standard_normal, time_grid
from diffvi.utils.progress import progress as progress_bar

# w(t) as a function of 1/√SNR = σ_t/α_t (the weightings of the paper's ablation, Fig. 6).
WEIGHTINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "snr": lambda r: r,
    "sqrt-snr": torch.sqrt,
    "square-snr": torch.square,
    "log-snr": torch.log1p,
    "truncated-snr": lambda r: r.clamp(max=1.0),
    "constant": torch.ones_like,
}
TIME_ORDERS = ("descending", "random")


class REDDiff(Solver):
    """RED-diff (Algorithm 1 of the paper).

    Args:
        steps: optimisation steps = denoiser evaluations per image.
        lr: Adam's learning rate on μ (model space, [−1, 1] for images).
        reg_weight: λ, the weight of the denoising regulariser.
        obs_weight: weight of the data term (the reference uses 1).
        weighting: w(t), one of :data:`WEIGHTINGS` (``"snr"``: σ_t/α_t).
        time_order: ``"descending"`` (t from 1 to 0, the paper's choice) or ``"random"``
            (t ~ U(0, 1) at every step).
        betas: Adam's betas (the reference: 0.9, 0.99).
        clip_denoised: clamp x̂₀ to [−1, 1] for image priors (see
            :func:`~diffvi.inverse.solvers.base.denoise`).
        trace: record the mean data misfit ‖y − A(μ)‖²/M at every step (``trace["misfit"]``).
    """

    name = "red-diff"

    def __init__(
        self,
        steps: int = 100,
        lr: float = 0.25,
        reg_weight: float = 0.25,
        obs_weight: float = 1.0,
        weighting: str = "snr",
        time_order: str = "descending",
        betas: tuple[float, float] = (0.9, 0.99),
        clip_denoised: bool = True,
        trace: bool = False,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if reg_weight < 0 or obs_weight < 0:
            raise ValueError(
                f"reg_weight and obs_weight must be >= 0, got {reg_weight}, {obs_weight}"
            )
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {weighting!r}")
        if time_order not in TIME_ORDERS:
            raise ValueError(f"time_order must be one of {TIME_ORDERS}, got {time_order!r}")
        self.steps = steps
        self.lr = lr
        self.reg_weight = reg_weight
        self.obs_weight = obs_weight
        self.weighting = weighting
        self.time_order = time_order
        self.betas = betas
        self.clip_denoised = clip_denoised
        self.trace = trace

    def _times(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.time_order == "random":
            return torch.rand(self.steps, generator=generator, device=like.device, dtype=like.dtype)
        if self.steps == 1:
            return torch.ones(1, device=like.device, dtype=like.dtype)
        return time_grid(self.steps, like)

    def regulariser_gradient(
        self, prior: DiffusionModel, mu: Tensor, t: Tensor, noise: Tensor
    ) -> Tensor:
        """w(t) (ε̂(x_t, t) − ε) with x_t = α_t μ + σ_t ε: ``μ, noise [B, ...]``, ``t [B]``.

        Written as w(t) (α_t/σ_t) (μ − x̂₀(x_t)), which equals it exactly and is λ-free."""
        alpha, sigma = (per_item(v, mu) for v in prior.schedule.alpha_sigma(t))
        with torch.no_grad():
            x0, _ = denoise(prior, alpha * mu + sigma * noise, t, self.clip_denoised)
            weight = WEIGHTINGS[self.weighting](sigma / alpha)
            return weight * (alpha / sigma) * (mu - x0)

    def _run(
        self,
        problem: Problem,
        prior: DiffusionModel,
        generator: torch.Generator | None,
        progress: bool,
    ) -> tuple[Tensor, int, dict[str, list[float]]]:
        y = problem.y
        batch = y.shape[0]
        if problem.linear:  # μ starts at A⁺y (Algorithm 1), damped by σ_y² when y is noisy
            start = problem.pinv(problem.noise_std**2)
        else:
            shape = (batch, *problem.operator.input_shape)
            start = torch.zeros(shape, device=y.device, dtype=y.dtype)
        mu = start.detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([mu], lr=self.lr, betas=self.betas)
        per_measurement = self.obs_weight / y[0].numel()
        per_pixel = self.reg_weight / mu[0].numel()
        misfits: list[float] = []
        times = self._times(mu, generator)
        for k in progress_bar(range(self.steps), desc="red-diff", enable=progress):
            t = times[k].expand(batch)
            reg = self.regulariser_gradient(prior, mu.detach(), t, standard_normal(mu, generator))
            misfit = problem.residual(mu).pow(2).flatten(1).sum(1)
            # ½‖y − A(μ)‖²/v + λ⟨sg(w(t)(ε̂ − ε)), μ⟩ (eq. 9): gradient λ·reg + data term's.
            loss = 0.5 * per_measurement * misfit.sum() + per_pixel * (reg * mu).sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if self.trace:
                misfits.append(misfit.mean().item() / y[0].numel())
        trace = {"misfit": misfits} if self.trace else {}
        return mu.detach(), self.steps, trace
