"""Scalar wave optics of quantitative phase imaging (QPI): free-space propagation, the
intensities of a defocused phase object, and the transport-of-intensity (TIE) phase estimate.

Pure tensor functions, used by the phase task's simulation (:mod:`diffvi.data.paired`) and by the
forward operator :class:`~diffvi.inverse.phase.DefocusIntensity` that wraps them.

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

__all__ = [
    "DEFOCUS",
    "METHODS",
    "PAD_MODES",
    "PIXEL_SIZE",
    "WAVELENGTH",
    "check_finite",
    "check_positive",
    "defocus_intensities",
    "fresnel_propagate",
    "tie_phase",
    "tie_phase_image",
    "transfer_function",
]

WAVELENGTH = 521e-9
"""Default wavelength (m): the CVDM QPI setting."""
PIXEL_SIZE = 0.21e-6
"""Default sampling pitch (m)."""
DEFOCUS = 1e-6
"""Default defocus distance ``dz`` (m): intensities are recorded at ``−dz`` and ``+dz``."""

METHODS = ("angular_spectrum", "fresnel")
"""Propagation methods of :func:`fresnel_propagate`."""
PAD_MODES = ("constant", "reflect", "replicate", "circular")
"""Padding modes of :func:`fresnel_propagate`."""


def check_positive(**values: float) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that is not a finite number > 0."""
    for name, v in values.items():
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"expected {name} > 0 (finite), got {v!r}")


def check_finite(**values: float) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that is not a finite number."""
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
    if method not in METHODS:
        raise ValueError(f"expected method in {list(METHODS)}, got {method!r}")
    check_positive(wavelength=wavelength, pixel_size=pixel_size)
    check_finite(dz=dz)
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
    if pad_mode not in PAD_MODES:
        raise ValueError(f"expected pad_mode in {list(PAD_MODES)}, got {pad_mode!r}")
    if method not in METHODS:
        raise ValueError(f"expected method in {list(METHODS)}, got {method!r}")
    check_finite(dz=dz)
    if not field.is_complex():
        field = field.to(torch.complex128 if field.dtype == torch.float64 else torch.complex64)
    if dz == 0:  # still validate the physical parameters
        check_positive(wavelength=wavelength, pixel_size=pixel_size)
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


def defocus_intensities(
    phase: Tensor,
    dz: float = DEFOCUS,
    wavelength: float = WAVELENGTH,
    pixel_size: float = PIXEL_SIZE,
    include_focus: bool = False,
    pad: int = 0,
    pad_mode: str = "constant",
    method: str = "angular_spectrum",
) -> Tensor:
    """Intensities of the pure phase object ``exp(iφ)`` (unit amplitude) at ``−dz`` and ``+dz``.

    Args:
        phase: ``φ [B, 1, H, W]`` in radians (real).
        dz, wavelength, pixel_size: in metres (see :func:`fresnel_propagate`).
        include_focus: also return the in-focus intensity (identically 1) between the two.
        pad, pad_mode, method: as :func:`fresnel_propagate`.

    Returns:
        ``[B, 2, H, W]`` in the order ``(−dz, +dz)``, or ``[B, 3, H, W]`` ``(−dz, 0, +dz)``
        with ``include_focus``.
    """
    u = torch.polar(torch.ones_like(phase), phase)
    kw = {
        "wavelength": wavelength,
        "pixel_size": pixel_size,
        "pad": pad,
        "pad_mode": pad_mode,
        "method": method,
    }
    i_minus = fresnel_propagate(u, -dz, **kw).abs().square()
    i_plus = fresnel_propagate(u, dz, **kw).abs().square()
    if include_focus:
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
    check_positive(dz=dz, wavelength=wavelength, pixel_size=pixel_size)
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
        check_positive(i0=i0)
        phi_hat = _inverse_laplacian(torch.fft.fft2(-(k / i0) * didz), q2, eps)
    return torch.fft.ifft2(phi_hat).real


def tie_phase_image(
    intensities: Tensor,
    phase_max: float,
    dz: float = DEFOCUS,
    wavelength: float = WAVELENGTH,
    pixel_size: float = PIXEL_SIZE,
    regularisation: float = 0.0,
    clamp: bool = True,
) -> Tensor:
    """TIE estimate of the phase image ``x = φ / phase_max`` from defocused intensities.

    ``intensities [B, 2|3, H, W]`` are ``(−dz, +dz)`` or ``(−dz, 0, +dz)`` (as
    :func:`defocus_intensities` returns them); with three, the in-focus one is ``I0`` of
    :func:`tie_phase`, else ``I0 = 1``. The unknown additive constant is fixed by shifting the
    minimum of each image to 0 (right for objects whose background is the lowest phase, e.g.
    MNIST-like digits on a 0 background); ``clamp=True`` clips ``x`` to ``[0, 1]``.
    Returns ``x [B, 1, H, W]``.
    """
    check_positive(phase_max=phase_max)
    if intensities.dim() != 4 or intensities.shape[1] not in (2, 3):
        raise ValueError(
            f"expected intensities of shape [B, 2 or 3, H, W], got {list(intensities.shape)}"
        )
    i_minus, i_plus = intensities[:, :1], intensities[:, -1:]
    i0: Tensor | float = 1.0
    if intensities.shape[1] == 3:
        i0 = intensities[:, 1:2].clamp_min(torch.finfo(intensities.dtype).eps)
    phi = tie_phase(
        i_minus,
        i_plus,
        dz,
        wavelength,
        pixel_size,
        i0=i0,
        regularisation=regularisation,
    )
    phi = phi - phi.amin(dim=(-2, -1), keepdim=True)
    x = phi / phase_max
    return x.clamp(0.0, 1.0) if clamp else x
