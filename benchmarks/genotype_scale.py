"""Genotype PCA at scale (issue 22): the streaming randomised PCA against the exact one on the
10k simulated cohort, and ``diffvi embed genotypes --method ddvae --pca randomized`` end to end
on cohorts of 10,000-100,000 samples × 100,000 SNPs synthesised by mosaicking haplotypes.

Stages (``--stages``, default all; every file goes to ``--work``, default
/tmp/diffvi-genotype-scale, never into the repository):

- ``simulate``: the base cohort, as the scale stage of benchmarks/genotypes.py simulates it:
  :func:`~diffvi.data.genotype_simulation.simulate_thousand_genomes` with 385 individuals in
  each of the 26 populations (10,010) over 30 Mb, sites with MAF >= 0.01 kept (~104,000),
  written as a ``.trees`` (its haplotypes: the founders of the mosaics) and PLINK + labels.
- ``randomized``: the randomised PCAs of ``accuracy`` alone (to run beside its exact PCA).
- ``accuracy``: on the base ``.bed``, the exact PCA (Gram matrix) against the randomised one
  at each ``--iterations``, ``--components`` components: the largest principal angle between
  the top-2/10/25/k subspaces, the relative error of each of the top 25 variances and of their
  sum and of the sum of all k, and seconds; then the downstream scores, GMM(20) NMI against the
  26 populations, of the ``pca`` embedding and of ``ddvae`` at ``--accuracy-epochs`` over
  ``--seeds``, from either PCA.
- ``scale``: for each ``--sizes`` N, a mosaic cohort of N individuals × ``--snps`` SNPs
  written as a ``.bed``, then ``diffvi embed genotypes --method ddvae --pca randomized`` on it
  as a separate process (``--threads 1``, ``OMP_NUM_THREADS=1``): wall time and peak resident
  memory (``ru_maxrss`` of that child from ``os.wait4``); ``--exact-sizes`` also runs
  ``--pca exact`` at those sizes. Each size's record is saved as it finishes
  (``--work/parts/scale-*.json``), so a rerun resumes.

**Mosaics.** New individual ``i`` belongs to population ``i mod 26`` (the founders' equal
proportions) and gets two haplotypes. Each is a mosaic of segments copied from the founder
haplotypes of its own population: along the SNPs, at every grid point of ``--segment`` SNPs
(500) it switches to a founder haplotype drawn uniformly at random with probability
``--switch`` (0.2), so a segment spans 2,500 SNPs (~0.7 Mb) on average. Per-population allele
frequencies and the LD within segments are the founders', so the structure the PCA finds is the
simulation's, and making 100,000 individuals takes minutes instead of a coalescent simulation of
days. The ``.bed`` is written one grid cell (500 SNPs × N) at a time: the cohort is never in
memory.

    python benchmarks/genotype_scale.py --quick                      # CI smoke run (~1 min)
    python benchmarks/genotype_scale.py --stages simulate,accuracy
    python benchmarks/genotype_scale.py --stages scale --sizes 10000,30000,100000

Writes ``benchmarks/results/genotype-scale[-quick].{json,md}``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import machine_info, markdown_table, write_results  # noqa: E402

STAGES = ("simulate", "randomized", "accuracy", "scale")
POPULATIONS = 26


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny cohorts")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--work", type=Path, default=Path("/tmp/diffvi-genotype-scale"))
    p.add_argument("--samples-per-population", type=int, default=385)
    p.add_argument("--length", type=float, default=30e6)
    p.add_argument("--maf", type=float, default=0.01)
    p.add_argument("--components", type=int, default=100)
    p.add_argument("--iterations", default="4,8", help="randomised PCA passes to compare")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--accuracy-epochs", type=int, default=5)
    p.add_argument("--sizes", default="10000,30000,100000")
    p.add_argument("--exact-sizes", default="10000")
    p.add_argument("--snps", type=int, default=100_000)
    p.add_argument("--segment", type=int, default=500)
    p.add_argument("--switch", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=5, help="ddvae epochs of the scale runs")
    p.add_argument(
        "--likelihood-scale",
        type=float,
        default=0.1,
        help="ddvae's σ (in std(PC 1)), fixed so that no σ-selection pilots run",
    )
    p.add_argument("--pca-iterations", type=int, default=None,
                   help="--pca-iterations of the scale runs (default: the CLI's)")  # fmt: skip
    args = p.parse_args()
    if args.quick:
        args.work = args.work.with_name(args.work.name + "-quick")
        args.samples_per_population, args.length, args.components = 8, 1e6, 10
        args.iterations, args.seeds, args.accuracy_epochs = "2,4", "0", 1
        args.sizes, args.exact_sizes, args.snps, args.epochs = "300,600", "300", 2000, 1
        args.segment = 100
    args.stage_list = args.stages.split(",")
    unknown = set(args.stage_list) - set(STAGES)
    if unknown:
        p.error(f"unknown stages {sorted(unknown)}; valid: {list(STAGES)}")
    return args


def base_prefix(args) -> Path:
    return args.work / f"base-n{args.samples_per_population * POPULATIONS}"


# --------------------------------------------------------------------------------------------
# simulate


def simulate_stage(args) -> dict:
    """The base cohort: .trees (haplotypes), .bed/.bim/.fam, .labels.tsv; cached."""
    from diffvi.data.genotype_simulation import (
        common_sites,
        genotypes_from_tree_sequence,
        simulate_thousand_genomes,
        write_simulation,
    )

    prefix = base_prefix(args)
    record_path = prefix.with_suffix(".json")
    if record_path.exists():
        return json.loads(record_path.read_text())
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ts = common_sites(
        simulate_thousand_genomes(args.samples_per_population, args.length, 0), args.maf
    )
    ts.dump(f"{prefix}.trees")
    genotypes = genotypes_from_tree_sequence(ts)
    write_simulation(genotypes, prefix, "plink")
    record = {
        "samples": genotypes.num_samples,
        "common_snps": genotypes.num_variants,
        "seconds": round(time.perf_counter() - start, 1),
    }
    common.write_json(record_path, record)
    return record


# --------------------------------------------------------------------------------------------
# accuracy


def max_angle(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.linalg import subspace_angles

    return float(np.degrees(subspace_angles(a.astype(np.float64), b.astype(np.float64)).max()))


def nmi_of(coordinates: np.ndarray, populations: list[str], seed: int) -> float:
    from diffvi.evaluation.representation import clustering_scores, gmm_cluster

    clusters = gmm_cluster(coordinates, 20, seed=seed)
    return float(clustering_scores(np.asarray(populations), clusters)["nmi"])


def randomized_accuracy_run(args, q: int) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Scores ``[N, k]``, variances, seconds and SNPs after QC of the randomised PCA with ``q``
    passes on the base .bed (cached in ``parts``; the ``randomized`` stage computes them alone,
    beside the exact PCA of the ``accuracy`` stage)."""
    from diffvi.data.genotype_io import PlinkBlocks
    from diffvi.data.genotype_rpca import randomized_pcs, select_variants

    path = args.work / "parts" / f"accuracy-q{q}-k{args.components}.npz"
    if not path.exists():
        blocks = PlinkBlocks(f"{base_prefix(args)}.bed", num_threads=1)
        start = time.perf_counter()
        selection = select_variants(blocks, maf=args.maf)
        scores, var = randomized_pcs(blocks, args.components, selection=selection, n_iter=q)
        seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        snps = selection.num_variants
        np.savez(path, scores=scores, var=var, seconds=seconds, snps=snps)
    saved = np.load(path)
    return saved["scores"], saved["var"], float(saved["seconds"]), int(saved["snps"])


def accuracy_stage(args) -> dict:
    from diffvi.data.genotype_io import PlinkBlocks, read_labels, read_plink
    from diffvi.data.genotype_pca import genotype_pcs, quality_control
    from diffvi.training.embedding import EmbeddingOptions, embed_features

    prefix = base_prefix(args)
    parts = args.work / "parts"
    k = args.components
    exact_path = parts / f"accuracy-exact-k{k}.npz"
    if exact_path.exists():
        saved = np.load(exact_path)
        exact, exact_var, exact_seconds = saved["scores"], saved["var"], float(saved["seconds"])
    else:
        start = time.perf_counter()
        genotypes = quality_control(read_plink(f"{prefix}.bed", num_threads=1), maf=args.maf)
        exact, exact_var = genotype_pcs(genotypes, n_components=k)
        exact_seconds = time.perf_counter() - start
        del genotypes
        parts.mkdir(parents=True, exist_ok=True)
        np.savez(exact_path, scores=exact, var=exact_var, seconds=exact_seconds)
    print(f"accuracy: exact PCA, k {k}: {exact_seconds:.0f} s", flush=True)

    blocks = PlinkBlocks(f"{prefix}.bed", num_threads=1)
    rows, fast_scores = [], {}
    top = min(25, k)
    for q in [int(x) for x in args.iterations.split(",")]:
        scores, var, seconds, snps = randomized_accuracy_run(args, q)
        fast_scores[q] = scores
        rows.append({
            "n_iter": q,
            "components": k,
            "seconds": seconds,
            "max_angle_deg": {
                str(j): max_angle(exact[:, :j], scores[:, :j])
                for j in sorted({min(2, k), min(10, k), top, k})
            },
            "top_variance_max_rel_error": float(
                np.max(np.abs(var[:top] - exact_var[:top]) / exact_var[:top])
            ),
            "top_variance_sum_rel_error": float(var[:top].sum() / exact_var[:top].sum() - 1),
            "variance_sum_rel_error": float(var.sum() / exact_var.sum() - 1),
        })  # fmt: skip
        print(f"accuracy: randomized q={q}: {rows[-1]}", flush=True)

    labels = read_labels(f"{prefix}.labels.tsv")
    populations = [labels[s][0] for s in blocks.samples]
    q_down = max(fast_scores)
    downstream = []
    for name, scores in (("exact", exact), (f"randomized q={q_down}", fast_scores[q_down])):
        record = {"pca": name, "pca_nmi": nmi_of(scores[:, :2], populations, 0), "ddvae_nmi": []}
        for seed in [int(s) for s in args.seeds.split(",")]:

            def train(seed=seed, scores=scores, name=name) -> dict:
                options = EmbeddingOptions(
                    epochs=args.accuracy_epochs, seed=seed, device="cpu", progress=False,
                    likelihood_scale=args.likelihood_scale,
                )  # fmt: skip
                run_dir = args.work / "runs" / f"{name.replace(' ', '_')}-s{seed}"
                embedding = embed_features(scores, "ddvae", options, run_dir=run_dir)
                nmi = nmi_of(embedding.coordinates, populations, seed)
                return {"seed": seed, "nmi": nmi, "seconds": embedding.seconds}

            tag = name.replace(" ", "_").replace("=", "")
            part = common.run_or_load(parts / f"downstream-{tag}-k{k}-s{seed}.json", train)
            record["ddvae_nmi"].append(part["nmi"])
            print(f"downstream: {name} seed {seed}: NMI {part['nmi']:.3f}", flush=True)
        downstream.append(record)
    return {
        "samples": int(exact.shape[0]),
        "snps": snps,
        "components": k,
        "exact_seconds": exact_seconds,
        "randomized": rows,
        "downstream": downstream,
        "accuracy_epochs": args.accuracy_epochs,
    }


# --------------------------------------------------------------------------------------------
# mosaics


def founder_haplotypes(args):
    """``(cells, populations)``: an iterator over grid cells of ``[cell, 2F]`` int8 founder
    haplotypes (the first ``--snps`` sites of the base .trees), and each haplotype's population
    index ``[2F]``."""
    import tskit

    ts = tskit.load(f"{base_prefix(args)}.trees")
    samples = ts.samples()
    names = sorted(
        {ts.population(int(p)).metadata["name"] for p in ts.tables.nodes.population[samples]}
    )
    code = {name: i for i, name in enumerate(names)}
    populations = np.array(
        [code[ts.population(int(p)).metadata["name"]] for p in ts.tables.nodes.population[samples]]
    )
    snps = min(args.snps, ts.num_sites)

    def cells():
        block = np.empty((args.segment, len(samples)), dtype=np.int8)
        filled = 0
        for j, variant in enumerate(ts.variants(samples=samples)):
            if j == snps:
                break
            block[filled] = variant.genotypes
            filled += 1
            if filled == args.segment:
                yield block[:filled]
                filled = 0
        if filled:
            yield block[:filled]

    return cells(), populations, names, snps


def pack_bed(calls: np.ndarray) -> bytes:
    """SNP-major .bed bytes of calls ``[N, m]`` (0/1/2 copies of A2, no missing; uint8).

    Codes (count_A1=False): 0 → 00, 1 → 10, 2 → 11, i.e. ``c + (c > 0)``; four samples a byte,
    the first in the lowest bits; each SNP padded to whole bytes."""
    n, m = calls.shape
    codes = np.zeros((-(-n // 4) * 4, m), dtype=np.uint8)
    codes[:n] = calls
    codes[:n] += calls > 0
    quads = codes.reshape(-1, 4, m)
    packed = quads[:, 0] | quads[:, 1] << 2 | quads[:, 2] << 4 | quads[:, 3] << 6  # [N/4, m]
    return np.ascontiguousarray(packed.T).tobytes()


def write_mosaic(args, size: int) -> Path:
    """The mosaic cohort of ``size`` individuals as ``mosaic-n<size>.bed`` (cached)."""
    prefix = args.work / f"mosaic-n{size}-m{args.snps}"
    done = prefix.with_suffix(".json")
    if done.exists():
        return Path(f"{prefix}.bed")
    start = time.perf_counter()
    cells, populations, names, snps = founder_haplotypes(args)
    rng = np.random.default_rng(size)
    group = np.arange(size) % len(names)  # each new individual's population
    hap_group = np.repeat(group, 2)  # [2N]
    pools = [np.flatnonzero(populations == g) for g in range(len(names))]

    def draw(which: np.ndarray) -> np.ndarray:
        """A random founder haplotype of the population of each new haplotype in ``which``."""
        out = np.empty(len(which), dtype=np.int64)
        for g, pool in enumerate(pools):
            mine = which[hap_group[which] == g]
            out[np.searchsorted(which, mine)] = rng.choice(pool, size=len(mine))
        return out

    everyone = np.arange(2 * size)
    source = draw(everyone)
    with open(f"{prefix}.bed.tmp", "wb") as bed, open(f"{prefix}.bim", "w") as bim:
        bed.write(bytes([0x6C, 0x1B, 0x01]))
        j = 0
        for cell_index, cell in enumerate(cells):
            if cell_index > 0:
                switching = np.flatnonzero(rng.random(2 * size) < args.switch)
                source[switching] = draw(switching)
            haplotypes = np.ascontiguousarray(cell.T).view(np.uint8)[source]  # [2N, cell]
            bed.write(pack_bed(haplotypes[0::2] + haplotypes[1::2]))
            bim.writelines(f"1\tm{j + i}\t0\t{j + i + 1}\tA\tC\n" for i in range(len(cell)))
            j += len(cell)
    os.replace(f"{prefix}.bed.tmp", f"{prefix}.bed")
    with open(f"{prefix}.fam", "w") as fam, open(f"{prefix}.labels.tsv", "w") as labels:
        labels.write("sample\tpopulation\tsuper_population\n")
        for i, g in enumerate(group):
            fam.write(f"{names[g]}\t{names[g]}_m{i}\t0\t0\t0\t-9\n")
            labels.write(f"{names[g]}_m{i}\t{names[g]}\t\n")
    record = {"samples": size, "snps": j, "seconds": round(time.perf_counter() - start, 1),
              "bed_bytes": Path(f"{prefix}.bed").stat().st_size}  # fmt: skip
    common.write_json(done, record)
    print(f"mosaic n={size}: {record}", flush=True)
    return Path(f"{prefix}.bed")


def scale_run(args, size: int, pca: str) -> dict:
    bed = write_mosaic(args, size)
    mosaic = json.loads(bed.with_suffix(".json").read_text())
    out = args.work / "runs" / f"scale-n{size}-{pca}"
    command = [
        str(Path(sys.executable).parent / "diffvi"), "embed", "genotypes",
        "--input", str(bed), "--labels", str(bed.with_suffix(".labels.tsv")),
        "--method", "ddvae", "--pca", pca, "--components", str(args.components),
        "--epochs", str(args.epochs), "--maf", str(args.maf), "--clusters", "20",
        "--likelihood-scale", str(args.likelihood_scale),
        "--no-progress", "--device", "cpu", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    if args.pca_iterations is not None and pca == "randomized":
        command += ["--pca-iterations", str(args.pca_iterations)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    print(f"scale: n={size} {pca}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed; see {out / 'log.txt'}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "samples": size,
        "snps": metrics["num_variants"],
        "pca": pca,
        "pca_iterations": metrics.get("pca_iterations"),
        "components": metrics["components"],
        "epochs": args.epochs,
        "likelihood_scale": args.likelihood_scale,
        "seconds_end_to_end": seconds,
        "embedding_seconds": metrics["seconds"],
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "cpu_seconds": usage.ru_utime + usage.ru_stime,  # the measure on a shared machine
        "nmi_populations": metrics["scores"]["populations"]["nmi"],
        "mosaic_seconds": mosaic["seconds"],
        "bed_bytes": mosaic["bed_bytes"],
        "loadavg": list(os.getloadavg()),
    }


def scale_stage(args) -> list[dict]:
    rows = []
    exact_sizes = {int(s) for s in args.exact_sizes.split(",") if s}
    for size in [int(s) for s in args.sizes.split(",")]:
        for pca in ["randomized"] + (["exact"] if size in exact_sizes else []):
            part = args.work / "parts" / f"scale-n{size}-{pca}-k{args.components}.json"
            rows.append(common.run_or_load(part, lambda s=size, p=pca: scale_run(args, s, p)))
            print(f"scale: {rows[-1]}", flush=True)
    return rows


# --------------------------------------------------------------------------------------------


def report(result: dict) -> str:
    lines = ["# Genotype PCA at scale: randomised vs exact, and end to end (issue 22)\n"]
    if "accuracy" in result:
        acc = result["accuracy"]
        lines += [
            f"## Accuracy on the simulated cohort ({acc['samples']} samples × {acc['snps']} "
            f"SNPs, {acc['components']} components)\n",
            f"Exact PCA: {acc['exact_seconds']:.0f} s.\n",
            markdown_table(
                [
                    "passes q",
                    "s",
                    *(f"max angle top {j} (°)" for j in acc["randomized"][0]["max_angle_deg"]),
                    "max rel. err. top-25 variances",
                    "rel. err. top-25 sum",
                    "rel. err. sum of all",
                ],
                [
                    [
                        r["n_iter"],
                        r["seconds"],
                        *r["max_angle_deg"].values(),
                        r["top_variance_max_rel_error"],
                        r["top_variance_sum_rel_error"],
                        r["variance_sum_rel_error"],
                    ]
                    for r in acc["randomized"]
                ],
            ),  # fmt: skip
            f"\nDownstream: GMM(20) NMI vs the 26 populations (ddvae: {acc['accuracy_epochs']} "
            "epochs, mean ± sd over seeds)\n",
            markdown_table(
                ["PCA", "pca embedding NMI", "ddvae NMI", "seeds"],
                [
                    [
                        d["pca"],
                        d["pca_nmi"],
                        f"{np.mean(d['ddvae_nmi']):.3f} ± {np.std(d['ddvae_nmi']):.3f}",
                        len(d["ddvae_nmi"]),
                    ]
                    for d in acc["downstream"]
                ],
            ),  # fmt: skip
        ]
    if result.get("scale"):
        lines += [
            "\n## End to end: `diffvi embed genotypes --method ddvae` on mosaic cohorts\n",
            markdown_table(
                [
                    "samples",
                    "SNPs",
                    "PCA",
                    "q",
                    "components",
                    "epochs",
                    "s end to end",
                    "s embedding",
                    "CPU s",
                    "peak RSS MB",
                    "NMI",
                    ".bed MB",
                ],
                [
                    [
                        r["samples"],
                        r["snps"],
                        r["pca"],
                        r["pca_iterations"],
                        r["components"],
                        r["epochs"],
                        r["seconds_end_to_end"],
                        r["embedding_seconds"],
                        r.get("cpu_seconds"),
                        r["peak_rss_mb"],
                        r["nmi_populations"],
                        r["bed_bytes"] / 1e6,
                    ]
                    for r in result["scale"]
                ],
            ),  # fmt: skip
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    name = "genotype-scale" + ("-quick" if args.quick else "")
    simulation = simulate_stage(args)
    if "randomized" in args.stage_list:
        for q in [int(x) for x in args.iterations.split(",")]:
            randomized_accuracy_run(args, q)
    accuracy = accuracy_stage(args) if "accuracy" in args.stage_list else None
    new = scale_stage(args) if "scale" in args.stage_list else []
    result = common.previous_results(name)  # now: another process may have written meanwhile
    result["simulation"] = simulation
    if accuracy is not None:
        result["accuracy"] = accuracy
    done = {(r["samples"], r["pca"]) for r in new}
    kept = [r for r in result.get("scale", []) if (r["samples"], r["pca"]) not in done]
    result["scale"] = sorted(kept + new, key=lambda r: (r["pca"], r["samples"]))
    result["machine"] = machine_info()
    result["budget"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    markdown = report(result)
    write_results(name, result, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
