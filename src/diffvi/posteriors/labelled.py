"""Label-conditioned posteriors q(z, l|x) = q(l|x) q(z|x, l) for semi-supervised training (M2 of
Kingma, Rezende, Mohamed & Welling 2014, eq. 8; the semi-supervised DD-VAE of the official DDVI
code, GitHub topwasu/DDVI, ``DiffVAE_semi``).

:class:`LabelConditionedPosterior` joins a classifier q(l|x) (logits ``[B, L]``) to a posterior
built with ``num_labels = L`` (a :class:`~diffvi.posteriors.GaussianPosterior` or
:class:`~diffvi.posteriors.IAFPosterior` whose encoder reads the one-hot label beside x, or a
:class:`~diffvi.posteriors.DiffusionPosterior` whose reverse chain is conditioned on it).
Given a label it is q(z|x, l); the semi-supervised objective
(:class:`~diffvi.objectives.LabelConditionedSemiSupervised`) passes the true label of labelled
items and every label of unlabelled ones.

Without a label it is the posterior q(z|x) = q(z|x, l*(x)) with l*(x) = argmax_l q(l|x): the
official code embeds every image with the chain of its predicted class (``DiffVAE_semi.eval``).
Since l* is a function of x, this is a proper posterior of x with the density (or auxiliary
densities) of the chosen conditional, so every consumer of a plain posterior — embeddings, the
IWAE bound, likelihood estimates — uses it unchanged.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from diffvi.posteriors.base import Posterior, PosteriorSample
from diffvi.posteriors.diffusion import ChainView, DiffusionPosterior, ReverseChain


class LabelConditionedPosterior(Posterior):
    """q(z, l|x) = q(l|x) q(z|x, l) (module docstring).

    Args:
        base: a posterior built with ``num_labels = L >= 2`` (its ``sample`` and ``log_prob``
            take ``label``).
        classifier: q(l|x) as logits, ``x [B, *event_shape] -> [B, L]``.
    """

    def __init__(self, base: Posterior, classifier: nn.Module) -> None:
        super().__init__()
        num_labels = int(getattr(base, "num_labels", 0))
        if num_labels < 2:
            raise ValueError(
                f"the base posterior must be label-conditioned (built with num_labels >= 2), "
                f"got {type(base).__name__} with num_labels={num_labels}"
            )
        self.base = base
        self.classifier = classifier
        self.num_labels = num_labels
        self.latent_dim = base.latent_dim
        self.latent_dims = list(getattr(base, "latent_dims", [base.latent_dim]))

    def label_logits(self, x: Tensor) -> Tensor:
        """The classifier's logits of q(l|x): ``x [B, ...] -> [B, L]``."""
        logits = self.classifier(x)
        if tuple(logits.shape) != (x.shape[0], self.num_labels):
            raise ValueError(
                f"the classifier must return logits [B, L] = [{x.shape[0]}, {self.num_labels}], "
                f"got {list(logits.shape)}"
            )
        return logits

    def predict_label(self, x: Tensor) -> Tensor:
        """l*(x) = argmax_l q(l|x), int64 ``[B]`` (no gradient)."""
        with torch.no_grad():
            return self.label_logits(x).argmax(-1)

    def _label(self, x: Tensor | None, label: Tensor | None) -> Tensor:
        if label is not None:
            return label
        if x is None:
            raise ValueError("without x, a label-conditioned posterior needs the labels")
        return self.predict_label(x)

    def sample(
        self,
        x: Tensor,
        k: int = 1,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> PosteriorSample:
        """Draws of q(z|x, l) for ``label`` (int64 ``[B]``), by default l*(x) = argmax q(l|x)."""
        return self.base.sample(x, k, generator, label=self._label(x, label))

    def log_prob(self, x: Tensor, z: Tensor, label: Tensor | None = None) -> Tensor:
        """log q(z|x, l) ``[K, B]`` for ``label`` (default l*(x))."""
        return self.base.log_prob(x, z, label=self._label(x, label))

    def expected_latent(self, x: Tensor, k: int = 100, label: Tensor | None = None) -> Tensor:
        """E[z|x, l] ``[B, D]`` for ``label`` (default l*(x)): the base's closed form where it
        has one, else the mean of ``k`` draws."""
        label = self._label(x, label)
        if type(self.base).expected_latent is not Posterior.expected_latent:
            return self.base.expected_latent(x, k, label=label)
        return self.sample(x, k, label=label).z.mean(0)


class LabelConditionedDiffusion(ChainView, LabelConditionedPosterior):
    """A :class:`LabelConditionedPosterior` around a label-conditioned
    :class:`~diffvi.posteriors.DiffusionPosterior`: also the chain's interface (``encode``,
    ``reverse``, ``denoising_loss``, ``frozen_chain``, ``sampler``, …) that DDVI uses, each
    with an optional ``label`` (default l*(x))."""

    @property
    def sampler(self) -> str:
        return self.base.sampler

    @sampler.setter
    def sampler(self, value: str) -> None:
        self.base.sampler = value

    @property
    def wrapped(self) -> DiffusionPosterior:
        """The label-conditioned chain; its q(y_T|x) (``encode``) is label-free."""
        return self.base

    def reverse(
        self,
        y_T: Tensor,
        x: Tensor | None,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> ReverseChain:
        return self.base.reverse(y_T, x, generator, label=self._label(x, label))

    @contextmanager
    def frozen_chain(self) -> Iterator[None]:
        with self.base.frozen_chain():
            yield

    def denoising_loss(
        self,
        z: Tensor,
        x: Tensor | None = None,
        generator: torch.Generator | None = None,
        huber: bool = False,
        label: Tensor | None = None,
    ) -> Tensor:
        """The chain's denoising loss on ``z [N, D]`` with labels ``label`` (default l*(x))."""
        return self.base.denoising_loss(z, x, generator, huber, label=self._label(x, label))


def label_conditioned(base: Posterior, classifier: nn.Module) -> LabelConditionedPosterior:
    """``base`` (built with ``num_labels`` >= 2) joined to ``classifier``: a
    :class:`LabelConditionedDiffusion` for a diffusion posterior, else a
    :class:`LabelConditionedPosterior`."""
    if hasattr(base, "denoising_loss"):
        return LabelConditionedDiffusion(base, classifier)
    return LabelConditionedPosterior(base, classifier)
