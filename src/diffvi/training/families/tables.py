"""A table as a VAE's training data (``diffvi train vae|ddvae --data cells.h5ad``): the rows of
a CSV/TSV, Parquet, 2-D ``.npy`` or AnnData ``.h5ad`` file (:mod:`diffvi.data.tables`),
standardised, in a :class:`~diffvi.data.modules.FeatureDataModule`.

``labels`` names the label column (an ``obs`` column of an ``.h5ad``, a column number of an
``.npy``): it is left out of the features and travels with the batches. ``val_fraction`` of the
rows (chosen by ``seed``, the first ``val_size`` of them kept) are held out for validation; the
mean and standard deviation that standardise every row are the training rows'. Standardised
features are real-valued, so the family trains them with the ``real-gaussian`` likelihood
(:meth:`diffvi.training.families.vae.VAEFamily.fit_config_to_data`).
"""

from typing import Any

import torch

from diffvi.data.modules import FeatureDataModule


def uses_table(config: Any) -> bool:
    """Whether ``config``'s ``data`` is a table rather than images."""
    from diffvi.data.tables import is_table

    data = getattr(config, "data", None)
    return data is not None and is_table(data)


def build_table_data(config: Any) -> FeatureDataModule:
    """The :class:`FeatureDataModule` of ``config.data`` (a table; see the module docstring)."""
    from diffvi.data.image_folders import split_positions
    from diffvi.data.tables import load_table, standardise

    stray = {
        name: getattr(config, name)
        for name, unset in (("size", None), ("crop", "center"))
        if getattr(config, name, unset) != unset
    }
    if stray:
        raise ValueError(
            f"{', '.join(sorted(stray))} apply to images, not to the table {config.data}; "
            f"got {stray}"
        )
    table = load_table(config.data, labels=config.labels)
    if table.num_samples < 3:
        raise ValueError(f"{config.data}: {table.num_samples} rows; training needs at least 3")
    train, held_out = split_positions(table.num_samples, config.val_fraction, config.seed)
    held_out = held_out[: config.val_size]
    _, mean, std = standardise(table.features[train.numpy()])
    features = torch.from_numpy((table.features - mean.astype("float32")) / std.astype("float32"))
    labels = torch.from_numpy(table.labels)
    return FeatureDataModule(
        features[train],
        config.batch_size,
        config.seed,
        config.val_size,
        labels=labels[train],
        val_features=features[held_out],
        val_labels=labels[held_out],
    )
