"""The evidence lower bound, estimated with reparameterised samples (AEVB, Kingma & Welling).

ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) || p(z)). With ``analytic_kl`` the KL is the closed form
of AEVB App. B (single-layer Gaussian q, standard-normal prior: the estimator of their eq. 10);
otherwise the sampled form E_q[log p(x,z) − log q(z|x)] (their eq. 6).
"""

from typing import ClassVar

from torch import Tensor

from diffvi.distributions.gaussian import kl_to_standard_normal
from diffvi.distributions.priors import StandardNormal
from diffvi.objectives.base import Objective, ObjectiveOutput, check_data, log_density_ratio
from diffvi.posteriors.gaussian import GaussianPosterior


class ELBO(Objective):
    """Reparameterised ELBO averaged over ``k`` draws per data point."""

    config_fields: ClassVar[dict[str, str]] = {"k": "k", "analytic_kl": "analytic_kl"}

    name = "elbo"

    def __init__(self, k: int = 1, analytic_kl: bool = False) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.analytic_kl = analytic_kl

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        check_data(model, x)
        s = posterior.sample(x, self.k)
        log_lik = model.log_likelihood(x, s.z)  # [K, B]
        if self.analytic_kl:
            single_gaussian = (
                isinstance(posterior, GaussianPosterior) and len(posterior.encoders) == 1
            )
            if not single_gaussian or not isinstance(model.prior, StandardNormal):
                raise ValueError(
                    "analytic_kl needs a one-layer GaussianPosterior and a standard-normal prior, "
                    f"got {type(posterior).__name__} and {type(model.prior).__name__}; "
                    "use analytic_kl=False"
                )
            kl = kl_to_standard_normal(s.extras["mean"], s.extras["log_std"])  # [B]
        else:
            kl = log_density_ratio(model, s).mean(0)
        bound = log_lik.mean(0) - kl
        metrics = {"kl": kl.detach().mean(), "log_likelihood": log_lik.detach().mean()}
        return ObjectiveOutput(loss=-bound.mean(), bound=bound.detach(), metrics=metrics, z=s.z)
