"""The CVDM family's config: :class:`CVDMConfig`."""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffvi.data.paired import PAIRED_TASKS, PAIRS_TASK, paired_task
from diffvi.diffusion.conditional import PRIOR_KL
from diffvi.training.config.base import (
    DATA,
    MODEL,
    RunConfig,
    batch_size_option,
    channel_mults_option,
    lr_option,
    option,
    warmup_option,
)

CVDM_SCHEDULES = ("learned", "linear", "cosine", "regression")


@dataclass
class CVDMConfig(RunConfig):
    """Everything that defines a CVDM training run (JSON-serialisable).

    ``task`` is a :data:`~diffvi.data.paired.PAIRED_TASKS` name built with ``task_options``
    (e.g. ``{"size": 32}`` for ``microscopy-sr``) from ``train_size`` training pairs (``None``:
    the task's default) and ``val_size`` held-out pairs (``valid`` split where the task has one,
    else ``test``), both drawn with ``data_seed``; ``seed`` seeds the weights, noise and batch
    order. The denoiser UNet (and the regression UNet) is ``base_channels · channel_mults``
    wide with attention at ``attention_resolutions``; ``timesteps`` is CVDM's T (boundary times
    of the loss, default sampling steps); ``prior_kl`` the direction of the loss's prior term
    (:func:`~diffvi.diffusion.conditional.prior_kl`: ``"paper"`` or ``"official"``).
    Validation every ``val_every_n_steps`` steps scores the EMA weights: the loss on the
    held-out pairs, and the image MSE / PSNR of one sample (``sample_steps`` steps) for the
    first ``val_sample_size`` of them. ``x_channels``, ``y_channels`` and ``image_size`` are set
    from the data.

    Your own pairs: ``pairs`` ``[LOW, HIGH]``, two folders of images matched by file name or
    two TIFF stacks (:mod:`diffvi.data.paired_files`), replaces the generated task; ``task``
    becomes ``"pairs"`` and ``task_options`` may set ``normalize`` (``"none"``/``"minmax"``),
    ``upsample`` and ``factor`` (checked against the files; set from them when absent).
    ``patch`` P trains on random ``P × P`` target crops (without it, on whole images of one
    size), ``val_size`` is the number of validation crops, and ``train_size`` does not apply.
    """

    task: str = option(
        "microscopy-sr",
        "Paired restoration task (super-resolution, microscopy, phase imaging).",
        panel=DATA,
        choices=PAIRED_TASKS,
    )
    schedule: str = option(
        "learned",
        "learned: CVDM's per-pixel schedule; linear / cosine: fixed schedules (SR3-style); "
        "regression: a deterministic UNet trained with L2.",
        panel=MODEL,
        choices=CVDM_SCHEDULES,
    )
    task_options: dict[str, Any] = option(
        {},
        "An option of the task (VALUE read as JSON, else as text), e.g. size=32 for "
        "microscopy-sr; repeat for several.",
        flag="--task-option",
        panel=DATA,
    )
    train_size: int | None = option(
        None, "Training pairs (default: the task's whole split).", panel=DATA, min=1
    )
    pairs: list[str] | None = None
    patch: int | None = option(
        None,
        "With --pairs: train on random PATCH x PATCH crops of the targets and the matching "
        "input crops (default: whole images, all of one size).",
        panel=DATA,
        min=2,
    )
    base_channels: int = option(32, "UNet width of the first level.", panel=MODEL, min=1)
    channel_mults: list[int] = channel_mults_option()
    attention_resolutions: list[int] = option(
        [],
        "Resolutions with self-attention, e.g. 16,8 ('' for none).",
        flag="--attention",
        panel=MODEL,
    )
    num_groups: int = 8
    timesteps: int = option(
        200,
        "T: boundary times 1/T, 1-1/T of the loss and default sampling steps.",
        panel=MODEL,
        min=2,
    )
    prior_kl: str = option(
        "paper",
        "Direction of the loss's prior term: paper: KL(q(y_T|y0,x) || N(0,I)), the bound's; "
        "official: KL(N(0,I) || q(y_T|y0,x)), as the official code computes it.",
        panel=MODEL,
        choices=PRIOR_KL,
    )
    batch_size: int = batch_size_option(16)
    lr: float = lr_option(1e-4)
    warmup_steps: int = warmup_option(200)
    grad_clip: float = 1.0
    max_steps: int = 5000
    ema_decay: float | None = 0.999
    data_seed: int = 0
    val_size: int = option(64, "Validation pairs.", panel=DATA, min=1)
    val_every_n_steps: int | None = 500
    sample_steps: int = option(50, "Sampling steps of the validation samples.", min=2)
    val_sample_size: int = 16
    x_channels: int | None = None
    y_channels: int | None = None
    image_size: int | None = None

    def __post_init__(self) -> None:
        self.check_run()
        self._check_pairs()
        task = paired_task(self.task)  # ValueError listing the valid tasks
        unknown = set(self.task_options) - set(task.options)
        if unknown:
            raise ValueError(
                f"unknown task_options {sorted(unknown)} for {self.task!r}; valid: "
                f"{sorted(task.options)}"
            )
        if self.schedule not in CVDM_SCHEDULES:
            raise ValueError(
                f"schedule must be one of {list(CVDM_SCHEDULES)}, got {self.schedule!r}"
            )
        for name in ("batch_size", "base_channels", "val_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size is not None and self.train_size < self.batch_size:
            raise ValueError(
                f"train_size ({self.train_size}) must be >= batch_size ({self.batch_size})"
            )
        if self.prior_kl not in PRIOR_KL:
            raise ValueError(f"prior_kl must be one of {list(PRIOR_KL)}, got {self.prior_kl!r}")
        if self.timesteps < 2 or self.sample_steps < 2:
            raise ValueError(
                f"timesteps and sample_steps must be >= 2, got {self.timesteps}, "
                f"{self.sample_steps}"
            )
        if self.val_sample_size < 0:
            raise ValueError(f"val_sample_size must be >= 0, got {self.val_sample_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def _check_pairs(self) -> None:
        """``pairs`` makes the task ``"pairs"`` (from the default task; another is an error)
        and its paths absolute; ``patch`` and the ``"pairs"`` task need ``pairs``."""
        if self.pairs is None:
            if self.task == PAIRS_TASK:
                raise ValueError(
                    f"task {PAIRS_TASK!r} trains on your own files: give pairs=[LOW, HIGH] "
                    "(--pairs LOW HIGH)"
                )
            if self.patch is not None:
                raise ValueError("patch (--patch) applies to your own pairs (--pairs LOW HIGH)")
            return
        if len(self.pairs) != 2:
            raise ValueError(f"pairs must be [LOW, HIGH] (two paths), got {self.pairs!r}")
        default = type(self).__dataclass_fields__["task"].default
        if self.task not in (PAIRS_TASK, default):
            raise ValueError(
                f"--pairs trains on your own files instead of a task; drop --task {self.task}"
            )
        self.task = PAIRS_TASK
        self.pairs = [str(Path(p).expanduser().resolve()) for p in self.pairs]
        if self.train_size is not None:
            raise ValueError("train_size (--train-size) does not apply to --pairs: all are used")
        if self.patch is not None and self.patch < 2:
            raise ValueError(f"patch must be >= 2, got {self.patch}")

    def model_spec(self) -> dict[str, Any]:
        """The spec of :func:`build_cvdm_model` (saved as ``export/model.json``)."""
        if None in (self.x_channels, self.y_channels, self.image_size):
            raise ValueError("x_channels, y_channels and image_size are set from the data first")
        return {
            "kind": "cvdm",
            "task": self.task,
            "task_options": dict(self.task_options),
            "schedule": self.schedule,
            "x_channels": self.x_channels,
            "y_channels": self.y_channels,
            "image_size": self.image_size,
            "base_channels": self.base_channels,
            "channel_mults": list(self.channel_mults),
            "attention_resolutions": list(self.attention_resolutions),
            "num_groups": self.num_groups,
            "timesteps": self.timesteps,
            "prior_kl": self.prior_kl,
        }
