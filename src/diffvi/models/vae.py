"""Deep latent Gaussian models: p(z_L) ∏ p(z_l | z_{l+1}) p(x | z_1) (AEVB, IWAE §5).

The latent sample ``z: [K, B, D]`` concatenates the layers bottom first, as the Gaussian
posterior produces it: ``D = D_1 + … + D_L``.
"""

from collections.abc import Callable, Sequence
from math import prod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.distributions.gaussian import diagonal_normal_log_prob
from diffvi.distributions.likelihoods import BernoulliLikelihood, Likelihood, build_likelihood
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
        """log p(x|z) for ``x: [B, *event_shape]``, ``z: [K, B, D]`` -> ``[K, B]``.

        Without gradients, a Bernoulli likelihood whose logits are a plain MLP's last linear
        layer is scored by :func:`fused_bernoulli_mlp_log_prob` (the same numbers, to float
        rounding, at a fraction of the memory traffic); otherwise, and with gradients (where
        the same GEMM form measured no faster, docs/results.md), through ``decode``.
        """
        flat = self._check_x(x)
        self._check_z(z, flat.shape[0])
        split = self.linear_bernoulli_decoder()
        if split is not None and not torch.is_grad_enabled():
            return fused_bernoulli_mlp_log_prob(flat, z[..., : self.latent_dims[0]], *split)
        return self.likelihood.log_prob(flat, self.decode(z))

    def linear_bernoulli_decoder(self) -> tuple[list[nn.Module], nn.Linear] | None:
        """``(hidden layers, output layer)`` when p(x|z) is Bernoulli with logits from the last
        ``nn.Linear`` of a plain ``nn.Sequential`` decoder (an :class:`~diffvi.nn.MLP`), else
        ``None``."""
        dec = self.decoder
        if (
            type(self.likelihood) is BernoulliLikelihood
            and isinstance(dec, nn.Sequential)
            and type(dec).forward is nn.Sequential.forward
            and len(dec) > 0
            and type(dec[-1]) is nn.Linear
        ):
            layers = list(dec)
            return layers[:-1], layers[-1]
        return None

    def inference_row_floats(self) -> int:
        """About how many floats :meth:`log_likelihood` holds per (sample, data point) pair
        without gradients, latents included: what sizes a chunk of importance samples."""
        if self.linear_bernoulli_decoder() is not None:
            return 4 * self.latent_dim + 8  # the logits stay in a fixed-size block
        return 4 * (self.latent_dim + self.likelihood.num_params(self.data_dim))

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


# (sample, data point) rows per block of fused_bernoulli_mlp_log_prob: a block's logits
# (256 × 784 floats for MNIST, 0.8 MB) and activations stay in a core's L2 cache.
FUSED_BLOCK_ROWS = 256
# In-place activations of the fused path. tanh(a) = 2σ(2a) − 1: torch's vectorised sigmoid is
# about 4× faster than its tanh on CPU, at an absolute error below 2e-7 (1.5 float32 ulp at 1).
_IN_PLACE: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.Tanh: lambda a: a.mul_(2).sigmoid_().mul_(2).sub_(1),
    nn.ReLU: Tensor.relu_,
    nn.Sigmoid: Tensor.sigmoid_,
    nn.SiLU: lambda a: F.silu(a, inplace=True),
}


@torch.no_grad()
def fused_bernoulli_mlp_log_prob(
    x: Tensor,
    z: Tensor,
    layers: Sequence[nn.Module],
    head: nn.Linear,
    block_rows: int | None = None,
) -> Tensor:
    """Σ_f x_f l_f − softplus(l_f) with logits ``l = head(layers(z))``, without gradients:
    ``x [B, F]``, ``z [K, B, D]`` -> ``[K, B]``.

    The same number as ``BernoulliLikelihood.log_prob(x, head(layers(z)))`` (to float
    rounding; softplus(l) = l above l = 20, an error below 2.1e-9), with the data term taken
    through the last hidden layer h, Σ_f x_f l_f = h·(Wᵀx) + b·x, so the ``[K, B, F]`` logits
    only pass through softplus and a sum. The K samples go through the network in blocks of
    about ``block_rows`` rows, into buffers allocated once, with bias and activation applied
    in place: each block's logits stay in cache between the GEMM that makes them and the
    softplus that consumes them, and no ``[K, B, F]`` tensor is ever allocated. tanh is
    evaluated as 2σ(2a) − 1 (absolute error below 2e-7). ``block_rows`` defaults to
    ``FUSED_BLOCK_ROWS`` on the CPU and, on an accelerator (where small blocks would cost a
    kernel launch each), to blocks whose logits take 64 MiB.
    """
    if block_rows is None:
        cpu = z.device.type == "cpu"
        block_rows = (
            FUSED_BLOCK_ROWS if cpu else (64 << 20) // (z.element_size() * head.out_features)
        )
    batch, dim = z.shape[-2:]
    lead = z.shape[:-2]
    z = z.reshape(-1, batch, dim)
    num = z.shape[0]
    per_block = max(1, block_rows // batch)
    rows = per_block * batch
    data_term = x @ head.weight  # Wᵀx per data point: [B, H]
    data_const = x @ head.bias if head.bias is not None else None  # b·x: [B]
    buffers = [
        z.new_empty(rows, layer.out_features) if type(layer) is nn.Linear else None
        for layer in layers
    ]
    logits = z.new_empty(rows, head.out_features)
    out = z.new_empty(num, batch)
    for start in range(0, num, per_block):
        a = z[start : start + per_block].reshape(-1, dim)
        n, owned = a.shape[0], False
        for layer, buf in zip(layers, buffers, strict=True):
            if buf is not None:
                a = _linear_into(a, layer, buf[:n])
                owned = True
            elif owned and type(layer) in _IN_PLACE:
                _IN_PLACE[type(layer)](a)
            else:
                a, owned = layer(a), False
        lg = _linear_into(a, head, logits[:n])
        torch.ops.aten.softplus.out(lg, 1, 20, out=lg)
        block = a.view(-1, batch, a.shape[-1]).mul(data_term).sum(-1)
        if data_const is not None:
            block += data_const
        block -= lg.sum(-1).view(-1, batch)
        out[start : start + n // batch] = block
    return out.reshape(*lead, batch)


def _linear_into(a: Tensor, layer: nn.Linear, out: Tensor) -> Tensor:
    if layer.bias is None:
        return torch.mm(a, layer.weight.t(), out=out)
    return torch.addmm(layer.bias, a, layer.weight.t(), out=out)


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
