"""Factorised Bernoulli densities of the sigmoid belief net and its posterior."""

import torch
from torch.distributions import Bernoulli

from diffvi.distributions.bernoulli import bernoulli_log_prob, bernoulli_sample


def test_log_prob_equals_torch_bernoulli_summed_over_the_last_axis():
    gen = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(3, 5, 7, generator=gen, dtype=torch.float64)
    value = (torch.rand(3, 5, 7, generator=gen, dtype=torch.float64) < 0.5).double()
    expected = Bernoulli(logits=logits).log_prob(value).sum(-1)
    torch.testing.assert_close(bernoulli_log_prob(value, logits), expected)


def test_samples_are_binary_with_frequency_sigmoid_of_the_logits_and_follow_the_seed():
    logits = torch.tensor([-2.0, 0.0, 1.5]).expand(200_000, 3)
    draws = bernoulli_sample(logits, torch.Generator().manual_seed(1))
    assert draws.shape == logits.shape and draws.dtype == logits.dtype
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(draws.mean(0), torch.sigmoid(logits[0]), atol=4e-3, rtol=0)
    again = bernoulli_sample(logits, torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)
