"""2-D embeddings of a feature matrix by any of the library's variational methods or a classic
one: DD-VAE, VAE, IAF-VAE, AAE (each with a learnable mixture prior), PCA, t-SNE and UMAP.

This is DDVI's genotype workflow (Piriyakulkij et al. 2024, §6.3: 1000 Genomes principal
components, 2-D latents, a learnable 20-component mixture prior, GMM clustering of the latents).
Variational methods train through :func:`~diffvi.training.fit` on a
:class:`~diffvi.data.modules.FeatureDataModule` with a Gaussian likelihood of unbounded mean and
FIXED scale σ = ``likelihood_scale`` on features divided by the standard deviation of their first
column (PC 1), so the objective is an ELBO whatever the units of the features. The official code's
loss, MSE averaged over the D features plus kld_weight = 0.005 times the KL term, is the same ELBO
up to a constant with σ² = D · kld_weight / 2 in the units of its features (PCs / 30). σ matters
more than any other setting (docs/results.md § Genotype embeddings): a broad σ lets the KL to the
mixture prior blur the populations, a narrow one fails on small data, and a learned σ lets the
posterior collapse (the decoder explains the PCs by their marginal variance first). The default
``"auto"`` is the median feature std, the noise level of the trailing PCs, which lands in the
good range on large and small data alike. 200 epochs as in the official configs (which also
repeat the data 5× per epoch). Each point is embedded with ONE posterior draw (DDVI's protocol).
t-SNE and UMAP run on the first ``neighbour_components`` principal components, as is usual for
genotypes and single-cell data: the first features when they are components already
(``components=True``, genotype PCs, a table after ``--pca``), else components computed here.

:func:`embed_labelled` is the workflow that ``diffvi embed genotypes`` and ``diffvi embed table``
share: embed, fit a GMM to the embedding, score the clusters (purity, completeness, NMI) and a
leave-one-out kNN classifier against each labelling; :func:`write_embedding` writes
``embedding.csv``, ``embedding.png`` and ``metrics.json``. :func:`embed_with_model` does the
same with a model trained before (``diffvi embed table NEW --model RUN``) instead of training
one, and :func:`write_latents` writes its latents of any dimension.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffvi.utils.io import write_csv, write_json

VARIATIONAL_METHODS: dict[str, dict[str, Any]] = {
    "ddvae": {"objective": "ddvi", "posterior": "diffusion"},
    "vae": {"objective": "elbo", "posterior": "gaussian"},
    "iaf-vae": {"objective": "elbo", "posterior": "iaf"},
    "aae": {"objective": "aae", "posterior": "gaussian"},
}
CLASSIC_METHODS = ("pca", "tsne", "umap")
EMBEDDING_METHODS = (*VARIATIONAL_METHODS, *CLASSIC_METHODS)


@dataclass
class EmbeddingOptions:
    """Settings of :func:`embed_features`. ``epochs``, ``batch_size``, ``lr``, ``hidden`` and
    ``mixture_components`` concern the variational methods; ``neighbour_components`` t-SNE and
    UMAP. ``warmup_steps`` pretrains DD-VAE's reverse chain on the prior first;
    ``likelihood_scale`` is σ in units of std(PC 1); ``"auto"`` (default) takes the median
    standard deviation of the features in those units (the noise level of the trailing PCs:
    0.07 for 1000 PCs of 3458 simulated genotypes, 0.35 for 20 PCs of 90); ``None`` learns σ
    per feature."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    hidden: int = 256
    mixture_components: int = 20
    diffusion_steps: int = 20
    warmup_steps: int = 200
    likelihood_scale: float | str | None = "auto"
    neighbour_components: int = 50
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields


@dataclass
class Embedding:
    """``coordinates [N, 2]`` (float64) of ``method``, fitted in ``seconds`` (training and
    embedding, not data loading); ``details`` holds e.g. the final bound of a variational run."""

    method: str
    coordinates: np.ndarray
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


def embed_features(
    features: np.ndarray | torch.Tensor,
    method: str,
    options: EmbeddingOptions | None = None,
    run_dir: str | Path | None = None,
    components: bool = True,
) -> Embedding:
    """Embed ``features [N, D]`` in 2-D with ``method`` (one of ``EMBEDDING_METHODS``).

    Variational methods write their run (config, checkpoint, logs, export) to ``run_dir``
    (required for them). ``components``: the features are principal-component scores, largest
    first (genotype PCs), so ``pca`` returns the first two features, t-SNE and UMAP start from
    the first ``neighbour_components`` and σ is in units of std(feature 0); ``False`` (e.g.
    standardised genes): ``pca``, t-SNE and UMAP compute the components first, and σ is in
    units of the median feature std.
    """
    options = options or EmbeddingOptions()
    if method not in EMBEDDING_METHODS:
        raise ValueError(f"method must be one of {EMBEDDING_METHODS}, got {method!r}")
    scale = options.likelihood_scale
    if isinstance(scale, str) and scale != "auto" or isinstance(scale, float | int) and scale <= 0:
        raise ValueError(f"likelihood_scale must be 'auto', None or > 0, got {scale!r}")
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    if x.ndim != 2 or x.shape[0] < 3 or x.shape[1] < 2:
        raise ValueError(f"features must be [N >= 3, D >= 2], got {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("features contain NaN or Inf")
    start = time.perf_counter()
    if method in VARIATIONAL_METHODS:
        if run_dir is None:
            raise ValueError(f"method {method!r} trains a model: pass run_dir")
        coordinates, details = _variational(x, method, options, Path(run_dir), components)
    else:
        features64 = x.numpy().astype(np.float64)
        coordinates, details = _classic(features64, method, options, components), {}
    seconds = time.perf_counter() - start
    return Embedding(method, np.asarray(coordinates, np.float64), seconds, details)


@dataclass(frozen=True)
class Labelling:
    """One labelling of the N embedded points: ``names [N]``, the class of each point (``""``
    where it has none). ``column`` heads its column in ``embedding.csv`` and titles its panel of
    the plot; ``key`` names its scores (default: ``column``)."""

    column: str
    names: Sequence[str]
    key: str | None = None

    @property
    def score_key(self) -> str:
        return self.key or self.column

    def labelled(self) -> np.ndarray:
        """``[N]`` bool: the points that have a class."""
        return np.array([bool(name) for name in self.names], dtype=bool)


@dataclass
class LabelledEmbedding:
    """What :func:`embed_labelled` returns: the ``embedding``, the GMM's ``clusters [N]``
    (``num_clusters`` components) and, per labelling (by ``score_key``), its ``scores``: purity,
    completeness, NMI, homogeneity and V-measure of the clusters, the leave-one-out kNN
    accuracy (``knn_accuracy``, with the ``knn_k`` used) and the number of labelled points
    (``labelled``), all on the labelled points only."""

    embedding: Embedding
    clusters: np.ndarray
    num_clusters: int
    scores: dict[str, dict[str, float]]


def embed_labelled(
    features: np.ndarray | torch.Tensor,
    method: str,
    labellings: Sequence[Labelling] = (),
    options: EmbeddingOptions | None = None,
    run_dir: str | Path | None = None,
    *,
    num_clusters: int = 10,
    knn_k: int = 20,
    components: bool = True,
) -> LabelledEmbedding:
    """Embed ``features [N, D]`` in 2-D (:func:`embed_features`), fit a ``num_clusters``-
    component GMM to the embedding (DDVI's protocol, :func:`~diffvi.evaluation.gmm_cluster`)
    and score it and a leave-one-out kNN classifier (k = ``knn_k``) against each labelling.

    ``num_clusters`` and ``knn_k`` are capped at what the N points allow. A labelling with
    fewer than two labelled points is not scored."""
    options = options or EmbeddingOptions()
    n = len(features)
    for labelling in labellings:
        if len(labelling.names) != n:
            raise ValueError(
                f"labelling {labelling.column!r}: {len(labelling.names)} names for {n} points"
            )
    if num_clusters < 1 or knn_k < 1:
        raise ValueError(f"num_clusters and knn_k must be >= 1, got {num_clusters}, {knn_k}")
    embedding = embed_features(features, method, options, run_dir, components)
    num_clusters = min(num_clusters, n)
    clusters = _gmm_cluster(embedding.coordinates, num_clusters, options.seed)
    scores = score_labellings(embedding.coordinates, clusters, labellings, knn_k)
    return LabelledEmbedding(embedding, clusters, num_clusters, scores)


def embed_with_model(
    family: Any,
    x: torch.Tensor,
    labellings: Sequence[Labelling] = (),
    *,
    num_clusters: int = 10,
    knn_k: int = 20,
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = False,
) -> tuple[LabelledEmbedding, torch.Tensor]:
    """Embed ``x [N, *event_shape]`` (e.g. a new table's rows, standardised by
    :meth:`~diffvi.training.families.tables.TableInputs.table_inputs`) with a trained VAE or
    VAE-DGP family instead of training one: ``family.encode`` (a VAE's one posterior draw per
    item, noise seeded by ``seed``; a VAE-DGP's top-layer latent means); fit a
    ``num_clusters``-component GMM to the latents ``[N, d]`` and score it and a leave-one-out
    kNN classifier against each labelling, as :func:`embed_labelled` does.

    The embedding's 2-D coordinates (its plot) are the latents when d = 2, else their first
    two principal components; the clusters and scores use all d dimensions. Returns
    ``(result, latents [N, d])``."""
    n = len(x)
    for labelling in labellings:
        if len(labelling.names) != n:
            raise ValueError(
                f"labelling {labelling.column!r}: {len(labelling.names)} names for {n} points"
            )
    if num_clusters < 1 or knn_k < 1:
        raise ValueError(f"num_clusters and knn_k must be >= 1, got {num_clusters}, {knn_k}")
    if n < 3:
        raise ValueError(f"an embedding needs at least 3 points, got {n}")
    start = time.perf_counter()
    latents = family.encode(x, seed=seed, batch_size=batch_size, progress=progress)
    z = latents.double().numpy()
    if z.shape[1] < 2:
        raise ValueError(f"the model's latents have {z.shape[1]} dimension; a plot needs 2")
    if z.shape[1] == 2:
        coordinates, how = z, "the latents"
    else:
        from diffvi.data.tables import principal_components

        coordinates = principal_components(z, 2, seed=seed)[0].astype(np.float64)
        how = "the first two principal components of the latents"
    seconds = time.perf_counter() - start
    details = {"latent_dim": int(z.shape[1]), "coordinates": how}
    embedding = Embedding("model", coordinates, seconds, details)
    num_clusters = min(num_clusters, n)
    clusters = _gmm_cluster(z, num_clusters, seed)
    scores = score_labellings(z, clusters, labellings, knn_k)
    return LabelledEmbedding(embedding, clusters, num_clusters, scores), latents


def write_latents(
    path: str | Path,
    latents: np.ndarray | torch.Tensor,
    samples: Sequence[str],
    labellings: Sequence[Labelling] = (),
) -> Path:
    """``path`` (a CSV): ``sample``, one column per labelling, ``z1 … zd``; one row per point
    of ``latents [N, d]``."""
    z = np.asarray(latents, dtype=np.float64)
    header = [
        "sample",
        *(labelling.column for labelling in labellings),
        *(f"z{j + 1}" for j in range(z.shape[1])),
    ]
    columns = [labelling.names for labelling in labellings]
    rows = (
        [sample, *labels, *map(repr, values)]
        for sample, *labels, values in zip(samples, *columns, z.tolist(), strict=True)
    )
    return write_csv(path, header, rows)


def score_labellings(
    coordinates: np.ndarray,
    clusters: np.ndarray,
    labellings: Sequence[Labelling],
    knn_k: int = 20,
) -> dict[str, dict[str, float]]:
    """Clustering scores of ``clusters [N]`` and the leave-one-out kNN accuracy of
    ``coordinates [N, 2]`` against each labelling, on its labelled points (see
    :class:`LabelledEmbedding`); ``knn_k <= 0`` leaves kNN out."""
    from diffvi.evaluation.representation import clustering_scores, knn_accuracy_loo

    scores: dict[str, dict[str, float]] = {}
    for labelling in labellings:
        keep = labelling.labelled()
        if keep.sum() < 2:
            continue
        names = np.asarray(labelling.names, dtype=object)[keep].astype(str)
        entry: dict[str, float] = clustering_scores(names, np.asarray(clusters)[keep])
        entry["labelled"] = int(keep.sum())
        if knn_k > 0:
            k = min(knn_k, int(keep.sum()) - 1)
            entry["knn_accuracy"] = knn_accuracy_loo(coordinates[keep], names, k=k)
            entry["knn_k"] = k
        scores[labelling.score_key] = entry
    return scores


def write_embedding(
    out: str | Path,
    result: LabelledEmbedding,
    samples: Sequence[str],
    labellings: Sequence[Labelling] = (),
    metrics: dict[str, Any] | None = None,
    title: str | None = None,
) -> list[str]:
    """Write ``out/embedding.csv`` (``sample``, one column per labelling, ``z1``, ``z2``,
    ``cluster``; one row per point), ``out/embedding.png`` (one panel per labelling with
    labelled points, coloured by class; else by cluster) and ``out/metrics.json`` (``metrics``,
    then the clusters, seconds, scores and the training details). Returns the lines of a
    summary to print."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coordinates = result.embedding.coordinates
    header = ["sample", *(labelling.column for labelling in labellings), "z1", "z2", "cluster"]
    columns = [labelling.names for labelling in labellings]
    rows = (
        [sample, *labels, repr(float(z1)), repr(float(z2)), int(cluster)]
        for sample, *labels, (z1, z2), cluster in zip(
            samples, *columns, coordinates, result.clusters, strict=True
        )
    )
    write_csv(out / "embedding.csv", header, rows)
    from diffvi.evaluation.plots import save_embedding_panels

    panels = [
        (labelling.column, [name or "(none)" for name in labelling.names])
        for labelling in labellings
        if labelling.score_key in result.scores
    ] or [("cluster", [str(c) for c in result.clusters])]
    save_embedding_panels(coordinates, panels, out / "embedding.png", title=title)
    details = {k: v for k, v in result.embedding.details.items() if k != "config"}
    if "config" in result.embedding.details:  # the σ in use ("auto" resolved) and the epochs
        config = result.embedding.details["config"]
        details |= {"likelihood_scale": config["likelihood_scale"], "epochs": config["max_epochs"]}
    payload = {
        **(metrics or {}),
        "method": result.embedding.method,
        "num_samples": len(coordinates),
        "clusters": result.num_clusters,
        "seconds": result.embedding.seconds,
        "scores": result.scores,
        "details": details,
    }
    write_json(out / "metrics.json", payload)
    lines = [f"Wrote {out / 'embedding.csv'}, {out / 'embedding.png'}, {out / 'metrics.json'}"]
    for name, values in result.scores.items():
        line = (
            f"GMM ({result.num_clusters}) vs {name}: purity "
            f"{values['purity']:.3f}, completeness {values['completeness']:.3f}, "
            f"NMI {values['nmi']:.3f}"
        )
        if "knn_accuracy" in values:
            line += f"; kNN (k={values['knn_k']}, leave-one-out) {values['knn_accuracy']:.3f}"
        lines.append(line)
    return lines


def _gmm_cluster(coordinates: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    from diffvi.evaluation.representation import gmm_cluster

    return gmm_cluster(coordinates, num_clusters, seed=seed)


def _variational(
    x: torch.Tensor, method: str, options: EmbeddingOptions, run_dir: Path, components: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    from diffvi.data.modules import FeatureDataModule
    from diffvi.evaluation.representation import embed_latents
    from diffvi.training.config import TrainConfig
    from diffvi.training.trainer import fit
    from diffvi.utils.runtime import resolve_device

    fields = {
        "dataset": "features",
        "likelihood": "real-gaussian",
        "likelihood_scale": _likelihood_scale(x, options.likelihood_scale, components),
        "latent_dims": [2],
        "hidden": [[options.hidden, options.hidden]],
        "activation": "silu",
        "k": 1,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "adam": "torch",
        "max_epochs": options.epochs,
        "prior": "mixture",
        "mixture_components": options.mixture_components,
        "diffusion_steps": options.diffusion_steps,
        "val_size": min(500, len(x)),
        "val_k": 10,
        "seed": options.seed,
        **VARIATIONAL_METHODS[method],
        **options.extra,
    }
    if fields["posterior"] == "diffusion":
        fields["warmup_steps"] = options.warmup_steps
    config = TrainConfig(**fields)
    x = x / _unit(x, components)  # σ is in units of std(PC 1) (or of the median std)
    data = FeatureDataModule(x, config.batch_size, config.seed, config.val_size)
    device = resolve_device(options.device)
    module = fit(
        config,
        run_dir,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        progress_bar=options.progress,
        datamodule=data,
        checkpoint_every_n_epochs=max(1, options.epochs // 5),
    )
    module.eval()
    generator = torch.Generator(device=module.device).manual_seed(options.seed)
    with torch.no_grad():
        z = embed_latents(module.family.posterior, x, generator)
    details = {
        key.replace("/", "_"): float(value)
        for key, value in module.trainer.callback_metrics.items()
        if key in ("val/bound", "val/iwae", "train/bound")
    }
    return z.double().numpy(), details | {"config": config.to_dict()}


def _unit(x: torch.Tensor, components: bool) -> torch.Tensor:
    """The unit of σ for ``x [N, D]``: std(column 0) for components, else the median std."""
    stds = x.std(0)
    return (stds[0] if components else stds.median()).clamp_min(1e-12)


def _likelihood_scale(
    x: torch.Tensor, scale: float | str | None, components: bool = True
) -> float | None:
    """σ in units of :func:`_unit` of ``x [N, D]``; ``"auto"``: the median column std."""
    if scale != "auto":
        return scale
    return float((x.std(0).median() / _unit(x, components)).clamp_min(1e-6))


def _classic(
    x: np.ndarray, method: str, options: EmbeddingOptions, components: bool = True
) -> np.ndarray:
    if not components:
        from sklearn.decomposition import PCA

        k = min(2 if method == "pca" else options.neighbour_components, *x.shape)
        x = PCA(n_components=k, random_state=options.seed).fit_transform(x)
    if method == "pca":
        return x[:, :2]
    top = x[:, : options.neighbour_components]
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(top) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=options.seed).fit_transform(
            top
        )
    try:
        import umap
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("UMAP needs umap-learn: pip install 'diffvi[genomics]'") from err
    neighbours = min(15, len(top) - 1)
    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=options.seed)
    return reducer.fit_transform(top)
