"""Active units (Burda et al. 2016): units whose posterior mean varies over the data."""

import torch
from torch import nn

from diffvi.evaluation import active_units
from diffvi.posteriors import GaussianPosterior


class FixedEncoder(nn.Module):
    """Mean ``x Aᵀ + c`` and a constant log σ, with fixed tensors."""

    def __init__(self, weight: torch.Tensor, log_std: float = -1.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.log_std = log_std

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mean = h @ self.weight.T + 0.5
        return torch.cat([mean, torch.full_like(mean, self.log_std)], dim=-1)


def posterior_using(weight: torch.Tensor) -> GaussianPosterior:
    return GaussianPosterior([FixedEncoder(weight)], [weight.shape[0]]).double()


def data(n: int = 400) -> torch.Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_active_units_counts_the_three_of_five_coordinates_whose_mean_depends_on_x():
    weight = torch.zeros(5, 4, dtype=torch.float64)
    weight[0, 0] = 1.0
    weight[2, 1:3] = 0.5
    weight[4, 3] = -2.0  # units 1 and 3 have a constant mean
    x = data()
    count, variances = active_units(posterior_using(weight), x, threshold=0.01, batch_size=64)
    assert count == 3
    assert variances.shape == (5,)
    manual = (x @ weight.T).var(0, unbiased=False)
    torch.testing.assert_close(variances, manual.float(), rtol=1e-5, atol=1e-7)
    assert (variances[[1, 3]] == 0).all()


def test_active_units_threshold_excludes_a_unit_whose_mean_barely_varies():
    weight = torch.zeros(5, 4, dtype=torch.float64)
    weight[0, 0], weight[2, 1], weight[4, 3] = 1.0, 1.0, 1.0
    weight[3, 2] = 0.03  # variance ≈ 1e-3 < 0.01: inactive
    count, variances = active_units(posterior_using(weight), data(), threshold=0.01)
    assert count == 3
    assert 0 < variances[3] < 0.01
    assert active_units(posterior_using(weight), data(), threshold=1e-4)[0] == 4


def test_active_units_accepts_x_y_batches_and_restores_training_mode():
    weight = torch.zeros(5, 4, dtype=torch.float64)
    weight[0, 0], weight[1, 1], weight[2, 2] = 1.0, 1.0, 1.0
    posterior = posterior_using(weight)
    posterior.train()
    x = data()
    batches = [(xb, torch.zeros(len(xb))) for xb in x.split(100)]
    assert active_units(posterior, batches)[0] == 3
    assert posterior.training
    torch.testing.assert_close(active_units(posterior, batches)[1], active_units(posterior, x)[1])


def test_active_units_of_two_layer_posterior_does_not_count_collapsed_top_units():
    bottom = torch.zeros(3, 4, dtype=torch.float64)
    bottom[0, 0], bottom[1, 1], bottom[2, 2] = 1.0, 1.0, 1.0
    # top layer collapsed: q(z_2|z_1) = N(0.5, 1) whatever z_1, so E[z_2|x] does not vary
    top = torch.zeros(8, 3, dtype=torch.float64)
    encoders = [FixedEncoder(bottom, log_std=-2.0), FixedEncoder(top, log_std=0.0)]
    posterior = GaussianPosterior(encoders, [3, 8]).double()
    torch.manual_seed(0)
    count, variances = active_units(posterior, torch.randn(1000, 4, dtype=torch.float64))
    assert (variances[:3] > 0.5).all()
    assert (variances[3:] < 1e-3).all(), variances  # true value: exactly 0
    assert count == 3, variances
