"""Tiny training configurations on the digits data set (seconds per epoch), for training tests."""

from diffvi.training import TrainConfig

DIGITS_BASE = dict(
    dataset="digits", batch_size=64, lr=3e-3, max_epochs=2, val_size=100, val_k=5, seed=0
)


def tiny_config(preset: dict, **overrides) -> TrainConfig:
    """``TrainConfig`` from the digits base, then ``preset``, then ``overrides``."""
    return TrainConfig(**{**DIGITS_BASE, **preset, **overrides})
