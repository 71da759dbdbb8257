"""Generative models p(z) p(x|z)."""

from diffvi.models.sbn import SigmoidBeliefNet
from diffvi.models.vae import VAE, build_vae

__all__ = ["VAE", "SigmoidBeliefNet", "build_vae"]
