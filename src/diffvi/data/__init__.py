"""Data sets: in-memory image sets, a name registry and data-file lookup.

>>> from diffvi.data import batch_loader, load_dataset
>>> train = load_dataset("mnist-dynamic", "train")     # doctest: +SKIP
>>> for x, y in batch_loader(train, 20, shuffle=True, seed=0):  # doctest: +SKIP
...     ...  # x: [20, 1, 28, 28] in {0, 1}, y: [20]

Your own images (a folder of PNG/JPEG/TIFF files, or a ``.npy``/``.npz``/HDF5 array):
:func:`open_image_data` (``dataset[indices] -> (x [B, C, H, W], y [B])``, read from disk per
batch unless small) and :func:`open_image_splits` (with a seeded held-out split).

Data files are looked up in ``$DIFFVI_DATA``, then ``${XDG_CACHE_HOME:-~/.cache}/diffvi``,
then downloaded (unless ``DIFFVI_OFFLINE=1``); see :mod:`diffvi.data.files`.
"""

from diffvi.data.files import cache_dir, fetch, find_file, search_dirs, verify_file
from diffvi.data.image_folders import ImageFileDataset, open_image_data, open_image_splits
from diffvi.data.images import ImageDataset, batch_loader, read_idx
from diffvi.data.registry import (
    available_datasets,
    dataset_splits,
    load_dataset,
    register_dataset,
)

__all__ = [
    "ImageDataset",
    "ImageFileDataset",
    "available_datasets",
    "batch_loader",
    "cache_dir",
    "dataset_splits",
    "fetch",
    "find_file",
    "load_dataset",
    "open_image_data",
    "open_image_splits",
    "read_idx",
    "register_dataset",
    "search_dirs",
    "verify_file",
]
