"""DDVI's genotype experiment on simulated 1000 Genomes-like data: 2-D embeddings by DD-VAE,
VAE, IAF-VAE, AAE, PCA, t-SNE and UMAP, clustered by a 20-component GMM, scored by purity,
completeness and NMI against the 26 populations and 5 super-populations; and the cost at scale.

Stages (``--stages``, default all):

- ``simulate``: per seed, the 26-population demography of
  :func:`diffvi.data.genotype_simulation.thousand_genomes_demography`, ``--samples-per-population``
  individuals each (133 × 26 = 3,458 ≈ the paper's 3,450), ``--length`` bp, sites with MAF ≥
  ``--maf`` kept (27 Mb gives ~90,000), written as PLINK + labels: the real-data path is then
  exercised end to end.
- ``embed``: per (seed, method): read the PLINK files, quality control, ``--components``
  principal components / 30 (cached per seed), the embedding, GMM(20), scores and seconds. Jobs
  are sharded with ``--shard/--shards`` (one thread each); parts are cached, so a rerun resumes.
  The GMM is fitted to the standardised embedding (centred, divided by its overall sd:
  :func:`~diffvi.evaluation.gmm_cluster`'s scale-free default, issue 23) and, for comparison,
  to the raw one (DDVI's protocol, ``scores_raw``: its ``reg_covar`` floors every component's
  sd at 0.1 in the embedding's own units, which merged PCA's populations).
  The variational methods run ``--epochs`` with likelihood σ ``--likelihood-scale`` (docs/
  results.md: 200 epochs at 0.03, chosen on seed 0); the series is named by both.
- ``scale``: ``--scale-samples-per-population`` × 26 individuals (385 × 26 = 10,010) at
  ``--scale-length`` bp (~100,000 common SNPs), then ``diffvi embed genotypes`` as a separate
  process per ``--scale-methods``, with wall time and peak resident memory (ru_maxrss).

Writes ``benchmarks/results/genotypes-<series>.{json,md}``; ``--assemble-only`` rewrites them
from the saved parts without running anything; ``--rescore`` (with ``--stages embed``) first
re-clusters and re-scores every saved embedding (``parts/s<seed>-<method>.csv``) with the
current GMM protocol, training nothing. A (seed, method) whose part is not on this machine keeps
the record saved in the results JSON; one saved before issue 23 has only the raw-latent scores
and shows "—" in the scale-free columns until it is re-run.

    python benchmarks/genotypes.py --quick                                # CI smoke run
    python benchmarks/genotypes.py --stages simulate                      # then, on two cores:
    python benchmarks/genotypes.py --stages embed --shard 0 --shards 2 &
    python benchmarks/genotypes.py --stages embed --shard 1 --shards 2 &
    python benchmarks/genotypes.py --stages embed,scale                   # gather, then scale
    python benchmarks/genotypes.py --stages embed --rescore               # re-score saved runs
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import machine_info, markdown_table, write_results  # noqa: E402

from diffvi.cli.embed_genotypes import label_scores, write_embedding_csv  # noqa: E402
from diffvi.data.genotype_io import attach_labels, read_labels, read_plink  # noqa: E402
from diffvi.data.genotype_pca import genotype_pcs, quality_control  # noqa: E402
from diffvi.data.genotype_simulation import (  # noqa: E402
    common_sites,
    genotypes_from_tree_sequence,
    simulate_thousand_genomes,
    write_simulation,
)
from diffvi.evaluation.representation import gmm_cluster  # noqa: E402
from diffvi.training.embedding import (  # noqa: E402
    EMBEDDING_METHODS,
    SCALE_CRITERIA,
    VARIATIONAL_METHODS,
    EmbeddingOptions,
    embed_features,
    parse_likelihood_scale,
)
from diffvi.utils.runtime import quiet_lightning  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs" / "genotypes"
STAGES = ("simulate", "embed", "scale")
# The GMM protocol of a record's "scores" (records saved before issue 23 have no "scoring" key:
# their "scores" are the raw-latent ones).
SCORING = "standardised"
# DDVI paper, 1000 Genomes (3,450 individuals, 26 populations), GMM(20) on 2-D latents:
# purity / completeness / NMI against the populations.
PAPER = {"ddvae": (0.45, 0.75, 0.66), "aae": (0.37, 0.76, 0.63)}
# Benchmark methods beyond EMBEDDING_METHODS: (embedding method, EmbeddingOptions fields).
# ddvae-heads: DD-VAE with the official code's learned cluster heads (issue 23 item 6), also
# scored by its nearest head ("scores_heads"); ddvae-heads-official: the same model trained by
# the official code's loop at its learning rate (--official-lr, whatever --lr; the shared
# networks), its wake loss MSE + 0.005 KL; ddvae-heads-official-kl: that loop with the KL
# weight 2σ²/F (F features, σ = --likelihood-scale), at which the wake loss is the Gaussian
# ELBO's at σ (every other row's likelihood) times 2σ²/F.
METHOD_OPTIONS = {
    "ddvae-heads": ("ddvae", {"clustering": "heads"}),
    "ddvae-heads-official": ("ddvae", {"clustering": "heads-official"}),
    "ddvae-heads-official-kl": ("ddvae", {"clustering": "heads-official"}),
}
OFFICIAL_LOOP_LR = 1e-4  # conf/model/diff_vae_autoclustering_mse.yaml: lr
METHODS = (*EMBEDDING_METHODS, *METHOD_OPTIONS)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny data and budgets")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--samples-per-population", type=int, default=133)
    p.add_argument("--length", type=float, default=27e6)
    p.add_argument("--maf", type=float, default=0.01)
    p.add_argument("--components", type=int, default=1000)
    p.add_argument("--clusters", type=int, default=20)
    p.add_argument("--epochs", type=int, default=EmbeddingOptions().epochs)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--official-lr", type=float, default=OFFICIAL_LOOP_LR,
                   help="the official clustering loop's wake learning rate (official 1e-4); "
                   "another value is named in the series")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--likelihood-scale",
        default=EmbeddingOptions().likelihood_scale,
        help="σ of the variational methods' Gaussian likelihood, in units of "
        "std(PC 1); 'median' (the library's default; was 'auto'): the median std "
        "of the components; 'select': chosen per run by held-out pilots over a "
        "grid (issue 23, ~2× the training; the σ chosen is in each record)",
    )
    p.add_argument("--scale-criterion", default=EmbeddingOptions().scale_criterion,
                   choices=SCALE_CRITERIA, help="with --likelihood-scale select (docs/"
                   "methods.md); a non-default one is named in the series")  # fmt: skip
    p.add_argument("--scale-samples-per-population", type=int, default=385)
    p.add_argument("--scale-length", type=float, default=30e6)
    p.add_argument("--scale-methods", default="pca,ddvae")
    p.add_argument("--scale-epochs", type=int, default=5)
    p.add_argument("--rescore", action="store_true",
                   help="with --stages embed: re-cluster and re-score the saved embeddings "
                   "(no training), then assemble")  # fmt: skip
    common.add_shard_arguments(p, STAGES)
    args = common.parse_shard_args(p, sharded_stages=("embed",))
    if args.quick:
        args.seeds, args.samples_per_population, args.length = "0", 8, 2e6
        args.epochs, args.hidden, args.components = 2, 32, 50
        args.scale_samples_per_population, args.scale_length, args.scale_epochs = 10, 2e6, 1
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.likelihood_scale = parse_likelihood_scale(args.likelihood_scale)
    args.method_list = args.methods.split(",")
    if args.rescore:
        if "embed" not in args.stages or args.shards > 1:
            p.error("--rescore re-scores the embed stage's saved runs: --stages embed, one shard")
        args.assemble_only = True  # train nothing
    for name, values, valid in (
        ("methods", args.method_list, METHODS),
        ("scale-methods", args.scale_methods.split(","), EMBEDDING_METHODS),
    ):
        unknown = set(values) - set(valid)
        if unknown:
            p.error(f"unknown {name} {sorted(unknown)}; valid: {list(valid)}")
    if "ddvae-heads-official-kl" in args.method_list and isinstance(args.likelihood_scale, str):
        p.error("ddvae-heads-official-kl weighs its KL by a fixed σ: pass --likelihood-scale X")
    return args


def series(args) -> str:
    if args.quick:
        return "quick"
    sigma = args.likelihood_scale
    sigma = sigma if isinstance(sigma, str) else f"{sigma:g}"  # a rule: select, median
    if sigma == "select" and args.scale_criterion != EmbeddingOptions().scale_criterion:
        sigma += f"-{args.scale_criterion}"
    name = f"n{args.samples_per_population * 26}-e{args.epochs}-sigma{sigma}"
    if args.official_lr != OFFICIAL_LOOP_LR:
        name += f"-olr{args.official_lr:g}"
    return name


def folder(args) -> Path:
    """Training runs and scores of this series."""
    return RUNS / series(args)


def data_folder(args) -> Path:
    """Simulations and their principal components, shared by every series of that size."""
    return RUNS / ("quick" if args.quick else f"n{args.samples_per_population * 26}")


def simulate(prefix: Path, samples_per_population: int, length: float, seed: int, maf: float):
    """Simulate, keep the common sites, write PLINK + labels; returns the record."""
    if prefix.with_suffix(".json").exists():
        return json.loads(prefix.with_suffix(".json").read_text())
    start = time.perf_counter()
    ts = simulate_thousand_genomes(samples_per_population, length, seed)
    genotypes = genotypes_from_tree_sequence(common_sites(ts, maf))
    write_simulation(genotypes, prefix, "plink")
    record = {
        "seed": seed,
        "samples": genotypes.num_samples,
        "sites": ts.num_sites,
        "common_snps": genotypes.num_variants,
        "seconds": round(time.perf_counter() - start, 1),
    }
    prefix.with_suffix(".json").write_text(json.dumps(record, indent=1))
    return record


def simulate_stage(args) -> list[dict]:
    data_folder(args).mkdir(parents=True, exist_ok=True)
    return [
        simulate(data_folder(args) / f"sim-s{seed}", args.samples_per_population, args.length, seed,
                 args.maf)
        for seed in args.seed_list
    ]  # fmt: skip


def load_genotypes(prefix: Path):
    return attach_labels(read_plink(f"{prefix}.bed"), read_labels(f"{prefix}.labels.tsv"))


def principal_components(args, seed: int) -> tuple[np.ndarray, dict]:
    """PCs of seed's simulation (cached as .npy beside it) and the read/QC/PCA seconds."""
    prefix = data_folder(args) / f"sim-s{seed}"
    cache = prefix.parent / f"{prefix.name}-pcs{args.components}.npz"
    if cache.exists():
        saved = np.load(cache)
        return saved["pcs"], json.loads(str(saved["timing"]))
    start = time.perf_counter()
    genotypes = quality_control(load_genotypes(prefix), maf=args.maf)
    read_seconds = time.perf_counter() - start
    k = min(args.components, genotypes.num_samples - 1, genotypes.num_variants)
    pcs, _ = genotype_pcs(genotypes, n_components=k)
    timing = {"read_qc_s": read_seconds, "pca_s": time.perf_counter() - start - read_seconds,
              "snps": genotypes.num_variants, "components": k}  # fmt: skip
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, pcs=pcs, timing=json.dumps(timing))
    os.replace(tmp, cache)
    return pcs, timing


def part_path(args, seed: int, method: str) -> Path:
    """The saved record of one (seed, method); the cluster assignments beside it as CSV."""
    return folder(args) / "parts" / f"s{seed}-{method}.json"


def embed_job(args, seed: int, method: str) -> dict:
    part = part_path(args, seed, method)
    pcs, timing = principal_components(args, seed)
    genotypes = load_genotypes(data_folder(args) / f"sim-s{seed}")
    base, extra = METHOD_OPTIONS.get(method, (method, {}))
    settings = dict(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, hidden=args.hidden,
        likelihood_scale=args.likelihood_scale, scale_criterion=args.scale_criterion, seed=seed,
        device="cpu", progress=False,
    )  # fmt: skip
    if extra.get("clustering") == "heads-official":
        extra = {**extra, "lr": args.official_lr}
    if method == "ddvae-heads-official-kl":
        sigma = args.likelihood_scale  # a number: checked in parse_args
        weight = 2 * sigma**2 / pcs.shape[1]
        extra = {**extra, "extra": {"objective_options": {"kl_weight": weight}}}
    options = EmbeddingOptions(**{**settings, **extra})  # a method's own settings win
    run_dir = folder(args) / "runs" / f"s{seed}-{method}"
    embedding = embed_features(pcs, base, options, run_dir=run_dir)
    clusters, scores = cluster_and_score(genotypes, embedding.coordinates, args, seed)
    if embedding.clusters is not None:  # the model's own clusters (ddvae-heads: nearest head)
        scores["scores_heads"] = label_scores(genotypes, embedding.clusters)
        scores["clusters_used_heads"] = len(np.unique(embedding.clusters))
    part.parent.mkdir(parents=True, exist_ok=True)
    write_embedding_csv(part.with_suffix(".csv"), genotypes, embedding.coordinates, clusters)
    record = {
        "seed": seed,
        "method": method,
        "seconds": embedding.seconds,
        **timing,
        **scores,
        "details": {k: v for k, v in embedding.details.items() if k != "config"},
        # σ in use (a variational run's; "select" resolved, its grid and criteria in details)
        "likelihood_scale": embedding.details.get("config", {}).get("likelihood_scale"),
        "loadavg": list(os.getloadavg()),
    }
    return record


def cluster_and_score(genotypes, coordinates: np.ndarray, args, seed: int) -> tuple:
    """GMM(``--clusters``) labels of the standardised embedding ``[N, 2]`` and the record's
    scoring fields: ``scores`` (that GMM) and ``scores_raw`` (the GMM on the raw coordinates,
    DDVI's protocol and this benchmark's before issue 23), with the number of components each
    GMM left non-empty (``clusters_used``, ``clusters_used_raw``)."""
    clusters = gmm_cluster(coordinates, args.clusters, seed=seed)
    raw = gmm_cluster(coordinates, args.clusters, seed=seed, standardize=False)
    return clusters, {
        "scoring": SCORING,
        "scores": label_scores(genotypes, clusters),
        "scores_raw": label_scores(genotypes, raw),
        "clusters_used": len(np.unique(clusters)),
        "clusters_used_raw": len(np.unique(raw)),
    }


def read_embedding_csv(path: Path) -> tuple[SimpleNamespace, np.ndarray]:
    """The samples and labels (as ``label_scores`` and ``write_embedding_csv`` take them) and
    the coordinates ``[N, 2]`` of an embedding CSV written by :func:`embed_job`."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    supers = [row["super_population"] for row in rows]
    labels = SimpleNamespace(
        samples=[row["sample"] for row in rows],
        num_samples=len(rows),
        populations=[row["population"] for row in rows],
        super_populations=supers if any(supers) else None,
    )
    coordinates = np.array([[float(row["z1"]), float(row["z2"])] for row in rows])
    return labels, coordinates


def rescore_stage(args) -> None:
    """Re-cluster and re-score each saved (seed, method) embedding with the current protocol;
    the part's JSON and CSV (its cluster column) are rewritten, nothing is trained."""
    for seed in args.seed_list:
        for method in args.method_list:
            part = part_path(args, seed, method)
            if not part.with_suffix(".csv").exists():
                where = "no saved embedding" if part.exists() else "not run"
                print(f"rescore: seed {seed} {method}: {where}, skipped", flush=True)
                continue
            labels, coordinates = read_embedding_csv(part.with_suffix(".csv"))
            clusters, scores = cluster_and_score(labels, coordinates, args, seed)
            record = {**json.loads(part.read_text()), **scores} if part.exists() else None
            if record is None:
                print(f"rescore: seed {seed} {method}: embedding without a record, skipped")
                continue
            write_embedding_csv(part.with_suffix(".csv"), labels, coordinates, clusters)
            common.write_json(part, record)
            nmi, old = (record[key]["populations"]["nmi"] for key in ("scores", "scores_raw"))
            print(f"rescore: seed {seed} {method}: NMI {nmi:.3f} (raw latents {old:.3f})")


def with_saved_records(records: list[dict], previous: list[dict]) -> list[dict]:
    """``records`` (this machine's parts) plus the previously assembled records that no part
    here replaces (any seed), in seed and method order: a table assembled on another machine,
    or from other seeds, keeps its rows."""
    have = {(r["seed"], r["method"]) for r in records}
    kept = [r for r in previous if (r["seed"], r["method"]) not in have]
    for r in kept:
        scored = "" if r.get("scoring") == SCORING else " (raw-latent scores only: re-run)"
        print(f"kept the saved record of seed {r['seed']} {r['method']}{scored}", flush=True)
    order = {method: k for k, method in enumerate(METHODS)}
    return sorted(records + kept, key=lambda r: (r["seed"], order.get(r["method"], 99)))


def embed_stage(args) -> list[dict] | None:
    """This shard's embeddings; every saved record when this process assembles, else None."""
    torch.set_num_threads(common.shard_threads(args))
    return common.run_shard(
        [(seed, method) for seed in args.seed_list for method in args.method_list],
        lambda job: part_path(args, *job),
        lambda job: embed_job(args, *job),
        args,
        describe=lambda job: "seed {} {}".format(*job),
    )


def scale_stage(args) -> list[dict]:
    prefix = data_folder(args) / "scale"
    record = simulate(prefix, args.scale_samples_per_population, args.scale_length, 0, args.maf)
    rows = []
    for method in args.scale_methods.split(","):
        out = folder(args) / f"scale-{method}"
        command = [
            str(Path(sys.executable).parent / "diffvi"), "embed", "genotypes",
            "--input", f"{prefix}.bed", "--labels", f"{prefix}.labels.tsv",
            "--method", method, "--out", str(out), "--components", str(args.components),
            "--epochs", str(args.scale_epochs), "--hidden", str(args.hidden),
            "--clusters", str(args.clusters), "--no-progress", "--device", "cpu",
        ]  # fmt: skip
        command += ["--likelihood-scale", str(args.likelihood_scale),
                    "--scale-criterion", args.scale_criterion]  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(out / "log.txt", "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
        seconds = time.perf_counter() - start
        if status != 0:
            raise RuntimeError(f"{' '.join(command)} failed; see {out / 'log.txt'}")
        metrics = json.loads((out / "metrics.json").read_text())
        rows.append({
            "method": method,
            "samples": record["samples"],
            "snps": metrics["num_variants"],
            "epochs": args.scale_epochs if method in VARIATIONAL_METHODS else None,
            "seconds_end_to_end": seconds,
            "embedding_seconds": metrics["seconds"],
            "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
            "nmi_populations": metrics["scores"]["populations"]["nmi"],
            "simulation_seconds": record["seconds"],
        })  # fmt: skip
    return rows


def raw_scores(record: dict) -> dict:
    """A record's scores of the GMM on the raw embedding (the only ones before issue 23)."""
    return record["scores_raw"] if record.get("scoring") == SCORING else record["scores"]


def summarise(records: list[dict], args) -> tuple[list[dict], str]:
    """Mean ± sd over seeds per method: the scale-free scores (over the records that have
    them) and the raw-latent NMI (over every record)."""
    rows, lines = [], []
    for method in METHODS:
        mine = [r for r in records if r["method"] == method]
        if not mine:
            continue
        scored = [r for r in mine if r.get("scoring") == SCORING]
        row = {"method": method, "seeds": len(scored), "seeds_raw": len(mine)}
        for level in ("populations", "super_populations"):
            for key in ("purity", "completeness", "nmi"):
                values = np.array([r["scores"][level][key] for r in scored])
                row[f"{level}_{key}"] = (
                    (float(values.mean()), float(values.std())) if scored else None
                )
            values = np.array([raw_scores(r)[level]["nmi"] for r in mine])
            row[f"{level}_nmi_raw"] = (float(values.mean()), float(values.std()))
        for key in ("clusters_used", "clusters_used_raw"):
            used = [r[key] for r in scored if key in r]
            row[key] = float(np.mean(used)) if used else None
        heads = [r["scores_heads"]["populations"]["nmi"] for r in mine if "scores_heads" in r]
        row["populations_nmi_heads"] = (
            (float(np.mean(heads)), float(np.std(heads))) if heads else None
        )
        row["seconds"] = float(np.mean([r["seconds"] for r in mine]))
        rows.append(row)

    def pm(value) -> str | None:
        return None if value is None else f"{value[0]:.3f} ± {value[1]:.3f}"

    def used(row) -> str | None:
        if row["clusters_used"] is None or row["clusters_used_raw"] is None:
            return None
        return f"{row['clusters_used']:.3g} ({row['clusters_used_raw']:.3g})"

    lines.append(
        markdown_table(
            [
                "method",
                "purity",
                "completeness",
                "NMI",
                "NMI (super-pop.)",
                "NMI, raw GMM (old)",
                "NMI, nearest head",
                "super-pop. NMI, raw GMM (old)",
                f"clusters used of {args.clusters} (raw)",
                "s / run",
                "paper P / C / NMI",
            ],
            [
                [
                    r["method"],
                    pm(r["populations_purity"]),
                    pm(r["populations_completeness"]),
                    pm(r["populations_nmi"]),
                    pm(r["super_populations_nmi"]),
                    pm(r["populations_nmi_raw"]),
                    pm(r.get("populations_nmi_heads")),
                    pm(r["super_populations_nmi_raw"]),
                    used(r),
                    r["seconds"],
                    " / ".join(map(str, PAPER[r["method"]])) if r["method"] in PAPER else None,
                ]
                for r in rows
            ],
        )  # fmt: skip
    )
    if any(r["seeds"] < r["seeds_raw"] for r in rows):
        lines.append(
            "\n— : runs saved before the scale-free GMM (issue 23) whose embeddings are not on "
            "this machine; re-run them to score them. Purity, completeness and NMI are over the "
            "re-scored seeds; the raw-GMM columns over every saved seed."
        )
    chosen = [
        f"seed {r['seed']} {r['method']} {r['likelihood_scale']:g}"
        for r in records
        if "likelihood_scale_selection" in r.get("details", {})
    ]
    if chosen:  # likelihood_scale "select": the grid and criteria are in each run's details
        lines.append("\nσ / std(PC 1) chosen by the held-out pilots: " + ", ".join(chosen) + ".")
    return rows, "\n".join(lines)


def main() -> None:
    args = parse_args()
    quiet_lightning()
    torch.set_flush_denormal(True)
    if args.shards > 1:
        embed_stage(args)  # the embed stage alone; the unsharded run assembles
        return
    name = f"genotypes-{series(args)}"
    result = common.previous_results(name)
    if "simulate" in args.stages and not args.assemble_only:
        result["simulations"] = simulate_stage(args)
    if "embed" in args.stages:
        if args.rescore:
            rescore_stage(args)
        records = embed_stage(args)
        result["runs"] = with_saved_records(records, result.get("runs", []))
        result["summary"], _ = summarise(result["runs"], args)
    if "scale" in args.stages and not args.assemble_only:
        result["scale"] = scale_stage(args)
    result["machine"] = machine_info()
    result["budget"] = {
        key: getattr(args, key)
        for key in ("samples_per_population", "length", "maf", "components", "clusters",
                    "epochs", "hidden", "lr", "batch_size", "likelihood_scale",
                    "scale_criterion", "seeds",
                    "scale_samples_per_population", "scale_length", "scale_epochs")
    }  # fmt: skip
    lines = [f"# Genotype embeddings on simulated 1000 Genomes-like data ({series(args)})\n"]
    if "runs" in result:
        _, table = summarise(result["runs"], args)
        lines += ["## GMM(20) on the 2-D embedding vs the 26 populations (mean ± sd over seeds)\n",
                  "The GMM is fitted to the embedding centred and divided by its overall sd "
                  "(scale-free, issue 23); the raw-GMM columns fit it to the raw coordinates "
                  "(DDVI's protocol, this table's before issue 23).\n",
                  table]  # fmt: skip
    if "scale" in result:
        lines += ["\n## Scale: end to end with `diffvi embed genotypes`\n", markdown_table(
            ["method", "samples", "SNPs", "epochs", "s end to end", "s embedding",
             "peak RSS MB", "NMI"],
            [[r["method"], r["samples"], r["snps"], r["epochs"], r["seconds_end_to_end"],
              r["embedding_seconds"], r["peak_rss_mb"], r["nmi_populations"]]
             for r in result["scale"]],
        )]  # fmt: skip
    write_results(name, result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
