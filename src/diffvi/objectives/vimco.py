"""VIMCO, variational inference for Monte Carlo objectives (Mnih & Rezende 2016, eq. 8–10):
the K-sample bound L̂ = log (1/K) Σ_j w_j with per-sample learning signals L̂ − L̂_{−j}, where
L̂_{−j} replaces w_j by the geometric mean of the others (paper; ``mean="arithmetic"`` uses their
arithmetic mean): ∇ = Σ_j (L̂ − L̂_{−j}) ∇φ log q(h_j | x) + Σ_j w̃_j ∇ log w_j.
"""

import math
from typing import Literal

import torch
from torch import Tensor

from diffvi.objectives.base import (
    Objective,
    ObjectiveOutput,
    effective_sample_size,
    log_mean_exp,
)
from diffvi.objectives.score_function import check_k, sample_terms


def leave_one_out_log_means(log_w: Tensor, mean: str = "geometric") -> Tensor:
    """VIMCO's L̂_{−j} ``[K, B]`` for log-weights ``log_w [K, B]``: log (1/K)(Σ_{i≠j} w_i + ŵ_j)
    with ŵ_j the geometric mean (VIMCO eq. 9) or the arithmetic mean of the other K − 1."""
    k = log_w.shape[0]
    if k < 2:
        raise ValueError(f"VIMCO needs K >= 2 samples, got {k}")
    if mean == "geometric":
        stand_in = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # log ŵ_j
    elif mean == "arithmetic":
        others = log_w.unsqueeze(0).expand(k, -1, -1).clone()  # [j, i, B]
        others.diagonal(dim1=0, dim2=1).fill_(-math.inf)
        stand_in = torch.logsumexp(others, 1) - math.log(k - 1)
    else:
        raise ValueError(f"mean must be 'geometric' or 'arithmetic', got {mean!r}")
    replaced = log_w.unsqueeze(0).expand(k, -1, -1).clone()  # row j: w_j replaced by ŵ_j
    index = torch.arange(k, device=log_w.device)
    replaced[index, index] = stand_in
    return log_mean_exp(replaced, dim=1)


class VIMCO(Objective):
    """Variational inference for Monte Carlo objectives (Mnih & Rezende 2016), ``k >= 2``."""

    name = "vimco"

    def __init__(self, k: int = 5, mean: Literal["geometric", "arithmetic"] = "geometric") -> None:
        self.k = check_k(k, 2)
        if mean not in ("geometric", "arithmetic"):
            raise ValueError(f"mean must be 'geometric' or 'arithmetic', got {mean!r}")
        self.mean = mean

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        z, log_p, log_q = sample_terms(model, posterior, x, self.k)
        log_w = log_p.sum(0) - log_q.sum(0)  # [K, B]
        bound = log_mean_exp(log_w)  # L̂ [B]
        signal = bound.detach() - leave_one_out_log_means(log_w.detach(), self.mean)
        surrogate = bound + (signal * log_q.sum(0)).sum(0)  # VIMCO eq. 10
        metrics = {"ess": effective_sample_size(log_w.detach()).mean()}
        return ObjectiveOutput(loss=-surrogate.mean(), bound=bound.detach(), metrics=metrics, z=z)
