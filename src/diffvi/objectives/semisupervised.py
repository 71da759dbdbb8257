"""Semi-supervised training with a partitioned prior: M2 of Kingma, Rezende, Mohamed & Welling
(2014, "Semi-supervised learning with deep generative models", eqs. 6–9) as DDVI uses it
(Piriyakulkij, Wang & Kuleshov 2024, arXiv 2401.02739, semi-supervised DD-VAE): the labels pick
the prior partition p(z|l), unlabelled points marginalise a classifier q(l|x), and a
classification loss trains q(l|x) on the labelled points.

Model and posterior. The prior is a mixture over labels, p(z) = Σ_l p(l) p(z|l) (the
partitioned 2-D priors of :mod:`diffvi.distributions.toy2d`: ``log_prob_per_partition(z) ->
[..., L]`` = log p(z|l), ``log_mixing_weights() -> [L]`` = log p(l)), so p(x, z, l) =
p(l) p(z|l) p(x|z); the label reaches x only through z. The posterior factorises as
q(z, l|x) = q(z|x) q(l|x), with q(z|x) the base objective's posterior (Gaussian, IAF or DDVI's
diffusion posterior) and q(l|x) a classifier (:func:`~diffvi.models.semisupervised.
build_label_classifier`). Write the prior responsibilities

    log p(l|z) = log p(z|l) + log p(l) − log p(z),   log p(z) = logsumexp_l [log p(z|l) + log p(l)].

Labelled (x, l): M2's L(x, l) (eq. 6) is the base bound with log p(z) replaced by
log p(z, l) = log p(z) + log p(l|z):

    L(x, l) = E_q(z|x)[log p(x|z) + log p(z, l) − log q(z|x)] = B(x) + E_q(z|x)[log p(l|z)]
            ≤ log p(x, l),

where B(x) is the base bound on log p(x) (the ELBO, or DDVI's auxiliary ELBO, whose
extended-space ratio also contains log p(z)).

Unlabelled x: M2's U(x) (eq. 7) treats l as a latent with posterior q(l|x):

    U(x) = E_q(z|x) Σ_l q(l|x) [log p(x|z) + log p(z, l) − log q(l|x) − log q(z|x)]
         = B(x) − E_q(z|x) KL(q(l|x) ‖ p(l|z))  ≤  B(x)  ≤ log p(x).

So U is looser than the base bound, with equality when q(l|x) = p(l|z) for the drawn z; its
job is to train q(l|x) towards the label the latent picks (and z towards partitions that agree
with q(l|x)).

In code, per draw z_k of the base objective (``ObjectiveOutput.z``, ``[K, B, D]``; the top
latent layer enters the prior), the correction is

    c[k, b] = log p(l_b | z_kb)                    for labelled items,
    c[k, b] = −KL(q(l|x_b) ‖ p(l | z_kb))           for unlabelled items (label −1),

the reported bound is B(x) + mean_k c (a bound on log p(x, l) for labelled items, on log p(x)
for unlabelled ones), and the training loss is

    loss = base loss − label_weight · mean_b mean_k c + classifier_weight · CE,

CE the mean cross-entropy −log q(l_b|x_b) over the batch's labelled items (M2's eq. 9 term
α·E_labelled[−log q(l|x)], which trains q(l|x) on labelled data; without it q(l|x) learns from
unlabelled data only). Kingma et al. sum over the data set and set α = 0.1·N; with means over
the batch the same idea reads classifier_weight = 1 (the default), and label_weight = 1 keeps
the correction at the weight of the bound. Note that DDVI's base loss weights its regulariser
L_reg (which holds log p(z)) by β_reg, while the correction keeps label_weight: with the DD-VAE
default β_reg = 0.01 the labels pull z into their partitions more strongly than the prior term
alone would.

Which priors let the latent partitions align with the classes, and at which label weight, is
measured in docs/results.md § DDVI (semi-supervised).

The base objective must be :class:`~diffvi.objectives.ELBO` or :class:`~diffvi.objectives.DDVI`
(an expectation over draws, so the correction adds draw by draw). IWAE's log-mean-exp does not
split that way (the label term would have to enter every importance weight, and the unlabelled
sum over l inside the log), so it is refused.

Differences from the official DDVI code (GitHub ``topwasu/DDVI``): there, the labelled set holds
about 11 000 images although the paper says 1000 (here exactly ``num_labelled``, balanced over
classes: :func:`~diffvi.data.modules.labelled_subset`), and the reported accuracy is
that of a latent classifier; here validation reports both argmax q(l|x) (``val/accuracy``) and
the prior partition that the latent picks, argmax_l p(l|z) (``val/latent_accuracy``).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.objectives.base import Objective, ObjectiveOutput
from diffvi.objectives.ddvi import DDVI
from diffvi.objectives.elbo import ELBO


def check_partitioned_prior(prior: nn.Module) -> int:
    """The prior's number of partitions L; ValueError if it has no labelled partitions."""
    if not (
        hasattr(prior, "log_prob_per_partition")
        and hasattr(prior, "log_mixing_weights")
        and hasattr(prior, "num_partitions")
    ):
        raise ValueError(
            "semi-supervised training needs a partitioned prior p(z) = Σ_l p(l) p(z|l) "
            "(pinwheel, swiss-roll, square or mixture), got "
            f"{type(prior).__name__}"
        )
    return int(prior.num_partitions)


def top_layer(model, z: Tensor) -> Tensor:
    """The top latent layer of ``z [..., D]`` (the one the prior scores): ``[..., D_L]``."""
    dims = getattr(model, "latent_dims", None)
    return z if not dims or len(dims) == 1 else z[..., -dims[-1] :]


def prior_log_responsibilities(prior: nn.Module, z: Tensor) -> Tensor:
    """log p(l|z) = log p(z|l) + log p(l) − log p(z): ``z [..., D] -> [..., L]``.

    Its logsumexp over l is 0; that of ``log p(z|l) + log p(l)`` is ``prior.log_prob(z)``.
    """
    check_partitioned_prior(prior)
    per = prior.log_prob_per_partition(z)  # [..., L]
    joint = per + prior.log_mixing_weights().to(per.dtype)
    return joint - torch.logsumexp(joint, dim=-1, keepdim=True)


def label_correction(log_resp: Tensor, log_q_label: Tensor, labels: Tensor) -> Tensor:
    """The per-draw correction c of the module docstring.

    Args:
        log_resp: log p(l|z) per draw, ``[K, B, L]``.
        log_q_label: log q(l|x), ``[B, L]`` (log-softmax of the classifier's logits).
        labels: int64 ``[B]``, ``-1`` for unlabelled items.

    Returns:
        ``[K, B]``: log p(l_b|z_kb) where labelled, −KL(q(l|x_b) ‖ p(l|z_kb)) elsewhere.
    """
    # A finite floor (it only acts on −inf, a partition of zero density) keeps 0·(−inf) out.
    log_resp = log_resp.clamp(min=torch.finfo(log_resp.dtype).min)
    labelled = labels >= 0
    index = labels.clamp(min=0)[None, :, None].expand(log_resp.shape[0], -1, 1)
    log_p_label = log_resp.gather(-1, index).squeeze(-1)  # [K, B]
    q = log_q_label.exp()
    neg_kl = (q * (log_resp - log_q_label)).sum(-1)  # [K, B]
    return torch.where(labelled, log_p_label, neg_kl)


class SemiSupervised:
    """M2-style semi-supervised objective around an ELBO or DDVI ``base`` (module docstring).

    Unlike a plain :class:`~diffvi.objectives.Objective` it needs the labels and the
    classifier q(l|x): ``objective(model, posterior, x, labels, classifier)``.

    Args:
        base: the unsupervised bound B(x), an :class:`ELBO` or :class:`DDVI`.
        label_weight: weight of the correction mean_k c in the loss (1: the bound itself).
        classifier_weight: weight of the labelled items' cross-entropy of q(l|x).
    """

    name = "semisupervised"

    def __init__(
        self, base: Objective, label_weight: float = 1.0, classifier_weight: float = 1.0
    ) -> None:
        if not isinstance(base, ELBO | DDVI):
            raise ValueError(
                "SemiSupervised adds a per-draw label term, which needs an ELBO or DDVI base "
                f"objective (an expectation over draws), got {type(base).__name__}; IWAE's "
                "log-mean-exp does not split that way"
            )
        if label_weight < 0 or classifier_weight < 0:
            raise ValueError(
                f"label_weight and classifier_weight must be >= 0, got {label_weight} and "
                f"{classifier_weight}"
            )
        self.base = base
        self.label_weight = float(label_weight)
        self.classifier_weight = float(classifier_weight)

    def __call__(
        self, model, posterior, x: Tensor, labels: Tensor, classifier: nn.Module
    ) -> ObjectiveOutput:
        """Loss and bound on a batch ``x [B, *event_shape]`` with ``labels [B]`` (int64,
        ``-1`` = unlabelled) and ``classifier: x -> logits [B, L]``.

        Returns the base output with ``bound [B]`` = B(x) + mean_k c, ``loss`` as in the module
        docstring, ``z`` the base draws, and metrics: the base's plus ``label_term``
        (mean of c), ``classifier_loss`` (CE over labelled items, 0 without any) and
        ``labelled_fraction``.
        """
        num_labels = check_partitioned_prior(model.prior)
        if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point():
            got = f"shape {list(labels.shape)}" if isinstance(labels, Tensor) else type(labels)
            raise ValueError(f"labels must be an integer tensor [B], got {got}")
        if labels.shape[0] != x.shape[0]:
            raise ValueError(
                f"labels must have one entry per item of x: expected {x.shape[0]}, "
                f"got {labels.shape[0]}"
            )
        if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= num_labels):
            raise ValueError(
                f"labels must lie in [0, {num_labels - 1}] (the prior's partitions) or be -1 "
                f"(unlabelled), got values in [{int(labels.min())}, {int(labels.max())}]"
            )
        labels = labels.long()
        out = self.base(model, posterior, x)
        if out.z is None:
            raise ValueError(f"the base objective {type(self.base).__name__} returned no draws z")
        logits = classifier(x)
        if tuple(logits.shape) != (x.shape[0], num_labels):
            raise ValueError(
                f"the classifier must return logits [B, L] = [{x.shape[0]}, {num_labels}], "
                f"got {list(logits.shape)}"
            )
        log_q_label = F.log_softmax(logits, dim=-1)
        log_resp = prior_log_responsibilities(model.prior, top_layer(model, out.z))
        correction = label_correction(log_resp, log_q_label, labels).mean(0)  # [B]
        labelled = labels >= 0
        if bool(labelled.any()):
            ce = F.nll_loss(log_q_label[labelled], labels[labelled])
        else:
            ce = log_q_label.sum() * 0.0  # keeps the classifier in the graph
        loss = out.loss - self.label_weight * correction.mean() + self.classifier_weight * ce
        metrics = {
            **out.metrics,
            "label_term": correction.detach().mean(),
            "classifier_loss": ce.detach(),
            "labelled_fraction": labelled.to(out.bound.dtype).mean(),
        }
        return ObjectiveOutput(
            loss=loss, bound=out.bound + correction.detach(), metrics=metrics, z=out.z
        )
