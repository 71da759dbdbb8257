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
    SVDOperator,
    box_mask,
    build_operator,
    gaussian_kernel,
    half_mask,
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
    op = LINEAR[name]
    x, y = _x(op), _y(op)
    _close(op(op.pinv(op(x))), op(x))
    _close(op.pinv(op(op.pinv(y))), op.pinv(y))


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
    inv = op._inverse_singulars(s)
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
    op = LINEAR["bicubic4"]
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


@pytest.mark.parametrize("name", list(OPERATORS))
def test_registry_builds_every_operator_for_mnist_shape(name):
    op = build_operator(name, (1, 28, 28), generator=_gen(8))
    x = torch.rand(2, 1, 28, 28)
    assert op(x).shape == (2, *op.output_shape)


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
