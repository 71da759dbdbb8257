"""Priors p(z) over the top latent layer: the :class:`Prior` contract, the labelled mixtures of
:class:`PartitionedPrior`, N(0, I), and the registry that :func:`build_prior` builds from.

:data:`PRIORS` maps a name to a :class:`Prior` class. A class joins it where it is defined, with
the ``@register_prior(name)`` decorator (N(0, I) here; the 2-D toy priors and the Gaussian
mixture in :mod:`diffvi.distributions.toy2d`), so this module imports none of them and they
import it. ``diffvi.distributions`` imports every prior module, so the registry is complete
whenever any of them is imported. A new prior is a :class:`Prior` subclass with the decorator;
:meth:`Prior.with_defaults` says how :func:`build_prior` makes it.
"""

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

from diffvi.distributions.gaussian import standard_normal_log_prob

DEFAULT_PARTITIONS = 10
"""Parts of a partitioned prior (DDVI's 2-D priors) and components of a mixture, by default."""


def _as_shape(shape: int | tuple[int, ...] | torch.Size) -> tuple[int, ...]:
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(s) for s in shape)


class Prior(nn.Module, ABC):
    """p(z) over ``dim`` latent dimensions: ``log_prob(z [..., D]) -> [...]`` and
    ``sample(shape, generator) -> [*shape, D]``.

    Samples follow the module's device and dtype (a non-persistent buffer anchor, so moving or
    casting the module moves them); randomness goes through the ``generator`` argument. Priors
    made of labelled parts subclass :class:`PartitionedPrior` and add ``num_partitions``.
    """

    dim: int

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"latent dimension must be >= 1, got {dim}")
        self.dim = dim
        # A buffer so that samples follow the module's device and dtype.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @abstractmethod
    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z): ``[..., D] -> [...]``."""

    @abstractmethod
    def sample(
        self, shape: int | tuple[int, ...], generator: torch.Generator | None = None
    ) -> Tensor:
        """Draws ``[*shape, D]``."""

    @classmethod
    def with_defaults(cls, dim: int, num_components: int = DEFAULT_PARTITIONS) -> "Prior":
        """The prior over ``dim`` dimensions with default settings, as :func:`build_prior` makes
        it (``num_components`` is read by mixtures only): ``cls(dim)`` unless overridden."""
        return cls(dim)


class PartitionedPrior(Prior):
    """A mixture of ``num_partitions`` labelled parts, p(z) = Σ_l π_l p(z | l).

    Beyond :class:`Prior`:

    - ``num_partitions``: L;
    - ``sample(shape, generator, labels=labels)``: z_i ~ p(z | labels_i),
      ``labels.shape == shape``;
    - ``sample_with_labels(num, generator) -> (z [num, D], labels [num] int64)``;
    - ``log_prob_given_label(z [..., D], labels [...]) -> [...]``: log p(z | l) (semi-supervised
      objectives score labelled points with it);
    - ``log_prob_per_partition(z [..., D]) -> [..., L]``: log p(z | l) for every l;
    - ``log_mixing_weights() -> [L]`` (log π) and ``responsibilities(z [..., D]) -> [..., L]``
      (p(l | z)).

    Subclasses implement ``_sample_given(labels [M] int64, generator) -> [M, D]`` and
    ``_log_prob_given(z [M, D], labels [M] int64) -> [M]``; they may override
    ``log_prob_per_partition`` with a faster batched version.
    """

    def __init__(self, num_partitions: int = DEFAULT_PARTITIONS, dim: int = 2) -> None:
        if num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
        super().__init__(dim)
        self.num_partitions = num_partitions

    # -- hooks -------------------------------------------------------------------------------
    def _sample_given(self, labels: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def _log_prob_given(self, z: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def log_mixing_weights(self) -> Tensor:
        """log π_l, ``[num_partitions]`` (uniform here; learnable in
        :class:`~diffvi.distributions.toy2d.MixturePrior`)."""
        return torch.full(
            (self.num_partitions,),
            -math.log(self.num_partitions),
            device=self._anchor.device,
            dtype=self._anchor.dtype,
        )

    def _sample_labels(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        return torch.randint(
            self.num_partitions, shape, generator=generator, device=self._anchor.device
        )

    # -- validation --------------------------------------------------------------------------
    def _check_z(self, z: Tensor) -> None:
        if z.dim() < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"expected z of shape [..., {self.dim}], got {tuple(z.shape)}")

    def _check_labels(self, labels: Tensor) -> Tensor:
        if not isinstance(labels, Tensor):
            labels = torch.as_tensor(labels)
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(f"expected integer labels, got dtype {labels.dtype}")
        if labels.numel() > 0:
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_partitions:
                raise ValueError(
                    f"expected labels in [0, {self.num_partitions - 1}], got values in "
                    f"[{low}, {high}]"
                )
        return labels.to(device=self._anchor.device, dtype=torch.long)

    # -- public API --------------------------------------------------------------------------
    def sample(
        self,
        shape: int | tuple[int, ...],
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Draw ``[*shape, D]`` samples; with ``labels`` (shape ``shape``) from p(z | labels)."""
        shape = _as_shape(shape)
        if labels is None:
            labels = self._sample_labels(shape, generator)
        else:
            labels = self._check_labels(labels)
            if tuple(labels.shape) != shape:
                raise ValueError(
                    f"labels must have the sample shape {shape}, got {tuple(labels.shape)}"
                )
        flat = self._sample_given(labels.reshape(-1), generator)
        return flat.reshape(*shape, self.dim)

    def sample_with_labels(
        self, num: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``(z [num, D], labels [num] int64)`` with labels ~ π and z ~ p(z | label)."""
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        labels = self._sample_labels((num,), generator)
        return self._sample_given(labels, generator), labels

    def log_prob_given_label(self, z: Tensor, labels: Tensor) -> Tensor:
        """log p(z | l): ``z [..., D]`` and ``labels`` broadcastable to ``[...]`` -> ``[...]``."""
        self._check_z(z)
        labels = self._check_labels(labels)
        try:
            batch = torch.broadcast_shapes(z.shape[:-1], labels.shape)
        except RuntimeError as err:
            raise ValueError(
                f"labels of shape {tuple(labels.shape)} do not broadcast against z's batch "
                f"shape {tuple(z.shape[:-1])}"
            ) from err
        z_flat = z.expand(*batch, self.dim).reshape(-1, self.dim)
        l_flat = labels.expand(batch).reshape(-1)
        return self._log_prob_given(z_flat, l_flat).reshape(batch)

    def log_prob_per_partition(self, z: Tensor) -> Tensor:
        """log p(z | l) for every l: ``[..., D] -> [..., num_partitions]``."""
        self._check_z(z)
        k = self.num_partitions
        z_flat = z.reshape(-1, self.dim)
        z_rep = z_flat.repeat_interleave(k, dim=0)
        labels = torch.arange(k, device=z.device).repeat(z_flat.shape[0])
        return self._log_prob_given(z_rep, labels).reshape(*z.shape[:-1], k)

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) = log Σ_l π_l p(z | l): ``[..., D] -> [...]``."""
        per = self.log_prob_per_partition(z)
        return torch.logsumexp(per + self.log_mixing_weights().to(per.dtype), dim=-1)

    def responsibilities(self, z: Tensor) -> Tensor:
        """p(l | z): ``[..., D] -> [..., num_partitions]``, summing to one."""
        per = self.log_prob_per_partition(z)
        return torch.softmax(per + self.log_mixing_weights().to(per.dtype), dim=-1)


P = TypeVar("P", bound=type[Prior])

PRIORS: dict[str, type[Prior]] = {}
"""Every prior :func:`build_prior` knows, by name (see the module docstring)."""


def register_prior(name: str) -> Callable[[P], P]:
    """Class decorator: add a :class:`Prior` subclass to :data:`PRIORS` under ``name``."""

    def add(cls: P) -> P:
        if name in PRIORS and PRIORS[name] is not cls:
            raise ValueError(f"prior name {name!r} is taken by {PRIORS[name].__name__}")
        PRIORS[name] = cls
        return cls

    return add


@register_prior("standard-normal")
class StandardNormal(Prior):
    """p(z) = N(0, I_D)."""

    def log_prob(self, z: Tensor) -> Tensor:
        """``[..., D] -> [...]``."""
        return standard_normal_log_prob(z)

    def sample(
        self, shape: int | tuple[int, ...], generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``[*shape, D]`` samples."""
        return torch.randn(
            (*_as_shape(shape), self.dim),
            generator=generator,
            device=self._anchor.device,
            dtype=self._anchor.dtype,
        )


def build_prior(name: str, dim: int = 2, num_components: int = DEFAULT_PARTITIONS) -> Prior:
    """A prior by registry name (:data:`PRIORS`) with default settings, over ``dim`` dimensions.

    ``pinwheel``, ``swiss-roll`` and ``square`` exist in 2-D only; ``mixture`` and
    ``standard-normal`` take any ``dim >= 1``; ``num_components`` is the mixture's.
    """
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; expected one of {sorted(PRIORS)}")
    try:
        return PRIORS[name].with_defaults(dim, num_components)
    except ValueError as err:
        raise ValueError(f"prior {name!r}: {err}") from None
