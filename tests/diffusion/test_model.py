"""DiffusionModel: losses, the VDM bound's decoder, Tweedie's x0, and a small model that learns a
2-D mixture."""

import math

import pytest
import torch
from gaussian_data import COV, MEAN, ExactGaussianDenoiser

from diffvi.diffusion import DiffusionModel, build_schedule
from diffvi.evaluation.representation import mmd
from diffvi.nn import MLPDenoiser, UNet


def ring_of_gaussians(n: int, generator: torch.Generator) -> torch.Tensor:
    """8 Gaussians (std 0.1) evenly spaced on the circle of radius 2: ``[n, 2]``."""
    k = torch.randint(0, 8, (n,), generator=generator)
    angle = 2 * math.pi * k / 8
    centres = 2 * torch.stack([angle.cos(), angle.sin()], -1)
    return centres + 0.1 * torch.randn(n, 2, generator=generator)


def test_small_mlp_model_learns_a_2d_mixture_in_1500_steps():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = DiffusionModel(
        build_schedule("cosine"), MLPDenoiser(2, hidden=(128, 128, 128)), image=False
    )
    reference = ring_of_gaussians(1000, gen)
    before = mmd(
        model.sample((1000, 2), steps=50, generator=gen), reference, bandwidths=[0.1, 0.5, 1.0]
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(1500):
        loss = model.loss(ring_of_gaussians(256, gen), generator=gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    samples = model.sample((1000, 2), steps=100, generator=gen)
    after = mmd(samples, reference, bandwidths=[0.1, 0.5, 1.0])
    floor = mmd(ring_of_gaussians(1000, gen), reference, bandwidths=[0.1, 0.5, 1.0])
    assert before > 0.3
    # Stated threshold: MMD² < 0.05 (the untrained model: ≈ 0.37; two true samples: ≈ 0).
    assert after < 0.05, f"MMD² {after:.4f} (untrained {before:.3f}, two true samples {floor:.4f})"


def full_reconstruction(model: DiffusionModel, x: torch.Tensor, gamma_0: torch.Tensor, gen):
    """−log p(x | z_0) with the normaliser over all 256 levels (the reference)."""
    alpha, sigma = torch.sigmoid(-gamma_0).sqrt(), torch.sigmoid(gamma_0).sqrt()
    scaled = (alpha * x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)) / alpha
    levels = torch.linspace(-1, 1, 256, dtype=x.dtype)
    logits = -0.5 * torch.exp(-gamma_0) * (scaled.unsqueeze(-1) - levels) ** 2
    index = torch.round((x + 1) * 255 / 2).long()
    log_p = logits.gather(-1, index.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return -log_p.flatten(1).sum(1)


@pytest.mark.parametrize("gamma_0", [-13.3, -8.0, -4.0])
def test_windowed_pixel_decoder_equals_the_full_256_level_softmax(gamma_0):
    model = DiffusionModel(build_schedule("learned"), UNet(base_channels=8), image=True).double()
    x = 2 * (torch.randint(0, 256, (3, 1, 4, 4)).double() / 255) - 1
    g = torch.tensor(gamma_0, dtype=torch.float64)
    got = model._reconstruction(x, g, torch.Generator().manual_seed(5))
    expected = full_reconstruction(model, x, g, torch.Generator().manual_seed(5))
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_image_bound_is_positive_bits_per_dim_with_all_three_terms():
    model = DiffusionModel(
        build_schedule("learned"), UNet(base_channels=8, image_size=8, attention_resolutions=())
    )
    x = torch.randint(0, 256, (4, 1, 8, 8)).float() / 255
    terms = model.bound_terms(x)
    assert set(terms) == {"prior", "reconstruction", "diffusion"}
    assert all(v.shape == (4,) and torch.isfinite(v).all() for v in terms.values())
    bpd = model.bound(x)
    assert bpd.shape == (4,) and (bpd > 0).all()


def test_tweedie_x0_of_the_exact_denoiser_is_the_gaussian_posterior_mean():
    schedule = build_schedule("cosine").double()
    model = DiffusionModel(schedule, ExactGaussianDenoiser(schedule), image=False)
    z = torch.randn(5, 2, dtype=torch.float64)
    t = torch.full((5,), 0.4, dtype=torch.float64)
    alpha, sigma = schedule.alpha_sigma(t[:1])
    gain = (
        alpha
        * COV
        @ torch.linalg.inv(alpha**2 * COV + sigma**2 * torch.eye(2, dtype=torch.float64))
    )
    expected = MEAN + (z - alpha * MEAN) @ gain.T
    assert torch.allclose(model.predict_x0(z, t), expected, atol=1e-10)


def test_vdm_loss_gradient_reaches_the_learned_schedule_endpoints():
    model = DiffusionModel(
        build_schedule("learned"), MLPDenoiser(2, hidden=(16,)), loss_type="vdm", image=False
    )
    model.loss(torch.randn(32, 2)).mean().backward()
    assert model.schedule.gamma_0.grad is not None and model.schedule.gamma_0.grad != 0
    assert model.schedule.gamma_1.grad is not None and model.schedule.gamma_1.grad != 0


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="loss_type must be one of"):
        DiffusionModel(build_schedule("linear"), MLPDenoiser(2), loss_type="l1")
    model = DiffusionModel(
        build_schedule("linear"), UNet(base_channels=8, image_size=8, attention_resolutions=())
    )
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        model.loss(torch.full((2, 1, 8, 8), 2.0))
    with pytest.raises(ValueError, match="x must have shape"):
        MLPDenoiser(2)(torch.zeros(3, 4), torch.zeros(3))


def test_learned_schedule_shape_gets_the_gradient_of_the_squared_bound_and_endpoints_the_bound():
    """VDM App. I.2: the shape minimises E[L²] (the estimator's variance), the endpoints E[L]."""
    torch.manual_seed(0)
    x = torch.randn(16, 2, dtype=torch.float64)

    def grads(minimise_variance: bool, square: bool):
        torch.manual_seed(1)
        schedule = build_schedule("learned", hidden=8, minimise_variance=minimise_variance)
        torch.manual_seed(2)
        model = DiffusionModel(schedule, MLPDenoiser(2, hidden=(16,)), loss_type="vdm", image=False)
        model = model.double()
        bound = model.bound(x, generator=torch.Generator().manual_seed(3))
        (bound.pow(2) if square else bound).mean().backward()
        s = model.schedule
        return {n: p.grad.clone() for n, p in s.named_parameters()}

    mixed, plain, squared = grads(True, False), grads(False, False), grads(False, True)
    for name in ("gamma_0", "gamma_1"):
        assert torch.allclose(mixed[name], plain[name])
    for name in ("l2.weight", "l2.bias", "l3.weight"):
        assert torch.allclose(mixed[name], squared[name], rtol=1e-8, atol=1e-12), name
        assert not torch.allclose(mixed[name], plain[name])
