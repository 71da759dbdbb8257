"""Semi-supervised training with a partitioned prior: M2 of Kingma, Rezende, Mohamed & Welling
(2014, "Semi-supervised learning with deep generative models", eqs. 6–9) as DDVI uses it
(Piriyakulkij, Wang & Kuleshov 2024, arXiv 2401.02739, semi-supervised DD-VAE): the labels pick
the prior partition p(z|l), unlabelled points marginalise a classifier q(l|x), and a
classification loss trains q(l|x) on the labelled points.

The prior is a mixture over labels, p(z) = Σ_l p(l) p(z|l) (the partitioned 2-D priors of
:mod:`diffvi.distributions.toy2d`: ``log_prob_per_partition(z) -> [..., L]`` = log p(z|l),
``log_mixing_weights() -> [L]`` = log p(l)), so p(x, z, l) = p(l) p(z|l) p(x|z); the label
reaches x only through z. Two posteriors q(z, l|x) are offered:

- **label-conditioned** (:class:`LabelConditionedSemiSupervised`; the default of
  ``--labelled``): q(z, l|x) = q(l|x) q(z|x, l), as in M2 and the official DDVI code;
- **factorised** (:class:`SemiSupervised`): q(z, l|x) = q(z|x) q(l|x), with a p(l|z) term.

Factorised posterior
--------------------
q(z|x) is the base objective's posterior (Gaussian, IAF or DDVI's diffusion posterior) and
q(l|x) a classifier (:func:`~diffvi.models.semisupervised.build_label_classifier`). Write the
prior responsibilities

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

Label-conditioned posterior
---------------------------
q(z|x, l) is a posterior that sees the label (:class:`~diffvi.posteriors.
LabelConditionedPosterior`: a Gaussian or IAF encoder reading x and the one-hot l, or a diffusion
posterior whose reverse chain is conditioned on l, q(y_T|x) label-free) and q(l|x) its
classifier. With B_l(x) the base bound of q(·|x, l) against the joint prior p(z, l) = p(l) p(z|l)
(the ELBO E[log p(x|z) + log p(z, l) − log q(z|x, l)], or DDVI's auxiliary bound with log p(z, l)
in place of log p(z)), M2's bounds (eqs. 6–7) are

    L(x, l) = B_l(x)                                 ≤ log p(x, l)   (labelled),
    U(x)    = Σ_l q(l|x) B_l(x) + H(q(l|x))          ≤ log p(x)      (unlabelled),

and these are the reported ``bound``. In code log p(z, l) = log p(z) + log p(l|z), so B_l is the
base's own estimate on draws of q(·|x, l) plus log p(l|z). Each unlabelled item is scored with
every label (one pass of the chain per (item, label) pair, L passes per unlabelled item, as the
official code runs every class's chain on the whole batch) and each labelled item with its own.
The training loss, averaged over the batch's B items, is

    loss = mean_b [ −Σ_l w_bl (R_bl + β·G_bl) + β·λ_H·H(q(l|x_b))·[b unlabelled] ]
           + classifier_weight · CE + β_sleep · L_sleep,

R and G the per-pair reconstruction and regulariser terms of B_l (B_l = R + G), w_bl = q(l|x_b)
(with gradient: the classifier learns from the bound) for unlabelled items and 1 for a labelled
item's own label, β the base's regulariser weight (DDVI's ``beta_reg``, 1 for the ELBO), CE the
labelled items' cross-entropy −log q(l|x) (mean over them) and λ_H = ``entropy_weight``. For
DDVI the sleep term trains the chain on fantasy triples (l, z) ~ p(l) p(z|l), x̂ ~ p(x|z), each
with its label (:meth:`~diffvi.objectives.DDVI.sleep_loss`). Without a label the posterior is
q(z|x, argmax_l q(l|x)): embeddings, ``val/bound`` and ``val/iwae`` use the chain of the
predicted label, as the official code embeds.

The official code (``algorithms/vaes/diff_vae.py``: ``DiffVAE_semi`` then
``DiffVAEWarmup_semi``, configs ``diff_vae_semi.yaml`` and ``diff_vae_warmup_semi.yaml``; losses
per pixel, one y ~ q(y|x) shared by the classes' chains, DDIM chains) trains

    stage 1: Σ_unlab Σ_l q(l|x) BCE(x, z_l) / N_u + Σ_lab BCE(x, z_l) / N_l   (÷ 784)
             + 0.1 · [mean KL(q(y|x) ‖ N(0, I)) + 0.001 · mean_unlab H(q(l|x))]
             + 0.1 · CE(q(l|x), l) over the labelled items,
             z_l from class l's chain, pretrained on samples of p(z|l) and then frozen
             (``endtoend: False``, so no sleep term);
    stage 2: the same reconstruction and 0.1 · [KL + 0.001 · H], plus
             0.1 · [Σ_unlab Σ_l q(l|x) (−log p_KDE(z_l)) / N_u + Σ_lab (−log p_KDE(z_l)) / N_l]
             (the full prior's kernel density, weighted by q(l|x)) and 1 · the wake Huber
             loss of each class's new x-conditional chain (T = 100), weighted by q(l|x) the
             same way; no cross-entropy; then 30 sleep steps per batch, each on one random
             class's prior samples; the first 30 epochs leave the decoder out.

So the official entropy term has the sign that *sharpens* q(l|x) (+0.001·H in the loss, where
M2's bound has −H), 0.001 relative to the regulariser's weight: ``entropy_weight`` = 0.001 by
default, multiplied by β as the official KL weight multiplies it; ``entropy_weight = −1`` with
β = 1 makes the loss exactly −(mean of L and U) (M2). The official stage 1 weights the
cross-entropy as its KL, per image 0.1 × 784 = 78.4 (``OFFICIAL_CLASSIFIER_WEIGHT``, the default
``classifier_weight`` here; it is M2's α: Kingma et al. use α = 0.1·N on sums over the data).
With a weight of 1 or 10 a 3-epoch digits run's q(l|x) collapsed onto one label (accuracy 0.10:
the unlabelled items' Σ_l q(l|x) B_l(x) rewards putting all of q on the label of the best bound);
with 78.4 it reached 0.77. The official code averages labelled and unlabelled items separately
(each group's mean, so the few labelled items of a batch weigh as much as all the unlabelled
ones); here every batch has ``labelled_batch`` labelled items appended and all items weigh
alike. The official per-class chains become one chain with a label input.

Differences from the official DDVI code (GitHub ``topwasu/DDVI``) in both variants: there, the
labelled set holds about 11 000 images although the paper says 1000 (``CustomDataset`` hides
labels among the first 50 000 training images only, so the last 10 000 keep theirs; here
exactly ``num_labelled``, balanced over classes: :func:`~diffvi.data.modules.labelled_subset`),
and the reported accuracy is that of a latent classifier; here validation reports both
argmax q(l|x) (``val/accuracy``) and the prior partition that the latent picks, argmax_l p(l|z)
(``val/latent_accuracy``).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.objectives.base import Objective, ObjectiveOutput, check_data, log_density_ratio
from diffvi.objectives.ddvi import DDVI, check_diffusion_posterior
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


def check_labels(labels: Tensor, x: Tensor, num_labels: int) -> Tensor:
    """``labels`` as int64 ``[B]`` after checking them against ``x [B, ...]``: integers in
    [0, num_labels) or −1 (unlabelled); ValueError otherwise."""
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
    return labels.long()


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
        labels = check_labels(labels, x, num_labels)
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


# The official weight of H(q(l|x)) on unlabelled images, relative to the regulariser's weight
# (topwasu/DDVI, DiffVAE_semi and DiffVAEWarmup_semi: reg_loss = KL + 0.001 · cs_entropy).
OFFICIAL_ENTROPY_WEIGHT = 0.001
# The official stage-1 weight of the labelled cross-entropy, per image: cls_weight 1 × the KL
# weight 0.1 (conf/model/diff_vae_semi.yaml) against a reconstruction averaged over 784 pixels.
OFFICIAL_CLASSIFIER_WEIGHT = 0.1 * 784


def label_pairs(labels: Tensor, num_labels: int) -> tuple[Tensor, Tensor]:
    """The (item, label) pairs the label-conditioned objective scores: ``(items [N], pair_labels
    [N])``, int64, item by item: each unlabelled item (label −1) with every label 0 … L−1, each
    labelled item with its own label only."""
    batch = labels.shape[0]
    items = torch.arange(batch, device=labels.device).repeat_interleave(num_labels)
    every = torch.arange(num_labels, device=labels.device).repeat(batch)
    own = labels[items]
    keep = (own < 0) | (own == every)
    return items[keep], every[keep]


class LabelConditionedSemiSupervised:
    """Semi-supervised training with the label-conditioned posterior q(z, l|x) = q(l|x) q(z|x, l)
    around an ELBO or DDVI ``base`` (module docstring, "Label-conditioned posterior").

    Called as ``objective(model, posterior, x, labels)`` with ``posterior`` a
    :class:`~diffvi.posteriors.LabelConditionedPosterior` (q(l|x) is its classifier).

    Args:
        base: the bound, an :class:`ELBO` (sampled KL) or :class:`DDVI`; its ``k``, and DDVI's
            ``beta_reg``, sleep settings and ``wake_updates_chain``, apply.
        classifier_weight: weight of the labelled items' cross-entropy of q(l|x) (default the
            official 78.4 per image; at 1 or 10 q(l|x) collapses onto one label on digits).
        entropy_weight: λ_H, the weight of H(q(l|x)) of unlabelled items added to the
            regulariser (so multiplied by DDVI's ``beta_reg``). The official +0.001 by default
            (it sharpens q(l|x)); −1 with ``beta_reg`` = 1 makes the loss M2's −U(x).
    """

    name = "semisupervised-conditional"

    def __init__(
        self,
        base: Objective,
        classifier_weight: float = OFFICIAL_CLASSIFIER_WEIGHT,
        entropy_weight: float = OFFICIAL_ENTROPY_WEIGHT,
    ) -> None:
        if not isinstance(base, ELBO | DDVI):
            raise ValueError(
                "LabelConditionedSemiSupervised averages the bound over q(l|x) draw by draw, "
                f"which needs an ELBO or DDVI base objective, got {type(base).__name__}"
            )
        if isinstance(base, ELBO) and base.analytic_kl:
            raise ValueError(
                "the label-conditioned objective scores log p(z, l) on the draws; use the "
                "sampled KL (analytic_kl=False)"
            )
        if classifier_weight < 0:
            raise ValueError(f"classifier_weight must be >= 0, got {classifier_weight}")
        if not math.isfinite(entropy_weight):
            raise ValueError(f"entropy_weight must be finite, got {entropy_weight}")
        self.base = base
        self.classifier_weight = float(classifier_weight)
        self.entropy_weight = float(entropy_weight)

    @property
    def reg_weight(self) -> float:
        """β, the weight of the regulariser in the training loss (DDVI's ``beta_reg``; 1 for
        the ELBO)."""
        return self.base.beta_reg if isinstance(self.base, DDVI) else 1.0

    def __call__(self, model, posterior, x: Tensor, labels: Tensor) -> ObjectiveOutput:
        """Loss and bound on ``x [B, *event_shape]`` with ``labels [B]`` (int64, ``-1`` =
        unlabelled).

        Returns ``bound [B]`` (L(x, l) for labelled items, U(x) for unlabelled ones), the loss
        of the module docstring, ``z = None`` (the draws are per (item, label) pair), and
        metrics ``rec``, ``reg`` (per item, averaged over q(l|x)), ``sleep`` (DDVI),
        ``label_entropy`` (mean H(q(l|x)) of unlabelled items), ``classifier_loss`` and
        ``labelled_fraction``.
        """
        num_labels = check_partitioned_prior(model.prior)
        if getattr(posterior, "num_labels", 0) != num_labels or not hasattr(
            posterior, "label_logits"
        ):
            raise ValueError(
                "the label-conditioned objective needs a LabelConditionedPosterior with one "
                f"label per prior partition ({num_labels}), got {type(posterior).__name__} with "
                f"num_labels={getattr(posterior, 'num_labels', 0)}"
            )
        check_data(model, x)
        labels = check_labels(labels, x, num_labels)
        ddvi = isinstance(self.base, DDVI)
        if ddvi:
            check_diffusion_posterior(posterior)
        batch = x.shape[0]
        log_q_label = F.log_softmax(posterior.label_logits(x), dim=-1)  # [B, L]
        q_label = log_q_label.exp()
        labelled = labels >= 0
        items, pair_labels = label_pairs(labels, num_labels)  # [N], [N]
        x_pairs = x[items]
        if ddvi and not self.base.wake_updates_chain:
            with posterior.frozen_chain():
                s = posterior.sample(x_pairs, self.base.k, label=pair_labels)
        else:
            s = posterior.sample(x_pairs, self.base.k, label=pair_labels)
        rec = model.log_likelihood(x_pairs, s.z)  # [K, N]
        # log p(z, l) = log p(z) + log p(l|z): the partition's density, log p(z|l) + log p(l).
        log_resp = prior_log_responsibilities(model.prior, top_layer(model, s.z))  # [K, N, L]
        log_resp = log_resp.clamp(min=torch.finfo(log_resp.dtype).min)
        index = pair_labels[None, :, None].expand(log_resp.shape[0], -1, 1)
        log_p_label = log_resp.gather(-1, index).squeeze(-1)  # [K, N]
        reg = log_p_label - log_density_ratio(model, s)  # [K, N]
        # Each pair's weight: 1 for a labelled item's own label, q(l|x) (with gradient) else.
        weight = torch.where(labelled[items], torch.ones_like(rec[0]), q_label[items, pair_labels])
        entropy = -(q_label * log_q_label).sum(-1)  # [B]
        entropy = torch.where(labelled, torch.zeros_like(entropy), entropy)

        def per_item(values: Tensor) -> Tensor:  # [N] -> [B], summing an item's pairs
            return values.new_zeros(batch).index_add(0, items, values)

        beta = self.reg_weight
        wake = per_item(weight * (rec + beta * reg).mean(0))  # [B]
        bound = per_item((weight * (rec + reg).mean(0)).detach()) + entropy.detach()
        if bool(labelled.any()):
            ce = F.nll_loss(log_q_label[labelled], labels[labelled])
        else:
            ce = log_q_label.sum() * 0.0  # keeps the classifier in the graph
        loss = (
            -wake.mean() + beta * self.entropy_weight * entropy.mean() + self.classifier_weight * ce
        )
        unlabelled = (~labelled).to(rec.dtype)
        metrics = {
            "rec": per_item((weight * rec.mean(0)).detach()).mean(),
            "reg": per_item((weight * reg.mean(0)).detach()).mean(),
            "label_entropy": entropy.detach().sum() / unlabelled.sum().clamp(min=1),
            "classifier_loss": ce.detach(),
            "labelled_fraction": labelled.to(rec.dtype).mean(),
        }
        if ddvi:
            if self.base.beta_sleep > 0:
                size = self.base.sleep_batch if self.base.sleep_batch is not None else batch
                sleep = self.base.sleep_loss(model, posterior, size)
                loss = loss + self.base.beta_sleep * sleep
                metrics["sleep"] = sleep.detach()
            else:
                metrics["sleep"] = torch.zeros((), dtype=rec.dtype, device=rec.device)
        return ObjectiveOutput(loss=loss, bound=bound, metrics=metrics, z=None)
