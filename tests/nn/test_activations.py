"""The activation table shared by the networks of ``diffvi.nn``."""

import pytest
from torch import nn

from diffvi.nn import ACTIVATIONS, MLP, TimeEmbedding, build_activation


def test_build_activation_returns_a_fresh_module_of_the_named_kind():
    for name, cls in ACTIVATIONS.items():
        first, second = build_activation(name), build_activation(name)
        assert isinstance(first, cls) and first is not second


def test_unknown_activation_is_refused_naming_the_valid_ones_everywhere():
    for build in (
        lambda: build_activation("swish"),
        lambda: MLP(2, [3], 1, activation="swish"),
        lambda: TimeEmbedding(4, activation="swish"),
    ):
        with pytest.raises(ValueError, match=r"activation must be one of \[.*'tanh'.*got 'swish'"):
            build()


def test_mlp_and_time_embedding_use_the_named_activation():
    assert isinstance(MLP(2, [3], 1, activation="gelu")[1], nn.GELU)
    assert isinstance(TimeEmbedding(4, activation="relu").net[1], nn.ReLU)
