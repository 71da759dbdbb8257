"""Image diffusion priors on MNIST and Fashion-MNIST: linear, cosine and learned (VDM) schedules
at equal training steps, scored by test bits/dim and classifier-FID (issue 4's benchmark).

Configurations (all the same UNet, batch, optimiser and steps; EMA weights are scored):

- ``linear-vdm``, ``cosine-vdm``, ``learned-vdm``: trained by the VDM continuous-time bound
  (the comparison of Kingma et al. 2021, Table 2 style: only the schedule differs);
- ``cosine-simple``: trained by DDPM's simple ε-loss (better samples, looser bound) — the
  configuration exported as the named prior (``diffvi.load("mnist")``).

Per run (a part file ``results/diffusion_mnist/<series>/<dataset>-<config>.json``, written as
soon as the run is scored, so an interrupted benchmark resumes where it stopped):

- ``test_bpd`` (± s.e.): the VDM bound in bits/dim on the whole test split, one (t, ε) draw per
  image (the bound is unbiased in them);
- ``fid``: classifier-FID (feature space of a small CNN trained on the same data,
  ``diffvi.evaluation.sample_quality``) of ``--eval-samples`` DDIM-``--sample-steps`` samples
  against as many test images, beside ``fid_floor``: the same metric between two disjoint real
  sets of that size (test vs train);
- ``nn_median`` / ``nn_held_out_median``: median L2 distance of samples, and of held-out test
  images, to their nearest training image (samples that copied training images would be ≈ 0);
- ``train_seconds``, ``steps_per_second``, ``sample_images_per_second`` (DDIM);
- the learned schedule's final endpoints γ₀, γ₁.

  python benchmarks/diffusion_mnist.py --quick                          # CI smoke (~2 min)
  python benchmarks/diffusion_mnist.py --datasets mnist --steps 2500    # one data set
  python benchmarks/diffusion_mnist.py --assemble-only --steps 2500     # table from the parts
  python benchmarks/diffusion_mnist.py --shard 0 --shards 2 &           # on two cores, then
  python benchmarks/diffusion_mnist.py --shard 1 --shards 2 &           #   without --shard
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import common
import torch
from common import RESULTS_DIR, machine_info, markdown_table, write_results

CONFIGS: dict[str, dict] = {
    "linear-vdm": {"schedule": "linear", "loss_type": "vdm"},
    "cosine-vdm": {"schedule": "cosine", "loss_type": "vdm"},
    "learned-vdm": {"schedule": "learned", "loss_type": "vdm"},
    "cosine-simple": {"schedule": "cosine", "loss_type": "simple"},
}
DATASETS = ("mnist", "fashion-mnist")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny steps and samples")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--steps", type=int, default=2500, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps for FID samples")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default="runs/bench-diffusion")
    p.add_argument("--export-dir", default=None, help="copy cosine-simple EMA weights here")
    common.add_shard_arguments(p)
    args = common.parse_shard_args(p)
    if args.quick:
        args.steps, args.eval_samples, args.sample_steps = 30, 100, 10
        args.runs_dir = "runs/bench-diffusion-quick"
    return args


def series_name(args: argparse.Namespace) -> str:
    return "quick" if args.quick else f"steps{args.steps}-c{args.base_channels}"


def part_path(args: argparse.Namespace, dataset: str, name: str) -> Path:
    return RESULTS_DIR / "diffusion_mnist" / series_name(args) / f"{dataset}-{name}.json"


def run_one(dataset: str, name: str, args: argparse.Namespace) -> dict:
    from diffvi.data import load_dataset
    from diffvi.evaluation.likelihood import diffusion_bits_per_dim
    from diffvi.evaluation.sample_quality import (
        classifier_fid,
        load_or_train_feature_classifier,
        nearest_neighbour_summary,
    )
    from diffvi.training import DiffusionConfig, fit, load, read_spec

    run_dir = Path(args.runs_dir) / series_name(args) / f"{dataset}-{name}"
    config = DiffusionConfig(
        dataset=dataset,
        base_channels=args.base_channels,
        batch_size=args.batch_size,
        lr=args.lr,
        max_steps=args.steps,
        val_every_n_steps=max(args.steps // 5, 1),
        val_size=500,
        seed=args.seed,
        **CONFIGS[name],
    )
    resume = (run_dir / "checkpoints" / "last.ckpt").exists()
    started = time.perf_counter()
    fit(config, run_dir, resume=resume, progress_bar=False, accelerator="cpu")
    train_seconds = time.perf_counter() - started
    model, spec = load(run_dir).model, read_spec(run_dir)

    test = load_dataset(dataset, "test").images
    train = load_dataset(dataset, "train").images
    bpd, bpd_se = diffusion_bits_per_dim(model, test, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    samples = torch.cat(
        [
            model.sample(
                (n, *test.shape[1:]), steps=args.sample_steps, sampler="ddim", generator=gen
            )
            for n in _chunks(args.eval_samples, 250)
        ]
    )
    sample_seconds = time.perf_counter() - started
    classifier = load_or_train_feature_classifier(dataset, progress=False)
    n = args.eval_samples
    perm = torch.randperm(len(train), generator=gen)[:n]
    fid = classifier_fid(classifier, samples, test[:n])
    floor = classifier_fid(classifier, train[perm], test[:n])
    nn = nearest_neighbour_summary(samples, train, test[:n])
    grid_dir = Path(args.runs_dir) / series_name(args) / "grids"
    _save_grid(samples[:64], grid_dir / f"{dataset}-{name}.png")
    if args.export_dir and name == "cosine-simple":
        shutil.copytree(run_dir / "export", Path(args.export_dir) / dataset, dirs_exist_ok=True)
    result = {
        "dataset": dataset,
        "config": name,
        **CONFIGS[name],
        "steps": spec["metadata"]["steps"],
        "test_bpd": bpd,
        "test_bpd_se": bpd_se,
        "fid": fid,
        "fid_floor": floor,
        "eval_samples": n,
        "sample_steps": args.sample_steps,
        "nn_median": nn["sample_median"],
        "nn_held_out_median": nn["held_out_median"],
        "train_seconds": train_seconds,
        "steps_per_second": args.steps / train_seconds if not resume else None,
        "sample_images_per_second": n / sample_seconds,
        "gamma_0": model.schedule.gamma_min,
        "gamma_1": model.schedule.gamma_max,
        "params": sum(p.numel() for p in model.denoiser.parameters()),
        "resumed": resume,
    }
    print(json.dumps(result), flush=True)
    return result


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]


def _save_grid(images: torch.Tensor, path: Path) -> None:
    from diffvi.evaluation.plots import save_image_grid

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(images, path, nrow=8)


def assemble(args: argparse.Namespace, records: list[dict]) -> None:
    rows = []
    for r in records:
        rows.append(
            [
                r["dataset"],
                r["config"],
                r["steps"],
                f"{r['test_bpd']:.3f} ± {r['test_bpd_se']:.3f}",
                r["fid"],
                r["fid_floor"],
                r["nn_median"],
                r["nn_held_out_median"],
                f"{r['gamma_0']:.2f} / {r['gamma_1']:.2f}",
                r["steps_per_second"],
                r["sample_images_per_second"],
            ]
        )
    header = [
        "data",
        "config",
        "steps",
        "test bits/dim",
        "FID",
        "FID floor",
        "NN dist",
        "NN held-out",
        "γ₀ / γ₁",
        "train steps/s",
        "DDIM img/s",
    ]
    md = (
        f"# Diffusion priors, series {series_name(args)}\n\n"
        f"UNet base {args.base_channels} channels (1, 2, 2), batch {args.batch_size}, Adam lr "
        f"{args.lr}, {args.steps} steps, EMA weights; FID over {args.eval_samples} DDIM-"
        f"{args.sample_steps} samples, floor = two real sets of that size.\n\n"
        + markdown_table(header, rows)
    )
    write_results(
        f"diffusion_mnist-{series_name(args)}",
        {"machine": machine_info(), "settings": vars(args), "runs": records},
        md,
    )
    print(md)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    records = common.run_shard(
        [(d, c) for d in args.datasets.split(",") for c in args.configs.split(",")],
        lambda job: part_path(args, *job),
        lambda job: run_one(*job, args),
        args,
    )
    if records is not None:
        assemble(args, records)


if __name__ == "__main__":
    main()
