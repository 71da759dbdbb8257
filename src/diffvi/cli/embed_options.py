"""The options that ``diffvi embed genotypes`` and ``diffvi embed table`` share: the embedding
method, its training budget and the scores (both run
:func:`diffvi.training.embedding.embed_labelled`)."""

from typing import Annotated

import typer

from diffvi.cli.options import choice
from diffvi.training.embedding import (
    EMBEDDING_METHODS,
    EmbeddingOptions,
    parse_likelihood_scale,
)

MethodOpt = Annotated[choice(EMBEDDING_METHODS), typer.Option(help="Embedding method.")]
EpochsOpt = Annotated[int, typer.Option(min=1, help="Training epochs (variational methods).")]
HiddenOpt = Annotated[int, typer.Option(min=1, help="Hidden units per MLP layer.")]
LrOpt = Annotated[float, typer.Option(min=1e-12, help="Adam learning rate.")]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Samples per training batch.")]
KnnOpt = Annotated[
    int, typer.Option(min=1, help="Neighbours of the leave-one-out kNN classifier on the labels.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of training, sampling and the GMM.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show progress bars.")]


def embedding_options(
    epochs: int,
    batch_size: int,
    lr: float,
    hidden: int,
    likelihood_scale: float | str | None,
    seed: int,
    device: str,
    progress: bool,
) -> EmbeddingOptions:
    """The :class:`EmbeddingOptions` of the shared options (``likelihood_scale`` None: the
    library's default, ``"median"``; text: a rule or a number, see
    :func:`~diffvi.training.embedding.parse_likelihood_scale`)."""
    default = EmbeddingOptions().likelihood_scale
    return EmbeddingOptions(
        epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden,
        likelihood_scale=default if likelihood_scale is None else parse_likelihood_scale(
            likelihood_scale
        ),
        seed=seed, device=device, progress=progress,
    )  # fmt: skip
