"""Training: the family contract, the one Lightning module, the one ``fit``, checkpoints,
export and :func:`load`.

The configs are plain data; everything else imports Lightning, so it loads on first use
(``diffvi --help`` stays fast).
"""

from importlib import import_module
from typing import Any

from diffvi.training.config import (
    CVDMConfig,
    DiffusionConfig,
    RunConfig,
    SBNConfig,
    TrainConfig,
    VAEDGPConfig,
)

_LAZY = {
    "AtomicCheckpointIO": "diffvi.training.checkpoint",
    "load": "diffvi.training.checkpoint",
    "load_module": "diffvi.training.checkpoint",
    "read_spec": "diffvi.training.checkpoint",
    "fit": "diffvi.training.trainer",
    "Family": "diffvi.training.family",
    "LossOutput": "diffvi.training.family",
    "TrainingModule": "diffvi.training.module",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diffvi.training' has no attribute {name!r}")


__all__ = [
    "AtomicCheckpointIO",
    "CVDMConfig",
    "DiffusionConfig",
    "Family",
    "LossOutput",
    "RunConfig",
    "SBNConfig",
    "TrainConfig",
    "TrainingModule",
    "VAEDGPConfig",
    "fit",
    "load",
    "load_module",
    "read_spec",
]
