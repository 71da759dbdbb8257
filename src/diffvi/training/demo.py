"""The demo workflow of ``diffvi demo`` / ``make demo``: a small VAE on scikit-learn's 8x8
digits (trained, evaluated and plotted), a VAE beside a DD-VAE with 2-D latents, and DDIM
samples from the shipped MNIST diffusion prior; every figure lands in one folder."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffvi.utils.io import write_json

# The demo model: one stochastic layer of 8 units, MLPs 64-256-256-16 (tanh), trained with the
# single-sample ELBO and Adam at lr 1e-3 (PyTorch's betas). Bernoulli likelihood on the grey
# levels (values k/16), as is usual for this data set. Full: ~2 min on 2 CPU cores (one torch
# thread: ~0.3 s per epoch of 22 steps, ~12 s for log p(x) with k = 5000 on the 360 test points).
DEMO_MODEL: dict[str, Any] = {
    "dataset": "digits",
    "architecture": "iwae-1",
    "latent_dims": [8],
    "hidden": [[256, 256]],
    "activation": "tanh",
    "likelihood": "bernoulli",
    "objective": "elbo",
    "k": 1,
    "batch_size": 64,
    "lr": 1e-3,
    "adam": "torch",
    "schedule": "constant",
    "val_k": 50,
}
FULL = {"max_epochs": 300, "k": 5000, "latent_epochs": 100}
QUICK = {"max_epochs": 5, "k": 500, "latent_epochs": 3}
# The second part: 2-D latents under the (exact) pinwheel prior, a Gaussian-posterior VAE (the
# ELBO) beside a DD-VAE (DDVI with β_reg = 0.01, its reverse chain warmed up on the prior
# first), same MLPs and epochs (figures: docs/results.md § `make demo`). The exact prior keeps
# the demo fast: the smoothed one (`train ddvae`'s default) costs more per step.
LATENT_MODEL: dict[str, Any] = {
    "dataset": "digits",
    "latent_dims": [2],
    "hidden": [[256, 256]],
    "activation": "silu",
    "likelihood": "bernoulli",
    "prior": "pinwheel",
    "k": 1,
    "batch_size": 128,
    "lr": 1e-3,
    "adam": "torch",
    "val_size": 360,
}
LATENT_METHODS: dict[str, dict[str, Any]] = {
    "vae": {"objective": "elbo", "posterior": "gaussian"},
    "ddvae": {"objective": "ddvi", "posterior": "diffusion", "beta_reg": 0.01},
}
WARMUP_STEPS = {"full": 500, "quick": 20}
# The third part: DDIM samples from the shipped MNIST diffusion prior (a few seconds).
DIFFUSION_STEPS = {"full": 50, "quick": 10}


def run_demo(
    out: Path,
    quick: bool = False,
    max_epochs: int | None = None,
    k: int | None = None,
    seed: int = 0,
    flush_denormal: bool = True,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo into ``out`` (``quick``: a ~15 s version) and return what it writes to
    ``out/metrics.json``; ``max_epochs`` and ``k`` (importance samples of log p(x)) override
    the FULL / QUICK settings, ``echo`` reports progress."""
    settings = QUICK if quick else FULL
    epochs = max_epochs or settings["max_epochs"]
    is_k = k or settings["k"]

    import torch

    from diffvi.data import load_dataset
    from diffvi.evaluation.plots import (
        save_image_grid,
        save_latent_scatter,
        save_reconstructions,
    )
    from diffvi.evaluation.report import evaluate_module, format_table
    from diffvi.training import TrainConfig, fit, read_spec

    config = TrainConfig(**DEMO_MODEL, max_epochs=epochs, seed=seed, flush_denormal=flush_denormal)
    echo(
        f"Training a VAE (latent dim 8, MLP 256-256, ELBO) on digits for {epochs} epochs "
        f"into {out} ..."
    )
    started = time.perf_counter()
    module = fit(
        config, out, progress_bar=progress, log_every_n_steps=10, checkpoint_every_n_epochs=25
    )
    train_seconds = time.perf_counter() - started
    module = module.family.cpu().eval()
    final_val = {k: v for k, v in read_spec(out)["metadata"].items() if k.startswith("val_")}

    test = load_dataset("digits", "test")
    x, labels = test.images, test.labels
    started = time.perf_counter()
    metrics = evaluate_module(module, x, k=is_k, show_progress=progress, seed=seed)
    eval_seconds = time.perf_counter() - started

    model, posterior = module.model, module.posterior
    with torch.no_grad():
        x_hat = model.reconstruct(x[:16], posterior)
        samples = model.sample(64, generator=torch.Generator().manual_seed(seed))
        z_mean = posterior.expected_latent(x)
    paths = [
        save_reconstructions(x[:16], x_hat.clamp(0, 1), out / "reconstructions.png"),
        save_image_grid(samples.clamp(0, 1), out / "samples.png", nrow=8),
        save_latent_scatter(
            z_mean,
            labels,
            out / "latent.png",
            title="digits test set: posterior means E[z|x]",
        ),
    ]
    payload = {
        **metrics,
        "dataset": "digits",
        "split": "test",
        "seed": seed,
        "max_epochs": epochs,
        "quick": quick,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "final_val": final_val,
        "checkpoint": str(out / "checkpoints" / "last.ckpt"),
        "config": config.to_dict(),
    }
    echo(
        f"Trained in {train_seconds:.0f} s, evaluated in {eval_seconds:.0f} s "
        f"(torch threads: {torch.get_num_threads()})."
    )
    echo(format_table(metrics, title="VAE on digits, test set"))

    latent_epochs = QUICK["latent_epochs"] if quick else FULL["latent_epochs"]
    warmup = WARMUP_STEPS["quick" if quick else "full"]
    comparison = compare_latents(out, latent_epochs, warmup, seed, flush_denormal, progress, echo)
    paths.append(comparison.pop("plot"))
    payload["latent_comparison"] = comparison
    diffusion = diffusion_samples(out, DIFFUSION_STEPS["quick" if quick else "full"], seed, echo)
    if diffusion is not None:
        paths.append(diffusion.pop("plot"))
        payload["diffusion_samples"] = diffusion
    paths.append(write_json(out / "metrics.json", payload))
    echo("Wrote " + ", ".join(str(p) for p in dict.fromkeys(paths)))
    return payload


def compare_latents(
    out: Path,
    epochs: int,
    warmup_steps: int,
    seed: int,
    flush_denormal: bool,
    progress: bool,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the 2-D VAE and DD-VAE of ``LATENT_METHODS`` on digits, embed the test set (one
    posterior draw per image), score and plot both side by side; returns the figures and the
    plot's path (``plot``)."""
    import torch

    from diffvi.data import load_dataset
    from diffvi.evaluation import embed_latents, knn_accuracy, latent_nll
    from diffvi.evaluation.plots import save_latent_comparison
    from diffvi.training import TrainConfig, fit
    from diffvi.training.callbacks import PosteriorWarmup

    test, train = load_dataset("digits", "test"), load_dataset("digits", "train")
    panels, figures = [], {}
    for name, method in LATENT_METHODS.items():
        config = TrainConfig(
            **LATENT_MODEL, **method, max_epochs=epochs, seed=seed, flush_denormal=flush_denormal
        )
        steps = warmup_steps if config.posterior == "diffusion" else 0
        label = "VAE (Gaussian q, ELBO)" if name == "vae" else "DD-VAE (diffusion q, β_reg 0.01)"
        echo(f"Training a {label}, 2-D latent, pinwheel prior, for {epochs} epochs ...")
        started = time.perf_counter()
        module = fit(
            config,
            out / f"latent-{name}",
            progress_bar=progress,
            callbacks=[PosteriorWarmup(steps, progress=progress)],
            log_every_n_steps=10,
            checkpoint_every_n_epochs=epochs,
        )
        seconds = time.perf_counter() - started
        module = module.family.cpu().eval()
        generator = torch.Generator().manual_seed(seed)
        z_test = embed_latents(module.posterior, test.images, generator)
        z_train = embed_latents(module.posterior, train.images, generator)
        prior_samples = module.model.prior.sample((10_000,), generator=generator)
        knn = knn_accuracy(z_train, train.labels, z_test, test.labels, k=20)
        nll = latent_nll(z_test.double(), prior_samples.double())
        figures[name] = {
            "knn_accuracy": knn,
            "latent_nll": nll,
            "train_seconds": round(seconds, 2),
        }
        panels.append((f"{label}: kNN {knn:.2f}, latent NLL {nll:.2f}", z_test))
        echo(f"  {name}: kNN accuracy {knn:.3f}, latent NLL {nll:.3f} ({seconds:.0f} s)")
    plot = save_latent_comparison(panels, test.labels, out / "latents_vae_vs_ddvae.png")
    return {"plot": plot, "epochs": epochs, "warmup_steps": warmup_steps, **figures}


def diffusion_samples(
    out: Path, steps: int, seed: int, echo: Callable[[str], None] = print
) -> dict[str, Any] | None:
    """Draw 16 images with DDIM from the shipped MNIST diffusion prior
    (``diffvi/shipped_models/mnist``) and save them as ``diffusion_samples.png``; ``None`` (with
    a note) when the prior is absent."""
    import torch

    from diffvi.evaluation.plots import save_image_grid
    from diffvi.training import load, read_spec

    try:
        family = load("mnist")
        prior, shape, trained = family.model, family.spec["event_shape"], read_spec("mnist")
    except FileNotFoundError:
        echo("No MNIST diffusion prior found (diffvi/shipped_models/mnist); skipping its samples.")
        return None
    echo(f"Sampling 16 images from the MNIST diffusion prior (DDIM, {steps} steps) ...")
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    images = prior.sample((16, *shape), steps=steps, sampler="ddim", generator=generator)
    seconds = time.perf_counter() - started
    plot = save_image_grid(images, out / "diffusion_samples.png", nrow=8)
    return {
        "plot": plot,
        "steps": steps,
        "seconds": round(seconds, 2),
        "model": trained["metadata"],
    }
