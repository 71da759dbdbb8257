"""``diffvi embed genotypes``: genotypes in, a 2-D embedding, its clusters and scores out.

DDVI's 1000 Genomes workflow (Piriyakulkij et al. 2024, §6.3): genotypes → quality control →
principal components (scaled as the official code does) → a 2-D embedding → a 20-component GMM
on the embedding → purity, completeness and NMI against populations and super-populations. The
embedding, clustering and scoring are :func:`diffvi.training.embedding.embed_labelled`, which
``diffvi embed table`` shares.
"""

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from diffvi.cli.embed_options import (
    BatchSizeOpt,
    EpochsOpt,
    HiddenOpt,
    KnnOpt,
    LrOpt,
    MethodOpt,
    ProgressOpt,
    SeedOpt,
    distributed,
    embedding_options,
    features_key,
    share_features,
)
from diffvi.cli.options import (
    DeviceOpt,
    DevicesOpt,
    FlushDenormalOpt,
    NumNodesOpt,
    StrategyOpt,
    ThreadsOpt,
    choice,
    ensure_writable,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)
from diffvi.data.genotype_rpca import PCA_METHODS
from diffvi.training.embedding import (
    CLUSTERING_MODELS,
    SCALE_CRITERIA,
    Labelling,
    parse_scale_grid,
)
from diffvi.utils.io import write_csv


def genotype_labellings(genotypes: Any) -> list[Labelling]:
    """The population and super-population of every sample (``""`` where unknown), scored as
    ``populations`` and ``super_populations``."""
    return [
        Labelling(name[:-1], getattr(genotypes, name) or [""] * genotypes.num_samples, name)
        for name in ("populations", "super_populations")
    ]


def label_scores(genotypes: Any, clusters: Any) -> dict[str, Any]:
    """Clustering scores of ``clusters [N]`` against each labelling the genotypes carry."""
    from diffvi.evaluation.representation import clustering_scores

    return {
        name: clustering_scores(np.asarray(getattr(genotypes, name)), clusters)
        for name in ("populations", "super_populations")
        if getattr(genotypes, name) is not None
    }


def write_embedding_csv(path: Path, genotypes: Any, coordinates: Any, clusters: Any) -> Path:
    """``sample,population,super_population,z1,z2,cluster``, one row per genotyped sample
    (``coordinates [N, 2]``, ``clusters [N]``), as ``embed genotypes`` writes it."""
    populations, supers = (labelling.names for labelling in genotype_labellings(genotypes))
    rows = (
        [sample, population, super_population, repr(float(z1)), repr(float(z2)), int(cluster)]
        for sample, population, super_population, (z1, z2), cluster in zip(
            genotypes.samples, populations, supers, coordinates, clusters, strict=True
        )
    )
    header = ["sample", "population", "super_population", "z1", "z2", "cluster"]
    return write_csv(path, header, rows)


@report_errors
def embed_genotypes(
    input: Annotated[
        Path,
        typer.Option(
            help="Genotypes: PLINK .bed (with .bim/.fam beside it), .vcf/.vcf.gz or a tskit "
            ".trees file.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for embedding.csv/png, metrics.json and the run.", show_default=False
        ),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Sample labels (columns sample, population[, super_population]; the 1000 "
            "Genomes panel format works; a panel with more samples than the genotypes needs "
            "--ignore-extra-labels).",
            show_default="the populations stored in a .trees file, else none",
        ),
    ] = None,
    drop_unlabelled: Annotated[
        bool,
        typer.Option(
            "--drop-unlabelled",
            help="With --labels: leave out the genotype samples the labels file does not "
            "name (without it they are an error).",
        ),
    ] = False,
    ignore_extra_labels: Annotated[
        bool,
        typer.Option(
            "--ignore-extra-labels",
            help="With --labels: drop the labels of samples that are not in the genotypes "
            "(e.g. the full 1000 Genomes panel against a subset; without it they are an "
            "error).",
        ),
    ] = False,
    method: MethodOpt = "ddvae",
    maf: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Minor-allele frequency filter.")
    ] = 0.01,
    thin: Annotated[int, typer.Option(min=1, help="Keep every k-th variant after the filter.")] = 1,
    components: Annotated[
        int, typer.Option(min=2, help="Principal components the embedding starts from.")
    ] = 1000,
    pc_scale: Annotated[
        float, typer.Option(min=1e-12, help="Divide the components by this (official code: 30).")
    ] = 30.0,
    pca: Annotated[
        choice(PCA_METHODS),
        typer.Option(
            help="exact: through the N × N Gram matrix (memory O(N²)); randomized: streaming "
            "randomised subspace iteration, a .bed read in windows of variants (memory "
            "O(N·components)); auto: randomized above 20,000 samples or when the Gram matrix "
            "and calls would not fit in half the memory (docs/methods.md).",
        ),
    ] = "auto",
    pca_iterations: Annotated[
        int, typer.Option(min=1, help="Passes of subspace iteration of the randomized PCA.")
    ] = 8,
    scheduler: Annotated[
        str,
        typer.Option(
            help="Where the randomized PCA's passes run: local (this process), dask-local (a "
            "Dask LocalCluster) or dask://HOST:PORT (a Dask scheduler; the .bed path must be "
            "readable on its workers). Dask needs pip install 'diffvi[cluster]'.",
        ),
    ] = "local",
    clusters: Annotated[int, typer.Option(min=1, help="GMM components on the embedding.")] = 20,
    knn_k: KnnOpt = 20,
    epochs: EpochsOpt = 200,
    hidden: HiddenOpt = 256,
    lr: LrOpt = 1e-3,
    batch_size: BatchSizeOpt = 128,
    likelihood_scale: Annotated[
        str | None,
        typer.Option(
            help="σ of the variational methods' Gaussian likelihood, in std(PC 1): a number; "
            "'median', the median std of the components (called 'auto' before); 'select', "
            "chosen from --scale-grid by short pilot runs scored on held-out samples by "
            "--scale-criterion (one pilot per grid value, each 1/5 of --epochs on 80% of the "
            "samples: about twice the training of a fixed σ; no labels used).",
            show_default="median",
        ),
    ] = None,
    scale_criterion: Annotated[
        choice(SCALE_CRITERIA),
        typer.Option(
            help="With --likelihood-scale select: likelihood = the best held-out log p(x) "
            "(σ near the RMS residual of the components); reconstruction = the broadest σ "
            "whose held-out reconstruction is within one standard error of the best "
            "(experimental: narrower σ; docs/methods.md).",
        ),
    ] = "likelihood",
    scale_grid: Annotated[
        str | None,
        typer.Option(
            help="With --likelihood-scale select: the σ values to try, comma-separated, in "
            "std(PC 1); each costs one pilot.",
            show_default="0.01,0.0176,0.0311,0.0548,0.0965,0.17,0.3",
        ),
    ] = None,
    clustering: Annotated[
        choice(CLUSTERING_MODELS),
        typer.Option(
            help="DD-VAE's clustering model: mixture = a learnable mixture prior; heads = the "
            "official DDVI code's learned cluster heads (η-margin repulsion), whose nearest "
            "head is scored beside the GMM; heads-official = that model trained by the "
            "official code's loop (per-epoch head and sleep steps, an MSE wake loss; official "
            "--lr 1e-4) (docs/methods.md).",
        ),
    ] = "mixture",
    device: DeviceOpt = "auto",
    devices: DevicesOpt = "1",
    num_nodes: NumNodesOpt = 1,
    strategy: StrategyOpt = "auto",
    seed: SeedOpt = 0,
    progress: ProgressOpt = True,
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
) -> None:
    """Embed genotypes in 2-D, cluster the embedding and score the clusters.

    Reads the genotypes, imputes missing calls by the variant mean, drops variants below
    --maf, keeps every --thin-th, computes --components principal components (--pca: exact,
    with memory O(N² + N·chunk) whatever the number of variants, or randomized, streaming a
    .bed in windows with memory O(N·components)) divided by --pc-scale, embeds them
    with --method, fits a --clusters-component GMM to the embedding and scores it against the
    populations and super-populations (purity, completeness, NMI), as well as a leave-one-out
    kNN classifier (k = --knn-k) on the embedding.

    Writes OUT/embedding.csv (sample, population, super_population, z1, z2, cluster),
    OUT/embedding.png (coloured by population and by super-population), OUT/metrics.json, and
    for variational methods the training run in OUT/run.

    Larger cohorts: --pca randomized --scheduler dask://HOST:PORT spreads the PCA over a Dask
    cluster; --strategy ddp --devices D (--num-nodes N under torchrun or SLURM, one process per
    device on every node) trains on D × N processes. Rank 0 alone reads the genotypes and runs
    the PCA, handing the components to the other ranks in OUT/features.npz (OUT on a shared
    file system), and alone writes the outputs (docs/methods.md).

    **Examples**

    ```
    diffvi simulate genotypes --model thousand-genomes --out sim/kg
    diffvi embed genotypes --input sim/kg.bed --labels sim/kg.labels.tsv --method ddvae --out emb
    diffvi embed genotypes --input 1kg.vcf.gz --labels panel.tsv --method umap --out emb-umap
    diffvi embed genotypes --input kg.bed --labels kg.tsv --out emb --devices 2 --strategy ddp
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    ensure_writable(out, folder=True)
    from diffvi.data.genotype_io import (
        PlinkBlocks,
        attach_labels,
        extra_labels,
        is_plink,
        read_genotypes,
        read_labels,
    )
    from diffvi.data.genotype_pca import genotype_pcs, quality_control
    from diffvi.data.genotype_rpca import (
        choose_pca,
        dask_client,
        randomized_pcs,
        select_variants,
    )
    from diffvi.data.genotypes import Genotypes
    from diffvi.training.embedding import embed_labelled, write_embedding
    from diffvi.utils.runtime import launcher_rank

    options = embedding_options(
        epochs, batch_size, lr, hidden, likelihood_scale, seed, device, progress,
        devices, num_nodes, strategy,
    )  # fmt: skip
    if scale_grid is not None:
        options.scale_grid = parse_scale_grid(scale_grid)
    options.scale_criterion = scale_criterion
    options.clustering = clustering
    key = rank = None
    if distributed(options):  # rank 0 computes the components, the other ranks load them
        label_file = None if labels is None else (str(labels), labels.stat().st_mtime_ns)
        arguments = [label_file, drop_unlabelled, ignore_extra_labels, maf, thin, components]
        arguments += [pc_scale, pca, pca_iterations, seed]
        key, rank = features_key(input, {"genotypes": arguments}), launcher_rank()
        if rank != 0:
            shared = share_features(out, key, rank, dict)
            embed_labelled(
                shared["features"], method, (), options, out / "run",
                num_clusters=clusters, knn_k=knn_k,
            )  # fmt: skip
            return
    if scheduler != "local" and pca == "exact":
        raise ValueError(f"--scheduler {scheduler} runs the randomized PCA: pass --pca randomized")
    if pca == "auto" and scheduler != "local":
        pca = "randomized"
    blocks = PlinkBlocks(input, num_threads=threads) if pca != "exact" and is_plink(input) else None
    if blocks is not None and choose_pca(pca, blocks.num_samples, blocks.num_variants) == "exact":
        blocks = None
    if blocks is None:
        genotypes = read_genotypes(input)
    else:  # streamed: the samples alone here, the calls a window at a time in the PCA
        genotypes = Genotypes(np.empty((blocks.num_samples, 0), np.int8), blocks.samples, [])
    if labels is not None:
        label_table = read_labels(labels)
        extra = extra_labels(genotypes, label_table) if ignore_extra_labels else []
        genotypes = attach_labels(
            genotypes, label_table, drop_unlabelled, ignore_extra_labels=ignore_extra_labels
        )
        if extra:
            typer.echo(
                f"--ignore-extra-labels: dropped the labels of {len(extra)} samples that are "
                f"not in {input.name}"
            )
    elif drop_unlabelled or ignore_extra_labels:
        flag = "--drop-unlabelled" if drop_unlabelled else "--ignore-extra-labels"
        raise ValueError(f"{flag} applies to the samples of --labels; pass --labels")
    client = dask_client(scheduler) if pca != "exact" else None
    selection = None
    if blocks is not None:
        if genotypes.num_samples < blocks.num_samples:  # labels dropped some samples
            row = {sample: i for i, sample in enumerate(blocks.samples)}
            blocks = blocks.subset(np.array([row[sample] for sample in genotypes.samples]))
        read_variants = blocks.num_variants
        selection = select_variants(blocks, maf, thin, client=client, progress=progress)
        num_variants = selection.num_variants
    else:
        read_variants = genotypes.num_variants
        genotypes = quality_control(genotypes, maf=maf, thin=thin)
        num_variants = genotypes.num_variants
        pca = choose_pca(pca, genotypes.num_samples, num_variants)
    if num_variants < 2:
        raise ValueError(
            f"{num_variants} variants left after --maf {maf} and --thin {thin} "
            f"(of {read_variants}): lower --maf or --thin"
        )
    # At most min(N − 1, M) components exist; --components is a cap.
    components = min(components, genotypes.num_samples - 1, num_variants)
    pca = "randomized" if blocks is not None else pca
    typer.echo(
        f"{genotypes.num_samples} samples, {num_variants} variants after quality "
        f"control (of {read_variants}); {components} principal components ({pca} PCA)"
    )
    if pca == "exact":
        features, explained = genotype_pcs(genotypes, n_components=components, scale=pc_scale)
    else:
        features, explained = randomized_pcs(
            blocks if blocks is not None else genotypes, components,
            scale=pc_scale, selection=selection, n_iter=pca_iterations, seed=seed,
            client=client, progress=progress,
        )  # fmt: skip
    if client is not None:
        client.close()
    if key is not None:
        share_features(out, key, 0, lambda: {"features": features})
    labellings = genotype_labellings(genotypes)
    result = embed_labelled(
        features, method, labellings, options, out / "run",
        num_clusters=clusters, knn_k=knn_k,
    )  # fmt: skip
    metrics = {
        "input": str(input),
        "num_variants_read": read_variants,
        "num_variants": num_variants,
        "maf": maf,
        "thin": thin,
        "pca": pca,
        **({"pca_iterations": pca_iterations} if pca == "randomized" else {}),
        "components": int(features.shape[1]),
        "pc_scale": pc_scale,
        "explained_variance_top10": [float(v) for v in explained[:10]],
        "seed": seed,
    }
    lines = write_embedding(
        out, result, genotypes.samples, labellings, metrics, title=f"{method}: {input.name}"
    )
    for name, values in result.embedding.details.get("model_cluster_scores", {}).items():
        lines.append(
            f"Nearest head ({len(np.unique(result.embedding.clusters))} used) vs {name}: purity "
            f"{values['purity']:.3f}, completeness {values['completeness']:.3f}, "
            f"NMI {values['nmi']:.3f}"
        )
    typer.echo("\n".join(lines))
