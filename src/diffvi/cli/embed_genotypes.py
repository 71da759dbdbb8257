"""``diffvi embed genotypes``: genotypes in, a 2-D embedding, its clusters and scores out.

DDVI's 1000 Genomes workflow (Piriyakulkij et al. 2024, §6.3): genotypes → quality control →
principal components (scaled as the official code does) → a 2-D embedding → a 20-component GMM
on the embedding → purity, completeness and NMI against populations and super-populations.
"""

from pathlib import Path
from typing import Annotated

import typer

from diffvi.cli.options import (
    DeviceOpt,
    FlushDenormalOpt,
    ThreadsOpt,
    choice,
    ensure_writable,
    quiet_lightning,
    report_errors,
    set_threads,
    setup_numerics,
)
from diffvi.training.embedding import EMBEDDING_METHODS, label_scores, write_embedding_csv
from diffvi.utils.io import write_json


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
            "Genomes panel format works).",
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
    method: Annotated[choice(EMBEDDING_METHODS), typer.Option(help="Embedding method.")] = "ddvae",
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
    clusters: Annotated[int, typer.Option(min=1, help="GMM components on the embedding.")] = 20,
    epochs: Annotated[
        int, typer.Option(min=1, help="Training epochs (variational methods).")
    ] = 200,
    hidden: Annotated[int, typer.Option(min=1, help="Hidden units per MLP layer.")] = 256,
    lr: Annotated[float, typer.Option(min=1e-12, help="Adam learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per training batch.")] = 128,
    likelihood_scale: Annotated[
        float | None,
        typer.Option(
            min=1e-6,
            help="σ of the variational methods' Gaussian likelihood, in std(PC 1) "
            "[default: the median std of the components, their noise level].",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(help="Seed of training, sampling and the GMM.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    flush_denormal: FlushDenormalOpt = True,
    threads: ThreadsOpt = None,
) -> None:
    """Embed genotypes in 2-D, cluster the embedding and score the clusters.

    Reads the genotypes, imputes missing calls by the variant mean, drops variants below
    --maf, keeps every --thin-th, computes --components principal components (exact, with
    memory O(N² + N·chunk) whatever the number of variants) divided by --pc-scale, embeds them
    with --method, fits a --clusters-component GMM to the embedding and scores it against the
    populations and super-populations (purity, completeness, NMI).

    Writes OUT/embedding.csv (sample, population, super_population, z1, z2, cluster),
    OUT/embedding.png (coloured by population and by super-population), OUT/metrics.json, and
    for variational methods the training run in OUT/run.

    **Examples**

    ```
    diffvi simulate genotypes --model thousand-genomes --out sim/kg
    diffvi embed genotypes --input sim/kg.bed --labels sim/kg.labels.tsv --method ddvae --out emb
    diffvi embed genotypes --input 1kg.vcf.gz --labels panel.tsv --method umap --out emb-umap
    ```
    """
    setup_numerics(flush_denormal)
    quiet_lightning()
    set_threads(threads)
    ensure_writable(out, folder=True)
    from diffvi.data.genotype_io import attach_labels, read_genotypes, read_labels
    from diffvi.data.genotype_pca import genotype_pcs, quality_control
    from diffvi.evaluation.plots import save_embedding_panels
    from diffvi.evaluation.representation import gmm_cluster
    from diffvi.training.embedding import EmbeddingOptions, embed_features

    genotypes = read_genotypes(input)
    if labels is not None:
        genotypes = attach_labels(genotypes, read_labels(labels), drop_unlabelled)
    elif drop_unlabelled:
        raise ValueError("--drop-unlabelled applies to the samples of --labels; pass --labels")
    read_variants = genotypes.num_variants
    genotypes = quality_control(genotypes, maf=maf, thin=thin)
    if genotypes.num_variants < 2:
        raise ValueError(
            f"{genotypes.num_variants} variants left after --maf {maf} and --thin {thin} "
            f"(of {read_variants}): lower --maf or --thin"
        )
    # At most min(N − 1, M) components exist; --components is a cap.
    components = min(components, genotypes.num_samples - 1, genotypes.num_variants)
    typer.echo(
        f"{genotypes.num_samples} samples, {genotypes.num_variants} variants after quality "
        f"control (of {read_variants}); {components} principal components"
    )
    features, explained = genotype_pcs(genotypes, n_components=components, scale=pc_scale)
    options = EmbeddingOptions(
        epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden,
        likelihood_scale="auto" if likelihood_scale is None else likelihood_scale,
        seed=seed, device=device, progress=progress,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    embedding = embed_features(features, method, options, run_dir=out / "run")
    num_clusters = min(clusters, genotypes.num_samples)
    cluster_labels = gmm_cluster(embedding.coordinates, num_clusters, seed=seed)
    write_embedding_csv(out / "embedding.csv", genotypes, embedding.coordinates, cluster_labels)
    panels = [
        (name.replace("_", "-")[:-1], getattr(genotypes, name))
        for name in ("populations", "super_populations")
        if getattr(genotypes, name) is not None
    ] or [("cluster", [str(c) for c in cluster_labels])]
    save_embedding_panels(
        embedding.coordinates, panels, out / "embedding.png", title=f"{method}: {input.name}"
    )
    scores = label_scores(genotypes, cluster_labels)
    metrics = {
        "input": str(input),
        "method": method,
        "num_samples": genotypes.num_samples,
        "num_variants_read": read_variants,
        "num_variants": genotypes.num_variants,
        "maf": maf,
        "thin": thin,
        "components": int(features.shape[1]),
        "pc_scale": pc_scale,
        "explained_variance_top10": [float(v) for v in explained[:10]],
        "clusters": num_clusters,
        "seed": seed,
        "seconds": embedding.seconds,
        "scores": scores,
        "details": {k: v for k, v in embedding.details.items() if k != "config"},
    }
    if "config" in embedding.details:  # the σ in use ("auto" resolved) and the epochs
        config = embedding.details["config"]
        metrics["details"] |= {"likelihood_scale": config["likelihood_scale"], "epochs": epochs}
    write_json(out / "metrics.json", metrics)
    lines = [f"Wrote {out / 'embedding.csv'}, {out / 'embedding.png'}, {out / 'metrics.json'}"]
    for name, values in scores.items():
        lines.append(
            f"GMM ({num_clusters}) vs {name.replace('_', '-')}: purity {values['purity']:.3f}, "
            f"completeness {values['completeness']:.3f}, NMI {values['nmi']:.3f}"
        )
    typer.echo("\n".join(lines))
