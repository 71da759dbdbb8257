"""The official DDVI recipe's steps after issue 23 (the DDIM step's constants as floats, the
kernel density score without autograd's logsumexp and exp's slow path) give the numbers of the
formulation before it: loss, bound and every gradient, same seed, stage 1 and stage 2."""

import math
import sys
from pathlib import Path

import pytest
import torch

from diffvi.distributions import KernelDensityScore, official_prior_samples
from diffvi.models import build_vae
from diffvi.objectives import OfficialDDVI, OfficialDDVIStage2
from diffvi.posteriors import build_diffusion_posterior
from diffvi.posteriors.diffusion import DiffusionPosterior, ReverseChain

sys.path.insert(0, str(Path(__file__).parents[1] / "posteriors"))
from test_diffusion_posterior_fast_chain import reference_reverse  # noqa: E402

B, F, D = 6, 10, 2


def kde_before_issue_23(self: KernelDensityScore, z: torch.Tensor) -> torch.Tensor:
    """KernelDensityScore.forward before issue 23."""
    flat = z.reshape(-1, D)
    samples, hs = self.samples.to(flat.dtype), self.bandwidths.to(flat.dtype)
    log_norm = 0.5 * D * torch.log(2 * math.pi * hs.square()) + math.log(samples.shape[0])
    d2 = (flat[:, None, :] - samples).square().sum(-1)
    per_h = torch.stack([torch.logsumexp(d2 / (-2 * h * h), dim=-1) for h in hs])
    per_h = (per_h - log_norm[:, None]).clamp(-self.clamp, self.clamp)
    return (torch.logsumexp(per_h, dim=0) - math.log(len(hs))).reshape(z.shape[:-1])


def reverse_before_issue_23(self, y_T, x, generator=None, label=None):
    return ReverseChain(*reference_reverse(self, y_T, x, generator, label))


def problem(dtype: torch.dtype, conditional: bool, steps: int):
    torch.manual_seed(1)
    model, _ = build_vae((F,), "iwae-1", latent_dims=[D], hidden=[[8]])
    q = build_diffusion_posterior(
        F, D, num_steps=steps, hidden=(16, 16), context_dim=2, conditional=conditional,
        zero_init_denoiser=False,
    )  # fmt: skip
    x = torch.bernoulli(torch.full((B, F), 0.5))
    return model.to(dtype), q.to(dtype), x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("stage", [1, 2])
def test_official_steps_equal_the_formulation_before_issue_23(monkeypatch, dtype, stage):
    model, q, x = problem(dtype, conditional=stage == 2, steps=8 if stage == 1 else 12)
    if stage == 1:
        objective = OfficialDDVI(k=2)
    else:
        samples = official_prior_samples("pinwheel", 500, torch.Generator().manual_seed(0), dtype)
        objective = OfficialDDVIStage2(k=2, prior_score=KernelDensityScore(samples))
    params = [*model.parameters(), *q.parameters()]

    def run():
        torch.manual_seed(5)
        out = objective(model, q, x)
        sleep = objective.sleep_loss(model, q, B)
        grads = torch.autograd.grad(out.loss, params, allow_unused=True)
        sleep_grads = torch.autograd.grad(sleep, list(q.parameters()), allow_unused=True)
        values = [out.loss, out.bound, sleep, *out.metrics.values()]
        return [v.detach() for v in values], grads + sleep_grads

    values, grads = run()
    monkeypatch.setattr(DiffusionPosterior, "reverse", reverse_before_issue_23)
    monkeypatch.setattr(KernelDensityScore, "forward", kde_before_issue_23)
    values0, grads0 = run()
    if dtype == torch.float64:
        tol = {"rtol": 1e-9, "atol": 1e-9}
    else:  # the KDE's sharpest kernel (h = 0.005) multiplies rounding in z by 1/h² = 40,000
        tol = {"rtol": 2e-4, "atol": 2e-3}
    for a, b in zip(values, values0, strict=True):
        torch.testing.assert_close(a, b, **tol)
    for a, b in zip(grads, grads0, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **tol)
