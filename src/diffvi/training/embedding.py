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
t-SNE and UMAP run on the first ``neighbour_components`` features (principal components), as is
usual for genotypes.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffvi.utils.io import write_csv

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
) -> Embedding:
    """Embed ``features [N, D]`` in 2-D with ``method`` (one of ``EMBEDDING_METHODS``).

    Variational methods write their run (config, checkpoint, logs, export) to ``run_dir``
    (required for them). ``pca`` returns the first two features, which ARE the first two
    principal components when ``features`` are PCA scores.
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
        coordinates, details = _variational(x, method, options, Path(run_dir))
    else:
        coordinates, details = _classic(x.numpy().astype(np.float64), method, options), {}
    seconds = time.perf_counter() - start
    return Embedding(method, np.asarray(coordinates, np.float64), seconds, details)


def write_embedding_csv(path: Path, genotypes: Any, coordinates: Any, clusters: Any) -> Path:
    """``sample,population,super_population,z1,z2,cluster``, one row per genotyped sample
    (``coordinates [N, 2]``, ``clusters [N]``)."""
    populations = genotypes.populations or [""] * genotypes.num_samples
    supers = genotypes.super_populations or [""] * genotypes.num_samples
    rows = (
        [sample, population, super_population, repr(float(z1)), repr(float(z2)), int(cluster)]
        for sample, population, super_population, (z1, z2), cluster in zip(
            genotypes.samples, populations, supers, coordinates, clusters, strict=True
        )
    )
    header = ["sample", "population", "super_population", "z1", "z2", "cluster"]
    return write_csv(path, header, rows)


def label_scores(genotypes: Any, clusters: Any) -> dict[str, Any]:
    """Clustering scores of ``clusters [N]`` against each labelling the genotypes carry."""
    from diffvi.evaluation.representation import clustering_scores

    scores = {}
    for name in ("populations", "super_populations"):
        labels = getattr(genotypes, name)
        if labels is not None:
            scores[name] = clustering_scores(np.asarray(labels), clusters)
    return scores


def _variational(
    x: torch.Tensor, method: str, options: EmbeddingOptions, run_dir: Path
) -> tuple[np.ndarray, dict[str, Any]]:
    from diffvi.data.modules import FeatureDataModule
    from diffvi.evaluation.representation import embed_latents
    from diffvi.training.config import TrainConfig
    from diffvi.training.trainer import fit
    from diffvi.utils.runtime import resolve_device

    fields = {
        "dataset": "features",
        "likelihood": "real-gaussian",
        "likelihood_scale": _likelihood_scale(x, options.likelihood_scale),
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
    x = x / x[:, 0].std().clamp_min(1e-12)  # σ is in units of std(PC 1)
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


def _likelihood_scale(x: torch.Tensor, scale: float | str | None) -> float | None:
    """σ in units of std(column 0) of ``x [N, D]``; ``"auto"``: the median column std."""
    if scale != "auto":
        return scale
    stds = x.std(0)
    return float((stds.median() / stds[0].clamp_min(1e-12)).clamp_min(1e-6))


def _classic(x: np.ndarray, method: str, options: EmbeddingOptions) -> np.ndarray:
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
