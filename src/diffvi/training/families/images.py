"""What the image families (VAE, diffusion, SBN, VAE-DGP) share: their data, from a registered
data set or from the user's own files (``--data``, :mod:`diffvi.data.image_folders`)."""

from typing import Any

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
