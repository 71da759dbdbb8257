"""A model description that asks for more parameters than the limit is refused before anything
is allocated, naming its largest sizes; ordinary models build exactly as without the check."""

import json
import time

import pytest
import torch

from diffvi.training.family import family_class
from diffvi.utils import model_size
from diffvi.utils.model_size import ModelTooLargeError, check_model_size
from diffvi.utils.paths import MODEL_SPEC, find_model


def _spec(**denoiser):
    """The shipped MNIST prior's model.json, with ``denoiser`` fields changed."""
    spec = json.loads((find_model("mnist") / MODEL_SPEC).read_text())
    spec["denoiser"].update(denoiser)
    return spec


def _families():
    """(kind, constructor arguments) of ordinary models of every family, among them builds
    that read tensor values (noise schedules) and one that needs every tensor on meta (NVIL)."""
    vae = family_class("vae").config_class
    sbn = family_class("sbn").config_class
    cvdm = family_class("cvdm").config_class
    vaedgp = family_class("vaedgp").config_class
    digits = {"dataset": "digits", "event_shape": [1, 8, 8]}
    model = {k: v for k, v in _spec().items() if k != "metadata"}
    return [
        ("vae", (vae.from_dict(digits),)),
        ("vae", (vae.from_dict({**digits, "posterior": "iaf", "iaf_flows": 2}),)),
        (
            "vae",
            (
                vae.from_dict(
                    {
                        **digits,
                        "objective": "ddvi",
                        "posterior": "diffusion",
                        "prior": "pinwheel",
                        "latent_dims": [2],
                    }
                ),
            ),
        ),  # fmt: skip
        ("sbn", (sbn.from_dict({**digits, "layers": [10, 10], "estimator": "nvil"}),)),
        ("diffusion", (None, model)),
        ("cvdm", (cvdm.from_dict({"x_channels": 1, "y_channels": 1, "image_size": 16}),)),
        ("vaedgp", (vaedgp.from_dict({"data_dim": 560, "num_points": 100}),)),
    ]


@pytest.mark.parametrize("case", range(len(_families())))
def test_ordinary_models_pass_and_build_the_same_weights_as_without_the_check(case):
    kind, args = _families()[case]
    cls = family_class(kind)
    torch.manual_seed(0)
    checked = cls(*args)
    after = torch.get_rng_state()
    torch.manual_seed(0)
    model_size._state.active = True  # as inside a check: no check
    try:
        unchecked = cls(*args)
    finally:
        model_size._state.active = False
    assert torch.equal(after, torch.get_rng_state())  # the check drew no random numbers
    a, b = checked.state_dict(), unchecked.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not t.is_meta for t in a.values())


def test_a_unet_of_a_billion_channels_is_refused_at_once_naming_the_field():
    cls = family_class("diffusion")
    spec = _spec(base_channels=10**9)
    start = time.perf_counter()
    with pytest.raises(ModelTooLargeError) as info:
        cls.from_spec(spec)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert message.startswith("the config asks for a diffusion model with a tensor of ")
    assert "base_channels=1000000000" in message and "refusing to allocate" in message
    assert "DIFFVI_MAX_PARAMETERS" in message and "\n" not in message
    assert "/x/model.json asks for" in str(info.value.from_source("/x/model.json"))


def test_many_tensors_each_under_the_limit_are_refused_by_their_sum():
    vae = family_class("vae")
    config = vae.config_class.from_dict(
        {"dataset": "digits", "event_shape": [1, 8, 8], "hidden": [[30000, 30000, 30000]]}
    )
    with pytest.raises(ModelTooLargeError, match=r"a vae model of more than 2\.\de\+09 param"):
        vae(config)


def test_the_limits_can_be_changed(monkeypatch):
    vae = family_class("vae")
    config = vae.config_class.from_dict({"dataset": "digits", "event_shape": [1, 8, 8]})
    monkeypatch.setenv("DIFFVI_MAX_PARAMETERS", "1e4")
    with pytest.raises(ModelTooLargeError, match=r"limit is 1\.0e\+04 parameters"):
        vae(config)
    monkeypatch.setenv("DIFFVI_MAX_PARAMETERS", "lots")
    with pytest.raises(ValueError, match="DIFFVI_MAX_PARAMETERS must be a number"):
        vae(config)
    monkeypatch.delenv("DIFFVI_MAX_PARAMETERS")
    monkeypatch.setattr(model_size, "MAX_MODULES", 5)
    with pytest.raises(ModelTooLargeError, match="with more than 5 submodules"):
        vae(config)


def test_a_build_that_fails_otherwise_is_left_to_the_real_build():
    def build():
        raise TypeError("not a size")

    check_model_size(build, "vae")  # no error: the real build reports its own

    def overflow():
        raise RuntimeError("Storage size calculation overflowed with sizes=[...]")

    with pytest.raises(ModelTooLargeError, match="a vae model whose tensors are too large"):
        check_model_size(overflow, "vae")
    with pytest.raises(ModelTooLargeError, match="a vae model with a tensor of 1.2e"):
        check_model_size(lambda: torch.nn.Linear(2**40, 2**40), "vae")
