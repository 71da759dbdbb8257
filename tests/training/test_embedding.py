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
    for bad in ("median", 0.0, -1.0):
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
        epochs=4, batch_size=40, hidden=32, warmup_steps=10, progress=False, seed=1
    )
    first = embed_features(x, method, options, run_dir=tmp_path / "a")
    again = embed_features(x, method, options, run_dir=tmp_path / "b")
    assert first.coordinates.shape == (len(x), 2)
    assert np.isfinite(first.coordinates).all()
    np.testing.assert_allclose(first.coordinates, again.coordinates, atol=1e-5)
    assert (tmp_path / "a" / "export" / "model.safetensors").exists()
    assert np.isfinite(first.details["val_bound"])
    assert first.details["config"]["mixture_components"] == 20
    assert first.details["config"]["prior"] == "mixture"
    # σ "auto": the median feature std in units of feature 0's
    stds = torch.as_tensor(x, dtype=torch.float32).std(0)
    auto = (stds.median() / stds[0]).item()
    assert first.details["config"]["likelihood_scale"] == pytest.approx(auto, rel=1e-5)
