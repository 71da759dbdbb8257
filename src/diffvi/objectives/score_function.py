"""Score-function (likelihood-ratio) estimators for models with discrete latents, e.g. sigmoid
belief networks (:class:`~diffvi.models.sbn.SigmoidBeliefNet` with a
:class:`~diffvi.posteriors.bernoulli.BernoulliPosterior`): the shared helpers and plain
REINFORCE. NVIL, VIMCO and RWS have modules of their own (:mod:`diffvi.objectives.nvil`,
:mod:`~diffvi.objectives.vimco`, :mod:`~diffvi.objectives.rws`). Every estimator works over the
``[K, B]`` sample axis and returns a *surrogate* loss whose gradient is the estimator (the
draws h carry no gradient).

REINFORCE: ∇θ = E[∇θ log p(x, h)], ∇φ = E[l ∇φ log q(h | x)] with l = log p(x, h) −
log q(h | x) (the −∇φ log q term of ∇φ ELBO has mean 0 and is dropped). K draws are K
independent single-sample estimators, averaged; the bound is the ELBO.
"""

from torch import Tensor

from diffvi.objectives.base import Objective, ObjectiveOutput, check_data


def check_k(k: int, minimum: int = 1) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < minimum:
        raise ValueError(f"k must be an int >= {minimum}, got {k!r}")
    return k


def sample_terms(model, posterior, x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(z [K, B, D], log p factors [L + 1, K, B], log q factors [L, K, B])`` for K draws of q
    (after :func:`~diffvi.objectives.base.check_data` of x)."""
    check_data(model, x)
    sample = posterior.sample(x, k)
    return sample.z, model.log_joint_terms(x, sample.z), sample.extras["log_q_layers"]


class REINFORCE(Objective):
    """The plain score-function estimator of the ELBO's gradient, averaged over ``k`` draws."""

    name = "reinforce"

    def __init__(self, k: int = 1) -> None:
        self.k = check_k(k)

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        z, log_p, log_q = sample_terms(model, posterior, x, self.k)
        log_w = log_p.sum(0) - log_q.sum(0)  # [K, B]
        surrogate = log_p.sum(0) + log_w.detach() * log_q.sum(0)
        return ObjectiveOutput(
            loss=-surrogate.mean(), bound=log_w.mean(0).detach(), metrics={}, z=z
        )
