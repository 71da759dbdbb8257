"""Forward models A of inverse problems (y = A(x) + noise; the noise is not part of A).

Hierarchy (after deepinv's Physics → LinearPhysics → DecomposablePhysics split):

- :class:`Operator`: any, possibly nonlinear, map ``x [B, C, H, W] -> y [B, ...]``.
- :class:`LinearOperator`: adds ``adjoint``, ``pinv`` (Moore–Penrose) and ``normal``.
- :class:`SVDOperator`: A = U diag(s) Vᵀ known exactly (DDRM needs it). Spectral vectors are
  flattened per image, ``[B, D]`` with ``D = C·H·W``; ``singulars()`` has length ``D`` with zeros
  on the null space of A (not sorted). ``Vt``/``V`` map between x and all ``D`` spectral
  coordinates; ``Ut`` returns ``[B, D]`` with zeros where ``s = 0`` and ``U`` reads only the
  coordinates where A has a range, so ``U(s * Vt(x)) == A(x)`` and ``U(Ut(y)) == y``.

Operators follow the dtype/device of their input (buffers are cast on use), so float64 inputs
give float64-exact answers. Images are ``[B, C, H, W]`` with any number of channels (colour:
C = 3) and any size; ``input_shape`` is ``(C, H, W)``. Every operator here acts on each channel
alike, so its SVD is the per-channel one repeated over ``C``, and the SVD views never build a
``D × D`` matrix: masks and blocks are diagonal, :class:`Blur` is diagonal in the 2-D DFT and
:class:`Separable` (bicubic SR, boundary-aware Gaussian blur) keeps only the 1-D factors,
``[H', H]`` and ``[W', W]`` (half a megabyte each in float64 at 256 px).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Shape = tuple[int, int, int]


def _check(t: Tensor, shape: tuple[int, ...], name: str) -> None:
    if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != tuple(shape):
        want = ", ".join(str(s) for s in ("B", *shape))
        raise ValueError(f"expected {name} of shape [{want}], got {list(t.shape)}")


def image_shape_of(shape: tuple[int, ...]) -> Shape:
    """``shape`` as an image shape ``(C, H, W)`` of ints; ``ValueError`` unless it is one."""
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ValueError(f"expected an image shape (C, H, W) of positive sizes, got {shape}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


class Operator(nn.Module):
    """Forward model ``A``: ``forward(x [B, C, H, W]) -> y [B, *output_shape]``."""

    def __init__(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.input_shape: Shape = image_shape_of(tuple(input_shape))
        self.output_shape: tuple[int, ...] = tuple(int(s) for s in output_shape)

    def forward(self, x: Tensor) -> Tensor:
        _check(x, self.input_shape, "x")
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def observed_count(self) -> int:
        """M, the entries of one item's ``y`` that carry a measurement: all
        ``prod(output_shape)`` of them, except where ``y`` holds zeros in place of what was not
        measured (:class:`Inpainting`: the kept entries). Data terms averaged over M keep
        their weight's meaning across operators (RED-diff's λ)."""
        return math.prod(self.output_shape)

    @property
    def observed_mask(self) -> Tensor | None:
        """For an operator that measures some entries of ``x`` as they are and hides the rest
        (``y = m ⊙ x``, :class:`Inpainting`): the mask ``m [C, H, W]``, 1 where observed
        (float, on the operator's device). ``None`` for every other operator, identity
        included. Solvers may hard-replace the observed entries (ΠGDM's inpainting)."""
        return None


class LinearOperator(Operator):
    """Linear ``A`` with ``adjoint`` (Aᵀ), ``pinv`` (A⁺) and ``normal`` (AᵀA).

    The default ``pinv`` runs conjugate gradient on AᵀA x = Aᵀy from x = 0, which stays in the
    row space of A and so converges to the minimum-norm least-squares solution A⁺y. Concrete
    operators override it with closed forms.
    """

    cg_max_iter: int = 200
    cg_tol: float = 1e-12

    def adjoint(self, y: Tensor) -> Tensor:
        """``y [B, *output_shape] -> Aᵀy [B, C, H, W]``."""
        _check(y, self.output_shape, "y")
        return self._adjoint(y)

    def pinv(self, y: Tensor, damping: float = 0.0) -> Tensor:
        """``y [B, *output_shape] -> A⁺y [B, C, H, W]`` (Moore–Penrose pseudo-inverse).

        ``damping = δ > 0`` gives the Tikhonov-regularised inverse (AᵀA + δI)⁻¹Aᵀy instead,
        which stays bounded where A has tiny singular values (noisy deblurring: δ = σ_y²)."""
        _check(y, self.output_shape, "y")
        if not damping >= 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        return self._damped_pinv(y, damping) if damping > 0 else self._pinv(y)

    def normal(self, x: Tensor) -> Tensor:
        """``x [B, C, H, W] -> AᵀAx [B, C, H, W]``."""
        return self.adjoint(self.forward(x))

    def _adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def _pinv(self, y: Tensor) -> Tensor:
        return self._normal_solve(self._adjoint(y), 0.0)

    def _damped_pinv(self, y: Tensor, damping: float) -> Tensor:
        return self._normal_solve(self._adjoint(y), damping)

    def _normal_solve(self, b: Tensor, damping: float) -> Tensor:
        """Conjugate gradient on (AᵀA + δI) x = b from x = 0."""

        def dot(a: Tensor, b: Tensor) -> Tensor:
            return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))

        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rr = dot(r, r)
        stop = self.cg_tol**2 * dot(b, b).clamp_min(torch.finfo(b.dtype).tiny)
        for _ in range(self.cg_max_iter):
            if bool((rr <= stop).all()):
                break
            q = self._adjoint(self._forward(p)) + damping * p
            alpha = torch.where(rr > stop, rr / dot(p, q).clamp_min(torch.finfo(b.dtype).tiny), 0)
            x = x + alpha * p
            r = r - alpha * q
            rr_new = dot(r, r)
            p = r + torch.where(rr > stop, rr_new / rr.clamp_min(torch.finfo(b.dtype).tiny), 0) * p
            rr = rr_new
        return x


class SVDOperator(LinearOperator):
    """Linear operator with an exact SVD A = U diag(s) Vᵀ (see the module docstring for shapes).

    ``forward``/``adjoint``/``pinv`` default to the SVD; subclasses may override them with
    equal, faster closed forms. In ``pinv``, singular values ``s <= rtol · max(s)`` count as
    zero, with ``rtol = pinv_rtol`` or, when ``None``, ``D · eps(dtype)`` (as torch.linalg.pinv).
    Blurs and bicubic SR also zero the singular values below a fixed ``pinv_cutoff`` (the
    official DDRM's ``ZERO``): :meth:`range_mask` says which coordinates count, for ``pinv``
    and for DDRM alike. ``singulars`` and ``forward`` stay exact.
    """

    pinv_rtol: float | None = None

    @property
    def spectral_dim(self) -> int:
        return math.prod(self.input_shape)

    def V(self, z: Tensor) -> Tensor:
        """Spectral ``z [B, D] -> x [B, C, H, W]`` (orthogonal)."""
        _check(z, (self.spectral_dim,), "z")
        return self._V(z)

    def Vt(self, x: Tensor) -> Tensor:
        """Image ``x [B, C, H, W] -> z [B, D]``; inverse of ``V``."""
        _check(x, self.input_shape, "x")
        return self._Vt(x)

    def U(self, z: Tensor) -> Tensor:
        """Spectral ``z [B, D] -> y [B, *output_shape]``; reads only coordinates in the range."""
        _check(z, (self.spectral_dim,), "z")
        return self._U(z)

    def Ut(self, y: Tensor) -> Tensor:
        """Measurement ``y -> z [B, D]``, zero outside the range coordinates."""
        _check(y, self.output_shape, "y")
        return self._Ut(y)

    def singulars(
        self, dtype: torch.dtype | None = None, device: torch.device | None = None
    ) -> Tensor:
        """Singular values ``s [D]`` in spectral order, zeros on the null space of A."""
        return self._singulars(dtype or torch.get_default_dtype(), device)

    def _V(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def _Vt(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _U(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def _Ut(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def _singulars(self, dtype: torch.dtype, device: torch.device | None) -> Tensor:
        raise NotImplementedError

    def range_mask(
        self, dtype: torch.dtype | None = None, device: torch.device | None = None
    ) -> Tensor:
        """Bool ``[D]`` in spectral order: the coordinates that count as A's range — ``pinv``
        inverts them, DDRM reads y there — and not as null space: ``s > rtol · max(s)`` (see
        the class docstring), and above the operator's ``pinv_cutoff`` where it has one."""
        return self._range_mask(self._singulars(dtype or torch.get_default_dtype(), device))

    def pinv_singulars(
        self, dtype: torch.dtype | None = None, device: torch.device | None = None
    ) -> Tensor:
        """``s⁺ [D]``: ``1 / s`` on :meth:`range_mask`, 0 elsewhere, so that
        ``pinv(y) == V(s⁺ · Ut(y))``."""
        s = self._singulars(dtype or torch.get_default_dtype(), device)
        keep = self._range_mask(s)
        return torch.where(keep, 1 / torch.where(keep, s, 1), 0)

    def _range_mask(self, s: Tensor) -> Tensor:
        """:meth:`range_mask` given the singular values ``s [D]`` (or any shape)."""
        rtol = (
            self.pinv_rtol if self.pinv_rtol is not None else s.numel() * torch.finfo(s.dtype).eps
        )
        return s > rtol * s.abs().max()

    def _forward(self, x: Tensor) -> Tensor:
        return self._U(self._singulars(x.dtype, x.device) * self._Vt(x))

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._V(self._singulars(y.dtype, y.device) * self._Ut(y))

    def _pinv(self, y: Tensor) -> Tensor:
        return self._V(self.pinv_singulars(y.dtype, y.device) * self._Ut(y))

    def _damped_pinv(self, y: Tensor, damping: float) -> Tensor:
        s = self._singulars(y.dtype, y.device)
        return self._V(s / (s**2 + damping) * self._Ut(y))


# ----------------------------------------------------------------------------- masks


def _mask_hw(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) not in (2, 3):
        raise ValueError(f"expected a mask shape (H, W) or (C, H, W), got {shape}")
    return int(shape[-2]), int(shape[-1])


def random_mask(
    shape: tuple[int, ...], keep_fraction: float, generator: torch.Generator | None = None
) -> Tensor:
    """Bool mask of ``shape`` keeping exactly ``round(keep_fraction·H·W)`` random pixels.

    For a ``(C, H, W)`` shape the pixel pattern is shared by all channels.
    """
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"expected keep_fraction in [0, 1], got {keep_fraction}")
    h, w = _mask_hw(shape)
    keep = torch.randperm(h * w, generator=generator)[: round(keep_fraction * h * w)]
    mask = torch.zeros(h * w, dtype=torch.bool)
    mask[keep] = True
    return mask.view(h, w).expand(shape).clone()


def box_mask(
    shape: tuple[int, ...],
    box_size: int | tuple[int, int],
    position: tuple[int, int] | None = None,
) -> Tensor:
    """Bool mask of ``shape``, True everywhere but a ``box_size`` hole (a side, or ``(h, w)``)
    whose top-left corner is at ``position = (top, left)`` (default: centred)."""
    h, w = _mask_hw(shape)
    bh, bw = (box_size, box_size) if isinstance(box_size, int) else box_size
    if not (0 <= bh <= h and 0 <= bw <= w):
        raise ValueError(f"expected a box of at most {h}x{w} pixels (HxW), got {bh}x{bw}")
    top, left = ((h - bh) // 2, (w - bw) // 2) if position is None else position
    if not (0 <= top <= h - bh and 0 <= left <= w - bw):
        raise ValueError(
            f"expected the {bh}x{bw} box's top-left corner in [0, {h - bh}] x [0, {w - bw}], "
            f"got ({top}, {left})"
        )
    mask = torch.ones(h, w, dtype=torch.bool)
    mask[top : top + bh, left : left + bw] = False
    return mask.expand(shape).clone()


def half_mask(shape: tuple[int, ...], side: str = "right") -> Tensor:
    """Bool mask of ``shape`` hiding one half: ``side`` in left, right, top, bottom."""
    h, w = _mask_hw(shape)
    mask = torch.ones(h, w, dtype=torch.bool)
    if side == "right":
        mask[:, w // 2 :] = False
    elif side == "left":
        mask[:, : w - w // 2] = False
    elif side == "bottom":
        mask[h // 2 :, :] = False
    elif side == "top":
        mask[: h - h // 2, :] = False
    else:
        raise ValueError(f"expected side in ['left', 'right', 'top', 'bottom'], got {side!r}")
    return mask.expand(shape).clone()


# ----------------------------------------------------------------------------- operators


class Inpainting(SVDOperator):
    """``y = x ⊙ mask`` kept at full image shape ``[B, C, H, W]`` (hidden pixels are 0).

    ``mask`` is ``[C, H, W]`` or ``[H, W]`` (then shared over ``channels``), bool or 0/1.
    SVD: U = V = identity, ``s = mask`` flattened.
    """

    def __init__(self, mask: Tensor, channels: int = 1) -> None:
        if mask.dim() == 2:
            mask = mask.expand(channels, *mask.shape)
        if mask.dim() != 3:
            raise ValueError(f"expected mask of shape [C, H, W] or [H, W], got {list(mask.shape)}")
        m = mask.to(torch.get_default_dtype())
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("expected a mask of booleans or 0/1 values")
        super().__init__(tuple(m.shape), tuple(m.shape))
        self.register_buffer("mask", m.clone())

    def _m(self, t: Tensor) -> Tensor:
        return self.mask.to(dtype=t.dtype, device=t.device)

    @property
    def observed_count(self) -> int:
        """The kept entries of one item (channels counted): ``y``'s zeros elsewhere are no
        measurement."""
        return int(self.mask.sum().item())

    @property
    def observed_mask(self) -> Tensor | None:
        """The mask ``[C, H, W]`` (1 = observed)."""
        return self.mask

    def _forward(self, x: Tensor) -> Tensor:
        return x * self._m(x)

    _adjoint = _forward

    def _pinv(self, y: Tensor) -> Tensor:
        return y * self._m(y)

    def _V(self, z: Tensor) -> Tensor:
        return z.view(-1, *self.input_shape)

    def _Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1)

    def _U(self, z: Tensor) -> Tensor:
        return z.view(-1, *self.input_shape)

    def _Ut(self, y: Tensor) -> Tensor:
        return y.flatten(1)

    def _singulars(self, dtype: torch.dtype, device: torch.device | None) -> Tensor:
        return self.mask.flatten().to(dtype=dtype, device=device)


class Denoising(Inpainting):
    """Identity ``y = x`` (denoising: only the separate measurement noise remains)."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__(torch.ones(image_shape_of(tuple(input_shape)), dtype=torch.bool))

    @property
    def observed_mask(self) -> None:
        """``None``: the identity hides nothing (no entry to hard-replace)."""
        return None

    def _forward(self, x: Tensor) -> Tensor:
        return x

    _adjoint = _pinv = _forward


def _block_basis(f: int, dtype: torch.dtype, device: torch.device | None) -> Tensor:
    """Orthogonal ``Q [f², f²]`` whose first column is ``1/f · 1`` (a Householder reflector)."""
    n = f * f
    q = torch.eye(n, dtype=dtype, device=device)
    if f == 1:
        return q
    v = -torch.full((n,), 1.0 / f, dtype=dtype, device=device)
    v[0] += 1.0
    return q - 2 * torch.outer(v, v) / (v @ v)


class AveragePoolSR(SVDOperator):
    """Super-resolution by ``factor``: ``y [B, C, H/f, W/f]`` = mean over each f×f block.

    SVD per channel and block: the singular value is ``1/f`` with right vector ``1/f · 1``; the
    rest of the block is null space. Spectral order is ``(c, i, j, k)`` for block ``(i, j)`` and
    basis vector ``k`` of :func:`_block_basis` (``k = 0`` is the block mean). ``U`` is the
    identity on the ``k = 0`` coordinates. ``A⁺y`` is nearest-neighbour upsampling of ``y``.
    """

    def __init__(self, factor: int, input_shape: tuple[int, ...]) -> None:
        c, h, w = image_shape_of(tuple(input_shape))
        if factor < 1 or h % factor or w % factor:
            raise ValueError(f"expected a factor >= 1 dividing H={h} and W={w}, got {factor}")
        super().__init__((c, h, w), (c, h // factor, w // factor))
        self.factor = int(factor)

    def _forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.factor)

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._pinv(y) / self.factor**2

    def _pinv(self, y: Tensor) -> Tensor:
        return y.repeat_interleave(self.factor, -2).repeat_interleave(self.factor, -1)

    def _blocks(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, h, w, f²]
        c, h, w, f = *self.output_shape, self.factor
        return x.reshape(-1, c, h, f, w, f).permute(0, 1, 2, 4, 3, 5).reshape(-1, c, h, w, f * f)

    def _Vt(self, x: Tensor) -> Tensor:
        return (self._blocks(x) @ _block_basis(self.factor, x.dtype, x.device)).flatten(1)

    def _V(self, z: Tensor) -> Tensor:
        c, h, w, f = *self.output_shape, self.factor
        b = z.view(-1, c, h, w, f * f) @ _block_basis(f, z.dtype, z.device).T
        return b.view(-1, c, h, w, f, f).permute(0, 1, 2, 4, 3, 5).reshape(-1, *self.input_shape)

    def _U(self, z: Tensor) -> Tensor:
        return z.view(-1, *self.output_shape, self.factor**2)[..., 0]

    def _Ut(self, y: Tensor) -> Tensor:
        z = y.new_zeros(*y.shape, self.factor**2)
        z[..., 0] = y
        return z.flatten(1)

    def _singulars(self, dtype: torch.dtype, device: torch.device | None) -> Tensor:
        s = torch.zeros(*self.output_shape, self.factor**2, dtype=dtype, device=device)
        s[..., 0] = 1.0 / self.factor
        return s.flatten()


# ----------------------------------------------------------------------------- separable

BOUNDARIES = ("zero", "reflect", "symmetric", "circular")
"""Boundary rules of :func:`conv_matrix` for a tap ``j`` outside ``[0, n)``: ``zero`` drops it
(zero padding; DDRM's and RED-diff's ``Deblurring``), ``reflect`` mirrors about the edge pixel
(``-1 → 1``: ``torch.nn.ReflectionPad2d``, DPS's blur), ``symmetric`` mirrors about the edge
(``-1 → 0``: DDRM's and RED-diff's ``SRConv``) and ``circular`` wraps around."""


def _fold(j: Tensor, n: int, boundary: str) -> Tensor:
    """Indices ``j`` (any integers) mapped into ``[0, n)`` by ``boundary``; ``-1`` where a
    ``zero`` boundary drops them."""
    if boundary == "zero":
        return torch.where((j >= 0) & (j < n), j, -1)
    if boundary == "circular":
        return j % n
    if boundary == "symmetric":
        j = j % (2 * n)
        return torch.where(j < n, j, 2 * n - 1 - j)
    if n == 1:
        return torch.zeros_like(j)
    j = j % (2 * n - 2)  # reflect
    return torch.where(j < n, j, 2 * n - 2 - j)


def _scatter_rows(weights: Tensor, columns: Tensor, n: int, boundary: str) -> Tensor:
    """``[R, n]`` with ``weights [R, K]`` added at ``columns [R, K]`` folded by ``boundary``."""
    folded = _fold(columns, n, boundary)
    keep = folded >= 0
    rows = torch.arange(weights.shape[0]).unsqueeze(1).expand_as(columns)
    matrix = torch.zeros(weights.shape[0], n, dtype=torch.float64)
    matrix.index_put_((rows[keep], folded[keep]), weights[keep], accumulate=True)
    return matrix


def conv_matrix(kernel: Tensor, n: int, boundary: str = "reflect") -> Tensor:
    """1-D correlation with ``kernel [K]`` on ``n`` samples as a matrix ``[n, n]`` (float64):
    ``(M x)_i = Σ_t kernel[t] · x[i + t − K // 2]``, taps outside ``[0, n)`` handled by
    ``boundary`` (one of :data:`BOUNDARIES`), as ``conv2d`` after padding by ``K // 2``."""
    if kernel.dim() != 1 or kernel.numel() < 1:
        raise ValueError(f"expected a 1-D kernel, got shape {list(kernel.shape)}")
    if boundary not in BOUNDARIES:
        raise ValueError(f"expected boundary in {list(BOUNDARIES)}, got {boundary!r}")
    k = kernel.detach().to(torch.float64).cpu()
    offsets = torch.arange(k.numel()) - k.numel() // 2
    columns = torch.arange(n).unsqueeze(1) + offsets
    return _scatter_rows(k.expand(n, -1), columns, n, boundary)


def cubic(x: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel with parameter ``a`` (−0.5: MATLAB's, PIL's and the
    bicubic kernel of the DDRM, DPS and RED-diff code), support ``|x| < 2``."""
    ax = x.abs()
    near = ((a + 2) * ax - (a + 3)) * ax**2 + 1
    far = ((a * ax - 5 * a) * ax + 8 * a) * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


SR_BOUNDARIES = ("symmetric", "reflect", "zero", "circular", "renormalise")
"""Boundary rules of :func:`bicubic_matrix`: those of :data:`BOUNDARIES`, or ``renormalise``
(drop the taps outside and rescale the rest to sum 1: PIL's and
``F.interpolate(..., antialias=True)``'s rule)."""


def bicubic_matrix(n: int, factor: int, boundary: str = "symmetric", a: float = -0.5) -> Tensor:
    """Antialiased bicubic downsampling by ``factor`` as a matrix ``[n // factor, n]``
    (float64): output ``o`` is centred on its block, at ``c = (o + ½)·factor − ½``, with the
    weights ``cubic((j − c) / factor)`` of the ``4·factor`` pixels ``j`` around it, normalised
    to sum 1 (exactly the kernel of DDRM's and RED-diff's ``sr_bicubic``/``bicubic`` task,
    ``k[i] = cubic((i − 2·factor + ½) / factor)``, for even factors; for odd factors it is
    centred on the block, where their kernel is half a pixel off). Taps outside the image
    follow ``boundary`` (:data:`SR_BOUNDARIES`; DDRM's ``SRConv`` mirrors: ``symmetric``)."""
    if boundary not in SR_BOUNDARIES:
        raise ValueError(f"expected boundary in {list(SR_BOUNDARIES)}, got {boundary!r}")
    if factor < 1 or n < factor:
        raise ValueError(f"expected 1 <= factor <= n={n}, got {factor}")
    m = n // factor
    centres = (torch.arange(m, dtype=torch.float64) + 0.5) * factor - 0.5
    first = torch.floor(centres - 2 * factor).long() + 1
    columns = first.unsqueeze(1) + torch.arange(4 * factor + 1)
    weights = cubic((columns - centres.unsqueeze(1)) / factor, a)
    weights = weights / weights.sum(1, keepdim=True)
    if boundary != "renormalise":
        return _scatter_rows(weights, columns, n, boundary)
    weights = torch.where((columns >= 0) & (columns < n), weights, 0)
    return _scatter_rows(weights / weights.sum(1, keepdim=True), columns, n, "zero")


class Separable(SVDOperator):
    """``y = M_h x M_wᵀ`` on every channel: ``x [B, C, H, W] -> y [B, C, H', W']`` for 1-D
    operators ``M_h [H', H]`` and ``M_w [W', W]`` (``H' <= H``, ``W' <= W``).

    Its SVD is the Kronecker product of the 1-D SVDs ``M = U_1 diag(s_1) V_1ᵀ`` (full ``V_1``,
    computed in float64 at construction), so the SVD views cost two small matrix products and
    store ``O(H² + W²)`` numbers, never ``D × D``. The spectral grid per channel is ``[H, W]``:
    ``s[a, b] = s_h[a] · s_w[b]`` for ``a < H'``, ``b < W'``, else 0; ``U`` reads the
    ``[H', W']`` corner of each channel.

    ``pinv_cutoff = c``: 1-D singular values ``s_h[a] < c`` or ``s_w[b] < c`` count as zero
    in ``pinv`` and :meth:`range_mask` (so ``s[a, b]`` does where either factor is below c),
    as the official DDRM's ``Deblurring`` and ``SRConv`` zero theirs below ``ZERO = 3e-2``
    (``functions/svd_replacement.py``). ``forward`` and ``singulars`` stay exact. 0 keeps
    every nonzero one.
    """

    def __init__(
        self, m_h: Tensor, m_w: Tensor, channels: int = 1, pinv_cutoff: float = 0.0
    ) -> None:
        if not pinv_cutoff >= 0:
            raise ValueError(f"expected pinv_cutoff >= 0, got {pinv_cutoff}")
        for name, mat in (("m_h", m_h), ("m_w", m_w)):
            if mat.dim() != 2 or mat.shape[0] > mat.shape[1] or mat.shape[0] < 1:
                raise ValueError(
                    f"expected {name} of shape [n_out, n] with n_out <= n, got {list(mat.shape)}"
                )
        (hp, h), (wp, w) = m_h.shape, m_w.shape
        super().__init__((channels, h, w), (channels, hp, wp))
        for axis, mat in (("h", m_h), ("w", m_w)):
            mat = mat.detach().to(torch.float64).cpu()
            u, s, vt = torch.linalg.svd(mat)
            self.register_buffer(f"m_{axis}", mat)
            self.register_buffer(f"u_{axis}", u)
            self.register_buffer(f"s_{axis}", s)
            self.register_buffer(f"v_{axis}", vt.T.contiguous())
        self.pinv_cutoff = float(pinv_cutoff)
        kept = torch.zeros(h, w, dtype=torch.bool)
        kept[:hp, :wp] = torch.outer(self.s_h >= pinv_cutoff, self.s_w >= pinv_cutoff)
        self.register_buffer("cutoff_mask", kept)

    def _range_mask(self, s: Tensor) -> Tensor:
        kept = self.cutoff_mask.to(s.device).expand(self.input_shape).flatten()
        return super()._range_mask(s) & kept

    def _get(self, name: str, t: Tensor) -> Tensor:
        return getattr(self, name).to(dtype=t.dtype, device=t.device)

    def _forward(self, x: Tensor) -> Tensor:
        return self._get("m_h", x) @ x @ self._get("m_w", x).T

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._get("m_h", y).T @ y @ self._get("m_w", y)

    def _V(self, z: Tensor) -> Tensor:
        return self._get("v_h", z) @ z.view(-1, *self.input_shape) @ self._get("v_w", z).T

    def _Vt(self, x: Tensor) -> Tensor:
        return (self._get("v_h", x).T @ x @ self._get("v_w", x)).flatten(1)

    def _U(self, z: Tensor) -> Tensor:
        _, h, w = self.output_shape
        core = z.view(-1, *self.input_shape)[..., :h, :w]
        return self._get("u_h", z) @ core @ self._get("u_w", z).T

    def _Ut(self, y: Tensor) -> Tensor:
        c, h, w = self.input_shape
        z = y.new_zeros(y.shape[0], c, h, w)
        z[..., : y.shape[-2], : y.shape[-1]] = self._get("u_h", y).T @ y @ self._get("u_w", y)
        return z.flatten(1)

    def _singulars(self, dtype: torch.dtype, device: torch.device | None) -> Tensor:
        c, h, w = self.input_shape
        s_h, s_w = (t.to(dtype=dtype, device=device) for t in (self.s_h, self.s_w))
        s = torch.zeros(h, w, dtype=dtype, device=device)
        s[: s_h.numel(), : s_w.numel()] = torch.outer(s_h, s_w)
        return s.expand(c, h, w).flatten()


class BicubicSR(Separable):
    """Bicubic super-resolution by ``factor``: ``y [B, C, H/f, W/f] = M_h x M_wᵀ`` with the
    antialiased bicubic matrices of :func:`bicubic_matrix` (a = −0.5, 4f taps). The default
    ``boundary="symmetric"`` is the operator of DDRM's and RED-diff's bicubic SR (``SRConv``);
    ``"renormalise"`` equals ``F.interpolate(x, mode="bicubic", antialias=True)`` (PIL). The
    interior rows, and so DPS's ``Resizer`` away from the border, are the same in both.
    ``pinv_cutoff`` as :class:`Separable` (SRConv's 3e-2; the 1-D singular values of ×4 are
    above 0.34 at every size, so it zeroes none there).
    """

    def __init__(
        self,
        factor: int,
        input_shape: tuple[int, ...],
        boundary: str = "symmetric",
        pinv_cutoff: float = 3e-2,
    ) -> None:
        c, h, w = image_shape_of(tuple(input_shape))
        if factor < 1 or h % factor or w % factor:
            raise ValueError(f"expected a factor >= 1 dividing H={h} and W={w}, got {factor}")
        m_h, m_w = bicubic_matrix(h, factor, boundary), bicubic_matrix(w, factor, boundary)
        super().__init__(m_h, m_w, c, pinv_cutoff)
        self.factor, self.boundary = int(factor), boundary


class SeparableBlur(Separable):
    """Blur by a separable kernel ``outer(kernel_h, kernel_w)`` with a boundary rule:
    ``y [B, C, H, W]`` is ``conv2d`` (a correlation, kernel centre ``K // 2``) of ``x`` padded by
    ``boundary`` (:data:`BOUNDARIES`). ``boundary="reflect"`` with :func:`gaussian_kernel_1d`
    ``(61, 3.0, truncate=4.0)`` is DPS's Gaussian blur (``ReflectionPad2d`` + a 61×61 conv);
    ``"zero"`` is DDRM's and RED-diff's ``Deblurring`` (which, unlike this, skips the last tap).
    ``kernel_w`` defaults to ``kernel_h``. The SVD is :class:`Separable`'s (a circular blur has
    the cheaper :class:`Blur`). ``pinv_cutoff`` (default 3e-2, the official DDRM's ``ZERO``
    for deblurring) zeroes the 1-D singular values below it in ``pinv`` and for DDRM: DPS's
    σ = 3 px kernel keeps 8 of 28 per axis on a 28 px image, so A⁺y of a noiseless y no
    longer inverts the blur's far tail (16 dB on MNIST instead of 136).
    """

    def __init__(
        self,
        kernel_h: Tensor,
        input_shape: tuple[int, ...],
        boundary: str = "reflect",
        kernel_w: Tensor | None = None,
        pinv_cutoff: float = 3e-2,
    ) -> None:
        c, h, w = image_shape_of(tuple(input_shape))
        kernel_w = kernel_h if kernel_w is None else kernel_w
        m_h, m_w = conv_matrix(kernel_h, h, boundary), conv_matrix(kernel_w, w, boundary)
        super().__init__(m_h, m_w, c, pinv_cutoff)
        self.boundary = boundary


# ----------------------------------------------------------------------------- kernels


def gaussian_kernel_1d(
    size: int, sigma: float, dtype: torch.dtype | None = None, truncate: float | None = None
) -> Tensor:
    """Sampled Gaussian ``[size]`` (σ in pixels, centred on tap ``(size − 1) / 2``), sum 1.

    ``truncate`` zeroes the taps farther than ``int(truncate · σ + 0.5)`` from the centre
    before normalising, as ``scipy.ndimage.gaussian_filter`` (default 4.0) does: DPS's kernel
    is ``gaussian_filter`` of a 61×61 delta with σ = 3, i.e. ``truncate=4.0`` (25 nonzero taps).
    """
    if size < 1 or not sigma > 0:
        raise ValueError(f"expected size >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    if truncate is not None:
        g = torch.where(t.abs() <= int(truncate * sigma + 0.5), g, 0)
    return (g / g.sum()).to(dtype or torch.get_default_dtype())


def gaussian_kernel(
    size: int, sigma: float, dtype: torch.dtype | None = None, truncate: float | None = None
) -> Tensor:
    """Isotropic Gaussian ``[size, size]`` with exactly ``size`` taps per axis, sum 1: the outer
    product of :func:`gaussian_kernel_1d` (``truncate`` as there).

    (The reference RED-diff separable blur drops the last tap; ours keeps all ``size``.)
    """
    g = gaussian_kernel_1d(size, sigma, torch.float64, truncate)
    return torch.outer(g, g).to(dtype or torch.get_default_dtype())


def uniform_kernel(size: int, dtype: torch.dtype | None = None) -> Tensor:
    """Box kernel ``[size, size]`` of value ``1/size²`` (sum 1)."""
    if size < 1:
        raise ValueError(f"expected size >= 1, got {size}")
    return torch.full((size, size), 1.0 / size**2, dtype=dtype or torch.get_default_dtype())


def _hartley(x: Tensor) -> Tensor:
    """Orthonormal 2-D discrete Hartley transform over the last two axes (its own inverse)."""
    X = torch.fft.fft2(x, norm="ortho")
    return X.real - X.imag


class Blur(SVDOperator):
    """Circular convolution with ``kernel [k, k]`` (periodic boundary), via the 2-D FFT.

    The kernel centre (index ``k // 2``) sits at pixel offset 0. With K̂ the DFT of the kernel,
    A = F* diag(K̂) F. Real SVD: V = Vᵀ = the orthonormal 2-D Hartley transform H (it
    diagonalises the even multiplier |K̂|), U = P H with P = F* diag(K̂/|K̂|) F a real all-pass
    filter; s = |K̂| in ``fft2`` frequency order per channel. ``pinv`` is
    IFFT(conj(K̂)/|K̂|² · Ŷ) on :meth:`range_mask`, 0 elsewhere.

    ``pinv_cutoff = c`` (default 3e-2, the official DDRM's ``ZERO`` for deblurring) drops the
    frequencies whose singular value is below c as DDRM's separable ``Deblurring`` does: for a
    separable kernel ``outer(a, b)`` (rank 1; a Gaussian or box kernel), |K̂(u, v)| =
    |â(u)| · |b̂(v)| and (u, v) counts as zero where |â(u)| < c or |b̂(v)| < c (the factors
    scaled alike, ``a = b`` for a symmetric kernel); for any other kernel, where |K̂| < c.
    ``forward`` and ``singulars`` stay exact; ``pinv_cutoff=0`` keeps every nonzero one.
    """

    def __init__(
        self, kernel: Tensor, input_shape: tuple[int, ...], pinv_cutoff: float = 3e-2
    ) -> None:
        shape = image_shape_of(tuple(input_shape))
        if kernel.dim() != 2 or kernel.shape[0] > shape[1] or kernel.shape[1] > shape[2]:
            raise ValueError(
                f"expected a 2-D kernel no larger than {shape[1:]}, got {list(kernel.shape)}"
            )
        if not pinv_cutoff >= 0:
            raise ValueError(f"expected pinv_cutoff >= 0, got {pinv_cutoff}")
        super().__init__(shape, shape)
        self.register_buffer("kernel", kernel.clone())
        self.pinv_cutoff = float(pinv_cutoff)
        self.register_buffer("cutoff_mask", self._cutoff_mask(pinv_cutoff))

    def _cutoff_mask(self, cutoff: float) -> Tensor:
        """Bool ``[H, W]``: the frequencies (``fft2`` order) above the cutoff (class doc)."""
        k = self.kernel.detach().to(torch.float64).cpu()
        h, w = self.input_shape[1:]
        u, sv, vt = torch.linalg.svd(k)
        if sv.numel() < 2 or float(sv[1]) <= 1e-6 * float(sv[0]):  # separable: outer(a, b)
            a, b = u[:, 0] * sv[0].sqrt(), vt[0] * sv[0].sqrt()
            a_hat, b_hat = torch.fft.fft(a, n=h).abs(), torch.fft.fft(b, n=w).abs()
            return torch.outer(a_hat >= cutoff, b_hat >= cutoff)
        return self._khat(torch.float64, None).abs() >= cutoff

    def _range_mask(self, s: Tensor) -> Tensor:
        kept = self.cutoff_mask.to(s.device).expand(self.input_shape).flatten()
        return super()._range_mask(s) & kept

    def _khat(self, dtype: torch.dtype, device: torch.device | None) -> Tensor:
        kh, kw = self.kernel.shape
        pad = torch.zeros(self.input_shape[1:], dtype=dtype, device=device)
        pad[:kh, :kw] = self.kernel.to(dtype=dtype, device=device)
        return torch.fft.fft2(torch.roll(pad, (-(kh // 2), -(kw // 2)), (0, 1)))

    def _filter(self, t: Tensor, mult: Tensor) -> Tensor:
        return torch.fft.ifft2(torch.fft.fft2(t) * mult).real

    def _forward(self, x: Tensor) -> Tensor:
        return self._filter(x, self._khat(x.dtype, x.device))

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._filter(y, self._khat(y.dtype, y.device).conj())

    def _pinv(self, y: Tensor) -> Tensor:
        k = self._khat(y.dtype, y.device)
        inverse = self.pinv_singulars(y.dtype, y.device).view(self.input_shape)[0]  # 1/|K̂|
        return self._filter(y, k.conj() * inverse**2)

    def _phase(self, dtype: torch.dtype, device: torch.device | None) -> Tensor:
        k = self._khat(dtype, device)
        a = k.abs()
        return torch.where(a > 0, k / torch.where(a > 0, a, 1), torch.ones_like(k))

    def _V(self, z: Tensor) -> Tensor:
        return _hartley(z.view(-1, *self.input_shape))

    def _Vt(self, x: Tensor) -> Tensor:
        return _hartley(x).flatten(1)

    def _U(self, z: Tensor) -> Tensor:
        return self._filter(self._V(z), self._phase(z.dtype, z.device))

    def _Ut(self, y: Tensor) -> Tensor:
        return self._Vt(self._filter(y, self._phase(y.dtype, y.device).conj()))

    def _singulars(self, dtype: torch.dtype, device: torch.device | None) -> Tensor:
        s = self._khat(dtype, device).abs()
        return s.expand(self.input_shape[0], *s.shape).flatten()


class PhaseRetrieval(Operator):
    """Nonlinear ``y = |F(pad(x))|``: magnitude of the orthonormal 2-D DFT of the zero-padded
    image. Padding grows H and W to ``round(oversample · H)``, ``round(oversample · W)``
    (split evenly, extra row/column after). Output ``[B, C, Hp, Wp]``. No adjoint.
    Ambiguities: global sign, circular shift and flip-with-conjugation give the same ``y``.
    """

    def __init__(self, input_shape: tuple[int, ...], oversample: float = 2.0) -> None:
        c, h, w = image_shape_of(tuple(input_shape))
        if oversample < 1.0:
            raise ValueError(f"expected oversample >= 1, got {oversample}")
        hp, wp = max(h, round(oversample * h)), max(w, round(oversample * w))
        super().__init__((c, h, w), (c, hp, wp))
        self.oversample = float(oversample)
        ph, pw = hp - h, wp - w
        self._pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)

    def _forward(self, x: Tensor) -> Tensor:
        return torch.fft.fft2(F.pad(x, self._pad), norm="ortho").abs()


def measurement_image(operator: Operator, y: Tensor) -> Tensor | None:
    """The measurement ``y [N, *operator.output_shape]`` shown as images ``[N, C, H, W]`` in
    [0, 1], or ``None`` when it is not image-shaped (phase retrieval, defocus intensities).
    Smaller measurements (super-resolution) are upsampled by nearest neighbour."""
    c, h, w = operator.input_shape
    out = tuple(operator.output_shape)
    if out == (c, h, w):
        return y.clamp(0, 1)
    if len(out) == 3 and out[0] == c and out[1] < h and h % out[1] == 0 and w % out[2] == 0:
        fh, fw = h // out[1], w // out[2]
        return y.repeat_interleave(fh, -2).repeat_interleave(fw, -1).clamp(0, 1)
    return None
