"""Feature tables (diffvi.data.tables): every format reads the same small table back; missing
label columns, text features, missing values and corrupt files are one-line errors naming the
file; a sparse .h5ad X is made dense within a memory limit; standardise and PCA."""

import gzip
import re
import sys

import numpy as np
import pytest

from diffvi.data import tables
from diffvi.data.tables import load_table, principal_components, standardise

SAMPLES = ["cell-a", "cell-b", "cell-c", "cell-d", "cell-e"]
FEATURES = np.array(
    [[1.0, 2.5, -3.0], [0.5, 0.0, 4.0], [2.0, 1.0, 1.0], [-1.0, 3.0, 0.25], [0.0, -2.0, 8.0]],
    dtype=np.float32,
)
NAMES = ["g1", "g2", "g3"]
KINDS = ["T", "B", "T", "NK", "B"]


def write_text(path, sep=",", index=True, labels=True, rows=None):
    header = (["sample"] if index else []) + NAMES + (["kind"] if labels else [])
    lines = [sep.join(header)]
    for i, row in enumerate(rows if rows is not None else FEATURES.tolist()):
        fields = ([SAMPLES[i]] if index else []) + [repr(v) for v in row]
        lines.append(sep.join(fields + ([KINDS[i]] if labels else [])))
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def write_h5ad(path, x=FEATURES, sparse=False, kinds=KINDS):
    anndata = pytest.importorskip("anndata")
    pd = pytest.importorskip("pandas")
    import scipy.sparse

    obs = pd.DataFrame(
        {"kind": pd.Categorical(kinds, categories=["T", "B", "NK"]), "n": [1, 2, 3, 4, 5]},
        index=SAMPLES,
    )
    var = pd.DataFrame(index=NAMES)
    adata = anndata.AnnData(scipy.sparse.csr_matrix(x) if sparse else x, obs=obs, var=var)
    adata.write_h5ad(path)
    return path


def assert_small_table(table, codes=(2, 0, 2, 1, 0), names=("B", "NK", "T")):
    np.testing.assert_array_equal(table.features, FEATURES)
    assert table.features.dtype == np.float32
    assert table.feature_names == NAMES
    assert table.samples == SAMPLES
    assert table.label_names == list(names)
    np.testing.assert_array_equal(table.labels, codes)
    assert table.label_strings() == KINDS


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz", ".txt"])
@pytest.mark.parametrize("engine", ["pandas", "stdlib"])
def test_csv_and_tsv_read_features_labels_and_row_names(tmp_path, monkeypatch, suffix, engine):
    if engine == "pandas":
        pytest.importorskip("pandas")
    else:
        monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails
    sep = "," if suffix.startswith(".csv") else "\t"
    path = write_text(tmp_path / f"t{suffix}", sep=sep)
    table = load_table(path, labels="kind")
    assert_small_table(table)
    assert table.format == ("csv" if sep == "," else "tsv")
    unlabelled = load_table(path, columns=["g1", "g2", "g3"], drop_non_numeric=True)
    assert unlabelled.label_names == [] and (unlabelled.labels == -1).all()


def test_pandas_index_column_names_the_rows(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(FEATURES, columns=NAMES)
    frame["kind"] = KINDS
    frame.to_csv(tmp_path / "t.csv")  # a numbered index with an empty header
    table = load_table(tmp_path / "t.csv", labels="kind")
    assert table.samples == ["0", "1", "2", "3", "4"] and table.feature_names == NAMES


def test_parquet_reads_back(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(FEATURES, columns=NAMES, index=pd.Index(SAMPLES, name="sample"))
    frame["kind"] = pd.Categorical(KINDS)
    frame.to_parquet(tmp_path / "t.parquet")
    assert_small_table(load_table(tmp_path / "t.parquet", labels="kind"))


def test_npy_columns_are_numbers(tmp_path):
    codes = np.array([[2], [0], [2], [1], [0]], dtype=np.float32)
    np.save(tmp_path / "t.npy", np.hstack([FEATURES, codes]))
    table = load_table(tmp_path / "t.npy", labels="-1")
    np.testing.assert_array_equal(table.features, FEATURES)
    assert table.feature_names == ["0", "1", "2"] and table.label_names == ["0", "1", "2"]
    assert table.label_column == "3"
    np.testing.assert_array_equal(table.labels, [2, 0, 2, 1, 0])
    assert load_table(tmp_path / "t.npy", columns=["1", "0"]).feature_names == ["1", "0"]
    with pytest.raises(ValueError, match="column numbers"):
        load_table(tmp_path / "t.npy", labels="kind")
    with pytest.raises(ValueError, match="outside 0..3"):
        load_table(tmp_path / "t.npy", labels="7")


@pytest.mark.parametrize("sparse", [False, True])
def test_h5ad_reads_x_obs_names_and_a_categorical_obs_column(tmp_path, sparse):
    path = write_h5ad(tmp_path / "t.h5ad", sparse=sparse)
    table = load_table(path, labels="kind")
    # categorical: the categories' own order, T, B, NK
    assert_small_table(table, codes=(0, 1, 0, 2, 1), names=("T", "B", "NK"))
    chosen = load_table(path, columns=["g3", "g1"])
    np.testing.assert_array_equal(chosen.features, FEATURES[:, [2, 0]])


def test_h5ad_missing_labels_are_minus_one(tmp_path):
    path = write_h5ad(tmp_path / "t.h5ad", kinds=["T", None, "T", "NK", "B"])
    table = load_table(path, labels="kind")
    np.testing.assert_array_equal(table.labels, [0, -1, 0, 2, 1])
    assert table.label_strings("?")[1] == "?"


def test_a_sparse_x_too_large_for_memory_is_refused(tmp_path, monkeypatch):
    path = write_h5ad(tmp_path / "t.h5ad", sparse=True)
    monkeypatch.setattr(tables, "available_memory", lambda: 100)
    with pytest.raises(ValueError, match=r"t\.h5ad: a dense X of 5 × 3 float32.*--columns"):
        load_table(path)


def test_a_missing_label_column_names_the_columns_the_table_has(tmp_path):
    path = write_text(tmp_path / "t.csv")
    with pytest.raises(ValueError, match=r"t\.csv has no column 'cell_type'.*'g1', 'g2'"):
        load_table(path, labels="cell_type")
    h5ad = write_h5ad(tmp_path / "t.h5ad")
    with pytest.raises(ValueError, match=r"t\.h5ad has no obs column 'cell_type'.*'kind', 'n'"):
        load_table(h5ad, labels="cell_type")
    with pytest.raises(ValueError, match=r"no feature column 'g9'"):
        load_table(path, labels="kind", columns=["g1", "g9"])
    with pytest.raises(ValueError, match=r"no var_names 'g9'"):
        load_table(h5ad, columns=["g9"])


def test_text_features_are_an_error_naming_them_or_dropped(tmp_path):
    path = write_text(tmp_path / "t.csv")
    with pytest.raises(ValueError, match=r"t\.csv: columns 'kind' \(e\.g\. 'T'\) are not numeric"):
        load_table(path)
    table = load_table(path, drop_non_numeric=True)
    assert table.feature_names == NAMES and table.dropped_columns == ["kind"]


@pytest.mark.parametrize("engine", ["pandas", "stdlib"])
def test_missing_values_are_counted_or_imputed_by_the_column_mean(tmp_path, monkeypatch, engine):
    if engine == "pandas":
        pytest.importorskip("pandas")
    else:
        monkeypatch.setitem(sys.modules, "pandas", None)
    rows = FEATURES.tolist()
    rows[1][0] = rows[3][0] = rows[4][2] = float("nan")
    path = tmp_path / "t.csv"
    write_text(path, rows=rows)
    path.write_text(path.read_text().replace("nan", "", 1))  # an empty field is missing too
    with pytest.raises(ValueError, match=r"t\.csv: 3 missing values .* 'g1' \(2\), 'g3' \(1\)"):
        load_table(path, labels="kind")
    table = load_table(path, labels="kind", impute="mean")
    assert table.imputed == 3
    assert table.features[1, 0] == pytest.approx(np.mean([1.0, 2.0, 0.0]))
    assert table.features[4, 2] == pytest.approx(np.mean([-3.0, 4.0, 1.0, 0.25]))


def test_corrupt_or_mismatched_files_are_errors_naming_the_file(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b,c\n1,2,3\n4,5\n6,7,8,9\n")
    with pytest.raises(ValueError, match=r"cannot read .*ragged\.csv as CSV"):
        load_table(ragged)
    garbage = bytes(range(256)) * 8
    for name in ("bad.npy", "bad.h5ad", "bad.parquet"):
        if name.endswith(".h5ad"):
            pytest.importorskip("anndata")
        if name.endswith(".parquet"):
            pytest.importorskip("pyarrow")
        (tmp_path / name).write_bytes(garbage)
        with pytest.raises(ValueError, match=f"cannot read .*{re.escape(name)} as"):
            load_table(tmp_path / name)
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"cube\.npy: expected a 2-D numeric array"):
        load_table(tmp_path / "cube.npy")
    with pytest.raises(FileNotFoundError, match=r"table .*absent\.csv not found"):
        load_table(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match=r"cannot tell the format of .*t\.xlsx"):
        load_table(tmp_path / "t.xlsx")
    inf = tmp_path / "inf.csv"
    inf.write_text("a,b\n1,inf\n2,3\n")
    with pytest.raises(ValueError, match=r"inf\.csv: 1 infinite values in 1 column: 'b'"):
        load_table(inf)


def test_standardise_gives_zero_mean_unit_std_and_zeros_for_a_constant_column():
    x = np.column_stack([FEATURES, np.full(5, 7.0, dtype=np.float32)])
    z, mean, std = standardise(x)
    np.testing.assert_allclose(z[:, :3].mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z[:, :3].std(0), 1.0, atol=1e-6)
    assert (z[:, 3] == 0).all() and std[3] == 1.0 and mean[3] == 7.0


def test_principal_components_are_centred_decreasing_and_capped():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    scores, explained = principal_components(x, 3)
    assert scores.shape == (40, 3) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.mean(0), 0.0, atol=1e-5)
    assert (np.diff(scores.var(0)) < 0).all() and (np.diff(explained) < 0).all()
    assert principal_components(x, 50)[0].shape == (40, 6)
