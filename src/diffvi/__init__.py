"""diffvi: variational inference with deep latent-variable models and diffusion models."""

from diffvi.distributions import BernoulliLikelihood, GaussianLikelihood, StandardNormal
from diffvi.evaluation import active_units, estimate_log_likelihood
from diffvi.models import VAE, build_vae
from diffvi.objectives import AAE, DDVI, ELBO, IWAE, ObjectiveOutput, build_objective
from diffvi.posteriors import DiffusionPosterior, GaussianPosterior, IAFPosterior, PosteriorSample
from diffvi.utils.validation import validation, validation_enabled

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # diffvi.load imports Lightning: loaded on first use, so `import diffvi` stays quick.
    if name == "load":
        from diffvi.training.checkpoint import load

        return load
    raise AttributeError(f"module 'diffvi' has no attribute {name!r}")


__all__ = [
    "AAE",
    "DDVI",
    "DiffusionPosterior",
    "IAFPosterior",
    "ELBO",
    "IWAE",
    "VAE",
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "GaussianPosterior",
    "ObjectiveOutput",
    "PosteriorSample",
    "StandardNormal",
    "active_units",
    "build_objective",
    "build_vae",
    "estimate_log_likelihood",
    "load",
    "validation",
    "validation_enabled",
]
