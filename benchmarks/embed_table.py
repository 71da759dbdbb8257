"""2-D embeddings of real single-cell data by DD-VAE, VAE, AAE, PCA and UMAP: scanpy's bundled
``pbmc68k_reduced`` (700 PBMCs × 765 genes, 10 ``bulk_labels`` cell types; shipped inside the
scanpy package, no download), the workflow of ``diffvi embed table``.

Per (seed, method): the cells are written once as ``.h5ad`` and read back with
:func:`diffvi.data.tables.load_table` (``bulk_labels`` as labels), the genes standardised,
``--pca`` principal components taken (0: the standardised genes themselves), the embedding
made (:func:`diffvi.training.embedding.embed_labelled`), a GMM with one component per cell type
fitted to it and scored (purity, completeness, NMI) against the cell types, with the
leave-one-out accuracy of a kNN classifier (k = 20) on the embedding. The variational methods
train ``--epochs`` with a learnable 20-component mixture prior and the Gaussian likelihood's σ
at its default ("auto": the median std of the components, in units of std(PC 1)). Jobs are
sharded with ``--shard/--shards`` (one thread each); each saves a JSON part, so a rerun
resumes.

Writes ``benchmarks/results/embed_table.{json,md}`` (``embed_table-quick`` with ``--quick``);
``--assemble-only`` rewrites them from the saved parts.

    python benchmarks/embed_table.py --quick                                  # CI smoke run
    python benchmarks/embed_table.py --shard 0 --shards 2 &                   # two cores
    python benchmarks/embed_table.py --shard 1 --shards 2 &
    python benchmarks/embed_table.py                                          # gather
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import machine_info, markdown_table, write_results  # noqa: E402

from diffvi.data.tables import load_table, principal_components, standardise  # noqa: E402
from diffvi.training.embedding import (  # noqa: E402
    EMBEDDING_METHODS,
    VARIATIONAL_METHODS,
    EmbeddingOptions,
    Labelling,
    embed_labelled,
    write_embedding,
)
from diffvi.utils.runtime import quiet_lightning  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs" / "embed_table"
LABELS = "bulk_labels"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny budgets, one seed")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default="ddvae,vae,aae,pca,umap")
    p.add_argument("--pca", type=int, default=50, help="principal components (0: the genes)")
    p.add_argument("--epochs", type=int, default=EmbeddingOptions().epochs)
    p.add_argument("--hidden", type=int, default=EmbeddingOptions().hidden)
    p.add_argument("--lr", type=float, default=EmbeddingOptions().lr)
    p.add_argument("--batch-size", type=int, default=EmbeddingOptions().batch_size)
    p.add_argument("--warmup-steps", type=int, default=EmbeddingOptions().warmup_steps,
                   help="DD-VAE: steps pretraining the reverse chain on the prior")  # fmt: skip
    p.add_argument("--knn-k", type=int, default=20)
    common.add_shard_arguments(p)
    args = common.parse_shard_args(p)
    if args.quick:
        args.seeds, args.epochs, args.hidden, args.warmup_steps = "0", 2, 32, 10
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.method_list = args.methods.split(",")
    unknown = set(args.method_list) - set(EMBEDDING_METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; valid: {list(EMBEDDING_METHODS)}")
    return args


def series(args) -> str:
    return "quick" if args.quick else f"pca{args.pca}-e{args.epochs}"


def folder(args) -> Path:
    return RUNS / series(args)


def cells() -> Path:
    """pbmc68k_reduced as an .h5ad (written once from the copy inside the scanpy package)."""
    path = RUNS / "pbmc68k_reduced.h5ad"
    if not path.exists():
        import scanpy

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("pbmc68k_reduced.tmp.h5ad")
        scanpy.datasets.pbmc68k_reduced().write_h5ad(tmp)
        os.replace(tmp, path)
    return path


def features(args, seed: int):
    """The standardised genes, or their first --pca components, and the table."""
    table = load_table(cells(), labels=LABELS)
    x = standardise(table.features)[0]
    if args.pca:
        x = principal_components(x, args.pca, seed=seed)[0]
    return x, table


def part_path(args, seed: int, method: str) -> Path:
    return folder(args) / "parts" / f"s{seed}-{method}.json"


def embed_job(args, seed: int, method: str) -> dict:
    x, table = features(args, seed)
    options = EmbeddingOptions(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, hidden=args.hidden,
        warmup_steps=args.warmup_steps, seed=seed, device="cpu", progress=False,
    )  # fmt: skip
    out = folder(args) / "runs" / f"s{seed}-{method}"
    labelling = Labelling(LABELS, table.label_strings(""))
    start = time.perf_counter()
    result = embed_labelled(
        x, method, [labelling], options, out / "run",
        num_clusters=len(table.label_names), knn_k=args.knn_k, components=bool(args.pca),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    write_embedding(out, result, table.samples, [labelling], {"seed": seed}, title=method)
    return {
        "seed": seed,
        "method": method,
        "seconds": result.embedding.seconds,
        "seconds_with_scores": seconds,
        "scores": result.scores[LABELS],
        "details": {k: v for k, v in result.embedding.details.items() if k != "config"}
        | (
            {"likelihood_scale": result.embedding.details["config"]["likelihood_scale"]}
            if "config" in result.embedding.details
            else {}
        ),
        "loadavg": list(os.getloadavg()),
    }


def summarise(records: list[dict], args) -> tuple[list[dict], str]:
    rows = []
    for method in args.method_list:
        mine = [r for r in records if r["method"] == method]
        if not mine:
            continue
        row = {"method": method, "seeds": len(mine)}
        for key in ("nmi", "purity", "completeness", "knn_accuracy"):
            values = np.array([r["scores"][key] for r in mine])
            row[key] = (float(values.mean()), float(values.std()))
        row["seconds"] = float(np.mean([r["seconds"] for r in mine]))
        sigma = [r["details"].get("likelihood_scale") for r in mine]
        row["likelihood_scale"] = sigma[0] if method in VARIATIONAL_METHODS else None
        rows.append(row)

    def pm(value) -> str:
        return f"{value[0]:.3f} ± {value[1]:.3f}"

    table = markdown_table(
        ["method", "NMI", "purity", "completeness", f"kNN acc. (k={args.knn_k}, LOO)", "s / run"],
        [
            [r["method"], pm(r["nmi"]), pm(r["purity"]), pm(r["completeness"]),
             pm(r["knn_accuracy"]), r["seconds"]]
            for r in rows
        ],
    )  # fmt: skip
    return rows, table


def main() -> None:
    args = parse_args()
    quiet_lightning()
    torch.set_flush_denormal(True)
    torch.set_num_threads(common.shard_threads(args))
    records = common.run_shard(
        [(seed, method) for seed in args.seed_list for method in args.method_list],
        lambda job: part_path(args, *job),
        lambda job: embed_job(args, *job),
        args,
        describe=lambda job: "seed {} {}".format(*job),
    )
    if records is None:  # one shard of several: the unsharded run assembles
        return
    name = "embed_table" if not args.quick else "embed_table-quick"
    summary, table = summarise(records, args)
    result = {
        "data": "scanpy.datasets.pbmc68k_reduced(): 700 cells x 765 genes, obs 'bulk_labels' "
        "(10 cell types)",
        "runs": records,
        "summary": summary,
        "machine": machine_info(),
        "budget": {
            key: getattr(args, key)
            for key in (
                "pca",
                "epochs",
                "hidden",
                "lr",
                "batch_size",
                "warmup_steps",
                "knn_k",
                "seeds",
            )
        }
        | {"clusters": "one per cell type (10)", "likelihood_scale": "auto"},
    }
    preprocessing = (
        f"standardised genes → {args.pca} principal components" if args.pca
        else "standardised genes"
    )  # fmt: skip
    lines = [
        f"# Embeddings of pbmc68k_reduced (700 cells, 10 cell types; {series(args)})\n",
        f"{preprocessing}; GMM(10) on the 2-D embedding vs bulk_labels; kNN leave-one-out on "
        f"the embedding; variational methods {args.epochs} epochs, mixture prior, σ auto; "
        f"mean ± sd over seeds {args.seeds}.\n",
        table,
    ]
    write_results(name, result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
