"""The structured 2-D priors of DDVI: samplers against their densities, labels, exactness.

Sampler-vs-density checks histogram 100k samples on a grid and integrate exp(log_prob) over
each cell with a midpoint sub-grid; the total-variation distance between the two cell
distributions (plus the mass outside the grid) must stay below the TV that sampling noise
alone gives in expectation (0.008-0.022 on these grids; the measured TVs sit at that floor)
plus ``TV_SYSTEMATIC`` = 0.01. A density with a noise scale 15-20% off adds 0.035-0.08.
The pinwheel's arms are 0.005 thin, so its grid lives
in sheared polar coordinates (ρ, ω = ψ + rate·e^ρ) of the arm-0 frame, where an arm is a
straight band (the shear has unit Jacobian; the density there is ρ·p(z)).
"""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from diffvi.distributions import MixturePrior, PinwheelPrior, SquarePrior, SwissRollPrior

NUM_SAMPLES = 100_000
TV_SYSTEMATIC = 0.01
MASS_TOL = 0.02

PRIOR_FACTORIES = {
    "pinwheel": PinwheelPrior,
    "swiss-roll": SwissRollPrior,
    "square": SquarePrior,
    "square-across-only": lambda: SquarePrior(along_edge_noise=False),
    "mixture": MixturePrior,
}


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _cell_tv(sample_uv: torch.Tensor, log_density, edges_u, edges_v, sub: int):
    """TV between the histogram of ``sample_uv [N, 2]`` and the integrated density on a grid.

    ``log_density(uv [..., 2]) -> [...]`` is the density in the (u, v) coordinates; each cell is
    integrated with a ``sub × sub`` midpoint rule. Returns (tv, the TV that sampling noise
    alone produces in expectation, integrated mass on the grid).
    """
    sample_uv = sample_uv.detach()
    counts, _, _ = np.histogram2d(
        sample_uv[:, 0].numpy(), sample_uv[:, 1].numpy(), bins=[edges_u, edges_v]
    )
    freq = torch.from_numpy(counts) / sample_uv.shape[0]
    du, dv = np.diff(edges_u)[0] / sub, np.diff(edges_v)[0] / sub
    u = torch.from_numpy(np.arange(edges_u[0], edges_u[-1] - du / 2, du) + du / 2)
    v = torch.from_numpy(np.arange(edges_v[0], edges_v[-1] - dv / 2, dv) + dv / 2)
    uu, vv = torch.meshgrid(u, v, indexing="ij")
    with torch.no_grad():
        dens = log_density(torch.stack((uu, vv), -1)).exp() * du * dv
    nu, nv = len(edges_u) - 1, len(edges_v) - 1
    mass = dens.reshape(nu, sub, nv, sub).sum((1, 3))
    outside = (1 - freq.sum()) - (1 - mass.sum())
    tv = 0.5 * ((freq - mass).abs().sum() + outside.abs())
    # TV expected from sampling noise alone: E|freq - m| ≈ √(2m(1-m)/(πN)) per cell.
    m = mass.clamp(0, 1)
    floor = 0.5 * torch.sqrt(2 * m * (1 - m) / (math.pi * sample_uv.shape[0])).sum()
    return float(tv), float(floor), float(mass.sum())


def _cartesian_case(name: str, prior, gen):
    z = prior.sample((NUM_SAMPLES,), gen)
    lim, cell, sub = {
        "swiss-roll": (3.6, 0.2, 4),
        "mixture": (3.5, 0.25, 3),
    }.get(name, (1.4, 0.1, 5))
    edges = np.linspace(-lim, lim, round(2 * lim / cell) + 1)
    return _cell_tv(z, prior.log_prob, edges, edges, sub)


def _pinwheel_frame(prior: PinwheelPrior, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z in arm l's frame rotated to arm 0, as sheared polar coordinates (ρ, ψ + rate·e^ρ)."""
    th = labels.to(z.dtype) * (2 * math.pi / prior.num_partitions)
    c, s = torch.cos(th), torch.sin(th)
    y = torch.stack((c * z[..., 0] - s * z[..., 1], s * z[..., 0] + c * z[..., 1]), -1)
    rho = y.norm(dim=-1)
    omega = torch.atan2(y[..., 1], y[..., 0]) + prior.rate * torch.exp(rho)
    omega = torch.remainder(omega + math.pi, 2 * math.pi) - math.pi
    return torch.stack((rho, omega), -1)


def _pinwheel_log_density_arm0(prior: PinwheelPrior):
    def log_density(rho_omega: torch.Tensor) -> torch.Tensor:
        rho, omega = rho_omega[..., 0], rho_omega[..., 1]
        psi = omega - prior.rate * torch.exp(rho)
        z = torch.stack((rho * torch.cos(psi), rho * torch.sin(psi)), -1)
        zeros = torch.zeros(rho.shape, dtype=torch.long)
        return prior.log_prob_given_label(z, zeros) + torch.log(rho)

    return log_density


# -- samplers against densities -------------------------------------------------------------


@pytest.mark.parametrize("name", ["swiss-roll", "square", "square-across-only", "mixture"])
def test_histogram_of_samples_matches_integrated_density_within_tv_tolerance(name, gen):
    prior = PRIOR_FACTORIES[name]().double()
    tv, floor, mass = _cartesian_case(name, prior, gen)
    assert abs(mass - 1) < MASS_TOL, f"{name}: density integrates to {mass:.4f} on the grid"
    assert tv < floor + TV_SYSTEMATIC, f"{name}: TV {tv:.4f}, sampling-noise floor {floor:.4f}"


def test_pinwheel_labelled_samples_match_exact_arm_density_in_sheared_polar_grid(gen):
    prior = PinwheelPrior().double()
    z, labels = prior.sample_with_labels(NUM_SAMPLES, gen)
    uv = _pinwheel_frame(prior, z, labels)  # every arm rotated onto arm 0
    edges_rho = np.linspace(0.0, 2.2, 23)
    edges_omega = np.linspace(-0.1, 0.1, 41)
    tv, floor, mass = _cell_tv(
        uv, _pinwheel_log_density_arm0(prior), edges_rho, edges_omega, sub=10
    )
    assert abs(mass - 1) < MASS_TOL, f"arm density integrates to {mass:.4f}"
    assert tv < floor + TV_SYSTEMATIC, f"TV {tv:.4f}, sampling-noise floor {floor:.4f}"


def test_pinwheel_unconditional_log_prob_integrates_to_one_over_a_fundamental_sector():
    # p is invariant under rotation by 2π/10, so over the sector |ω| < π/10 in (ρ, ω)
    # coordinates, 10·ρ·p integrates to one; the arms sit in |ω| < 0.1 of it.
    prior = PinwheelPrior().double()
    drho, domega = 0.02, 0.001
    rho = torch.arange(drho / 2, 2.2, drho, dtype=torch.float64)
    omega = torch.arange(-0.1 + domega / 2, 0.1, domega, dtype=torch.float64)
    r, w = torch.meshgrid(rho, omega, indexing="ij")
    psi = w - prior.rate * torch.exp(r)
    z = torch.stack((r * torch.cos(psi), r * torch.sin(psi)), -1)
    with torch.no_grad():
        mass = float((10 * r * prior.log_prob(z).exp()).sum() * drho * domega)
    assert abs(mass - 1) < MASS_TOL


# -- labelled partitions ----------------------------------------------------------------------

MIN_LABEL_ACCURACY = {
    "pinwheel": 0.99,
    "swiss-roll": 0.85,
    "square": 0.85,
    "square-across-only": 0.85,
    "mixture": 0.85,
}


@pytest.mark.parametrize("name", list(PRIOR_FACTORIES))
def test_samples_drawn_given_labels_score_highest_under_their_own_partition(name, gen):
    prior = PRIOR_FACTORIES[name]().double()
    labels = torch.arange(10).repeat_interleave(200)
    z = prior.sample((2000,), gen, labels=labels)
    per = prior.log_prob_per_partition(z)
    accuracy = float((per.argmax(-1) == labels).double().mean())
    assert accuracy > MIN_LABEL_ACCURACY[name], f"{name}: {accuracy:.3f}"
    own = prior.log_prob_given_label(z, labels)
    assert torch.isfinite(own).all()
    torch.testing.assert_close(own, per.gather(-1, labels[:, None]).squeeze(-1))


@pytest.mark.parametrize("name", list(PRIOR_FACTORIES))
def test_log_prob_is_the_uniform_mixture_over_labels_of_the_partition_densities(name, gen):
    prior = PRIOR_FACTORIES[name]().double()
    z = torch.cat((prior.sample((200,), gen), 4 * torch.rand(50, 2, generator=gen) - 2))
    z = z.double()
    stacked = torch.stack(
        [prior.log_prob_given_label(z, torch.full((len(z),), k)) for k in range(10)], -1
    )
    mixed = torch.logsumexp(stacked + prior.log_mixing_weights(), -1)
    finite = torch.isfinite(mixed)
    assert finite[:200].all()
    torch.testing.assert_close(prior.log_prob(z)[finite], mixed[finite], rtol=1e-9, atol=1e-9)
    if name != "mixture":
        torch.testing.assert_close(
            prior.log_mixing_weights(), torch.full((10,), -math.log(10), dtype=torch.float64)
        )


@pytest.mark.parametrize("name", ["pinwheel", "swiss-roll", "square"])
def test_each_partition_holds_one_tenth_of_the_samples(name, gen):
    _, labels = PRIOR_FACTORIES[name]().sample_with_labels(20_000, gen)
    freq = torch.bincount(labels, minlength=10) / 20_000
    assert labels.dtype == torch.int64
    assert (freq - 0.1).abs().max() < 0.01


# -- exactness of the pinwheel inversion --------------------------------------------------------


def _pinwheel_forward(prior: PinwheelPrior, f: torch.Tensor, label: int) -> torch.Tensor:
    a = 2 * math.pi * label / 10 + prior.rate * torch.exp(f[..., 0])
    c, s = torch.cos(a), torch.sin(a)
    return torch.stack((c * f[..., 0] + s * f[..., 1], -s * f[..., 0] + c * f[..., 1]), -1)


def test_pinwheel_jacobian_determinant_is_one_plus_rate_exp_f0_times_f1():
    prior = PinwheelPrior()
    f = torch.tensor([[1.1, 0.004], [0.7, -0.02], [1.4, 0.3]], dtype=torch.float64)
    for row in f:
        jac = torch.autograd.functional.jacobian(lambda x: _pinwheel_forward(prior, x, 3), row)
        expected = 1 + prior.rate * torch.exp(row[0]) * row[1]
        torch.testing.assert_close(torch.det(jac), expected, rtol=1e-12, atol=1e-12)


def test_pinwheel_log_prob_given_label_equals_change_of_variables_at_mapped_gaussian_draws(gen):
    prior = PinwheelPrior().double()
    std = torch.tensor([prior.radial_std, prior.tangential_std], dtype=torch.float64)
    f = torch.tensor([1.0, 0.0], dtype=torch.float64) + std * torch.randn(
        500, 2, generator=gen, dtype=torch.float64
    )
    log_f = Normal(torch.tensor([1.0, 0.0], dtype=torch.float64), std).log_prob(f).sum(-1)
    log_det = torch.log(1 + prior.rate * torch.exp(f[:, 0]) * f[:, 1])
    for label in (0, 7):
        z = _pinwheel_forward(prior, f, label)
        out = prior.log_prob_given_label(z, torch.full((500,), label))
        torch.testing.assert_close(out, log_f - log_det, rtol=1e-9, atol=1e-8)


def _brute_force_arm0_log_prob(prior: PinwheelPrior, y: tuple[float, float]) -> float:
    """Sum over every preimage found by a dense angle scan + Brent (slow, independent)."""
    rho, psi = math.hypot(*y), math.atan2(y[1], y[0])

    def h(t: float) -> float:
        return t - prior.rate * math.exp(rho * math.cos(t)) - psi

    th = np.linspace(-math.pi, math.pi, 200_001)
    branch = np.floor((th - prior.rate * np.exp(rho * np.cos(th)) - psi) / (2 * math.pi))
    terms = []
    for i in np.nonzero(branch[:-1] != branch[1:])[0]:
        lo, hi = sorted((branch[i], branch[i + 1]))
        for k in range(int(lo) + 1, int(hi) + 1):
            t = brentq(lambda x, k=k: h(x) - 2 * math.pi * k, th[i], th[i + 1], xtol=1e-15)
            f0, f1 = rho * math.cos(t), rho * math.sin(t)
            det = 1 + prior.rate * math.exp(f0) * f1
            terms.append(
                -0.5 * ((f0 - 1) / prior.radial_std) ** 2
                - 0.5 * (f1 / prior.tangential_std) ** 2
                - math.log(2 * math.pi * prior.radial_std * prior.tangential_std * abs(det))
            )
    top = max(terms)
    return top + math.log(sum(math.exp(x - top) for x in terms))


def test_pinwheel_log_prob_matches_brute_force_preimage_sum_near_and_far_from_the_arms(gen):
    prior = PinwheelPrior().double()
    near = prior.sample((8,), gen, labels=torch.zeros(8, dtype=torch.long))
    near = near + 0.02 * torch.randn(8, 2, generator=gen, dtype=torch.float64)
    far = torch.tensor(
        [[0.0, 0.0], [1.8, -0.4], [-2.5, 1.0], [3.0, 3.0], [-4.9, 0.2], [0.3, -5.0]],
        dtype=torch.float64,
    )
    y = torch.cat((near, far))
    ours = prior.log_prob_given_label(y, torch.zeros(len(y), dtype=torch.long))
    ref = torch.tensor([_brute_force_arm0_log_prob(prior, tuple(p)) for p in y.tolist()])
    # log p reaches -1e4 far out, where θ is ill-conditioned: compare relatively.
    torch.testing.assert_close(ours, ref.double(), rtol=1e-6, atol=1e-6)


# -- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pinwheel", "swiss-roll", "square", "mixture"])
def test_log_prob_gradient_in_z_matches_finite_differences(name, gen):
    prior = PRIOR_FACTORIES[name]().double()
    z = prior.sample((5,), gen) + 0.003 * torch.randn(5, 2, generator=gen, dtype=torch.float64)
    z = torch.cat((z.detach(), torch.tensor([[2.0, 1.0], [-0.3, 0.2]], dtype=torch.float64)))
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(prior.log_prob, (z,), eps=1e-7, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["pinwheel", "swiss-roll", "square", "mixture"])
def test_log_prob_and_its_gradient_are_finite_far_from_the_support(name):
    prior = PRIOR_FACTORIES[name]()
    z = torch.tensor([[0.0, 0.0], [6.0, -7.0], [-3.0, 3.0], [1e-8, 0.0]], requires_grad=True)
    out = prior.log_prob(z)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()


def test_across_only_square_has_zero_density_in_the_outer_corner_quadrants():
    prior = SquarePrior(along_edge_noise=False)
    out = prior.log_prob(torch.tensor([[1.2, 1.2], [-1.05, -1.3], [0.0, 1.0]]))
    assert out[0] == -math.inf and out[1] == -math.inf and torch.isfinite(out[2])


# -- shapes, seeds, dtypes, registry, validation -------------------------------------------------


@pytest.mark.parametrize("name", list(PRIOR_FACTORIES))
def test_sample_and_log_prob_shapes_follow_the_interface(name, gen):
    prior = PRIOR_FACTORIES[name]()
    assert prior.dim == 2 and prior.num_partitions == 10
    z = prior.sample((3, 4), gen)
    assert z.shape == (3, 4, 2) and z.dtype == torch.float32
    assert prior.log_prob(z).shape == (3, 4)
    assert prior.log_prob_per_partition(z).shape == (3, 4, 10)
    assert prior.log_prob_given_label(z, torch.tensor([0, 1, 2, 9])).shape == (3, 4)
    assert prior.log_prob_given_label(z[0], torch.tensor(5)).shape == (4,)
    z_lab, labels = prior.sample_with_labels(7, gen)
    assert z_lab.shape == (7, 2) and labels.shape == (7,) and labels.dtype == torch.int64
    assert prior.sample((2, 3), gen, labels=torch.zeros(2, 3, dtype=torch.int32)).shape == (2, 3, 2)
    assert prior.sample_with_labels(0, gen)[0].shape == (0, 2)
    torch.testing.assert_close(prior.responsibilities(z).sum(-1), torch.ones(3, 4))


@pytest.mark.parametrize("name", list(PRIOR_FACTORIES))
def test_same_generator_seed_gives_the_same_samples_and_labels(name):
    prior = PRIOR_FACTORIES[name]()
    a = prior.sample_with_labels(50, torch.Generator().manual_seed(3))
    b = prior.sample_with_labels(50, torch.Generator().manual_seed(3))
    c = prior.sample_with_labels(50, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", list(PRIOR_FACTORIES))
def test_double_moves_samples_log_probs_and_buffers_to_float64(name, gen):
    prior = PRIOR_FACTORIES[name]().double()
    z = prior.sample((6,), gen)
    assert z.dtype == torch.float64
    assert prior.log_prob(z).dtype == torch.float64
    assert all(b.dtype == torch.float64 for b in prior.buffers() if b.is_floating_point())
    assert prior.sample((6,), gen, labels=torch.arange(6)).dtype == torch.float64


def test_reference_arrays_are_buffers_so_to_device_moves_them():
    names = {n for n, _ in SwissRollPrior().named_buffers()}
    assert {"_centres", "_log_weights"} <= names
    names = {n for n, _ in SquarePrior().named_buffers()}
    assert {"_seg_start", "_seg_dir", "_seg_len"} <= names
    assert not any(SwissRollPrior().state_dict())  # rebuilt from the constructor, not saved


@pytest.mark.parametrize("name", list(PRIOR_FACTORIES))
def test_labels_out_of_range_or_not_integer_raise_value_error(name, gen):
    prior = PRIOR_FACTORIES[name]()
    z = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"labels in \[0, 9\]"):
        prior.log_prob_given_label(z, torch.tensor([0, 10, 1]))
    with pytest.raises(ValueError, match=r"labels in \[0, 9\]"):
        prior.sample((3,), gen, labels=torch.tensor([-1, 0, 1]))
    with pytest.raises(ValueError, match="integer labels"):
        prior.log_prob_given_label(z, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="sample shape"):
        prior.sample((4,), gen, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="broadcast"):
        prior.log_prob_given_label(z, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        prior.log_prob(torch.zeros(3, 3))


def test_constructors_reject_invalid_settings():
    with pytest.raises(ValueError, match="noise_std must be > 0"):
        SwissRollPrior(noise_std=0.0)
    with pytest.raises(ValueError, match="tangential_std must be > 0"):
        PinwheelPrior(tangential_std=0.0)
    with pytest.raises(ValueError, match="noise_std must be > 0"):
        SquarePrior(noise_std=-1.0)


# -- learnable mixture --------------------------------------------------------------------------


def test_mixture_log_prob_equals_torch_mixture_same_family(gen):
    prior = MixturePrior(num_components=10, dim=2).double()
    with torch.no_grad():
        prior.logits.copy_(torch.randn(10, generator=gen, dtype=torch.float64))
        prior.means.add_(0.3 * torch.randn(10, 2, generator=gen, dtype=torch.float64))
        prior.log_stds.add_(0.2 * torch.randn(10, 2, generator=gen, dtype=torch.float64))
    reference = MixtureSameFamily(
        Categorical(logits=prior.logits),
        Independent(Normal(prior.means, prior.log_stds.exp()), 1),
    )
    z = 2 * torch.randn(6, 5, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z), rtol=1e-12, atol=1e-12)
    resp = prior.responsibilities(z)
    torch.testing.assert_close(resp.sum(-1), torch.ones(6, 5, dtype=torch.float64))
    joint = prior.log_prob_per_partition(z) + torch.log_softmax(prior.logits, -1)
    torch.testing.assert_close(resp.log(), joint - reference.log_prob(z)[..., None])


def test_mixture_gradients_flow_to_logits_means_and_log_stds_and_samples_reparameterise(gen):
    prior = MixturePrior()
    z = torch.randn(16, 2, generator=gen)
    prior.log_prob(z).sum().backward()
    for p in (prior.logits, prior.means, prior.log_stds):
        assert p.grad is not None and p.grad.abs().sum() > 0
    prior.zero_grad()
    prior.sample((32,), gen).square().sum().backward()
    assert prior.means.grad.abs().sum() > 0 and prior.log_stds.grad.abs().sum() > 0


def test_mixture_not_learnable_holds_buffers_and_samples_labels_by_its_weights(gen):
    prior = MixturePrior(learnable=False)
    assert not list(prior.parameters())
    assert {"logits", "means", "log_stds"} <= {n for n, _ in prior.named_buffers()}
    learn = MixturePrior()
    with torch.no_grad():
        learn.logits.copy_(torch.tensor([3.0] + [0.0] * 9))
    _, labels = learn.sample_with_labels(20_000, gen)
    expected = torch.softmax(learn.logits.detach(), -1)[0]
    assert abs(float((labels == 0).float().mean()) - float(expected)) < 0.02
