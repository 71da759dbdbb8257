"""A table as a VAE's training data (``diffvi train vae|ddvae --data cells.h5ad``): the rows of
a CSV/TSV, Parquet, 2-D ``.npy`` or AnnData ``.h5ad`` file (:mod:`diffvi.data.tables`),
standardised, in a :class:`~diffvi.data.modules.FeatureDataModule`.

``labels`` names the label column (an ``obs`` column of an ``.h5ad``, a column number of an
``.npy``): it is left out of the features and travels with the batches. ``val_fraction`` of the
rows (chosen by ``seed``, the first ``val_size`` of them kept) are held out for validation; the
mean and standard deviation that standardise every row are the training rows'. Standardised
features are real-valued, so the family trains them with the ``real-gaussian`` likelihood
(:meth:`diffvi.training.families.vae.VAEFamily.fit_config_to_data`).

The model keeps what it needs to apply to new rows: the feature columns and their training mean
and std (:class:`~diffvi.data.tables.TableFeatures`, in its config's ``features``, hence in the
run's ``config.json``, its checkpoints and its export's ``model.json``). A family whose models
train on tables (the VAE's, the VAE-DGP's) takes :class:`TableInputs`, which reads new rows with
them (:meth:`TableInputs.table_inputs`) and encodes them (:meth:`TableInputs.encode_table`).
"""

import os
from typing import Any, ClassVar

import torch
from torch import Tensor

from diffvi.data.modules import FeatureDataModule
from diffvi.data.tables import TableFeatures


def uses_table(config: Any) -> bool:
    """Whether ``config``'s ``data`` is a table rather than images."""
    from diffvi.data.tables import is_table

    data = getattr(config, "data", None)
    return data is not None and is_table(data)


def build_table_data(config: Any) -> FeatureDataModule:
    """The :class:`FeatureDataModule` of ``config.data`` (a table; see the module docstring)."""
    from diffvi.data.image_folders import split_positions
    from diffvi.data.tables import load_table

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
    saved = TableFeatures.fit(table, train.numpy())
    features = torch.from_numpy(saved.transform(table.features, str(config.data)))
    labels = torch.from_numpy(table.labels)
    data = FeatureDataModule(
        features[train],
        config.batch_size,
        config.seed,
        config.val_size,
        labels=labels[train],
        val_features=features[held_out],
        val_labels=labels[held_out],
        label_names=table.label_names or None,
    )
    data.table_features = saved  # what the model keeps (fit_config_to_data)
    return data


def table_features(config: Any) -> TableFeatures | None:
    """The :class:`~diffvi.data.tables.TableFeatures` a model trained on a table keeps in its
    config (``features``); for a run from before they were kept, those of its training table
    (``data``, read again). ``None`` for a model not trained on a table."""
    saved = getattr(config, "features", None)
    if saved is not None:
        return TableFeatures.from_dict(saved)
    if not uses_table(config):
        return None
    from diffvi.data.image_folders import split_positions
    from diffvi.data.tables import load_table

    table = load_table(config.data, labels=config.labels)
    train, _ = split_positions(table.num_samples, config.val_fraction, config.seed)
    return TableFeatures.fit(table, train.numpy())


def held_out_rows(config: Any, split: str = "test") -> tuple[Tensor, Tensor]:
    """``(rows [M, D], labels [M])`` of the table a run trained on (``config.data``),
    standardised as in training: its held-out rows (``split`` ``"test"`` or ``"val"``: all of
    the ``val_fraction``, not only the ``val_size`` validated) or its training rows
    (``"train"``)."""
    from diffvi.data.image_folders import split_positions

    splits = ("train", "test", "val")
    if split not in splits:
        raise ValueError(f"unknown split {split!r} for a table; valid: {list(splits)}")
    saved = table_features(config)
    if saved is None:
        raise ValueError(f"the run was trained on {config.data or config.dataset}, not a table")
    table, rows = saved.read(config.data, config.labels)
    train, held_out = split_positions(table.num_samples, config.val_fraction, config.seed)
    chosen = (train if split == "train" else held_out).numpy()
    return torch.from_numpy(rows[chosen]), torch.from_numpy(table.labels[chosen])


class TableInputs:
    """What a family whose models train on tables gives them for new rows: the saved
    :attr:`table_features`, the model inputs of a new table (:meth:`table_inputs`) and their
    latents (:meth:`encode_table`, by the family's ``encode(x, seed=, batch_size=)``). Mixed
    into a :class:`~diffvi.training.family.Family` (it reads ``config`` and ``kind``);
    ``table_command`` names the command that trains one on a table, for the error of a model
    trained on something else."""

    table_command: ClassVar[str]
    config: Any
    kind: ClassVar[str]

    @property
    def table_features(self) -> TableFeatures | None:
        """The feature columns and standardisation of the table the model was trained on
        (:class:`~diffvi.data.tables.TableFeatures`); ``None`` for a model of images."""
        return table_features(self.config)

    def table_inputs(
        self, table: Any, labels: str | None = None, *, impute: str | None = None
    ) -> tuple[Tensor, Any]:
        """The model's inputs ``[N, D]`` (float32, standardised with the training statistics)
        from ``table``: a table file (CSV/TSV, Parquet, ``.npy``, ``.h5ad``; columns matched
        by name, in any order, others ignored; ``labels`` its label column; ``impute="mean"``
        fills missing values with their column's mean), a pandas DataFrame (by name) or an
        array ``[N, D]`` (columns in the model's order). Returns ``(inputs, Table or None)``:
        the :class:`~diffvi.data.tables.Table` read from a file.

        Raises:
            ValueError: the model was not trained on a table; a feature column is missing
                (naming it and the columns expected); an array of another width.
        """
        saved = self.table_features
        if saved is None:
            raise ValueError(
                f"this {self.kind} model (data: {self.config.data_name}) was not trained on a "
                f"table by `{self.table_command}`: it keeps no feature columns to read"
            )
        if isinstance(table, str | os.PathLike):
            read, rows = saved.read(table, labels, impute=impute)
            return torch.from_numpy(rows), read
        if isinstance(table, Tensor):
            table = table.detach().cpu().numpy()
        return torch.from_numpy(saved.transform(table, "the table")), None

    @torch.no_grad()
    def encode_table(
        self, table: Any, *, seed: int = 0, batch_size: int = 500, labels: str | None = None
    ) -> Tensor:
        """Latents ``[N, d]`` (float32, on the CPU) of new rows ``table`` (a file, DataFrame or
        array; see :meth:`table_inputs`), by the family's ``encode``."""
        x, _ = self.table_inputs(table, labels)
        return self.encode(x, seed=seed, batch_size=batch_size)  # type: ignore[attr-defined]
