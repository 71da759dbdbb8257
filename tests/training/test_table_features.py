"""A model trained on a table keeps its preprocessing (diffvi.data.tables.TableFeatures in its
config: the feature columns, the training rows' mean and std, the label column): the export and
the checkpoint round-trip them, and ``diffvi.load(...).encode_table`` applies the model to new
rows, matching columns by name."""

import json

import numpy as np
import pytest
import torch

from diffvi.data.image_folders import split_positions
from diffvi.data.tables import TableFeatures, load_table
from diffvi.evaluation.representation import embed_latents
from diffvi.training import TrainConfig, fit, load
from diffvi.training.families.tables import build_table_data, held_out_rows, table_features

COLUMNS = ["a", "b", "c", "d", "e"]


def write_csv(path, x, columns, kinds=None):
    """``columns`` of ``x`` (and a ``kind`` column of ``kinds``) as a CSV."""
    header = [*columns, *(["kind"] if kinds is not None else [])]
    rows = [list(map(repr, row)) for row in x.tolist()]
    if kinds is not None:
        rows = [[*row, kind] for row, kind in zip(rows, kinds, strict=True)]
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """60 rows of 5 columns on very different scales, and a text label column."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) * np.array([1.0, 10.0, 100.0, 0.1, 5.0]) + 3.0
    kinds = np.where(x[:, 0] > 3.0, "high", "low")
    return write_csv(tmp_path_factory.mktemp("table") / "rows.csv", x, COLUMNS, kinds)


@pytest.fixture(scope="module")
def run(table, tmp_path_factory):
    config = TrainConfig(
        data=str(table), labels="kind", objective="elbo", k=1, latent_dims=[3],
        hidden=[[16, 16]], batch_size=16, max_steps=4, val_k=2, val_size=100, seed=0,
    )  # fmt: skip
    run_dir = tmp_path_factory.mktemp("run") / "run"
    threads = torch.get_num_threads()
    try:
        fit(config, run_dir, progress_bar=False)
    finally:
        torch.set_num_threads(threads)
    return run_dir


def training_stats(table):
    rows = load_table(table, labels="kind").features
    train, _ = split_positions(len(rows), 0.1, 0)
    chosen = rows[train.numpy()]
    return chosen.mean(0, dtype=np.float64), chosen.std(0, dtype=np.float64)


def test_the_export_and_the_checkpoint_keep_the_columns_mean_and_std(run, table):
    mean, std = training_stats(table)
    saved = json.loads((run / "export" / "model.json").read_text())["config"]["features"]
    assert saved["columns"] == COLUMNS and saved["label_column"] == "kind"
    np.testing.assert_array_equal(saved["mean"], mean)  # float64, exactly
    np.testing.assert_array_equal(saved["std"], std)
    for source in (run / "export", run / "checkpoints" / "last.ckpt", run):
        features = load(source).table_features
        assert features == TableFeatures.from_dict(saved), source
    assert json.loads((run / "config.json").read_text())["features"] == saved


def test_encoding_the_training_rows_gives_the_runs_own_latents(run, table, tmp_path):
    model = load(run)
    data = build_table_data(model.config)  # the rows the run trained on, standardised
    own = embed_latents(
        model.posterior, data.train_set.tensors[0], torch.Generator().manual_seed(3)
    )
    # the same rows in a new file, columns reordered, an extra column and no labels
    rows = load_table(table, labels="kind").features.astype(np.float64)
    train, _ = split_positions(len(rows), 0.1, 0)
    order = ["c", "a", "e", "d", "b"]
    picked = rows[train.numpy()][:, [COLUMNS.index(c) for c in order]]
    extra = np.hstack([picked, np.ones((len(picked), 1))])
    path = write_csv(tmp_path / "new.csv", extra, [*order, "unused"])
    latents = model.encode_table(path, seed=3)
    assert latents.shape == (len(train), 3)
    torch.testing.assert_close(latents, own, rtol=0, atol=1e-6)
    # an array in the model's column order gives the same
    array = rows[train.numpy()]
    torch.testing.assert_close(model.encode_table(array, seed=3), own, rtol=0, atol=1e-6)


def test_a_dataframe_is_matched_by_column_name(run, table):
    pd = pytest.importorskip("pandas")
    model = load(run)
    frame = pd.read_csv(table)
    reordered = frame[["kind", "e", "d", "c", "b", "a"]]
    torch.testing.assert_close(
        model.table_inputs(reordered)[0], model.table_inputs(table, labels="kind")[0]
    )


def test_a_missing_column_is_an_error_naming_it_and_the_expected_ones(run, tmp_path):
    path = write_csv(tmp_path / "short.csv", np.ones((4, 3)), ["a", "c", "e"])
    model = load(run)
    with pytest.raises(ValueError, match=r"short\.csv has no feature column 'b', 'd' of the 5 "
                       r"expected \('a', 'b', 'c', 'd', 'e'\)"):  # fmt: skip
        model.encode_table(path)
    with pytest.raises(ValueError, match=r"expected rows of 5 features .* got shape \[4, 3\]"):
        model.encode_table(np.ones((4, 3)))


def test_a_run_from_before_the_features_were_kept_reads_its_training_table(run, table):
    config = load(run).config
    kept = table_features(config)
    config.features = None
    assert table_features(config) == kept
    rows, labels = held_out_rows(config, "test")
    assert rows.shape == (6, 5) and labels.shape == (6,)


def test_a_model_of_images_has_no_table_features():
    from diffvi.training.families.vae import VAEFamily

    config = TrainConfig(dataset="digits", latent_dims=[2], hidden=[[8]], event_shape=[1, 8, 8])
    family = VAEFamily(config)
    assert family.table_features is None
    with pytest.raises(ValueError, match=r"\(data: digits\) was not trained on a table"):
        family.encode_table(np.ones((2, 64)))


def test_malformed_features_in_a_config_are_refused():
    with pytest.raises(ValueError, match="2 columns, 1 means"):
        TrainConfig(features={"columns": ["a", "b"], "mean": [0.0], "std": [1.0, 1.0]})
    with pytest.raises(ValueError, match="stds > 0"):
        TrainConfig(features={"columns": ["a"], "mean": [0.0], "std": [0.0]})
