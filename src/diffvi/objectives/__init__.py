"""Estimators of variational bounds and of their gradients."""

from diffvi.objectives.adversarial import AAE
from diffvi.objectives.base import Objective, ObjectiveOutput
from diffvi.objectives.cluster_heads import ClusterHeadsDDVI, OfficialClusterHeads
from diffvi.objectives.ddvi import DDVI, OfficialDDVI, OfficialDDVIStage2
from diffvi.objectives.elbo import ELBO
from diffvi.objectives.iwae import IWAE
from diffvi.objectives.nvil import NVIL
from diffvi.objectives.rws import RWS
from diffvi.objectives.score_function import REINFORCE
from diffvi.objectives.semisupervised import LabelConditionedSemiSupervised, SemiSupervised
from diffvi.objectives.vimco import VIMCO

# The score-function estimators of models with discrete latents (SigmoidBeliefNet, `train sbn`),
# by name; kept apart from OBJECTIVES, whose members train VAEs.
SCORE_FUNCTION_ESTIMATORS: dict[str, type[Objective]] = {
    "reinforce": REINFORCE,
    "nvil": NVIL,
    "vimco": VIMCO,
    "rws": RWS,
}
# SemiSupervised and LabelConditionedSemiSupervised wrap an ELBO or DDVI and need labels and a
# classifier, so they are exported but not registered as plain objectives.
OBJECTIVES: dict[str, type[Objective]] = {
    "elbo": ELBO,
    "iwae": IWAE,
    "ddvi": DDVI,
    "ddvi-official": OfficialDDVI,
    "ddvi-heads": ClusterHeadsDDVI,
    "ddvi-heads-official": OfficialClusterHeads,
    "aae": AAE,
}


def build_objective(name: str, **options) -> Objective:
    """Objective by name (``elbo``, ``iwae``, ``ddvi``, ``ddvi-official``, ``ddvi-heads``,
    ``ddvi-heads-official``, ``aae``) with its options, e.g. ``k=50``."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {name!r}")
    return OBJECTIVES[name](**options)


__all__ = [
    "AAE",
    "ClusterHeadsDDVI",
    "DDVI",
    "ELBO",
    "IWAE",
    "LabelConditionedSemiSupervised",
    "NVIL",
    "OBJECTIVES",
    "Objective",
    "ObjectiveOutput",
    "OfficialClusterHeads",
    "OfficialDDVI",
    "OfficialDDVIStage2",
    "REINFORCE",
    "RWS",
    "SCORE_FUNCTION_ESTIMATORS",
    "SemiSupervised",
    "VIMCO",
    "build_objective",
]
