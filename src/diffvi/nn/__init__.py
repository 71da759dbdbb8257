"""Neural-network building blocks (no probabilistic logic lives here)."""

from diffvi.nn.embeddings import TimeEmbedding, sinusoidal_embedding
from diffvi.nn.mlp import MLP

__all__ = ["MLP", "TimeEmbedding", "sinusoidal_embedding"]
