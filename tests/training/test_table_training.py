"""``train vae|ddvae --data TABLE`` (diffvi.training.families.tables): a table's rows,
standardised by the training rows' statistics, train a VAE with a real-valued Gaussian
likelihood; the label column stays out of the features; ``embed RUN`` embeds the held-out rows;
misfitting options are one-line errors."""

import json

import numpy as np
import pytest
import torch

from diffvi.training import TrainConfig, fit, load
from diffvi.training.families.tables import build_table_data, uses_table


@pytest.fixture
def table_csv(tmp_path):
    """60 rows: 5 numeric columns on very different scales and a text label column."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) * np.array([1.0, 10.0, 100.0, 0.1, 5.0]) + 3.0
    kinds = np.where(x[:, 0] > 3.0, "high", "low")
    lines = ["a,b,c,d,e,kind"] + [
        ",".join([*map(repr, row), kind]) for row, kind in zip(x.tolist(), kinds, strict=True)
    ]
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def config(path, **overrides) -> TrainConfig:
    fields = dict(
        data=str(path), labels="kind", objective="elbo", k=1, latent_dims=[2],
        hidden=[[16, 16]], batch_size=16, max_epochs=1, val_k=2, val_size=100, seed=0,
    )  # fmt: skip
    return TrainConfig(**{**fields, **overrides})


def test_a_table_is_standardised_by_its_training_rows_and_holds_out_val_fraction(table_csv):
    cfg = config(table_csv)
    assert uses_table(cfg)
    data = build_table_data(cfg)
    train_x, train_y = data.train_set.tensors
    val_x, val_y = data.val_set.tensors
    assert train_x.shape == (54, 5) and val_x.shape == (6, 5)  # val_fraction 0.1
    torch.testing.assert_close(train_x.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_x.std(0, unbiased=False), torch.ones(5), atol=1e-5, rtol=0)
    assert set(train_y.tolist()) | set(val_y.tolist()) == {0, 1}  # "high", "low"
    assert data.event_shape == (5,)


def test_vae_trains_on_a_table_with_a_real_gaussian_likelihood(table_csv, tmp_path):
    cfg = config(table_csv)
    assert cfg.likelihood == "bernoulli"  # the default, which cannot fit real values
    module = fit(cfg, tmp_path / "run", progress_bar=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["likelihood"] == "real-gaussian" and saved["event_shape"] == [5]
    assert np.isfinite(module.trainer.callback_metrics["val/bound"].item())
    assert load(tmp_path / "run").config.event_shape == [5]


def test_options_that_do_not_fit_a_table_are_errors(table_csv, tmp_path):
    with pytest.raises(ValueError, match="likelihood 'gaussian' cannot fit standardised table"):
        fit(config(table_csv, likelihood="gaussian"), tmp_path / "g", progress_bar=False)
    with pytest.raises(ValueError, match=r"size apply to images, not to the table .*rows\.csv"):
        build_table_data(config(table_csv, size=[8]))
    with pytest.raises(ValueError, match=r"rows\.csv has no column 'cell_type'.*'kind'"):
        build_table_data(config(table_csv, labels="cell_type"))


def test_train_vae_data_table_on_the_command_line(table_csv, tmp_path):
    from typer.testing import CliRunner

    from diffvi.cli.main import app

    run_dir = tmp_path / "cli"
    args = [
        "train", "vae", "--data", table_csv, "--labels", "kind", "--latent-dim", "2",
        "--hidden", "16,16", "--max-steps", "4", "--batch-size", "16", "--threads", "1",
        "--no-progress", "--run-dir", run_dir,
    ]  # fmt: skip
    embed = ["embed", run_dir, "--out", tmp_path / "emb", "--clusters", "2", "--knn-k", "5"]
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        # embed RUN: the held-out rows, with kNN fitted on the training rows' latents
        embedded = CliRunner().invoke(app, [str(a) for a in [*embed, "--no-progress"]])
    finally:
        torch.set_num_threads(threads)
    spec = json.loads((run_dir / "export" / "model.json").read_text())
    assert spec["config"]["likelihood"] == "real-gaussian"
    assert spec["config"]["event_shape"] == [5]
    assert embedded.exit_code == 0, embedded.output
    metrics = json.loads((tmp_path / "emb" / "metrics.json").read_text())
    assert metrics["dataset"] == "rows.csv" and metrics["num_points"] == 6
    assert 0 <= metrics["knn_accuracy"] <= 1 and metrics["knn_k"] == 5
