"""The contract every variational posterior q(z|x) follows."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call


@dataclass
class PosteriorSample:
    """Samples from q(z|x) with their log-densities.

    z: ``[K, B, D]`` (all latent layers concatenated, bottom layer first).
    log_q: ``[K, B]``, or ``None`` where q is only known through auxiliary variables.
    extras: family-specific tensors (e.g. ``mean``/``log_std`` ``[B, D]`` of a Gaussian, the
    standard-normal noise ``eps`` ``[K, B, D]``, or a diffusion posterior's auxiliaries).
    """

    z: Tensor
    log_q: Tensor | None
    extras: dict[str, Tensor] = field(default_factory=dict)


class Posterior(nn.Module, ABC):
    """An amortised variational family q(z|x); x is ``[B, *event_shape]``."""

    latent_dim: int

    @abstractmethod
    def sample(
        self, x: Tensor, k: int = 1, generator: torch.Generator | None = None
    ) -> PosteriorSample:
        """Reparameterised draws ``z: [K, B, D]`` and their ``log_q: [K, B]``."""

    @abstractmethod
    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """log q(z|x) for ``x: [B, ...]`` and ``z: [K, B, D]``; returns ``[K, B]``."""

    def log_prob_stopped(self, x: Tensor, z: Tensor) -> Tensor:
        """log q(z|x) with the variational parameters held fixed (no gradient to them), while
        gradients still flow through ``z`` and ``x``: the ``q(z; stop_grad(φ))`` of the STL
        (Roeder et al. 2017) and DReG (Tucker et al. 2018) estimators. ``[K, B]``."""
        frozen = {name: p.detach() for name, p in self.named_parameters()}
        frozen.update(dict(self.named_buffers()))
        return functional_call(self, frozen, args=(x, z), kwargs={}, strict=False, tie_weights=True)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """``forward`` scores ``z`` (so that ``functional_call`` can freeze parameters)."""
        return self.log_prob(x, z)

    def expected_latent(self, x: Tensor, k: int = 100) -> Tensor:
        """E_q[z|x] ``[B, D]``; Monte Carlo here, closed form where a family knows it."""
        return self.sample(x, k).z.mean(0)


def label_one_hot(label: Tensor | None, num_labels: int, batch: int, like: Tensor) -> Tensor | None:
    """The one-hot code ``[B, L]`` (``like``'s dtype and device) of ``label`` (int64 ``[B]``)
    that a label-conditioned posterior q(z|x, l) (``num_labels = L > 0``) appends to its
    networks' inputs; ``None`` for a posterior without labels (``num_labels = 0``). ValueError
    when a label-conditioned posterior gets no label, an unconditioned one gets one, or the
    labels are not integers in [0, L) of batch size ``batch``."""
    if num_labels == 0:
        if label is not None:
            raise ValueError(
                "this posterior is not label-conditioned (num_labels = 0): pass no label"
            )
        return None
    if label is None:
        raise ValueError(
            f"a label-conditioned posterior q(z|x, l) needs a label [B] in [0, {num_labels - 1}]"
        )
    if not isinstance(label, Tensor) or label.ndim != 1 or label.is_floating_point():
        got = f"shape {list(label.shape)}" if isinstance(label, Tensor) else type(label).__name__
        raise ValueError(f"label must be an integer tensor [B], got {got}")
    if label.shape[0] != batch:
        raise ValueError(f"label must have batch size {batch}, got {label.shape[0]}")
    if label.numel() and (int(label.min()) < 0 or int(label.max()) >= num_labels):
        raise ValueError(
            f"label must lie in [0, {num_labels - 1}], got values in "
            f"[{int(label.min())}, {int(label.max())}]"
        )
    return F.one_hot(label.to(like.device).long(), num_labels).to(like.dtype)


def with_label(h: Tensor, label: Tensor | None, num_labels: int) -> Tensor:
    """``h [B, F]`` with the one-hot label appended (``[B, F + L]``), or ``h`` itself for a
    posterior without labels (see :func:`label_one_hot`)."""
    code = label_one_hot(label, num_labels, h.shape[0], h)
    return h if code is None else torch.cat([h, code], dim=-1)
