"""IWAE gradient estimators (standard, STL, DReG): exact identities on the same draws and
agreement of expected gradients (float64)."""

import pytest
import torch
from tiny_vae import small_vae

from diffvi.objectives import IWAE

B = 4
ESTIMATORS = ["standard", "stl", "dreg"]


def gradients(objective, model, posterior, x, seed):
    """(decoder-side θ gradients, encoder φ gradients) of the objective's loss."""
    model.zero_grad()
    posterior.zero_grad()
    torch.manual_seed(seed)
    objective(model, posterior, x).loss.backward()

    def grab(module):
        return [
            torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()
        ]

    return grab(model), grab(posterior)


def manual_path_gradient(model, posterior, x, k, seed, power):
    """−(1/B) Σ_b Σ_i w̃_i^power ∂log w_i/∂z_i ∂z_i/∂φ on the draws of ``seed``:
    power 1 is STL, power 2 is DReG (Tucker et al. 2018, eq. 5)."""
    torch.manual_seed(seed)
    z = posterior.sample(x, k).z
    z_leaf = z.detach().requires_grad_()
    log_w = model.log_joint(x, z_leaf) - posterior.log_prob(x, z_leaf)
    (dlogw_dz,) = torch.autograd.grad(log_w.sum(), z_leaf)
    w_tilde = torch.softmax(log_w.detach(), 0).unsqueeze(-1)
    upstream = -(w_tilde**power) * dlogw_dz / x.shape[0]
    params = list(posterior.parameters())
    return torch.autograd.grad(z, params, grad_outputs=upstream, allow_unused=True)


@pytest.mark.parametrize("layers", [1, 2])
def test_decoder_gradients_of_standard_stl_and_dreg_are_identical_on_the_same_draws(layers):
    model, posterior, x = small_vae(layers, B)
    reference, _ = gradients(IWAE(k=8, estimator="standard"), model, posterior, x, seed=0)
    assert any(g.abs().sum() > 0 for g in reference)
    for estimator in ("stl", "dreg"):
        theta, _ = gradients(IWAE(k=8, estimator=estimator), model, posterior, x, seed=0)
        for a, b in zip(theta, reference, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("estimator", ["stl", "dreg"])
@pytest.mark.parametrize("layers", [1, 2])
def test_stl_and_dreg_encoder_gradients_equal_their_path_derivative_formulas(layers, estimator):
    model, posterior, x = small_vae(layers, B)
    _, phi = gradients(IWAE(k=8, estimator=estimator), model, posterior, x, seed=1)
    power = 1 if estimator == "stl" else 2
    expected = manual_path_gradient(model, posterior, x, 8, seed=1, power=power)
    for got, want in zip(phi, expected, strict=True):
        want = torch.zeros_like(got) if want is None else want
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_dreg_and_stl_encoder_gradients_coincide_for_one_sample():
    # k = 1: w̃ = 1, so w̃² = w̃ and both reduce to the path derivative.
    model, posterior, x = small_vae(1, B)
    _, stl = gradients(IWAE(k=1, estimator="stl"), model, posterior, x, seed=2)
    _, dreg = gradients(IWAE(k=1, estimator="dreg"), model, posterior, x, seed=2)
    for a, b in zip(stl, dreg, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_path_estimators_give_zero_encoder_gradient_at_the_exact_posterior(linear_gaussian):
    # log w = log p(x) for every z when q is the exact posterior: ∂log w/∂z = 0 for every draw,
    # while the standard estimator is only zero in expectation.
    lg = linear_gaussian
    posterior = lg.learnable_posterior()
    x = lg.data(3)
    for estimator in ("stl", "dreg"):
        _, phi = gradients(IWAE(k=5, estimator=estimator), lg.model, posterior, x, seed=3)
        for g in phi:
            torch.testing.assert_close(g, torch.zeros_like(g), rtol=0, atol=1e-10)
    _, phi = gradients(IWAE(k=5), lg.model, posterior, x, seed=3)
    assert max(g.abs().max() for g in phi) > 1e-3


def encoder_gradient_draws(lg, posterior, x, k, estimators, repeats):
    """Encoder gradients ``[repeats, P]`` per estimator, paired: the same draws for all."""
    out = {e: [] for e in estimators}
    for r in range(repeats):
        for estimator in estimators:
            _, phi = gradients(IWAE(k=k, estimator=estimator), lg.model, posterior, x, seed=r)
            out[estimator].append(torch.cat([g.flatten() for g in phi]))
    return {e: torch.stack(v) for e, v in out.items()}


def paired_z_scores(a, b):
    d = a - b
    return d.mean(0) / (d.std(0) / d.shape[0] ** 0.5)


def test_expected_encoder_gradient_of_dreg_equals_that_of_standard_and_stl_is_biased(
    linear_gaussian,
):
    # Both the standard and the DReG estimators are unbiased for ∇φ L_k; STL is biased for k > 1
    # (Tucker et al. 2018). Each of 100 repeats averages a batch of 2 points × 200 copies.
    lg = linear_gaussian
    posterior = lg.learnable_posterior(shift=1.0, widen=1.5)
    x = lg.data(2).repeat(200, 1)
    grads = encoder_gradient_draws(lg, posterior, x, 5, ESTIMATORS, repeats=100)
    z_dreg = paired_z_scores(grads["dreg"], grads["standard"])
    assert z_dreg.abs().max() < 4.5, z_dreg
    # the comparison has power: DReG has lower variance, and STL's bias is detected
    assert (grads["dreg"].var(0) < grads["standard"].var(0)).all()
    z_stl = paired_z_scores(grads["stl"], grads["standard"])
    assert z_stl.abs().max() > 10, z_stl


def test_expected_encoder_gradient_of_stl_equals_standard_for_one_sample(linear_gaussian):
    lg = linear_gaussian
    posterior = lg.learnable_posterior(shift=1.0, widen=1.5)
    x = lg.data(2).repeat(200, 1)
    grads = encoder_gradient_draws(lg, posterior, x, 1, ["standard", "stl"], repeats=100)
    z_stl = paired_z_scores(grads["stl"], grads["standard"])
    assert z_stl.abs().max() < 4.5, z_stl
