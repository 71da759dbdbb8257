"""VAE-DGP and deep GP regression: Ψ-statistics against Monte Carlo, the uncollapsed bound
against exact and collapsed references (exact GP marginal likelihood, gpytorch ExactGP, the
Titsias–Lawrence Bayesian GP-LVM bound), probabilistic PCA recovered by a linear-kernel GP-LVM,
missing data, minibatch scaling, training and clear errors."""

import math

import gpytorch
import pytest
import torch

from diffvi.models.dgp import VAEDGP, DeepGPRegressor, SparseGPLayer
from diffvi.models.psi_statistics import LinearKernel, RBFKernel

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rbf_setup(n: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    x = torch.rand(n, 1, generator=g, dtype=DT) * 6 - 3
    y = torch.sin(2 * x) + 0.3 * x + 0.2 * torch.randn(n, 1, generator=g, dtype=DT)
    return x, y


HYPERS = {"variance": 1.3, "lengthscale": 0.7, "noise": 0.05}


def _svgp(x: torch.Tensor, z: torch.Tensor) -> DeepGPRegressor:
    """Zero-hidden-layer regressor with fixed hyper-parameters and inducing inputs ``z``."""
    torch.manual_seed(0)
    model = DeepGPRegressor(1, 1, [], num_inducing=z.shape[0]).to(DT)
    layer = model.layers[0]
    with torch.no_grad():
        layer.inducing.copy_(z)
        layer.kernel.log_variance.fill_(math.log(HYPERS["variance"]))
        layer.kernel.log_lengthscale.fill_(math.log(HYPERS["lengthscale"]))
        layer.log_noise_var.fill_(math.log(HYPERS["noise"]))
    return model


def _exact_lml(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    k = HYPERS["variance"] * torch.exp(-0.5 * (x - x.T).pow(2) / HYPERS["lengthscale"] ** 2)
    cov = k + HYPERS["noise"] * torch.eye(x.shape[0], dtype=DT)
    return torch.distributions.MultivariateNormal(torch.zeros_like(y[:, 0]), cov).log_prob(y[:, 0])


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ZeroMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _gpytorch_model(x: torch.Tensor, y: torch.Tensor) -> _ExactGP:
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = _ExactGP(x, y[:, 0], likelihood).to(DT)
    likelihood.to(DT)
    likelihood.noise = HYPERS["noise"]
    model.covar_module.outputscale = HYPERS["variance"]
    model.covar_module.base_kernel.lengthscale = HYPERS["lengthscale"]
    return model


# --- 3. Ψ-statistics ------------------------------------------------------------------------


def _kernels() -> list:
    torch.manual_seed(3)
    rbf = RBFKernel(2, variance=1.7, lengthscale=0.8).to(DT)
    with torch.no_grad():
        rbf.log_lengthscale.copy_(torch.tensor([0.8, 1.5], dtype=DT).log())
    lin = LinearKernel(2).to(DT)
    with torch.no_grad():
        lin.log_variances.copy_(torch.tensor([0.5, 2.0], dtype=DT).log())
    return [rbf, lin]


@pytest.mark.parametrize("kernel", _kernels(), ids=["rbf", "linear"])
def test_psi_statistics_match_monte_carlo_averages_of_the_kernel(kernel):
    g = _gen(1)
    b, m, q, k = 3, 4, 2, 100_000
    mean = torch.randn(b, q, generator=g, dtype=DT)
    var = 0.1 + torch.rand(b, q, generator=g, dtype=DT)
    z = torch.randn(m, q, generator=g, dtype=DT)
    x = mean + var.sqrt() * torch.randn(k, b, q, generator=g, dtype=DT)  # [K, B, Q]
    with torch.no_grad():
        kxz = kernel.K(x.reshape(-1, q), z).reshape(k, b, m)
        kxx = kernel.Kdiag(x.reshape(-1, q)).reshape(k, b)
        psi0, psi1, psi2 = (kernel.psi0(mean, var, z), kernel.psi1(mean, var, z),
                            kernel.psi2(mean, var, z))  # fmt: skip
    assert psi0.shape == (b,) and psi1.shape == (b, m) and psi2.shape == (b, m, m)

    def check(exact, draws_mean, draws_sq_mean):
        se = ((draws_sq_mean - draws_mean.pow(2)).clamp_min(0) / k).sqrt()
        assert bool(((exact - draws_mean).abs() <= 5 * se + 1e-10).all())

    check(psi0, kxx.mean(0), kxx.pow(2).mean(0))
    check(psi1, kxz.mean(0), kxz.pow(2).mean(0))
    outer = torch.einsum("kbm,kbn->bmn", kxz, kxz) / k
    outer_sq = torch.einsum("kbm,kbn->bmn", kxz.pow(2), kxz.pow(2)) / k
    check(psi2, outer, outer_sq)


@pytest.mark.parametrize("kernel", _kernels(), ids=["rbf", "linear"])
def test_psi_statistics_with_zero_input_variance_are_plain_kernel_values(kernel):
    g = _gen(2)
    mean = torch.randn(5, 2, generator=g, dtype=DT)
    z = torch.randn(3, 2, generator=g, dtype=DT)
    zero = torch.zeros_like(mean)
    with torch.no_grad():
        kxz = kernel.K(mean, z)
        torch.testing.assert_close(kernel.psi0(mean, zero, z), kernel.Kdiag(mean))
        torch.testing.assert_close(kernel.psi1(mean, zero, z), kxz)
        torch.testing.assert_close(kernel.psi2(mean, zero, z), kxz[:, :, None] * kxz[:, None, :])
        tiny = torch.full_like(mean, 1e-12)
        torch.testing.assert_close(kernel.psi2(mean, tiny, z), kxz[:, :, None] * kxz[:, None, :])


def test_expected_log_likelihood_matches_monte_carlo_over_inputs_and_inducing_outputs():
    torch.manual_seed(4)
    g = _gen(4)
    layer = SparseGPLayer(2, 3, 5).to(DT)
    with torch.no_grad():
        layer.q_mean.normal_(generator=g)
        layer.q_tril.normal_(generator=g).mul_(0.3)
        layer.q_log_diag.uniform_(-1.0, 0.0, generator=g)
        layer.log_noise_var.fill_(math.log(0.3))
    b, k = 4, 100_000
    mean, var = torch.randn(b, 2, generator=g, dtype=DT), 0.2 + torch.rand(b, 2, generator=g)
    var = var.to(DT)
    t_mean, t_var = torch.randn(b, 3, generator=g, dtype=DT), torch.rand(b, 3, generator=g)
    t_var = t_var.to(DT)
    with torch.no_grad():
        exact = layer.expected_log_lik(mean, var, t_mean, t_var)
        chol = layer.chol_kzz()
        kzz = chol @ chol.T
        # Draws of x ~ q(x) and u_d = L (m_d + L_S ε); f | u, x analytic.
        x = mean + var.sqrt() * torch.randn(k, b, 2, generator=g, dtype=DT)
        eps = torch.randn(k, 5, 3, generator=g, dtype=DT)
        u = chol @ (layer.q_mean + layer.q_scale_tril @ eps)  # [K, M, D]
        kxz = layer.kernel.K(x.reshape(-1, 2), layer.inducing).reshape(k, b, 5)
        proj = torch.linalg.solve(kzz, kxz.transpose(1, 2)).transpose(1, 2)  # [K, B, M]
        f_mean = proj @ u  # [K, B, D]
        f_var = layer.kernel.variance - (proj * kxz).sum(-1, keepdim=True)
        sq = (t_mean - f_mean).pow(2) + f_var + t_var
        draws = (-0.5 * math.log(2 * math.pi * 0.3) - 0.5 * sq / 0.3).sum(-1)  # [K, B]
    se = draws.std(0) / k**0.5
    assert bool(((exact - draws.mean(0)).abs() <= 5 * se).all())


# --- 2. Exact GP regression as a special case ------------------------------------------------


def test_bound_with_inducing_inputs_at_the_data_and_optimal_q_u_equals_exact_lml():
    x, y = _rbf_setup()
    model = _svgp(x, x)
    model.layers[0].set_optimal_q_u(x, None, y)
    with torch.no_grad():
        bound = model.bound(x, y).sum()
    exact = _exact_lml(x, y)
    gp = _gpytorch_model(x, y)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(gp.likelihood, gp)
    with torch.no_grad():
        reference = mll(gp(x), y[:, 0]) * x.shape[0]
    torch.testing.assert_close(exact, reference, rtol=1e-8, atol=1e-8)
    assert abs(bound.item() - exact.item()) <= 1e-3 * abs(exact.item())


def test_svgp_predictions_at_optimal_q_u_match_the_exact_gp_posterior():
    x, y = _rbf_setup()
    model = _svgp(x, x)
    model.layers[0].set_optimal_q_u(x, None, y)
    xs = torch.linspace(-4, 4, 17, dtype=DT)[:, None]
    gp = _gpytorch_model(x, y)
    gp.eval()
    with torch.no_grad():
        mean, var = model.predict(xs)
        ref = gp.likelihood(gp(xs))
        log_pred = model.log_predictive(xs, torch.zeros_like(xs))
    # K_xx has condition number ~1e18 here: the 1e-6 σ_f² jitter on K_zz moves means by ~3e-4.
    torch.testing.assert_close(mean[:, 0], ref.mean, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(var[:, 0], ref.variance, rtol=1e-4, atol=1e-4)
    expected = torch.distributions.Normal(ref.mean, ref.variance.sqrt()).log_prob(torch.zeros(17))
    torch.testing.assert_close(log_pred, expected, rtol=1e-3, atol=1e-3)


def test_bound_never_exceeds_exact_lml_with_few_inducing_points_or_any_q_u():
    x, y = _rbf_setup()
    exact = _exact_lml(x, y).item()
    g = _gen(5)
    for z in (torch.linspace(-3, 3, 5, dtype=DT)[:, None], x):
        model = _svgp(x, z)
        layer = model.layers[0]
        layer.set_optimal_q_u(x, None, y)
        with torch.no_grad():
            optimal = model.bound(x, y).sum().item()
            assert optimal <= exact + 1e-8
            for _ in range(5):
                layer.q_mean.normal_(generator=g)
                layer.q_tril.normal_(generator=g).mul_(0.2)
                layer.q_log_diag.normal_(generator=g).mul_(0.5)
                random_bound = model.bound(x, y).sum().item()
                assert random_bound <= optimal + 1e-8
    assert optimal > exact - 1e-2 * abs(exact)  # sanity: M = N is nearly tight


def test_one_layer_bound_at_optimal_q_u_equals_the_collapsed_bayesian_gplvm_bound():
    torch.manual_seed(6)
    g = _gen(6)
    n, d, q, m = 25, 4, 2, 6
    y = torch.randn(n, d, generator=g, dtype=DT)
    model = VAEDGP(d, [q], m, recognition=False, num_points=n).to(DT).initialise(y, generator=g)
    with torch.no_grad():
        model.free_log_vars[0].uniform_(-3, -1, generator=g)
    layer = model.layers[0]
    mean, var = model.recognition(y)[0]
    layer.set_optimal_q_u(mean, var, y - model.fill_value)
    with torch.no_grad():
        bound = model.bound(y).sum()
        y = y - model.fill_value  # the model's mean function: the column means
        # Titsias & Lawrence (2010): the bound with q(U) collapsed analytically.
        beta = 1 / layer.noise_var
        chol = layer.chol_kzz()
        kzz = chol @ chol.T
        psi0 = layer.kernel.psi0(mean, var).sum()
        psi1 = layer.kernel.psi1(mean, var, layer.inducing)
        psi2 = layer.kernel.psi2(mean, var, layer.inducing).sum(0)
        inner = beta * psi2 + kzz
        w = beta * torch.eye(n, dtype=DT) - beta**2 * psi1 @ torch.linalg.solve(inner, psi1.T)
        collapsed = (
            -0.5 * n * d * math.log(2 * math.pi)
            + 0.5 * n * d * beta.log()
            + 0.5 * d * (torch.logdet(kzz) - torch.logdet(inner))
            - 0.5 * (y * (w @ y)).sum()
            - 0.5 * beta * d * psi0
            + 0.5 * beta * d * torch.trace(torch.linalg.solve(kzz, psi2))
            - 0.5 * (var + mean.pow(2) - 1 - var.log()).sum()
        )
    torch.testing.assert_close(bound, collapsed, rtol=1e-9, atol=1e-7)


# --- 1. Probabilistic PCA with a linear kernel -----------------------------------------------


def _principal_angle_sine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest sine of the principal angles between the column spans of a and b ``[D, k]``."""
    qa, qb = torch.linalg.qr(a)[0], torch.linalg.qr(b)[0]
    cos = torch.linalg.svdvals(qa.T @ qb).clamp(max=1)
    return float((1 - cos.min() ** 2).sqrt())


@pytest.mark.parametrize("amortised", [False, True], ids=["gplvm", "recognition"])
def test_linear_kernel_gplvm_recovers_the_ppca_subspace(amortised):
    torch.manual_seed(7)
    g = _gen(7)
    n, d, q = 200, 8, 2
    w = torch.randn(q, d, generator=g, dtype=DT) * torch.tensor([[3.0], [2.0]], dtype=DT)
    y = torch.randn(n, q, generator=g, dtype=DT) @ w + 0.5 * torch.randn(n, d, generator=g)
    y = y - y.mean(0)
    eigvecs = torch.linalg.eigh(y.T @ y / n).eigenvectors[:, -q:]  # top-2 of the sample cov
    model = VAEDGP(d, [q], q, [16], recognition=amortised, num_points=n, kernel="linear").to(DT)
    model.initialise(y, generator=g, latent_init="random")

    def learned_span() -> torch.Tensor:
        with torch.no_grad():
            pred, _ = model.decode(*model.recognition(y)[-1])
        return torch.linalg.svd(pred - pred.mean(0), full_matrices=False).Vh[:q].T

    with torch.no_grad():
        start = model.bound(y).mean()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        (-model.bound(y).mean()).backward()
        optimiser.step()
    with torch.no_grad():
        assert model.bound(y).mean() > start
    end = _principal_angle_sine(learned_span(), eigvecs)
    assert end < 0.1, end


# --- 4. Recognition model, missing data, minibatches -------------------------------------------


def _small_data(n: int = 12, d: int = 6, seed: int = 8) -> torch.Tensor:
    g = _gen(seed)
    latent = torch.randn(n, 2, generator=g, dtype=DT)
    mix = torch.randn(2, d, generator=g, dtype=DT)
    return torch.tanh(latent @ mix) + 0.1 * torch.randn(n, d, generator=g, dtype=DT)


def test_recognition_gives_a_mean_and_positive_variance_per_latent_layer():
    torch.manual_seed(9)
    y = _small_data()
    model = VAEDGP(6, [3, 2], 5, [8]).to(DT).initialise(y, generator=_gen(9))
    qs = model.recognition(y)
    assert [tuple(m.shape) for m, _ in qs] == [(12, 3), (12, 2)]
    assert [tuple(v.shape) for _, v in qs] == [(12, 3), (12, 2)]
    assert all(bool((v > 0).all()) for _, v in qs)
    assert model.encode(y).shape == (12, 2)
    mean, var = model.decode(model.encode(y))
    assert mean.shape == var.shape == (12, 6) and bool((var > 0).all())
    assert model.bound(y).shape == (12,)


def test_bound_with_missing_values_is_finite_and_ignores_the_masked_entries():
    torch.manual_seed(10)
    y = _small_data()
    mask = torch.rand(y.shape, generator=_gen(10)) > 0.3
    model = VAEDGP(6, [3, 2], 5, [8]).to(DT).initialise(y, mask, generator=_gen(10))
    bound = model.bound(y, mask)
    assert bool(bound.isfinite().all())
    for fill in (float("nan"), 1e6):
        other = y.masked_fill(~mask, fill)
        torch.testing.assert_close(model.bound(other, mask), bound)
    loss = -model.bound(y.masked_fill(~mask, float("nan")), mask).mean()
    loss.backward()
    assert all(bool(p.grad.isfinite().all()) for p in model.parameters() if p.grad is not None)


def test_the_summed_unmasked_bound_equals_the_per_entry_masked_one_with_every_entry_observed():
    torch.manual_seed(13)
    y = _small_data()
    model = VAEDGP(6, [3, 2], 5, [8]).to(DT).initialise(y, generator=_gen(13))
    with torch.no_grad():
        model.layers[0].q_log_diag.add_(0.3)  # away from the optimum: every term matters
        full = model.bound(y)
        masked = model.bound(y, torch.ones_like(y, dtype=torch.bool))
    torch.testing.assert_close(full, masked)


def test_impute_returns_observed_entries_unchanged_and_fills_the_rest():
    torch.manual_seed(11)
    y = _small_data()
    mask = torch.rand(y.shape, generator=_gen(11)) > 0.3
    model = VAEDGP(6, [3], 5, [8]).to(DT).initialise(y, mask, generator=_gen(11))
    with torch.no_grad():
        filled = model.impute(y.masked_fill(~mask, float("nan")), mask)
    assert filled.shape == y.shape and bool(filled.isfinite().all())
    assert torch.equal(filled[mask], y[mask])


@pytest.mark.parametrize("amortised", [True, False], ids=["recognition", "free"])
def test_minibatch_bounds_scaled_by_num_data_add_up_to_the_full_bound(amortised):
    torch.manual_seed(12)
    y = _small_data()
    model = VAEDGP(6, [3, 2], 4, [8], recognition=amortised, num_points=12).to(DT)
    model.initialise(y, generator=_gen(12))
    with torch.no_grad():
        full = model.bound(y).sum()
        index = torch.randperm(12, generator=_gen(13))
        parts = [
            model.bound(y[idx], num_data=12, index=None if amortised else idx).sum()
            for idx in index.split(5)
        ]
    torch.testing.assert_close(sum(parts), full)


def test_full_natural_gradient_step_is_the_optimum_and_partial_steps_raise_the_bound():
    torch.manual_seed(14)
    y = _small_data()
    model = VAEDGP(6, [3], 5, [8]).to(DT).initialise(y, generator=_gen(14))
    layer = model.layers[0]
    with torch.no_grad():  # move q(U) away from the optimum initialise set
        layer.q_mean.add_(0.5 * torch.randn(layer.q_mean.shape, generator=_gen(15), dtype=DT))
        layer.q_log_diag.add_(0.5)
        before = model.bound(y).sum()
        model.natural_gradient_step(y, num_data=12, step=0.3)
        after_partial = model.bound(y).sum()
        model.natural_gradient_step(y, num_data=12, step=1.0)
        optimum = model.bound(y).sum()
        mean, var = model.recognition(y)[0]
        q_mean = layer.q_mean.clone()
        layer.set_optimal_q_u(mean, var, y - model.fill_value)
    torch.testing.assert_close(layer.q_mean, q_mean)
    assert before < after_partial < optimum
    with torch.no_grad():  # the optimum is a fixed point of every step size
        model.natural_gradient_step(y, num_data=12, step=0.3)
        torch.testing.assert_close(model.bound(y).sum(), optimum)


@pytest.mark.parametrize("amortised", [True, False], ids=["recognition", "free"])
def test_refined_posteriors_raise_the_bound_of_new_points_without_moving_the_model(amortised):
    torch.manual_seed(16)
    y = _small_data()
    model = VAEDGP(6, [3, 2], 5, [8], recognition=amortised, num_points=12).to(DT)
    model.initialise(y, generator=_gen(16))
    mask = torch.rand(y.shape, generator=_gen(17)) > 0.4
    state = {k: v.clone() for k, v in model.state_dict().items()}
    start = model.refine_posteriors(y, mask, steps=0)
    refined = model.refine_posteriors(y, mask, steps=100)
    filled = torch.where(mask, y, model.fill_value)
    with torch.no_grad():
        assert (
            model.posterior_bound(refined, filled, mask).sum()
            > model.posterior_bound(start, filled, mask).sum()
        )
        imputed = model.impute(y, mask, steps=20)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.requires_grad for p in model.parameters())
    assert [q.shape for q, _ in refined] == [(12, 3), (12, 2)]
    assert torch.equal(imputed[mask], y[mask]) and bool(imputed.isfinite().all())


# --- 5. Errors ---------------------------------------------------------------------------------


def test_bad_inputs_raise_value_errors_with_clear_messages():
    y = _small_data()
    with pytest.raises(ValueError, match="latent_dims"):
        VAEDGP(6, [], 5)
    with pytest.raises(ValueError, match="num_inducing"):
        VAEDGP(6, [2], 0)
    with pytest.raises(ValueError, match="num_points"):
        VAEDGP(6, [2], 3, recognition=False)
    with pytest.raises(ValueError, match="kernel"):
        VAEDGP(6, [2], 3, kernel="matern")
    model = VAEDGP(6, [2], 3).to(DT)
    with pytest.raises(ValueError, match=r"y must have shape \[B, 6\], got \[12, 5\]"):
        model.bound(y[:, :5])
    with pytest.raises(ValueError, match="mask must have shape"):
        model.bound(y, torch.ones(12, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="hidden_dims"):
        DeepGPRegressor(1, 1, [0])
    with pytest.raises(ValueError, match=r"x must have shape \[B, 1\]"):
        DeepGPRegressor(1, 1).predict(torch.zeros(3, 2))


# --- 6. Training ---------------------------------------------------------------------------------


def test_short_training_of_a_two_layer_vae_dgp_increases_the_bound():
    torch.manual_seed(14)
    y = _small_data(n=60, seed=14)
    model = VAEDGP(6, [3, 2], 8, [16]).to(DT).initialise(y, generator=_gen(14))
    with torch.no_grad():
        before = model.bound(y).mean().item()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        optimiser.zero_grad()
        (-model.bound(y).mean()).backward()
        optimiser.step()
    with torch.no_grad():
        after = model.bound(y).mean().item()
    assert after > before + 2.0, (before, after)  # nats per data point


def test_deep_gp_regressor_with_a_hidden_layer_trains_and_predicts():
    torch.manual_seed(15)
    x, y = _rbf_setup(n=40, seed=15)
    model = DeepGPRegressor(1, 1, [2], num_inducing=10, recognition_hidden=[16]).to(DT)
    model.initialise(x, y, generator=_gen(15))
    with torch.no_grad():
        before = model.bound(x, y).mean().item()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimiser.zero_grad()
        (-model.bound(x, y).mean()).backward()
        optimiser.step()
    with torch.no_grad():
        after = model.bound(x, y).mean().item()
        mean, var = model.predict(x)
        log_pred = model.log_predictive(x, y)
    assert after > before, (before, after)
    assert mean.shape == var.shape == (40, 1) and bool((var > 0).all())
    assert log_pred.shape == (40,) and bool(log_pred.isfinite().all())
