"""2-D embeddings of feature matrices (diffvi.training.embedding) and FeatureDataModule."""

import numpy as np
import pytest
import torch

from diffvi.data.modules import FeatureDataModule
from diffvi.evaluation.representation import clustering_scores, gmm_cluster
from diffvi.training.embedding import EMBEDDING_METHODS, EmbeddingOptions, embed_features


def blobs(num_clusters: int = 4, per_cluster: int = 40, dim: int = 12, seed: int = 0):
    """Well-separated Gaussian clusters: features [N, dim] and labels [N]."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 4.0, (num_clusters, dim))
    labels = np.repeat(np.arange(num_clusters), per_cluster)
    return centres[labels] + rng.normal(0.0, 1.0, (len(labels), dim)), labels


def test_feature_data_module_batches_every_row_and_rejects_bad_features():
    x = torch.randn(50, 3)
    data = FeatureDataModule(x, batch_size=16, seed=0, val_size=10)
    assert data.event_shape == (3,)
    seen = torch.cat([x_batch for x_batch, _ in data.train_dataloader()])
    assert seen.shape == (48, 3)  # 3 full batches of 16, the remainder dropped
    assert len(data.val_set) == 10
    with pytest.raises(ValueError, match="NaN or Inf"):
        FeatureDataModule(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), 4)
    with pytest.raises(ValueError, match=r"\[N >= 2, D\]"):
        FeatureDataModule(torch.randn(5), 4)


def test_pca_method_returns_the_first_two_principal_components_unchanged():
    x, _ = blobs()
    result = embed_features(x, "pca")
    np.testing.assert_allclose(result.coordinates, x[:, :2], rtol=1e-6)
    assert result.method == "pca" and result.seconds >= 0


def test_bad_arguments_raise_value_error(tmp_path):
    x, _ = blobs()
    with pytest.raises(ValueError, match="method must be one of"):
        embed_features(x, "lda")
    with pytest.raises(ValueError, match="pass run_dir"):
        embed_features(x, "vae")
    with pytest.raises(ValueError, match="NaN or Inf"):
        embed_features(np.full((5, 3), np.nan), "pca")
    with pytest.raises(ValueError, match=r"\[N >= 3, D >= 2\]"):
        embed_features(np.zeros((5, 1)), "pca")
    for bad in ("mean", 0.0, -1.0):
        with pytest.raises(ValueError, match="likelihood_scale"):
            embed_features(x, "vae", EmbeddingOptions(likelihood_scale=bad), run_dir=tmp_path)
    assert set(EMBEDDING_METHODS) == {"ddvae", "vae", "iaf-vae", "aae", "pca", "tsne", "umap"}


def test_tsne_separates_well_separated_clusters():
    x, labels = blobs()
    result = embed_features(x, "tsne", EmbeddingOptions(seed=0))
    assert result.coordinates.shape == (len(x), 2)
    nmi = clustering_scores(labels, gmm_cluster(result.coordinates, 4, seed=0))["nmi"]
    assert nmi > 0.9


@pytest.mark.parametrize("method", ["vae", "ddvae"])
def test_variational_embedding_trains_writes_its_run_and_is_seeded(tmp_path, method):
    x, labels = blobs(per_cluster=30)
    options = EmbeddingOptions(
        epochs=4, batch_size=40, hidden=32, warmup_steps=10, progress=False, seed=1,
        likelihood_scale="median",
    )  # fmt: skip
    first = embed_features(x, method, options, run_dir=tmp_path / "a")
    again = embed_features(x, method, options, run_dir=tmp_path / "b")
    assert first.coordinates.shape == (len(x), 2)
    assert np.isfinite(first.coordinates).all()
    np.testing.assert_allclose(first.coordinates, again.coordinates, atol=1e-5)
    assert (tmp_path / "a" / "export" / "model.safetensors").exists()
    assert np.isfinite(first.details["val_bound"])
    assert first.details["config"]["mixture_components"] == 20
    assert first.details["config"]["prior"] == "mixture"
    # σ "median": the median feature std in units of feature 0's
    stds = torch.as_tensor(x, dtype=torch.float32).std(0)
    auto = (stds.median() / stds[0]).item()
    assert first.details["config"]["likelihood_scale"] == pytest.approx(auto, rel=1e-5)


def test_features_that_are_not_components_get_their_principal_components_first():
    from sklearn.decomposition import PCA

    x, _ = blobs()
    result = embed_features(x, "pca", components=False)
    expected = PCA(2, random_state=0).fit_transform(x)
    np.testing.assert_allclose(np.abs(result.coordinates), np.abs(expected), rtol=1e-6)
    # σ "auto" is 1 in units of the median std when the features are not components
    from diffvi.training.embedding import _likelihood_scale

    t = torch.as_tensor(x, dtype=torch.float32)
    assert _likelihood_scale(t, "auto", components=False) == pytest.approx(1.0)


def test_embed_labelled_scores_labelled_points_only_and_writes_its_outputs(tmp_path):
    import csv
    import json

    from diffvi.training.embedding import Labelling, embed_labelled, write_embedding

    x, labels = blobs()
    names = [f"c{y}" for y in labels]
    names[0] = ""  # one point without a label
    labelling = Labelling("kind", names, key="kinds")
    result = embed_labelled(x, "pca", [labelling], num_clusters=4, knn_k=5, components=False)
    scores = result.scores["kinds"]
    assert scores["labelled"] == len(x) - 1 and scores["knn_k"] == 5
    assert scores["nmi"] > 0.9 and scores["knn_accuracy"] > 0.9
    assert result.clusters.shape == (len(x),) and result.num_clusters == 4
    samples = [f"s{i}" for i in range(len(x))]
    lines = write_embedding(tmp_path, result, samples, [labelling], {"input": "x"}, title="t")
    assert "vs kinds" in lines[1] and "kNN (k=5" in lines[1]
    with open(tmp_path / "embedding.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["sample", "kind", "z1", "z2", "cluster"] and rows[0]["kind"] == ""
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["input"] == "x" and metrics["scores"]["kinds"]["nmi"] == scores["nmi"]
    assert (tmp_path / "embedding.png").exists()
    with pytest.raises(ValueError, match="labelling 'kind': 3 names for 160 points"):
        embed_labelled(x, "pca", [Labelling("kind", ["a", "b", "c"])])
