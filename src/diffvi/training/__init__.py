"""Training: Lightning modules, data loading for training, checkpoints and the fit entry point.

``TrainConfig`` is plain data; everything else imports Lightning, so it loads on first use
(``diffvi --help`` stays fast).
"""

from importlib import import_module
from typing import Any

from diffvi.training.config import TrainConfig

_LAZY = {
    "AtomicCheckpointIO": "diffvi.training.checkpoint",
    "load_module": "diffvi.training.checkpoint",
    "fit": "diffvi.training.trainer",
    "VAEModule": "diffvi.training.module",
    "CVDMConfig": "diffvi.training.cvdm_module",
    "CVDMModule": "diffvi.training.cvdm_module",
    "fit_cvdm": "diffvi.training.cvdm_module",
    "load_cvdm": "diffvi.training.cvdm_module",
    "VAEDGPConfig": "diffvi.training.dgp_module",
    "fit_vaedgp": "diffvi.training.dgp_module",
    "load_vaedgp": "diffvi.training.dgp_module",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diffvi.training' has no attribute {name!r}")


__all__ = [
    "AtomicCheckpointIO",
    "CVDMConfig",
    "CVDMModule",
    "TrainConfig",
    "VAEDGPConfig",
    "VAEModule",
    "fit",
    "fit_cvdm",
    "fit_vaedgp",
    "load_cvdm",
    "load_vaedgp",
    "load_module",
]
