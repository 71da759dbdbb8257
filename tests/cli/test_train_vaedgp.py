"""``train vaedgp``: trains a VAE-DGP from the command line and reports bound and imputation, on a
registered data set or on the user's own table or image array (a GP-LVM too); bad data is a
one-line error. A VAE-DGP trained on a table embeds a new one (``embed table NEW --model RUN``,
columns matched by name), as its summary suggests."""

import csv
import json

import numpy as np
import pytest

from diffvi.training import load
from diffvi.training.config import VAEDGPConfig
from diffvi.training.families.vaedgp import VAEDGPFamily


def test_cli_trains_a_two_layer_vae_dgp_and_reports(cli, tmp_path):
    run = tmp_path / "run"
    result = cli(
        "train", "vaedgp", "--dataset", "frey-faces", "--layers", "2", "--train-size", "100",
        "--num-inducing", "8", "--recognition-hidden", "16", "--batch-size", "50",
        "--max-steps", "4", "--val-every", "2", "--run-dir", run, "--threads", "1",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Held-out bound" in result.stdout and "Imputation RMSE" in result.stdout
    assert (run / "export" / "model.json").is_file() and (run / "latents.png").is_file()
    assert json.loads((run / "config.json").read_text())["latent_dims"] == [10, 5]


def test_layers_and_latent_dims_must_agree(cli, tmp_path):
    result = cli(
        "train", "vaedgp", "--layers", "2", "--latent-dims", "5", "--run-dir", tmp_path / "r",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "--latent-dims 5 gives 1 layers, not 2" in result.output


SMALL_OWN = [
    "--latent-dims", "2", "--num-inducing", "10", "--recognition-hidden", "16",
    "--batch-size", "30", "--val-fraction", "0.2",
    "--threads", "1", "--no-progress", "--log-every-n-steps", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    """cells.csv: 120 rows of 5 features in two Gaussian clusters 4 apart (in 3 of the
    features), with a text label column ``kind`` (A/B) last."""
    path = tmp_path_factory.mktemp("own") / "cells.csv"
    rng = np.random.default_rng(0)
    kind = rng.integers(0, 2, 120)
    centre = np.where(kind[:, None] == 1, 2.0, -2.0) * np.array([1, 1, 0, 0, 1])
    rows = rng.normal(size=(120, 5)) * 0.5 + centre
    lines = ["a,b,c,d,e,kind"]
    for row, k in zip(rows, kind, strict=True):
        lines.append(",".join(f"{v:.4f}" for v in row) + f",{'AB'[k]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _logged(run_dir, name):
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        return [float(r[name]) for r in csv.DictReader(file) if r.get(name)]


def test_a_vae_dgp_on_a_table_raises_its_held_out_bound_and_plots_its_latents(
    cli, clusters, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = cli(
        "train", "vaedgp", "--data", clusters, "--labels", "kind", *SMALL_OWN,
        "--max-steps", "60", "--val-every", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "vaedgp-cells-2"  # named after the table
    bounds = _logged(run_dir, "val/bound")
    assert len(bounds) == 12 and bounds[-1] > bounds[0] + 1, bounds  # about -10.2 -> -8.6
    assert "nats per row" in result.stdout and "in standard deviations" in result.stdout
    assert (run_dir / "latents.png").stat().st_size > 1000
    family = load(run_dir)
    assert family.config.data_dim == 5 and family.config.num_points == 96  # 24 held out


def test_the_labels_of_a_table_or_an_image_array_colour_the_latents_not_the_features(
    clusters, tmp_path
):
    config = VAEDGPConfig(
        dataset=None, data=str(clusters), labels="kind", train_size=50, val_size=10
    )
    data = VAEDGPFamily.build_data(config)
    assert data.train_y.shape == (50, 5) and data.val_set.tensors[0].shape == (10, 5)
    assert set(data.train_labels.tolist()) == {0, 1} and data.label_names == ["A", "B"]
    # standardised by the training rows' statistics
    assert data.train_y.mean(0).abs().max() < 0.3 and data.train_y.dtype.is_floating_point
    np.savez(tmp_path / "faces.npz", images=np.zeros((20, 3, 4, 4), np.uint8),
             labels=np.arange(20) % 3)  # fmt: skip
    images = VAEDGPFamily.build_data(VAEDGPConfig(dataset=None, data=str(tmp_path / "faces.npz")))
    assert images.train_y.shape == (18, 48) and images.train_labels.tolist()[:3] == [0, 1, 2]
    assert images.label_names is None and images.table_features is None  # numbers, not names
    from PIL import Image  # class subfolders: their names reach the latent plot

    for i in range(10):
        folder = tmp_path / "pets" / ("cat", "dog")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), 20 * i, np.uint8)).save(folder / f"{i}.png")
    pets = VAEDGPFamily.build_data(VAEDGPConfig(dataset=None, data=str(tmp_path / "pets")))
    assert pets.label_names == ["cat", "dog"] and set(pets.train_labels.tolist()) == {0, 1}


def test_a_vae_dgp_on_an_image_array_raises_its_held_out_bound(cli, tmp_path):
    """120 noisy 6x6 grey images, each one of six horizontal bars, flattened to 36 values."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 0.1, (120, 6, 6)).astype(np.float32)
    for i in range(120):
        images[i, i % 6, :] = 1.0
    np.save(tmp_path / "bars.npy", images)
    run_dir = tmp_path / "run"
    result = cli(
        "train", "vaedgp", "--data", tmp_path / "bars.npy", *SMALL_OWN, "--max-steps", "40",
        "--val-every", "5", "--run-dir", run_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    bounds = _logged(run_dir, "val/bound")
    assert len(bounds) == 8 and bounds[-1] > bounds[0] + 5, bounds  # about 9 -> 24
    assert "nats per image" in result.stdout and (run_dir / "latents.png").is_file()
    assert load(run_dir).config.data_dim == 36


def test_a_gplvm_trains_on_a_table(cli, clusters, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(
        "train", "vaedgp", "--data", clusters, "--labels", "kind", "--no-recognition",
        *SMALL_OWN, "--max-steps", "60", "--val-every", "30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "gplvm-cells-2"
    bounds = _logged(run_dir, "train/bound")
    assert len(bounds) == 60 and np.mean(bounds[-10:]) > bounds[0] + 1, bounds  # -9.3 -> -7
    assert not load(run_dir).model.amortised and (run_dir / "latents.png").is_file()
    assert "embed table" not in result.output  # no encoder for new rows
    refused = cli("embed", "table", clusters, "--model", run_dir, "--out", tmp_path / "e")
    lines = refused.output.strip().splitlines()
    assert refused.exit_code == 1 and len(lines) == 1 and "no encoder for new rows" in lines[0]


def test_a_vae_dgp_trained_on_a_table_embeds_a_new_table_by_column_name(
    cli, clusters, tmp_path, monkeypatch
):
    import diffvi.evaluation.plots as plots

    legends: list[list[str]] = []
    save = plots._save_figure

    def record(fig, path, *args, **kwargs):  # the legend texts of every saved figure
        legends.extend(
            [text.get_text() for text in ax.get_legend().get_texts()]
            for ax in fig.axes
            if ax.get_legend() is not None
        )
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "_save_figure", record)
    run_dir = tmp_path / "run"
    result = cli(
        "train", "vaedgp", "--data", clusters, "--labels", "kind", *SMALL_OWN,
        "--max-steps", "3", "--run-dir", run_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Next: diffvi embed table NEW.csv --model {run_dir} --out" in result.stdout
    assert "diffvi evaluate" not in result.stdout  # evaluate scores no VAE-DGP
    assert sorted(legends[-1]) == ["A", "B"], legends  # latents.png names the classes
    # 30 of its rows in a new file: columns in another order, the labels first, one more column
    with open(clusters, newline="") as file:
        rows = list(csv.DictReader(file))[:30]
    order = ["kind", "e", "c", "a", "d", "b", "other"]
    lines = [",".join(order)] + [",".join(row.get(c, "0") for c in order) for row in rows]
    new = tmp_path / "new.csv"
    new.write_text("\n".join(lines) + "\n")
    out = tmp_path / "emb"
    result = cli(
        "embed", "table", new, "--model", run_dir, "--labels", "kind", "--out", out,
        "--knn-k", "3", "--threads", "1", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with open(out / "latents.csv", newline="") as file:
        latents = list(csv.DictReader(file))
    assert list(latents[0]) == ["sample", "kind", "z1", "z2"] and len(latents) == 30
    z = np.array([[float(r["z1"]), float(r["z2"])] for r in latents])
    expected = load(run_dir).encode_table(new).double().numpy()  # top-layer latent means
    np.testing.assert_allclose(z, expected, rtol=0, atol=1e-6)
    assert sorted(legends[-1]) == ["A", "B"], legends
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["latent_dim"] == 2 and metrics["scores"]["kind"]["labelled"] == 30


def test_bad_own_data_for_a_vae_dgp_is_a_one_line_error(cli, clusters, tmp_path):
    quick = ["--max-steps", "2", "--threads", "1", "--no-progress", "--run-dir", tmp_path / "r"]
    cases = [
        (["--data", tmp_path / "missing.csv"], str(tmp_path / "missing.csv")),
        (["--data", clusters, "--dataset", "frey-faces"], "both name the training data"),
        (["--data", clusters, "--labels", "type"], "'type'"),
        (["--data", clusters, "--size", "8"], "size apply to images, not to the table"),
        (["--data", clusters, "--crop", "random"], "use crop 'center'"),
        (["--dataset", "frey-faces", "--labels", "kind"], "apply to data of your own"),
    ]
    for arguments, expected in cases:
        result = cli("train", "vaedgp", *arguments, *quick)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert expected in lines[0], result.output
    labels = cli("train", "vaedgp", "--data", clusters, "--labels", "type", *quick).output
    assert all(name in labels for name in ("a", "kind"))  # names the columns it has
