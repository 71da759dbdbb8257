"""Read feature tables: CSV/TSV, Parquet, ``.npy`` and AnnData ``.h5ad`` (single-cell data).

:func:`load_table` returns a :class:`Table`: float32 features ``[N, D]`` (one row per sample or
cell), int64 label codes ``[N]`` (−1 where a row has no label), the label and feature names, and
the row names. :func:`standardise` and :func:`principal_components` prepare the features for an
embedding (:func:`diffvi.training.embedding.embed_labelled`), as ``diffvi embed table`` does.
:class:`TableFeatures` is what a model trained on a table keeps of it (the feature columns and
the training rows' mean and std), to standardise new rows of the same kind of table.

Formats, chosen by suffix:

- ``.csv`` / ``.tsv`` / ``.tab`` / ``.txt`` (tab-separated), optionally ``.gz``: a header row,
  then one row per sample. Read by pandas when it is installed (the ``tables`` extra), else by
  the ``csv`` module. A first column with an empty name (the index pandas' ``to_csv`` writes),
  or a first column of distinct text values (cell barcodes, sample ids), names the rows. Empty
  fields, ``NA`` and ``NaN`` are missing values.
- ``.parquet`` / ``.pq``: through pyarrow (``pip install 'diffvi[tables]'``); the index pandas
  stores with a table (in the schema's metadata) names the rows.
- ``.npy``: a 2-D numeric array; columns have no names, so ``labels`` and ``columns`` are column
  numbers (``"0"``, ``"-1"``).
- ``.h5ad``: through anndata (``pip install 'diffvi[tables]'``). Features are ``X`` (a sparse
  ``X`` is made dense after a memory check, only for the ``columns`` chosen), rows are
  ``obs_names``, columns ``var_names``; labels are the ``obs`` column named by ``labels``
  (categorical columns keep their category order).

Policy: a text feature column is an error naming it (``drop_non_numeric=True`` drops it);
a missing value is an error with its count per column (``impute="mean"`` replaces it by its
column's mean); Inf is an error; a missing label column is an error that lists the columns the
table has; a file that cannot be parsed is an error naming the file and its format.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TABLE_FORMATS",
    "Table",
    "TableFeatures",
    "is_table",
    "load_table",
    "principal_components",
    "standardise",
    "table_format",
]

_INSTALL_HINT = "pip install 'diffvi[tables]'"
#: Suffix → format name.
TABLE_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npy": "npy",
    ".h5ad": "h5ad",
}
_MISSING_TEXT = frozenset({"", "na", "nan", "n/a", "null", "none"})
_IMPUTE = (None, "mean")
# A dense X may take at most this fraction of the memory available now.
_DENSE_MEMORY_FRACTION = 0.5


@dataclass
class Table:
    """A feature table read by :func:`load_table`.

    ``features [N, D]`` float32; ``labels [N]`` int64 codes into ``label_names`` (−1: no
    label; all −1 when no label column was asked for); ``feature_names [D]``; ``samples [N]``
    row names (``"0"``, ``"1"``, … when the file has none); ``label_column`` the column the
    labels came from; ``imputed`` the number of missing values replaced by their column mean.
    """

    features: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    feature_names: list[str]
    samples: list[str]
    path: Path
    format: str
    label_column: str | None = None
    dropped_columns: list[str] = field(default_factory=list)
    imputed: int = 0

    @property
    def num_samples(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    def label_strings(self, missing: str = "") -> list[str]:
        """The label name of every row (``missing`` where it has none): ``[N]``."""
        names = [*self.label_names, missing]
        return [names[code] for code in self.labels.tolist()]


def table_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` by its suffix (``.gz`` allowed after ``.csv``/``.tsv``)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
        if Path(name).suffix not in (".csv", ".tsv", ".tab", ".txt"):
            raise ValueError(f"{path}: only CSV/TSV tables may be gzipped, got {Path(path).name}")
    suffix = Path(name).suffix
    if suffix not in TABLE_FORMATS:
        raise ValueError(
            f"cannot tell the format of {path}: expected a suffix among "
            f"{', '.join(TABLE_FORMATS)} (CSV/TSV optionally .gz)"
        )
    return TABLE_FORMATS[suffix]


def is_table(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a table :func:`load_table` reads rather than images: a table
    suffix (:data:`TABLE_FORMATS`), or a ``.npy`` holding a 2-D array ``[N, D]`` (an image
    array has 3 or 4 dimensions; only the file's header is read)."""
    path = Path(path)
    try:
        fmt = table_format(path)
    except ValueError:
        return False
    if fmt != "npy":
        return True
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False).ndim == 2
    except (OSError, ValueError, EOFError):
        return False


def load_table(
    path: str | os.PathLike[str],
    labels: str | None = None,
    columns: Sequence[str] | None = None,
    *,
    drop_non_numeric: bool = False,
    impute: str | None = None,
) -> Table:
    """Read a feature table: features ``[N, D]`` float32, labels ``[N]`` (−1 for none).

    Args:
        path: a ``.csv``/``.tsv`` (optionally ``.gz``), ``.parquet``, ``.npy`` or ``.h5ad``.
        labels: the label column (an ``obs`` column for ``.h5ad``; a column number for
            ``.npy``); it is not a feature. ``None``: no labels.
        columns: the feature columns to keep, in this order (``var_names`` for ``.h5ad``;
            column numbers for ``.npy``). ``None``: every other column.
        drop_non_numeric: drop text columns instead of raising (``columns`` named explicitly
            must still be numeric).
        impute: ``None`` (a missing value is an error) or ``"mean"`` (its column's mean).

    Returns:
        A :class:`Table`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown suffix, a file that cannot be parsed, a missing label or feature
            column (naming the columns the table has), text features, missing or infinite
            values, fewer than one feature or row.
        ImportError: ``.parquet`` without pyarrow, ``.h5ad`` without anndata.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"table {path} not found")
    if impute not in _IMPUTE:
        raise ValueError(f"impute must be one of {list(_IMPUTE)}, got {impute!r}")
    columns = None if columns is None else [str(c) for c in columns]
    if columns is not None and not columns:
        raise ValueError(f"{path}: columns must name at least one feature column")
    if fmt == "h5ad":
        features, feature_names, samples, label_values, label_names = _read_h5ad(
            path, labels, columns
        )
        dropped: list[str] = []
    else:
        reader = {"csv": _read_text, "tsv": _read_text, "parquet": _read_parquet, "npy": _read_npy}
        frame = reader[fmt](path, fmt)
        features, feature_names, samples, label_values, label_names, dropped, labels = (
            _from_columns(path, frame, labels, columns, drop_non_numeric)
        )
    features, imputed = _check_values(path, features, feature_names, impute)
    if features.shape[0] < 1:
        raise ValueError(f"{path}: the table has no rows")
    return Table(
        features=features,
        labels=label_values,
        label_names=label_names,
        feature_names=feature_names,
        samples=samples,
        path=path,
        format=fmt,
        label_column=labels,
        dropped_columns=dropped,
        imputed=imputed,
    )


# ------------------------------------------------------------------------------ preparation


def standardise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of ``features [N, D]`` to mean 0 and standard deviation 1 (population std).

    A constant column becomes 0 (its std is taken as 1). Returns ``(standardised [N, D]
    float32, mean [D], std [D])`` with the statistics in float64."""
    x = np.asarray(features, dtype=np.float32)  # float32 throughout, statistics in float64
    if x.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {list(x.shape)}")
    mean = x.mean(0, dtype=np.float64)
    std = x.std(0, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return (x - mean.astype(np.float32)) / std.astype(np.float32), mean, std


@dataclass(frozen=True)
class TableFeatures:
    """How a table's rows become a model's inputs, saved with a model trained on a table so
    that it applies to new rows of the same kind of table.

    ``columns [D]`` are the feature columns in the model's order (``var_names`` of an
    ``.h5ad``, column numbers of an ``.npy``); ``mean [D]`` and ``std [D]`` (float64, the
    training rows') standardise them: ``(x - mean) / std`` in float32, exactly as training did
    (:meth:`transform`); ``label_column`` is the column the training labels came from (not a
    feature). :meth:`to_dict`/:meth:`from_dict` give the JSON form a model's config keeps.
    """

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_column: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        d = len(self.columns)
        if d < 1 or len(self.mean) != d or len(self.std) != d:
            raise ValueError(
                f"table features need D >= 1 columns with a mean and a std each; got "
                f"{d} columns, {len(self.mean)} means, {len(self.std)} stds"
            )
        if len(set(self.columns)) != d:
            raise ValueError(f"repeated feature columns {_repeated(list(self.columns))}")
        values = np.array([*self.mean, *self.std])
        if not np.isfinite(values).all() or min(self.std) <= 0:
            raise ValueError("table features need finite means and stds > 0")

    @classmethod
    def fit(cls, table: Table, rows: Any = None) -> TableFeatures:
        """The columns of ``table`` and the mean and std of its ``rows`` (positions; all when
        ``None``), as :func:`standardise` takes them."""
        features = table.features if rows is None else table.features[np.asarray(rows)]
        _, mean, std = standardise(features)
        return cls(tuple(table.feature_names), tuple(mean), tuple(std), table.label_column)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TableFeatures:
        """From :meth:`to_dict`'s form; unknown or missing keys are a ValueError."""
        known = {"columns", "mean", "std", "label_column"}
        if not isinstance(values, dict) or not {"columns", "mean", "std"} <= set(values):
            raise ValueError(
                f"table features must be a mapping with columns, mean and std; got {values!r:.80}"
            )
        if set(values) - known:
            raise ValueError(f"unknown table feature keys {sorted(set(values) - known)}")
        return cls(
            tuple(values["columns"]),
            tuple(values["mean"]),
            tuple(values["std"]),
            values.get("label_column"),
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"columns", "mean", "std", "label_column"}`` as JSON lists (floats exact)."""
        return {
            "columns": list(self.columns),
            "mean": list(self.mean),
            "std": list(self.std),
            "label_column": self.label_column,
        }

    @property
    def num_features(self) -> int:
        return len(self.columns)

    def transform(self, features: Any, source: str = "features") -> np.ndarray:
        """Standardise ``features [N, D]`` (columns in :attr:`columns`' order) with the saved
        statistics: float32 ``[N, D]``. A pandas DataFrame is matched by column name (any
        order; extra columns ignored). ``source`` names the data in errors."""
        if hasattr(features, "columns") and hasattr(features, "loc"):  # a pandas DataFrame
            names = [str(c) for c in features.columns]
            absent = [c for c in self.columns if c not in names]
            if absent:
                raise ValueError(
                    f"{source} has no feature column {_quoted(absent)} "
                    f"{_of_expected(self.columns)}; it has {_some_columns(names)}"
                )
            position = {name: j for j, name in enumerate(names)}
            features = features.iloc[:, [position[c] for c in self.columns]].to_numpy()
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{source}: expected rows of {self.num_features} features [N, "
                f"{self.num_features}] (columns {_quoted(list(self.columns))}), got shape "
                f"{list(x.shape)}"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"{source}: the features contain NaN or Inf")
        mean = np.asarray(self.mean).astype(np.float32)
        std = np.asarray(self.std).astype(np.float32)
        return (x - mean) / std

    def read(
        self, path: str | os.PathLike[str], labels: str | None = None, *, impute: str | None = None
    ) -> tuple[Table, np.ndarray]:
        """Read a new table's :attr:`columns` by name (in any order; other columns are
        ignored) with :func:`load_table` and standardise them: ``(table, standardised [N, D]
        float32)``. A missing column is a ValueError naming it and the columns expected."""
        table = load_table(path, labels, self.columns, impute=impute)
        return table, self.transform(table.features, str(path))


def principal_components(
    features: np.ndarray, n_components: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_components`` principal-component scores of ``features [N, D]``.

    ``n_components`` is capped at min(N, D). Returns ``(scores [N, K] float32, explained
    variance ratio [K])``, components in decreasing order of variance (scikit-learn's PCA,
    randomised SVD for large matrices with ``seed``, the scores centred)."""
    from sklearn.decomposition import PCA

    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D], got shape {list(x.shape)}")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    k = min(n_components, *x.shape)
    pca = PCA(n_components=k, random_state=seed)
    scores = pca.fit_transform(x)
    return scores.astype(np.float32), pca.explained_variance_ratio_.astype(np.float64)


# ------------------------------------------------------------------------------ readers

# A parsed table: column names in file order → 1-D arrays (float64 for numeric columns,
# object for text), and the row names if the file stores them.
_Frame = tuple[list[str], dict[str, np.ndarray], list[str] | None]


def _unreadable(path: Path, fmt: str, error: BaseException) -> ValueError:
    message = str(error).strip().splitlines()
    detail = message[0] if message else type(error).__name__
    return ValueError(f"cannot read {path} as {fmt.upper()}: {detail}")


def _import(module: str, purpose: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise ImportError(f"{purpose} needs the {module!r} package: {_INSTALL_HINT}") from error


def _read_text(path: Path, fmt: str) -> _Frame:
    sep = "," if fmt == "csv" else "\t"
    try:
        import pandas as pd
    except ImportError:
        return _read_text_stdlib(path, fmt, sep)
    try:
        frame = pd.read_csv(path, sep=sep)
    except (ValueError, UnicodeDecodeError, OSError, EOFError, pd.errors.ParserError) as error:
        raise _unreadable(path, fmt, error) from None
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: repeated column names {_repeated(names)}")
    data: dict[str, np.ndarray] = {}
    for name, column in zip(names, frame.columns, strict=True):
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            data[name] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            data[name] = values.to_numpy(dtype=object)
    return names, data, None


def _read_text_stdlib(path: Path, fmt: str, sep: str) -> _Frame:
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", newline="") as file:
            rows = [row for row in csv.reader(file, delimiter=sep) if row]
    except (UnicodeDecodeError, OSError, EOFError, csv.Error) as error:
        raise _unreadable(path, fmt, error) from None
    if not rows:
        raise ValueError(f"cannot read {path} as {fmt.upper()}: the file is empty")
    header = [name.strip() for name in rows[0]]
    # pandas' to_csv writes an index column whose header is empty
    if header and header[0] == "" and len(header) > 1:
        header[0] = "Unnamed: 0"
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(
                f"cannot read {path} as {fmt.upper()}: expected {len(header)} fields in line "
                f"{number}, saw {len(row)}"
            )
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: repeated column names {_repeated(header)}")
    data: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        texts = [row[j].strip() for row in rows[1:]]
        try:
            data[name] = np.array(
                [np.nan if t.lower() in _MISSING_TEXT else float(t) for t in texts], np.float64
            )
        except ValueError:
            data[name] = np.array(
                [None if t.lower() in _MISSING_TEXT else t for t in texts], dtype=object
            )
    return header, data, None


def _read_parquet(path: Path, fmt: str) -> _Frame:
    pq = _import("pyarrow.parquet", "reading .parquet tables")
    import pyarrow as pa

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise _unreadable(path, fmt, error) from None
    names = [str(name) for name in table.column_names]
    data: dict[str, np.ndarray] = {}
    samples = None
    for name, column in zip(names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = kind.value_type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values = column.to_numpy(zero_copy_only=False)
            data[name] = np.asarray(values, dtype=np.float64)
        else:
            data[name] = np.asarray(column.to_pylist(), dtype=object)
    # pandas records its index columns in the schema's metadata (a RangeIndex as a dict)
    metadata = table.schema.pandas_metadata or {}
    index = [n for n in metadata.get("index_columns", []) if isinstance(n, str) and n in data]
    if len(index) == 1:
        samples = [str(v) for v in data.pop(index[0])]
        names.remove(index[0])
    return names, data, samples


def _read_npy(path: Path, fmt: str) -> _Frame:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise _unreadable(path, fmt, error) from None
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise ValueError(
            f"{path}: expected a 2-D numeric array [N, D], got {array.dtype} {list(array.shape)}"
        )
    names = [str(j) for j in range(array.shape[1])]
    data = {name: array[:, j].astype(np.float64) for j, name in enumerate(names)}
    return names, data, None


def _npy_column(path: Path, spec: str, width: int, what: str) -> str:
    """A ``.npy`` column given as a number, negative counting from the end, as its name."""
    try:
        j = int(spec)
    except ValueError:
        raise ValueError(
            f"{path}: a .npy array has no column names; give the {what} as column numbers "
            f"0..{width - 1} (or negative from the end), got {spec!r}"
        ) from None
    if not -width <= j < width:
        raise ValueError(f"{path}: {what} column {j} is outside 0..{width - 1}")
    return str(j % width)


def _from_columns(
    path: Path,
    frame: _Frame,
    labels: str | None,
    columns: list[str] | None,
    drop_non_numeric: bool,
) -> tuple[np.ndarray, list[str], list[str], np.ndarray, list[str], list[str], str | None]:
    """Features, their names, row names, label codes and names, the text columns dropped and
    the label column (a ``.npy``'s column number made non-negative)."""
    names, data, samples = frame
    if Path(path).suffix.lower() == ".npy":
        width = len(names)
        labels = None if labels is None else _npy_column(path, labels, width, "label")
        if columns is not None:
            columns = [_npy_column(path, c, width, "feature") for c in columns]
    num_rows = len(next(iter(data.values()))) if data else 0
    # the row names: pandas' index column, or a first column of distinct text
    if samples is None and names and names[0] != labels and names[0] not in (columns or ()):
        first = data[names[0]].tolist()
        unnamed = names[0] == "" or names[0].startswith("Unnamed: 0")
        distinct_text = (
            data[names[0]].dtype == object and None not in first and len(set(first)) == num_rows
        )
        if unnamed or distinct_text:
            samples = [_text(v) for v in first]
            names = names[1:]
    if labels is not None and labels not in names:
        raise ValueError(
            f"{path} has no column {labels!r} for the labels; it has {_some_columns(names)}"
        )
    if columns is not None:
        absent = [c for c in columns if c not in names]
        if absent:
            raise ValueError(
                f"{path} has no feature column {_quoted(absent)} {_of_expected(columns)}; it has "
                f"{_some_columns(names)}"
            )
        if labels in columns:
            raise ValueError(f"{path}: column {labels!r} cannot be both the labels and a feature")
        text = [c for c in columns if data[c].dtype == object]
        if text:
            raise ValueError(f"{path}: feature columns {_text_columns(text, data)} are not numeric")
        chosen, dropped = columns, []
    else:
        candidates = [n for n in names if n != labels]
        text = [n for n in candidates if data[n].dtype == object]
        if text and not drop_non_numeric:
            raise ValueError(
                f"{path}: columns {_text_columns(text, data)} are not numeric; name the label "
                "column with --labels, choose the features with --columns, or drop text "
                "columns with --drop-non-numeric"
            )
        chosen = [n for n in candidates if n not in text]
        dropped = text
    if not chosen:
        raise ValueError(f"{path}: no numeric feature column; it has {_some_columns(names)}")
    features = np.empty((num_rows, len(chosen)), dtype=np.float32)
    for j, name in enumerate(chosen):
        features[:, j] = data[name]
    if labels is None:
        codes, label_names = np.full(num_rows, -1, dtype=np.int64), []
    else:
        codes, label_names = _encode_labels(data[labels])
    if samples is None:
        samples = [str(i) for i in range(num_rows)]
    return features, chosen, samples, codes, label_names, dropped, labels


def _read_h5ad(
    path: Path, labels: str | None, columns: list[str] | None
) -> tuple[np.ndarray, list[str], list[str], np.ndarray, list[str]]:
    anndata = _import("anndata", "reading .h5ad files")
    try:
        adata = anndata.read_h5ad(path)
    except Exception as error:  # h5py and anndata raise many kinds of error
        raise _unreadable(path, "h5ad", error) from None
    obs_columns = [str(c) for c in adata.obs.columns]
    if labels is not None and labels not in obs_columns:
        raise ValueError(
            f"{path} has no obs column {labels!r} for the labels; it has "
            f"{_some_columns(obs_columns)}"
        )
    var_names = [str(v) for v in adata.var_names]
    if adata.X is None:
        raise ValueError(f"{path}: the AnnData object has no X matrix")
    if columns is not None:
        position = {name: j for j, name in enumerate(var_names)}
        absent = [c for c in columns if c not in position]
        if absent:
            raise ValueError(
                f"{path} has no var_names {_quoted(absent)} {_of_expected(columns)}; it has "
                f"{_some_columns(var_names)}"
            )
        x = adata.X[:, [position[c] for c in columns]]
        feature_names = list(columns)
    else:
        x, feature_names = adata.X, var_names
    features = _dense(path, x)
    if labels is None:
        codes, label_names = np.full(adata.n_obs, -1, dtype=np.int64), []
    else:
        codes, label_names = _encode_labels(adata.obs[labels])
    return features, feature_names, [str(s) for s in adata.obs_names], codes, label_names


def _dense(path: Path, x: Any) -> np.ndarray:
    """``x`` (dense, scipy sparse or an HDF5-backed array) as a float32 numpy array ``[N, D]``,
    refused when it would take more than half the memory available."""
    shape = tuple(int(s) for s in x.shape)
    if hasattr(x, "toarray"):  # scipy sparse
        need = shape[0] * shape[1] * 4
        available = available_memory()
        if available is not None and need > _DENSE_MEMORY_FRACTION * available:
            raise ValueError(
                f"{path}: a dense X of {shape[0]} × {shape[1]} float32 takes "
                f"{need / 2**30:.1f} GiB, more than half the {available / 2**30:.1f} GiB "
                "available; choose fewer genes with --columns (e.g. highly variable ones)"
            )
        x = x.toarray()
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X holds {array.dtype}, expected numbers")
    return np.ascontiguousarray(array, dtype=np.float32)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# ------------------------------------------------------------------------------ helpers


def _encode_labels(values: Any) -> tuple[np.ndarray, list[str]]:
    """Label codes ``[N]`` (−1: missing) and names of a column (numpy array or pandas Series);
    categorical columns keep their category order, numbers sort numerically, text
    alphabetically."""
    if hasattr(values, "cat"):  # a pandas categorical
        names = [_text(c) for c in values.cat.categories]
        return values.cat.codes.to_numpy().astype(np.int64), names
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        array = array.astype(np.float64)
        present = ~np.isnan(array)
        unique = np.unique(array[present])
        codes = np.full(len(array), -1, dtype=np.int64)
        codes[present] = np.searchsorted(unique, array[present])
        return codes, [_text(v) for v in unique]
    texts = [None if _is_missing(v) else _text(v) for v in array.tolist()]
    names = sorted({t for t in texts if t is not None})
    index = {name: i for i, name in enumerate(names)}
    codes = np.array([-1 if t is None else index[t] for t in texts], dtype=np.int64)
    return codes, names


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return isinstance(value, str) and value.strip().lower() in _MISSING_TEXT


def _text(value: Any) -> str:
    """A label or row name as text: whole floats without ``.0``."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _check_values(
    path: Path, features: np.ndarray, names: list[str], impute: str | None
) -> tuple[np.ndarray, int]:
    if features.shape[1] < 1:
        raise ValueError(f"{path}: no feature column")
    finite = np.isfinite(features)
    if finite.all():
        return features, 0
    infinite = np.isinf(features)
    if infinite.any():
        per_column = infinite.sum(0)
        raise ValueError(
            f"{path}: {int(infinite.sum())} infinite values in {_counted(names, per_column)}"
        )
    missing = ~finite
    per_column = missing.sum(0)
    total = int(missing.sum())
    if impute is None:
        raise ValueError(
            f"{path}: {total} missing values (NaN or empty) in {_counted(names, per_column)}; "
            "replace them by their column's mean with --impute mean, or leave those columns "
            "out with --columns"
        )
    empty = [name for name, count in zip(names, per_column, strict=True) if count == len(features)]
    if empty:
        raise ValueError(f"{path}: columns {_quoted(empty)} have no value to take a mean of")
    means = np.nanmean(features, axis=0)
    features = np.where(missing, means[None, :], features).astype(np.float32)
    return features, total


def _counted(names: list[str], counts: np.ndarray, limit: int = 5) -> str:
    pairs = [(name, int(c)) for name, c in zip(names, counts, strict=True) if c]
    shown = ", ".join(f"{name!r} ({count})" for name, count in pairs[:limit])
    more = f", ... ({len(pairs)} columns in all)" if len(pairs) > limit else ""
    return f"{len(pairs)} column{'s' if len(pairs) != 1 else ''}: {shown}{more}"


def _text_columns(text: list[str], data: dict[str, np.ndarray], limit: int = 5) -> str:
    def example(name: str) -> str:
        values = [v for v in data[name].tolist() if v is not None]
        return f"{name!r} (e.g. {values[0]!r})" if values else repr(name)

    shown = ", ".join(example(name) for name in text[:limit])
    return shown + (f", ... ({len(text)} in all)" if len(text) > limit else "")


def _quoted(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _of_expected(columns: Sequence[str], limit: int = 10) -> str:
    """``of the 3 expected ('a', 'b', 'c')``: the feature columns asked for."""
    return f"of the {len(columns)} expected ({_quoted(list(columns), limit)})"


def _some_columns(names: list[str], limit: int = 20) -> str:
    if not names:
        return "no columns"
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return f"{len(names)} column{'s' if len(names) != 1 else ''}: {shown}{more}"


def _repeated(names: list[str]) -> str:
    seen: set[str] = set()
    repeated = sorted({n for n in names if n in seen or seen.add(n)})
    return _quoted(repeated)
