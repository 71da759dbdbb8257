"""The posteriors a VAE run trains by name (``TrainConfig.posterior``).

Each entry says how the VAE family builds it: ``build(data_dim, latent_dim, hidden=…,
activation=…, **options)`` with the bottom layer's hidden sizes and the run's activation, and
``config_fields``, the builder's keywords that fields of the run's config set (the others come
from ``TrainConfig.posterior_options``). ``"gaussian"`` is the VAE's own mirrored posterior
(:func:`~diffvi.models.vae.build_vae`, any number of latent layers); the others have one latent
layer. A new posterior is one class (or builder) and one line here.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from diffvi.posteriors.base import Posterior
from diffvi.posteriors.diffusion import build_diffusion_posterior
from diffvi.posteriors.iaf import build_iaf_posterior


@dataclass(frozen=True)
class RegisteredPosterior:
    """A posterior a VAE run builds by name (see the module docstring)."""

    build: Callable[..., Posterior] | None
    config_fields: dict[str, str] = field(default_factory=dict)


POSTERIORS: dict[str, RegisteredPosterior] = {
    "gaussian": RegisteredPosterior(None),
    "diffusion": RegisteredPosterior(
        build_diffusion_posterior,
        {"num_steps": "diffusion_steps", "conditional": "conditional", "beta_end": "beta_end"},
    ),
    "iaf": RegisteredPosterior(
        build_iaf_posterior, {"num_flows": "iaf_flows", "made_hidden": "made_hidden"}
    ),
}
