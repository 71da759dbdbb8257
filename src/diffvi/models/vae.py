"""Deep latent Gaussian models: p(z_L) ∏ p(z_l | z_{l+1}) p(x | z_1) (AEVB, IWAE §5).

The latent sample ``z: [K, B, D]`` concatenates the layers bottom first, as the Gaussian
posterior produces it: ``D = D_1 + … + D_L``.
"""

from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor, nn

from diffvi.distributions.gaussian import diagonal_normal_log_prob
from diffvi.distributions.likelihoods import Likelihood, build_likelihood
from diffvi.distributions.priors import Prior, StandardNormal
from diffvi.nn.mlp import MLP
from diffvi.posteriors.base import Posterior
from diffvi.posteriors.gaussian import GaussianPosterior


class VAE(nn.Module):
    """The generative half of a VAE.

    Args:
        event_shape: shape of one observation, e.g. ``(1, 28, 28)``.
        latent_dims: ``D_1, …, D_L`` bottom layer first.
        decoder: ``z_1: [..., D_1] -> [..., likelihood.num_params(F)]``.
        likelihood: p(x|z_1).
        conditionals: for L > 1, network ``l`` maps ``z_{l+2}`` to (mean, log σ) of ``z_{l+1}``,
            i.e. ``[..., D_{l+2}] -> [..., 2·D_{l+1}]``, ``l = 0 … L−2``.
        prior: p(z_L) over the top layer (a :class:`~diffvi.distributions.Prior`); default
            N(0, I).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        latent_dims: Sequence[int],
        decoder: nn.Module,
        likelihood: Likelihood,
        conditionals: Sequence[nn.Module] = (),
        prior: Prior | None = None,
    ) -> None:
        super().__init__()
        if len(conditionals) != len(latent_dims) - 1:
            raise ValueError(
                f"{len(latent_dims)} latent layers need {len(latent_dims) - 1} conditionals, "
                f"got {len(conditionals)}"
            )
        self.event_shape = tuple(event_shape)
        self.data_dim = prod(self.event_shape)
        self.latent_dims = list(latent_dims)
        self.latent_dim = sum(self.latent_dims)
        self.decoder = decoder
        self.likelihood = likelihood
        self.conditionals = nn.ModuleList(conditionals)
        self.prior = prior if prior is not None else StandardNormal(self.latent_dims[-1])

    def _check_x(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.event_shape))}], "
                f"got {list(x.shape)}"
            )
        return x.flatten(1)

    def _check_z(self, z: Tensor, batch_size: int | None = None) -> None:
        if z.ndim < 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape [K, B, {self.latent_dim}], got {list(z.shape)}")
        if batch_size is not None and z.shape[-2] != batch_size:
            raise ValueError(
                f"z must have batch size {batch_size} (that of x) on axis -2, got {list(z.shape)}"
            )

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z_1, …, z_L) = log p(z_L) + Σ log p(z_l | z_{l+1}): ``[K, B, D] -> [K, B]``."""
        self._check_z(z)
        layers = z.split(self.latent_dims, dim=-1)
        total = self.prior.log_prob(layers[-1])
        for i, net in enumerate(self.conditionals):
            mean, log_std = net(layers[i + 1]).chunk(2, dim=-1)
            total = total + diagonal_normal_log_prob(layers[i], mean, log_std)
        return total

    def decode(self, z: Tensor) -> Tensor:
        """Likelihood parameters ``[..., P]`` from latents ``[..., D]`` (uses z_1 only)."""
        return self.decoder(z[..., : self.latent_dims[0]])

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) for ``x: [B, *event_shape]``, ``z: [K, B, D]`` -> ``[K, B]``."""
        flat = self._check_x(x)
        self._check_z(z, flat.shape[0])
        return self.likelihood.log_prob(flat, self.decode(z))

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z): ``[K, B]``."""
        return self.log_prior(z) + self.log_likelihood(x, z)

    def sample_latent(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral draw of all layers, ``[num, D]``."""
        layers = [self.prior.sample((num,), generator=generator)]
        for net in reversed(self.conditionals):
            mean, log_std = net(layers[0]).chunk(2, dim=-1)
            noise = torch.randn(
                mean.shape, generator=generator, device=mean.device, dtype=mean.dtype
            )
            layers.insert(0, mean + torch.exp(log_std) * noise)
        return torch.cat(layers, dim=-1)

    @torch.no_grad()
    def sample(
        self, num: int, generator: torch.Generator | None = None, mean: bool = True
    ) -> Tensor:
        """Images ``[num, *event_shape]``: E[x|z] when ``mean`` (the usual sample grid), else
        a draw from p(x|z)."""
        params = self.decode(self.sample_latent(num, generator))
        x = self.likelihood.mean(params) if mean else self.likelihood.sample(params, generator)
        return x.reshape(num, *self.event_shape)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, posterior: Posterior) -> Tensor:
        """E[x|z] at the posterior mean of z: ``[B, *event_shape] -> [B, *event_shape]``."""
        z = posterior.expected_latent(x)
        return self.likelihood.mean(self.decode(z)).reshape(x.shape)


ARCHITECTURES: dict[str, dict] = {
    # IWAE paper §5: one stochastic layer 784-200-200-50, two layers add 100-100-50 (tanh).
    "iwae-1": {"latent_dims": [50], "hidden": [[200, 200]]},
    "iwae-2": {"latent_dims": [100, 50], "hidden": [[200, 200], [100, 100]]},
    # AEVB's MNIST / Frey-faces nets: one hidden layer.
    "aevb": {"latent_dims": [20], "hidden": [[500]]},
}


def build_vae(
    event_shape: Sequence[int],
    architecture: str = "iwae-1",
    likelihood: str | Likelihood = "bernoulli",
    latent_dims: Sequence[int] | None = None,
    hidden: Sequence[Sequence[int]] | None = None,
    activation: str = "tanh",
    prior: Prior | None = None,
    num_labels: int = 0,
) -> tuple[VAE, GaussianPosterior]:
    """A VAE and its Gaussian posterior with mirrored MLPs.

    ``architecture`` names a preset (``iwae-1``, ``iwae-2``, ``aevb``); ``latent_dims`` and
    ``hidden`` (one list of hidden sizes per stochastic layer, bottom first) override it.
    ``prior`` is p(z_L) over the top layer (``[..., D_L]``); default N(0, I). ``num_labels``
    L > 0 makes the posterior label-conditioned, q(z|x, l) (its bottom encoder reads x and
    the one-hot label: :class:`~diffvi.posteriors.GaussianPosterior`).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}"
        )
    preset = ARCHITECTURES[architecture]
    dims = list(latent_dims if latent_dims is not None else preset["latent_dims"])
    layers = [list(h) for h in (hidden if hidden is not None else preset["hidden"])]
    if hidden is None and latent_dims is not None:
        layers = [layers[min(i, len(layers) - 1)] for i in range(len(dims))]
    if len(layers) != len(dims):
        raise ValueError(f"need one hidden-size list per latent layer: {layers} for {dims}")
    lik = build_likelihood(likelihood) if isinstance(likelihood, str) else likelihood
    data_dim = prod(event_shape)
    below = [data_dim + num_labels, *dims[:-1]]
    encoders = [MLP(below[i], layers[i], 2 * dims[i], activation) for i in range(len(dims))]
    decoder = MLP(dims[0], layers[0][::-1], lik.num_params(data_dim), activation)
    conditionals = [
        MLP(dims[i + 1], layers[i + 1][::-1], 2 * dims[i], activation) for i in range(len(dims) - 1)
    ]
    model = VAE(event_shape, dims, decoder, lik, conditionals, prior=prior)
    return model, GaussianPosterior(encoders, dims, num_labels)
