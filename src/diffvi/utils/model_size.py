"""Refuse a model too large to allocate, before allocating it.

A hand-written or damaged ``model.json`` or ``config.json`` can ask for sizes that no machine
holds (a UNet of 10⁹ channels): building it would exhaust the memory, or fail deep inside
PyTorch. :func:`check_model_size` builds the model once first with its large tensors (4096
elements and more, from ``torch.empty``, ``zeros``, ``randn`` …) on PyTorch's ``meta`` device:
shapes without storage, so no memory is taken, while the small tensors whose values a
constructor reads (a noise schedule, a permutation) stay real. If that build fails it is tried
once more with every tensor on the meta device. Parameters and buffers are counted as they are
registered; the build stops with :class:`ModelTooLargeError` as soon as they pass
:func:`max_model_elements` (``$DIFFVI_MAX_PARAMETERS``, default 2·10⁹: 8 GB of float32
weights, before the optimiser's copies), at a request for one tensor larger than that, when a
shape overflows, or past :data:`MAX_MODULES` submodules (10⁹ layers would take hours to build,
even without memory). Random number generators are left as they were, so the real build draws
the same numbers as without the check, and its log messages and warnings are not doubled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

ENV_MAX_PARAMETERS = "DIFFVI_MAX_PARAMETERS"
"""Environment variable: the most parameters (and buffer elements) a model may have."""

DEFAULT_MAX_PARAMETERS = 2_000_000_000
"""The limit when ``$DIFFVI_MAX_PARAMETERS`` is unset: 8 GB of float32 weights."""

MAX_MODULES = 100_000
"""The most submodules a model may have (the largest UNets here have a few hundred)."""

# Names of config and spec fields that size a model, shown when it is refused.
_SIZE_NAME = re.compile(
    r"channel|hidden|dim|width|layer|block|head|feature|unit|inducing|mult|flow|latent|made"
)

_state = threading.local()


class ModelTooLargeError(ValueError):
    """A model description asks for more parameters (or submodules) than the limit allows.

    Attributes:
        source: what asked for it (``"the config"``, a ``model.json`` path); see
            :meth:`from_source`.
    """

    def __init__(self, what: str, sizes: str, source: str = "the config") -> None:
        self.what, self.sizes, self.source = what, sizes, source
        super().__init__(self._message())

    def _message(self) -> str:
        limit = max_model_elements()
        sizes = f" (its largest sizes: {self.sizes})" if self.sizes else ""
        return (
            f"{self.source} asks for {self.what}{sizes}; refusing to allocate it: the limit is "
            f"{limit:.1e} parameters (raise it with ${ENV_MAX_PARAMETERS})"
        )

    def from_source(self, source: str) -> ModelTooLargeError:
        """The same error, naming ``source`` (a file) as what asked for the model."""
        return ModelTooLargeError(self.what, self.sizes, source)


def max_model_elements() -> int:
    """The limit on a model's parameters and buffer elements: ``$DIFFVI_MAX_PARAMETERS``
    (``5e9`` or ``5000000000``), else :data:`DEFAULT_MAX_PARAMETERS`."""
    text = os.environ.get(ENV_MAX_PARAMETERS, "").strip()
    if not text:
        return DEFAULT_MAX_PARAMETERS
    try:
        return int(float(text))
    except ValueError:
        raise ValueError(
            f"${ENV_MAX_PARAMETERS} must be a number of parameters such as 5e9, got {text!r}"
        ) from None


def measuring() -> bool:
    """Whether a :func:`check_model_size` build is under way (in this thread)."""
    return getattr(_state, "active", False)


class _Stop(Exception):
    """Ends a measured build that passed a limit; ``what`` says which, as in "a model …"."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def check_model_size(build: Callable[[], nn.Module], kind: str, description: Any = None) -> None:
    """Build ``build()`` without memory (see the module docstring) and raise
    :class:`ModelTooLargeError` if it passes the limits; the message names ``kind`` and the
    largest size fields of ``description`` (a config, a spec dict, or lists of them). A build
    that fails for another reason is left to the real build, which fails with its own error."""
    limit = max_model_elements()
    for everything_on_meta in (False, True):
        try:
            with _measured_build(limit, everything_on_meta):
                build()
            return
        except _Stop as stop:
            what = f"a {kind} model {stop.what}"
            raise ModelTooLargeError(what, _largest(description)) from None
        except Exception as err:  # noqa: BLE001 - another failure is the real build's to report
            if isinstance(err, OverflowError) or "overflow" in str(err).lower():
                what = f"a {kind} model whose tensors are too large to index"
                raise ModelTooLargeError(what, _largest(description)) from None
            # A build that mixes its large tensors with small ones (on the meta device and
            # off it) may pass with all on it; one that reads values of tensors may not.


# Factories of weights: a large tensor of theirs is made on the meta device during a check.
_WEIGHT_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.randn, torch.rand, torch.full}
# Other factories: only checked against the limit (their values may be read, e.g. a schedule).
_OTHER_FACTORIES = {torch.arange, torch.linspace, torch.logspace, torch.eye}
# Tensors of this many elements or more are made on the meta device during a check.
_META_FROM = 4096


def _requested_elements(func: Callable[..., Any], args: tuple, kwargs: dict) -> int | None:
    """The number of elements a factory call asks for (``None`` if it cannot tell)."""
    try:
        if func in _WEIGHT_FACTORIES:
            size = kwargs.get("size", args[0] if args else ())
            if isinstance(size, int | torch.SymInt):
                size = [a for a in args if isinstance(a, int)] if func is not torch.full else [size]
            return math.prod(int(n) for n in size)
        if func is torch.eye:
            n = int(args[0])
            return n * int(args[1]) if len(args) > 1 and isinstance(args[1], int) else n * n
        if func in (torch.linspace, torch.logspace):
            return int(args[2] if len(args) > 2 else kwargs["steps"])
        if func is torch.arange:
            numbers = [float(a) for a in args if isinstance(a, int | float)]
            start, end, step = (0.0, numbers[0], 1.0) if len(numbers) == 1 else (*numbers, 1.0)[:3]
            return max(0, math.ceil((end - start) / step))
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


class _LargeTensorsOnMeta(TorchFunctionMode):
    """Makes the large tensors of weight factories on the meta device (no memory), and stops
    the build at a request for more elements than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, D105
        kwargs = dict(kwargs or {})
        if func in _WEIGHT_FACTORIES or func in _OTHER_FACTORIES:
            elements = _requested_elements(func, args, kwargs)
            if elements is not None and elements > self.limit:
                raise _Stop(f"with a tensor of {elements:.1e} elements")
            device = kwargs.get("device")
            if (
                func in _WEIGHT_FACTORIES
                and elements is not None
                and elements >= _META_FROM
                and (device is None or torch.device(device).type == "cpu")
            ):
                kwargs["device"] = "meta"
                kwargs.pop("generator", None)  # the values do not matter
        return func(*args, **kwargs)


@contextlib.contextmanager
def _measured_build(limit: int, everything_on_meta: bool = False) -> Iterator[None]:
    """Run the block with :class:`_LargeTensorsOnMeta` (and every new tensor on the meta
    device if ``everything_on_meta``), counting the registered parameter and buffer elements
    and submodules and stopping with :class:`_Stop` past the limits; random number generators
    are restored afterwards."""
    counts = {"elements": 0, "modules": 0}

    def on_tensor(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        if tensor is not None:
            counts["elements"] += tensor.numel()
            if counts["elements"] > limit:
                raise _Stop(f"of more than {counts['elements']:.1e} parameters")

    def on_module(module: nn.Module, name: str, submodule: nn.Module | None) -> None:
        counts["modules"] += 1
        if counts["modules"] > MAX_MODULES:
            raise _Stop(f"with more than {MAX_MODULES} submodules")

    hooks = [
        nn.modules.module.register_module_parameter_registration_hook(on_tensor),
        nn.modules.module.register_module_buffer_registration_hook(on_tensor),
        nn.modules.module.register_module_module_registration_hook(on_module),
    ]
    states = _rng_states()
    _state.active = True
    logging_disabled = logging.root.manager.disable
    logging.disable(max(logging_disabled, logging.WARNING))  # the real build logs, once
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            if everything_on_meta:
                stack.enter_context(torch.device("meta"))
            stack.enter_context(_LargeTensorsOnMeta(limit))
            yield
    finally:
        _state.active = False
        logging.disable(logging_disabled)
        for hook in hooks:
            hook.remove()
        _restore_rng_states(states)


def _rng_states() -> tuple[Any, ...]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), np.random.get_state(), random.getstate(), cuda


def _restore_rng_states(states: tuple[Any, ...]) -> None:
    cpu, numpy_state, python_state, cuda = states
    torch.set_rng_state(cpu)
    np.random.set_state(numpy_state)
    random.setstate(python_state)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _largest(description: Any, count: int = 3) -> str:
    """``name=value`` of the ``count`` largest size fields of ``description``."""
    found: list[tuple[int, str, Any]] = []

    def walk(value: Any, name: str) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, str(key))
        elif isinstance(value, list | tuple):
            numbers = [v for v in _flatten(value) if isinstance(v, int) and not isinstance(v, bool)]
            if numbers and len(numbers) == len(list(_flatten(value))):
                if _SIZE_NAME.search(name):
                    found.append((max(numbers), name, value))
            else:
                for item in value:
                    walk(item, name)
        elif isinstance(value, int) and not isinstance(value, bool) and _SIZE_NAME.search(name):
            found.append((value, name, value))

    walk(description, "")
    found.sort(key=lambda entry: -entry[0])
    largest = found[0][0] if found else 0
    shown = [
        (name, value) for size, name, value in found[:count] if size > 1 and size * 100 >= largest
    ]
    return ", ".join(f"{name}={value}" for name, value in shown)


def _flatten(values: Any) -> Iterator[Any]:
    for value in values:
        if isinstance(value, list | tuple):
            yield from _flatten(value)
        else:
            yield value
