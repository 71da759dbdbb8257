"""Neural-network building blocks (no probabilistic logic lives here)."""

from diffvi.nn.embeddings import TimeEmbedding, sinusoidal_embedding
from diffvi.nn.mlp import MLP, MLPDenoiser
from diffvi.nn.unet import UNet

__all__ = ["MLP", "MLPDenoiser", "TimeEmbedding", "UNet", "sinusoidal_embedding"]
