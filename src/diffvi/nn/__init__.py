"""Neural-network building blocks (no probabilistic logic lives here)."""

from diffvi.nn.mlp import MLP

__all__ = ["MLP"]
