"""Solvers of inverse problems with a diffusion prior: RED-diff and its baselines, and the other
reconstructors (the pseudo-inverse, a trained CVDM).

Every solver follows :class:`~diffvi.inverse.solvers.base.Solver`:
``solver.solve(y, operator, prior, noise_std) -> Reconstruction(x, nfe, seconds, peak_memory)``;
``solver.bind(prior, noise_std)`` makes it a
:class:`~diffvi.inverse.solvers.base.Reconstructor`, the contract
``reconstructor(y, operator) -> Reconstruction`` that every restoration method shares.
"""

import inspect
from typing import Any

from diffvi.inverse.solvers.base import (
    PriorReconstructor,
    Problem,
    PseudoInverse,
    Reconstruction,
    Reconstructor,
    Solver,
)
from diffvi.inverse.solvers.cvdm import CVDMReconstructor, load_cvdm_reconstructor
from diffvi.inverse.solvers.ddrm import DDRM
from diffvi.inverse.solvers.dps import DPS
from diffvi.inverse.solvers.pigdm import PiGDM
from diffvi.inverse.solvers.red_diff import WEIGHTINGS, REDDiff

SOLVERS: dict[str, type[Solver]] = {
    REDDiff.name: REDDiff,
    DPS.name: DPS,
    PiGDM.name: PiGDM,
    DDRM.name: DDRM,
}


def build_solver(name: str, **options: Any) -> Solver:
    """The solver registered as ``name``, built with ``options`` (its constructor's keywords)."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; expected one of {sorted(SOLVERS)}")
    return SOLVERS[name](**options)


def solver_defaults(name: str) -> dict[str, Any]:
    """Every constructor keyword of the solver registered as ``name``, with its default."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; expected one of {sorted(SOLVERS)}")
    parameters = list(inspect.signature(SOLVERS[name].__init__).parameters.values())[1:]
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


__all__ = [
    "DDRM",
    "DPS",
    "SOLVERS",
    "WEIGHTINGS",
    "CVDMReconstructor",
    "PiGDM",
    "PriorReconstructor",
    "Problem",
    "PseudoInverse",
    "REDDiff",
    "Reconstruction",
    "Reconstructor",
    "Solver",
    "build_solver",
    "load_cvdm_reconstructor",
    "solver_defaults",
]
