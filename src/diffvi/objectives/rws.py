"""Reweighted wake-sleep (Bornschein & Bengio 2015, §2–3): the wake-phase p update
Σ_j w̃_j ∇θ log p(x, h_j), the wake-phase q update Σ_j w̃_j ∇φ log q(h_j | x), and optionally
the sleep phase ∇φ log q(h̃ | x̃) at (x̃, h̃) ~ p. Not the gradient of one objective; the bound
reported is L̂ = log (1/K) Σ_j w_j.
"""

import torch
from torch import Tensor

from diffvi.objectives.base import (
    Objective,
    ObjectiveOutput,
    effective_sample_size,
    log_mean_exp,
)
from diffvi.objectives.score_function import check_k, sample_terms


class RWS(Objective):
    """Reweighted wake-sleep (Bornschein & Bengio 2015) with ``k`` importance samples.

    Args:
        k: samples per data point (the paper's K = 5 for MNIST SBNs).
        wake_q: the wake-phase q update Σ w̃_j ∇φ log q(h_j | x).
        sleep: the sleep-phase q update ∇φ log q(h̃ | x̃) on B dreams (x̃, h̃) ~ p.
    """

    name = "rws"

    def __init__(self, k: int = 5, wake_q: bool = True, sleep: bool = False) -> None:
        self.k = check_k(k)
        if not (wake_q or sleep):
            raise ValueError("RWS needs wake_q or sleep: otherwise q is never trained")
        self.wake_q, self.sleep = wake_q, sleep

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        z, log_p, log_q = sample_terms(model, posterior, x, self.k)
        log_w = log_p.sum(0) - log_q.sum(0)
        weights = torch.softmax(log_w.detach(), 0)  # w̃ [K, B]
        loss = -(weights * log_p.sum(0)).sum(0).mean()
        metrics = {"ess": effective_sample_size(log_w.detach()).mean()}
        if self.wake_q:
            loss = loss - (weights * log_q.sum(0)).sum(0).mean()
        if self.sleep:
            dreams, hidden = model.sample_joint(x.shape[0])
            sleep_log_q = posterior.log_prob(dreams.to(x.dtype), hidden.unsqueeze(0).to(x.dtype))
            loss = loss - sleep_log_q.mean()
            metrics["sleep_log_q"] = sleep_log_q.detach().mean()
        return ObjectiveOutput(loss=loss, bound=log_mean_exp(log_w).detach(), metrics=metrics, z=z)
