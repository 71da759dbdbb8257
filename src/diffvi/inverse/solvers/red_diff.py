"""RED-diff: variational sampling as stochastic optimisation (Mardani, Song, Kautz, Vahdat 2023).

The posterior is approximated by q(x₀ | y) = N(μ, σ²I) with σ → 0, and μ minimises (paper eq. 9)

    ½‖y − A(μ)‖² / v  +  λ E_t [ w(t) ⟨sg(ε̂(x_t, t) − ε), μ⟩ ],    x_t = α_t μ + σ_t ε,

by Adam over a sequence of times t — the denoisers of all noise levels act as a regulariser
("regularisation by denoising"). With w(t) = σ_t/α_t (= 1/√SNR, the paper's SNR weighting) the
gradient of the regulariser is λ (μ − x̂₀(x_t)), Tweedie's denoising of the noisy μ. The
denoiser runs under ``no_grad``: its gradient is never back-propagated (the official code builds
that graph and pays its memory for nothing).

Both terms are averaged, as in the reference implementation (its ``loss_obs`` and
``loss_noise`` are means over the entries of y and x): the data term over the M entries of y
that carry a measurement (:attr:`~diffvi.inverse.operators.Operator.observed_count`: the kept
pixels of an inpainting mask, as the official ``inp`` inpainting's H returns only those; every
entry of y otherwise), the regulariser over the D pixels, so λ keeps its meaning across
operators; v = M / ``obs_weight``. ``misfit_mean="all"`` averages over every entry of y,
hidden zeros included, as the official code does with its full-size ``in2`` inpainting (the
masks its scripts run): the same restoration then takes λ·M/D there for λ here.

Options of the official code: ``sigma_x0`` > 0 evaluates both terms at a draw
x₀ = μ + σ_x0 n of q(x₀ | y) instead of at μ (``x0_pred``), and the weightings of
:data:`WEIGHTINGS` (``denoise_term_weight``, with its ``power2over3``). The clamp of x̂₀ to
[−1, 1] (``clip_denoised``, on by default) is ours: the official code does not clamp.

Defaults by noise level. The paper weighs the data term by 1/σ_v²; the official code leaves that
factor out (``loss = grad_term_weight · w(t) · loss_noise + obs_weight · loss_obs``, its
``sigma_y`` unused in the loss), so its λ is the paper's times σ_v²:
λ_code = λ_paper · σ_v² (M/D of the two means aside). A λ tuned at one σ_y is therefore wrong at
another; left at a noiseless value, the data term wins and the restoration keeps the noise.
``lr`` and ``reg_weight`` left at ``None`` are chosen at solve time from σ_y and the operator
by :func:`~diffvi.inverse.solvers.red_diff_defaults.red_diff_defaults` (λ = λ₀ + κσ_y^p per
operator class, fitted by ``benchmarks/red_diff_defaults.py``); given values override it.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from diffvi.diffusion import DiffusionModel
from diffvi.diffusion.samplers import per_item
from diffvi.inverse.operators import Operator
from diffvi.inverse.solvers.base import Problem, Solver, denoise, standard_normal, time_grid
from diffvi.inverse.solvers.red_diff_defaults import red_diff_defaults
from diffvi.utils.progress import progress as progress_bar

# w(t) as a function of 1/√SNR = σ_t/α_t (the weightings of the paper's ablation, Fig. 6).
WEIGHTINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "snr": lambda r: r,
    "sqrt-snr": torch.sqrt,
    "square-snr": torch.square,
    "log-snr": torch.log1p,
    "truncated-snr": lambda r: r.clamp(max=1.0),
    "constant": torch.ones_like,
    # (σ_t/α_t)^(2/3): the official code's "power2over3" (not in the paper's ablation).
    "power2over3": lambda r: r.pow(2 / 3),
}
TIME_ORDERS = ("descending", "random")
# What the data misfit is averaged over: the measured entries of y, or all of them.
MISFIT_MEANS = ("observed", "all")


class REDDiff(Solver):
    """RED-diff (Algorithm 1 of the paper).

    Args:
        steps: optimisation steps = denoiser evaluations per image.
        lr: Adam's learning rate on μ (model space, [−1, 1] for images); ``None`` (default):
            by σ_y and the operator (:func:`red_diff_defaults`), resolved at solve time.
        reg_weight: λ, the weight of the denoising regulariser; ``None`` (default): by σ_y
            and the operator, as ``lr``.
        obs_weight: weight of the data term (the reference uses 1).
        weighting: w(t), one of :data:`WEIGHTINGS` (``"snr"``: σ_t/α_t).
        time_order: ``"descending"`` (t from 1 to 0, the paper's choice) or ``"random"``
            (t ~ U(0, 1) at every step).
        betas: Adam's betas (the reference: 0.9, 0.99).
        clip_denoised: clamp x̂₀ to [−1, 1] for image priors (see
            :func:`~diffvi.inverse.solvers.base.denoise`). Ours, on by default; the official
            code does not clamp (``False``).
        sigma_x0: σ_x0 ≥ 0, the standard deviation of q(x₀ | y) = N(μ, σ_x0² I) at which each
            step evaluates the loss: x₀ = μ + σ_x0 n with fresh n ~ N(0, I) (the official
            ``sigma_x0``, default 0: at μ). The result is μ.
        misfit_mean: ``"observed"`` (default) averages ‖y − A(x₀)‖² over the M entries of y
            that carry a measurement (``operator.observed_count``: the kept pixels of an
            inpainting mask), so λ means the same for every operator; ``"all"`` over every
            entry of y (for inpainting: hidden zeros included, which scales the data term by
            M/D — the official code with its full-size ``in2`` masks, and ours before issue 18).
        trace: record the misfit ‖y − A(x₀)‖²/M (mean over the batch) at every step
            (``trace["misfit"]``).

    Shapes: ``y [B, *A.output_shape]``; μ, x₀ and the result ``[B, C, H, W]``.
    """

    name = "red-diff"

    def __init__(
        self,
        steps: int = 100,
        lr: float | None = None,
        reg_weight: float | None = None,
        obs_weight: float = 1.0,
        weighting: str = "snr",
        time_order: str = "descending",
        betas: tuple[float, float] = (0.9, 0.99),
        clip_denoised: bool = True,
        sigma_x0: float = 0.0,
        misfit_mean: str = "observed",
        trace: bool = False,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if lr is not None and not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if (reg_weight is not None and not reg_weight >= 0) or not obs_weight >= 0:
            raise ValueError(
                f"reg_weight and obs_weight must be >= 0, got {reg_weight}, {obs_weight}"
            )
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {weighting!r}")
        if time_order not in TIME_ORDERS:
            raise ValueError(f"time_order must be one of {TIME_ORDERS}, got {time_order!r}")
        if not sigma_x0 >= 0:
            raise ValueError(f"sigma_x0 must be >= 0, got {sigma_x0}")
        if misfit_mean not in MISFIT_MEANS:
            raise ValueError(f"misfit_mean must be one of {MISFIT_MEANS}, got {misfit_mean!r}")
        self.steps = steps
        self.lr = lr
        self.reg_weight = reg_weight
        self.obs_weight = obs_weight
        self.weighting = weighting
        self.time_order = time_order
        self.betas = betas
        self.clip_denoised = clip_denoised
        self.sigma_x0 = float(sigma_x0)
        self.misfit_mean = misfit_mean
        self.trace = trace

    def settings(self, operator: Operator, noise_std: float) -> dict[str, float]:
        """``{"lr": ..., "reg_weight": ...}`` for a measurement by ``operator`` with σ_y =
        ``noise_std`` (units of y): the given values, else :func:`red_diff_defaults`'."""
        chosen = {"lr": self.lr, "reg_weight": self.reg_weight}
        if None in chosen.values():
            rule = red_diff_defaults(operator, noise_std)
            chosen = {k: rule[k] if v is None else v for k, v in chosen.items()}
        return chosen

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

    def measurement_count(self, problem: Problem) -> int:
        """M, what the data misfit of one item is averaged over (see ``misfit_mean``)."""
        if self.misfit_mean == "all":
            return problem.y[0].numel()
        return problem.operator.observed_count

    def data_term(self, problem: Problem, x: Tensor) -> Tensor:
        """``obs_weight`` · ½‖y − A(x)‖²/M per item ``[B]`` for ``x [B, C, H, W]``: eq. 9's
        ½‖y − A(x)‖²/v with v = M / ``obs_weight``, M from :meth:`measurement_count`."""
        per_measurement = self.obs_weight / self.measurement_count(problem)
        return 0.5 * per_measurement * problem.residual(x).pow(2).flatten(1).sum(1)

    def loss(
        self,
        problem: Problem,
        prior: DiffusionModel,
        mu: Tensor,
        t: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One step's surrogate loss (a scalar: its gradient in ``mu [B, C, H, W]`` is eq. 9's
        stochastic gradient at times ``t [B]``) and the point x₀ ``[B, C, H, W]`` it was taken
        at: x₀ = μ + σ_x0 n, then x_t = α_t x₀ + σ_t ε (n drawn first, only when σ_x0 > 0)."""
        x0 = mu
        if self.sigma_x0 > 0:  # the official x0_pred = μ + σ_x0 n: a draw of q(x₀ | y)
            x0 = mu + self.sigma_x0 * standard_normal(mu, generator)
        reg = self.regulariser_gradient(prior, x0.detach(), t, standard_normal(mu, generator))
        reg_weight = self.settings(problem.operator, problem.given_noise_std)["reg_weight"]
        per_pixel = reg_weight / mu[0].numel()
        # ½‖y − A(x₀)‖²/v + λ⟨sg(w(t)(ε̂ − ε)), x₀⟩ (eq. 9), both terms averaged (M and D).
        return self.data_term(problem, x0).sum() + per_pixel * (reg * x0).sum(), x0

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
        lr = self.settings(problem.operator, problem.given_noise_std)["lr"]
        optimiser = torch.optim.Adam([mu], lr=lr, betas=self.betas)
        misfits: list[float] = []
        times = self._times(mu, generator)
        for k in progress_bar(range(self.steps), desc="red-diff", enable=progress):
            loss, x0 = self.loss(problem, prior, mu, times[k].expand(batch), generator)
            if self.trace:  # at x₀ before the step (x₀ is μ itself when σ_x0 = 0)
                with torch.no_grad():
                    misfit = problem.residual(x0).pow(2).flatten(1).sum(1).mean()
                    misfits.append(misfit.item() / self.measurement_count(problem))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        trace = {"misfit": misfits} if self.trace else {}
        return mu.detach(), self.steps, trace
