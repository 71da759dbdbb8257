"""Images of a named data set split, checked against the image shape a model expects.

:func:`load_images` is what a command reads when it is given ``--dataset NAME --split SPLIT``
instead of files (the user's own PNG/JPEG files are read by
:func:`~diffvi.data.files.read_image_files`). Images are float ``[N, C, H, W]`` in [0, 1].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from diffvi.data.registry import dataset_splits, load_dataset

__all__ = ["load_images"]


def load_images(
    name: str | None,
    split: str,
    image_shape: Sequence[int] | None = None,
    limit: int | None = None,
    seed: int = 0,
    start: int = 0,
) -> tuple[Tensor, Tensor]:
    """``(images [N, C, H, W], labels [N])``: items ``start … limit − 1`` of a data set split.

    Args:
        name, split: a registered data set (:func:`~diffvi.data.available_datasets`) and one
            of its splits.
        image_shape: ``(C, H, W)`` the images must have (a model's event shape); ``None``
            accepts any.
        limit: read the first ``limit`` items (all when ``None``), then drop the first
            ``start`` of them.
        seed: a dynamically binarised split is binarised once, with this seed (over the first
            ``limit`` items, so the same seed gives the same bits whatever ``start`` is).
        start: index of the first item returned.

    Labels are ``-1`` for unlabelled data.

    Raises:
        ValueError: no data set (``None``), an unknown data set or split, a shape other than
            ``image_shape``, or ``start`` past the end of the items read.
    """
    if name is None:  # e.g. the data set of a model trained on files of its own (--data)
        raise ValueError("no data set named: pass one of the registered data sets (--dataset)")
    splits = dataset_splits(name)  # raises, listing the valid names, on an unknown data set
    if split not in splits:
        raise ValueError(f"unknown split {split!r} for data set {name!r}; valid: {list(splits)}")
    data = load_dataset(name, split)
    if image_shape is not None and tuple(data.image_shape) != tuple(image_shape):
        raise ValueError(
            f"data set {name!r} has images of shape {list(data.image_shape)}, but the model "
            f"expects {list(image_shape)}"
        )
    if data.binarize != "none":
        data = dataclasses.replace(data, generator=torch.Generator().manual_seed(seed))
    images, labels = data[slice(None) if limit is None else slice(0, limit)]
    if start == 0:
        return images, labels
    if not 0 <= start < len(images):
        raise ValueError(f"start {start} is past the end of {name} {split} ({len(images)} images)")
    return images[start:], labels[start:]
