"""The importance-weighted bound (Burda, Grosse, Salakhutdinov 2016) and its gradient estimators.

L_k(x) = E[log (1/k) Σ_i w_i],  w_i = p(x, z_i) / q(z_i|x),  z_i ~ q(z|x)   (IWAE eq. 8),
computed per data point: the log-mean-exp is over the k samples of each x, and only then
averaged over the batch (unlike Pyro's RenyiELBO, pyro issue #3104).

Gradient estimators for the variational parameters φ (the model's θ always gets eq. 14's
Σ w̃_i ∇θ log w_i):
- ``standard``: differentiate L_k through the reparameterised samples (IWAE eq. 14).
- ``stl``: "sticking the landing" (Roeder et al. 2017): drop the score term ∇φ log q by
  scoring z with q's parameters held fixed. Lower variance; biased for k > 1.
- ``dreg``: doubly-reparameterised (Tucker et al. 2018, eq. 5): ∇φ = Σ_i w̃_i² ∂log w_i/∂z_i
  ∂z_i/∂φ with q scored at fixed parameters. Unbiased; its SNR does not decay with k.
"""

from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor

from diffvi.objectives.base import (
    Objective,
    ObjectiveOutput,
    check_data,
    effective_sample_size,
    log_importance_weights,
    log_mean_exp,
)

Estimator = Literal["standard", "stl", "dreg"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)


class IWAE(Objective):
    """IWAE bound with ``k`` importance samples per data point."""

    config_fields: ClassVar[dict[str, str]] = {"k": "k", "estimator": "estimator"}

    name = "iwae"

    def __init__(self, k: int = 50, estimator: Estimator = "standard") -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        self.k = k
        self.estimator = estimator

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        check_data(model, x)
        s = posterior.sample(x, self.k)
        if self.estimator == "standard":
            log_w = log_importance_weights(model, x, s)  # [K, B]
            bound = log_mean_exp(log_w)
            loss = -bound.mean()
        else:
            log_w = model.log_joint(x, s.z) - posterior.log_prob_stopped(x, s.z)
            bound = log_mean_exp(log_w)
            if self.estimator == "stl":
                loss = -bound.mean()
            else:
                # Surrogate Σ_i stop(w̃_i) log w_i, plus a second factor w̃_i on the gradient that
                # flows back through z_i, gives Tucker et al.'s eq. 5 for φ and eq. 14 for θ.
                w_tilde = torch.softmax(log_w.detach(), 0)
                if s.z.requires_grad:
                    s.z.register_hook(lambda grad: grad * w_tilde.unsqueeze(-1))
                loss = -(w_tilde * log_w).sum(0).mean()
        metrics = {"ess": effective_sample_size(log_w.detach()).mean()}
        return ObjectiveOutput(loss=loss, bound=bound.detach(), metrics=metrics)
