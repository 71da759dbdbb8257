"""Score-function estimators on a sigmoid belief net small enough to enumerate: exact log p(x),
ELBO and K-sample bounds and their gradients; REINFORCE, NVIL and VIMCO unbiased against them;
reweighted wake-sleep's updates approach their exact targets; NVIL and VIMCO lower the variance
of plain REINFORCE; bounds ordered as theory says."""

import itertools
import math

import pytest
import torch

from diffvi.models.sbn import SigmoidBeliefNet
from diffvi.objectives import NVIL, REINFORCE, RWS, VIMCO
from diffvi.objectives.base import log_mean_exp
from diffvi.objectives.nvil import local_learning_signals
from diffvi.objectives.vimco import leave_one_out_log_means
from diffvi.posteriors.bernoulli import BernoulliPosterior

VISIBLE, LAYERS = 4, (2, 2)


def tiny(seed: int = 0, visible: int = VISIBLE, layers=LAYERS, scale: float = 1.0):
    """A randomised SBN, its posterior and two binary observations, in float64."""
    torch.manual_seed(seed)
    model = SigmoidBeliefNet((visible,), layers).double()
    posterior = BernoulliPosterior((visible,), layers).double()
    with torch.no_grad():
        for p in [*model.parameters(), *posterior.parameters()]:
            p.normal_(0, scale)
    x = torch.bernoulli(torch.full((2, visible), 0.5, dtype=torch.float64))
    return model, posterior, x


def states(model) -> torch.Tensor:
    """Every latent configuration ``[S, D]``, S = 2^D."""
    d = model.latent_dim
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)


def enumerate_all(model, posterior, x):
    """``(log p(x, h), log q(h | x))`` for every h: two ``[S, B]``."""
    h = states(model)
    z = h[:, None, :].expand(-1, x.shape[0], -1)
    return model.log_joint(x, z), posterior.log_prob(x, z)


def exact_log_px(model, posterior, x):
    return torch.logsumexp(enumerate_all(model, posterior, x)[0], 0)


def exact_bound(model, posterior, x, k: int):
    """E over K-tuples of q of log (1/K) Σ_j w_j, exactly: ``[B]`` (K = 1: the ELBO)."""
    log_p, log_q = enumerate_all(model, posterior, x)
    log_w = log_p - log_q
    index = torch.tensor(list(itertools.product(range(log_p.shape[0]), repeat=k)))
    tuple_log_q = log_q[index].sum(1)  # [T, B]
    return (tuple_log_q.exp() * log_mean_exp(log_w[index], dim=1)).sum(0)


def flat_grad(params) -> torch.Tensor:
    return torch.cat([
        torch.zeros(p.numel(), dtype=p.dtype) if p.grad is None else p.grad.flatten()
        for p in params
    ])  # fmt: skip


def exact_grad(loss, params) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([
        torch.zeros(p.numel(), dtype=p.dtype) if g is None else g.flatten()
        for g, p in zip(grads, params, strict=True)
    ])  # fmt: skip


def estimator_draws(objective, model, posterior, x, repeats: int, calls: int) -> torch.Tensor:
    """``[calls, P]``: each row the mean gradient of ``repeats`` independent estimator draws
    per observation (the objective's loss on x repeated)."""
    params = [*model.parameters(), *posterior.parameters()]
    x_rep = x.repeat(repeats, 1)
    rows = []
    for _ in range(calls):
        for p in params:
            p.grad = None
        objective(model, posterior, x_rep).loss.backward()
        rows.append(flat_grad(params))
    return torch.stack(rows)


def assert_unbiased(draws: torch.Tensor, exact: torch.Tensor) -> None:
    mean = draws.mean(0)
    se = draws.std(0) / math.sqrt(draws.shape[0])
    z = (mean - exact).abs() / se.clamp_min(1e-12)
    assert z.max() < 5, (z.max(), (mean - exact).abs().max())
    # Not a vacuous pass: the estimate is close to the exact gradient in norm too.
    assert (mean - exact).norm() < 0.1 * exact.norm()


def test_enumeration_gives_a_normalised_model_and_posterior():
    model, posterior, x = tiny()
    log_p, log_q = enumerate_all(model, posterior, x)
    assert torch.allclose(torch.logsumexp(log_q, 0), torch.zeros(2, dtype=torch.float64))
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=VISIBLE)), dtype=torch.float64)
    total = torch.logsumexp(exact_log_px(model, posterior, xs), 0)
    assert total.item() == pytest.approx(0.0, abs=1e-10)


def test_the_k_sample_bound_is_the_elbo_at_one_and_rises_with_k_towards_log_px():
    model, posterior, x = tiny(1)
    with torch.no_grad():
        log_px = exact_log_px(model, posterior, x)
        bounds = [exact_bound(model, posterior, x, k) for k in (1, 2, 3)]
        log_p, log_q = enumerate_all(model, posterior, x)
        elbo = (log_q.exp() * (log_p - log_q)).sum(0)
    torch.testing.assert_close(bounds[0], elbo)
    assert bool((bounds[0] < bounds[1]).all() and (bounds[1] < bounds[2]).all())
    assert bool((bounds[2] < log_px).all())
    # A Monte Carlo VIMCO bound estimates the exact 3-sample bound without bias.
    with torch.no_grad():
        draws = VIMCO(k=3)(model, posterior, x.repeat(20000, 1)).bound.view(20000, 2)
    se = draws.std(0) / math.sqrt(20000)
    assert bool(((draws.mean(0) - bounds[2]).abs() < 5 * se).all())


def test_local_learning_signals_keep_the_terms_each_layer_influences():
    p = torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1)  # log p(x|h1), log p(h1|h2), log p(h2)
    q = torch.tensor([1000.0, 10000.0]).view(2, 1, 1)  # log q(h1|x), log q(h2|h1)
    signals = local_learning_signals(p, q).flatten()
    assert signals.tolist() == [111 - 11000, 110 - 10000]


def test_reinforce_is_unbiased_for_the_elbo_gradient():
    model, posterior, x = tiny(2)
    params = [*model.parameters(), *posterior.parameters()]
    exact = exact_grad(-exact_bound(model, posterior, x, 1).mean(), params)
    draws = estimator_draws(REINFORCE(k=1), model, posterior, x, repeats=4000, calls=30)
    assert_unbiased(draws, exact)


@pytest.mark.parametrize("local_signals", [True, False])
def test_nvil_with_baselines_and_centering_is_unbiased(local_signals):
    model, posterior, x = tiny(3)
    params = [*model.parameters(), *posterior.parameters()]
    exact = exact_grad(-exact_bound(model, posterior, x, 1).mean(), params)
    nvil = NVIL(normalise=False, local_signals=local_signals).double()
    nvil.ensure_baselines(model)
    with torch.no_grad():
        for p in nvil.baselines.parameters():
            p.normal_(0, 1)  # an arbitrary (untrained) baseline: still no bias
        nvil.c.fill_(-3.0)
    draws = estimator_draws(nvil, model, posterior, x, repeats=4000, calls=30)
    assert_unbiased(draws, exact)
    assert int(nvil.steps) == 30 and nvil.c.shape == (2,)


@pytest.mark.parametrize("mean", ["geometric", "arithmetic"])
def test_vimco_is_unbiased_for_the_k_sample_bound_gradient(mean):
    model, posterior, x = tiny(4)
    params = [*model.parameters(), *posterior.parameters()]
    exact = exact_grad(-exact_bound(model, posterior, x, 3).mean(), params)
    draws = estimator_draws(VIMCO(k=3, mean=mean), model, posterior, x, repeats=3000, calls=30)
    assert_unbiased(draws, exact)


def test_leave_one_out_means_replace_one_weight_by_the_mean_of_the_others():
    log_w = torch.log(torch.tensor([[1.0], [2.0], [4.0]]))
    geometric = leave_one_out_log_means(log_w).exp().flatten() * 3
    arithmetic = leave_one_out_log_means(log_w, "arithmetic").exp().flatten() * 3
    expected_geo = [math.sqrt(8) + 6, 1 + 4 + 2, 1 + 2 + math.sqrt(2)]
    expected_ari = [3 + 6, 2.5 + 5, 1.5 + 3]
    assert geometric.tolist() == pytest.approx(expected_geo)
    assert arithmetic.tolist() == pytest.approx(expected_ari)
    with pytest.raises(ValueError, match="K >= 2"):
        leave_one_out_log_means(log_w[:1])


def test_rws_wake_updates_approach_the_exact_log_px_and_inclusive_kl_gradients():
    model, posterior, x = tiny(5)
    log_p, log_q = enumerate_all(model, posterior, x)
    true_post = torch.softmax(log_p.detach(), 0)  # p(h | x) [S, B]
    model_params, q_params = list(model.parameters()), list(posterior.parameters())
    exact_p = exact_grad(-exact_log_px(model, posterior, x).mean(), model_params)
    # Wake-phase q: −Σ_h p(h|x) ∇ log q(h|x), the gradient of KL(p(h|x) ‖ q(h|x)).
    exact_q = exact_grad(-(true_post * log_q).sum(0).mean(), q_params)
    # Self-normalised importance sampling: consistent in K (bias O(1/K)); 8 calls of K = 20000.
    got_p, got_q = torch.zeros_like(exact_p), torch.zeros_like(exact_q)
    for _ in range(8):
        for p in [*model_params, *q_params]:
            p.grad = None
        RWS(k=20000)(model, posterior, x).loss.backward()
        got_p += flat_grad(model_params) / 8
        got_q += flat_grad(q_params) / 8
    assert (got_p - exact_p).norm() < 0.05 * exact_p.norm()
    assert (got_q - exact_q).norm() < 0.05 * exact_q.norm()


def test_rws_sleep_phase_trains_q_on_the_models_dreams():
    model, posterior, x = tiny(6)
    out = RWS(k=2, wake_q=False, sleep=True)(model, posterior, x)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in posterior.parameters())
    assert "sleep_log_q" in out.metrics
    with pytest.raises(ValueError, match="wake_q or sleep"):
        RWS(wake_q=False, sleep=False)


def _phi_variance(objective, model, posterior, x, calls: int) -> float:
    """Σ over q's parameters of the variance across calls of the gradient estimate."""
    params = list(posterior.parameters())
    rows = []
    for _ in range(calls):
        for p in [*params, *model.parameters()]:
            p.grad = None
        objective(model, posterior, x).loss.backward()
        rows.append(flat_grad(params))
    return torch.stack(rows).var(0).sum().item()


def test_nvil_and_vimco_have_lower_gradient_variance_than_reinforce():
    # 12 visible units: the learning signal sits far from 0, where centring matters.
    model, posterior, x = tiny(7, visible=12, layers=(3, 2), scale=0.5)
    torch.manual_seed(0)
    plain = _phi_variance(REINFORCE(k=1), model, posterior, x, 400)
    nvil = NVIL().double()
    nvil.ensure_baselines(model)
    optimiser = torch.optim.Adam(nvil.parameters(), lr=1e-2)
    for _ in range(300):  # train only the baselines (and the moving averages)
        optimiser.zero_grad()
        nvil(model, posterior, x).loss.backward()
        optimiser.step()
    nvil_var = _phi_variance(NVIL(normalise=False).double(), model, posterior, x, 400)
    nvil.normalise = False  # compare like with like: no rescaling of the signal
    trained_var = _phi_variance(nvil, model, posterior, x, 400)
    assert nvil_var < 0.5 * plain
    assert trained_var < 0.5 * plain
    plain_k = _phi_variance(REINFORCE(k=5), model, posterior, x, 400)
    vimco = _phi_variance(VIMCO(k=5), model, posterior, x, 400)
    assert vimco < 0.5 * plain_k
