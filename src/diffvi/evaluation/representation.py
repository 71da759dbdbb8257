"""Properties of the learned representation."""

from collections.abc import Iterable

import torch
from torch import Tensor


@torch.no_grad()
def active_units(
    posterior, data: Tensor | Iterable, threshold: float = 0.01, batch_size: int = 500
) -> tuple[int, Tensor]:
    """Active units (Burda et al. 2016, §5.2): unit u is active if Cov_x(E_q[u|x]) > threshold.

    Returns the count and the per-unit variances ``[D]`` of the posterior mean over the data.
    """
    batches = data.split(batch_size) if isinstance(data, Tensor) else data
    was_training = posterior.training
    posterior.eval()
    try:
        means = [
            posterior.expected_latent(b[0] if isinstance(b, list | tuple) else b).double()
            for b in batches
        ]
    finally:
        posterior.train(was_training)
    variances = torch.cat(means).var(0, unbiased=False)
    return int((variances > threshold).sum()), variances.float().cpu()
