"""VAE-DGP (Dai et al. 2016) against a Bayesian GP-LVM and a VAE of the same latent width, and
deep GP regression against an exact GP.

Stages (``--stages``, default both):

- ``unsupervised``: on Frey faces (1772 train / 193 test) and an MNIST subset (first
  ``--mnist-train`` train / ``--mnist-test`` test images), pixel values in [0, 1]: VAE-DGP with 1,
  2 and 3 GP layers (latent widths 5 | 10,5 | 20,10,5), a Bayesian GP-LVM (one layer, width 5) and
  a VAE (latent 5, one hidden layer of 200 tanh units, Gaussian likelihood with a learned σ per
  pixel floored at 0.01), each trained for ``--steps`` minibatch steps of 100 images. Reported: the
  test bound per image (VAE-DGP: from the recognition model and after test-time refinement of q;
  GP-LVM: refined q; VAE: ELBO and the K = 1000 importance-weighted estimate of log p(y)), the
  imputation RMSE of the hidden half of each test image's pixels (random 50 %; the same masks for
  every model), and seconds per epoch. Imputation fits q of each test image to its observed pixels
  (``--refine-steps`` Adam steps, model held fixed) for every model, starting from the recognition
  model's / encoder's q of the image with the column means filled in; the recognition model's own q
  is reported too. Runs are sharded with ``--shard/--shards`` (one thread each) and cached in
  ``benchmarks/runs/vaedgp/<series>/``.
- ``regression``: the diabetes data of scikit-learn (442 × 10), standardised on the training
  part of ``--splits`` random 90/10 splits: sparse GP (SVGP, 1 layer), deep GPs with one and two
  hidden layers of width 5 (50 inducing points each, full-batch Adam), and scikit-learn's exact
  GP (ARD RBF + white noise, hyper-parameters by marginal likelihood). Test RMSE and mean
  log-likelihood per point, in the original units of the target.

    python benchmarks/vaedgp.py --quick                                    # CI smoke run
    python benchmarks/vaedgp.py --stages unsupervised --shard 0 --shards 2 &
    python benchmarks/vaedgp.py --stages unsupervised --shard 1 --shards 2 &
    python benchmarks/vaedgp.py                                            # gather + regression
    python benchmarks/vaedgp.py --stages unsupervised --gather-only        # report what ran
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import command_line, machine_info, markdown_table, write_results  # noqa: E402

from diffvi.data.modules import flat_images, observed_mask  # noqa: E402
from diffvi.models.dgp import DeepGPRegressor  # noqa: E402
from diffvi.training import VAEDGPConfig, fit, load, read_spec  # noqa: E402
from diffvi.training.families.vaedgp import imputation_rmse  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs" / "vaedgp"
STAGES = ("unsupervised", "regression")
MODELS = {  # name: (latent widths, recognition model)
    "vae-dgp-1": ([5], True),
    "vae-dgp-2": ([10, 5], True),
    "vae-dgp-3": ([20, 10, 5], True),
    "gp-lvm": ([5], False),
    "vae": ([5], None),
}
DATASETS = ("frey-faces", "mnist")
MISSING = 0.5
MIN_SCALE = 0.01  # VAE's σ floor: MNIST's constant border pixels make the likelihood unbounded


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny budgets")
    p.add_argument("--steps", type=int, default=2000, help="training steps per model")
    p.add_argument("--refine-steps", type=int, default=200)
    p.add_argument("--mnist-train", type=int, default=2000)
    p.add_argument("--mnist-test", type=int, default=500)
    p.add_argument("--splits", type=int, default=5, help="regression: random 90/10 splits")
    p.add_argument("--regression-steps", type=int, default=1000)
    p.add_argument("--eval-k", type=int, default=1000, help="VAE: importance samples")
    p.add_argument("--seed", type=int, default=0)
    common.add_shard_arguments(p, STAGES)
    args = common.parse_shard_args(p, sharded_stages=("unsupervised",))
    if args.quick:
        args.steps, args.refine_steps, args.mnist_train, args.mnist_test = 20, 10, 200, 50
        args.splits, args.regression_steps, args.eval_k = 1, 50, 20
    return args


def series(args) -> str:
    return "quick" if args.quick else f"s{args.steps}"


def data_for(dataset: str, args) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test images ``[N, D]`` (float64, [0, 1])."""
    if dataset == "mnist":
        train, _ = flat_images(dataset, "train", args.mnist_train)
        test, _ = flat_images(dataset, "test", args.mnist_test)
    else:
        train, _ = flat_images(dataset, "train", 200 if args.quick else None)
        test, _ = flat_images(dataset, "test", 50 if args.quick else None)
    return train.double(), test.double()


# --- unsupervised -----------------------------------------------------------------------------


def dgp_job(dataset: str, name: str, args, run: Path) -> dict:
    dims, amortised = MODELS[name]
    config = VAEDGPConfig(
        dataset=dataset, latent_dims=dims, recognition=amortised,
        train_size=args.mnist_train if dataset == "mnist" else (200 if args.quick else None),
        max_steps=args.steps, val_every_n_steps=max(1, args.steps // 3),
        val_size=args.mnist_test if dataset == "mnist" else (50 if args.quick else 200),
        refine_steps=args.refine_steps, seed=args.seed,
        **({"num_inducing": 10, "recognition_hidden": [32]} if args.quick else {}),
    )  # fmt: skip
    if not (run / "export" / "model.json").exists():
        fit(config, run, accelerator="cpu", progress_bar=False)
    model, spec = load(run).model, read_spec(run)
    train, test = data_for(dataset, args)
    mask = observed_mask(test.shape, MISSING, args.seed + 1)
    steps = spec["metadata"]["steps"]
    row = {"seconds_per_epoch": spec["metadata"]["train_seconds_this_session"]
           / (steps * config.batch_size / len(train))}  # fmt: skip
    with torch.no_grad():
        if amortised:
            row["bound_recognition"] = model.bound(test, num_data=len(train)).mean().item()
            row["rmse_recognition"] = rmse(model.impute(test, mask), test, mask)
    full = model.refine_posteriors(test, None, args.refine_steps)
    with torch.no_grad():
        row["bound_refined"] = model.posterior_bound(full, test, None, len(train)).mean().item()
    row["rmse_refined"] = imputation_rmse(model, test, mask, args.refine_steps)
    return row


def rmse(filled: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    return (filled - truth)[~mask].pow(2).mean().sqrt().item()


def vae_job(dataset: str, args, run: Path) -> dict:
    from diffvi.data.modules import FeatureDataModule
    from diffvi.training.config import TrainConfig

    train, test = data_for(dataset, args)
    batches_per_epoch = len(train) // 100
    config = TrainConfig(
        dataset="features", likelihood="gaussian", likelihood_min_scale=MIN_SCALE,
        latent_dims=[5], hidden=[[200]],
        activation="tanh", objective="elbo", k=1, batch_size=100, lr=1e-3, adam="torch",
        max_epochs=max(1, round(args.steps / batches_per_epoch)), val_size=100, val_k=10,
        seed=args.seed,
    )  # fmt: skip
    data = FeatureDataModule(train.float(), 100, args.seed, 100)
    start = time.perf_counter()
    module = fit(config, run, accelerator="cpu", progress_bar=False, datamodule=data,
                 log_every_n_steps=batches_per_epoch)  # fmt: skip
    seconds = time.perf_counter() - start
    model, posterior = module.family.model.eval(), module.family.posterior.eval()
    x, mask = test.float(), observed_mask(test.shape, MISSING, args.seed + 1)
    fill = train.float().mean(0)
    generator = torch.Generator().manual_seed(args.seed)
    from diffvi.evaluation.likelihood import estimate_log_likelihood

    with torch.no_grad():
        estimate = estimate_log_likelihood(model, posterior, x, args.eval_k, batch_size=50,
                                           generator=generator)  # fmt: skip
        draws = posterior.sample(x, 100, generator)
        elbo = (model.log_joint(x, draws.z) - draws.log_q).mean(0)
        filled = torch.where(mask, x, fill)
        amortised_mean, amortised_var = posterior_moments(posterior, filled)
        row = {
            "seconds_per_epoch": seconds / config.max_epochs,
            "bound_recognition": elbo.mean().item(),
            "log_px_k": estimate.log_px.mean().item(),
            "rmse_recognition": rmse(
                torch.where(mask, x, model.likelihood.mean(model.decode(amortised_mean))), x, mask
            ),
        }
    mean, _ = refine_vae_q(model, x, mask, amortised_mean, amortised_var, args.refine_steps)
    with torch.no_grad():
        imputed = torch.where(mask, x, model.likelihood.mean(model.decode(mean)))
    row["rmse_refined"] = rmse(imputed, x, mask)
    return row


def posterior_moments(posterior, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance ``[B, Q]`` of the one-layer Gaussian q(z|x)."""
    mean, log_std = posterior.encoders[0](x).chunk(2, dim=-1)
    return mean, (2 * log_std).exp()


def refine_vae_q(model, x, mask, mean, var, steps: int):
    """Fit q(z) = N(m, diag s) of each row of ``x`` to its observed entries (ELBO on them, one
    reparameterised draw per step, Adam at 0.05), the VAE held fixed."""
    m = mean.detach().clone().requires_grad_()
    log_s = var.detach().log().requires_grad_()
    optimiser = torch.optim.Adam([m, log_s], lr=0.05)
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        optimiser.zero_grad()
        z = m + (0.5 * log_s).exp() * torch.randn(m.shape, generator=generator)
        ll = model.likelihood.elementwise_log_prob(x, model.decode(z))
        kl = 0.5 * (log_s.exp() + m.pow(2) - 1 - log_s).sum(-1)
        (-(ll * mask).sum(-1) + kl).sum().backward()
        optimiser.step()
    model.requires_grad_(True)
    return m.detach(), log_s.detach().exp()


def run_folder(args, dataset: str, name: str) -> Path:
    return RUNS / series(args) / f"{dataset}-{name}"


def unsupervised_job(args, dataset: str, name: str) -> dict:
    start = time.perf_counter()
    run = run_folder(args, dataset, name)
    run.mkdir(parents=True, exist_ok=True)
    row = vae_job(dataset, args, run) if name == "vae" else dgp_job(dataset, name, args, run)
    row.update(dataset=dataset, model=name, wall_seconds=time.perf_counter() - start)
    print(json.dumps(row), flush=True)
    return row


def unsupervised_stage(args) -> list[dict] | None:
    """This shard's models (each saved in its run folder); every saved row when this process
    assembles, else None."""
    torch.set_num_threads(common.shard_threads(args))
    return common.run_shard(
        [(d, m) for d in DATASETS for m in MODELS],
        lambda job: run_folder(args, *job) / f"result-r{args.refine_steps}.json",
        lambda job: unsupervised_job(args, *job),
        args,
    )


# --- regression -------------------------------------------------------------------------------


def regression_stage(args) -> list[dict]:
    from sklearn.datasets import load_diabetes
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    x_all, y_all = load_diabetes(return_X_y=True)
    rows = []
    for split in range(args.splits):
        order = np.random.default_rng(split).permutation(len(x_all))
        cut = int(0.9 * len(order))
        tr, te = order[:cut], order[cut:]
        xm, xs = x_all[tr].mean(0), x_all[tr].std(0)
        ym, ys = y_all[tr].mean(), y_all[tr].std()
        x_tr, x_te = (x_all[tr] - xm) / xs, (x_all[te] - xm) / xs
        y_tr, y_te = (y_all[tr] - ym) / ys, y_all[te]
        for hidden in ([], [5], [5, 5]):
            torch.manual_seed(split)
            model = DeepGPRegressor(10, 1, hidden, num_inducing=50).double()
            xt, yt = torch.tensor(x_tr), torch.tensor(y_tr)[:, None]
            model.initialise(xt, yt, generator=torch.Generator().manual_seed(split))
            optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
            start = time.perf_counter()
            for _ in range(args.regression_steps):
                optimiser.zero_grad()
                (-model.bound(xt, yt).sum()).backward()
                optimiser.step()
            seconds = time.perf_counter() - start
            with torch.no_grad():
                mean, var = model.predict(torch.tensor(x_te))
            pred, pvar = mean[:, 0].numpy() * ys + ym, var[:, 0].numpy() * ys**2
            rows.append(regression_row(f"deep GP, {len(hidden) + 1} layer(s)", split, pred, pvar,
                                       y_te, seconds))  # fmt: skip
        kernel = ConstantKernel() * RBF(np.ones(10)) + WhiteKernel()
        start = time.perf_counter()
        gp = GaussianProcessRegressor(kernel, normalize_y=False, random_state=split)
        gp.fit(x_tr, y_tr)
        mean, sd = gp.predict(x_te, return_std=True)
        rows.append(regression_row("exact GP (scikit-learn)", split, mean * ys + ym,
                                   (sd * ys) ** 2, y_te, time.perf_counter() - start))  # fmt: skip
    return rows


def regression_row(model, split, pred, var, truth, seconds) -> dict:
    loglik = -0.5 * (np.log(2 * np.pi * var) + (truth - pred) ** 2 / var)
    return {
        "model": model,
        "split": split,
        "rmse": float(np.sqrt(np.mean((truth - pred) ** 2))),
        "test_loglik": float(loglik.mean()),
        "seconds": seconds,
    }


# --- report -----------------------------------------------------------------------------------


def fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def report(result: dict, args) -> str:
    lines = [f"# VAE-DGP benchmark ({series(args)})\n", f"`{command_line()}`\n"]
    if result.get("unsupervised"):
        lines += [
            f"\n## Unsupervised: test bound per image (nats) and imputation RMSE of "
            f"{MISSING:.0%} hidden pixels, {args.steps} training steps of 100 images\n",
        ]
        header = ["data set", "model", "bound (recognition q)", "bound (refined q)",
                  "VAE log p(y), K=1000", "RMSE (recognition q)", "RMSE (refined q)",
                  "s / epoch"]  # fmt: skip
        rows = [
            [r["dataset"], r["model"], fmt(r.get("bound_recognition")),
             fmt(r.get("bound_refined")), fmt(r.get("log_px_k")),
             fmt(r.get("rmse_recognition"), 4), fmt(r.get("rmse_refined"), 4),
             fmt(r["seconds_per_epoch"], 2)]
            for r in result["unsupervised"]
        ]  # fmt: skip
        lines.append(markdown_table(header, rows))
    if result.get("regression"):
        splits = len({r["split"] for r in result["regression"]})
        lines.append(f"\n## Diabetes regression ({splits} random 90/10 splits, mean ± sd)\n")
        models = list(dict.fromkeys(r["model"] for r in result["regression"]))
        rows = []
        for name in models:
            mine = [r for r in result["regression"] if r["model"] == name]
            rm = np.array([r["rmse"] for r in mine])
            ll = np.array([r["test_loglik"] for r in mine])
            sec = np.mean([r["seconds"] for r in mine])
            rows.append([name, f"{rm.mean():.1f} ± {rm.std():.1f}",
                         f"{ll.mean():.3f} ± {ll.std():.3f}", f"{sec:.1f}"])  # fmt: skip
        lines.append(markdown_table(["model", "RMSE", "test log-lik / point", "fit s"], rows))
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    torch.set_flush_denormal(True)
    from diffvi.utils.runtime import quiet_lightning

    quiet_lightning()
    if args.shards > 1:
        unsupervised_stage(args)  # the unsupervised stage alone; the unsharded run assembles
        return
    name = f"vaedgp-{series(args)}"
    result = common.previous_results(name)
    if "unsupervised" in args.stages:
        result["unsupervised"] = unsupervised_stage(args)
    if "regression" in args.stages and not args.assemble_only:
        result["regression"] = regression_stage(args)
    result.update(
        machine=machine_info(),
        budget={"steps": args.steps, "refine_steps": args.refine_steps,
                "mnist_train": args.mnist_train, "mnist_test": args.mnist_test,
                "splits": args.splits, "regression_steps": args.regression_steps,
                "eval_k": args.eval_k, "quick": args.quick},
    )  # fmt: skip
    json_path, md_path = write_results(name, result, report(result, args))
    print(f"wrote {json_path} and {md_path}")
    if not math.isfinite(sum(r.get("bound_refined", 0.0) for r in result.get("unsupervised", []))):
        raise SystemExit("a bound is not finite")


if __name__ == "__main__":
    main()
