"""The reverse chain's fast form (issue 22: step constants as floats, the time embedding and
c(x) folded into the denoiser's first layer, the chain's densities taken at the end; issue 23:
the DDIM step's constants as floats too) gives the numbers of the straightforward per-step
formulation, values and gradients, same seed."""

import pytest
import torch
from torch import nn

from diffvi.distributions.gaussian import LOG_2PI
from diffvi.posteriors import build_diffusion_posterior
from diffvi.posteriors.diffusion import DiffusionPosterior

K, B, F, D = 3, 4, 6, 2


def reference_reverse(q: DiffusionPosterior, y_T, x, generator=None, label=None):
    """DiffusionPosterior.reverse before issue 22, step by step (the DDPM and DDIM branches)."""
    c = q._condition(x, y_T.shape[1], label)
    if c is not None:
        c = c.expand(y_T.shape[0], *c.shape)
    s = q.schedule
    ddim = q.sampler == "ddim"
    variances = s.reverse_variances(q.reverse_variance)
    y, chain = y_T, [y_T]
    log_q = log_r = y_T.new_zeros(y_T.shape[:-1]) if not ddim else None
    for t in range(s.num_steps, 0, -1):
        i = t - 1
        beta, alpha, alpha_bar = s.betas[i], s.alphas[i], s.alpha_bars[i]
        eps_hat = q.predict_noise(y, q.time_features[i].expand(*y.shape[:-1], -1), c)
        if ddim:
            y0_hat = (y - (1 - alpha_bar).sqrt() * eps_hat) / alpha_bar.sqrt()
            ab_prev = s.alpha_bars_prev[i]
            y_prev = ab_prev.sqrt() * y0_hat + (1 - ab_prev).sqrt() * eps_hat
        else:
            mean = (y - beta / (1 - alpha_bar).sqrt() * eps_hat) / alpha.sqrt()
            noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
            y_prev = mean + variances[i].sqrt() * noise
            log_q = log_q - 0.5 * (noise.square() + LOG_2PI + variances[i].log()).sum(-1)
            resid = y - alpha.sqrt() * y_prev
            log_r = log_r - 0.5 * (resid.square() / beta + LOG_2PI + beta.log()).sum(-1)
        chain.append(y_prev)
        y = y_prev
    return torch.stack(chain), log_q, log_r


def posterior(dtype, conditional=True, num_labels=0, **options):
    torch.manual_seed(0)
    q = build_diffusion_posterior(
        F, D, num_steps=7, hidden=(16, 16), context_dim=5, conditional=conditional,
        beta_end=0.2, zero_init_denoiser=False, num_labels=num_labels, **options,
    )  # fmt: skip
    return q.to(dtype)


def run_both(q, dtype, label=None, frozen=False):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(B, F, generator=g, dtype=dtype)
    y_T = torch.randn(K, B, D, generator=g, dtype=dtype, requires_grad=True)
    outs = []
    for reference in (False, True):
        q.zero_grad()
        y_T.grad = None
        with q.frozen_chain() if frozen else torch.enable_grad():
            g = torch.Generator().manual_seed(9)
            if reference:
                chain, log_q, log_r = reference_reverse(q, y_T, x, g, label)
            else:
                out = q.reverse(y_T, x, g, label=label)
                chain, log_q, log_r = out.chain, out.log_q_steps, out.log_r
        loss = chain[-1].sin().sum() + (log_r.sum() if log_r is not None else 0)
        loss = loss + (log_q.sum() if log_q is not None else 0)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in q.named_parameters() if p.grad is not None}
        grads["y_T"] = y_T.grad.clone()
        outs.append((chain, log_q, log_r, grads))
    return outs


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"conditional": False},
        {"reverse_variance": "posterior"},
        {"num_labels": 3},
        {"conditional": False, "num_labels": 3},
        {"sampler": "ddim"},
    ],
)
@pytest.mark.parametrize("frozen", [False, True])
def test_fast_reverse_chain_equals_the_per_step_formulation_in_float64(options, frozen):
    q = posterior(torch.float64, **options)
    label = torch.tensor([0, 2, 1, 2]) if options.get("num_labels") else None
    (chain, log_q, log_r, grads), (chain0, log_q0, log_r0, grads0) = run_both(
        q, torch.float64, label, frozen
    )
    torch.testing.assert_close(chain, chain0, rtol=1e-12, atol=1e-12)
    if options.get("sampler") == "ddim":
        assert log_q is None and log_r is None and log_q0 is None
    else:
        torch.testing.assert_close(log_q, log_q0, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(log_r, log_r0, rtol=1e-12, atol=1e-10)
    assert grads.keys() == grads0.keys()
    if frozen:  # the chain's own weights get no gradient through the wake pass
        assert not any(n.startswith(("denoiser", "context")) for n in grads)
    for name, g in grads.items():
        torch.testing.assert_close(g, grads0[name], rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_fast_reverse_chain_equals_the_per_step_formulation_in_float32(sampler):
    q = posterior(torch.float32, sampler=sampler)
    (chain, log_q, log_r, grads), (chain0, log_q0, log_r0, grads0) = run_both(q, torch.float32)
    torch.testing.assert_close(chain, chain0, rtol=1e-5, atol=1e-5)
    if sampler == "ddpm":
        torch.testing.assert_close(log_q, log_q0, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(log_r, log_r0, rtol=1e-4, atol=1e-3)
    for name, g in grads.items():
        torch.testing.assert_close(g, grads0[name], rtol=1e-3, atol=1e-4, msg=name)


def test_a_denoiser_that_is_not_a_plain_mlp_goes_through_predict_noise_with_the_same_numbers():
    q = posterior(torch.float64)

    class Wrapped(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, h):
            return self.net(h)

    q.denoiser = Wrapped(q.denoiser)
    (chain, log_q, log_r, grads), (chain0, log_q0, log_r0, grads0) = run_both(q, torch.float64)
    torch.testing.assert_close(chain, chain0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_r, log_r0, rtol=1e-12, atol=1e-10)


def test_step_constants_follow_a_changed_schedule():
    q = posterior(torch.float64)
    first = q._step_constants()
    assert q._step_constants() is first  # cached
    q.schedule.betas.mul_(0.5)  # a loaded state dict changes the buffers in place
    assert q._step_constants().sigma != first.sigma


def test_ddvi_loss_and_gradients_on_the_same_seed_equal_the_per_step_formulation(monkeypatch):
    from diffvi.models import build_vae
    from diffvi.objectives import DDVI

    torch.manual_seed(1)
    model, _ = build_vae((F,), "iwae-1", latent_dims=[D], hidden=[[8]])
    model, q = model.double(), posterior(torch.float64)
    x = torch.bernoulli(torch.full((B, F), 0.5, dtype=torch.float64))
    objective = DDVI(k=2, beta_reg=0.3)

    def loss_and_grads():
        torch.manual_seed(5)
        out = objective(model, q, x)
        params = [*model.parameters(), *q.parameters()]
        return out.loss.detach(), out.bound, torch.autograd.grad(out.loss, params)

    fast = loss_and_grads()

    def old(self, y_T, x, generator=None, label=None):
        from diffvi.posteriors.diffusion import ReverseChain

        return ReverseChain(*reference_reverse(self, y_T, x, generator, label))

    monkeypatch.setattr(DiffusionPosterior, "reverse", old)
    slow = loss_and_grads()
    torch.testing.assert_close(fast[0], slow[0], rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-12, atol=1e-10)
    for a, b in zip(fast[2], slow[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
