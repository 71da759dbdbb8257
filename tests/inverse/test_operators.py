import math

import pytest
import torch

from diffvi.inverse import (
    OPERATORS,
    AveragePoolSR,
    BicubicSR,
    Blur,
    Denoising,
    Inpainting,
    LinearOperator,
    PhaseRetrieval,
    SeparableBlur,
    SVDOperator,
    bicubic_matrix,
    box_mask,
    build_operator,
    conv_matrix,
    gaussian_kernel,
    gaussian_kernel_1d,
    half_mask,
    operator_parameters,
    random_mask,
    uniform_kernel,
)

SHAPE = (2, 8, 12)
D64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear_ops() -> dict[str, LinearOperator]:
    g = _gen(1)
    ops: dict[str, LinearOperator] = {
        "inpaint-random": Inpainting(random_mask(SHAPE, 0.4, g)),
        "inpaint-box": Inpainting(box_mask(SHAPE[1:], 4), channels=2),
        "inpaint-half": Inpainting(half_mask(SHAPE, "right")),
        "denoise": Denoising(SHAPE),
        "sr2": AveragePoolSR(2, SHAPE),
        "sr4": AveragePoolSR(4, SHAPE),
        "bicubic2": BicubicSR(2, SHAPE),
        "bicubic4": BicubicSR(4, SHAPE),
        "bicubic4-pil": BicubicSR(4, SHAPE, boundary="renormalise"),
        "blur-reflect": SeparableBlur(gaussian_kernel_1d(5, 1.0, D64), SHAPE, "reflect"),
        "blur-zero-wide": SeparableBlur(gaussian_kernel_1d(11, 1.0, D64), SHAPE, "zero"),
        "blur-gaussian": Blur(gaussian_kernel(5, 1.0, D64), SHAPE),
        "blur-uniform": Blur(uniform_kernel(4, D64), SHAPE),  # has exact spectral zeros
        "blur-asym": Blur(torch.rand(3, 4, generator=g, dtype=D64), SHAPE),
    }
    return {k: v.double() for k, v in ops.items()}


LINEAR = _linear_ops()
SVD = {k: v for k, v in LINEAR.items() if isinstance(v, SVDOperator)}


def _x(op, b: int = 3, seed: int = 2) -> torch.Tensor:
    return torch.randn(b, *op.input_shape, generator=_gen(seed), dtype=D64)


def _y(op, b: int = 3, seed: int = 3) -> torch.Tensor:
    return torch.randn(b, *op.output_shape, generator=_gen(seed), dtype=D64)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def _kept_part(op: LinearOperator, x: torch.Tensor) -> torch.Tensor:
    """A x with the singular values off ``op.range_mask`` zeroed (U diag(s·keep) Vᵀ x): what
    A A⁺ A x is when the pseudo-inverse truncates (a blur's ``pinv_cutoff``)."""
    if not isinstance(op, SVDOperator):
        return op(x)
    keep = op.range_mask(x.dtype)
    return op.U(op.singulars(x.dtype) * keep * op.Vt(x))


class _Matrix(LinearOperator):
    """A rank-deficient dense matrix, to exercise the default conjugate-gradient pinv."""

    def __init__(self, m: torch.Tensor) -> None:
        super().__init__((1, 1, m.shape[1]), (m.shape[0],))
        self.m = m

    def _forward(self, x):
        return x.flatten(1) @ self.m.T

    def _adjoint(self, y):
        return (y @ self.m).view(-1, *self.input_shape)


@pytest.mark.parametrize("name", list(LINEAR))
def test_adjoint_satisfies_dot_product_identity(name):
    op = LINEAR[name]
    x, y = _x(op), _y(op)
    lhs = (op(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-12)
    _close(op.normal(x), op.adjoint(op(x)))


@pytest.mark.parametrize("name", list(LINEAR))
def test_pinv_satisfies_moore_penrose_identities(name):
    """A⁺ is the Moore–Penrose inverse of A with the singular values off its range mask
    zeroed (all of A unless a blur's cutoff bites): A A⁺ A = that A, A⁺ A A⁺ = A⁺."""
    op = LINEAR[name]
    x, y = _x(op), _y(op)
    _close(op(op.pinv(op(x))), _kept_part(op, x))
    _close(op.pinv(op(op.pinv(y))), op.pinv(y))
    if not isinstance(op, Blur | SeparableBlur) or op.pinv_cutoff == 0:
        _close(_kept_part(op, x), op(x))


@pytest.mark.parametrize("name", [*LINEAR, "matrix"])
def test_damped_pinv_solves_the_tikhonov_normal_equations(name):
    g = _gen(5)
    if name == "matrix":
        op = _Matrix(
            torch.randn(5, 3, generator=g, dtype=D64) @ torch.randn(3, 7, generator=g, dtype=D64)
        )
    else:
        op = LINEAR[name]
    y = _y(op)
    x = op.pinv(y, damping=0.3)
    torch.testing.assert_close(op.normal(x) + 0.3 * x, op.adjoint(y), rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="damping"):
        op.pinv(y, damping=-1.0)


def test_default_cg_pinv_matches_dense_pseudo_inverse():
    g = _gen(4)
    m = torch.randn(5, 3, generator=g, dtype=D64) @ torch.randn(3, 7, generator=g, dtype=D64)
    op = _Matrix(m)
    y = torch.randn(2, 5, generator=g, dtype=D64)
    expected = (y @ torch.linalg.pinv(m).T).view(2, 1, 1, 7)
    torch.testing.assert_close(op.pinv(y), expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", list(SVD))
def test_svd_view_reconstructs_operator_and_is_orthonormal(name):
    op = SVD[name]
    x, y = _x(op), _y(op)
    s = op.singulars(dtype=D64)
    d = op.spectral_dim
    assert s.shape == (d,) and bool((s >= 0).all())
    z = torch.randn(3, d, generator=_gen(5), dtype=D64)
    _close(op.U(s * op.Vt(x)), op(x))
    _close(op.V(s * op.Ut(y)), op.adjoint(y))
    _close(op.Vt(op.V(z)), z)
    _close(op.V(op.Vt(x)), x)
    _close(op.U(op.Ut(y)), y)
    # U and Ut are adjoint; Ut is zero outside the range coordinates.
    torch.testing.assert_close((op.U(z) * y).sum(), (z * op.Ut(y)).sum(), rtol=1e-10, atol=1e-12)
    inv = op.pinv_singulars(D64)
    keep = op.range_mask(D64)
    assert keep.shape == (d,) and torch.equal(inv > 0, keep)
    _close(inv[keep], 1 / s[keep])
    _close(op.V(inv * op.Ut(y)), op.pinv(y))
    # number of nonzero singular values equals the measurement dimension when A is onto
    if isinstance(op, AveragePoolSR | BicubicSR):
        assert int((s > 0).sum()) == y[0].numel()


def test_average_pool_pinv_is_nearest_upsampling():
    op = LINEAR["sr4"]
    y = _y(op)
    up = y.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    _close(op.pinv(y), up)
    _close(op(op.pinv(y)), y)


def test_bicubic_sr_matches_torch_antialiased_bicubic_interpolation():
    op = LINEAR["bicubic4-pil"]
    x = _x(op)
    ref = torch.nn.functional.interpolate(x, size=(2, 3), mode="bicubic", antialias=True)
    _close(op(x), ref)


def test_blur_with_delta_kernel_is_identity():
    k = torch.zeros(3, 3, dtype=D64)
    k[1, 1] = 1.0
    op = Blur(k, SHAPE)
    x = _x(op)
    _close(op(x), x)
    _close(op.pinv(x), x)


def _three_tap_circulant_factors():
    """The kernel (a, 1 − 2a, a), a = 0.245, on 4 samples with a circular border: by hand, its
    eigenvalues are 1 − 2a + 2a cos(πk/2) = 1, 0.51, 0.02, 0.51 (k = 0 … 3), with the
    eigenvectors q0 = ½(1, 1, 1, 1), q2 = ½(1, −1, 1, −1), c = (1, 0, −1, 0)/√2 and
    s = (0, 1, 0, −1)/√2. Returns the kernel, the matrix inverse M⁻¹ and the pseudo-inverse
    with the singular value 0.02 < 3e-2 zeroed (DDRM's ZERO)."""
    a = 0.245
    kernel = torch.tensor([a, 1 - 2 * a, a], dtype=D64)
    q0 = torch.tensor([1.0, 1, 1, 1], dtype=D64) / 2
    q2 = torch.tensor([1.0, -1, 1, -1], dtype=D64) / 2
    c = torch.tensor([1.0, 0, -1, 0], dtype=D64) / 2**0.5
    s = torch.tensor([0.0, 1, 0, -1], dtype=D64) / 2**0.5
    kept = torch.outer(q0, q0) + (torch.outer(c, c) + torch.outer(s, s)) / 0.51
    return kernel, kept + torch.outer(q2, q2) / 0.02, kept


def test_blur_pinv_zeroes_the_singular_values_below_the_cutoff_by_hand():
    """DDRM's Deblurring zeroes the 1-D singular values below ZERO = 3e-2: so do the blurs'
    ``pinv`` and ``range_mask`` by default (SeparableBlur and the FFT Blur of the same
    separable kernel alike), while ``forward``, ``adjoint`` and ``singulars`` stay exact;
    ``pinv_cutoff=0`` is the full inverse."""
    kernel, inverse, truncated = _three_tap_circulant_factors()
    shape = (1, 4, 4)
    m = conv_matrix(kernel, 4, "circular")
    _close(torch.linalg.svdvals(m), torch.tensor([1.0, 0.51, 0.51, 0.02], dtype=D64))
    _close(inverse, torch.linalg.inv(m))
    y = torch.randn(2, *shape, generator=_gen(7), dtype=D64)
    x = torch.randn(2, *shape, generator=_gen(8), dtype=D64)
    for op in (
        SeparableBlur(kernel, shape, "circular"),
        Blur(torch.outer(kernel, kernel), shape),
    ):
        assert op.pinv_cutoff == 3e-2
        _close(op.pinv(y), truncated @ y @ truncated.T)
        # 2-D singular values s_a s_b: zero where either factor is 0.02 (7 of 16), though
        # 0.51² = 0.26 and 1 · 0.02 = 0.02 are products like the ones kept and dropped.
        s, keep = op.singulars(D64), op.range_mask(D64)
        assert int(keep.sum()) == 9
        _close(
            torch.sort(s[keep]).values, torch.tensor([0.51**2] * 4 + [0.51] * 4 + [1.0], dtype=D64)
        )
        _close(
            torch.sort(s[~keep]).values,
            torch.tensor([0.02**2] + [0.02 * 0.51] * 4 + [0.02] * 2, dtype=D64),
        )
        _close(op(x), m @ x @ m.T)  # the forward model keeps every tap
        torch.testing.assert_close(
            (op(x) * y).sum(), (x * op.adjoint(y)).sum(), rtol=1e-12, atol=1e-12
        )
        _close(op.pinv(op(op.pinv(y))), op.pinv(y))
    for op in (
        SeparableBlur(kernel, shape, "circular", pinv_cutoff=0.0),
        Blur(torch.outer(kernel, kernel), shape, pinv_cutoff=0.0),
    ):
        _close(op.pinv(y), inverse @ y @ inverse.T)
        assert bool(op.range_mask(D64).all())
    # The registry's blurs take the cutoff as a parameter, 3e-2 by default.
    assert operator_parameters("deblur-gaussian")["pinv_cutoff"] == 3e-2
    full = build_operator("deblur-gaussian", (1, 28, 28), pinv_cutoff=0.0)
    assert bool(full.range_mask().all()) and not bool(
        build_operator("deblur-gaussian", (1, 28, 28)).range_mask().all()
    )


def test_blur_cutoff_of_a_kernel_that_is_not_separable_is_on_the_2d_spectrum():
    kernel = torch.outer(*(gaussian_kernel_1d(3, 1.0, D64),) * 2)
    kernel[0, 0] += 0.2  # rank 2
    op = Blur(kernel, SHAPE, pinv_cutoff=0.1)
    khat = torch.fft.fft2(torch.nn.functional.pad(kernel, (0, 9, 0, 5))).abs()  # |K̂| [8, 12]
    expected = (khat >= 0.1).expand(SHAPE).flatten()
    assert 0 < int(expected.sum()) < expected.numel()
    assert torch.equal(op.range_mask(D64), expected)


def test_blur_matches_direct_circular_convolution():
    k = torch.rand(3, 3, generator=_gen(6), dtype=D64)
    op = Blur(k, SHAPE)
    x = _x(op)
    expected = torch.zeros_like(x)
    for i in range(3):
        for j in range(3):
            expected += k[i, j] * torch.roll(x, (i - 1, j - 1), (2, 3))
    _close(op(x), expected)


@pytest.mark.parametrize("size", [4, 7, 9])
def test_gaussian_kernel_sums_to_one_with_exactly_size_taps(size):
    k = gaussian_kernel(size, 1.5, D64)
    assert k.shape == (size, size)
    torch.testing.assert_close(k.sum(), torch.tensor(1.0, dtype=D64))
    assert bool((k > 0).all())
    torch.testing.assert_close(k, k.flip(0).flip(1))
    torch.testing.assert_close(uniform_kernel(size, D64).sum(), torch.tensor(1.0, dtype=D64))


def test_masks_hide_the_expected_pixels():
    m = box_mask((1, 8, 8), 4)
    assert not bool(m[0, 2:6, 2:6].any()) and int(m.sum()) == 64 - 16
    h = half_mask((8, 8), "right")
    assert bool(h[:, :4].all()) and not bool(h[:, 4:].any())
    r = random_mask((3, 10, 10), 0.25, _gen(7))
    assert int(r[0].sum()) == 25 and bool((r == r[0]).all())
    assert torch.equal(r, random_mask((3, 10, 10), 0.25, _gen(7)))


def test_phase_retrieval_is_sign_invariant_with_padded_shape():
    op = PhaseRetrieval(SHAPE, oversample=2.0)
    x = _x(op)
    y = op(x)
    assert y.shape == (3, 2, 16, 24) and op.output_shape == (2, 16, 24)
    _close(op(-x), y)
    assert bool((y >= 0).all())
    # Parseval: the orthonormal DFT keeps the energy of the padded image.
    _close(y.pow(2).sum((1, 2, 3)), x.pow(2).sum((1, 2, 3)))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64)], ids=["mnist", "colour64"])
@pytest.mark.parametrize("name", list(OPERATORS))
def test_registry_builds_every_operator_for_grey_and_colour_shapes(name, shape):
    if name == "phase-defocus" and shape[0] != 1:  # a phase object: one channel
        with pytest.raises(ValueError, match=r"input_shape \(1, H, W\)"):
            build_operator(name, shape)
        return
    op = build_operator(name, shape, generator=_gen(8))
    x = torch.rand(2, *shape)
    assert op(x).shape == (2, *op.output_shape)


@pytest.mark.parametrize("name", list(OPERATORS))
def test_observed_count_is_the_measured_entries_and_only_inpainting_has_a_mask(name):
    """M = the entries of y that carry a measurement: an inpainting mask's kept pixels (its
    y is 0 elsewhere, whatever x is), all of y for every other operator (identity included,
    which has no mask)."""
    shape = (1, 28, 28)
    op = build_operator(name, shape, generator=_gen(8))
    mask = op.observed_mask
    if not name.startswith("inpaint"):
        assert mask is None
        assert op.observed_count == math.prod(op.output_shape)
        return
    assert mask.shape == shape and op.observed_count == int(mask.sum())
    y = op(torch.rand(2, *shape) + 0.5)
    assert bool((y[:, mask == 0] == 0).all()) and bool((y[:, mask == 1] > 0).all())
    expected = {
        "inpaint-random": round(0.3 * 784),
        "inpaint-box": 784 - 14 * 14,
        "inpaint-half": 392,
    }
    assert op.observed_count == expected[name]


def test_bad_inputs_raise_value_error():
    op = AveragePoolSR(2, SHAPE)
    with pytest.raises(
        ValueError, match=r"expected x of shape \[B, 2, 8, 12\], got \[3, 1, 8, 12\]"
    ):
        op(torch.zeros(3, 1, 8, 12))
    with pytest.raises(ValueError, match="expected y of shape"):
        op.adjoint(torch.zeros(3, 2, 8, 12))
    with pytest.raises(ValueError, match="dividing H=8"):
        AveragePoolSR(3, SHAPE)
    with pytest.raises(ValueError, match="inpaint-box"):
        build_operator("inpaint-squares", SHAPE)
    with pytest.raises(ValueError, match="expected side"):
        half_mask(SHAPE, "middle")
    with pytest.raises(ValueError, match="0/1"):
        Inpainting(torch.full((4, 4), 0.5))


# ----------------------------------------------------------------- colour, 64 px, paper operators

COLOUR = (3, 64, 64)
REGISTRY_LINEAR = [
    name
    for name in OPERATORS
    if isinstance(build_operator(name, (1, 28, 28), _gen(0)), LinearOperator)
]


def _registry_op(name: str, shape=COLOUR) -> LinearOperator:
    return build_operator(name, shape, _gen(9)).double()


@pytest.mark.parametrize("name", REGISTRY_LINEAR)
def test_every_registry_operator_is_adjoint_and_pseudo_invertible_in_colour_at_64px(name):
    op = _registry_op(name)
    assert op.input_shape == COLOUR and op.output_shape[0] == 3
    x, y = _x(op, b=2), _y(op, b=2)
    torch.testing.assert_close((op(x) * y).sum(), (x * op.adjoint(y)).sum(), rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(op(op.pinv(op(x))), _kept_part(op, x), rtol=1e-7, atol=1e-7)
    # Channels do not mix: A acts on each channel alone, alike.
    lone = torch.zeros_like(x)
    lone[:, 1] = x[:, 1]
    out = op(lone)
    assert float(out[:, 0].abs().max()) == 0 and float(out[:, 2].abs().max()) == 0
    torch.testing.assert_close(out[:, 1], op(x[:, 1:2].expand(-1, 3, -1, -1))[:, 0])


@pytest.mark.parametrize("name", [n for n in REGISTRY_LINEAR if n != "denoise"])
def test_every_registry_svd_is_the_per_channel_one_in_colour_at_64px(name):
    op = _registry_op(name)
    assert isinstance(op, SVDOperator)
    x, y = _x(op, b=2), _y(op, b=2)
    s = op.singulars(dtype=D64)
    torch.testing.assert_close(op.U(s * op.Vt(x)), op(x), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(op.V(op.Vt(x)), x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(op.U(op.Ut(y)), y, rtol=1e-9, atol=1e-9)
    per_channel = s.view(3, -1)
    assert all(torch.equal(per_channel[0], per_channel[c]) for c in (1, 2))
    grey = _registry_op(name, (1, 64, 64)).singulars(dtype=D64)
    torch.testing.assert_close(per_channel[0], grey)


@pytest.mark.parametrize("name", ["sr4-bicubic", "deblur-gaussian-dps", "inpaint-box", "sr4"])
def test_svd_views_at_256px_store_only_small_factors(name):
    op = build_operator(name, (3, 256, 256), _gen(0))
    stored = sum(b.numel() * b.element_size() for b in op.buffers())
    assert stored < 4 * 2**20  # never a D × D matrix (D = 196 608: 300 GB in float64)
    x = torch.rand(1, 3, 256, 256)
    torch.testing.assert_close(op.V(op.Vt(x)), x, rtol=1e-4, atol=1e-4)


def _ddrm_srconv_matrix(img_dim: int, factor: int) -> torch.Tensor:
    """DDRM's ``SRConv`` 1-D matrix, written as its runner builds it (runners/diffusion.py and
    functions/svd_replacement.py of bahjat-kawar/ddrm): a 4·factor-tap bicubic kernel,
    a = −0.5, mirrored at the border."""

    def bicubic(x: float, a: float = -0.5) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    k = [bicubic((i - 2 * factor + 0.5) / factor) for i in range(4 * factor)]
    k = [v / sum(k) for v in k]
    h = torch.zeros(img_dim // factor, img_dim, dtype=D64)
    for i in range(factor // 2, img_dim + factor // 2, factor):
        for j in range(i - 2 * factor, i + 2 * factor):
            jj = -j - 1 if j < 0 else (img_dim - 1) - (j - img_dim) if j >= img_dim else j
            h[i // factor, jj] += k[j - i + 2 * factor]
    return h


@pytest.mark.parametrize(("n", "factor"), [(64, 4), (256, 4), (32, 2)])
def test_bicubic_matrix_is_ddrm_and_red_diff_srconv(n, factor):
    _close(bicubic_matrix(n, factor), _ddrm_srconv_matrix(n, factor))


def test_sr4_bicubic_preset_applies_the_srconv_matrix_on_both_axes():
    op = _registry_op("sr4-bicubic")
    x = _x(op, b=2)
    m = _ddrm_srconv_matrix(64, 4)
    _close(op(x), m @ x @ m.T)


def test_dps_gaussian_blur_is_scipy_kernel_after_reflection_padding():
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    delta = np.zeros((61, 61))
    delta[30, 30] = 1.0
    kernel = torch.from_numpy(ndimage.gaussian_filter(delta, sigma=3.0))  # DPS's Blurkernel
    torch.testing.assert_close(
        torch.outer(*(gaussian_kernel_1d(61, 3.0, D64, truncate=4.0),) * 2), kernel
    )
    op = _registry_op("deblur-gaussian-dps")
    x = _x(op, b=2)
    padded = torch.nn.functional.pad(x, (30,) * 4, mode="reflect")  # nn.ReflectionPad2d(30)
    expected = torch.nn.functional.conv2d(padded, kernel.expand(3, 1, 61, 61), groups=3)
    _close(op(x), expected)


@pytest.mark.parametrize("boundary", ["zero", "circular", "symmetric"])
def test_separable_blur_boundaries_match_padded_convolution(boundary):
    k = torch.rand(5, generator=_gen(3), dtype=D64)
    op = SeparableBlur(k, (2, 9, 11), boundary)
    x = torch.randn(2, 2, 9, 11, generator=_gen(4), dtype=D64)
    mode = {"zero": "constant", "circular": "wrap", "symmetric": "symmetric"}[boundary]
    import numpy as np

    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode=mode)
    kernel = torch.outer(k, k).expand(2, 1, 5, 5)
    expected = torch.nn.functional.conv2d(torch.from_numpy(padded), kernel, groups=2)
    _close(op(x), expected)
    assert conv_matrix(k, 9, boundary).shape == (9, 9)


def test_operator_parameters_override_the_presets():
    g = _gen(0)
    op = build_operator("inpaint-random", COLOUR, g, missing=0.25)
    assert float((op.mask == 0).double().mean()) == pytest.approx(0.25, abs=1e-3)
    op = build_operator("inpaint-box", COLOUR, box_size="10,20", box_position="5,7")
    hole = (op.mask[0] == 0).nonzero()
    assert hole.min(0).values.tolist() == [5, 7] and hole.max(0).values.tolist() == [14, 26]
    assert bool((op.mask[0] == op.mask[2]).all())
    paper = build_operator("inpaint-box", (3, 256, 256))  # the papers' 128×128 centred box
    hole = (paper.mask[0] == 0).nonzero()
    assert hole.min(0).values.tolist() == [64, 64] and int((paper.mask[0] == 0).sum()) == 128**2
    boxes = [build_operator("inpaint-box", COLOUR, _gen(s), box_position="random") for s in (1, 2)]
    assert not torch.equal(boxes[0].mask, boxes[1].mask)
    assert torch.equal(
        boxes[0].mask, build_operator("inpaint-box", COLOUR, _gen(1), box_position="random").mask
    )
    assert build_operator("sr4", COLOUR, sr_factor=8).output_shape == (3, 8, 8)
    assert build_operator("sr4-bicubic", COLOUR, sr_factor=2).output_shape == (3, 32, 32)
    blur = build_operator("deblur-gaussian", COLOUR, blur_size=9, blur_sigma=2.0)
    torch.testing.assert_close(blur.kernel, gaussian_kernel(9, 2.0))
    wide = build_operator("deblur-gaussian", COLOUR, blur_size=61, blur_sigma=3.0, boundary="zero")
    assert isinstance(wide, SeparableBlur)
    assert operator_parameters("deblur-gaussian-dps") == {
        "blur_size": 61, "blur_sigma": 3.0, "boundary": "reflect", "blur_truncate": 4.0,
        "pinv_cutoff": 3e-2,
    }  # fmt: skip


def test_bad_operator_parameters_are_one_line_errors():
    with pytest.raises(ValueError, match=r"parameters \['sr_factor'\], not \['missing'\]"):
        build_operator("sr4", COLOUR, missing=0.5)
    with pytest.raises(ValueError, match="missing"):
        build_operator("inpaint-random", COLOUR, missing=1.5)
    with pytest.raises(ValueError, match="at most 64x64"):
        build_operator("inpaint-box", COLOUR, box_size=65)
    with pytest.raises(ValueError, match="top-left corner"):
        build_operator("inpaint-box", COLOUR, box_size=32, box_position="40,0")
    with pytest.raises(ValueError, match="box_position"):
        build_operator("inpaint-box", COLOUR, box_position="middle")
    with pytest.raises(ValueError, match="dividing H=64"):
        build_operator("sr4", COLOUR, sr_factor=3)
    with pytest.raises(ValueError, match="another --boundary"):
        build_operator("deblur-gaussian", COLOUR, blur_size=99)
    with pytest.raises(ValueError, match="boundary"):
        build_operator("deblur-gaussian", COLOUR, boundary="renormalise")
