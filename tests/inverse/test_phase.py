import math

import pytest
import torch

from diffvi.inverse.operators import Blur, gaussian_kernel
from diffvi.inverse.phase import (
    DefocusIntensity,
    fresnel_propagate,
    tie_phase,
    tie_reconstruct,
)

D64 = torch.float64
LAM, PIX, DZ = 521e-9, 0.21e-6, 1e-6  # the CVDM QPI defaults, metres
K = 2 * math.pi / LAM


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(n, dtype=D64), torch.arange(n, dtype=D64), indexing="ij")


def _gaussians(n: int, blobs: list[tuple[float, float, float, float]]) -> torch.Tensor:
    """Sum of Gaussians ``a·exp(-r²/2s²)`` for ``(cy, cx, s, a)`` in pixels, ``[1, 1, n, n]``."""
    yy, xx = _grid(n)
    out = torch.zeros(n, n, dtype=D64)
    for cy, cx, s, a in blobs:
        out += a * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2))
    return out.view(1, 1, n, n)


def _smooth_object(n: int = 64) -> torch.Tensor:
    """Smooth test phase image in [0, 1] (max 1, background ≈ 0)."""
    x = _gaussians(n, [(22, 24, 5, 1.0), (40, 38, 7, 0.8), (30, 44, 4, 0.6)])
    return x / x.max()


def _digit(n: int = 64, sigma: float = 2.0) -> torch.Tensor:
    """Synthetic MNIST-like shape (an elliptical '0' plus a slanted stroke), blurred by a
    Gaussian of ``sigma`` pixels, in [0, 1]."""
    yy, xx = _grid(n)
    c = (n - 1) / 2
    r = torch.sqrt(((yy - c) / 1.4) ** 2 + (xx - c) ** 2)
    ring = (r > 0.13 * n) & (r < 0.2 * n)
    bar = ((xx - c - 0.5 * (yy - c)).abs() < 0.035 * n) & ((yy - c).abs() < 0.3 * n)
    x0 = (ring | bar).to(D64).view(1, 1, n, n)
    x = Blur(gaussian_kernel(int(6 * sigma) | 1, sigma, D64), (1, n, n))(x0)
    return x / x.max()


def _laplacian(phi: torch.Tensor, pixel: float) -> torch.Tensor:
    """Spectral (periodic) Laplacian in 1/m²."""
    h, w = phi.shape[-2:]
    fy = torch.fft.fftfreq(h, d=pixel, dtype=D64).view(h, 1)
    fx = torch.fft.fftfreq(w, d=pixel, dtype=D64).view(1, w)
    return torch.fft.ifft2(-((2 * math.pi) ** 2) * (fx**2 + fy**2) * torch.fft.fft2(phi)).real


def _random_field(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = _gen(seed)
    re = torch.randn(shape, generator=g, dtype=D64)
    return torch.complex(re, torch.randn(shape, generator=g, dtype=D64))


def _rms_up_to_constant(a: torch.Tensor, b: torch.Tensor) -> float:
    e = (a - a.mean()) - (b - b.mean())
    return e.pow(2).mean().sqrt().item()


# ----------------------------------------------------------------------------- propagation

# With 0.5 µm pixels every grid frequency (≤ √2/(2·0.5 µm) = 1.41 µm⁻¹) is below 1/λ = 1.92 µm⁻¹,
# so the angular-spectrum transfer function is unitary (nothing evanescent is dropped).
COARSE = 0.5e-6


@pytest.mark.parametrize("method", ["angular_spectrum", "fresnel"])
def test_propagation_conserves_energy_and_inverts(method: str) -> None:
    u = _random_field((2, 3, 32, 48))
    v = fresnel_propagate(u, 3e-6, LAM, COARSE, method=method)
    assert v.shape == u.shape and v.dtype == torch.complex128
    e_in, e_out = u.abs().square().sum(), v.abs().square().sum()
    assert abs(e_out / e_in - 1) < 1e-10
    back = fresnel_propagate(v, -3e-6, LAM, COARSE, method=method)
    assert torch.allclose(back, u, atol=1e-10, rtol=0)
    assert torch.equal(fresnel_propagate(u, 0.0, LAM, COARSE, method=method), u)


def test_roundtrip_at_default_pixel_for_band_limited_field() -> None:
    # At 0.21 µm pixels the grid corners are evanescent; a band-limited field is unaffected.
    u = _random_field((1, 1, 32, 32), seed=1)
    f = torch.fft.fftfreq(32, d=PIX, dtype=D64)
    keep = (f.view(-1, 1) ** 2 + f.view(1, -1) ** 2) < (0.9 / LAM) ** 2
    u = torch.fft.ifft2(torch.fft.fft2(u) * keep)
    v = fresnel_propagate(u, DZ, LAM, PIX)
    assert abs(v.abs().square().sum() / u.abs().square().sum() - 1) < 1e-10
    assert torch.allclose(fresnel_propagate(v, -DZ, LAM, PIX), u, atol=1e-10, rtol=0)
    # A white field loses its evanescent part.
    w = _random_field((1, 1, 32, 32), seed=2)
    assert fresnel_propagate(w, DZ, LAM, PIX).abs().square().sum() < w.abs().square().sum()


@pytest.mark.parametrize("method", ["angular_spectrum", "fresnel"])
def test_plane_wave_stays_plane_wave(method: str) -> None:
    n, m = 32, 3  # m cycles across the grid
    fx = m / (n * PIX)
    _, xx = _grid(n)
    u = torch.polar(torch.ones(n, n, dtype=D64), 2 * math.pi * fx * xx * PIX).view(1, 1, n, n)
    v = fresnel_propagate(u, 2.5e-6, LAM, PIX, method=method)
    if method == "angular_spectrum":
        phase = 2 * math.pi * 2.5e-6 * math.sqrt(1 / LAM**2 - fx**2)
    else:
        phase = K * 2.5e-6 - math.pi * LAM * 2.5e-6 * fx**2
    assert torch.allclose(v, u * complex(math.cos(phase), math.sin(phase)), atol=1e-10, rtol=0)
    assert torch.allclose(v.abs(), torch.ones_like(v.abs()), atol=1e-12, rtol=0)


def test_evanescent_plane_wave_is_dropped() -> None:
    n, m = 32, 15  # fx = 15/(32·0.21 µm) = 2.23 µm⁻¹ > 1/λ = 1.92 µm⁻¹
    _, xx = _grid(n)
    u = torch.polar(torch.ones(n, n, dtype=D64), 2 * math.pi * m * xx / n).view(1, 1, n, n)
    assert fresnel_propagate(u, DZ, LAM, PIX).abs().max() < 1e-12


def test_fresnel_matches_angular_spectrum_for_paraxial_field() -> None:
    u = torch.polar(torch.ones(1, 1, 64, 64, dtype=D64), 2.0 * _gaussians(64, [(32, 32, 8, 1)]))
    a = fresnel_propagate(u, DZ, LAM, PIX, method="angular_spectrum")
    b = fresnel_propagate(u, DZ, LAM, PIX, method="fresnel")
    assert (a - b).abs().max() < 2e-3


def test_padding_removes_wrap_around() -> None:
    # A 1-px-wide spot 3 px from the left edge spreads over ~±12 px after 5 µm; circularly a
    # large part (measured 28 %) reaches the right edge, with 32 px of zero padding 0.05 %.
    yy, xx = _grid(64)
    spot = torch.exp(-((yy - 32) ** 2 + (xx - 3) ** 2) / 2).to(torch.complex128).view(1, 1, 64, 64)

    def right_fraction(pad: int) -> float:
        i = fresnel_propagate(spot, 5e-6, LAM, PIX, pad=pad).abs().square()
        return (i[..., -12:].sum() / i.sum()).item()

    assert right_fraction(0) > 0.2
    assert right_fraction(32) < 2e-3
    # Real input is promoted; other pad modes run and keep the shape.
    r = fresnel_propagate(spot.real.float(), 1e-6, LAM, PIX, pad=8, pad_mode="replicate")
    assert r.dtype == torch.complex64 and r.shape == spot.shape


# ----------------------------------------------------------------------------- forward operator


def test_defocus_intensity_shapes_and_values() -> None:
    x = torch.rand(3, 1, 24, 20, generator=_gen(3), dtype=D64)
    op = DefocusIntensity((1, 24, 20))
    y = op(x)
    assert op.output_shape == (2, 24, 20) and y.shape == (3, 2, 24, 20) and y.dtype == D64
    assert bool((y >= 0).all())
    # Order (−dz, +dz), matching the propagator.
    u = op.field(x)
    assert torch.allclose(y[:, :1], fresnel_propagate(u, -DZ, LAM, PIX).abs().square())
    assert torch.allclose(y[:, 1:], fresnel_propagate(u, DZ, LAM, PIX).abs().square())
    # With the in-focus image: a pure phase object has unit intensity there.
    op3 = DefocusIntensity((1, 24, 20), include_focus=True)
    y3 = op3(x)
    assert y3.shape == (3, 3, 24, 20)
    assert torch.allclose(y3[:, 1], torch.ones_like(y3[:, 1]), atol=1e-14, rtol=0)
    assert torch.allclose(y3[:, [0, 2]], y)
    # float32 in, float32 out; differentiable (for guidance-based solvers).
    xf = x.float().requires_grad_()
    yf = op(xf)
    assert yf.dtype == torch.float32
    yf.sum().backward()
    assert xf.grad is not None and torch.isfinite(xf.grad).all()


def test_defocus_intensity_input_errors() -> None:
    op = DefocusIntensity((1, 16, 16), check_range=True)
    with pytest.raises(ValueError):
        op(torch.rand(2, 1, 16, 15))
    with pytest.raises(ValueError):
        op(torch.rand(2, 2, 16, 16))
    with pytest.raises(ValueError):
        op(torch.rand(16, 16))
    with pytest.raises(ValueError):
        op(torch.full((1, 1, 16, 16), 1.5))
    # Without check_range out-of-range inputs are allowed (solver iterates).
    assert DefocusIntensity((1, 16, 16))(torch.full((1, 1, 16, 16), 1.5)).shape == (1, 2, 16, 16)


# ----------------------------------------------------------------------------- TIE


@pytest.mark.parametrize(
    ("method", "tol"),
    # measured relative errors at dz = 0.2 µm: 8.6e-5 (Fresnel: only the O(dz²) central-
    # difference error) and 3.7e-3 (angular spectrum: + its non-paraxial correction ~λ²|f|²/4).
    [("fresnel", 1e-3), ("angular_spectrum", 1e-2)],
)
def test_intensity_derivative_matches_tie_sign(method: str, tol: float) -> None:
    phi = 0.1 * _gaussians(64, [(32, 32, 6, 1.0)])  # weak, smooth bump (a converging lens)
    u = torch.polar(torch.ones_like(phi), phi)
    assert torch.allclose(u.abs().square(), torch.ones_like(phi))  # in-focus intensity is 1
    dz = 0.2e-6
    i_plus = fresnel_propagate(u, dz, LAM, PIX, method=method).abs().square()
    i_minus = fresnel_propagate(u, -dz, LAM, PIX, method=method).abs().square()
    didz = (i_plus - i_minus) / (2 * dz)
    expected = -_laplacian(phi, PIX) / K  # TIE with I0 = 1: ∂I/∂z = −(1/k)∇²φ
    assert ((didz - expected).norm() / expected.norm()).item() < tol
    assert (i_plus - i_minus)[0, 0, 32, 32] > 0  # light focuses behind a phase bump
    # Contrast grows ∝ dz in the TIE regime.
    c1 = (fresnel_propagate(u, dz, LAM, PIX, method=method).abs().square() - 1).abs().max()
    c2 = (fresnel_propagate(u, dz / 2, LAM, PIX, method=method).abs().square() - 1).abs().max()
    assert abs(c1 / c2 - 2) < 0.02


def test_tie_recovers_smooth_phase_at_default_setting() -> None:
    # 64×64 sum of Gaussians (σ = 4–7 px = 0.8–1.5 µm) of 0–3.5 rad, λ = 521 nm, 0.21 µm
    # pixels, ±1 µm, noiseless. Measured: RMS phase error 0.0045 rad (max 0.06 rad); the
    # reconstruction x in [0, 1] has RMS error 0.0015.
    x = _smooth_object(64)
    op = DefocusIntensity((1, 64, 64))
    y = op(x)
    phi = tie_phase(y[:, :1], y[:, 1:], DZ, LAM, PIX)
    assert abs(phi.mean().item()) < 1e-12  # returned with zero mean
    assert _rms_up_to_constant(phi, op.phase(x)) < 0.01
    xr = tie_reconstruct(op, y)
    assert xr.shape == x.shape and xr.min() >= 0 and xr.max() <= 1
    assert (xr - x).pow(2).mean().sqrt() < 0.004
    # The in-focus channel (== 1) as I0 gives the same answer.
    op3 = DefocusIntensity((1, 64, 64), include_focus=True)
    assert torch.allclose(tie_reconstruct(op3, op3(x)), xr, atol=1e-6, rtol=0)


def test_tie_on_smoothed_digit_shape() -> None:
    # MNIST-like stroke shape blurred by σ = 2 px, 0–3.5 rad, defaults: measured RMS error
    # 0.037 rad (sharper shapes are worse: 0.085 rad at σ = 1.5 px, 0.21 rad at σ = 1 px).
    x = _digit(64, sigma=2.0)
    op = DefocusIntensity((1, 64, 64))
    y = op(x)
    phi = tie_phase(y[:, :1], y[:, 1:], DZ, LAM, PIX)
    assert _rms_up_to_constant(phi, op.phase(x)) < 0.06


def test_tie_with_nonuniform_intensity() -> None:
    # Amplitude varies by 50 %: the Paganin–Nugent solution with I0 as a tensor is far better
    # than assuming uniform intensity (measured RMS 0.058 vs 0.205 rad).
    phi = _gaussians(64, [(30, 34, 6, 3.0), (40, 24, 5, 1.5)])
    amp = 1 - 0.5 * _gaussians(64, [(28, 28, 9, 1.0)])
    u = amp * torch.polar(torch.ones_like(phi), phi)
    dz = 0.5e-6
    i_plus = fresnel_propagate(u, dz, LAM, PIX).abs().square()
    i_minus = fresnel_propagate(u, -dz, LAM, PIX).abs().square()
    err_pn = _rms_up_to_constant(tie_phase(i_minus, i_plus, dz, LAM, PIX, i0=amp**2), phi)
    err_uniform = _rms_up_to_constant(tie_phase(i_minus, i_plus, dz, LAM, PIX), phi)
    assert err_pn < 0.1 and err_pn < 0.5 * err_uniform
    # A constant tensor I0 reproduces the scalar formula.
    a = tie_phase(i_minus, i_plus, dz, LAM, PIX, i0=2.0)
    b = tie_phase(i_minus, i_plus, dz, LAM, PIX, i0=torch.full((1, 1, 1, 1), 2.0, dtype=D64))
    assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_tie_regularisation_damps_low_frequencies() -> None:
    x = _smooth_object(32)
    y = DefocusIntensity((1, 32, 32))(x)
    p0 = tie_phase(y[:, :1], y[:, 1:], DZ, LAM, PIX)
    p1 = tie_phase(y[:, :1], y[:, 1:], DZ, LAM, PIX, regularisation=1.0)
    assert p1.shape == p0.shape and 0 < p1.norm() < p0.norm()


# ----------------------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    "kwargs",
    [
        {"wavelength": 0.0},
        {"wavelength": -LAM},
        {"pixel_size": 0.0},
        {"pixel_size": float("nan")},
        {"dz": float("inf")},
        {"method": "rayleigh"},
        {"pad": -1},
        {"pad_mode": "mirror"},
    ],
)
def test_propagate_bad_parameters(kwargs: dict) -> None:
    args = {"dz": DZ, "wavelength": LAM, "pixel_size": PIX} | kwargs
    with pytest.raises(ValueError):
        fresnel_propagate(_random_field((1, 1, 8, 8)), **args)


def test_propagate_bad_shape_and_zero_dz_still_validates() -> None:
    with pytest.raises(ValueError):
        fresnel_propagate(_random_field((8, 8)), DZ, LAM, PIX)
    with pytest.raises(ValueError):
        fresnel_propagate(_random_field((1, 1, 8, 8)), 0.0, -LAM, PIX)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (2, 16, 16)},
        {"input_shape": (16, 16)},
        {"dz": 0.0},
        {"dz": -DZ},
        {"wavelength": 0.0},
        {"pixel_size": -PIX},
        {"phase_max": 0.0},
        {"method": "rayleigh"},
        {"pad": -2},
    ],
)
def test_defocus_intensity_bad_parameters(kwargs: dict) -> None:
    args = {"input_shape": (1, 16, 16)} | kwargs
    with pytest.raises(ValueError):
        DefocusIntensity(**args)


def test_tie_bad_inputs() -> None:
    i = torch.ones(1, 1, 8, 8, dtype=D64)
    with pytest.raises(ValueError):
        tie_phase(i, torch.ones(1, 1, 8, 9, dtype=D64), DZ, LAM, PIX)
    with pytest.raises(ValueError):
        tie_phase(i[0], i[0], DZ, LAM, PIX)
    for bad in ({"dz": 0.0}, {"wavelength": -1.0}, {"pixel_size": 0.0}, {"i0": 0.0}):
        args = {"dz": DZ, "wavelength": LAM, "pixel_size": PIX} | bad
        with pytest.raises(ValueError):
            tie_phase(i, i, **args)
    with pytest.raises(ValueError):
        tie_phase(i, i, DZ, LAM, PIX, regularisation=-1.0)
    with pytest.raises(ValueError):
        tie_phase(i, i, DZ, LAM, PIX, i0=torch.zeros_like(i))
    op = DefocusIntensity((1, 8, 8))
    with pytest.raises(ValueError):
        tie_reconstruct(op, torch.ones(1, 3, 8, 8, dtype=D64))
    with pytest.raises(ValueError):
        tie_reconstruct(Blur(gaussian_kernel(3, 1.0), (1, 8, 8)), i)  # type: ignore[arg-type]


def test_the_operator_and_the_data_simulation_share_one_optics():
    # DefocusIntensity and tie_reconstruct are the pure functions of diffvi.data.optics (which
    # the phase task of diffvi.data.paired simulates with) at the operator's settings.
    from diffvi.data.optics import defocus_intensities, tie_phase_image

    x = _smooth_object(32).float()
    for include_focus in (False, True):
        op = DefocusIntensity((1, 32, 32), phase_max=2.0, include_focus=include_focus)
        y = op(x)
        assert torch.equal(y, defocus_intensities(2.0 * x, include_focus=include_focus))
        assert torch.equal(tie_reconstruct(op, y), tie_phase_image(y, 2.0))
    with pytest.raises(ValueError, match="phase_max"):
        tie_phase_image(y, 0.0)
    with pytest.raises(ValueError, match="2 or 3"):
        tie_phase_image(y[:, :1], 2.0)
