"""What the image families (VAE, diffusion) share: their data module, from a registered data
set or from the user's own files (``--data``, :mod:`diffvi.data.image_folders`)."""

from typing import Any

from diffvi.data.modules import ImageDataModule
from diffvi.training.config.base import ImageDataConfig


def build_image_data(config: Any, **options: Any) -> ImageDataModule:
    """The :class:`~diffvi.data.modules.ImageDataModule` of ``config`` (an
    :class:`~diffvi.training.config.base.ImageDataConfig` with ``batch_size``, ``seed`` and
    ``val_size``): its registered ``dataset``, or the held-out split of its ``data`` files
    (``val_fraction`` chosen by ``seed``; ``size``, ``crop`` and ``labels`` applied).
    ``options`` go to the data module (``num_labelled``, ``labelled_batch``)."""
    if not isinstance(config, ImageDataConfig) or config.data is None:
        source: Any = config.dataset
    else:
        from diffvi.data.image_folders import open_image_splits

        source = open_image_splits(
            config.data,
            labels=config.labels,
            size=config.size,
            crop=config.crop,  # type: ignore[arg-type]
            val_fraction=config.val_fraction,
            seed=config.seed,
            val_size=config.val_size,
        )
    return ImageDataModule(source, config.batch_size, config.seed, config.val_size, **options)
