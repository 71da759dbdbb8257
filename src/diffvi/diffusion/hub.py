"""Pretrained diffusers models as priors: a ``UNet2DModel`` and its scheduler's config, from a
local folder or the Hugging Face Hub, wrapped as a :class:`~diffvi.diffusion.model.
DiffusionModel` that every sampler, solver and evaluator takes.

Folders in either layout load:

- a pipeline (``DDPMPipeline.save_pretrained``, e.g. ``google/ddpm-cifar10-32``):
  ``model_index.json``, ``unet/`` (``config.json`` + ``diffusion_pytorch_model.safetensors`` or
  ``.bin``) and ``scheduler/scheduler_config.json``;
- a bare network (``UNet2DModel.save_pretrained``) with ``scheduler_config.json`` beside its
  ``config.json``.

``hf:ORG/NAME`` (optionally ``@REVISION``) downloads such a folder with huggingface_hub's
``snapshot_download`` (into its cache, reused offline). From the scheduler's config come the β
schedule (``beta_schedule`` linear, scaled_linear, squaredcos_cap_v2 or sigmoid with
``beta_start``/``beta_end``, or ``trained_betas``; :func:`~diffvi.diffusion.discrete.
named_betas`), the ``prediction_type`` (epsilon, v_prediction, sample) and the
``variance_type``; the time convention is :mod:`diffvi.diffusion.discrete`'s. The prior then
samples as its scheduler does:

- ``clip_sample`` and ``clip_sample_range``: x̂₀ is clamped to [−r, r] at every step, ε̂
  recomputed from the clamped x̂₀ (diffusers' ``use_clipped_model_output=True``; DDPM's step,
  which builds its mean from x̂₀ and x_t, is the same), only where the config says so. A config
  without the key takes its scheduler class's default: on for DDPM, DDIM (and their parallel,
  inverse, RePaint, unCLIP and CogVideoX variants) and for a config that names no class, off for
  every other scheduler (PNDM, Euler, DPM-Solver, LCM, … never clip). Many v-prediction
  models, and models of data outside [−1, 1], ship ``clip_sample: false``. The prior's
  ``clip_sample`` and ``clip_range`` say what ``sample`` does (``sample(clip=…)`` and
  ``diffvi sample --clip/--no-clip`` override it); the solvers keep their own
  ``clip_denoised`` (on by default, to [−1, 1]);
- ``variance_type``: ``learned``/``learned_range`` networks return 2C channels, and the
  ancestral (DDPM) sampler draws its noise with their learned variance; ``fixed_large`` draws
  with β; the rest with β̃ (:mod:`diffvi.diffusion.discrete`; ``sample(variance=…)``
  overrides it).

Dynamic ``thresholding`` is not reproduced: such a prior clamps as its ``clip_sample`` says.
diffusers' DDIM pipeline keeps the unclamped ε̂ by default (``use_clipped_model_output=None``);
our DDIM recomputes it from the clamped x̂₀, as guided-diffusion does.

diffusers is an optional dependency (``pip install 'diffvi[hub]'``), imported only when a
network is built; reading and checking a folder needs only the standard library.
"""

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from diffvi.diffusion.discrete import (
    LEARNED_VARIANCES,
    PREDICTIONS,
    VARIANCE_TYPES,
    discrete_diffusion_model,
    named_betas,
)
from diffvi.diffusion.model import DiffusionModel
from diffvi.diffusion.schedules import InterpolatedSchedule
from diffvi.utils.paths import MODEL_SPEC, is_model_name

HF_PREFIX = "hf:"
EXTRA_HINT = "pip install 'diffvi[hub]'"
UNET_CLASS = "UNet2DModel"
UNET_CONFIG, SCHEDULER_CONFIG = "config.json", "scheduler_config.json"
PIPELINE_INDEX = "model_index.json"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# Schedulers whose clip_sample defaults to true (the rest have none, or default it to false).
CLIPPING_SCHEDULERS = (
    "DDPMScheduler", "DDIMScheduler", "DDPMParallelScheduler", "DDIMParallelScheduler",
    "DDIMInverseScheduler", "RePaintScheduler", "UnCLIPScheduler", "CogVideoXDDIMScheduler",
    "CogVideoXDPMScheduler",
)  # fmt: skip


class MissingExtraError(ImportError, ValueError):
    """diffusers (or huggingface_hub) is not installed: the ``hub`` extra is."""


class HubDownloadError(ConnectionError, ValueError):
    """An ``hf:`` model could not be fetched (offline, no such repository, no access)."""


def is_diffusers_source(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a diffusers model: an ``hf:ORG/NAME`` id, or a folder without
    diffvi's ``model.json`` that holds ``model_index.json``, ``scheduler_config.json`` or
    diffusers weights (``diffusion_pytorch_model.*``). A bare name (``mnist``,
    :func:`~diffvi.utils.paths.is_model_name`) is a diffvi model name, never a folder here."""
    if str(source).startswith(HF_PREFIX):
        return True
    if is_model_name(source):
        return False
    path = Path(source)
    if not path.is_dir() or (path / MODEL_SPEC).is_file():
        return False
    markers = (PIPELINE_INDEX, SCHEDULER_CONFIG, *WEIGHT_FILES)
    return any((path / name).is_file() for name in markers)


@dataclass
class DiffusersFolder:
    """A checked diffusers folder: where its network and scheduler config are, and what they
    say (:func:`open_diffusers_folder`).

    Attributes:
        source: what the user named (a path or ``hf:ORG/NAME``).
        root: the folder (for ``hf:``, the download in the Hub cache).
        unet_dir: the folder of the network's ``config.json`` and weights.
        unet_config: that ``config.json``.
        scheduler_path: the scheduler's ``scheduler_config.json``.
        scheduler_config: its contents.
    """

    source: str
    root: Path
    unet_dir: Path
    unet_config: dict[str, Any]
    scheduler_path: Path
    scheduler_config: dict[str, Any]

    # -- what the configs say ---------------------------------------------------------------
    @property
    def num_train_steps(self) -> int:
        """N, the scheduler's ``num_train_timesteps``."""
        return int(self.scheduler_config.get("num_train_timesteps", 1000))

    @property
    def prediction(self) -> str:
        """``"epsilon"``, ``"sample"`` or ``"v_prediction"``."""
        return str(self.scheduler_config.get("prediction_type", "epsilon"))

    @property
    def variance_type(self) -> str:
        """The scheduler's ``variance_type`` (``"fixed_small"`` where it has none, as DDIM)."""
        return str(self.scheduler_config.get("variance_type") or "fixed_small")

    @property
    def clip_sample(self) -> bool:
        """Whether the scheduler clamps x̂₀: its config's ``clip_sample``, else its class's
        default (true for :data:`CLIPPING_SCHEDULERS` and a config naming no class)."""
        value = self.scheduler_config.get("clip_sample")
        if value is None:
            name = self.scheduler_config.get("_class_name")
            return name is None or name in CLIPPING_SCHEDULERS
        return bool(value)

    @property
    def clip_range(self) -> float:
        """The bound r of that clamp to [−r, r]: the config's ``clip_sample_range`` (1)."""
        return float(self.scheduler_config.get("clip_sample_range", 1.0))

    @property
    def learned_variance(self) -> bool:
        """Whether the network returns 2C channels (a learned variance)."""
        return self.variance_type in LEARNED_VARIANCES

    @property
    def event_shape(self) -> list[int]:
        """``[C, H, W]`` of the network's images."""
        size = self.unet_config.get("sample_size")
        height, width = (size, size) if isinstance(size, int) else tuple(size or (None, None))
        return [int(self.unet_config.get("in_channels", 3)), int(height), int(width)]

    def alphas_cumprod(self) -> Tensor:
        """ᾱ_n ``[N]`` (float64) of the scheduler's β schedule."""
        cfg = self.scheduler_config
        if cfg.get("trained_betas") is not None:
            betas = torch.tensor(cfg["trained_betas"], dtype=torch.float64)
        else:
            betas = named_betas(
                cfg.get("beta_schedule", "linear"),
                self.num_train_steps,
                float(cfg.get("beta_start", 1e-4)),
                float(cfg.get("beta_end", 0.02)),
            )
        return torch.cumprod(1 - betas, 0)

    def spec(self) -> dict[str, Any]:
        """Plain data describing the prior (what ``diffvi.load`` reports as ``family.spec``)."""
        cfg = self.scheduler_config
        return {
            "kind": "diffusion",
            "format": "diffusers",
            "source": self.source,
            "folder": str(self.root),
            "event_shape": self.event_shape,
            "image": True,
            "prediction": self.prediction,
            "variance_type": self.variance_type,
            "num_train_steps": self.num_train_steps,
            "beta_schedule": "trained" if cfg.get("trained_betas") is not None
            else cfg.get("beta_schedule", "linear"),
            "clip_sample": self.clip_sample,
            "clip_sample_range": self.clip_range,
            "timestep_spacing": cfg.get("timestep_spacing", "leading"),
            "steps_offset": int(cfg.get("steps_offset", 0)),
            "metadata": {"source": self.source, "format": "diffusers"},
        }  # fmt: skip

    # -- the model --------------------------------------------------------------------------
    def build(self) -> DiffusionModel:
        """The prior: the network (loaded with diffusers) wrapped as a :class:`DiffusionModel`
        of images that clamps x̂₀ and draws its ancestral noise as the scheduler does (module
        docstring), in eval mode on the CPU."""
        return discrete_diffusion_model(
            DiffusersUNet(_load_unet(self.unet_dir)),
            self.alphas_cumprod(),
            self.prediction,
            variance_type=self.variance_type,
            clip_sample=self.clip_sample,
            clip_range=self.clip_range,
        )


class DiffusersUNet(nn.Module):
    """A diffusers ``UNet2DModel`` with the ``(x, timesteps[, class_labels]) -> tensor``
    signature of :class:`~diffvi.diffusion.discrete.DiscreteTimeDenoiser` (a network with a
    ``"learned"`` time embedding, a table, gets its timesteps rounded to integers)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.integer_steps = unet.config.get("time_embedding_type") == "learned"

    def forward(self, x: Tensor, timesteps: Tensor, class_labels: Tensor | None = None) -> Tensor:
        if self.integer_steps:
            timesteps = timesteps.round().long()
        return self.unet(x, timesteps, class_labels=class_labels, return_dict=False)[0]


def load_diffusers_prior(source: str | os.PathLike[str]) -> DiffusionModel:
    """A diffusers model (folder or ``hf:ORG/NAME[@REVISION]``, see the module docstring) as a
    :class:`DiffusionModel` prior of images ``[B, C, H, W]`` in [0, 1], in eval mode on the CPU.

    Raises:
        FileNotFoundError: a folder or file it needs is missing (named).
        ValueError: a config or weights file that is corrupt or does not fit (named).
        MissingExtraError: diffusers is not installed (``pip install 'diffvi[hub]'``).
        HubDownloadError: an ``hf:`` id could not be fetched.
    """
    return open_diffusers_folder(source).build()


def open_diffusers_folder(source: str | os.PathLike[str]) -> DiffusersFolder:
    """Find and check the network and scheduler of a diffusers model (errors as
    :func:`load_diffusers_prior`; no weights are read)."""
    source = str(source)
    root = _download(source[len(HF_PREFIX) :]) if source.startswith(HF_PREFIX) else Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: expected a diffusers model folder")
    unet_dir, scheduler_path = _layout(root)
    for needed in (unet_dir / UNET_CONFIG, scheduler_path):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} is missing: a diffusers model needs the network's {UNET_CONFIG} and "
                f"the scheduler's {SCHEDULER_CONFIG} (a pipeline folder with {PIPELINE_INDEX}, "
                f"unet/ and scheduler/, or a UNet2DModel folder with {SCHEDULER_CONFIG} beside "
                "its config.json)"
            )
    folder = DiffusersFolder(
        source, root, unet_dir, _read_json(unet_dir / UNET_CONFIG), scheduler_path,
        _read_json(scheduler_path),
    )  # fmt: skip
    _check(folder)
    return folder


# -- checks and files -------------------------------------------------------------------------
def _check(folder: DiffusersFolder) -> None:
    """Refuse configs this adapter cannot honour, naming the file and the value."""
    unet_path, path = folder.unet_dir / UNET_CONFIG, folder.scheduler_path
    cfg = folder.scheduler_config
    name = folder.unet_config.get("_class_name", UNET_CLASS)
    if name != UNET_CLASS:
        raise ValueError(f"{unet_path} describes a {name}; only {UNET_CLASS} networks load")
    embedding = folder.unet_config.get("time_embedding_type", "positional")
    if embedding not in ("positional", "learned"):
        raise ValueError(
            f"{unet_path} has time_embedding_type {embedding!r} (a score-SDE network); only "
            "'positional' or 'learned' (DDPM-style timesteps) load"
        )
    size = folder.unet_config.get("sample_size")
    if not (isinstance(size, int) or (isinstance(size, list | tuple) and len(size) == 2)):
        raise ValueError(f"{unet_path} must give sample_size (an int or [H, W]), got {size!r}")
    if "beta_schedule" not in cfg and cfg.get("trained_betas") is None:
        raise ValueError(
            f"{path} has no beta_schedule or trained_betas: not the config of a discrete "
            "variance-preserving scheduler (DDPM, DDIM, PNDM, ...)"
        )
    if folder.prediction not in PREDICTIONS:
        raise ValueError(
            f"{path} has prediction_type {folder.prediction!r}; expected one of {list(PREDICTIONS)}"
        )
    clip_range = cfg.get("clip_sample_range", 1.0)
    if isinstance(clip_range, bool) or not isinstance(clip_range, int | float) or clip_range <= 0:
        raise ValueError(f"{path} has clip_sample_range {clip_range!r}; expected a number > 0")
    if folder.variance_type not in VARIANCE_TYPES:
        raise ValueError(
            f"{path} has variance_type {folder.variance_type!r}; expected one of "
            f"{list(VARIANCE_TYPES)}"
        )
    if cfg.get("rescale_betas_zero_snr"):
        raise ValueError(
            f"{path} sets rescale_betas_zero_snr: a zero terminal SNR (infinite log-SNR at the "
            "last step) has no continuous-time schedule here"
        )
    try:
        alphas_cumprod = folder.alphas_cumprod()
        InterpolatedSchedule(alphas_cumprod)
    except (ValueError, TypeError, RuntimeError) as err:
        raise ValueError(f"{path} does not give a valid β schedule: {err}") from None
    channels = folder.event_shape[0]
    out = int(folder.unet_config.get("out_channels", channels))
    expected = 2 * channels if folder.learned_variance else channels
    if out != expected:
        raise ValueError(
            f"{unet_path} has out_channels {out}, but {channels} input channels with "
            f"variance_type {folder.variance_type!r} in {path} need {expected}"
        )
    table = folder.unet_config.get("num_train_timesteps")
    if embedding == "learned" and table is not None and int(table) != folder.num_train_steps:
        raise ValueError(
            f"{unet_path} embeds {table} timesteps, but {path} has num_train_timesteps "
            f"{folder.num_train_steps}"
        )
    if not any((folder.unet_dir / f).is_file() for f in (*WEIGHT_FILES, *_shard_indexes())):
        raise FileNotFoundError(
            f"{folder.unet_dir} holds no network weights: expected {' or '.join(WEIGHT_FILES)}"
        )


def _shard_indexes() -> tuple[str, ...]:
    return tuple(f"{name}.index.json" for name in WEIGHT_FILES)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def _layout(root: Path) -> tuple[Path, Path]:
    """``(the network's folder, the scheduler's config file)`` of a diffusers folder: a
    pipeline's ``unet/`` and ``scheduler/scheduler_config.json`` (``model_index.json`` lists
    its components, each in the subfolder of its name), else the folder itself and the
    ``scheduler_config.json`` in it."""
    index_path = root / PIPELINE_INDEX
    if not index_path.is_file():
        return root, root / SCHEDULER_CONFIG
    index = _read_json(index_path)
    for name in ("unet", "scheduler"):
        if name not in index:
            raise ValueError(
                f"{index_path} lists no {name!r} component: not an unconditional pipeline"
            )
    return root / "unet", root / "scheduler" / SCHEDULER_CONFIG


def _load_unet(unet_dir: Path) -> nn.Module:
    """``UNet2DModel.from_pretrained(unet_dir)``; a damaged or mismatched weights file is a
    ValueError naming it."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise MissingExtraError(
            f"loading a diffusers model needs diffusers: {EXTRA_HINT}"
        ) from None
    try:
        # Without accelerate, asking for low_cpu_mem_usage only prints a warning.
        quiet = importlib.util.find_spec("accelerate") is not None
        unet = UNet2DModel.from_pretrained(str(unet_dir), low_cpu_mem_usage=quiet)
    except Exception as err:  # noqa: BLE001 - diffusers raises many types for a bad file
        weights = next(
            (unet_dir / f for f in (*WEIGHT_FILES, *_shard_indexes()) if (unet_dir / f).is_file()),
            unet_dir,
        )
        raise ValueError(
            f"{weights} could not be loaded as the {UNET_CLASS} of {unet_dir / UNET_CONFIG} "
            f"({type(err).__name__}: {_summary(err)})"
        ) from None
    return unet.eval()


def _download(repo: str) -> Path:
    """The snapshot of Hub repository ``ORG/NAME[@REVISION]`` (its configs and weights only)."""
    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"expected hf:ORG/NAME[@REVISION], got hf:{repo}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingExtraError(
            f"hf: models are downloaded with huggingface_hub: {EXTRA_HINT}"
        ) from None
    root: Path | None = None
    # Safetensors first; a repository with only PyTorch pickles gets those (loaded weights-only).
    for weights in WEIGHT_FILES:
        try:
            root = Path(
                snapshot_download(
                    repo_id,
                    revision=revision or None,
                    allow_patterns=["*.json", f"*{weights}", f"*{weights}.index.json"],
                )
            )
        except Exception as err:  # noqa: BLE001 - network, access and cache errors alike
            raise HubDownloadError(
                f"could not fetch hf:{repo} from the Hugging Face Hub ({type(err).__name__}: "
                f"{_summary(err)}); on a machine without internet, copy the model folder here "
                "and pass its path"
            ) from None
        unet_dir, _ = _layout(root)
        if (unet_dir / weights).is_file() or (unet_dir / f"{weights}.index.json").is_file():
            return root
    assert root is not None
    return root  # no weights: open_diffusers_folder names the folder


def _summary(err: Exception) -> str:
    """An exception's message on one line: its first line, and the first detail line under it
    where the first ends in a colon (PyTorch's "Error(s) in loading state_dict …:")."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return text if len(text) <= 300 else text[:297] + "..."
