"""Neural-network building blocks (no probabilistic logic lives here)."""

from diffvi.nn.activations import ACTIVATIONS, build_activation
from diffvi.nn.embeddings import TimeEmbedding, sinusoidal_embedding
from diffvi.nn.mlp import MLP, MLPDenoiser
from diffvi.nn.unet import UNet

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "MLPDenoiser",
    "TimeEmbedding",
    "UNet",
    "build_activation",
    "sinusoidal_embedding",
]
