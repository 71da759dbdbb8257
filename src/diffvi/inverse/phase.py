"""Quantitative phase imaging (QPI) as an inverse problem: the defocus forward operator and
the TIE baseline.

:class:`DefocusIntensity` wraps the optics of :mod:`diffvi.data.optics` (free-space propagation,
defocused intensities, the transport-of-intensity equation; physics conventions and units are
documented there) as a differentiable :class:`~diffvi.inverse.operators.Operator`;
:func:`tie_reconstruct` is the classical TIE estimate for its measurements. The pure functions
:func:`fresnel_propagate`, :func:`tie_phase` and :func:`transfer_function` are re-exported here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffvi.data.optics import (
    DEFOCUS,
    METHODS,
    PAD_MODES,
    PIXEL_SIZE,
    WAVELENGTH,
    check_positive,
    defocus_intensities,
    fresnel_propagate,
    tie_phase,
    tie_phase_image,
    transfer_function,
)
from diffvi.inverse.operators import Operator

__all__ = [
    "DefocusIntensity",
    "fresnel_propagate",
    "tie_phase",
    "tie_reconstruct",
    "transfer_function",
]


class DefocusIntensity(Operator):
    """Pure phase object imaged at ``−dz`` and ``+dz`` (nonlinear, differentiable).

    ``x [B, 1, H, W]`` in ``[0, 1]`` → phase ``φ = phase_max · x`` (radians) → field
    ``exp(iφ)`` (unit amplitude) → intensities ``|P_{±dz} exp(iφ)|²`` stacked as
    ``y [B, 2, H, W]`` in the order ``(−dz, +dz)``; with ``include_focus=True`` the order is
    ``(−dz, 0, +dz)`` and ``y [B, 3, H, W]`` (the in-focus intensity is identically 1).

    Lengths in metres: defaults λ = 521 nm, pixel 0.21 µm, dz = 1 µm (the CVDM QPI setting,
    grey images mapped to 0–3.5 rad). ``pad``/``pad_mode``/``method`` go to
    :func:`fresnel_propagate`; the default ``pad = 0`` is circular propagation, consistent with
    the FFT-based TIE solver. ``check_range=True`` raises on inputs outside ``[0, 1]`` (off by
    default so that solvers may evaluate the operator on out-of-range estimates). The
    computation is :func:`~diffvi.data.optics.defocus_intensities`.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        phase_max: float = 3.5,
        wavelength: float = WAVELENGTH,
        pixel_size: float = PIXEL_SIZE,
        dz: float = DEFOCUS,
        include_focus: bool = False,
        pad: int = 0,
        pad_mode: str = "constant",
        method: str = "angular_spectrum",
        check_range: bool = False,
    ) -> None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"expected input_shape (1, H, W), got {tuple(input_shape)}")
        check_positive(phase_max=phase_max, wavelength=wavelength, pixel_size=pixel_size, dz=dz)
        if method not in METHODS:
            raise ValueError(f"expected method in {list(METHODS)}, got {method!r}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"expected pad_mode in {list(PAD_MODES)}, got {pad_mode!r}")
        if not (isinstance(pad, int) and pad >= 0):
            raise ValueError(f"expected an integer pad >= 0, got {pad!r}")
        n_out = 3 if include_focus else 2
        super().__init__(shape, (n_out, shape[1], shape[2]))
        self.phase_max = float(phase_max)
        self.wavelength = float(wavelength)
        self.pixel_size = float(pixel_size)
        self.dz = float(dz)
        self.include_focus = bool(include_focus)
        self.pad = pad
        self.pad_mode = pad_mode
        self.method = method
        self.check_range = bool(check_range)

    def phase(self, x: Tensor) -> Tensor:
        """``x [B, 1, H, W]`` in [0, 1] → ``φ [B, 1, H, W]`` in radians."""
        return self.phase_max * x

    def field(self, x: Tensor) -> Tensor:
        """In-focus complex field ``exp(iφ) [B, 1, H, W]``."""
        phi = self.phase(x)
        return torch.polar(torch.ones_like(phi), phi)

    def _forward(self, x: Tensor) -> Tensor:
        if x.is_complex():
            raise ValueError("expected a real phase image x, got a complex tensor")
        if self.check_range and bool(((x < 0) | (x > 1)).any()):
            raise ValueError("expected x in [0, 1] (check_range=True)")
        return defocus_intensities(
            self.phase(x),
            self.dz,
            self.wavelength,
            self.pixel_size,
            self.include_focus,
            self.pad,
            self.pad_mode,
            self.method,
        )


def tie_reconstruct(
    operator: DefocusIntensity, y: Tensor, regularisation: float = 0.0, clamp: bool = True
) -> Tensor:
    """TIE baseline for :class:`DefocusIntensity`: ``y [B, 2|3, H, W] -> x [B, 1, H, W]``.

    :func:`~diffvi.data.optics.tie_phase_image` with the operator's optics: recovers ``φ`` with
    :func:`tie_phase` (using the in-focus channel as ``I0`` when the operator has
    ``include_focus=True``, else ``I0 = 1``), fixes the unknown additive constant by shifting
    the minimum of each image to 0 (right for objects whose background is the lowest phase,
    e.g. MNIST-like digits on a 0 background), and maps back by ``φ/phase_max``;
    ``clamp=True`` clips to ``[0, 1]``.
    """
    if not isinstance(operator, DefocusIntensity):
        raise ValueError(f"expected a DefocusIntensity operator, got {type(operator).__name__}")
    if y.dim() != 4 or tuple(y.shape[1:]) != operator.output_shape:
        want = ", ".join(str(s) for s in ("B", *operator.output_shape))
        raise ValueError(f"expected y of shape [{want}], got {list(y.shape)}")
    return tie_phase_image(
        y,
        operator.phase_max,
        operator.dz,
        operator.wavelength,
        operator.pixel_size,
        regularisation,
        clamp,
    )
