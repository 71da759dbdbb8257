"""A VAE-DGP trained on a table keeps its preprocessing, as a VAE does (config.features: the
feature columns, the training rows' mean and std, the label column): the export and the
checkpoint round-trip them, ``diffvi.load(...).encode_table`` gives the top-layer latent means of
new rows with their columns matched by name, and the legend of the run's latent plot names the
classes of a text label column."""

import json

import numpy as np
import pytest
import torch

from diffvi.data.image_folders import split_positions
from diffvi.data.tables import TableFeatures, load_table
from diffvi.training import VAEDGPConfig, fit, load
from diffvi.training.families.vaedgp import VAEDGPFamily

COLUMNS = ["a", "b", "c", "d", "e"]


def write_csv(path, x, columns, kinds=None):
    """``columns`` of ``x`` (and a ``kind`` column of ``kinds``) as a CSV."""
    header = [*columns, *(["kind"] if kinds is not None else [])]
    rows = [list(map(repr, row)) for row in np.asarray(x).tolist()]
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


def small_config(table, **overrides) -> VAEDGPConfig:
    fields = dict(
        dataset=None, data=str(table), labels="kind", latent_dims=[2], num_inducing=6,
        recognition_hidden=[8], batch_size=20, max_steps=3, refine_steps=5, val_size=10,
    )  # fmt: skip
    return VAEDGPConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def run(table, tmp_path_factory):
    """A 3-step VAE-DGP run on the table, and the legend texts of the plots it saved."""
    import diffvi.evaluation.plots as plots

    legends: list[list[str]] = []
    save = plots._save_figure

    def record(fig, path, *args, **kwargs):
        legends.extend(
            [text.get_text() for text in ax.get_legend().get_texts()]
            for ax in fig.axes
            if ax.get_legend() is not None
        )
        return save(fig, path, *args, **kwargs)

    run_dir = tmp_path_factory.mktemp("run") / "run"
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "_save_figure", record)
        try:
            fit(small_config(table), run_dir, accelerator="cpu", progress_bar=False)
        finally:
            torch.set_num_threads(threads)
    return run_dir, legends


def test_the_export_and_the_checkpoint_keep_the_columns_mean_and_std(run, table):
    run_dir, _ = run
    rows = load_table(table, labels="kind").features
    train, _ = split_positions(len(rows), 0.1, 0)
    expected = TableFeatures.fit(load_table(table, labels="kind"), train.numpy())
    saved = json.loads((run_dir / "export" / "model.json").read_text())["config"]["features"]
    assert TableFeatures.from_dict(saved) == expected  # float64 statistics, exactly
    assert saved["columns"] == COLUMNS and saved["label_column"] == "kind"
    for source in (run_dir / "export", run_dir / "checkpoints" / "last.ckpt", run_dir):
        assert load(source).table_features == expected, source
    assert json.loads((run_dir / "config.json").read_text())["features"] == saved


def test_reordered_columns_encode_to_the_runs_own_top_latent_means(run, table, tmp_path):
    run_dir, _ = run
    family = load(run_dir)
    data = VAEDGPFamily.build_data(family.config)  # the rows it trained on, standardised
    with torch.no_grad():
        own = family.model.encode(data.train_y).float()
    assert own.shape == (54, 2)
    # the same rows in a new file: columns in another order, an extra column, no labels
    rows = load_table(table, labels="kind").features.astype(np.float64)
    train, _ = split_positions(len(rows), 0.1, 0)
    order = ["d", "b", "e", "a", "c"]
    picked = rows[train.numpy()][:, [COLUMNS.index(c) for c in order]]
    path = write_csv(tmp_path / "new.csv", np.hstack([picked, np.ones((54, 1))]), [*order, "x"])
    latents = family.encode_table(path)
    assert latents.shape == (54, 2) and latents.dtype == torch.float32
    torch.testing.assert_close(latents, own, rtol=0, atol=1e-5)
    # an array in the model's column order, in batches of 7, gives the same
    array = rows[train.numpy()]
    torch.testing.assert_close(family.encode_table(array, batch_size=7), own, rtol=0, atol=1e-5)


def test_a_missing_column_is_an_error_naming_it_and_the_expected_ones(run, tmp_path):
    run_dir, _ = run
    path = write_csv(tmp_path / "short.csv", np.ones((4, 3)), ["a", "c", "e"])
    family = load(run_dir / "export")
    with pytest.raises(ValueError, match=r"short\.csv has no feature column 'b', 'd' of the 5 "
                       r"expected \('a', 'b', 'c', 'd', 'e'\)"):  # fmt: skip
        family.encode_table(path)
    with pytest.raises(ValueError, match=r"expected rows of 5 features .* got shape \[4, 3\]"):
        family.encode_table(np.ones((4, 3)))


def test_a_model_of_images_or_a_gplvm_does_not_encode_rows(run):
    run_dir, _ = run
    images = VAEDGPFamily(VAEDGPConfig(latent_dims=[2], num_inducing=4, data_dim=5, num_points=10))
    assert images.table_features is None
    with pytest.raises(ValueError, match=r"\(data: frey-faces\) was not trained on a table by "
                       r"`train vaedgp --data TABLE`"):  # fmt: skip
        images.encode_table(np.ones((2, 5)))
    config = load(run_dir).config
    config.recognition = False
    gplvm = VAEDGPFamily(config)
    with pytest.raises(ValueError, match="GP-LVM .* no encoder for new rows"):
        gplvm.encode_table(np.ones((2, 5)))


def test_the_latent_plot_legend_names_the_classes_of_a_text_label_column(run):
    run_dir, legends = run
    assert (run_dir / "latents.png").is_file()
    assert sorted(legends[-1]) == ["high", "low"], legends  # not 0 and 1


def test_malformed_features_in_a_config_are_refused():
    with pytest.raises(ValueError, match="2 columns, 1 means"):
        VAEDGPConfig(features={"columns": ["a", "b"], "mean": [0.0], "std": [1.0, 1.0]})
