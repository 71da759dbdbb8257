"""Pieces of semi-supervised training (M2 of Kingma et al. 2014, as DDVI uses it): the label
classifier q(l|x).

DDVI (Piriyakulkij, Wang & Kuleshov 2024, arXiv 2401.02739) trains its semi-supervised DD-VAE
with "1000 labelled MNIST images". The official code (GitHub ``topwasu/DDVI``) does not: its
labelled set is built so that about 11 000 training images keep their labels. Here
:func:`~diffvi.data.modules.labelled_subset` picks exactly ``num_labelled`` images,
``num_labelled / num_classes`` per class, and the training data keep labels at those indices
only (``-1`` elsewhere; see :class:`~diffvi.data.modules.ImageDataModule`). The objective is
:class:`~diffvi.objectives.SemiSupervised`.
"""

from collections.abc import Sequence

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
