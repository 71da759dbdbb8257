"""Pieces of semi-supervised training (M2 of Kingma et al. 2014, as DDVI uses it): the label
classifier q(l|x) and the choice of the labelled subset.

DDVI (Piriyakulkij, Wang & Kuleshov 2024, arXiv 2401.02739) trains its semi-supervised DD-VAE
with "1000 labelled MNIST images". The official code (GitHub ``topwasu/DDVI``) does not: its
labelled set is built so that about 11 000 training images keep their labels. Here
:func:`labelled_subset` picks exactly ``num_labelled`` images, ``num_labelled / num_classes``
per class, and the training data keep labels at those indices only (``-1`` elsewhere; see
:class:`~diffvi.training.data.ImageDataModule`). The objective is
:class:`~diffvi.objectives.SemiSupervised`.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from diffvi.nn.mlp import MLP


class LabelClassifier(nn.Module):
    """q(l|x) as logits: ``x [B, *event_shape] -> [B, num_labels]`` (an MLP on flattened x)."""

    def __init__(
        self, data_dim: int, num_labels: int, hidden: Sequence[int], activation: str = "tanh"
    ) -> None:
        super().__init__()
        if data_dim < 1 or num_labels < 2:
            raise ValueError(
                f"need data_dim >= 1 and num_labels >= 2, got {data_dim} and {num_labels}"
            )
        self.data_dim = data_dim
        self.num_labels = num_labels
        self.net = MLP(data_dim, list(hidden), num_labels, activation)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        if flat.shape[1] != self.data_dim:
            raise ValueError(
                f"x must hold {self.data_dim} values per item, got shape {list(x.shape)}"
            )
        return self.net(flat)


def build_label_classifier(
    data_dim: int, num_labels: int, hidden: Sequence[int], activation: str = "tanh"
) -> nn.Module:
    """The label classifier q(l|x): an MLP ``data_dim -> hidden… -> num_labels`` on flattened
    x, returning logits ``[B, num_labels]`` for ``x [B, *event_shape]``."""
    return LabelClassifier(data_dim, num_labels, hidden, activation)


def labelled_subset(labels: Tensor, num_labelled: int, seed: int = 0) -> Tensor:
    """Exactly ``num_labelled`` distinct indices into ``labels``, balanced over the classes.

    Args:
        labels: int ``[N]`` class labels ``0 … C−1`` (every class present).
        num_labelled: how many to keep, a multiple of C (``num_labelled / C`` per class).
        seed: the choice is a function of ``(labels, num_labelled, seed)`` only.

    Returns:
        int64 ``[num_labelled]``, sorted ascending.
    """
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point():
        got = f"shape {list(labels.shape)}, {labels.dtype}" if isinstance(labels, Tensor) else ""
        raise ValueError(f"labels must be an integer tensor [N], got {got or type(labels)}")
    if labels.numel() == 0 or int(labels.min()) < 0:
        raise ValueError(
            "labels must be non-empty and >= 0 (an unlabelled data set cannot be used)"
        )
    labels = labels.cpu().long()
    num_classes = int(labels.max()) + 1
    if num_labelled < 1 or num_labelled % num_classes:
        raise ValueError(
            f"num_labelled must be a positive multiple of the {num_classes} classes (an equal "
            f"number per class), got {num_labelled}"
        )
    per_class = num_labelled // num_classes
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).squeeze(1)
        if members.numel() < per_class:
            raise ValueError(
                f"class {c} has {members.numel()} items, fewer than the {per_class} per class "
                f"that num_labelled={num_labelled} needs"
            )
        pick = torch.randperm(members.numel(), generator=generator)[:per_class]
        chosen.append(members[pick])
    return torch.cat(chosen).sort().values
