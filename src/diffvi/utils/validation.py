"""The switch of the value checks at the public entry points, and the checks themselves.

The objectives, :func:`~diffvi.evaluation.estimate_log_likelihood` and the restoration metrics
check the values of their data once per batch (one ``aminmax`` reduction and one read of its two
numbers): NaN or infinite values, and values outside the support of the model's likelihood (a
Bernoulli likelihood scores x ∈ [0, 1] only). As with ``torch.distributions``'
``Distribution.set_default_validate_args``, the checks are on by default (off under
``python -O``) and can be switched off for speed:

>>> import diffvi
>>> with diffvi.validation(False):      # off inside the block only
...     pass
>>> diffvi.validation(False)            # off from here on (like torch.set_grad_enabled)
diffvi.validation(False)
>>> diffvi.validation(True)             # on again
diffvi.validation(True)

Shape checks cost nothing and stay on either way.
"""

from __future__ import annotations

import math
from types import TracebackType

import torch
from torch import Tensor

__all__ = ["check_finite_in", "validation", "validation_enabled"]

_enabled: bool = __debug__


def validation_enabled() -> bool:
    """Whether the value checks run (see :class:`validation`)."""
    return _enabled


class validation:  # lower case: called like a function, as torch.set_grad_enabled is
    """Switch the value checks on or off: at once when called, and back to the previous
    setting at the end of a ``with`` block.

    Args:
        enabled: run the checks (``True``, the default setting) or skip them (``False``).
    """

    def __init__(self, enabled: bool = True) -> None:
        global _enabled
        self.previous = _enabled
        self.enabled = bool(enabled)
        _enabled = self.enabled

    def __repr__(self) -> str:
        return f"diffvi.validation({self.enabled})"

    def __enter__(self) -> validation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        global _enabled
        _enabled = self.previous


def _interval(low: float, high: float) -> str:
    def number(v: float) -> str:
        return f"{v:g}" if math.isfinite(v) else ("−∞" if v < 0 else "∞")

    return f"[{number(low)}, {number(high)}]"


def check_finite_in(
    x: Tensor, support: tuple[float, float] = (-math.inf, math.inf), name: str = "x", hint: str = ""
) -> None:
    """Raise a ValueError when ``x`` holds NaN or infinite values, or values outside
    ``support = (low, high)`` (closed); nothing when the checks are off (:class:`validation`).

    One ``aminmax`` over ``x`` and one read of its two numbers (a device synchronisation on a
    GPU); the error path counts the offending values. ``hint`` ends the message about values
    outside the support (what to do about them).
    """
    if not _enabled or x.numel() == 0:
        return
    low, high = torch.aminmax(x.detach())
    lo, hi = (float(v) for v in torch.stack((low, high)).tolist())
    if math.isfinite(lo) and math.isfinite(hi) and support[0] <= lo and hi <= support[1]:
        return
    detached = x.detach()
    bad = int((~torch.isfinite(detached)).sum())
    if bad:
        nans = int(torch.isnan(detached).sum())
        raise ValueError(
            f"{name}: {nans} NaN and {bad - nans} infinite value(s) of {x.numel()}; expected "
            f"finite values in {_interval(*support)}"
        )
    raise ValueError(
        f"{name}: values in [{lo:g}, {hi:g}], outside the expected {_interval(*support)}"
        + (f"; {hint}" if hint else "")
    )
