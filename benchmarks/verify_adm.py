"""Check that diffvi's ADM UNet (:mod:`diffvi.nn.adm`) is OpenAI guided-diffusion's network:
the same state-dict keys and shapes for the published configs, and the same outputs on the
same random weights.

Usage (from the repository root; not run in CI, it needs a checkout of the official code)::

    git clone https://github.com/openai/guided-diffusion /tmp/guided-diffusion
    PYTHONPATH=src python benchmarks/verify_adm.py /tmp/guided-diffusion
    PYTHONPATH=src python benchmarks/verify_adm.py /tmp/guided-diffusion --full   # + full size
    PYTHONPATH=src python benchmarks/verify_adm.py /tmp/guided-diffusion \\
        --write-fixtures tests/fixtures/adm   # the key/shape lists the tests compare against

The reference is imported from the checkout (``guided_diffusion.script_util.create_model``
with the published command-line flags) and never copied into this repository.

1. Keys and shapes: for each published config the reference and ours are built on the meta
   device (no memory) and their ``{key: shape}`` compared; ``--write-fixtures`` writes the
   reference's sorted ``[key, shape]`` list as ``<name>.json``.
2. Outputs: the reference is built on the CPU, every parameter is drawn at random (the zero-
   initialised output layers too, else the output is 0), the state dict is loaded into ours
   with ``strict=True``, and both run on the same ``x [2, 3, S, S]`` and fractional
   ``timesteps``. Configs: each published one with ``model_channels`` cut to 64 (every other
   flag as published; 64×64 inputs), a variant covering the paths the published ones do not
   (class-conditional, new attention order, conv resampling, no scale-shift norm, 2 heads up
   and 4 down, no learned sigma), and with ``--full`` the published configs at full width
   (inputs 64×64: the network is convolutional, so the layers are all exercised).
   In float32 the reference runs unchanged. In float64 its float32 casts (``.float()`` in
   ``GroupNorm32`` and the attention softmax, the frequencies of ``timestep_embedding``) are
   lifted to float64 by a monkeypatch around its forward, so the comparison isolates the
   architecture from float32 rounding.

3. The prior: :func:`~diffvi.diffusion.adm.load_adm_prior` of the reference's random state dict
   against guided-diffusion's ``GaussianDiffusion.p_mean_variance`` (linear schedule, ε, the
   learned-range variance): x̂₀ and the reverse step's log-variance at steps 1, 500 and 999.

Writes ``benchmarks/results/verify_adm.{json,md}``.
"""

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from common import markdown_table, write_results
from torch import nn

from diffvi.nn.adm import ADM_CONFIGS, ADMUNet, state_shapes

# The published flags (guided-diffusion's create_model arguments). imagenet256-uncond:
# guided-diffusion README, "256x256 model (unconditional)"; ffhq256: DPS
# configs/model_config.yaml (ffhq_10m.pt). RED-diff's _configs/model/*.yaml agree.
PUBLISHED_FLAGS: dict[str, dict[str, Any]] = {
    "imagenet256-uncond": {
        "image_size": 256,
        "num_channels": 256,
        "num_res_blocks": 2,
        "attention_resolutions": "32,16,8",
        "class_cond": False,
        "learn_sigma": True,
        "num_head_channels": 64,
        "num_heads": 4,
        "resblock_updown": True,
        "use_scale_shift_norm": True,
        "use_fp16": False,
    },
    "ffhq256": {
        "image_size": 256,
        "num_channels": 128,
        "num_res_blocks": 1,
        "channel_mult": "",
        "learn_sigma": True,
        "class_cond": False,
        "attention_resolutions": "16",
        "num_heads": 4,
        "num_head_channels": 64,
        "num_heads_upsample": -1,
        "use_scale_shift_norm": True,
        "dropout": 0.0,
        "resblock_updown": True,
        "use_fp16": False,
        "use_new_attention_order": False,
    },
}

VARIANT_FLAGS: dict[str, Any] = {
    "image_size": 64,
    "num_channels": 64,
    "num_res_blocks": 2,
    "channel_mult": "1,2,2",
    "attention_resolutions": "32,16",
    "class_cond": True,
    "learn_sigma": False,
    "num_heads": 4,
    "num_heads_upsample": 2,
    "resblock_updown": False,
    "use_scale_shift_norm": False,
    "use_new_attention_order": True,
}


def ours_kwargs(flags: dict[str, Any]) -> dict[str, Any]:
    """guided-diffusion's create_model flags as ADMUNet keyword arguments."""
    mult = flags.get("channel_mult", "")
    heads_up = flags.get("num_heads_upsample", -1)
    kwargs: dict[str, Any] = {
        "image_size": flags["image_size"],
        "model_channels": flags["num_channels"],
        "num_res_blocks": flags["num_res_blocks"],
        "attention_resolutions": tuple(int(r) for r in flags["attention_resolutions"].split(",")),
        "learn_sigma": flags.get("learn_sigma", False),
        "num_heads": flags.get("num_heads", 1),
        "use_scale_shift_norm": flags.get("use_scale_shift_norm", False),
        "resblock_updown": flags.get("resblock_updown", False),
    }
    if mult:
        kwargs["channel_mult"] = tuple(float(m) if "." in m else int(m) for m in mult.split(","))
    if flags.get("num_head_channels", -1) != -1:
        kwargs["num_head_channels"] = flags["num_head_channels"]
    if heads_up != -1:
        kwargs["num_heads_upsample"] = heads_up
    if flags.get("class_cond"):
        kwargs["num_classes"] = 1000
    if flags.get("use_new_attention_order"):
        kwargs["use_new_attention_order"] = True
    if flags.get("dropout"):
        kwargs["dropout"] = flags["dropout"]
    return kwargs


def same_config(ours: dict[str, Any], published: dict[str, Any]) -> bool:
    """ADM_CONFIGS[name] says what the published flags say (defaults filled in)."""
    defaults = {"num_heads": 1, "channel_mult": None}
    a = {**defaults, **ours}
    b = {**defaults, **published}
    if a["channel_mult"] is None:
        a["channel_mult"] = (1, 1, 2, 2, 4, 4)
    if b["channel_mult"] is None:
        b["channel_mult"] = (1, 1, 2, 2, 4, 4)
    if "num_head_channels" in a:  # num_heads is then unused
        a.pop("num_heads")
        b.pop("num_heads")
    norm = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in a.items()}
    return norm == {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in b.items()}


def randomise(model: nn.Module, seed: int) -> None:
    """Every parameter drawn at random: weights N(0, 1/fan_in), GroupNorm scales 1 + N(0, 0.1²),
    other vectors N(0, 0.1²)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
                if p.ndim >= 2:
                    value = noise / math.sqrt(p[0].numel())
                elif isinstance(module, nn.GroupNorm) and name == "weight":
                    value = 1 + 0.1 * noise
                else:
                    value = 0.1 * noise
                p.copy_(value.to(p.dtype))


@contextmanager
def reference_in_float64(gd_unet: Any) -> Iterator[None]:
    """Inside the block, the reference's float32 casts keep float64: ``Tensor.float()`` (in
    GroupNorm32 and the attention softmax) returns a float64 tensor unchanged, and
    ``timestep_embedding`` computes its frequencies in float64."""

    def embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
        args = timesteps[:, None].double() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    to_float = torch.Tensor.float

    def keep_float64(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self if self.dtype == torch.float64 else to_float(self, *args, **kwargs)

    saved = gd_unet.timestep_embedding
    gd_unet.timestep_embedding, torch.Tensor.float = embedding, keep_float64
    try:
        yield
    finally:
        gd_unet.timestep_embedding, torch.Tensor.float = saved, to_float


def compare_outputs(
    create_model: Any, gd_unet: Any, flags: dict[str, Any], dtype: torch.dtype, size: int, seed: int
) -> dict[str, Any]:
    """Max |ours − reference| on random weights and inputs, with the output scale."""
    torch.manual_seed(seed)
    reference = create_model(**flags).eval()
    randomise(reference, seed)
    reference = reference.to(dtype)
    reference.dtype = dtype  # the dtype its forward casts the input to (float32 unless fp16)
    state = reference.state_dict()
    with torch.device("meta"):
        ours = ADMUNet(**ours_kwargs(flags))
    ours.load_state_dict(state, strict=True, assign=True)  # shares the reference's tensors
    ours.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, 3, size, size, generator=generator, dtype=torch.float64).to(dtype)
    timesteps = torch.tensor([3.0, 871.25], dtype=dtype)
    y = torch.tensor([7, 993]) if flags.get("class_cond") else None
    start = time.perf_counter()
    in_64 = dtype == torch.float64
    with torch.no_grad():
        with reference_in_float64(gd_unet) if in_64 else nullcontext():
            expected = reference(x, timesteps, y)
        got = ours(x, timesteps, y)
    seconds = time.perf_counter() - start
    diff = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    del reference, ours, state
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "input": [2, 3, size, size],
        "output": list(got.shape),
        "max_abs_diff": diff,
        "max_abs_output": scale,
        "relative": diff / scale,
        "seconds_both": round(seconds, 2),
    }


def compare_prior(create_model: Any, seed: int) -> dict[str, Any]:
    """Our prior (:func:`diffvi.diffusion.adm.load_adm_prior` of the reference's random state
    dict, ffhq256 flags at ``num_channels`` 64) against guided-diffusion's ``GaussianDiffusion``
    (linear schedule, ε prediction, learned-range variance, ``rescale_timesteps=False``):
    x̂₀ and the log-variance of the reverse step n → n − 1 at steps n = 1, 500, 999 (float32;
    guided-diffusion reads its tables in float32)."""
    from guided_diffusion import gaussian_diffusion as gd

    from diffvi.diffusion.adm import load_adm_prior

    flags = {**PUBLISHED_FLAGS["ffhq256"], "num_channels": 64}
    torch.manual_seed(seed)
    reference = create_model(**flags).eval()
    randomise(reference, seed)
    diffusion = gd.GaussianDiffusion(
        betas=gd.get_named_beta_schedule("linear", 1000),
        model_mean_type=gd.ModelMeanType.EPSILON,
        model_var_type=gd.ModelVarType.LEARNED_RANGE,
        loss_type=gd.LossType.MSE,
        rescale_timesteps=False,
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "adm.pt"
        torch.save(reference.state_dict(), path)
        prior = load_adm_prior(f"adm:{path}", ours_kwargs(flags))
    steps = torch.tensor([1, 500, 999])
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(seed + 2))
    t = steps.double() / 999
    with torch.no_grad():
        out = diffusion.p_mean_variance(reference, x, steps, clip_denoised=False)
        eps, values = prior.denoiser.predict(x, t.float())
        x0 = prior.predict_x0(x, t.float(), noise=eps)
        log_var = prior.denoiser.reverse_log_variance(values, t, (steps - 1).double() / 999)
    x0_diff = (x0 - out["pred_xstart"]).abs().flatten(1).amax(1)
    var_diff = (log_var - out["log_variance"]).abs().flatten(1).amax(1)
    return {
        "steps": steps.tolist(),
        "network_timesteps": prior.denoiser.network_timesteps(t.float()).tolist(),
        "x0_max_abs_diff": x0_diff.tolist(),
        "x0_max_abs": out["pred_xstart"].abs().flatten(1).amax(1).tolist(),
        "log_variance_max_abs_diff": var_diff.tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a checkout of openai/guided-diffusion")
    parser.add_argument("--full", action="store_true", help="also the full-width configs")
    parser.add_argument("--write-fixtures", type=Path, default=None, metavar="DIR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (args.checkout / "guided_diffusion" / "unet.py").is_file():
        parser.error(f"{args.checkout} has no guided_diffusion/unet.py")
    sys.path.insert(0, str(args.checkout.resolve()))
    import guided_diffusion.unet as gd_unet
    from guided_diffusion.script_util import create_model

    keys: dict[str, Any] = {}
    for name, flags in PUBLISHED_FLAGS.items():
        with torch.device("meta"):
            reference = create_model(**flags)
            ours = ADMUNet(**ADM_CONFIGS[name])
        expected, got = state_shapes(reference), state_shapes(ours)
        keys[name] = {
            "config_matches_flags": same_config(ADM_CONFIGS[name], ours_kwargs(flags)),
            "keys": len(expected),
            "parameters": sum(math.prod(s) for s in expected.values()),
            "identical": expected == got,
        }
        print(name, keys[name], flush=True)
        if args.write_fixtures is not None:
            args.write_fixtures.mkdir(parents=True, exist_ok=True)
            rows = [[k, list(s)] for k, s in expected.items()]
            text = "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n"
            (args.write_fixtures / f"{name}.json").write_text(text)

    cases: list[tuple[str, dict[str, Any], int]] = [
        (f"{name} (num_channels 64)", {**flags, "num_channels": 64}, 64)
        for name, flags in PUBLISHED_FLAGS.items()
    ]
    cases.append(("variant (see docstring)", VARIANT_FLAGS, 32))
    if args.full:
        cases += [(f"{name} (full)", flags, 64) for name, flags in PUBLISHED_FLAGS.items()]
    outputs: dict[str, list[dict[str, Any]]] = {}
    for label, flags, size in cases:
        outputs[label] = []
        for dtype in (torch.float32, torch.float64):
            result = compare_outputs(create_model, gd_unet, flags, dtype, size, args.seed)
            outputs[label].append(result)
            print(label, result, flush=True)
    prior = compare_prior(create_model, args.seed)
    print("prior", prior, flush=True)

    rows = [
        [name, r["keys"], f"{r['parameters']:,}", r["identical"], r["config_matches_flags"]]
        for name, r in keys.items()
    ]
    table_keys = markdown_table(
        ["config", "keys", "parameters", "keys and shapes identical", "config = published"], rows
    )
    rows = [
        [label, r["dtype"], r["input"], f"{r['max_abs_diff']:.2e}", f"{r['max_abs_output']:.3g}"]
        for label, results in outputs.items()
        for r in results
    ]
    table_out = markdown_table(
        ["network", "dtype", "input", "max abs diff", "max abs output"], rows
    )
    rows = [
        [n, f"{a:.2e}", f"{b:.3g}", f"{c:.2e}"]
        for n, a, b, c in zip(
            prior["steps"],
            prior["x0_max_abs_diff"],
            prior["x0_max_abs"],
            prior["log_variance_max_abs_diff"],
            strict=True,
        )
    ]
    table_prior = markdown_table(
        ["step n", "x̂₀ max abs diff", "max abs x̂₀", "log Σ (n → n−1) max abs diff"], rows
    )
    markdown = (
        "# ADM UNet against guided-diffusion\n\n"
        f"Reference: {args.checkout} (openai/guided-diffusion).\n\n"
        f"{table_keys}\n\n{table_out}\n\n"
        "Prior (load_adm_prior) against GaussianDiffusion.p_mean_variance, ffhq256 flags at "
        f"num_channels 64, float32:\n\n{table_prior}\n"
    )
    write_results("verify_adm", {"keys": keys, "outputs": outputs, "prior": prior}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
