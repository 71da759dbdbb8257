"""DDVI paper, unsupervised MNIST table (Piriyakulkij, Wang & Kuleshov 2024, Table 2 and the
sleep-term ablation): 2-D latents under the pinwheel, swiss-roll and square priors, for VAE,
IAF-VAE, AAE and DD-VAE (with and without the sleep term, and ``ddvae-official``: the official
code's two-stage recipe, ``diffvi train ddvae --recipe official``, its stages splitting the
run's budget, its latents the deterministic DDIM map's), same epochs, several seeds.

Per run (one part file ``results/ddvi_mnist/<series>/<prior>-<method>-s<seed>.json``, written as
soon as the run is done, so an interrupted benchmark resumes where it stopped):

- ``elbo``: the test bound in nats per image, one posterior draw per image (ELBO for VAE, IAF
  and AAE; DDVI's auxiliary bound, β_reg = 1, for DD-VAE), and its two parts ``rec``
  = E_q log p(x|z) and ``reg`` = −(log q − log p(z)) (with log r(y|z) and the chain for DD-VAE);
- ``paper_elbo``: the figure the paper calls the per-pixel ELBO, computed as the official code
  does (``get_elbo``): mean-per-pixel reconstruction (BCE averaged over the 784 pixels) plus the
  per-image regulariser, i.e. ``rec / 784 + reg``. It mixes units; it is reported only to set
  our runs beside the paper's numbers;
- ``log_px``: importance-sampled log p(x) (k = ``--eval-k``) on the first ``--eval-size`` test
  images: the one figure that compares models trained with different regulariser weights;
- ``latent_nll_official``: DDVI's latent NLL (KDE of the test latents, one draw per image,
  bandwidths (0.05, 0.8, 0.1, 0.3, 0.5)) scored at 10,000 of the **official code's** prior
  samples (:func:`diffvi.distributions.official_prior_samples`: the swiss roll without noise, the
  square with noise across the edge only), whatever prior the run trained on: the paper's
  column (pinwheel, swiss roll and square only);
- ``latent_nll``: the same KDE scored at 10,000 samples of the run's own training prior
  (smoothed, isotropic square, swiss roll at σ = 0.1): the figure of the earlier tables;
- ``knn``: kNN accuracy (k = 20) fitted on the 60k train latents with all their labels, scored
  on the test latents (one draw per image): the official ``run.py`` protocol, and the paper's
  "Acc" of its semi-supervised table too;
- ``purity``, ``completeness``, ``nmi``: a 10-component GMM fitted to the test latents,
  scored against the digit classes (DDVI's clustering protocol);
- ``seconds_per_epoch`` and the epoch-cost ratio of each method to the VAE;
- with ``--labelled N`` (semi-supervised, exactly N labelled training images): ``accuracy`` of
  argmax q(l|x) and ``latent_accuracy`` of argmax_l p(l|z) (the prior partition one posterior
  draw falls in) on the test set. AAE has no semi-supervised form here and is skipped. The
  paper's semi-supervised accuracies stand beside ``knn``, the figure its code computes.
  ``--semi-posterior`` picks q(z, l|x): ``conditional`` (the library's default, q(l|x)
  q(z|x, l), latents from the posterior of argmax q(l|x); series ``…-semiN-conditional``) or
  ``factorised`` (q(z|x) q(l|x); series ``…-semiN``, the earlier tables).

Each run also saves its test and train latents (``latents.pt`` in its run folder: ``test``,
``train``, ``test_labels``, ``train_labels``) so that they can be re-scored without training.

``--priors`` also takes ``mixture`` (the learnable 10-component Gaussian mixture, for
clustering).

Every model trains through the library's entry point (``diffvi.training.fit``), as
``diffvi train vae`` / ``diffvi train ddvae`` would; data: MNIST grey levels with a Bernoulli
(BCE) likelihood, as the official code trains. Shared settings: MLPs of ``--hidden`` SiLU units,
batch 128, Adam (PyTorch defaults) at lr 1e-3.

  python benchmarks/ddvi_mnist.py --quick                       # CI smoke run (~5 min)
  python benchmarks/ddvi_mnist.py --epochs 5 --seeds 0,1,2 --jobs 2    # this machine's budget
  python benchmarks/ddvi_mnist.py --assemble-only --epochs 5    # rebuild the table from parts
"""

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import common
import torch
from common import RESULTS_DIR, machine_info, markdown_table, write_results

PRIORS = ("pinwheel", "swiss-roll", "square")
OPTIONAL_PRIORS = ("mixture",)
# method -> TrainConfig fields on top of the shared ones (BENCH_CONFIG).
METHODS: dict[str, dict] = {
    "vae": {"objective": "elbo", "posterior": "gaussian"},
    "iaf": {"objective": "elbo", "posterior": "iaf"},
    "aae": {"objective": "aae", "posterior": "gaussian"},
    "ddvae": {"objective": "ddvi", "posterior": "diffusion"},
    "ddvae-nosleep": {"objective": "ddvi", "posterior": "diffusion", "beta_sleep": 0.0},
    # the official recipe (stage 1 then stage 2, weights per image; not a bound)
    "ddvae-official": {
        "objective": "ddvi-official",
        "posterior": "diffusion",
        "conditional": False,
        "beta_reg": 0.01 * 784,
        "beta_sleep": 784.0,
        "stage2": {},
    },
}
BENCH_CONFIG = {
    "dataset": "mnist",
    "likelihood": "bernoulli",
    "latent_dims": [2],
    "activation": "silu",
    "k": 1,
    "batch_size": 128,
    "lr": 1e-3,
    "adam": "torch",
    "val_size": 500,
}
# The paper's Table 2 (unsupervised MNIST, 2-D latents), per prior: "per-pixel ELBO"
# (see paper_elbo above) and latent NLL; the sleep ablation's latent NLL (DDVI without L_sleep).
PAPER = {
    "pinwheel": {"ddvae": (-3.88, 1.27), "iaf": (-4.19, None), "ddvae-nosleep": (None, 2.12)},
    "mixture": {},
    "swiss-roll": {"ddvae": (-5.03, 3.86), "iaf": (-5.10, None), "ddvae-nosleep": (None, 5.25)},
    "square": {"ddvae": (-3.79, 1.56), "iaf": (-3.97, None), "ddvae-nosleep": (None, 2.97)},
}
for _paper in PAPER.values():  # the paper's DDVI is the official recipe
    if "ddvae" in _paper:
        _paper["ddvae-official"] = _paper["ddvae"]
# Semi-supervised accuracy with 1000 labels in the paper (DDVI), per prior: kNN-20 on the latents
# (the official run.py's only accuracy), so it stands beside our kNN column.
PAPER_SEMI = {"pinwheel": 0.95, "swiss-roll": 0.92, "square": 0.90}
PARTS = RESULTS_DIR / "ddvi_mnist"


def part_path(series: str, prior: str, method: str, seed: int) -> Path:
    return PARTS / series / f"{prior}-{method}-s{seed}.json"


@torch.no_grad()
def test_bound(module, x: torch.Tensor, batch_size: int = 500) -> dict:
    """Mean test bound (one draw per image) and its parts, nats per image; the paper's mixed
    per-pixel figure rec/F + reg."""
    from diffvi.objectives.base import log_density_ratio

    model, posterior = module.model, module.posterior
    rec_sum = reg_sum = 0.0
    for batch in x.split(batch_size):
        s = posterior.sample(batch, 1)
        rec_sum += float(model.log_likelihood(batch, s.z).double().sum())
        reg_sum += float(-log_density_ratio(model, s).double().sum())
    rec, reg = rec_sum / len(x), reg_sum / len(x)
    return {"elbo": rec + reg, "rec": rec, "reg": reg, "paper_elbo": rec / model.data_dim + reg}


@torch.no_grad()
def test_accuracies(module, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> dict:
    """Test accuracy of argmax q(l|x) and of argmax_l p(l|z) on the latents ``z [N, 2]``."""
    from diffvi.objectives.semisupervised import prior_log_responsibilities

    predicted = torch.cat([module.label_classifier(b).argmax(-1) for b in x.split(1000)])
    picked = prior_log_responsibilities(module.model.prior, z.double()).argmax(-1)
    return {
        "accuracy": float((predicted == y).double().mean()),
        "latent_accuracy": float((picked == y).double().mean()),
    }


def run_one(task: tuple) -> dict:
    """The part record of one (prior, method, seed): saved, or trained, evaluated and saved."""
    prior, method, seed, args = task
    return common.run_or_load(
        part_path(args.series, prior, method, seed), lambda: train_and_score(*task)
    )


def train_and_score(prior: str, method: str, seed: int, args: argparse.Namespace) -> dict:
    """Train and evaluate one (prior, method, seed); returns the part record."""
    torch.set_num_threads(args.threads)
    from diffvi.cli.embed import NUM_PRIOR_SAMPLES
    from diffvi.data import load_dataset
    from diffvi.distributions import OFFICIAL_REFERENCE_PRIORS, official_prior_samples
    from diffvi.evaluation import (
        clustering_scores,
        estimate_log_likelihood,
        gmm_cluster,
        knn_accuracy,
        latent_nll,
    )
    from diffvi.evaluation.representation import embed_latents
    from diffvi.training import TrainConfig, fit
    from diffvi.training.callbacks import PosteriorWarmup
    from diffvi.utils.runtime import configure_numerics

    configure_numerics(flush_denormal=True)
    fields = {**BENCH_CONFIG, **METHODS[method], "prior": prior, "seed": seed}
    fields.update(hidden=[[args.hidden, args.hidden]], max_epochs=args.epochs)
    fields.update(max_steps=args.max_steps, num_labelled=args.labelled)
    if args.labelled:
        fields["semi_posterior"] = args.semi_posterior
    fields["smooth_prior"] = args.smooth_prior and prior in PRIORS
    if fields["objective"] == "ddvi":
        fields["beta_reg"] = args.beta_reg
    config = TrainConfig(**fields)
    run_dir = Path(args.run_root) / args.series / f"{prior}-{method}-s{seed}"
    warmup = PosteriorWarmup(args.warmup_steps if config.posterior == "diffusion" else 0)
    start = time.perf_counter()
    module = fit(
        config,
        run_dir,
        progress_bar=False,
        callbacks=[warmup],
        checkpoint_every_n_epochs=args.epochs,
    )
    train_seconds = time.perf_counter() - start - warmup.seconds
    trainer, module = module.trainer, module.family.eval()

    test = load_dataset("mnist", "test")
    x_test, y_test = test.images[: args.test_size], test.labels[: args.test_size]
    train = load_dataset("mnist", "train")
    x_train, y_train = train.images[: args.knn_train_size], train.labels[: args.knn_train_size]
    torch.manual_seed(seed)
    start = time.perf_counter()
    bound = test_bound(module, x_test)
    estimate = estimate_log_likelihood(
        module.model, module.posterior, x_test[: args.eval_size], k=args.eval_k
    )
    generator = torch.Generator().manual_seed(seed)
    official = config.objective == "ddvi-official"
    if official:
        module.posterior.sampler = "ddim"  # its latents are the DDIM map's, as it trained
    z_test = embed_latents(module.posterior, x_test, generator=generator)
    z_train = embed_latents(module.posterior, x_train, generator=generator)
    if official:
        module.posterior.sampler = "ddpm"
    prior_samples = module.model.prior.sample((NUM_PRIOR_SAMPLES,), generator=generator)
    torch.save(
        {"test": z_test, "train": z_train, "test_labels": y_test, "train_labels": y_train},
        run_dir / "latents.pt",
    )
    official = {}
    if prior in OFFICIAL_REFERENCE_PRIORS:
        reference = official_prior_samples(
            prior, NUM_PRIOR_SAMPLES, torch.Generator().manual_seed(seed)
        )
        official["latent_nll_official"] = latent_nll(z_test.double(), reference)
    result = {
        **bound,
        "log_px": estimate.mean,
        "log_px_stderr": estimate.mean_stderr,
        **official,
        "latent_nll": latent_nll(z_test.double(), prior_samples.double()),
        "knn": knn_accuracy(z_train, y_train, z_test, y_test, k=20),
        **clustering_scores(y_test, gmm_cluster(z_test, 10, seed=seed)),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_seconds": round(train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / max(1, trainer.current_epoch), 1),
        "eval_seconds": round(time.perf_counter() - start, 1),
        "warmup_steps": warmup.steps,
        "warmup_seconds": round(warmup.seconds, 1),
    }
    if args.labelled:
        result.update(test_accuracies(module, x_test, y_test, z_test))
    return {
        "prior": prior,
        "method": method,
        "seed": seed,
        "result": result,
        "config": config.to_dict(),
        "run_dir": str(run_dir),
        "machine": machine_info(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _mean_sd(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _fmt(values: list[float], digits: int = 2) -> str:
    mean, sd = _mean_sd(values)
    return f"{mean:.{digits}f}" if math.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _cell(results: list[dict], key: str, digits: int = 3) -> str | None:
    """``mean ± sd`` of ``key`` over runs, or None where a run lacks it (older part files)."""
    if not all(key in r for r in results):
        return None
    return _fmt([r[key] for r in results], digits)


def assemble(args: argparse.Namespace) -> dict:
    """Gather the part files of ``args.series`` into the JSON and markdown tables."""
    parts = common.read_parts(PARTS / args.series)
    groups: dict[tuple[str, str], list[dict]] = {}
    for part in parts:
        groups.setdefault((part["prior"], part["method"]), []).append(part["result"])
    vae_epoch = {
        prior: _mean_sd([r["seconds_per_epoch"] for r in groups[(prior, "vae")]])[0]
        for prior in (*PRIORS, *OPTIONAL_PRIORS)
        if (prior, "vae") in groups
    }
    rows, summary = [], {}
    semi = any("accuracy" in part["result"] for part in parts)
    for prior in (*PRIORS, *OPTIONAL_PRIORS):
        for method in METHODS:
            results = groups.get((prior, method))
            if not results:
                continue
            paper_elbo, paper_nll = PAPER[prior].get(method, (None, None))
            if semi:
                paper_elbo = paper_nll = None  # the paper's table is the unsupervised one
            ratio = None
            if prior in vae_epoch:
                ratio = _mean_sd([r["seconds_per_epoch"] for r in results])[0] / vae_epoch[prior]
            keys = ["elbo", "paper_elbo", "log_px", "latent_nll_official", "latent_nll", "knn"]
            keys += ["purity", "nmi"]
            keys += ["accuracy", "latent_accuracy"] if semi else []
            stats = {
                key: _mean_sd([r[key] for r in results])
                for key in keys
                if all(key in r for r in results)
            }
            summary[f"{prior}/{method}"] = {
                "seeds": len(results),
                **{k: {"mean": m, "sd": s} for k, (m, s) in stats.items()},
                "epoch_cost_vs_vae": ratio,
            }
            rows.append(
                [
                    prior,
                    method,
                    len(results),
                    _fmt([r["elbo"] for r in results], 1),
                    _fmt([r["log_px"] for r in results], 1),
                    _fmt([r["paper_elbo"] for r in results]),
                    paper_elbo,
                    _cell(results, "latent_nll_official", 2),
                    paper_nll,
                    _fmt([r["latent_nll"] for r in results]),
                    _fmt([r["knn"] for r in results], 3),
                    *([PAPER_SEMI.get(prior) if method == "ddvae" else None] if semi else []),
                    _cell(results, "purity"),
                    _cell(results, "nmi"),
                    *(
                        [_cell(results, "accuracy"), _cell(results, "latent_accuracy")]
                        if semi
                        else []
                    ),
                    None if ratio is None else f"{ratio:.2f}",
                ]
            )
    header = [
        "prior",
        "method",
        "seeds",
        "test bound (nats/image)",
        "log p̂(x)",
        "paper-style ELBO",
        "paper",
        "latent NLL (official samples)",
        "paper",
        "latent NLL (training prior)",
        "kNN-20 acc",
        *(["paper acc (kNN-20)"] if semi else []),
        "GMM purity",
        "GMM NMI",
        *(["acc q(l\\|x)", "acc p(l\\|z)"] if semi else []),
        "epoch cost / VAE",
    ]
    first = parts[0]["config"] if parts else {}
    warmup = max((p["result"]["warmup_steps"] for p in parts), default=0)
    kind = "semi-supervised" if semi else "unsupervised"
    md = (
        f"## DDVI {kind} MNIST (series `{args.series}`)\n\n"
        f"Budget: {first.get('max_epochs')} epochs per run (max_steps {first.get('max_steps')}); "
        f"hidden {first.get('hidden')}, batch {first.get('batch_size')}, lr {first.get('lr')}; "
        f"prior density: {'kernel-smoothed (official)' if first.get('smooth_prior') else 'exact'}; "
        f"DD-VAE β_reg = {args.beta_reg}, T = {first.get('diffusion_steps')}, posterior "
        f"warm-up {warmup} steps on the prior "
        "(not counted in the epoch cost). "
        "Mean ± sd over seeds. The paper trains its models for 100–200 epochs on a GPU, so the "
        "absolute figures are not comparable; the ordering is. 'paper-style ELBO' = "
        "rec/784 + reg, the official code's mixed-unit figure (see the script's docstring). "
        "Latent NLL: a KDE of the test latents at 10,000 samples of the official code's prior "
        "(the paper's column; — for runs made before it was scored) and of the run's own "
        "training prior. kNN-20: fitted on the 60k train latents, scored on the test latents "
        "(the official protocol; the paper's semi-supervised 'Acc' is this figure).\n\n"
        + markdown_table(header, rows)
    )
    write_results(
        f"ddvi_mnist_{args.series}",
        {"series": args.series, "beta_reg": args.beta_reg, "summary": summary, "runs": parts},
        md,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CI-sized: 60 steps, small eval")
    parser.add_argument("--priors", default=",".join(PRIORS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--beta-reg", type=float, default=0.01, help="DD-VAE's β_reg")
    parser.add_argument(
        "--warmup-steps", type=int, default=500, help="DD-VAE posterior warm-up on the prior"
    )
    parser.add_argument(
        "--smooth-prior",
        action="store_true",
        help="score the 2-D priors with the official code's kernel-smoothed density",
    )
    parser.add_argument(
        "--labelled", type=int, default=0, help="semi-supervised: labelled training images"
    )
    parser.add_argument(
        "--semi-posterior",
        choices=("conditional", "factorised"),
        default="conditional",
        help="with --labelled: q(l|x) q(z|x, l) (conditional) or q(z|x) q(l|x) (factorised)",
    )
    parser.add_argument("--test-size", type=int, default=10_000)
    parser.add_argument("--knn-train-size", type=int, default=60_000)
    parser.add_argument("--eval-size", type=int, default=1000, help="test images for log p̂(x)")
    parser.add_argument("--eval-k", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--series", default=None, help="default: full-e<epochs> or quick")
    parser.add_argument("--run-root", default="runs/benchmarks/ddvi_mnist")
    common.add_shard_arguments(parser, shards=False)  # --jobs runs in parallel instead
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.max_steps, args.warmup_steps = 1, 60, 20
        args.test_size, args.knn_train_size, args.eval_size, args.eval_k = 1000, 2000, 100, 10
    semi = f"-semi{args.labelled}" if args.labelled else ""
    if args.labelled and args.semi_posterior == "conditional":
        semi += "-conditional"  # the factorised series kept the name -semiN
    suffix = semi + (f"-smooth-b{args.beta_reg:g}" if args.smooth_prior else "")
    args.series = args.series or ("quick" if args.quick else f"full-e{args.epochs}") + suffix
    priors, methods = args.priors.split(","), args.methods.split(",")
    if args.labelled:  # no semi-supervised AAE or official recipe here
        methods = [m for m in methods if m not in ("aae", "ddvae-official")]
    all_priors = (*PRIORS, *OPTIONAL_PRIORS)
    for name, chosen, known in (("prior", priors, all_priors), ("method", methods, METHODS)):
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise SystemExit(f"unknown {name}s {unknown}; choose from {sorted(known)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.assemble_only:
        # DD-VAE runs first: they are the longest, and the pool then fills in the short ones.
        order = sorted(methods, key=lambda m: not m.startswith("ddvae"))
        tasks = [
            (prior, method, seed, args)
            for seed in seeds
            for method in order
            for prior in priors
            if not part_path(args.series, prior, method, seed).exists()
        ]
        print(f"{len(tasks)} runs to do in series {args.series!r}", flush=True)
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for record in pool.map(run_one, tasks):
                r = record["result"]
                print(
                    f"{record['prior']:>10} {record['method']:>14} s{record['seed']}: "
                    f"bound {r['elbo']:.1f}  log p̂(x) {r['log_px']:.1f}  "
                    f"latent NLL {r.get('latent_nll_official', math.nan):.2f} (official "
                    f"samples) {r['latent_nll']:.2f} (training prior)  kNN {r['knn']:.3f}  "
                    f"{r['seconds_per_epoch']} s/epoch",
                    flush=True,
                )
    summary = assemble(args)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
