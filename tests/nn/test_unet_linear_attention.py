"""UNet attention projections as linear layers (issue 22): checkpoints whose projections are
1×1 convolutions (every one written before, the shipped priors included) load and give the
outputs of the convolutional block they were trained as."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from diffvi.nn import UNet
from diffvi.nn.unet import AttentionBlock
from diffvi.utils.paths import shipped_models_dir


class ConvAttention(nn.Module):
    """AttentionBlock as it was before issue 22 (qkv and proj as 1×1 convolutions)."""

    def __init__(self, channels: int, num_heads: int, num_groups: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def with_conv_attention(model: UNet) -> UNet:
    """The same UNet with every attention block swapped for the convolutional one."""
    for name, module in list(model.named_modules()):
        if isinstance(module, AttentionBlock):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            conv = ConvAttention(module.qkv.in_features, module.num_heads, module.norm.num_groups)
            setattr(parent, name.rsplit(".", 1)[-1], conv)
    return model


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_block_loads_a_conv_state_dict_and_gives_the_conv_blocks_output_in_float64(num_heads):
    torch.manual_seed(0)
    conv = ConvAttention(8, num_heads, 4).double()
    for p in conv.parameters():  # proj is zero-initialised in the UNet; use random weights
        p.data.normal_()
    block = AttentionBlock(8, num_heads, 4).double()
    block.load_state_dict(conv.state_dict(), strict=True)
    assert block.qkv.weight.shape == (24, 8) and block.proj.weight.shape == (8, 8)
    x = torch.randn(3, 8, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(block(x), conv(x), rtol=1e-12, atol=1e-12)


def test_a_linear_state_dict_still_loads_and_round_trips():
    block = AttentionBlock(8, 2, 4)
    other = AttentionBlock(8, 2, 4)
    other.load_state_dict(block.state_dict(), strict=True)
    for key, value in block.state_dict().items():
        assert torch.equal(value, other.state_dict()[key])


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_shipped_prior_converted_on_load_gives_the_outputs_of_the_conv_network(name):
    import json

    folder = shipped_models_dir() / name
    config = json.loads((folder / "model.json").read_text())["denoiser"]
    options = {k: v for k, v in config.items() if k != "name"}
    state = {
        k.removeprefix("model.").removeprefix("denoiser."): v
        for k, v in load_file(folder / "model.safetensors").items()
    }
    state = {k: v for k, v in state.items() if not k.startswith(("schedule", "_"))}
    assert any(v.ndim == 4 and k.endswith("qkv.weight") for k, v in state.items())
    reference = with_conv_attention(UNet(**options))
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert not missing, missing
    converted = UNet(**options)
    converted.load_state_dict(state, strict=False)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.02, 0.3, 0.7, 0.99])
    with torch.no_grad():
        torch.testing.assert_close(
            converted.double()(x.double(), t.double()),
            reference.double()(x.double(), t.double()),
            rtol=1e-10,
            atol=1e-10,
        )


def test_shipped_prior_loads_through_the_library_with_linear_attention():
    import diffvi

    family = diffvi.load("mnist")
    blocks = [m for m in family.model.modules() if isinstance(m, AttentionBlock)]
    assert blocks and all(b.qkv.weight.ndim == 2 for b in blocks)
    assert any(b.proj.weight.abs().sum() > 0 for b in blocks)  # trained weights, not the init
