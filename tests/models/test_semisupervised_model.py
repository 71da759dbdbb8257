"""The label classifier q(l|x) of semi-supervised training."""

import pytest
import torch

from diffvi.models.semisupervised import build_label_classifier


def test_label_classifier_maps_images_to_logits_per_label():
    classifier = build_label_classifier(64, 10, [16, 16], "silu")
    logits = classifier(torch.rand(5, 1, 8, 8))
    assert logits.shape == (5, 10)
    with pytest.raises(ValueError, match="64 values per item"):
        classifier(torch.rand(5, 1, 4, 4))
