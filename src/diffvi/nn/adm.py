"""OpenAI's ADM UNet ("ablated diffusion model", Dhariwal & Nichol 2021, "Diffusion Models Beat
GANs on Image Synthesis", §3 and appendix), written so that the published guided-diffusion
checkpoints load into it unchanged.

The prior of DPS (Chung et al. 2023, FFHQ 256 × 256, ``ffhq_10m.pt``), ΠGDM, DDRM and RED-diff
(ImageNet 256 × 256 unconditional, ``256x256_diffusion_uncond.pt``) is this network. It predicts
the noise ε̂(x_t, t) of a 1000-step discrete diffusion from ``x_t [B, 3, H, W]`` in [−1, 1] and
the integer step index ``t ∈ {0, …, 999}`` (fractional indices are accepted). With
``learn_sigma`` it returns ``2C`` channels: ε̂, then the interpolation values ``v ∈ [−1, 1]`` of
the learned-range variance (Nichol & Dhariwal 2021, "Improved DDPM", eq. 15):
``log Σ_t = ((v + 1) / 2) log β_t + (1 − (v + 1) / 2) log β̃_t``.

Architecture (parameter names follow the checkpoints, so ``load_state_dict(strict=True)``
works):

- time embedding: sinusoids ``[cos(t ω_k), sin(t ω_k)]``, ``ω_k = 10000^(−k/h)`` of width
  ``model_channels``, then Linear → SiLU → Linear to ``4 · model_channels`` (``time_embed``);
  a class embedding is added for class-conditional models (``label_emb``);
- ``input_blocks``: a 3 × 3 stem, then per level ``num_res_blocks`` residual blocks (with
  self-attention where the downsampling factor is listed) and, except at the last level, a
  downsampling block (a residual block with average pooling inside when ``resblock_updown``);
- ``middle_block``: residual block, attention, residual block;
- ``output_blocks``: per level ``num_res_blocks + 1`` residual blocks on the concatenation
  with the matching skip activation, attention where listed, and an upsampling block;
- ``out``: GroupNorm → SiLU → zero-initialised 3 × 3 convolution.

Residual blocks apply the time embedding as an adaptive GroupNorm
(``GN(h) · (1 + scale) + shift``) when ``use_scale_shift_norm``, else as an added bias.
Attention is multi-head with 1-D 1 × 1 convolutions for qkv and the output projection; the
heads are split before q/k/v ("legacy" order, the published checkpoints) or after
(``use_new_attention_order``). GroupNorm (32 groups) runs in float32 for half-precision inputs.
"""

import math
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

# The published configurations (keyword arguments of ADMUNet). Sources: guided-diffusion's
# README (256x256_diffusion_uncond.pt), DPS's configs/model_config.yaml (ffhq_10m.pt); RED-diff's
# _configs/model/{imagenet256_uncond,ffhq256_uncond}.yaml use the same two.
ADM_CONFIGS: dict[str, dict[str, Any]] = {
    "imagenet256-uncond": {
        "image_size": 256,
        "model_channels": 256,
        "num_res_blocks": 2,
        "attention_resolutions": (32, 16, 8),
        "channel_mult": (1, 1, 2, 2, 4, 4),
        "num_head_channels": 64,
        "use_scale_shift_norm": True,
        "resblock_updown": True,
        "learn_sigma": True,
    },
    "ffhq256": {
        "image_size": 256,
        "model_channels": 128,
        "num_res_blocks": 1,
        "attention_resolutions": (16,),
        "channel_mult": (1, 1, 2, 2, 4, 4),
        "num_heads": 4,
        "num_head_channels": 64,
        "use_scale_shift_norm": True,
        "resblock_updown": True,
        "learn_sigma": True,
    },
}

# guided-diffusion's channel multipliers per image size (used when channel_mult is not given).
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in (at least) float32: ``[B, C, ...] -> [B, C, ...]`` in x's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.float32, torch.float64):
            return super().forward(x)
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def _zeroed(module: nn.Module) -> nn.Module:
    """``module`` with every parameter set to zero (output layers start at 0)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def adm_timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """ADM's sinusoidal step embedding: ``timesteps [N] -> [N, dim]``.

    ``[cos(t ω_0), …, cos(t ω_{h−1}), sin(t ω_0), …, sin(t ω_{h−1})]`` with ``h = dim // 2``,
    ``ω_k = max_period^(−k/h)`` and ``t`` the raw step index (not scaled); a zero column pads
    an odd ``dim``. Computed in float32 (float64 when ``timesteps`` is float64).
    """
    dtype = torch.float64 if timesteps.dtype == torch.float64 else torch.float32
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=dtype, device=timesteps.device)
    freqs = torch.exp(exponent / half)
    angles = timesteps.to(dtype)[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class Resample(nn.Module):
    """Nearest-neighbour ×2 upsampling or stride-2 downsampling, ``[B, C, H, W] ->
    [B, C, 2H, 2W]`` or ``[B, C, H/2, W/2]``; with ``use_conv`` a 3 × 3 convolution (applied
    after upsampling; strided for downsampling), else average pooling for downsampling."""

    def __init__(self, channels: int, up: bool, use_conv: bool) -> None:
        super().__init__()
        self.up = up
        self.use_conv = use_conv
        if up:
            if use_conv:
                self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        elif use_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        else:
            self.op = nn.AvgPool2d(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        if not self.up:
            return self.op(x)
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class ADMResBlock(nn.Module):
    """``x [B, C_in, H, W], emb [B, E] -> [B, C_out, H', W']`` (``H' = 2H``, ``H/2`` or ``H``).

    ``in_layers`` (GN → SiLU → conv3×3, resampling both paths between the SiLU and the conv
    when ``up``/``down``), the embedding through ``emb_layers`` (SiLU → Linear) as a bias or a
    scale and shift of the second GroupNorm, ``out_layers`` (GN → SiLU → dropout → zero-init
    conv3×3), plus the (resampled) input through ``skip_connection`` (identity when the widths
    agree, else a 1 × 1 convolution).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = False
        self.in_layers = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        self.h_upd: nn.Module = Resample(channels, up, False) if self.updown else nn.Identity()
        self.x_upd: nn.Module = Resample(channels, up, False) if self.updown else nn.Identity()
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            _norm(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            _zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: Tensor, emb: Tensor) -> Tensor:
        norm_in, act_in, conv_in = self.in_layers
        h = act_in(norm_in(x))
        h = conv_in(self.h_upd(h))
        x = self.x_upd(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        norm_out, *rest = self.out_layers
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = norm_out(h) * (1 + scale) + shift
        else:
            h = norm_out(h + e)
        for layer in rest:
            h = layer(h)
        return self.skip_connection(x) + h


class ADMAttention(nn.Module):
    """Multi-head self-attention over the ``H·W`` positions, residual: ``[B, C, H, W] ->
    [B, C, H, W]``. ``num_heads = C / num_head_channels`` when ``num_head_channels`` is given.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int | None = None,
        new_order: bool = False,
    ) -> None:
        super().__init__()
        if num_head_channels is not None:
            if channels % num_head_channels:
                raise ValueError(
                    f"num_head_channels must divide the width {channels}, got {num_head_channels}"
                )
            num_heads = channels // num_head_channels
        elif channels % num_heads:
            raise ValueError(f"num_heads must divide the width {channels}, got {num_heads}")
        self.num_heads = num_heads
        self.new_order = new_order
        self.use_checkpoint = False
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))  # [B, 3C, T]
        heads, head_dim, length = self.num_heads, c // self.num_heads, flat.shape[-1]
        if self.new_order:  # q | k | v, each split into heads
            qkv = qkv.reshape(b, 3, heads, head_dim, length).transpose(0, 1)
        else:  # heads, each holding its q | k | v
            qkv = qkv.reshape(b, heads, 3, head_dim, length).permute(2, 0, 1, 3, 4)
        q, k, v = (part.transpose(-1, -2) for part in qkv)  # [B, heads, T, head_dim]
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, length)
        return (flat + self.proj_out(out)).reshape(b, c, *spatial)


class EmbedSequential(nn.Sequential):
    """A sequence of layers; residual blocks also receive the time embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ADMResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """ADM noise predictor ``(x [B, C, H, W] in [−1, 1], timesteps [B], y [B] | None) ->
    [B, C_out, H, W]`` with ``C_out = 2C`` (ε̂, then the variance values v) when
    ``learn_sigma``, else ``C`` (ε̂).

    Args:
        image_size: the training resolution; with ``attention_resolutions`` it fixes where
            attention sits, and the default ``channel_mult``. Other sizes divisible by
            ``2^(levels − 1)`` run too.
        model_channels: base width (guided-diffusion's ``num_channels``).
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_resolutions: feature-map resolutions (in pixels at ``image_size``) with
            self-attention, e.g. ``(32, 16, 8)``.
        in_channels: image channels C.
        channel_mult: width multiplier per level (default: guided-diffusion's for
            ``image_size``).
        learn_sigma: also output the learned-range variance values (``2C`` channels).
        num_classes: class-conditional with this many classes (``y`` then required).
        dropout: dropout rate in the residual blocks.
        num_heads: attention heads (when ``num_head_channels`` is None).
        num_head_channels: channels per head (then ``num_heads = width / num_head_channels``).
        num_heads_upsample: heads on the way up (default ``num_heads``).
        use_scale_shift_norm: time embedding as GroupNorm scale and shift.
        resblock_updown: resample with residual blocks instead of plain (conv) resampling.
        conv_resample: plain resampling uses 3 × 3 convolutions.
        use_new_attention_order: split q/k/v before the heads.
        use_checkpoint: gradient checkpointing in the residual and attention blocks (less
            memory when differentiating through the network, e.g. for DPS).
    """

    def __init__(
        self,
        image_size: int,
        model_channels: int,
        num_res_blocks: int,
        attention_resolutions: Sequence[int] = (),
        in_channels: int = 3,
        channel_mult: Sequence[float] | None = None,
        learn_sigma: bool = False,
        num_classes: int | None = None,
        dropout: float = 0.0,
        num_heads: int = 1,
        num_head_channels: int | None = None,
        num_heads_upsample: int | None = None,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        conv_resample: bool = True,
        use_new_attention_order: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if channel_mult is None:
            if image_size not in DEFAULT_CHANNEL_MULT:
                raise ValueError(
                    f"channel_mult must be given for image_size {image_size} "
                    f"(defaults exist for {sorted(DEFAULT_CHANNEL_MULT)})"
                )
            channel_mult = DEFAULT_CHANNEL_MULT[image_size]
        widths = [int(mult * model_channels) for mult in channel_mult]
        if any(width <= 0 or width % 32 for width in widths):
            raise ValueError(
                f"every level's width (channel_mult x model_channels) must be a multiple of 32 "
                f"(GroupNorm with 32 groups), got {widths}"
            )
        if num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
        for res in attention_resolutions:
            if res <= 0 or image_size % res:
                raise ValueError(
                    f"attention resolutions must divide image_size {image_size}, got {res}"
                )
        self.config: dict[str, Any] = {
            "image_size": image_size,
            "model_channels": model_channels,
            "num_res_blocks": num_res_blocks,
            "attention_resolutions": tuple(attention_resolutions),
            "in_channels": in_channels,
            "channel_mult": tuple(channel_mult),
            "learn_sigma": learn_sigma,
            "num_classes": num_classes,
            "dropout": dropout,
            "num_heads": num_heads,
            "num_head_channels": num_head_channels,
            "num_heads_upsample": num_heads_upsample,
            "use_scale_shift_norm": use_scale_shift_norm,
            "resblock_updown": resblock_updown,
            "conv_resample": conv_resample,
            "use_new_attention_order": use_new_attention_order,
        }  # the constructor's arguments (channel_mult filled in): ADMUNet(**config) rebuilds it
        self.image_size = image_size
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.model_channels = model_channels
        self.num_classes = num_classes
        self.channel_mult = tuple(channel_mult)
        attention_factors = {image_size // res for res in attention_resolutions}
        heads_up = num_heads if num_heads_upsample in (None, -1) else num_heads_upsample
        head_channels = None if num_head_channels in (None, -1) else num_head_channels

        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        def res_block(ch_in: int, ch_out: int, up: bool = False, down: bool = False) -> nn.Module:
            return ADMResBlock(
                ch_in, emb_dim, dropout, ch_out, use_scale_shift_norm, up=up, down=down
            )

        def attention(ch: int, heads: int) -> nn.Module:
            return ADMAttention(ch, heads, head_channels, use_new_attention_order)

        ch = widths[0]
        self.input_blocks = nn.ModuleList(
            [EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))]
        )
        skip_widths = [ch]
        factor = 1  # downsampling factor of the current level
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers = [res_block(ch, width)]
                ch = width
                if factor in attention_factors:
                    layers.append(attention(ch, num_heads))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_widths.append(ch)
            if level < len(widths) - 1:
                down = (
                    res_block(ch, ch, down=True)
                    if resblock_updown
                    else Resample(ch, up=False, use_conv=conv_resample)
                )
                self.input_blocks.append(EmbedSequential(down))
                skip_widths.append(ch)
                factor *= 2

        self.middle_block = EmbedSequential(
            res_block(ch, ch), attention(ch, num_heads), res_block(ch, ch)
        )

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            for i in range(num_res_blocks + 1):
                layers = [res_block(ch + skip_widths.pop(), width)]
                ch = width
                if factor in attention_factors:
                    layers.append(attention(ch, heads_up))
                if level > 0 and i == num_res_blocks:
                    layers.append(
                        res_block(ch, ch, up=True)
                        if resblock_updown
                        else Resample(ch, up=True, use_conv=conv_resample)
                    )
                    factor //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(
            _norm(ch), nn.SiLU(), _zeroed(nn.Conv2d(ch, self.out_channels, 3, padding=1))
        )
        self.use_checkpoint = use_checkpoint

    @property
    def use_checkpoint(self) -> bool:
        """Gradient checkpointing in the residual and attention blocks."""
        return self._use_checkpoint

    @use_checkpoint.setter
    def use_checkpoint(self, value: bool) -> None:
        self._use_checkpoint = bool(value)
        for module in self.modules():
            if isinstance(module, ADMResBlock | ADMAttention):
                module.use_checkpoint = self._use_checkpoint

    def forward(self, x: Tensor, timesteps: Tensor, y: Tensor | None = None) -> Tensor:
        """``x [B, C, H, W]`` (in [−1, 1]), ``timesteps [B]`` (or a scalar; step indices
        0 … T − 1, may be fractional), ``y [B]`` class labels for a class-conditional model
        ``-> [B, C_out, H, W]`` in x's dtype; the network runs in its parameters' dtype."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape [B, {self.in_channels}, H, W], got {list(x.shape)}"
            )
        multiple = 2 ** (len(self.channel_mult) - 1)
        if x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(
                f"x's height and width must be multiples of {multiple}, got {list(x.shape[2:])}"
            )
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        if tuple(timesteps.shape) != (x.shape[0],):
            raise ValueError(
                f"timesteps must have shape [{x.shape[0]}] or be a scalar, "
                f"got {list(timesteps.shape)}"
            )
        if y is None and self.num_classes is not None:
            raise ValueError(f"this class-conditional model needs y [{x.shape[0]}], got None")
        if y is not None and self.num_classes is None:
            raise ValueError(f"this model is unconditional: y must be None, got {type(y).__name__}")
        dtype = self.out[2].weight.dtype
        emb = adm_timestep_embedding(timesteps, self.model_channels)
        emb = self.time_embed(emb.to(self.time_embed[0].weight.dtype))
        if y is not None:
            if tuple(y.shape) != (x.shape[0],):
                raise ValueError(f"y must have shape [{x.shape[0]}], got {list(y.shape)}")
            emb = emb + self.label_emb(y)
        h = x.to(dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h).to(x.dtype)


def adm_config(config: str | Mapping[str, Any]) -> dict[str, Any]:
    """The ADMUNet keyword arguments of a published config name or of a dict (copied)."""
    if isinstance(config, str):
        if config not in ADM_CONFIGS:
            raise ValueError(f"ADM config must be one of {sorted(ADM_CONFIGS)}, got {config!r}")
        return dict(ADM_CONFIGS[config])
    return dict(config)


@cache
def _published_shapes(name: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        model = ADMUNet(**ADM_CONFIGS[name])
    return tuple(state_shapes(model).items())


def state_shapes(model: nn.Module | Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a module's state dict (or of a state dict), sorted by key. Builds
    nothing: a model made under ``torch.device("meta")`` gives the same answer as a real one."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return {key: tuple(state[key].shape) for key in sorted(state)}


def _describe_mismatch(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]], shown: int = 4
) -> str:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [
        f"{k}: expected {list(expected[k])}, got {list(found[k])}"
        for k in expected
        if k in found and expected[k] != found[k]
    ]
    parts = []
    for label, items in [
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", mismatched),
    ]:
        if items:
            more = f" and {len(items) - shown} more" if len(items) > shown else ""
            parts.append(f"{len(items)} {label} ({'; '.join(items[:shown])}{more})")
    return ", ".join(parts)


def guess_adm_config(state: Mapping[str, Tensor]) -> str | None:
    """The name of the published config whose keys and shapes ``state`` has exactly, or None."""
    found = state_shapes(state)
    for name in ADM_CONFIGS:
        if dict(_published_shapes(name)) == found:
            return name
    return None


def _load_error_detail(error: BaseException) -> str:
    """The informative part of a torch.load error (its unpickler's reason, not its advice)."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    detail = lines[0].split(". Please")[0].rstrip(".") if lines else ""
    return detail or type(error).__name__


def read_adm_state_dict(path: str | Path, mmap: bool = False) -> dict[str, Tensor]:
    """The state dict in a guided-diffusion ``.pt`` file, read with
    ``torch.load(weights_only=True)`` onto the CPU; ``mmap`` maps the file instead of reading
    it (for its keys and shapes: nothing is read until a tensor is used; a file in the legacy
    non-zip format is read whole).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a state dict (a pickle that needs code, or another object).
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise FileNotFoundError(f"ADM checkpoint {path} {what}: expected a .pt state dict")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as error:  # mmap needs the zip format
            if not mmap or "zipfile" not in str(error):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path} is not a state dict torch.load(weights_only=True) can read "
            f"({_load_error_detail(error)}): expected a .pt file of tensors"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"{path} must hold a state dict (a dict of str to tensors), got "
            f"{type(state).__name__}"
            + (f" with keys {sorted(map(str, state))[:5]}" if isinstance(state, Mapping) else "")
        )
    return dict(state)


def load_adm_checkpoint(
    path: str | Path,
    config: str | Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> ADMUNet:
    """An :class:`ADMUNet` with the weights of a guided-diffusion ``.pt`` state dict.

    ``config`` is a name in :data:`ADM_CONFIGS` (``"imagenet256-uncond"`` for
    ``256x256_diffusion_uncond.pt``, ``"ffhq256"`` for DPS's ``ffhq_10m.pt``), ADMUNet's
    keyword arguments, or None: the published config whose keys and shapes the file has. The
    file is read with ``torch.load(weights_only=True)`` (no code runs); its keys and shapes must
    be exactly the config's. The model is built on the meta device and takes the file's
    tensors (cast to ``dtype``), so memory holds one copy.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a state dict (a pickle that needs code, or another object), or keys
            and shapes that differ from the config's (the first few listed, with the
            published config they match, if any).
    """
    kwargs = None if config is None else adm_config(config)
    state = read_adm_state_dict(path)
    guess = guess_adm_config(state)
    if kwargs is None:
        if guess is None:
            raise ValueError(
                f"{path} matches no published ADM config ({', '.join(sorted(ADM_CONFIGS))}): "
                "name its config (ADMUNet's keyword arguments)"
            )
        config, kwargs = guess, adm_config(guess)
    with torch.device("meta"):
        model = ADMUNet(**kwargs)
    expected, found = state_shapes(model), state_shapes(state)
    if expected != found:
        label = f"ADM config {config!r}" if isinstance(config, str) else "the given ADM config"
        hint = f"; it matches config {guess!r}" if guess is not None else ""
        raise ValueError(
            f"{path} does not fit {label}: {_describe_mismatch(expected, found)}{hint}"
        )
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return model.eval()
