"""A tiny float64 VAE (1 or 2 stochastic layers) and a fixed binary batch, for exact tests."""

import torch

from diffvi.models import build_vae


def small_vae(layers: int = 1, batch: int = 4):
    """``(model, posterior, x)``: seeded float64 networks and ``x`` ``[batch, *event_shape]``."""
    torch.manual_seed(0)
    if layers == 1:
        model, posterior = build_vae((6,), "iwae-1", "bernoulli", latent_dims=[2], hidden=[[8]])
    else:
        model, posterior = build_vae(
            (1, 4, 4), "iwae-2", "bernoulli", latent_dims=[3, 2], hidden=[[8], [4]]
        )
    g = torch.Generator().manual_seed(1)
    probs = torch.full((batch, *model.event_shape), 0.3, dtype=torch.float64)
    return model.double(), posterior.double(), torch.bernoulli(probs, generator=g)
