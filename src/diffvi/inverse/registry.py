"""The named forward operators of ``diffvi restore`` and the benchmarks: ``name -> A``.

Each entry is a builder ``build(image_shape (C, H, W), generator, **parameters) -> Operator``
for images of any size and channel count; the generator draws random masks and box
positions. A builder's keyword-only parameters, with their defaults, are the task's settings
(:func:`operator_parameters`): presets are the same builder with other defaults
(``functools.partial``), and :data:`PARAMETERS` describes every parameter once, for the
command line (``--missing``, ``--box-size``, ``--blur-sigma``, …) and for error messages. A
plain ``lambda shape, generator: ...`` is an entry without parameters.

The papers' operators at 256 px (FFHQ/ImageNet) are ``sr4-bicubic`` (DDRM's and RED-diff's
bicubic ×4), ``inpaint-box`` (a centred box of half the side: their 128×128 hole; DPS draws its
position, ``box_position="random"``), ``inpaint-random`` (70 % of the pixels missing: the top of
DPS's 30–70 % range) and ``deblur-gaussian-dps`` (DPS: 61×61 kernel, σ = 3 px, mirrored border);
``deblur-gaussian-reddiff`` is the ``deblur_gauss`` task of the RED-diff code. Every blur
zeroes the 1-D singular values below ``pinv_cutoff = 3e-2`` in A⁺y and for DDRM, as the
official DDRM does (``BicubicSR`` too, where none is that small). Kept apart from
the operator classes so that the registry may hold operators of every module
(:mod:`diffvi.inverse.operators`, :mod:`diffvi.inverse.phase`) without those importing each
other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from diffvi.inverse.operators import (
    BOUNDARIES,
    SR_BOUNDARIES,
    AveragePoolSR,
    BicubicSR,
    Blur,
    Denoising,
    Inpainting,
    Operator,
    PhaseRetrieval,
    SeparableBlur,
    Shape,
    box_mask,
    gaussian_kernel,
    gaussian_kernel_1d,
    half_mask,
    image_shape_of,
    random_mask,
    uniform_kernel,
)
from diffvi.inverse.phase import DefocusIntensity

__all__ = [
    "OPERATORS",
    "PARAMETERS",
    "OperatorParameter",
    "build_operator",
    "operator_parameters",
]


@dataclass(frozen=True)
class OperatorParameter:
    """What the command line needs to know of one operator parameter.

    Attributes:
        kind: ``int``, ``float`` or ``str`` (the option's type).
        help: one sentence: which tasks take it, its meaning and units.
        metavar: how ``--help`` shows the value.
        choices: the values a ``str`` parameter takes, if it is a choice.
        min: the smallest value a number may take.
    """

    kind: type
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    min: float | None = None

    @staticmethod
    def flag(name: str) -> str:
        """The command-line flag of parameter ``name`` (``box_size`` -> ``--box-size``)."""
        return "--" + name.replace("_", "-")


PARAMETERS: dict[str, OperatorParameter] = {
    "missing": OperatorParameter(
        float, "inpaint-random: fraction of the pixels missing, in [0, 1] (the same pixels in "
        "every channel, drawn with --seed).", min=0.0),
    "box_size": OperatorParameter(
        str, "inpaint-box: the hole's side in pixels, or H,W (default: half the shorter side, "
        "the papers' 128x128 at 256 px).", metavar="S|H,W"),
    "box_position": OperatorParameter(
        str, "inpaint-box: the hole's place: center, random (drawn with --seed; DPS's rule, a "
        "margin of 1/16 of the side) or TOP,LEFT in pixels.", metavar="center|random|T,L"),
    "hidden_side": OperatorParameter(
        str, "inpaint-half: the half that is hidden.", choices=("left", "right", "top", "bottom")),
    "sr_factor": OperatorParameter(
        int, "sr2, sr4, sr4-bicubic: the downsampling factor (it must divide H and W).", min=1),
    "blur_size": OperatorParameter(
        int, "deblur-*: the kernel's size in pixels (taps per axis).", min=1),
    "blur_sigma": OperatorParameter(
        float, "deblur-gaussian*: the Gaussian's standard deviation in pixels.", min=0.0),
    "blur_truncate": OperatorParameter(
        float, "deblur-gaussian*: zero the taps farther than this many σ from the centre "
        "(scipy's rule; DPS's kernel: 4).", min=0.0),
    "boundary": OperatorParameter(
        str, "deblur-*, sr4-bicubic: the border rule: circular (FFT), reflect (DPS's blur), "
        "symmetric (DDRM's bicubic SR), zero (DDRM's and RED-diff's blur), renormalise "
        "(bicubic only: PIL's).", choices=SR_BOUNDARIES),
    "pinv_cutoff": OperatorParameter(
        float, "deblur-*: singular values of the blur's 1-D factors below this count as zero "
        "in A+y and for DDRM (the official DDRM's 3e-2; 0 keeps all).", min=0.0),
    "oversample": OperatorParameter(
        float, "phase-retrieval: the zero-padded size over the image size.", min=1.0),
    "phase_max": OperatorParameter(
        float, "phase-defocus: the phase in radians of a white pixel.", min=0.0),
    "defocus_um": OperatorParameter(
        float, "phase-defocus: the defocus distance in micrometres.", min=0.0),
}  # fmt: skip
"""Every operator parameter of :data:`OPERATORS`' builders, by keyword."""


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"expected {name} > 0, got {value}")


def _pair(text: Any, name: str) -> tuple[int, int]:
    """``5``, ``"5"``, ``(4, 6)`` or ``"4,6"`` as a pair of ints; ValueError naming ``name``."""
    if isinstance(text, int):
        return int(text), int(text)
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = [int(str(p).strip()) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ValueError(f"expected {name} as N or N,N (integers), got {text!r}")
    return (values[0], values[-1])


def _inpaint_box(
    shape: Shape,
    generator: torch.Generator | None,
    *,
    box_size: int | tuple[int, int] | str | None = None,
    box_position: str | tuple[int, int] = "center",
) -> Operator:
    _, h, w = shape
    bh, bw = (min(h, w) // 2,) * 2 if box_size is None else _pair(box_size, "box_size")
    if not (0 <= bh <= h and 0 <= bw <= w):
        raise ValueError(f"expected box_size of at most {h}x{w} pixels (HxW), got {bh}x{bw}")
    position: tuple[int, int] | None
    if box_position in ("center", "centre"):
        position = None
    elif box_position == "random":
        # DPS's random_sq_bbox: top in [margin, H − margin − h), margin 16 at 256 px.
        my, mx = h // 16, w // 16
        if h - 2 * my - bh < 1 or w - 2 * mx - bw < 1:
            my, mx = 0, 0
        top = int(torch.randint(my, max(h - my - bh, my + 1), (), generator=generator))
        left = int(torch.randint(mx, max(w - mx - bw, mx + 1), (), generator=generator))
        position = (top, left)
    else:
        position = _pair(box_position, "box_position (center, random or TOP,LEFT)")
    return Inpainting(box_mask(shape, (bh, bw), position))


def _inpaint_random(
    shape: Shape, generator: torch.Generator | None, *, missing: float = 0.7
) -> Operator:
    if not 0.0 <= missing <= 1.0:
        raise ValueError(f"expected missing (a fraction of the pixels) in [0, 1], got {missing}")
    return Inpainting(random_mask(shape, 1.0 - missing, generator))


def _inpaint_half(
    shape: Shape, generator: torch.Generator | None, *, hidden_side: str = "right"
) -> Operator:
    return Inpainting(half_mask(shape, hidden_side))


def _sr_average(shape: Shape, generator: torch.Generator | None, *, sr_factor: int = 4) -> Operator:
    return AveragePoolSR(sr_factor, shape)


def _sr_bicubic(
    shape: Shape,
    generator: torch.Generator | None,
    *,
    sr_factor: int = 4,
    boundary: str = "symmetric",
) -> Operator:
    return BicubicSR(sr_factor, shape, boundary)


def _blur(kernel_1d: torch.Tensor, shape: Shape, boundary: str, pinv_cutoff: float) -> Operator:
    """A separable blur: on the FFT for a circular border, else with the 1-D factors."""
    if boundary == "circular":
        if kernel_1d.numel() > min(shape[1], shape[2]):
            raise ValueError(
                f"a circular blur needs a kernel no larger than the image ({shape[1]}x"
                f"{shape[2]}), got {kernel_1d.numel()} taps; use another --boundary"
            )
        return Blur(torch.outer(kernel_1d, kernel_1d), shape, pinv_cutoff)
    if boundary not in BOUNDARIES:
        raise ValueError(f"expected boundary in {list(BOUNDARIES)} for a blur, got {boundary!r}")
    return SeparableBlur(kernel_1d, shape, boundary, pinv_cutoff=pinv_cutoff)


def _gaussian_blur(
    shape: Shape,
    generator: torch.Generator | None,
    *,
    blur_size: int = 7,
    blur_sigma: float = 1.0,
    boundary: str = "circular",
    blur_truncate: float | None = None,
    pinv_cutoff: float = 3e-2,
) -> Operator:
    _positive("blur_sigma", blur_sigma)
    if blur_truncate is not None:
        _positive("blur_truncate", blur_truncate)
    kernel = gaussian_kernel_1d(blur_size, blur_sigma, torch.float64, blur_truncate)
    if boundary == "circular" and blur_size <= min(shape[1], shape[2]):
        # The 2-D kernel of Blur, as before this builder took parameters.
        kernel_2d = gaussian_kernel(blur_size, blur_sigma, truncate=blur_truncate)
        return Blur(kernel_2d, shape, pinv_cutoff)
    return _blur(kernel, shape, boundary, pinv_cutoff)


def _uniform_blur(
    shape: Shape,
    generator: torch.Generator | None,
    *,
    blur_size: int = 5,
    boundary: str = "circular",
    pinv_cutoff: float = 3e-2,
) -> Operator:
    if boundary == "circular" and blur_size <= min(shape[1], shape[2]):
        return Blur(uniform_kernel(blur_size), shape, pinv_cutoff)
    box = torch.full((blur_size,), 1.0 / blur_size, dtype=torch.float64)
    return _blur(box, shape, boundary, pinv_cutoff)


def _phase_retrieval(
    shape: Shape, generator: torch.Generator | None, *, oversample: float = 2.0
) -> Operator:
    return PhaseRetrieval(shape, oversample=oversample)


def _defocus(
    shape: Shape,
    generator: torch.Generator | None,
    *,
    phase_max: float = 3.5,
    defocus_um: float = 1.0,
) -> Operator:
    _positive("defocus_um", defocus_um)
    return DefocusIntensity(shape, phase_max=phase_max, dz=defocus_um * 1e-6)


OPERATORS: dict[str, Callable[..., Operator]] = {
    # A centred square hole of half the image side (14×14 on 28×28, 128×128 on 256×256).
    "inpaint-box": _inpaint_box,
    # 70 % of the pixels missing (as in DPS), same pattern over channels.
    "inpaint-random": _inpaint_random,
    "inpaint-half": _inpaint_half,
    "sr4": _sr_average,
    "sr2": partial(_sr_average, sr_factor=2),
    # DDRM's and RED-diff's bicubic ×4 (a = −0.5, mirrored border).
    "sr4-bicubic": _sr_bicubic,
    # 7×7 Gaussian, σ = 1 px (±3σ), circular: a clear but invertible blur at 28×28.
    "deblur-gaussian": _gaussian_blur,
    # DPS: scipy's Gaussian (σ = 3 px, cut at 4σ) in a 61×61 kernel, ReflectionPad2d border.
    "deblur-gaussian-dps": partial(
        _gaussian_blur, blur_size=61, blur_sigma=3.0, boundary="reflect", blur_truncate=4.0
    ),
    # RED-diff's deblur_gauss: 5 taps of a σ = 25 px Gaussian (nearly a box), zero border.
    "deblur-gaussian-reddiff": partial(
        _gaussian_blur, blur_size=5, blur_sigma=25.0, boundary="zero"
    ),
    # 5×5 box (DDRM uses 9×9 at 256²; 5×5 is its analogue at MNIST scale).
    "deblur-uniform": _uniform_blur,
    "denoise": lambda s, g: Denoising(s),
    "phase-retrieval": _phase_retrieval,
    # Quantitative phase imaging (grey images only): a 0–3.5 rad phase object seen at ±1 µm
    # defocus (521 nm light, 0.21 µm pixels), two intensity images [B, 2, H, W].
    "phase-defocus": _defocus,
}


def operator_parameters(name: str) -> dict[str, Any]:
    """The parameters of the operator registered as ``name``, with their defaults (its
    builder's keyword-only arguments)."""
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; expected one of {sorted(OPERATORS)}")
    parameters = inspect.signature(OPERATORS[name]).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build_operator(
    name: str,
    image_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    **parameters: Any,
) -> Operator:
    """Operator registered as ``name`` for images of shape ``(C, H, W)``, with ``parameters``
    (a subset of :func:`operator_parameters`) in place of its defaults."""
    accepted = operator_parameters(name)
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        raise ValueError(
            f"operator {name!r} takes the parameters {sorted(accepted) or 'none'}, not {unknown}"
        )
    return OPERATORS[name](image_shape_of(tuple(image_shape)), generator, **parameters)
