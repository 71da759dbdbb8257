"""The fixed choices of CLI options, as enums built from the library's registries (typer lists
them in ``--help``). Nothing here imports Lightning."""

from collections.abc import Iterable
from enum import StrEnum

from diffvi.diffusion.samplers import SAMPLERS
from diffvi.training.embedding import EMBEDDING_METHODS


def choice(name: str, values: Iterable[str]) -> type[StrEnum]:
    """A ``StrEnum`` whose members are ``values`` (member names with ``-`` as ``_``)."""
    return StrEnum(name, {v.replace("-", "_"): v for v in values})


Sampler = choice("Sampler", SAMPLERS)
# Inverse problems (`restore`). Spelled out rather than read from `diffvi.inverse`, whose import
# pulls in torchmetrics and scipy (over a second) and would slow down `diffvi --help`;
# tests/cli/test_restore.py checks that they match `OPERATORS` and `SOLVERS`.
Task = choice(
    "Task",
    [
        "inpaint-box", "inpaint-random", "inpaint-half", "sr4", "sr2", "sr4-bicubic",
        "deblur-gaussian", "deblur-uniform", "denoise", "phase-retrieval", "phase-defocus",
    ],
)  # fmt: skip
# "cvdm" restores with a trained conditional model (`train cvdm`) instead of a prior.
InverseSolver = choice("InverseSolver", ["red-diff", "dps", "pigdm", "ddrm", "cvdm"])
# `embed genotypes`.
EmbeddingMethod = choice("EmbeddingMethod", EMBEDDING_METHODS)
