"""Solvers of inverse problems with a diffusion prior: RED-diff and its baselines.

Every solver follows :class:`~diffvi.inverse.solvers.base.Solver`:
``solver.solve(y, operator, prior, noise_std) -> Reconstruction(x, nfe, seconds, peak_memory)``.
"""

from typing import Any

from diffvi.inverse.solvers.base import Problem, Reconstruction, Solver
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


__all__ = [
    "DDRM",
    "DPS",
    "SOLVERS",
    "WEIGHTINGS",
    "PiGDM",
    "Problem",
    "REDDiff",
    "Reconstruction",
    "Solver",
    "build_solver",
]
