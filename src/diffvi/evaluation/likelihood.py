"""Importance-sampled estimates of log p(x) (IWAE §5: k = 5000 samples from q(z|x)), and the
bits per dimension of a diffusion model from its VDM bound.

log p̂(x) = log (1/k) Σ_i p(x, z_i)/q(z_i|x) is the IWAE bound at large k; it is consistent
(→ log p(x) as k → ∞). Samples are drawn in chunks so that memory stays bounded for any k,
and the per-point standard error comes from the delta method on the weights' sample variance.
"""

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from diffvi.objectives.base import check_data, log_importance_weights
from diffvi.utils.progress import progress


@dataclass
class LikelihoodEstimate:
    """Per-data-point estimates: ``log_px`` and its ``stderr``, both ``[N]``."""

    log_px: Tensor
    stderr: Tensor

    @property
    def mean(self) -> float:
        return float(self.log_px.mean())

    @property
    def mean_stderr(self) -> float:
        """Standard error of the mean over data points (sampling noise of the estimator only)."""
        return float(self.stderr.square().sum().sqrt() / len(self.stderr))


# Memory one chunk of importance samples may take: this share of the available memory, at
# most MAX_CHUNK_BYTES (beyond that, larger chunks save nothing measurable).
CHUNK_MEMORY_SHARE = 0.25
MAX_CHUNK_BYTES = 1 << 30


def default_max_rows(model, x: Tensor) -> int:
    """(sample, data point) pairs per chunk that fit the memory budget: ``min(MAX_CHUNK_BYTES,
    CHUNK_MEMORY_SHARE × available memory)`` over the bytes a row takes (the model's
    ``inference_row_floats()`` where it has one, else 4 × the data size per row)."""
    row_floats = getattr(model, "inference_row_floats", None)
    floats = row_floats() if row_floats is not None else 4 * x[0].numel()
    if x.device.type == "cuda":
        available = torch.cuda.mem_get_info(x.device)[0]
    else:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 4 * MAX_CHUNK_BYTES
    budget = min(MAX_CHUNK_BYTES, int(CHUNK_MEMORY_SHARE * available))
    return max(1, budget // (floats * x.element_size()))


@torch.no_grad()
def log_weights_chunked(
    model,
    posterior,
    x: Tensor,
    k: int,
    max_rows: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Running ``(logsumexp log w, logsumexp 2·log w)`` over ``k`` draws, each ``[B]``.

    Each chunk's log-sum-exps are taken in place on its ``[draws, B]`` log-weights (shift by
    the maximum, exponentiate, sum; square, sum), the same numbers as ``torch.logsumexp``.
    """
    chunk = max(1, min(k, max_rows // max(1, x.shape[0])))
    lse = lse2 = None
    done = 0
    while done < k:
        draws = min(chunk, k - done)
        s = posterior.sample(x, draws, generator=generator)
        log_w = log_importance_weights(model, x, s)  # [draws, B], a fresh tensor
        peak = log_w.amax(0)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        w = log_w.sub_(peak).exp_()
        a = w.sum(0).log_().add_(peak)
        b = w.square_().sum(0).log_().add_(peak).add_(peak)
        lse = a if lse is None else torch.logaddexp(lse, a)
        lse2 = b if lse2 is None else torch.logaddexp(lse2, b)
        done += draws
    return lse, lse2


@torch.no_grad()
def estimate_log_likelihood(
    model,
    posterior,
    data: Tensor | Iterable,
    k: int = 5000,
    batch_size: int = 100,
    max_rows: int | None = None,
    show_progress: bool = False,
    generator: torch.Generator | None = None,
) -> LikelihoodEstimate:
    """Estimate log p(x) for every data point.

    Args:
        data: a tensor ``[N, *event_shape]`` or an iterable of batches (tensors or
            ``(x, y)`` pairs) already on the model's device.
        k: importance samples per point.
        max_rows: at most this many (sample, data point) pairs are drawn and scored at once;
            ``None`` sizes chunks from the memory available (:func:`default_max_rows`; a
            VAE with an MLP decoder and Bernoulli likelihood holds about
            ``4 × latent_dim + 8`` floats per pair, other models about 4 × the data size).
        generator: source of the importance samples (the global RNG when ``None``).
    Returns:
        ``LikelihoodEstimate`` with ``log_px`` and ``stderr`` of shape ``[N]``.

    Raises:
        ValueError: ``k`` < 1, or a batch that fails
            :func:`~diffvi.objectives.base.check_data` (shape, NaN, outside the likelihood's
            support).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    batches = data.split(batch_size) if isinstance(data, Tensor) else data
    was_training = model.training, posterior.training
    model.eval()
    posterior.eval()
    log_px, stderr = [], []
    try:
        for batch in progress(batches, desc=f"log p(x), k={k}", enable=show_progress):
            x = batch[0] if isinstance(batch, list | tuple) else batch
            check_data(model, x)
            rows = max_rows if max_rows is not None else default_max_rows(model, x)
            lse, lse2 = log_weights_chunked(model, posterior, x, k, rows, generator)
            log_px.append(lse - math.log(k))
            # Var[log p̂] ≈ Var[w] / (k·E[w]²) = (k·Σw²/(Σw)² − 1) / k   (delta method)
            rel_var = torch.clamp(torch.exp(lse2 - 2 * lse + math.log(k)) - 1, min=0)
            stderr.append(torch.sqrt(rel_var / k))
    finally:
        model.train(was_training[0])
        posterior.train(was_training[1])
    return LikelihoodEstimate(torch.cat(log_px).cpu(), torch.cat(stderr).cpu())


def diffusion_bits_per_dim(
    model: torch.nn.Module, images: Tensor, batch_size: int = 500, repeats: int = 1, seed: int = 0
) -> tuple[float, float]:
    """Mean VDM bound in bits/dim over ``images [N, C, H, W]`` (``repeats`` draws of t and ε
    per image) and its standard error."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    values = []
    with torch.no_grad():
        for _ in range(repeats):
            for chunk in images.split(batch_size):
                values.append(model.bound(chunk, generator=generator))
    flat = torch.cat(values).double()
    return flat.mean().item(), flat.std().item() / math.sqrt(flat.numel())
