"""OpenAI guided-diffusion (ADM) checkpoints as priors: a ``.pt`` state dict loaded into
:class:`~diffvi.nn.adm.ADMUNet` and wrapped as a :class:`~diffvi.diffusion.model.
DiffusionModel` that every sampler, solver and evaluator takes.

The published priors of DPS, ΠGDM, DDRM and RED-diff are ADM networks trained on guided-
diffusion's ``"linear"`` schedule (``get_named_beta_schedule``: β evenly from 10⁻⁴ · 1000/N to
0.02 · 1000/N over N = 1000 steps), predicting ε with a learned-range variance. The network
takes the raw 0-based step index (``rescale_timesteps=False``), which is the time convention
of :mod:`diffvi.diffusion.discrete` (step n at t = n / (N − 1); ᾱ_n exact there).

Sources (:func:`parse_adm_source`):

- ``adm:CONFIG:PATH``, e.g. ``adm:imagenet256-uncond:/models/256x256_diffusion_uncond.pt``
  or ``adm:ffhq256:/models/ffhq_10m.pt`` (``CONFIG`` a name in :data:`~diffvi.nn.adm.
  ADM_CONFIGS`);
- ``adm:PATH`` or a bare ``PATH`` ending in ``.pt`` / ``.pth``: the published config is
  recognised from the file's keys and shapes.

The prior samples as guided-diffusion's ``p_sample_loop`` with its sampling scripts'
``clip_denoised=True``: x̂₀ clamped to [−1, 1] (ε̂ recomputed from it), and the ancestral
(DDPM) step draws its noise with the learned-range variance (``p_mean_variance``, Nichol &
Dhariwal 2021 eq. 15: log Σ = ½(v + 1) log β + ½(1 − v) log β̃ of the step, with β and β̃ of
the respaced chain where it skips steps, :meth:`~diffvi.diffusion.discrete.
DiscreteTimeDenoiser.reverse_log_variance`); ``sample(variance="fixed_small")`` takes β̃
instead. DDIM and the solvers read ε̂ only.
"""

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffvi.diffusion.discrete import discrete_diffusion_model, named_betas
from diffvi.diffusion.model import DiffusionModel
from diffvi.nn.adm import (
    ADM_CONFIGS,
    ADMUNet,
    guess_adm_config,
    load_adm_checkpoint,
    read_adm_state_dict,
)

ADM_PREFIX = "adm:"
ADM_SUFFIXES = (".pt", ".pth")
NUM_TRAIN_STEPS = 1000


def adm_alphas_cumprod(num_steps: int = NUM_TRAIN_STEPS) -> Tensor:
    """ᾱ_n ``[num_steps]`` (float64) of guided-diffusion's ``"linear"`` schedule: β evenly from
    ``1e-4 · 1000/N`` to ``0.02 · 1000/N``."""
    scale = 1000 / num_steps
    return torch.cumprod(1 - named_betas("linear", num_steps, scale * 1e-4, scale * 0.02), 0)


def is_adm_source(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names an ADM checkpoint: ``adm:…``, or a path ending in ``.pt`` or
    ``.pth`` (whether or not it exists: a missing file is then a FileNotFoundError)."""
    text = str(source)
    return text.startswith(ADM_PREFIX) or Path(text).suffix in ADM_SUFFIXES


def parse_adm_source(source: str | os.PathLike[str]) -> tuple[str | None, Path]:
    """``(config name or None, path)`` of an ADM source (see the module docstring); None means
    "recognise the config from the file". A ``CONFIG:`` part that is not a published name is
    taken as part of the path only when it cannot be a name (a drive letter, a path)."""
    text = str(source)
    if not text.startswith(ADM_PREFIX):
        return None, Path(text)
    rest = text[len(ADM_PREFIX) :]
    if not rest:
        raise ValueError("expected adm:CONFIG:PATH or adm:PATH, got 'adm:' alone")
    name, sep, path = rest.partition(":")
    if sep and name in ADM_CONFIGS:
        return name, Path(path)
    if sep and len(name) > 1 and not any(c in name for c in "/\\."):
        raise ValueError(
            f"ADM config must be one of {sorted(ADM_CONFIGS)}, got {name!r} "
            "(expected adm:CONFIG:PATH or adm:PATH)"
        )
    return None, Path(rest)


def load_adm_prior(
    path: str | os.PathLike[str],
    config: str | dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> DiffusionModel:
    """A guided-diffusion checkpoint as a :class:`DiffusionModel` prior of images
    ``[B, 3, H, W]`` in [0, 1] (the [−1, 1] scaling stays inside), in eval mode on the CPU.

    ``path`` a ``.pt`` state dict or an ``adm:`` source (module docstring); ``config`` a name
    in :data:`~diffvi.nn.adm.ADM_CONFIGS`, ADMUNet's keyword arguments, or None (from the
    ``adm:CONFIG:`` part, else recognised from the file). Schedule: guided-diffusion's linear
    β over 1000 steps; prediction ε, with the learned-range variance when the config has
    ``learn_sigma``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that is not a state dict, or whose keys and shapes do not fit
            the config (:func:`~diffvi.nn.adm.load_adm_checkpoint`).
    """
    named, file = parse_adm_source(path)
    if config is not None and named is not None and config != named:
        raise ValueError(f"two ADM configs given: {named!r} in the source and {config!r}")
    network = load_adm_checkpoint(file, config if config is not None else named, dtype)
    return discrete_diffusion_model(
        network, adm_alphas_cumprod(), "epsilon", learned_variance=network.learn_sigma
    )


def adm_spec(model: DiffusionModel, source: str | os.PathLike[str]) -> dict[str, Any]:
    """Plain data describing an ADM prior loaded from ``source`` (what ``diffvi.load`` reports
    as ``family.spec``)."""
    network = model.denoiser.network
    return _spec(network.config, guess_adm_config(network.state_dict()), source)


def read_adm_spec(source: str | os.PathLike[str]) -> dict[str, Any]:
    """The spec of :func:`adm_spec` without loading the weights: from the ``adm:CONFIG:`` part,
    else from the keys and shapes of the file (memory-mapped, not read).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a state dict, or (without a config) one of no published config.
    """
    named, path = parse_adm_source(source)
    if named is None:
        named = guess_adm_config(read_adm_state_dict(path, mmap=True))
        if named is None:
            raise ValueError(
                f"{path} matches no published ADM config ({', '.join(sorted(ADM_CONFIGS))}): "
                "load it with diffvi.nn.load_adm_checkpoint(path, config) and "
                "diffvi.diffusion.discrete_diffusion_model"
            )
    elif not path.is_file():
        read_adm_state_dict(path)  # the FileNotFoundError of a missing checkpoint
    with torch.device("meta"):
        config = ADMUNet(**ADM_CONFIGS[named]).config
    return _spec(config, named, source)


def _spec(config: dict[str, Any], name: str | None, source: str | os.PathLike[str]) -> dict:
    size = config["image_size"]
    file = parse_adm_source(source)[1].resolve()
    return {
        "kind": "diffusion",
        "format": "adm",
        "source": str(source),
        "file": str(file),
        "folder": str(file.parent),  # where the prior lives (restore's settings record it)
        "config": name,
        "adm": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "event_shape": [config["in_channels"], size, size],
        "image": True,
        "prediction": "epsilon",
        "variance_type": "learned_range" if config["learn_sigma"] else "fixed_small",
        "clip_sample": True,  # guided-diffusion's clip_denoised
        "clip_sample_range": 1.0,
        "num_train_steps": NUM_TRAIN_STEPS,
        "beta_schedule": "linear",
        "metadata": {"source": str(source), "format": "adm"},
    }
