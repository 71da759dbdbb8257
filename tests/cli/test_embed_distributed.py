"""``embed genotypes`` and ``embed table`` under DDP: two CPU processes (gloo) write one embedding
of every sample, as a single process does, while only rank 0 reads the data and runs the PCA;
the hand-off of the features between ranks; the rank a launcher sets."""

import csv
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from diffvi.cli.embed_options import distributed, features_key, share_features
from diffvi.training.embedding import EmbeddingOptions
from diffvi.utils.runtime import RANK_VARIABLES, launcher_rank


def test_the_other_ranks_wait_for_rank_zeros_features(tmp_path):
    key = features_key(tmp_path, {"a": 1})
    assert key != features_key(tmp_path, {"a": 2})
    got = {}
    waiting = threading.Thread(
        target=lambda: got.update(share_features(tmp_path, key, 1, dict, poll_seconds=0.01))
    )
    waiting.start()
    features = np.arange(12.0).reshape(4, 3)
    assert share_features(tmp_path, key, 0, lambda: {"features": features}) is None
    waiting.join(timeout=10)
    np.testing.assert_array_equal(got["features"], features)
    with pytest.raises(TimeoutError, match="rank 0 wrote no features"):  # another command's
        share_features(tmp_path, "other", 1, dict, wait_seconds=0.05, poll_seconds=0.01)


def test_launcher_rank_and_when_training_is_distributed(monkeypatch):
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert launcher_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launcher_rank() == 1
    monkeypatch.setenv("SLURM_PROCID", "0")  # a one-task SLURM job: Lightning's rank 1 still
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert launcher_rank() == 1
    monkeypatch.setenv("SLURM_NTASKS", "4")  # srun, one task per device: SLURM's rank
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert launcher_rank() == 3
    monkeypatch.setenv("RANK", "5")  # torchrun's global rank comes first
    assert launcher_rank() == 5
    assert not distributed(EmbeddingOptions())
    assert distributed(EmbeddingOptions(strategy="ddp"))
    assert distributed(EmbeddingOptions(devices=2)) and distributed(EmbeddingOptions(num_nodes=2))


def run(*arguments, cwd):
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "diffvi", "embed", *map(str, arguments)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A table of 240 rows (3 groups, 8 features) and a simulated cohort of 90 samples."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    group = np.arange(240) % 3
    x = rng.normal(0, 3, (3, 8))[group] + rng.normal(0, 1, (240, 8))
    with open(folder / "table.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", *(f"f{j}" for j in range(8)), "group"])
        writer.writerows([f"r{i}", *map(float, x[i]), f"g{group[i]}"] for i in range(240))
    return folder


def genotype_arguments(folder):
    pytest.importorskip("msprime")
    pytest.importorskip("stdpopsim")
    from diffvi.data.genotype_simulation import (
        genotypes_from_tree_sequence,
        simulate_stdpopsim,
        write_simulation,
    )

    prefix = folder / "ooa"
    if not (folder / "ooa.bed").exists():
        ts = simulate_stdpopsim("OutOfAfrica_3G09", 30, length=2e6, seed=1)
        write_simulation(genotypes_from_tree_sequence(ts), prefix, "plink")
    return [
        "genotypes", "--input", f"{prefix}.bed", "--labels", f"{prefix}.labels.tsv",
        "--clusters", "3", "--components", "20", "--pca", "randomized", "--pca-iterations", "2",
    ]  # fmt: skip


@pytest.mark.slow  # two runs of two processes each: ~15 s apiece
@pytest.mark.parametrize("kind", ["table", "genotypes"])
def test_ddp_on_two_cpu_processes_writes_one_embedding_of_every_sample(inputs, tmp_path, kind):
    given = (
        ["table", inputs / "table.csv", "--labels", "group"]
        if kind == "table"
        else genotype_arguments(inputs)
    )
    given += ["--method", "vae", "--epochs", "6", "--lr", "1e-2", "--hidden", "16"]
    given += ["--batch-size", "16", "--device", "cpu", "--threads", "1", "--no-progress"]
    single = run(*given, "--out", tmp_path / "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run(
        *given, "--out", tmp_path / "ddp", "--devices", "2", "--strategy", "ddp", cwd=tmp_path
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "rank 1: waiting for rank 0's features" in ddp.stdout  # rank 1 read no data
    assert ddp.stdout.count("Wrote ") == 1  # rank 0 alone wrote the outputs
    tables = {}
    for name in ("single", "ddp"):
        with open(tmp_path / name / "embedding.csv") as f:
            tables[name] = list(csv.DictReader(f))
    rows = tables["ddp"]
    assert list(rows[0]) == list(tables["single"][0])  # the same columns
    assert [r["sample"] for r in rows] == [r["sample"] for r in tables["single"]]  # each once
    assert np.isfinite([[float(r["z1"]), float(r["z2"])] for r in rows]).all()
    metrics = {n: json.loads((tmp_path / n / "metrics.json").read_text()) for n in tables}
    assert metrics["ddp"].keys() == metrics["single"].keys()
    assert metrics["ddp"]["num_samples"] == len(rows) == metrics["single"]["num_samples"]
    assert (tmp_path / "ddp" / "embedding.png").is_file()
    assert (tmp_path / "ddp" / "run" / "export" / "model.safetensors").is_file()
    specs = {
        n: json.loads((tmp_path / n / "run" / "export" / "model.json").read_text()) for n in tables
    }
    steps = {n: spec["metadata"]["steps"] for n, spec in specs.items()}
    assert steps["ddp"] < 0.6 * steps["single"]  # each rank took half of every epoch
    with open(tmp_path / "ddp" / "run" / "logs" / "metrics.csv") as f:
        bounds = [float(r["train/bound"]) for r in csv.DictReader(f) if r["train/bound"]]
    assert len(bounds) >= 3 and bounds[-1] > bounds[0]  # training improved the bound
