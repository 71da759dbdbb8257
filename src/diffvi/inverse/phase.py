"""Quantitative phase imaging (QPI): defocus forward model and the TIE baseline.

Physics conventions (all lengths in SI metres, phases in radians):

- Monochromatic scalar field ``u(x, y, z)`` with time dependence ``exp(-iωt)``, so a wave
  travelling towards ``+z`` is ``exp(+ikz)`` with ``k = 2π/λ``.
- Propagation by ``dz`` (:func:`fresnel_propagate`) multiplies the 2-D spectrum of the field
  (``torch.fft.fft2`` convention, spatial frequencies ``fx, fy`` in cycles/metre) by

  * ``"angular_spectrum"`` (default, exact for the scalar wave equation):
    ``H = exp(i·2π·dz·sqrt(1/λ² − fx² − fy²))`` where ``fx² + fy² < 1/λ²`` and ``H = 0`` on the
    evanescent components (they are dropped, not damped);
  * ``"fresnel"`` (paraxial): ``H = exp(i·k·dz) · exp(−iπ·λ·dz·(fx² + fy²))``, unitary on all
    frequencies.

  Without padding the propagation is *circular* (the field is periodic over the image). With
  ``pad > 0`` the field is zero-padded by ``pad`` pixels on every side, propagated and cropped
  back, which removes wrap-around for fields that are compact (≈ 0 near the border).
- Transport-of-intensity equation (Teague 1983; Paganin & Nugent 1998), which follows from the
  paraxial equation ``∂u/∂z = (i/2k)∇²u`` of the propagator above (time-dependence
  ``exp(-iωt)``):

      k ∂I/∂z = −∇·(I ∇φ)        so for a uniform in-focus intensity I0:
      ∇²φ = −(k / I0) ∂I/∂z,     ∂I/∂z ≈ (I₊ − I₋) / (2dz),

  with ``I₊`` (``I₋``) the intensity at ``+dz`` (``−dz``). Sign check: a phase bump (a converging
  lens, ∇²φ < 0) focuses light, so ``I₊ > I₋`` at its centre. This is verified numerically in
  ``tests/inverse/test_phase.py``.

At the CVDM-QPI defaults (λ = 521 nm, 0.21 µm pixels) the grid's Nyquist frequency
``1/(2·0.21 µm) = 2.38 µm⁻¹`` exceeds ``1/λ = 1.92 µm⁻¹``: the highest spatial frequencies are
evanescent and the angular-spectrum propagator removes them (energy is then not conserved
for fields with content there). Smooth phase objects have essentially none.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from diffvi.inverse.operators import Operator

__all__ = [
    "DefocusIntensity",
    "fresnel_propagate",
    "tie_phase",
    "tie_reconstruct",
    "transfer_function",
]

_METHODS = ("angular_spectrum", "fresnel")
_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"expected {name} > 0 (finite), got {v!r}")


def _check_finite(**values: float) -> None:
    for name, v in values.items():
        if not (isinstance(v, int | float) and math.isfinite(v)):
            raise ValueError(f"expected a finite {name}, got {v!r}")


def _frequencies(
    h: int, w: int, pixel_size: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``fy [H, 1]``, ``fx [1, W]`` in cycles/metre, ``fft2`` order."""
    fy = torch.fft.fftfreq(h, d=pixel_size, dtype=dtype, device=device).view(h, 1)
    fx = torch.fft.fftfreq(w, d=pixel_size, dtype=dtype, device=device).view(1, w)
    return fy, fx


def transfer_function(
    shape: tuple[int, int],
    dz: float,
    wavelength: float,
    pixel_size: float,
    method: str = "angular_spectrum",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Propagation transfer function ``H [H, W]`` (complex, ``fft2`` frequency order).

    Computed in float64 and returned as the complex dtype matching the real ``dtype``.
    See the module docstring for the two ``method`` formulas and units (metres).
    """
    if method not in _METHODS:
        raise ValueError(f"expected method in {list(_METHODS)}, got {method!r}")
    _check_positive(wavelength=wavelength, pixel_size=pixel_size)
    _check_finite(dz=dz)
    h, w = shape
    dev = torch.device(device) if device is not None else torch.device("cpu")
    fy, fx = _frequencies(h, w, pixel_size, torch.float64, dev)
    f2 = fx**2 + fy**2
    if method == "angular_spectrum":
        arg = 1.0 / wavelength**2 - f2
        propagating = arg > 0
        kz = torch.sqrt(arg.clamp_min(0.0))  # = k_z / 2π, cycles/metre
        phase = 2 * math.pi * dz * kz
        tf = torch.where(propagating, torch.polar(torch.ones_like(phase), phase), 0)
    else:
        phase = 2 * math.pi * dz / wavelength - math.pi * wavelength * dz * f2
        tf = torch.polar(torch.ones_like(phase), phase)
    complex_dtype = torch.complex64 if dtype in (torch.float32, torch.complex64) else None
    return tf.to(complex_dtype) if complex_dtype is not None else tf


def _pad_complex(field: Tensor, pad: int, mode: str) -> Tensor:
    p = (pad, pad, pad, pad)
    if mode == "constant":
        return F.pad(field, p)
    return torch.complex(F.pad(field.real, p, mode=mode), F.pad(field.imag, p, mode=mode))


def fresnel_propagate(
    field: Tensor,
    dz: float,
    wavelength: float,
    pixel_size: float,
    pad: int = 0,
    pad_mode: str = "constant",
    method: str = "angular_spectrum",
) -> Tensor:
    """Propagate a complex scalar field ``[B, C, H, W]`` by ``dz`` (metres) in free space.

    Args:
        field: complex ``[B, C, H, W]`` (a real tensor is treated as a real-valued field).
            Sampled on a square grid of pitch ``pixel_size``.
        dz: propagation distance in metres (any sign; ``0`` is the identity; ``−dz``
            undoes ``+dz`` on the propagating components).
        wavelength: in metres (> 0), e.g. ``521e-9``.
        pixel_size: sampling pitch in metres (> 0), e.g. ``0.21e-6``.
        pad: pixels added on each side before propagation, cropped afterwards. ``0`` gives a
            circular (periodic) propagation. The padded field is still periodic over the
            padded grid, so ``pad`` must exceed the spread of the light (≈ ``λ·dz/(2·pixel)``
            for the finest features) to avoid wrap-around.
        pad_mode: ``"constant"`` (zeros; default), ``"reflect"``, ``"replicate"`` or
            ``"circular"`` (as :func:`torch.nn.functional.pad`). Zero padding puts a hard edge
            at the image border, which diffracts for non-compact fields (e.g. a phase object
            in a unit-amplitude wave); ``"replicate"``/``"reflect"`` avoid that.
        method: ``"angular_spectrum"`` (exact, evanescent components dropped) or
            ``"fresnel"`` (paraxial transfer function).

    Returns:
        The propagated complex field ``[B, C, H, W]`` (complex128 for float64 input).
    """
    if field.dim() != 4:
        raise ValueError(f"expected field of shape [B, C, H, W], got {list(field.shape)}")
    if not (isinstance(pad, int) and pad >= 0):
        raise ValueError(f"expected an integer pad >= 0, got {pad!r}")
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"expected pad_mode in {list(_PAD_MODES)}, got {pad_mode!r}")
    if method not in _METHODS:
        raise ValueError(f"expected method in {list(_METHODS)}, got {method!r}")
    _check_finite(dz=dz)
    if not field.is_complex():
        field = field.to(torch.complex128 if field.dtype == torch.float64 else torch.complex64)
    if dz == 0:  # still validate the physical parameters
        _check_positive(wavelength=wavelength, pixel_size=pixel_size)
        return field.clone()
    h, w = field.shape[-2:]
    if pad > 0:
        if pad_mode == "reflect" and pad >= min(h, w):
            raise ValueError(f"reflect padding needs pad < min(H, W) = {min(h, w)}, got {pad}")
        field = _pad_complex(field, pad, pad_mode)
    tf = transfer_function(
        (field.shape[-2], field.shape[-1]),
        dz,
        wavelength,
        pixel_size,
        method,
        dtype=field.dtype,
        device=field.device,
    )
    out = torch.fft.ifft2(torch.fft.fft2(field) * tf)
    if pad > 0:
        out = out[..., pad : pad + h, pad : pad + w]
    return out


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
    default so that solvers may evaluate the operator on out-of-range estimates).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        phase_max: float = 3.5,
        wavelength: float = 521e-9,
        pixel_size: float = 0.21e-6,
        dz: float = 1e-6,
        include_focus: bool = False,
        pad: int = 0,
        pad_mode: str = "constant",
        method: str = "angular_spectrum",
        check_range: bool = False,
    ) -> None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"expected input_shape (1, H, W), got {tuple(input_shape)}")
        _check_positive(phase_max=phase_max, wavelength=wavelength, pixel_size=pixel_size, dz=dz)
        if method not in _METHODS:
            raise ValueError(f"expected method in {list(_METHODS)}, got {method!r}")
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"expected pad_mode in {list(_PAD_MODES)}, got {pad_mode!r}")
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
        u = self.field(x)
        kw = {
            "wavelength": self.wavelength,
            "pixel_size": self.pixel_size,
            "pad": self.pad,
            "pad_mode": self.pad_mode,
            "method": self.method,
        }
        i_minus = fresnel_propagate(u, -self.dz, **kw).abs().square()
        i_plus = fresnel_propagate(u, self.dz, **kw).abs().square()
        if self.include_focus:
            return torch.cat([i_minus, u.abs().square(), i_plus], dim=1)
        return torch.cat([i_minus, i_plus], dim=1)


def _laplacian_symbol(
    h: int, w: int, pixel_size: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """``|q|² [H, W]`` with ``q = 2π f`` (rad/m), and ``qy [H, 1]``, ``qx [1, W]``."""
    fy, fx = _frequencies(h, w, pixel_size, dtype, device)
    qy, qx = 2 * math.pi * fy, 2 * math.pi * fx
    return qx**2 + qy**2, qy, qx


def _inverse_laplacian(rhs_hat: Tensor, q2: Tensor, eps: float) -> Tensor:
    """Spectral ``∇⁻²``: ``−rhs_hat / (|q|² + eps)``, with the DC term set to 0."""
    denom = q2 + eps
    out = -rhs_hat / torch.where(q2 > 0, denom, 1)
    return torch.where(q2 > 0, out, 0)


def tie_phase(
    i_minus: Tensor,
    i_plus: Tensor,
    dz: float,
    wavelength: float,
    pixel_size: float,
    i0: Tensor | float = 1.0,
    regularisation: float = 0.0,
) -> Tensor:
    """Phase ``φ [B, C, H, W]`` (radians, zero mean) from two defocused intensities by the TIE.

    Solves ``∇·(I0 ∇φ) = −k ∂I/∂z`` (Teague 1983) with ``k = 2π/λ`` and the central difference
    ``∂I/∂z ≈ (I₊ − I₋)/(2dz)``, periodic boundaries, by FFT:

    - ``i0`` a number (uniform in-focus intensity): ``φ = ∇⁻²(−(k/I0) ∂I/∂z)``;
    - ``i0`` a tensor (broadcastable to ``[B, C, H, W]``): the Paganin–Nugent (1998)
      two-Poisson solution ``ψ = ∇⁻²(−k ∂I/∂z)``, ``φ = ∇⁻² ∇·(∇ψ / I0)`` (exact for a
      curl-free transverse flux; equal to the uniform formula for a constant ``I0``).

    ``∇⁻²`` is ``−FFT⁻¹[ · / (|q|² + ε·q_min²)]`` with ``q = 2π·f`` and ``q_min = 2π/(N·pixel)``
    the lowest non-zero grid frequency (of the longer side); ``ε = regularisation ≥ 0``
    (dimensionless) damps the low frequencies where noise is amplified most. The DC term is set
    to 0: the phase is only defined up to a constant, returned with zero mean.

    Args:
        i_minus, i_plus: intensities at ``−dz`` and ``+dz``, real ``[B, C, H, W]``.
        dz: defocus distance in metres (> 0).
        wavelength, pixel_size: in metres (> 0).
        i0: in-focus intensity (> 0); ``1.0`` for a unit-amplitude phase object.
        regularisation: ``ε ≥ 0`` (see above); ``0`` is the plain inverse Laplacian.
    """
    _check_positive(dz=dz, wavelength=wavelength, pixel_size=pixel_size)
    if not (isinstance(regularisation, int | float) and regularisation >= 0):
        raise ValueError(f"expected regularisation >= 0, got {regularisation!r}")
    if i_minus.dim() != 4 or i_minus.shape != i_plus.shape:
        raise ValueError(
            "expected i_minus and i_plus of the same shape [B, C, H, W], got "
            f"{list(i_minus.shape)} and {list(i_plus.shape)}"
        )
    if i_minus.is_complex() or i_plus.is_complex():
        raise ValueError("expected real intensities, got complex tensors")
    h, w = i_minus.shape[-2:]
    dtype = torch.promote_types(i_minus.dtype, i_plus.dtype)
    k = 2 * math.pi / wavelength
    didz = (i_plus.to(dtype) - i_minus.to(dtype)) / (2 * dz)
    q2, qy, qx = _laplacian_symbol(h, w, pixel_size, dtype, i_minus.device)
    eps = regularisation * (2 * math.pi / (max(h, w) * pixel_size)) ** 2
    if isinstance(i0, Tensor):
        if bool((i0 <= 0).any()):
            raise ValueError("expected a positive in-focus intensity i0")
        i0t = i0.to(dtype=dtype, device=i_minus.device)
        psi_hat = _inverse_laplacian(torch.fft.fft2(-k * didz), q2, eps)
        gy = torch.fft.ifft2(1j * qy * psi_hat).real / i0t
        gx = torch.fft.ifft2(1j * qx * psi_hat).real / i0t
        div_hat = 1j * qy * torch.fft.fft2(gy) + 1j * qx * torch.fft.fft2(gx)
        phi_hat = _inverse_laplacian(div_hat, q2, eps)
    else:
        _check_positive(i0=i0)
        phi_hat = _inverse_laplacian(torch.fft.fft2(-(k / i0) * didz), q2, eps)
    return torch.fft.ifft2(phi_hat).real


def tie_reconstruct(
    operator: DefocusIntensity, y: Tensor, regularisation: float = 0.0, clamp: bool = True
) -> Tensor:
    """TIE baseline for :class:`DefocusIntensity`: ``y [B, 2|3, H, W] -> x [B, 1, H, W]``.

    Recovers ``φ`` with :func:`tie_phase` (using the in-focus channel as ``I0`` when the
    operator has ``include_focus=True``, else ``I0 = 1``), fixes the unknown additive constant
    by shifting the minimum of each image to 0 (right for objects whose background is the
    lowest phase, e.g. MNIST-like digits on a 0 background), and maps back by ``φ/phase_max``;
    ``clamp=True`` clips to ``[0, 1]``.
    """
    if not isinstance(operator, DefocusIntensity):
        raise ValueError(f"expected a DefocusIntensity operator, got {type(operator).__name__}")
    if y.dim() != 4 or tuple(y.shape[1:]) != operator.output_shape:
        want = ", ".join(str(s) for s in ("B", *operator.output_shape))
        raise ValueError(f"expected y of shape [{want}], got {list(y.shape)}")
    i_minus, i_plus = y[:, :1], y[:, -1:]
    i0: Tensor | float = 1.0
    if operator.include_focus:
        i0 = y[:, 1:2].clamp_min(torch.finfo(y.dtype).eps)
    phi = tie_phase(
        i_minus,
        i_plus,
        operator.dz,
        operator.wavelength,
        operator.pixel_size,
        i0=i0,
        regularisation=regularisation,
    )
    phi = phi - phi.amin(dim=(-2, -1), keepdim=True)
    x = phi / operator.phase_max
    return x.clamp(0.0, 1.0) if clamp else x
