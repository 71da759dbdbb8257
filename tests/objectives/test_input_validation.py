"""The objectives check their data at the entry: x outside the likelihood's support, NaN or
infinite values and a wrong-sized x are ValueErrors naming the problem and what was expected;
the value check can be switched off, globally or in a block."""

import pytest
import torch

import diffvi
from diffvi.evaluation import estimate_log_likelihood
from diffvi.models import build_vae
from diffvi.models.sbn import SigmoidBeliefNet
from diffvi.objectives import ELBO, IWAE, NVIL, RWS, VIMCO
from diffvi.posteriors.bernoulli import BernoulliPosterior

EVENT = (1, 4, 4)


@pytest.fixture
def vae():
    torch.manual_seed(0)
    return build_vae(EVENT, latent_dims=[2], hidden=[[8]])


@pytest.fixture
def data():
    return torch.rand(3, *EVENT, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("objective", [ELBO(k=2), IWAE(k=5), IWAE(k=5, estimator="dreg")])
def test_bernoulli_data_outside_zero_one_is_an_error_naming_the_range_and_support(
    vae, data, objective
):
    model, posterior = vae
    with pytest.raises(ValueError, match=r"values in \[.*, 5\], outside the expected \[0, 1\]"):
        objective(model, posterior, data.clamp(max=0.5) * 10)
    with pytest.raises(ValueError, match="BernoulliLikelihood.*divide by 255"):
        objective(model, posterior, data - 1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_data_is_an_error_not_a_nan_bound(vae, data, bad):
    model, posterior = vae
    x = data.clone()
    x[1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match="x: .* infinite value.*of 48; expected finite"):
        IWAE(k=5)(model, posterior, x)


def test_nan_data_is_an_error_under_an_unbounded_gaussian_likelihood(data):
    torch.manual_seed(0)
    model, posterior = build_vae(EVENT, likelihood="real-gaussian", latent_dims=[2], hidden=[[8]])
    x = data.clone()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN and 0 infinite"):
        ELBO()(model, posterior, x)


def test_a_gaussian_likelihood_accepts_data_outside_zero_one(data):
    torch.manual_seed(0)
    for likelihood in ("gaussian", "real-gaussian"):
        model, posterior = build_vae(EVENT, likelihood=likelihood, latent_dims=[2], hidden=[[8]])
        out = IWAE(k=5)(model, posterior, 255 * data - 100)
        assert torch.isfinite(out.bound).all()


def test_training_data_in_zero_one_passes_binary_and_grey_levels(vae, data):
    model, posterior = vae
    for x in (data, (data > 0.5).float(), torch.zeros_like(data), torch.ones_like(data)):
        assert torch.isfinite(IWAE(k=5)(model, posterior, x).bound).all()


@pytest.mark.parametrize("shape", [(3, 16), (3, 1, 5, 5), (3, 4, 4), (16,)])
def test_a_wrong_sized_x_names_the_expected_shape(vae, shape):
    model, posterior = vae
    for objective in (IWAE(k=5), ELBO()):
        with pytest.raises(ValueError) as err:
            objective(model, posterior, torch.rand(shape))
        message = str(err.value)
        assert "expected x of shape [B, *event_shape] = [B, 1, 4, 4]" in message
        assert f"got {list(shape)}" in message


def test_the_value_check_switches_off_globally_and_in_a_block(vae, data):
    model, posterior = vae
    x = 5 * data
    assert diffvi.validation_enabled()
    with diffvi.validation(False):
        assert not diffvi.validation_enabled()
        assert torch.isfinite(IWAE(k=5)(model, posterior, x).bound).all()
        with pytest.raises(ValueError, match="expected x of shape"):  # shapes: always checked
            IWAE(k=5)(model, posterior, x.flatten(1))
    assert diffvi.validation_enabled()
    try:
        diffvi.validation(False)
        assert not diffvi.validation_enabled()
        IWAE(k=5)(model, posterior, x)
    finally:
        diffvi.validation(True)
    with pytest.raises(ValueError, match="outside the expected"):
        IWAE(k=5)(model, posterior, x)


@pytest.mark.parametrize("objective", [VIMCO(k=2), RWS(k=2), NVIL(k=2)])
def test_score_function_estimators_check_the_sigmoid_belief_nets_binary_data(objective):
    torch.manual_seed(0)
    model = SigmoidBeliefNet(EVENT, [3])
    posterior = BernoulliPosterior(EVENT, [3])
    x = torch.randint(0, 2, (4, *EVENT)).float()
    assert torch.isfinite(objective(model, posterior, x).bound).all()
    with pytest.raises(ValueError, match=r"SigmoidBeliefNet scores values"):
        objective(model, posterior, 2 * x + 1)
    with pytest.raises(ValueError, match=r"= \[B, 1, 4, 4\]"):
        objective(model, posterior, x.flatten(1))


def test_estimate_log_likelihood_checks_every_batch(vae, data):
    model, posterior = vae
    x = torch.cat([data, data])
    x[4, 0, 1, 1] = 3.0  # in the second batch
    with pytest.raises(ValueError, match=r"values in \[.*, 3\]"):
        estimate_log_likelihood(model, posterior, x, k=4, batch_size=3)
    with pytest.raises(ValueError, match="expected x of shape"):
        estimate_log_likelihood(model, posterior, data.flatten(1), k=4)
