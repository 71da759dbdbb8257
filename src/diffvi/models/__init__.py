"""Generative models p(z) p(x|z)."""

from diffvi.models.vae import VAE, build_vae

__all__ = ["VAE", "build_vae"]
