"""UNet noise-prediction network ``ε̂(x_t, t[, cond])`` for image diffusion models.

The architecture of DDPM (Ho et al. 2020, "Denoising Diffusion Probabilistic Models",
appendix B) with the refinements of Dhariwal & Nichol 2021 ("Diffusion Models Beat GANs on
Image Synthesis"): residual blocks with GroupNorm/SiLU and an additive per-channel time bias,
multi-head self-attention at chosen resolutions, skip concatenations between the down and up
paths, and zero-initialised residual/output convolutions so that the network starts at 0.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.nn.embeddings import TimeEmbedding


def _zero(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` in place and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``x [B, C_in, H, W], emb [B, D] -> [B, C_out, H, W]``.

    ``GroupNorm → SiLU → conv3×3 → + Linear(SiLU(emb)) → GroupNorm → SiLU → dropout →
    conv3×3 (zero-init)``, plus the input (through a 1×1 conv when the widths differ).
    """

    def __init__(
        self, in_ch: int, out_ch: int, time_dim: int, num_groups: int, dropout: float
    ) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            nn.GroupNorm(num_groups, in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        )
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, out_ch))
        self.out_layers = nn.Sequential(
            nn.GroupNorm(num_groups, out_ch),
            nn.SiLU(),
            nn.Dropout(dropout),
            _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1)),
        )
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x) + self.time_proj(emb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the ``H·W`` positions: ``[B, C, H, W] -> [B, C, H, W]``.

    ``GroupNorm → qkv linear → scaled dot-product attention → linear (zero-init)``, residual,
    the projections acting on the ``[B, H·W, C]`` tokens (as diffusers' attention does).
    Checkpoints from before issue 22, whose projections were 1×1 convolutions (weights
    ``[O, C, 1, 1]``), load unchanged: the weights are reshaped to ``[O, C]`` on load, the
    same function.
    """

    def __init__(self, channels: int, num_heads: int, num_groups: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the width {channels}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = _zero(nn.Linear(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        qkv = self.qkv(tokens).reshape(b, h * w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, HW, C/heads]
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        return x + self.proj(out).transpose(1, 2).reshape(b, c, h, w)

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, *args: object, **kwargs: object
    ) -> None:
        for name in ("qkv.weight", "proj.weight"):
            weight = state_dict.get(prefix + name)
            if weight is not None and weight.ndim == 4 and weight.shape[2:] == (1, 1):
                state_dict[prefix + name] = weight.reshape(weight.shape[:2])  # a 1×1 conv's
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class UNet(nn.Module):
    """Denoiser ``ε̂(x [B, C, H, W], t [B], cond [B, C_cond, H, W] | None) -> [B, C_out, H, W]``.

    Args:
        in_channels: channels ``C`` of the noisy image ``x``.
        out_channels: output channels; default ``in_channels``.
        base_channels: width of the first level; level ``i`` has ``base · channel_mults[i]``.
        channel_mults: width multipliers, one per resolution level; every level but the last
            halves the resolution, so ``H`` and ``W`` must be divisible by
            ``2 ** (len(channel_mults) - 1)``.
        num_res_blocks: residual blocks per level on the down path (``+1`` on the up path).
        attention_resolutions: feature-map sizes (``min(H, W)`` at a level, computed from
            ``image_size``) that get self-attention after each residual block. The middle
            block always has attention.
        cond_channels: channels of an optional conditioning image concatenated to ``x``.
        dropout: dropout rate inside the residual blocks.
        num_groups: GroupNorm groups; must divide every width.
        time_dim: width of the time embedding; default ``4 · base_channels``.
        num_heads: attention heads.
        image_size: input size ``min(H, W)`` used to place attention (28: levels 28, 14, 7).
            Other sizes are accepted by ``forward``; attention stays at the same levels.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int | None = None,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (7,),
        cond_channels: int = 0,
        dropout: float = 0.0,
        num_groups: int = 8,
        time_dim: int | None = None,
        num_heads: int = 1,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        if in_channels < 1 or cond_channels < 0 or num_res_blocks < 1 or not channel_mults:
            raise ValueError(
                "need in_channels >= 1, cond_channels >= 0, num_res_blocks >= 1 and at least "
                f"one channel multiplier; got {in_channels}, {cond_channels}, "
                f"{num_res_blocks}, {tuple(channel_mults)}"
            )
        widths = [base_channels * m for m in channel_mults]
        if any(w < 1 or w % num_groups for w in [base_channels, *widths]):
            raise ValueError(f"num_groups={num_groups} must divide every width {widths}")
        self.in_channels = in_channels
        self.out_channels = out_channels if out_channels is not None else in_channels
        self.cond_channels = cond_channels
        self.num_levels = len(widths)
        time_dim = time_dim if time_dim is not None else 4 * base_channels
        self.time_embed = TimeEmbedding(base_channels, out_dim=time_dim)

        def res(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, time_dim, num_groups, dropout)

        def attn(level: int) -> nn.Module:
            if image_size // 2**level in attention_resolutions:
                return AttentionBlock(widths[level], num_heads, num_groups)
            return nn.Identity()

        self.input_conv = nn.Conv2d(in_channels + cond_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()  # each entry: ModuleList([res, attn]) or a downsample conv
        skip_widths, ch = [base_channels], base_channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(nn.ModuleList([res(ch, width), attn(level)]))
                ch = width
                skip_widths.append(ch)
            if level < self.num_levels - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_widths.append(ch)
        self.mid = nn.ModuleList(
            [res(ch, ch), AttentionBlock(ch, num_heads, num_groups), res(ch, ch)]
        )
        self.up = nn.ModuleList()  # each entry: ModuleList([res, attn]) or an upsample conv
        for level in reversed(range(self.num_levels)):
            for _ in range(num_res_blocks + 1):
                self.up.append(
                    nn.ModuleList([res(ch + skip_widths.pop(), widths[level]), attn(level)])
                )
                ch = widths[level]
            if level > 0:
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out = nn.Sequential(
            nn.GroupNorm(num_groups, ch),
            nn.SiLU(),
            _zero(nn.Conv2d(ch, self.out_channels, 3, padding=1)),
        )

    def _check_inputs(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape [B, {self.in_channels}, H, W], got {list(x.shape)}"
            )
        b, _, h, w = x.shape
        factor = 2 ** (self.num_levels - 1)
        if h % factor or w % factor:
            raise ValueError(
                f"H and W must be divisible by 2**(len(channel_mults)-1) = {factor}, got {h}×{w}"
            )
        if t.ndim == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"t must have shape [{b}] (or be a scalar), got {list(t.shape)}")
        if self.cond_channels == 0 and cond is not None:
            raise ValueError("cond was given but the UNet was built with cond_channels=0")
        if self.cond_channels > 0:
            expected = (b, self.cond_channels, h, w)
            if cond is None:
                raise ValueError(f"cond of shape {list(expected)} is required (cond_channels > 0)")
            if cond.shape != expected:
                raise ValueError(f"cond must have shape {list(expected)}, got {list(cond.shape)}")
        return t

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """``x [B, C, H, W]``, ``t [B]`` (times in [0, 1]), ``cond [B, C_cond, H, W]``
        ``-> ε̂ [B, C_out, H, W]``."""
        t = self._check_inputs(x, t, cond)
        emb = self.time_embed(t)
        h = self.input_conv(x if cond is None else torch.cat([x, cond], dim=1))
        skips = [h]
        for block in self.down:
            h = block[1](block[0](h, emb)) if isinstance(block, nn.ModuleList) else block(h)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for block in self.up:
            if isinstance(block, nn.ModuleList):
                h = block[1](block[0](torch.cat([h, skips.pop()], dim=1), emb))
            else:
                h = block(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)
