"""A model trained on a table applied to new tables: ``embed table NEW --model RUN`` (latents,
plot and scores of the new rows, columns matched by name) and ``evaluate RUN --data NEW``
(bounds on the new rows, standardised with the saved statistics; by default the run's own
held-out rows), which the training summary suggests; the plots' legends name the classes of a
text label column."""

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diffvi.cli.main import app
from diffvi.data.image_folders import split_positions
from diffvi.evaluation.report import evaluate_module
from diffvi.training import load

COLUMNS = ["a", "b", "c", "d", "e"]


def write_table(path, x, columns, kinds=None):
    """``columns`` of ``x`` (and a ``kind`` column of ``kinds``) as a CSV."""
    header = [*columns, *(["kind"] if kinds is not None else [])]
    rows = [list(map(repr, row)) for row in np.asarray(x).tolist()]
    if kinds is not None:
        rows = [[*row, kind] for row, kind in zip(rows, kinds, strict=True)]
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


def rows(n, seed):
    """``n`` rows of 5 columns on very different scales, labelled by the sign of column a."""
    x = np.random.default_rng(seed).normal(size=(n, 5)) * np.array([1, 10, 100, 0.1, 5]) + 3
    return x, np.where(x[:, 0] > 3.0, "high", "low")


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A VAE (3 latents) trained for 4 steps by ``train vae --data rows.csv --labels kind``."""
    folder = tmp_path_factory.mktemp("table-model")
    table = write_table(folder / "rows.csv", *rows(60, 0)[:1], COLUMNS, rows(60, 0)[1])
    run_dir = folder / "run"
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, [str(a) for a in [
            "train", "vae", "--data", table, "--labels", "kind", "--objective", "elbo",
            "--k", "1", "--latent-dim", "3", "--hidden", "16,16", "--max-steps", "4",
            "--batch-size", "16", "--threads", "1", "--no-progress", "--run-dir", run_dir,
        ]])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return run_dir, table, result.output


@pytest.fixture
def new_table(tmp_path):
    """40 new rows, their columns in another order, a label column and an unused column."""
    x, kinds = rows(40, 1)
    order = ["e", "c", "a", "b", "d"]
    x = np.hstack([x[:, [COLUMNS.index(c) for c in order]], np.zeros((40, 1))])
    return write_table(tmp_path / "new.csv", x, [*order, "unused"], kinds)


def record_legends(monkeypatch):
    """The legend texts of every figure the plots module saves from now on (one list per
    legend)."""
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

    monkeypatch.setattr(plots, "_save_figure", record)
    return legends


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_embed_table_with_a_model_writes_latents_a_plot_and_scores(cli, table_run, new_table):
    run_dir, *_ = table_run
    out = new_table.parent / "emb"
    result = cli(
        "embed", "table", new_table, "--model", run_dir, "--labels", "kind", "--out", out,
        "--knn-k", "5", "--threads", "1", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "40 rows × 5 features" in result.output and "standardised by" in result.output
    latents = read_csv(out / "latents.csv")
    assert list(latents[0]) == ["sample", "kind", "z1", "z2", "z3"] and len(latents) == 40
    z = torch.tensor([[float(r[f"z{j}"]) for j in (1, 2, 3)] for r in latents])
    # the library's encoding of the same file (seed 0, one posterior draw per row)
    torch.testing.assert_close(z, load(run_dir).encode_table(new_table), rtol=0, atol=1e-6)
    embedding = read_csv(out / "embedding.csv")
    assert list(embedding[0]) == ["sample", "kind", "z1", "z2", "cluster"]
    assert {row["kind"] for row in embedding} == {"high", "low"}
    assert (out / "embedding.png").stat().st_size > 5_000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "model" and metrics["latent_dim"] == 3
    assert metrics["clusters"] == 2 and metrics["details"]["latent_dim"] == 3
    scores = metrics["scores"]["kind"]
    assert scores["labelled"] == 40 and 0 <= scores["knn_accuracy"] <= 1 and scores["knn_k"] == 5


def test_embed_table_with_a_model_refuses_a_missing_column_and_training_options(
    cli, table_run, tmp_path
):
    run_dir, *_ = table_run
    short = write_table(tmp_path / "short.csv", np.ones((5, 3)), ["a", "c", "e"])
    result = cli("embed", "table", short, "--model", run_dir, "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert "short.csv has no feature column 'b', 'd' of the 5 expected" in result.output
    assert "'a', 'b', 'c', 'd', 'e'" in result.output
    result = cli("embed", "table", short, "--model", run_dir, "--pca", "2", "--out", tmp_path)
    assert result.exit_code == 1 and "--pca" in result.output and "--model" in result.output


SCORE = ["--k", "8", "--iwae-k", "4", "--elbo-samples", "2", "--threads", "1", "--no-progress"]
LIBRARY = dict(k=8, iwae_k=4, elbo_samples=2, batch_size=100, seed=0)


def test_evaluate_data_on_a_new_table_gives_the_librarys_bound(cli, table_run, new_table):
    run_dir, *_ = table_run
    out = new_table.parent / "m.json"
    result = cli("evaluate", run_dir, "--data", new_table, *SCORE, "--json", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    model = load(run_dir)
    expected = evaluate_module(model, model.table_inputs(new_table)[0], **LIBRARY)
    assert metrics["num_points"] == 40 and metrics["dataset"] == "new.csv"
    for key in ("elbo", "iwae_bound", "log_px"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-6), key


def test_evaluate_a_table_run_scores_its_held_out_rows_by_default(cli, table_run, tmp_path):
    run_dir, table, _ = table_run
    result = cli("evaluate", run_dir, *SCORE, "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    model = load(run_dir)
    _, held_out = split_positions(60, 0.1, 0)
    rows = model.table_inputs(table, labels="kind")[0][held_out]
    assert metrics["num_points"] == 6 and metrics["data"] == str(table)
    assert metrics["elbo"] == pytest.approx(evaluate_module(model, rows, **LIBRARY)["elbo"])


def test_evaluate_a_table_run_on_images_is_refused(cli, table_run, tmp_path):
    run_dir, *_ = table_run
    (tmp_path / "imgs").mkdir()
    result = cli("evaluate", run_dir, "--data", tmp_path / "imgs")
    assert result.exit_code == 1 and "trained on a table" in result.output


def test_the_training_summary_suggests_embedding_and_scoring_new_rows(table_run):
    run_dir, _, output = table_run
    assert "diffvi sample" not in output  # a model of rows draws no images
    assert f"Next: diffvi embed table NEW.csv --model {run_dir} --out" in output
    assert f"diffvi evaluate {run_dir} --data NEW.csv" in output


def test_the_legends_name_the_classes_of_a_text_label_column(
    cli, table_run, new_table, monkeypatch
):
    run_dir, *_ = table_run
    legends = record_legends(monkeypatch)
    out = new_table.parent / "held-out"
    result = cli("embed", run_dir, "--out", out, "--split", "train", "--threads", "1",
                 "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "latents.png").is_file() and sorted(legends[-1]) == ["high", "low"], legends
    result = cli(
        "embed", "table", new_table, "--model", run_dir, "--labels", "kind",
        "--out", new_table.parent / "new", "--threads", "1", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(legends[-1]) == ["high", "low"], legends
