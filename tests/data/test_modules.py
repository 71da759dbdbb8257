"""The labelled subset of semi-supervised training: exactly N, balanced over classes, seeded."""

import pytest
import torch

from diffvi.data.modules import labelled_subset


def unbalanced_labels() -> torch.Tensor:
    """600 labels over 3 classes with 100, 200 and 300 items, shuffled."""
    labels = torch.cat([torch.full((100 * (c + 1),), c) for c in range(3)])
    return labels[torch.randperm(600, generator=torch.Generator().manual_seed(0))]


def test_labelled_subset_has_exactly_n_distinct_indices_balanced_over_classes():
    labels = unbalanced_labels()
    chosen = labelled_subset(labels, 90, seed=0)
    assert chosen.shape == (90,) and chosen.dtype == torch.int64
    assert chosen.unique().numel() == 90
    assert torch.bincount(labels[chosen], minlength=3).tolist() == [30, 30, 30]


def test_labelled_subset_is_deterministic_by_seed_and_changes_with_it():
    labels = unbalanced_labels()
    assert torch.equal(labelled_subset(labels, 30, seed=4), labelled_subset(labels, 30, seed=4))
    assert not torch.equal(labelled_subset(labels, 30, seed=4), labelled_subset(labels, 30, 5))


def test_labelled_subset_refuses_uneven_counts_small_classes_and_missing_labels():
    labels = unbalanced_labels()
    with pytest.raises(ValueError, match="multiple of the 3 classes"):
        labelled_subset(labels, 100, seed=0)
    with pytest.raises(ValueError, match="class 0 has 100 items, fewer than the 101"):
        labelled_subset(labels, 303, seed=0)
    with pytest.raises(ValueError, match="unlabelled data set"):
        labelled_subset(torch.full((10,), -1), 10, seed=0)
    with pytest.raises(ValueError, match="integer tensor"):
        labelled_subset(labels.float(), 30, seed=0)
