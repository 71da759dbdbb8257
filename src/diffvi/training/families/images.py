"""What the image families (VAE, diffusion, SBN, VAE-DGP) share: their data, from a registered
data set or from the user's own files (``--data``, :mod:`diffvi.data.image_folders`), and the
user's images as a trained model reads them (:func:`read_own_images`, :func:`own_split_images`:
what ``diffvi evaluate --data`` scores)."""

from typing import Any

from torch import Tensor

from diffvi.data.image_folders import ImageFileDataset
from diffvi.data.modules import ImageDataModule
from diffvi.training.config.base import ImageDataConfig


def own_image_splits(config: Any) -> tuple[ImageFileDataset, ImageFileDataset]:
    """``(train, held_out)`` of ``config.data`` (an :class:`~diffvi.training.config.base.
    ImageDataConfig` with ``seed`` and ``val_size``): ``val_fraction`` held out by ``seed``, the
    first ``val_size`` of those kept, ``size``, ``crop`` and ``labels`` applied
    (:func:`~diffvi.data.image_folders.open_image_splits`)."""
    from diffvi.data.image_folders import open_image_splits

    return open_image_splits(
        config.data,
        labels=config.labels,
        size=config.size,
        crop=config.crop,  # type: ignore[arg-type]
        val_fraction=config.val_fraction,
        seed=config.seed,
        val_size=config.val_size,
    )


def build_image_data(config: Any, **options: Any) -> ImageDataModule:
    """The :class:`~diffvi.data.modules.ImageDataModule` of ``config`` (an
    :class:`~diffvi.training.config.base.ImageDataConfig` with ``batch_size``, ``seed`` and
    ``val_size``): its registered ``dataset``, or the held-out split of its ``data`` files
    (:func:`own_image_splits`). ``options`` go to the data module (``num_labelled``,
    ``labelled_batch``)."""
    if not isinstance(config, ImageDataConfig) or config.data is None:
        source: Any = config.dataset
    else:
        source = own_image_splits(config)
    return ImageDataModule(source, config.batch_size, config.seed, config.val_size, **options)


def read_own_images(
    path: Any,
    event_shape: Any,
    size: Any = None,
    binarize: bool = False,
    limit: int | None = None,
    model: str = "the model",
) -> Tensor:
    """The images of ``path`` (a folder or an array file, :func:`~diffvi.data.image_folders.
    open_image_data`; the first ``limit`` of them), scaled and cut to ``size`` (the centre
    window) as a model trained with ``size`` saw them: ``[N, C, H, W]`` float32 in [0, 1]; for
    a binary model (``binarize``: an SBN) drawn once as Bernoulli bits from the grey levels
    (:class:`~diffvi.data.image_folders.BinarizedImages`, as its held-out images were).

    Raises:
        ValueError: images of another shape than ``event_shape`` (the model's ``[C, H, W]``),
            naming ``path``, the shape found and the one expected.
    """
    from diffvi.data.image_folders import open_image_data

    data = open_image_data(path, size=size, crop="center")
    expected = [int(s) for s in event_shape]
    if list(data.image_shape) != expected:
        how = f"at --size {','.join(map(str, size))}" if size else "at their own size"
        raise ValueError(
            f"{path} holds images of shape {list(data.image_shape)} ({how}), but {model} "
            f"expects {expected}"
        )
    return _decode_all(_binarized(data, binarize), limit)


def own_split_images(
    config: Any, split: str = "test", binarize: bool = False, limit: int | None = None
) -> Tensor:
    """The images of a run trained on its own files (``config.data``, with its ``size``,
    ``val_fraction`` and ``seed``), as :func:`read_own_images` gives them: the held-out
    ``val_fraction`` (``split`` ``"test"`` or ``"val"``: all of it, not only the ``val_size``
    validated) or the training part (``"train"``), centre-cropped."""
    from diffvi.data.image_folders import open_image_data, split_positions

    splits = ("train", "test", "val")
    if split not in splits:
        raise ValueError(f"unknown split {split!r} for images of your own; valid: {list(splits)}")
    data = open_image_data(config.data, size=config.size, crop="center", seed=config.seed)
    train, held_out = split_positions(len(data), config.val_fraction, config.seed)
    view = data.subset(train if split == "train" else held_out)
    return _decode_all(_binarized(view, binarize), limit)


def _binarized(data: ImageFileDataset, binarize: bool) -> Any:
    if not binarize:
        return data
    from diffvi.data.image_folders import BinarizedImages

    return BinarizedImages(data, dynamic=False)


def _decode_all(data: Any, limit: int | None) -> Tensor:
    """The first ``limit`` items (all when ``None``) of an indexable image set: ``[N, C, H,
    W]``."""
    import torch

    count = len(data) if limit is None else min(limit, len(data))
    return data[torch.arange(count)][0]
