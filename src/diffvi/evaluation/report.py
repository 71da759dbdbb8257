"""The standard evaluation of a trained VAE on held-out data, and a table of the results.

``evaluate_module`` gathers the figures of the IWAE paper's tables from the library's
estimators: the ELBO, the IWAE bound at a modest k, the importance-sampled log p(x) at large k
(IWAE §5: k = 5000) with its Monte Carlo standard error, the NLL, and the active units (§5.2).
On average ELBO ≤ IWAE bound (k = 50) ≤ log p̂(x) (k = 5000) ≤ log p(x).

``evaluate_diffusion`` does the same for a diffusion model: test bits/dim, and optionally the
classifier-FID of its samples beside the real-vs-real floor, and nearest-neighbour distances.
"""

import io
from typing import Any

import torch
from torch import Tensor

from diffvi.evaluation.likelihood import diffusion_bits_per_dim, estimate_log_likelihood
from diffvi.evaluation.representation import active_units
from diffvi.objectives import ELBO, IWAE, Objective

__all__ = [
    "evaluate_diffusion",
    "evaluate_module",
    "format_diffusion_table",
    "format_table",
    "mean_bound",
]


@torch.no_grad()
def mean_bound(objective: Objective, model, posterior, x: Tensor, batch_size: int = 100) -> float:
    """Mean over the data points of ``objective``'s per-point bound, batch by batch."""
    total = 0.0
    for batch in x.split(batch_size):
        total += float(objective(model, posterior, batch).bound.double().sum())
    return total / x.shape[0]


@torch.no_grad()
def evaluate_module(
    module,
    x_test: Tensor,
    k: int = 5000,
    elbo_samples: int = 10,
    iwae_k: int = 50,
    batch_size: int = 100,
    show_progress: bool = False,
    seed: int | None = None,
) -> dict[str, Any]:
    """Evaluate a trained VAE on ``x_test``.

    Args:
        module: anything with ``.model`` (a ``VAE``) and ``.posterior``, e.g. a ``VAEModule``.
        x_test: ``[N, *event_shape]``; moved to the module's device.
        k: importance samples per point for log p̂(x).
        elbo_samples: samples per point averaged in the ELBO estimate (more = less noise,
            same expectation).
        iwae_k: k of the reported IWAE bound.
        batch_size: data points per batch.
        show_progress: a progress bar for the log p̂(x) estimate.
        seed: seeds torch's global generator first (the estimators draw from it); ``None``
            leaves it as it is.
    Returns:
        ``elbo``, ``elbo_samples``, ``iwae_bound``, ``iwae_k``, ``log_px``,
        ``log_px_stderr`` (Monte Carlo standard error of the mean), ``nll`` (= −log p̂(x)),
        ``k``, ``active_units``, ``latent_dim``, ``num_points``. Values in nats per data point.
    """
    for name, value in (("k", k), ("elbo_samples", elbo_samples), ("iwae_k", iwae_k)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model, posterior = module.model, module.posterior
    if tuple(x_test.shape[1:]) != tuple(model.event_shape) or x_test.shape[0] < 1:
        raise ValueError(
            f"x_test must have shape [N, {', '.join(map(str, model.event_shape))}] with N >= 1, "
            f"got {list(x_test.shape)}"
        )
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    x = x_test.to(device)
    was_training = model.training, posterior.training
    model.eval()
    posterior.eval()
    try:
        elbo = mean_bound(ELBO(k=elbo_samples), model, posterior, x, batch_size)
        iwae = mean_bound(IWAE(k=iwae_k), model, posterior, x, batch_size)
        estimate = estimate_log_likelihood(
            model, posterior, x, k=k, batch_size=batch_size, show_progress=show_progress
        )
        active, _ = active_units(posterior, x)
    finally:
        model.train(was_training[0])
        posterior.train(was_training[1])
    return {
        "elbo": elbo,
        "elbo_samples": elbo_samples,
        "iwae_bound": iwae,
        "iwae_k": iwae_k,
        "log_px": estimate.mean,
        "log_px_stderr": estimate.mean_stderr,
        "nll": -estimate.mean,
        "k": k,
        "active_units": active,
        "latent_dim": int(posterior.latent_dim),
        "num_points": int(x.shape[0]),
    }


def format_table(metrics: dict[str, Any], title: str | None = None) -> str:
    """A plain-text table (no colour codes) of ``evaluate_module``'s result."""
    rows = [
        (f"ELBO ({metrics['elbo_samples']} samples)", f"{metrics['elbo']:.3f}"),
        (f"IWAE bound (k={metrics['iwae_k']})", f"{metrics['iwae_bound']:.3f}"),
        (
            f"log p(x), importance-sampled (k={metrics['k']})",
            f"{metrics['log_px']:.3f} ± {metrics['log_px_stderr']:.3f}",
        ),
        ("NLL = -log p(x)", f"{metrics['nll']:.3f}"),
        ("active units", f"{metrics['active_units']} / {metrics['latent_dim']}"),
        ("data points", str(metrics["num_points"])),
    ]
    return _plain_table(rows, "metric (nats per data point)", title)


def _plain_table(rows: list[tuple[str, str]], header: str, title: str | None) -> str:
    """Rows of (name, value) as a plain-text table (no colour codes)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column(header)
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    buffer = io.StringIO()
    Console(file=buffer, width=100, color_system=None, force_terminal=False).print(table)
    return buffer.getvalue().rstrip("\n")


def evaluate_diffusion(
    model: Any,
    images: Tensor,
    train_images: Tensor | None = None,
    fid_samples: int = 0,
    sample_steps: int = 50,
    classifier: Any = None,
    batch_size: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Test bits/dim of a diffusion model (its VDM bound, one (t, ε) draw per image) and, with
    ``fid_samples > 0``, the classifier-FID of that many DDIM-``sample_steps`` samples against
    as many of ``images``, its real-vs-real floor (``train_images`` against ``images``, same
    size) and nearest-training-neighbour distances.

    ``images``: ``[N, C, H, W]`` held-out images in [0, 1]; ``classifier``: a
    :class:`~diffvi.evaluation.sample_quality.FeatureClassifier` (needed for the FID).
    """
    bpd, stderr = diffusion_bits_per_dim(model, images, batch_size=batch_size, seed=seed)
    metrics: dict[str, Any] = {"bpd": bpd, "bpd_stderr": stderr, "num_points": len(images)}
    if fid_samples <= 0:
        return metrics
    if classifier is None or train_images is None:
        raise ValueError("the FID needs a feature classifier and the training images")
    from diffvi.evaluation.sample_quality import classifier_fid, nearest_neighbour_summary

    n = min(fid_samples, len(images), len(train_images))
    generator = torch.Generator(device=images.device).manual_seed(seed)
    samples = torch.cat(
        [
            model.sample((len(c), *images.shape[1:]), steps=sample_steps, sampler="ddim",
                         generator=generator)
            for c in torch.arange(n).split(batch_size)
        ]
    )  # fmt: skip
    reference = train_images[torch.randperm(len(train_images), generator=generator)[:n]]
    neighbours = nearest_neighbour_summary(samples, train_images, images[:n])
    return {
        **metrics,
        "fid": classifier_fid(classifier, samples, images[:n]),
        "fid_floor": classifier_fid(classifier, reference, images[:n]),
        "fid_samples": n,
        "sample_steps": sample_steps,
        "nn_median": neighbours["sample_median"],
        "nn_held_out_median": neighbours["held_out_median"],
    }


def format_diffusion_table(metrics: dict[str, Any], title: str | None = None) -> str:
    """A plain-text table of :func:`evaluate_diffusion`'s result."""
    rows = [
        ("bits/dim (VDM bound)", f"{metrics['bpd']:.3f} ± {metrics['bpd_stderr']:.3f}"),
        ("images", str(metrics["num_points"])),
    ]
    if "fid" in metrics:
        n, steps = metrics["fid_samples"], metrics["sample_steps"]
        rows += [
            (f"classifier-FID ({n} DDIM-{steps} samples)", f"{metrics['fid']:.2f}"),
            (f"  real-vs-real floor ({n} images)", f"{metrics['fid_floor']:.2f}"),
            ("median L2 to nearest training image", f"{metrics['nn_median']:.3f}"),
            ("  held-out images' median", f"{metrics['nn_held_out_median']:.3f}"),
        ]
    return _plain_table(rows, "metric", title)
