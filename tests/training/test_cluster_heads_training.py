"""DD-VAE with the official clustering model (``clustering="heads"``: objective ``ddvi-heads``,
prior ``cluster-heads``): a short run on four separated blobs raises the bound, spreads the
heads apart and assigns every point to a head; the heads are saved and a run stopped and resumed
is bit-identical; the option is refused where it does not apply."""

import csv

import numpy as np
import pytest
import torch
from tiny_configs import tiny_config

from diffvi.training import fit
from diffvi.training.embedding import EmbeddingOptions, Labelling, embed_features, embed_labelled


def _blobs(n_per: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 10)) * 3
    labels = np.repeat(np.arange(4), n_per)
    return centres[labels] + rng.normal(size=(len(labels), 10)) * 0.3, labels


def _options(**overrides) -> EmbeddingOptions:
    settings = dict(
        epochs=30, batch_size=32, hidden=32, mixture_components=4, diffusion_steps=5,
        warmup_steps=20, likelihood_scale=0.3, progress=False, device="cpu",
        clustering="heads",
    )  # fmt: skip
    return EmbeddingOptions(**{**settings, **overrides})


def _logged(run_dir, key: str) -> list[float]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        return [float(row[key]) for row in csv.DictReader(file) if row.get(key)]


def test_a_short_run_raises_the_bound_spreads_the_heads_and_assigns_every_point(tmp_path):
    x, labels = _blobs()
    embedding = embed_features(x, "ddvae", _options(), tmp_path / "run", components=False)
    config = embedding.details["config"]
    assert config["objective"] == "ddvi-heads" and config["prior"] == "cluster-heads"
    bound = _logged(tmp_path / "run", "train/bound")
    assert np.mean(bound[-5:]) > np.mean(bound[:5]) + 10
    gaps = _logged(tmp_path / "run", "train/head_gap")
    assert gaps[0] < 0.2 < 0.5 < gaps[-1]  # heads start within 0.1 of each other
    clusters = embedding.clusters
    assert clusters.shape == (len(x),) and clusters.dtype == np.int64
    assert clusters.min() >= 0 and clusters.max() < 4 and len(np.unique(clusters)) >= 2
    assert embedding.coordinates.shape == (len(x), 2)


def test_embed_labelled_scores_the_nearest_head_beside_the_gmm(tmp_path):
    x, labels = _blobs(10)
    names = [str(label) for label in labels]
    result = embed_labelled(
        x, "ddvae", [Labelling("group", names)], _options(epochs=3), tmp_path / "run",
        num_clusters=4, components=False,
    )  # fmt: skip
    own = result.embedding.details["model_cluster_scores"]["group"]
    assert {"purity", "completeness", "nmi"} <= set(own) and "knn_accuracy" not in own
    assert "group" in result.scores  # the GMM's, as for every method


def test_the_mixture_default_has_no_model_clusters(tmp_path):
    x, _ = _blobs(5)
    embedding = embed_features(
        x, "ddvae", _options(epochs=1, clustering="mixture"), tmp_path / "r", components=False
    )
    assert embedding.clusters is None and embedding.details["config"]["prior"] == "mixture"


def test_heads_clustering_is_refused_for_other_methods_and_unknown_names(tmp_path):
    x, _ = _blobs(5)
    with pytest.raises(ValueError, match="clustering='heads' is DD-VAE's.*got 'vae'"):
        embed_features(x, "vae", _options(), tmp_path / "r")
    with pytest.raises(
        ValueError, match=r"clustering must be one of \('mixture', 'heads', 'heads-official'\)"
    ):
        embed_features(x, "ddvae", _options(clustering="kmeans"), tmp_path / "r")


HEADS = dict(
    objective="ddvi-heads", posterior="diffusion", prior="cluster-heads", mixture_components=5,
    latent_dims=[2], hidden=[[32]], diffusion_steps=3, k=1,
)  # fmt: skip


def test_a_run_stopped_and_resumed_is_bit_identical_heads_included(tmp_path):
    options = dict(accelerator="cpu", progress_bar=False, log_every_n_steps=1)
    straight = fit(tiny_config(HEADS, max_steps=9, val_every_n_steps=3), tmp_path / "a", **options)
    fit(tiny_config(HEADS, max_steps=5, val_every_n_steps=3), tmp_path / "b", **options)
    resumed = fit(
        tiny_config(HEADS, max_steps=9, val_every_n_steps=3), tmp_path / "b", resume=True,
        **options,
    )  # fmt: skip
    expected, got = straight.state_dict(), resumed.state_dict()
    assert any("scaled_heads" in name for name in expected)
    for name, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
