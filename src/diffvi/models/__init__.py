"""Generative models p(z) p(x|z)."""

from diffvi.models.base import LatentVariableModel
from diffvi.models.dgp import VAEDGP, DeepGPRegressor, SparseGPLayer
from diffvi.models.sbn import SigmoidBeliefNet
from diffvi.models.vae import VAE, build_vae

__all__ = [
    "VAE",
    "VAEDGP",
    "DeepGPRegressor",
    "LatentVariableModel",
    "SigmoidBeliefNet",
    "SparseGPLayer",
    "build_vae",
]
