"""Sigmoid belief nets on binarised MNIST with score-function estimators (NVIL, VIMCO, RWS,
REINFORCE): test NLL at a stated budget beside the papers, gradient variance per estimator, and
training speed against Pyro's ``TraceGraph_ELBO`` with neural baselines on the identical SBN.

Stages (``--stages``, default all):

- ``variance``: on one fixed mini-batch of 24 test images and one model state (an SBN trained
  ``--warmup-steps`` with VIMCO K = 5), the total variance over ``--draws`` draws of each
  estimator's gradient for q's parameters, and of its θ gradient, as ratios to REINFORCE
  (NVIL's baselines first trained on that state for ``--warmup-steps`` steps).
- ``speed``: training steps per second, batch 24, after warm-up: our NVIL (K = 1) and VIMCO
  (K = 5) steps beside Pyro ``TraceGraph_ELBO`` with an ``nn_baseline`` per layer (K = 1), the
  same SBN and recognition networks, Adam on both sides; single-threaded and quiet.
- ``train``: ``diffvi.training.fit`` per (layers, estimator, K) for ``--minutes`` of wall
  clock each (Lightning's ``Timer``; the step count reached is recorded), then
  the test NLL as −log p̂(x) with ``--eval-k`` importance samples (an upper bound on the NLL
  in expectation, tight as K grows) on ``--test-count`` test images.

Writes ``benchmarks/results/sbn_mnist-<series>.{json,md}``.

    python benchmarks/sbn_mnist.py --quick          # CI smoke run
    python benchmarks/sbn_mnist.py --stages variance,speed
    python benchmarks/sbn_mnist.py --stages train --minutes 20
    python benchmarks/sbn_mnist.py --stages train --minutes 15 --shard 0 --shards 2 &  # two
    python benchmarks/sbn_mnist.py --stages train --minutes 15 --shard 1 --shards 2 &  # cores
    python benchmarks/sbn_mnist.py --stages train --minutes 15  # then gather the shards' runs
"""

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Timer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import command_line, machine_info, markdown_table, write_results  # noqa: E402

from diffvi.data.registry import load_dataset  # noqa: E402
from diffvi.objectives import NVIL, REINFORCE, RWS, VIMCO  # noqa: E402
from diffvi.training import SBNConfig, fit, load, read_spec  # noqa: E402
from diffvi.training.families.sbn import SBNFamily, pixel_mean_logits  # noqa: E402

RUNS_DIR = Path(__file__).resolve().parent / "runs" / "sbn"
STAGES = ("variance", "speed", "train")
# Test NLL (nats) reported by the papers for these SBNs on binarised MNIST.
PAPER = {
    ("200", "nvil", 1): ("NVIL paper, Table 1", 113.1),
    ("200-200", "nvil", 1): ("NVIL paper, Table 1", 99.8),
    ("200-200-200", "nvil", 1): ("NVIL paper, Table 1", 96.7),
    ("200-200-200", "vimco", 5): ("VIMCO paper (as quoted in the issue)", 93.6),
}
TRAIN_RUNS = [
    ([200], "nvil", 1),
    ([200, 200], "nvil", 1),
    ([200, 200, 200], "nvil", 1),
    ([200, 200, 200], "vimco", 5),
    ([200, 200, 200], "vimco", 50),
    ([200, 200, 200], "rws", 5),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny budgets")
    p.add_argument("--minutes", type=float, default=20.0, help="training budget per run")
    p.add_argument("--eval-k", type=int, default=1000)
    p.add_argument("--test-count", type=int, default=1000)
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--warmup-steps", type=int, default=500)
    p.add_argument("--speed-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    common.add_shard_arguments(p, STAGES)
    args = common.parse_shard_args(p, sharded_stages=("train",))
    if args.quick:
        args.minutes, args.eval_k, args.test_count = 0.05, 20, 50
        args.draws, args.warmup_steps, args.speed_steps = 10, 5, 5
    return args


def series(args: argparse.Namespace) -> str:
    return "quick" if args.quick else f"{args.minutes:g}min"


def name_of(layers: list[int]) -> str:
    return "-".join(map(str, layers))


def fresh_sbn(layers: list[int], train_images: torch.Tensor) -> SBNFamily:
    # REINFORCE has no parameters: the stages build their own estimators, and the default
    # (NVIL) would draw its baselines' weights from the global RNG after the SBN's.
    sbn = SBNFamily(SBNConfig(layers=layers, event_shape=[1, 28, 28], estimator="reinforce"))
    with torch.no_grad():
        sbn.model.decoders[0].bias.copy_(pixel_mean_logits(train_images))
    return sbn


def gradient_variance(sbn: SBNFamily, estimator, x: torch.Tensor, draws: int) -> dict[str, float]:
    """Total variance over draws of the q-gradient and the θ-gradient (sums over parameters)."""
    q_rows, p_rows = [], []
    for _ in range(draws):
        sbn.zero_grad()
        estimator(sbn.model, sbn.posterior, x).loss.backward()
        q_rows.append(torch.cat([p.grad.flatten() for p in sbn.posterior.parameters()]))
        p_rows.append(torch.cat([p.grad.flatten() for p in sbn.model.parameters()]))
    return {
        "q_variance": torch.stack(q_rows).var(0).sum().item(),
        "p_variance": torch.stack(p_rows).var(0).sum().item(),
    }


def variance_stage(args, train_images, test_images) -> list[dict]:
    rows = []
    x = test_images[:24]
    for layers in ([200], [200, 200, 200]):
        torch.manual_seed(args.seed)
        sbn = fresh_sbn(layers, train_images)
        run_steps(step_factory(sbn, VIMCO(5), train_images, 0), args.warmup_steps)
        nvil = NVIL()
        run_steps(step_factory(sbn, nvil, train_images, 1, train_model=False), args.warmup_steps)
        nvil.normalise = False  # compare unscaled gradients
        for label, estimator in [
            ("REINFORCE K=1", REINFORCE(1)),
            ("NVIL K=1", nvil),
            ("REINFORCE K=5", REINFORCE(5)),
            ("VIMCO K=5", VIMCO(5)),
            ("RWS K=5", RWS(5)),
        ]:
            torch.manual_seed(args.seed + 1)
            rows.append(
                {"layers": name_of(layers), "estimator": label}
                | gradient_variance(sbn, estimator, x, args.draws)
            )
    return rows


def pyro_step_factory(sbn: SBNFamily, images: torch.Tensor):
    """A Pyro SVI step (TraceGraph_ELBO, nn_baseline per layer) on the same SBN and q."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, TraceGraph_ELBO
    from pyro.optim import Adam

    from diffvi.nn.mlp import MLP

    pyro.clear_param_store()
    model_net, q_net = sbn.model, sbn.posterior
    dims = model_net.latent_dims
    inputs = [model_net.data_dim, *dims[:-1]]
    baselines = torch.nn.ModuleList(
        torch.nn.Sequential(MLP(size, [100], 1, "tanh"), torch.nn.Flatten(0)) for size in inputs
    )

    def model(x):
        pyro.module("sbn", model_net)
        with pyro.plate("data", x.shape[0]):
            top = model_net.top_logits.expand(x.shape[0], -1)
            h = pyro.sample(f"h{len(dims)}", dist.Bernoulli(logits=top).to_event(1))
            for layer in range(len(dims) - 1, 0, -1):
                logits = model_net.decoders[layer](h)
                h = pyro.sample(f"h{layer}", dist.Bernoulli(logits=logits).to_event(1))
            logits = model_net.decoders[0](h)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(x):
        pyro.module("q", q_net)
        pyro.module("baselines", baselines)
        with pyro.plate("data", x.shape[0]):
            below = x
            for layer, encoder in enumerate(q_net.encoders):
                baseline = {"nn_baseline": baselines[layer], "nn_baseline_input": below}
                below = pyro.sample(
                    f"h{layer + 1}",
                    dist.Bernoulli(logits=encoder(below)).to_event(1),
                    infer={"baseline": baseline},
                )

    svi = SVI(model, guide, Adam({"lr": 3e-4}), TraceGraph_ELBO())
    generator = torch.Generator().manual_seed(2)

    def step():
        x = images[torch.randint(0, len(images), (24,), generator=generator)]
        svi.step(x)

    return step


def step_factory(
    sbn: SBNFamily, estimator, images: torch.Tensor, seed: int, train_model: bool = True
):
    """One Adam step (lr 3e-4) of ``estimator`` on 24 random ``images``: of the SBN and NVIL's
    baselines, or with ``train_model=False`` of NVIL's baselines alone (the model stays fixed)."""
    params = list(sbn.parameters()) if train_model else []
    if isinstance(estimator, NVIL):
        estimator.ensure_baselines(sbn.model)
        params += list(estimator.parameters())
    optimiser = torch.optim.Adam(params, lr=3e-4)
    generator = torch.Generator().manual_seed(seed)

    def step():
        x = images[torch.randint(0, len(images), (24,), generator=generator)]
        optimiser.zero_grad()
        estimator(sbn.model, sbn.posterior, x).loss.backward()
        optimiser.step()

    return step


def run_steps(step, steps: int) -> None:
    for _ in range(steps):
        step()


def steps_per_second(step, steps: int) -> float:
    for _ in range(max(3, steps // 10)):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def speed_stage(args, train_images) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    flat = train_images.flatten(1)
    for layers in ([200], [200, 200, 200]):
        results = {}
        for label, make in [
            ("diffvi NVIL K=1", lambda s: step_factory(s, NVIL(), train_images, 2)),
            ("diffvi VIMCO K=5", lambda s: step_factory(s, VIMCO(5), train_images, 2)),
            ("Pyro TraceGraph_ELBO + nn_baseline", lambda s: pyro_step_factory(s, flat)),
        ]:
            torch.manual_seed(args.seed)
            results[label] = steps_per_second(
                make(fresh_sbn(layers, train_images)), args.speed_steps
            )
        pyro_rate = results["Pyro TraceGraph_ELBO + nn_baseline"]
        for label, rate in results.items():
            rows.append(
                {
                    "layers": name_of(layers),
                    "implementation": label,
                    "steps_per_s": rate,
                    "ratio_to_pyro": rate / pyro_rate,
                }  # fmt: skip
            )
    torch.set_num_threads(2)
    return rows


def run_folder(args, layers: list[int], estimator: str, k: int) -> Path:
    return RUNS_DIR / series(args) / f"{name_of(layers)}-{estimator}-k{k}"


def train_job(args, layers: list[int], estimator: str, k: int) -> dict:
    """Train one run (unless exported) for ``--minutes``, then its test NLL."""
    run = run_folder(args, layers, estimator, k)
    if not (run / "export" / "model.json").exists():
        steps = fit_steps_for_budget(layers, estimator, k, args)
        config = SBNConfig(
            layers=layers, estimator=estimator, k=k, max_steps=10 * steps,
            val_every_n_steps=max(1, steps // 5), val_size=500, seed=args.seed,
        )  # fmt: skip
        timer = Timer(duration=timedelta(minutes=args.minutes), interval="step")
        fit(config, run, accelerator="cpu", progress_bar=False, callbacks=[timer])
    test = load_dataset("binarized-mnist", "test").images[: args.test_count].float()
    sbn, spec = load(run), read_spec(run)
    torch.manual_seed(args.seed)
    nll = -sbn.importance_bound(test, args.eval_k).mean().item()
    paper = PAPER.get((name_of(layers), estimator, k))
    return {
        "layers": name_of(layers),
        "estimator": estimator,
        "k": k,
        "steps": spec["metadata"]["steps"],
        "seconds": spec["metadata"]["train_seconds_this_session"],
        "loadavg_at_eval": list(os.getloadavg()),
        "test_nll": nll,
        "paper": paper[1] if paper else None,
        "paper_source": paper[0] if paper else None,
    }


def train_stage(args) -> list[dict] | None:
    """Train and evaluate this shard's runs (each saved in its run folder); every saved row when
    this process assembles, else None."""
    return common.run_shard(
        TRAIN_RUNS[:2] if args.quick else TRAIN_RUNS,
        lambda run: run_folder(args, *run) / f"test_nll-k{args.eval_k}-n{args.test_count}.json",
        lambda run: train_job(args, *run),
        args,
        describe=lambda run: "{} {} K={}".format(name_of(run[0]), *run[1:]),
    )


def fit_steps_for_budget(layers, estimator, k, args) -> int:
    """Steps that fit ``--minutes``, from the speed of 20 timed steps of this configuration
    (it sets the validation spacing; the wall-clock ``Timer`` ends the run)."""
    images = load_dataset("binarized-mnist", "train").images[:2000].float()
    sbn = fresh_sbn(layers, images)
    config = SBNConfig(layers=layers, estimator=estimator, k=k)
    rate = steps_per_second(step_factory(sbn, config.build_estimator(), images, 2), 20)
    # Lightning, validation and checkpoints cost about a fifth on top of bare steps here.
    return max(10, int(args.minutes * 60 * rate * 0.8))


def main() -> None:
    args = parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(common.shard_threads(args))
    if args.shards > 1:
        train_stage(args)  # the train stage alone; the unsharded run assembles
        return
    name = f"sbn_mnist-{series(args)}"
    result = common.previous_results(name)
    train_images = load_dataset("binarized-mnist", "train").images.float()
    test_images = load_dataset("binarized-mnist", "test").images.float()
    if "variance" in args.stages and not args.assemble_only:
        result["variance"] = variance_stage(args, train_images, test_images)
    if "speed" in args.stages and not args.assemble_only:
        result["speed"] = speed_stage(args, train_images)
    if "train" in args.stages:
        result["train"] = train_stage(args)
    result.update(
        machine=machine_info(),
        budget={"minutes_per_run": args.minutes, "eval_k": args.eval_k,
                "test_count": args.test_count, "draws": args.draws,
                "warmup_steps": args.warmup_steps, "speed_steps": args.speed_steps},
    )  # fmt: skip
    lines = [
        f"# Sigmoid belief nets on binarised MNIST ({series(args)})\n",
        f"`{command_line()}`\n",
    ]
    if "train" in result:
        lines.append(f"## Test NLL (nats, {args.eval_k}-sample importance estimate)\n")
        lines.append(markdown_table(
            ["layers", "estimator", "K", "steps", "train s", "NLL", "paper", "source"],
            [[r["layers"], r["estimator"], r["k"], r["steps"], r["seconds"], r["test_nll"],
              r["paper"], r["paper_source"]] for r in result["train"]],
        ))  # fmt: skip
    if "variance" in result:
        lines.append("\n## Gradient variance (sum over parameters; ratio to REINFORCE K=1)\n")
        base = {r["layers"]: r for r in result["variance"] if r["estimator"] == "REINFORCE K=1"}
        lines.append(markdown_table(
            ["layers", "estimator", "q variance", "q ratio", "θ variance", "θ ratio"],
            [[r["layers"], r["estimator"], r["q_variance"],
              r["q_variance"] / base[r["layers"]]["q_variance"], r["p_variance"],
              r["p_variance"] / base[r["layers"]]["p_variance"]] for r in result["variance"]],
        ))  # fmt: skip
    if "speed" in result:
        lines.append("\n## Training speed (steps/s, batch 24, one thread)\n")
        lines.append(markdown_table(
            ["layers", "implementation", "steps/s", "ratio to Pyro"],
            [[r["layers"], r["implementation"], r["steps_per_s"], r["ratio_to_pyro"]]
             for r in result["speed"]],
        ))  # fmt: skip
    write_results(name, result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
