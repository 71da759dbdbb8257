"""The fixed choices of CLI options, as enums built from the library's registries (typer lists
them in ``--help``). Nothing here imports Lightning."""

from collections.abc import Iterable
from enum import StrEnum

from diffvi.diffusion.model import LOSSES as DIFFUSION_LOSSES
from diffvi.diffusion.samplers import SAMPLERS
from diffvi.diffusion.schedules import SCHEDULES as DIFFUSION_SCHEDULES
from diffvi.distributions.likelihoods import LIKELIHOODS
from diffvi.distributions.priors import PRIORS
from diffvi.models.vae import ARCHITECTURES
from diffvi.nn.activations import ACTIVATIONS
from diffvi.objectives import OBJECTIVES
from diffvi.objectives.iwae import ESTIMATORS
from diffvi.training.config import ADAM_PRESETS, POSTERIORS, SCHEDULES
from diffvi.training.embedding import EMBEDDING_METHODS


def choice(name: str, values: Iterable[str]) -> type[StrEnum]:
    """A ``StrEnum`` whose members are ``values`` (member names with ``-`` as ``_``)."""
    return StrEnum(name, {v.replace("-", "_"): v for v in values})


# Every registered objective (the diffusion-posterior ones say to use `train ddvae`).
Objective = choice("Objective", OBJECTIVES)
Estimator = choice("Estimator", ESTIMATORS)
Architecture = choice("Architecture", ARCHITECTURES)
Likelihood = choice("Likelihood", LIKELIHOODS)
Activation = choice("Activation", ACTIVATIONS)
Adam = choice("Adam", ADAM_PRESETS)
Schedule = choice("Schedule", SCHEDULES)
Prior = choice("Prior", PRIORS)
# Posteriors of `train vae` (the diffusion one is `train ddvae`'s).
VAEPosterior = choice("VAEPosterior", [p for p in POSTERIORS if p != "diffusion"])
# Diffusion models.
NoiseSchedule = choice("NoiseSchedule", DIFFUSION_SCHEDULES)
DiffusionLoss = choice("DiffusionLoss", DIFFUSION_LOSSES)
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
# Conditional diffusion (`train cvdm`). Spelled out rather than read from
# `diffvi.training.cvdm_module`, which imports Lightning; tests/training/test_cvdm_training.py
# checks that they match `PAIRED_TASKS` and `CVDM_SCHEDULES`.
PairedTask = choice("PairedTask", ["mnist-sr4", "fashion-mnist-sr4", "microscopy-sr", "phase"])
CVDMSchedule = choice("CVDMSchedule", ["learned", "linear", "cosine", "regression"])
# Score-function estimators (`train sbn`); tests/training/test_sbn_training.py checks that they
# match `SCORE_FUNCTION_ESTIMATORS`.
SBNEstimator = choice("SBNEstimator", ["reinforce", "nvil", "vimco", "rws"])
# `embed genotypes`.
EmbeddingMethod = choice("EmbeddingMethod", EMBEDDING_METHODS)
