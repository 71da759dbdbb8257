"""What every family's config shares: :class:`RunConfig` (seed, budget, cadence, numerics),
JSON round trips, and :func:`option`, the field a ``diffvi train`` command offers."""

import copy
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from diffvi.data.image_folders import CROPS
from diffvi.data.registry import available_datasets

# Fields a resumed run may change: they set how long and how it runs, not what it trains.
RESUMABLE_FIELDS = ("max_epochs", "max_steps", "max_minutes", "flush_denormal", "precision")
# Lightning's precision settings that every family accepts.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")

# Sections of ``diffvi train … --help``.
MODEL, OPTIM, BUDGET, DATA = "Model", "Optimisation", "Budget", "Data"
SEMI, ESTIMATOR = "Semi-supervised", "Estimator"
HARDWARE = "Hardware (passed to Lightning's Trainer)"
CLI_KEYS = ("flag", "panel", "choices", "min", "max")


def option(default: Any = MISSING, help: str = "", **cli: Any) -> Any:
    """A config field that the ``diffvi train`` commands offer as a command-line option.

    ``help`` is its help text; ``cli`` may set ``flag`` (its name on the command line, e.g.
    ``"--val-every"`` or ``("--k", "-k")``, default ``--field-name``; a bool's may read
    ``"--on/--off"``), ``panel`` (its section of ``--help``), ``choices`` (the valid values: a
    registry, whose keys they are) and ``min`` / ``max``. A list or dict default is copied for
    each instance. A field that only overrides an option's default (``max_steps: int = 5000``)
    stays that option.
    """
    unknown = set(cli) - set(CLI_KEYS)
    if unknown:
        raise TypeError(f"unknown option settings {sorted(unknown)}; known: {CLI_KEYS}")
    metadata = {"help": help, **cli}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def dataset_option(default: str) -> Any:
    return option(default, f"Data set: {', '.join(available_datasets())}.")


def batch_size_option(default: int) -> Any:
    return option(default, "Examples per training step.", panel=OPTIM, min=1)


def lr_option(default: float) -> Any:
    return option(default, "Learning rate.", panel=OPTIM)


def warmup_option(default: int) -> Any:
    return option(default, "Steps of linear learning-rate warm-up.", panel=OPTIM, min=0)


def channel_mults_option() -> Any:
    return option([1, 2, 2], "UNet width multiplier per level, e.g. 1,2,2.", panel=MODEL)


class JSONConfig:
    """To and from plain dicts, for the dataclass configs that runs save as ``config.json``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from a dict, rejecting unknown keys (so a typo is an error, not a no-op)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known keys: {sorted(known)}")
        return cls(**values)


@dataclass
class RunConfig(JSONConfig):
    """What every family's config has: the seed, the budget, validation cadence and numerics.

    Training stops at whichever of ``max_epochs``, ``max_steps`` (optimiser steps in total,
    counted across resumes) and ``max_minutes`` (wall clock of this session) comes first; ``-1``
    / ``None`` is no limit, and at least one must be set. ``val_every_n_steps`` validates and
    checkpoints every N steps (``None``: at the end of every epoch). ``grad_clip`` clips the
    gradient norm (0: off), ``ema_decay`` keeps an exponential moving average of the weights
    that validation scores and export saves (``None``: off; warmed up as
    min(decay, (1 + n) / (10 + n)) after n updates), ``precision`` is Lightning's.
    """

    seed: int = option(0, "Seed of weights, noise and data order.")
    max_epochs: int = option(-1, "-1: no limit.", panel=BUDGET, min=-1)
    max_steps: int = option(
        -1, "Optimiser steps in total (across resumes); -1: no limit.", panel=BUDGET, min=-1
    )
    max_minutes: float | None = option(
        None, "Wall-clock minutes of this session (default: no limit).", panel=BUDGET, min=0
    )
    val_every_n_steps: int | None = option(
        None,
        "Validate and checkpoint every N steps (default: at the end of every epoch).",
        flag="--val-every",
        min=1,
    )
    grad_clip: float = option(0.0, "Clip the gradient norm at this value (0: off).", panel=OPTIM)
    ema_decay: float | None = option(
        None,
        "Decay of the moving average of the weights that validation scores and export saves "
        "(default: none).",
        panel=OPTIM,
        min=0,
        max=0.99999,
    )
    precision: str = option(
        "32-true", "Lightning's precision; 16-mixed needs CUDA.", panel=HARDWARE, choices=PRECISIONS
    )
    flush_denormal: bool = True

    def check_run(self) -> None:
        """Raise ``ValueError`` on a bad budget, cadence or precision."""
        if self.max_epochs < 1 and self.max_steps < 1 and self.max_minutes is None:
            raise ValueError(
                "no training budget: set max_epochs, max_steps or max_minutes, got "
                f"{self.max_epochs}, {self.max_steps}, {self.max_minutes}"
            )
        if self.max_epochs == 0 or self.max_epochs < -1 or self.max_steps < -1:
            raise ValueError(
                f"max_epochs and max_steps must be >= 1 or -1 (no limit), got "
                f"{self.max_epochs}, {self.max_steps}"
            )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 (or None), got {self.max_minutes}")
        if self.val_every_n_steps is not None and self.val_every_n_steps < 1:
            raise ValueError(f"val_every_n_steps must be >= 1, got {self.val_every_n_steps}")
        if not self.grad_clip >= 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) or None, got {self.ema_decay}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class ImageDataConfig:
    """The fields of a family that trains on the user's own images as well as on a registered
    data set (:mod:`diffvi.data.image_folders`).

    Exactly one of ``dataset`` (a registered name) and ``data`` (a folder of PNG/JPEG/TIFF
    files, or a ``.npy``/``.npz``/HDF5 array) names the training data; with ``data`` set,
    ``dataset`` is ``None`` (a ``dataset`` left at its default is cleared). ``labels`` (a CSV
    of ``file,label`` rows, or a ``.npy`` of one label per item), ``size`` (``[S]`` or ``[H,
    W]``: scale to cover, then cut out), ``crop`` (which window: ``center`` or ``random``) and
    ``val_fraction`` (held out for validation, chosen by ``seed``) apply to ``data`` only.
    Nothing here reads the files: a config loads where its data is not. A VAE's or a VAE-DGP's
    ``data`` may also be a table, with ``labels`` its label column
    (:mod:`diffvi.training.families.tables`).
    """

    data: str | None = option(
        None,
        "Train on your own images instead of --dataset: a folder of PNG/JPEG/TIFF files (or of "
        "class subfolders), or a .npy/.npz/.h5 array [N, C, H, W] or [N, H, W]. VAEs and "
        "VAE-DGPs also train on a table (.csv/.tsv/.parquet/.h5ad or a 2-D .npy [N, D]; rows "
        "standardised).",
        panel=DATA,
    )
    labels: str | None = option(
        None,
        "With --data: a CSV of file,label rows, or a .npy of one integer label per image "
        "(default: the class subfolders, or an .npz/.h5 file's 'labels' array); for a table, "
        "its label column (an .h5ad obs column), left out of the features.",
        panel=DATA,
    )
    size: list[int] | None = option(
        None,
        "With --data: resize to S×S (or H,W) pixels, keeping the aspect ratio and cropping "
        "the rest (default: the images' own size, which they must share).",
        panel=DATA,
    )
    crop: str = option(
        "center",
        "With --data --size: the window kept where the aspect ratio differs (random: a new "
        "one per image and epoch, seeded).",
        panel=DATA,
        choices=CROPS,
    )
    val_fraction: float = option(
        0.1, "With --data: the fraction held out for validation (chosen by --seed).", panel=DATA
    )

    def check_data(self) -> None:
        """Raise ``ValueError`` unless exactly one source is named and the data fields fit it;
        clears a default ``dataset`` where ``data`` is set."""
        default = type(self).__dataclass_fields__["dataset"].default  # type: ignore[attr-defined]
        dataset = getattr(self, "dataset", None)
        if self.data is None:
            if dataset is None:
                raise ValueError("no training data: set dataset (a registered name) or data")
            stray = {
                name: getattr(self, name)
                for name, unset in (
                    ("labels", None), ("size", None), ("crop", "center"), ("val_fraction", 0.1)
                )
                if getattr(self, name) != unset
            }  # fmt: skip
            if stray:
                raise ValueError(
                    f"{', '.join(sorted(stray))} apply to data of your own (--data), not to "
                    f"dataset {dataset!r}; got {stray}"
                )
            return
        if dataset is not None and dataset != default:
            raise ValueError(
                f"dataset {dataset!r} and data {self.data!r} both name the training data; "
                "give one of them"
            )
        self.dataset = None  # type: ignore[attr-defined]
        if self.size is not None and (len(self.size) not in (1, 2) or min(self.size) < 1):
            raise ValueError(f"size must be one size S or two (H, W), each >= 1; got {self.size}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    @property
    def data_name(self) -> str:
        """The registered data set's name, else the name of the ``data`` folder or file (no
        suffix): what run folders and messages call the data."""
        if self.data is None:
            return str(getattr(self, "dataset", None))
        return Path(os.path.abspath(self.data)).stem or "data"
