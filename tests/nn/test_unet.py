"""Tests of the UNet denoiser (shapes, conditioning, zero-init, gradients, attention, fitting)."""

import pytest
import torch
from torch import nn

from diffvi.nn import UNet
from diffvi.nn.unet import AttentionBlock, ResBlock


def _small(**kwargs) -> UNet:
    defaults = dict(base_channels=8, channel_mults=(1, 2, 2), num_groups=4)
    return UNet(**{**defaults, **kwargs})


def _perturb(model: nn.Module, scale: float = 0.05) -> None:
    """Add noise to every parameter so that zero-initialised layers stop masking gradients."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("size", [28, 32])
def test_output_shape_equals_input_shape(size):
    torch.manual_seed(0)
    model = _small(in_channels=3, image_size=size)
    x = torch.randn(2, 3, size, size)
    assert model(x, torch.rand(2)).shape == x.shape


def test_output_has_out_channels_when_different_from_in_channels():
    model = _small(in_channels=1, out_channels=2)
    assert model(torch.randn(2, 1, 28, 28), torch.rand(2)).shape == (2, 2, 28, 28)


def test_cond_changes_output_and_missing_or_wrong_cond_raises():
    torch.manual_seed(0)
    model = _small(cond_channels=2)
    _perturb(model)
    x, t = torch.randn(2, 1, 28, 28), torch.rand(2)
    out_a = model(x, t, torch.randn(2, 2, 28, 28))
    out_b = model(x, t, torch.randn(2, 2, 28, 28))
    assert not torch.allclose(out_a, out_b)
    with pytest.raises(ValueError, match="cond"):
        model(x, t)
    with pytest.raises(ValueError, match="cond"):
        model(x, t, torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match="cond"):
        _small()(x, t, torch.randn(2, 2, 28, 28))


def test_wrong_spatial_size_or_channels_raises():
    model = _small()
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(2, 1, 30, 30), torch.rand(2))
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(2, 1, 28, 26), torch.rand(2))
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(2, 3, 28, 28), torch.rand(2))
    with pytest.raises(ValueError, match="t must have shape"):
        model(torch.randn(2, 1, 28, 28), torch.rand(3))


def test_output_is_exactly_zero_at_init_then_depends_on_t_after_perturbing_zero_inits():
    torch.manual_seed(0)
    model = _small()
    x, t = torch.randn(2, 1, 28, 28), torch.full((2,), 0.1)
    assert torch.equal(model(x, torch.rand(2)), torch.zeros_like(x))
    # t enters only through the residual branches, whose last convs are zero at init too:
    # perturbing the output conv alone leaves the output independent of t.
    with torch.no_grad():
        model.out[-1].weight.normal_(0.0, 0.1)
    assert torch.equal(model(x, t), model(x, t + 0.5))
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, ResBlock):
                block.out_layers[-1].weight.normal_(0.0, 0.1)
    assert not torch.allclose(model(x, t), model(x, t + 0.5))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = _small(cond_channels=1)
    _perturb(model)
    out = model(torch.randn(2, 1, 28, 28), torch.rand(2), torch.randn(2, 1, 28, 28))
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_attention_present_exactly_at_requested_resolution():
    def count(model: UNet) -> int:
        return sum(isinstance(m, AttentionBlock) for m in model.modules())

    # levels at 28, 14, 7: attention at 7 on the down path (1 block), up path (2) + middle (1)
    assert count(_small(attention_resolutions=(7,))) == 4
    assert count(_small(attention_resolutions=())) == 1
    assert count(_small(attention_resolutions=(14, 7))) == 7
    model = _small(attention_resolutions=(7,))
    level_7 = [b[1] for b in model.down if isinstance(b, nn.ModuleList)][-1]
    assert isinstance(level_7, AttentionBlock) and level_7.qkv.in_features == 16


def test_works_in_float64_and_in_train_and_eval_modes():
    torch.manual_seed(0)
    model = _small(dropout=0.1).double()
    _perturb(model)
    x, t = torch.randn(2, 1, 28, 28, dtype=torch.float64), torch.rand(2, dtype=torch.float64)
    assert model.train()(x, t).dtype == torch.float64
    model.eval()
    assert torch.equal(model(x, t), model(x, t))  # no dropout noise in eval mode


def test_tiny_unet_overfits_fixed_batch():
    torch.manual_seed(0)
    # 8 → 4: one down/up step, attention only in the middle block (keeps the test < 3 s)
    model = UNet(
        base_channels=8, channel_mults=(1, 2), num_groups=4, image_size=8, attention_resolutions=()
    )
    x, target, t = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.full((4,), 0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = (model(x, t) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
