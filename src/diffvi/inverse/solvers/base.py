"""The contracts of restoration methods: :class:`Reconstructor` for every method, and
:class:`Solver` for the inverse-problem solvers with a diffusion prior.

Every method restores ``x`` from a measurement ``y`` through one call,
``reconstructor(y, operator) -> Reconstruction`` (after deepinv's ``Reconstructor.forward(y,
physics)``): a solver bound to its prior (:meth:`Solver.bind`), the pseudo-inverse
(:class:`PseudoInverse`) and a trained conditional model
(:class:`~diffvi.inverse.solvers.cvdm.CVDMReconstructor`) alike, so that one workflow
(:func:`diffvi.inverse.restore.restore`) runs, times and scores any of them.

A solver restores ``x`` from ``y = A(x) + σ_y·n`` (``n ~ N(0, I)``) with a
:class:`~diffvi.diffusion.DiffusionModel` as the prior: ``solver.solve(y, operator, prior,
noise_std) -> Reconstruction(x, nfe, seconds, peak_memory, trace)``.

Images are in [0, 1] at this API and the prior works in its model space ([−1, 1] for images).
:class:`Problem` moves the measurement there once, so solvers never rescale: a linear ``A`` acts
unchanged on model-space images when ``y`` becomes ``2y − A(𝟙)`` and σ_y becomes ``2σ_y``; a
nonlinear ``A`` is composed with the map back to [0, 1].
"""

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from diffvi.diffusion import DiffusionModel
from diffvi.diffusion.samplers import per_item, standard_normal
from diffvi.inverse.operators import LinearOperator, Operator, measurement_image
from diffvi.utils.memory import PeakMemory


@dataclass
class Reconstruction:
    """What a solver returns.

    Attributes:
        x: restorations ``[B, C, H, W]`` in the public data range ([0, 1] for images).
        nfe: denoiser evaluations per image.
        seconds: wall-clock time of the whole batch.
        peak_memory: bytes allocated at the peak above the level at the start (``None`` where
            it cannot be measured; see :class:`~diffvi.utils.memory.PeakMemory`).
        trace: per-step diagnostics, when the solver was asked to record them.
        samples: for methods that draw several restorations of each item (CVDM), the draws
            ``[S, B, C, H, W]``; ``x`` is their mean and their pixel-wise spread
            (:attr:`std`) the uncertainty map.
        stochastic: ``False`` when ``samples`` are copies of one deterministic estimate (a
            regression model): their spread is then no uncertainty estimate.
    """

    x: Tensor
    nfe: int
    seconds: float
    peak_memory: int | None
    trace: dict[str, list[float]] = field(default_factory=dict)
    samples: Tensor | None = None
    stochastic: bool = True

    @property
    def std(self) -> Tensor | None:
        """Pixel-wise standard deviation of :attr:`samples` ``[B, C, H, W]`` (``None`` without
        samples)."""
        return None if self.samples is None else self.samples.std(0, correction=0)


class Reconstructor(ABC):
    """A restoration method: ``reconstructor(y, operator) -> Reconstruction``.

    ``y [B, *operator.output_shape]`` is a measurement of images ``x [B, C, H, W]`` in [0, 1];
    the reconstruction's ``x`` has that shape and range. A learned method that was trained for
    one forward model (CVDM) may take ``operator=None``.
    """

    @abstractmethod
    def forward(self, y: Tensor, operator: Operator | None) -> Reconstruction:
        """Restore a batch: ``y [B, ...] -> Reconstruction`` with ``x [B, C, H, W]``."""

    def __call__(self, y: Tensor, operator: Operator | None = None) -> Reconstruction:
        return self.forward(y, operator)

    def baseline(self, y: Tensor, operator: Operator | None) -> Tensor | None:
        """A classical estimate without the method's prior, shown and scored beside the
        restoration: here the measurement itself as images
        (:func:`~diffvi.inverse.operators.measurement_image`; ``None`` when it is not
        image-shaped or there is no operator)."""
        return None if operator is None else measurement_image(operator, y)


class PseudoInverse(Reconstructor):
    """``A⁺y``, or ``(AᵀA + δI)⁻¹Aᵀy`` with ``damping`` δ > 0, clamped to [0, 1]: the
    no-prior reference of a linear problem (no denoiser evaluations)."""

    def __init__(self, damping: float = 0.0) -> None:
        if not damping >= 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        self.damping = float(damping)

    def forward(self, y: Tensor, operator: Operator | None) -> Reconstruction:
        if not isinstance(operator, LinearOperator):
            raise ValueError(
                f"the pseudo-inverse needs a LinearOperator, got {type(operator).__name__}"
            )
        start = time.perf_counter()
        x = operator.pinv(y, damping=self.damping).clamp(0, 1)
        return Reconstruction(x, 0, time.perf_counter() - start, None)


class Problem:
    """A measurement ``y [B, *A.output_shape]`` seen from the prior's model space.

    Attributes:
        operator: the forward model A (in public space).
        y: the measurement in model space.
        noise_std: σ_y in model space.
        given_noise_std: σ_y as given, in the units of the measurement ([0, 1] for images).
        linear: whether A is linear (then ``forward`` is A itself and ``pinv`` exists).
    """

    def __init__(
        self, prior: DiffusionModel, operator: Operator, y: Tensor, noise_std: float
    ) -> None:
        self.operator = operator
        self.given_noise_std = float(noise_std)
        self.linear = isinstance(operator, LinearOperator)
        self._image = prior.image
        if prior.image and self.linear:
            ones = torch.ones((1, *operator.input_shape), dtype=y.dtype, device=y.device)
            y, noise_std = 2 * y - operator(ones), 2 * noise_std
        self.y = y
        self.noise_std = float(noise_std)

    def forward(self, x: Tensor) -> Tensor:
        """A in model space: ``x [B, C, H, W] -> [B, *output_shape]``."""
        if self._image and not self.linear:
            return self.operator((x + 1) / 2)
        return self.operator(x)

    def residual(self, x: Tensor) -> Tensor:
        """``y − A(x)`` in model space ``[B, *output_shape]``."""
        return self.y - self.forward(x)

    def pinv(self, damping: float = 0.0) -> Tensor:
        """A⁺y in model space ``[B, C, H, W]`` (linear operators only); ``damping`` δ gives
        (AᵀA + δI)⁻¹Aᵀy instead (see :meth:`~diffvi.inverse.operators.LinearOperator.pinv`)."""
        if not self.linear:
            raise ValueError(f"{type(self.operator).__name__} is nonlinear: it has no pinv")
        return self.operator.pinv(self.y, damping)


class Solver(ABC):
    """Base class: subclasses set ``name`` and implement :meth:`_run` in model space.

    ``requires`` is the operator class a solver needs (``SVDOperator`` for DDRM).
    """

    name: ClassVar[str]
    requires: ClassVar[type[Operator]] = Operator

    def bind(
        self,
        prior: DiffusionModel,
        noise_std: float = 0.0,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> "PriorReconstructor":
        """This solver with its prior and measurement noise as a :class:`Reconstructor`
        (arguments as :meth:`solve`; ``generator`` is drawn from across calls)."""
        return PriorReconstructor(self, prior, noise_std, generator, progress)

    def solve(
        self,
        y: Tensor,
        operator: Operator,
        prior: DiffusionModel,
        noise_std: float = 0.0,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> Reconstruction:
        """Restore ``x [B, C, H, W]`` from ``y [B, *operator.output_shape]``.

        Args:
            y: the measurement ``A(x) + noise_std · n`` (images: ``x`` in [0, 1]).
            operator: the forward model A.
            prior: a trained diffusion model over images of shape ``operator.input_shape``.
            noise_std: σ_y of the measurement, in the units of ``y``.
            generator: random numbers (on ``y``'s device) for reproducible runs.
            progress: show a progress bar over the solver's steps.
        """
        if not isinstance(prior, DiffusionModel):
            raise ValueError(f"prior must be a DiffusionModel, got {type(prior).__name__}")
        if not isinstance(operator, self.requires):
            raise ValueError(
                f"{self.name} needs a {self.requires.__name__}; "
                f"{type(operator).__name__} is not one"
            )
        if y.dim() < 1 or tuple(y.shape[1:]) != operator.output_shape:
            raise ValueError(
                f"y must have shape [B, {', '.join(map(str, operator.output_shape))}] for "
                f"{type(operator).__name__}, got {list(y.shape)}"
            )
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("y contains NaN or Inf")
        problem = Problem(prior, operator, y, noise_std)
        with PeakMemory(y.device) as peak:
            start = time.perf_counter()
            x, nfe, trace = self._run(problem, prior, generator, progress)
            if y.device.type == "cuda":
                torch.cuda.synchronize(y.device)
            seconds = time.perf_counter() - start
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError(
                f"{self.name} diverged: the restoration contains NaN or Inf (try a smaller step "
                "size: lr for red-diff, scale for dps/pigdm)"
            )
        return Reconstruction(prior.from_model_space(x.detach()), nfe, seconds, peak.bytes, trace)

    @abstractmethod
    def _run(
        self,
        problem: Problem,
        prior: DiffusionModel,
        generator: torch.Generator | None,
        progress: bool,
    ) -> tuple[Tensor, int, dict[str, list[float]]]:
        """Return model-space ``x [B, C, H, W]``, NFE per image and a (possibly empty) trace."""


class PriorReconstructor(Reconstructor):
    """A :class:`Solver` bound to a diffusion prior, σ_y and a generator (see
    :meth:`Solver.bind`): ``forward(y, operator)`` is ``solver.solve(y, operator, prior,
    noise_std, generator, progress)``."""

    def __init__(
        self,
        solver: Solver,
        prior: DiffusionModel,
        noise_std: float = 0.0,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> None:
        self.solver, self.prior = solver, prior
        self.noise_std, self.generator, self.progress = noise_std, generator, progress

    def forward(self, y: Tensor, operator: Operator | None) -> Reconstruction:
        if operator is None:
            raise ValueError(f"{self.solver.name} needs the forward operator of the measurement")
        return self.solver.solve(
            y, operator, self.prior, self.noise_std, self.generator, self.progress
        )


def time_grid(steps: int, like: Tensor) -> Tensor:
    """``steps`` times evenly from 1 down to 0 ``[steps]``, on ``like``'s device and dtype."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    return torch.linspace(1, 0, steps, device=like.device, dtype=like.dtype)


def denoise(prior: DiffusionModel, z: Tensor, t: Tensor, clip: bool) -> tuple[Tensor, Tensor]:
    """Tweedie's x̂₀ and the noise prediction ε̂ at ``z [B, ...]``, ``t [B]`` (model space).

    ``clip`` (image priors) clamps x̂₀ to [−1, 1] and makes ε̂ = (z − α x̂₀)/σ agree with it, as
    guided-diffusion's ``clip_denoised``: near t = 1 the division by α_t multiplies the
    network's error by σ_t/α_t (≈ 2·10⁴ for the cosine schedule), and an unclipped x̂₀ of
    ±2000 derails every sampler that builds on it. Gradients flow through the clamp (zero where
    it bites)."""
    eps = prior.predict_noise(z, t)
    x0 = prior.predict_x0(z, t, noise=eps)
    if clip and prior.image:
        alpha, sigma = (per_item(v, z) for v in prior.schedule.alpha_sigma(t))
        x0 = x0.clamp(-1, 1)
        eps = (z - alpha * x0) / sigma
    return x0, eps


__all__ = [
    "PriorReconstructor",
    "Problem",
    "PseudoInverse",
    "Reconstruction",
    "Reconstructor",
    "Solver",
    "denoise",
    "standard_normal",
    "time_grid",
]
