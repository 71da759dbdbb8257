"""Training: Lightning modules, data loading for training, checkpoints and the fit entry point."""

from diffvi.training.checkpoint import AtomicCheckpointIO, load_module
from diffvi.training.config import TrainConfig
from diffvi.training.fit import fit
from diffvi.training.module import VAEModule

__all__ = ["AtomicCheckpointIO", "TrainConfig", "VAEModule", "fit", "load_module"]
