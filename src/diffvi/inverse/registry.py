"""The named forward operators of ``diffvi restore`` and the benchmarks: ``name -> A``.

Each entry builds an :class:`~diffvi.inverse.operators.Operator` for images of shape
``(C, H, W)`` (and, for random masks, a generator). Kept apart from the operator classes so that
the registry may hold operators of every module (:mod:`diffvi.inverse.operators`,
:mod:`diffvi.inverse.phase`) without those importing each other.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffvi.inverse.operators import (
    AveragePoolSR,
    BicubicSR,
    Blur,
    Denoising,
    Inpainting,
    Operator,
    PhaseRetrieval,
    Shape,
    box_mask,
    gaussian_kernel,
    half_mask,
    image_shape_of,
    random_mask,
    uniform_kernel,
)
from diffvi.inverse.phase import DefocusIntensity

__all__ = ["OPERATORS", "build_operator"]


def _gaussian_blur(shape: Shape, generator: torch.Generator | None) -> Operator:
    return Blur(gaussian_kernel(7, 1.0), shape)


def _defocus(shape: Shape, generator: torch.Generator | None) -> Operator:
    return DefocusIntensity(shape)


OPERATORS: dict[str, Callable[[Shape, torch.Generator | None], Operator]] = {
    # Centred square hole of half the image side (14×14 on 28×28).
    "inpaint-box": lambda s, g: Inpainting(box_mask(s, min(s[1], s[2]) // 2)),
    # 70 % of the pixels missing (as in DPS), same pattern over channels.
    "inpaint-random": lambda s, g: Inpainting(random_mask(s, 0.3, g)),
    "inpaint-half": lambda s, g: Inpainting(half_mask(s, "right")),
    "sr4": lambda s, g: AveragePoolSR(4, s),
    "sr2": lambda s, g: AveragePoolSR(2, s),
    "sr4-bicubic": lambda s, g: BicubicSR(4, s),
    # 7×7 Gaussian, σ = 1 px (±3σ): a clear but invertible blur at 28×28.
    "deblur-gaussian": _gaussian_blur,
    # 5×5 box (DDRM uses 9×9 at 256²; 5×5 is its analogue at MNIST scale).
    "deblur-uniform": lambda s, g: Blur(uniform_kernel(5), s),
    "denoise": lambda s, g: Denoising(s),
    "phase-retrieval": lambda s, g: PhaseRetrieval(s, oversample=2.0),
    # Quantitative phase imaging: a 0–3.5 rad phase object seen at ±1 µm defocus (521 nm light,
    # 0.21 µm pixels), two intensity images [B, 2, H, W].
    "phase-defocus": _defocus,
}


def build_operator(
    name: str, image_shape: tuple[int, ...], generator: torch.Generator | None = None
) -> Operator:
    """Operator registered as ``name`` for images of shape ``(C, H, W)``."""
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; expected one of {sorted(OPERATORS)}")
    return OPERATORS[name](image_shape_of(tuple(image_shape)), generator)
