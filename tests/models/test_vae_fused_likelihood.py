"""The fused no-gradient Bernoulli log-likelihood of an MLP decoder (issue 22): the same
numbers as scoring the decoder's full logits, for every block layout and activation."""

import pytest
import torch
from torch import nn

from diffvi.distributions import BernoulliLikelihood, GaussianLikelihood
from diffvi.evaluation import estimate_log_likelihood
from diffvi.models import VAE, build_vae
from diffvi.models.vae import fused_bernoulli_mlp_log_prob


def reference(model, x, z):
    """log p(x|z) through the decoder's full logits (the general path)."""
    return model.likelihood.log_prob(x.flatten(1), model.decode(z))


def model_and_data(activation="tanh", two_layer=False, batch=7, k=53, dtype=torch.float64):
    torch.manual_seed(0)
    if two_layer:
        model, posterior = build_vae(
            (1, 28, 28), "iwae-2", latent_dims=[4, 3], hidden=[[16], [8]], activation=activation
        )
    else:
        model, posterior = build_vae((1, 28, 28), "iwae-1", activation=activation)
    model, posterior = model.to(dtype), posterior.to(dtype)
    for p in model.decoder.parameters():  # logits over a wide range, beyond softplus's 20
        p.data.mul_(3)
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.3, dtype=dtype), generator=g)
    x[0] = torch.rand(1, 28, 28, generator=g, dtype=dtype)  # grey levels too
    z = torch.randn(k, batch, model.latent_dim, generator=g, dtype=dtype)
    return model, posterior, x, z


@pytest.mark.parametrize("activation", ["tanh", "relu", "silu", "gelu", "softplus"])
@pytest.mark.parametrize("two_layer", [False, True])
def test_fused_log_likelihood_equals_full_logits_path_in_float64(activation, two_layer):
    model, _, x, z = model_and_data(activation, two_layer)
    assert model.linear_bernoulli_decoder() is not None
    expected = reference(model, x, z)
    with torch.no_grad():
        got = model.log_likelihood(x, z)
    assert got.shape == expected.shape == (z.shape[0], x.shape[0])
    assert expected.abs().max() > 100
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-8)


@pytest.mark.parametrize("block_rows", [1, 7, 20, 256, 10_000])
def test_fused_log_likelihood_is_the_same_for_every_block_size(block_rows):
    # 53 draws of 7 points: blocks of 1 row (one draw each), uneven last blocks, one block.
    model, _, x, z = model_and_data()
    layers, head = model.linear_bernoulli_decoder()
    got = fused_bernoulli_mlp_log_prob(x.flatten(1), z, layers, head, block_rows)
    torch.testing.assert_close(got, reference(model, x, z), rtol=1e-12, atol=1e-8)


def test_fused_log_likelihood_in_float32_agrees_to_float_rounding():
    model, _, x, z = model_and_data(dtype=torch.float32)
    with torch.no_grad():
        got = model.log_likelihood(x, z)
    exact = reference(model.double(), x.double(), z.double())
    # float32 sums of 784 terms of size ~10: rounding ~1e-4; same order as the general path.
    general = reference(model.float(), x, z).double()
    assert (got.double() - exact).abs().max() < 3 * (general - exact).abs().max() + 1e-3


def test_fused_path_leaves_latents_and_weights_untouched_and_is_used_only_without_grad():
    model, _, x, z = model_and_data()
    z0, state0 = z.clone(), {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.log_likelihood(x, z)
    assert torch.equal(z, z0)
    assert all(torch.equal(v, state0[k]) for k, v in model.state_dict().items())
    out = model.log_likelihood(x, z)  # with gradients: the general path, differentiable
    assert out.requires_grad


def test_decoders_that_are_not_a_plain_mlp_or_likelihoods_not_bernoulli_use_the_general_path():
    model, _, _, _ = model_and_data()
    gaussian = VAE((1, 28, 28), [50], model.decoder, GaussianLikelihood(scale=0.5))
    assert gaussian.linear_bernoulli_decoder() is None

    class Custom(nn.Sequential):
        def forward(self, z):
            return super().forward(z) + 1

    custom = VAE((1, 28, 28), [50], Custom(*model.decoder), BernoulliLikelihood())
    assert custom.linear_bernoulli_decoder() is None
    ends_in_activation = VAE(
        (1, 28, 28), [50], nn.Sequential(*model.decoder, nn.Tanh()), BernoulliLikelihood()
    )
    assert ends_in_activation.linear_bernoulli_decoder() is None


def legacy_estimate(model, posterior, x, k, max_rows, generator):
    """The estimator before issue 22: full logits, torch.logsumexp per chunk."""
    chunk = max(1, min(k, max_rows // x.shape[0]))
    lse = lse2 = None
    done = 0
    with torch.no_grad():
        while done < k:
            draws = min(chunk, k - done)
            s = posterior.sample(x, draws, generator=generator)
            log_w = reference(model, x, s.z) - (s.log_q - model.log_prior(s.z))
            a, b = torch.logsumexp(log_w, 0), torch.logsumexp(2 * log_w, 0)
            lse = a if lse is None else torch.logaddexp(lse, a)
            lse2 = b if lse2 is None else torch.logaddexp(lse2, b)
            done += draws
    return lse, lse2


@pytest.mark.parametrize("max_rows", [35, 700, 10**6])
def test_estimate_log_likelihood_equals_the_pre_issue_22_estimator_in_float64(max_rows):
    model, posterior, x, _ = model_and_data(batch=7)
    k = 300
    est = estimate_log_likelihood(
        model, posterior, x, k=k, max_rows=max_rows,
        generator=torch.Generator().manual_seed(4),
    )  # fmt: skip
    lse, lse2 = legacy_estimate(model, posterior, x, k, max_rows, torch.Generator().manual_seed(4))
    torch.testing.assert_close(est.log_px, lse - torch.log(torch.tensor(float(k))).double())
    rel_var = torch.clamp(torch.exp(lse2 - 2 * lse + torch.log(torch.tensor(float(k)))) - 1, min=0)
    torch.testing.assert_close(est.stderr, torch.sqrt(rel_var / k))


def test_default_chunks_fit_the_memory_budget_and_give_the_same_estimate_as_explicit_ones():
    from diffvi.evaluation.likelihood import MAX_CHUNK_BYTES, default_max_rows

    model, posterior, x, _ = model_and_data(batch=7, dtype=torch.float32)
    rows = default_max_rows(model, x)
    assert 1 <= rows <= MAX_CHUNK_BYTES // (4 * model.inference_row_floats())
    auto = estimate_log_likelihood(
        model, posterior, x, k=200, generator=torch.Generator().manual_seed(4)
    )
    explicit = estimate_log_likelihood(
        model, posterior, x, k=200, max_rows=rows, generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(auto.log_px, explicit.log_px)
