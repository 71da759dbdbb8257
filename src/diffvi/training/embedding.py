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
``"median"`` is the median feature std (called ``"auto"`` before issue 23); ``"select"``
chooses σ from the data without labels (:func:`select_likelihood_scale`: short pilot runs over
a grid, scored on held-out samples). 200 epochs as in the official configs (which also
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

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffvi.utils.io import write_csv, write_json
from diffvi.utils.runtime import launcher_rank, resolve_device

VARIATIONAL_METHODS: dict[str, dict[str, Any]] = {
    "ddvae": {"objective": "ddvi", "posterior": "diffusion"},
    "vae": {"objective": "elbo", "posterior": "gaussian"},
    "iaf-vae": {"objective": "elbo", "posterior": "iaf"},
    "aae": {"objective": "aae", "posterior": "gaussian"},
}
CLASSIC_METHODS = ("pca", "tsne", "umap")
# σ / std(PC 1) tried by likelihood_scale="select": 7 points, geometric from 0.01 to 0.3 (a
# factor of 1.76 apart).
LIKELIHOOD_SCALE_GRID = (0.01, 0.0176, 0.0311, 0.0548, 0.0965, 0.17, 0.3)
SCALE_RULES = ("select", "median", "auto")  # "auto": the median rule's name before issue 23
SCALE_CRITERIA = ("likelihood", "reconstruction")  # how likelihood_scale="select" chooses
EMBEDDING_METHODS = (*VARIATIONAL_METHODS, *CLASSIC_METHODS)
# DD-VAE's clustering model (EmbeddingOptions.clustering): the learnable mixture prior, or the
# official DDVI code's learned cluster heads (diffvi.objectives.cluster_heads) on DDVI's bound,
# or trained by the official loop (its unconditional chain; official lr 1e-4).
CLUSTERING_MODELS: dict[str, dict[str, Any]] = {
    "mixture": {},
    "heads": {"objective": "ddvi-heads", "prior": "cluster-heads"},
    "heads-official": {
        "objective": "ddvi-heads-official",
        "prior": "cluster-heads",
        "conditional": False,
    },
}


@dataclass
class EmbeddingOptions:
    """Settings of :func:`embed_features`. ``epochs``, ``batch_size``, ``lr``, ``hidden`` and
    ``mixture_components`` concern the variational methods; ``neighbour_components`` t-SNE and
    UMAP. ``warmup_steps`` pretrains DD-VAE's reverse chain on the prior first;
    ``likelihood_scale`` is σ in units of std(PC 1): a number; ``"select"`` picks it from
    ``scale_grid`` by :func:`select_likelihood_scale` (pilot runs of ``pilot_fraction`` of the
    epochs on all but ``pilot_holdout`` of the samples, scored on those by
    ``scale_criterion``); ``"median"`` (default; ``"auto"``, its name before issue 23) takes
    the median standard deviation of the features in those units (the noise level of the
    trailing PCs: 0.07 for 1000 PCs of 3458 simulated
    genotypes, 0.35 for 20 PCs of 90); ``None`` learns σ per feature. ``clustering``
    (``ddvae`` only): ``"mixture"`` (default), a learnable mixture prior; ``"heads"``, the
    official code's learned cluster heads (:class:`~diffvi.objectives.ClusterHeadsDDVI`), whose
    nearest head is each point's cluster (``Embedding.clusters``); ``"heads-official"``, the
    same model trained by the official code's loop
    (:class:`~diffvi.objectives.OfficialClusterHeads`; pass ``lr=1e-4``, the official rate).

    ``devices``, ``num_nodes`` and ``strategy`` are Lightning's (on ``device``'s accelerator):
    ``strategy="ddp"`` with ``devices=2`` trains on two processes of this machine, with
    ``num_nodes=N`` across the nodes of a torchrun or SLURM launch. Every rank trains on its
    shard of each epoch; rank 0 alone then encodes all N samples (one row each) and returns
    the embedding; the other ranks return an empty one (``Embedding.global_rank`` > 0) and
    write nothing."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    hidden: int = 256
    mixture_components: int = 20
    diffusion_steps: int = 20
    warmup_steps: int = 200
    likelihood_scale: float | str | None = "median"
    scale_grid: tuple[float, ...] = LIKELIHOOD_SCALE_GRID
    scale_criterion: str = "likelihood"
    pilot_fraction: float = 0.2
    pilot_holdout: float = 0.2
    neighbour_components: int = 50
    clustering: str = "mixture"
    seed: int = 0
    device: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields


@dataclass
class Embedding:
    """``coordinates [N, 2]`` (float64) of ``method``, fitted in ``seconds`` (training and
    embedding, not data loading); ``details`` holds e.g. the final bound of a variational run;
    ``clusters [N]`` the model's own cluster of each point where it has one (the nearest head
    of ``clustering="heads"``), else None. ``global_rank`` > 0: a rank of a distributed run
    other than 0, whose embedding is empty (``[0, 2]``; rank 0 has it)."""

    method: str
    coordinates: np.ndarray
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    clusters: np.ndarray | None = None
    global_rank: int = 0


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
    check_scale_options(options)
    if options.clustering not in CLUSTERING_MODELS:
        raise ValueError(
            f"clustering must be one of {tuple(CLUSTERING_MODELS)}, got {options.clustering!r}"
        )
    if options.clustering != "mixture" and method != "ddvae":
        raise ValueError(
            f"clustering={options.clustering!r} is DD-VAE's: use method 'ddvae', got {method!r}"
        )
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
    clusters = details.pop("model_clusters", None)
    rank = details.pop("global_rank", 0)
    coordinates = np.asarray(coordinates, np.float64)
    return Embedding(method, coordinates, seconds, details, clusters, global_rank=rank)


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
    if embedding.global_rank != 0:  # another rank of a distributed run: rank 0 scores
        return LabelledEmbedding(embedding, np.zeros(0, np.int64), num_clusters, {})
    clusters = _gmm_cluster(embedding.coordinates, num_clusters, options.seed)
    scores = score_labellings(embedding.coordinates, clusters, labellings, knn_k)
    if embedding.clusters is not None:  # the model's own clusters, scored beside the GMM's
        own = score_labellings(embedding.coordinates, embedding.clusters, labellings, knn_k=0)
        embedding.details["model_cluster_scores"] = own
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
    summary to print. Writes nothing and returns ``[]`` for a rank of a distributed run other
    than 0 (``result.embedding.global_rank`` > 0)."""
    if result.embedding.global_rank != 0:
        return []
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


def check_scale_options(options: EmbeddingOptions) -> None:
    """ValueError unless ``options``' σ settings are usable: ``likelihood_scale`` one of
    :data:`SCALE_RULES`, None or > 0; ``scale_grid`` non-empty, finite, > 0 and without
    repeats; ``pilot_fraction`` in (0, 1]; ``pilot_holdout`` in (0, 0.5]."""
    scale = options.likelihood_scale
    if isinstance(scale, str):
        usable = scale in SCALE_RULES
    else:
        usable = (
            scale is None or isinstance(scale, float | int) and math.isfinite(scale) and scale > 0
        )
    if not usable:
        raise ValueError(
            f"likelihood_scale must be one of {SCALE_RULES}, None or > 0, got {scale!r}"
        )
    grid = tuple(options.scale_grid)
    if (
        not grid
        or not all(isinstance(v, float | int) and math.isfinite(v) and v > 0 for v in grid)
        or len(set(grid)) != len(grid)
    ):
        raise ValueError(f"scale_grid must be distinct finite values > 0, got {grid!r}")
    if options.scale_criterion not in SCALE_CRITERIA:
        raise ValueError(
            f"scale_criterion must be one of {SCALE_CRITERIA}, got {options.scale_criterion!r}"
        )
    if not 0 < options.pilot_fraction <= 1:
        raise ValueError(f"pilot_fraction must be in (0, 1], got {options.pilot_fraction!r}")
    if not 0 < options.pilot_holdout <= 0.5:
        raise ValueError(f"pilot_holdout must be in (0, 0.5], got {options.pilot_holdout!r}")


def parse_likelihood_scale(text: str | float) -> float | str:
    """A ``likelihood_scale`` from the command line: one of :data:`SCALE_RULES` as given, else
    a number > 0 (ValueError otherwise)."""
    if isinstance(text, str) and text in SCALE_RULES:
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"likelihood scale must be one of {SCALE_RULES} or > 0, got {text!r}")
    return value


def parse_scale_grid(text: str) -> tuple[float, ...]:
    """A ``scale_grid`` from the command line: comma-separated numbers > 0 (ValueError
    otherwise)."""
    try:
        grid = tuple(float(part) for part in text.split(","))
    except ValueError:
        grid = ()
    if not grid or not all(math.isfinite(v) and v > 0 for v in grid) or len(set(grid)) < len(grid):
        raise ValueError(f"scale grid must be distinct numbers > 0, comma-separated, got {text!r}")
    return grid


@dataclass
class ScaleSelection:
    """What :func:`select_likelihood_scale` tried and chose, per σ of ``grid`` (in σ's unit):
    ``score``, the pilot's held-out reconstruction log-likelihood per sample with every feature
    at its own maximum-likelihood noise sd (nats), ``gap`` and ``gap_se``, its
    mean shortfall from the best pilot's on the same samples and that mean's standard error,
    ``log_px``, the held-out IWAE bound on log p(x) under the pilot's own σ, and
    ``residual_rms``, the RMS of the held-out reconstruction residual. ``best`` is the σ of the
    best score; ``chosen_by`` the σ each criterion picks (``"reconstruction"``: the largest σ
    within one standard error of ``best``; ``"likelihood"``: the best ``log_px``); ``chosen``
    that of ``criterion``, the one in use. The pilots ran ``pilot_epochs`` epochs on
    ``train_samples`` samples (``reused`` of them were
    loaded from an earlier run), scored on ``heldout_samples`` with ``k`` posterior draws each,
    in ``seconds`` together."""

    grid: list[float]
    score: list[float]
    gap: list[float]
    gap_se: list[float]
    log_px: list[float]
    residual_rms: list[float]
    best: float
    chosen: float
    chosen_by: dict[str, float]
    criterion: str
    pilot_epochs: int
    train_samples: int
    heldout_samples: int
    k: int
    reused: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def one_standard_error_choice(scores: torch.Tensor) -> tuple[int, int, torch.Tensor, torch.Tensor]:
    """The one-standard-error rule over ``scores [G, N]`` (per grid point, ascending in σ, a
    score per held-out sample; higher is better): ``(best, chosen, gap [G], gap_se [G])``,
    ``best`` the index of the highest mean, ``chosen`` the largest index whose mean shortfall
    from ``best`` on the same samples (``gap``) is at most its standard error (``gap_se``)."""
    best = int(scores.mean(1).argmax())
    differences = scores[best] - scores  # [G, N], paired on the held-out samples
    gap = differences.mean(1)
    gap_se = differences.std(1) / math.sqrt(scores.shape[1]) if scores.shape[1] > 1 else gap * 0
    within = (gap <= gap_se).nonzero().flatten()
    return best, int(within.max()), gap, gap_se


def select_likelihood_scale(
    x: torch.Tensor,
    method: str,
    options: EmbeddingOptions,
    run_dir: str | Path,
    k: int = 16,
    echo: Any = print,
) -> ScaleSelection:
    """Choose the likelihood σ of ``method`` for ``x [N, D]`` (already in σ's unit) without
    labels. For each σ of ``options.scale_grid`` a pilot trains (``options.pilot_fraction`` of
    ``options.epochs``, at least one epoch) on all but a held-out ``options.pilot_holdout`` of
    the samples (chosen by ``options.seed``) and reconstructs the held-out samples through its
    posterior (``k`` draws). Each is scored by the held-out reconstruction log-likelihood with
    every feature j at its own maximum-likelihood noise sd, the RMS of that pilot's held-out
    residuals on j:  Σ_j [−½ log(2π s_j²) − r_ij² / (2 s_j²)]  per sample i, and by the IWAE
    bound on the held-out log p(x) under its own σ. ``options.scale_criterion``
    ``"likelihood"`` (default) chooses the σ of the best log p(x); ``"reconstruction"`` the
    largest σ whose mean reconstruction shortfall from the best is within one standard error
    (Breiman et al.'s one-standard-error rule, the errors paired on the held-out samples). Both
    choices are recorded. The pilots' runs go to ``run_dir/sigma<σ>`` (a pilot already there
    with the same config and data, ``pilot.json``, is loaded instead of retrained); ``echo``
    gets one line per pilot; the selection is written to ``run_dir/likelihood_scale.json``.

    The criteria. Scores of pilots trained at different σ must be comparable. The held-out
    log p(x) under each pilot's own σ is (a proper density of the same data, whatever σ), but
    a fixed isotropic σ is not the noise of PCs (PC 1 beside ~1000 noise components): σ is in
    effect the weight of the reconstruction against the KL to the prior (β ∝ σ² in the
    official loss), and log p(x) peaks where σ is the RMS residual over all features, which the
    noise components set (0.08 std(PC 1) on the simulated cohorts, where DD-VAE's populations
    already blur). The reconstruction score drops the pilot's σ altogether (each feature at
    the noise sd that fits it) and so asks only what the 2-D code predicts about held-out
    samples; it improves as σ narrows (β < 1) while the code gains information the decoder
    uses, then is flat, and the one-standard-error rule takes the broadest σ on that plateau.
    Kept with σ profiled per feature, the KL term makes it reward the collapsed posterior of
    the broadest σ (the population structure is a sliver of the variance), and even without
    it a decoder that adds held-out variance to the ~1000 noise components loses more there
    than it gains on the few informative ones, so a collapsed pilot can score best (a VAE pilot
    did). A single learned σ converges to the RMS residual, as log p(x) does, and a learned
    per-feature σ lets the posterior collapse. Neither criterion follows a clustering score
    everywhere: reconstruction tracked DD-VAE's population NMI on the simulated 1000
    Genomes-like cohorts but not the VAE's, nor DD-VAE's on 90 samples × 20 PCs, where the
    likelihood did (docs/methods.md). The likelihood is the default: a proper, comparable
    score, and a stable one.

    Cost: len(grid) × pilot_fraction × (1 − pilot_holdout) of the final run's epochs (7 × 0.2
    × 0.8 ≈ 1.1 with the defaults; plus DD-VAE's ``warmup_steps`` per pilot), so about twice
    the training of a fixed σ.
    """
    from diffvi.objectives.base import log_importance_weights, log_mean_exp
    from diffvi.training.checkpoint import load

    check_scale_options(options)
    n = len(x)
    heldout = min(n - 2, max(1, round(options.pilot_holdout * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(options.seed))
    val_x, train_x = x[order[:heldout]], x[order[heldout:]]
    epochs = max(1, round(options.pilot_fraction * options.epochs))
    grid = [float(v) for v in sorted(options.scale_grid)]
    fingerprint = data_fingerprint(train_x, val_x)
    per_sample, log_pxs, residuals, reused = [], [], [], 0
    start = time.perf_counter()
    for number, sigma in enumerate(grid, 1):
        tic = time.perf_counter()
        pilot_dir = Path(run_dir) / f"sigma{sigma:g}"
        config = _config(method, options, sigma, epochs, len(val_x))
        if _same_run(pilot_dir, config, fingerprint):
            family, how = load(pilot_dir, resolve_device(options.device)), "loaded"
            reused += 1
        else:
            module, _ = _train(
                train_x, method, options, pilot_dir, sigma, epochs, val_x=val_x, progress=False
            )
            family, how = module.trained.eval(), "trained"
            if module.global_rank == 0:
                write_json(pilot_dir / "pilot.json", {"data_sha256": fingerprint})
        device = next(family.posterior.parameters()).device
        generator = torch.Generator(device=device).manual_seed(options.seed)
        squared, log_px = [], []
        with torch.no_grad():
            for chunk in val_x.to(device).split(500):
                drawn = family.posterior.sample(chunk, k, generator=generator)
                log_px.append(log_mean_exp(log_importance_weights(family.model, chunk, drawn)))
                mean = family.model.likelihood.mean(family.model.decode(drawn.z))
                squared.append((chunk - mean).square().mean(0).cpu())  # [B, D], over draws
        squared = torch.cat(squared).double()
        noise = squared.mean(0).clamp_min(1e-12)  # [D]: each feature's ML noise variance
        scores = -0.5 * (squared / noise + torch.log(2 * math.pi * noise)).sum(-1)  # [B]
        per_sample.append(scores)
        log_pxs.append(float(torch.cat(log_px).mean()))
        residuals.append(float(squared.mean().sqrt()))
        echo(
            f"σ selection, pilot {number}/{len(grid)}: σ = {sigma:g}, held-out reconstruction "
            f"{float(scores.mean()):.2f} nats per sample (log p(x) ≥ {log_pxs[-1]:.1f}, "
            f"residual rms {residuals[-1]:.3g}; {how} in {time.perf_counter() - tic:.0f} s)"
        )
    scores = torch.stack(per_sample)
    best, by_reconstruction, gap, gap_se = one_standard_error_choice(scores)
    chosen_by = {
        "reconstruction": grid[by_reconstruction],
        "likelihood": grid[int(np.argmax(log_pxs))],
    }
    selection = ScaleSelection(
        grid, scores.mean(1).tolist(), gap.tolist(), gap_se.tolist(), log_pxs, residuals,
        grid[best], chosen_by[options.scale_criterion], chosen_by, options.scale_criterion,
        epochs, n - heldout, heldout, k, reused,
        time.perf_counter() - start,
    )  # fmt: skip
    if launcher_rank() == 0:  # every rank scores the same pilots and chooses the same σ
        write_json(Path(run_dir) / "likelihood_scale.json", selection.to_dict())
    return selection


def data_fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' float32 values and shapes: which data a pilot saw."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _same_run(run_dir: Path, config: Any, fingerprint: str) -> bool:
    """Whether ``run_dir`` holds a finished pilot trained with ``config`` on the data of
    ``fingerprint`` (its ``pilot.json``), to reuse."""
    saved, pilot = run_dir / "config.json", run_dir / "pilot.json"
    if not all(p.is_file() for p in (run_dir / "export" / "model.json", saved, pilot)):
        return False
    if json.loads(pilot.read_text()).get("data_sha256") != fingerprint:
        return False
    ignore = ("kind", "event_shape")  # set from the data when a run starts
    old = {k: v for k, v in json.loads(saved.read_text()).items() if k not in ignore}
    new = {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k not in ignore}
    return old == new


def _variational(
    x: torch.Tensor, method: str, options: EmbeddingOptions, run_dir: Path, components: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    scale = _likelihood_scale(x, options.likelihood_scale, components)
    x = x / _unit(x, components)  # σ is in units of std(PC 1) (or of the median std)
    selection = None
    if options.likelihood_scale == "select":
        selection = select_likelihood_scale(
            x, method, options, run_dir / "scale-pilots", echo=_echo
        )
        scale = selection.chosen
        _echo(
            f"σ selection: chose σ = {scale:g} of {selection.grid} by the held-out "
            f"{selection.criterion} (likelihood: {selection.chosen_by['likelihood']:g}, "
            f"reconstruction: {selection.chosen_by['reconstruction']:g}; "
            f"{selection.seconds:.0f} s of pilots)"
        )
    module, config = _train(x, method, options, run_dir, scale, options.epochs)
    if module.global_rank != 0:  # rank 0 encodes all N samples once, after training
        return np.zeros((0, 2)), {"global_rank": module.global_rank}
    module.eval()
    with torch.no_grad():
        z = module.family.encode(x, seed=options.seed)  # the DDIM map where it trained so
        prior = module.family.model.prior
        own = prior.assign(z.to(module.device)).cpu().numpy() if hasattr(prior, "assign") else None
    details = {
        key.replace("/", "_"): float(value)
        for key, value in module.trainer.callback_metrics.items()
        if key in ("val/bound", "val/iwae", "train/bound")
    }
    if selection is not None:
        details["likelihood_scale_selection"] = selection.to_dict()
    if own is not None:  # embed_features moves them to Embedding.clusters
        details["model_clusters"] = own
    return z.double().numpy(), details | {"config": config.to_dict()}


def _echo(line: str) -> None:
    """``print``, flushed (the σ selection's few lines print with or without progress bars)."""
    print(line, flush=True)


def _config(
    method: str, options: EmbeddingOptions, scale: float | None, epochs: int, val_n: int
) -> Any:
    """The :class:`~diffvi.training.config.TrainConfig` of ``method`` at σ = ``scale`` for
    ``epochs``, validated on ``val_n`` rows."""
    from diffvi.training.config import TrainConfig

    fields = {
        "dataset": "features",
        "likelihood": "real-gaussian",
        "likelihood_scale": scale,
        "latent_dims": [2],
        "hidden": [[options.hidden, options.hidden]],
        "activation": "silu",
        "k": 1,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "adam": "torch",
        "max_epochs": epochs,
        "prior": "mixture",
        "mixture_components": options.mixture_components,
        "diffusion_steps": options.diffusion_steps,
        "val_size": val_n,
        "val_k": 10,
        "seed": options.seed,
        **VARIATIONAL_METHODS[method],
        **CLUSTERING_MODELS[options.clustering],
        **options.extra,
    }
    if fields["posterior"] == "diffusion":
        fields["warmup_steps"] = options.warmup_steps
    return TrainConfig(**fields)


def _train(
    x: torch.Tensor,
    method: str,
    options: EmbeddingOptions,
    run_dir: Path,
    scale: float | None,
    epochs: int,
    val_x: torch.Tensor | None = None,
    progress: bool | None = None,
) -> tuple[Any, Any]:
    """Fit ``method`` to ``x [N, D]`` (in σ's unit) at σ = ``scale`` for ``epochs``; validated
    on ``val_x`` where given, else on up to 500 of the training rows. Returns the trained
    module and its :class:`~diffvi.training.config.TrainConfig`."""
    from diffvi.data.modules import FeatureDataModule
    from diffvi.training.trainer import fit

    val_n = min(500, len(x)) if val_x is None else len(val_x)
    config = _config(method, options, scale, epochs, val_n)
    data = FeatureDataModule(x, config.batch_size, config.seed, config.val_size, val_features=val_x)
    device = resolve_device(options.device)
    devices = options.devices
    if devices == 1 and device.type == "cuda":
        devices = [device.index or 0]
    module = fit(
        config,
        run_dir,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=devices,
        num_nodes=options.num_nodes,
        strategy=options.strategy,
        progress_bar=options.progress if progress is None else progress,
        datamodule=data,
        checkpoint_every_n_epochs=max(1, epochs // 5),
    )
    return module, config


def _unit(x: torch.Tensor, components: bool) -> torch.Tensor:
    """The unit of σ for ``x [N, D]``: std(column 0) for components, else the median std."""
    stds = x.std(0)
    return (stds[0] if components else stds.median()).clamp_min(1e-12)


def _likelihood_scale(
    x: torch.Tensor, scale: float | str | None, components: bool = True
) -> float | str | None:
    """σ in units of :func:`_unit` of ``x [N, D]``: ``"median"`` (or ``"auto"``) the median
    column std; a number, None or ``"select"`` as given."""
    if scale not in ("median", "auto"):
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
