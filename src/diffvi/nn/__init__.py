"""Neural-network building blocks (no probabilistic logic lives here)."""

from diffvi.nn.activations import ACTIVATIONS, build_activation
from diffvi.nn.adm import ADM_CONFIGS, ADMUNet, load_adm_checkpoint
from diffvi.nn.embeddings import TimeEmbedding, sinusoidal_embedding
from diffvi.nn.mlp import MLP, MLPDenoiser
from diffvi.nn.unet import UNet

__all__ = [
    "ACTIVATIONS",
    "ADM_CONFIGS",
    "ADMUNet",
    "MLP",
    "MLPDenoiser",
    "TimeEmbedding",
    "UNet",
    "build_activation",
    "load_adm_checkpoint",
    "sinusoidal_embedding",
]
