"""The contract every latent-variable model p(x, z) = p(z) p(x | z) follows.

The objectives (:mod:`diffvi.objectives`) see a model only through these three densities; a
model may add more (ancestral sampling, per-factor terms such as the SBN's
``log_joint_terms``). Shapes put the sample axis first: latents ``z [K, B, D]`` (all latent
layers concatenated, bottom layer first, as a posterior's ``PosteriorSample.z``), data
``x [B, *event_shape]`` shared by the ``K`` samples, log-densities ``[K, B]``.
"""

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class LatentVariableModel(Protocol):
    """p(z) p(x | z): what :class:`~diffvi.models.VAE` and
    :class:`~diffvi.models.SigmoidBeliefNet` provide. ``isinstance(model,
    LatentVariableModel)`` checks that the three methods exist (not their signatures)."""

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z): ``z [K, B, D] -> [K, B]``."""
        ...

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z): ``x [B, *event_shape]``, ``z [K, B, D] -> [K, B]``."""
        ...

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z) = log p(z) + log p(x | z): ``x [B, *event_shape]``,
        ``z [K, B, D] -> [K, B]``."""
        ...
