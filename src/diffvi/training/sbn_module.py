"""Training sigmoid belief networks with score-function estimators (REINFORCE, NVIL, VIMCO,
reweighted wake-sleep; :data:`diffvi.objectives.SCORE_FUNCTION_ESTIMATORS`): run
configuration, Lightning module, fit entry point, export and loading.

The visible biases start at the logits of the training set's pixel means (clipped to
[1e-3, 1 − 1e-3]), as in the NVIL, VIMCO and RWS experiments. Validation logs the training
estimator's bound, the ELBO and the ``val_k``-sample importance-weighted bound (a lower bound on
log p(x) that tightens with K) of the held-out images.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file
from torch import Tensor, nn

from diffvi.data.registry import available_datasets
from diffvi.diffusion.pretrained import SPEC, WEIGHTS, find_diffusion, save_diffusion
from diffvi.evaluation.likelihood import estimate_log_likelihood
from diffvi.models.sbn import SigmoidBeliefNet, check_layers
from diffvi.objectives import NVIL, RWS, SCORE_FUNCTION_ESTIMATORS, VIMCO
from diffvi.posteriors.bernoulli import BernoulliPosterior
from diffvi.training.checkpoint import resolve_checkpoint
from diffvi.training.config import JSONConfig
from diffvi.training.data import ImageDataModule
from diffvi.training.trainer import _last_metric, fit_by_steps
from diffvi.utils.runtime import configure_numerics

SBN_ESTIMATORS = tuple(SCORE_FUNCTION_ESTIMATORS)
VIMCO_MEANS = ("geometric", "arithmetic")


@dataclass
class SBNConfig(JSONConfig):
    """Everything that defines an SBN training run (JSON-serialisable).

    ``layers`` are the SBN's binary layers bottom first (``[200]``, ``[200, 200]``,
    ``[200, 200, 200]``); ``estimator`` one of :data:`SBN_ESTIMATORS` with ``k`` samples per
    data point (VIMCO needs k ≥ 2). NVIL's pieces switch with ``nvil_baseline``,
    ``nvil_centering``, ``nvil_normalise`` and ``nvil_local_signals``; VIMCO's leave-one-out
    stand-in is ``vimco_mean``; RWS adds the sleep phase with ``rws_sleep``. Adam with ``lr``
    on mini-batches of ``batch_size``; validation every ``val_every_n_steps`` steps on the
    first ``val_size`` held-out images with a ``val_k``-sample bound.
    """

    dataset: str = "binarized-mnist"
    layers: list[int] = field(default_factory=lambda: [200])
    estimator: str = "nvil"
    k: int = 1
    nvil_baseline: bool = True
    nvil_centering: bool = True
    nvil_normalise: bool = True
    nvil_local_signals: bool = True
    vimco_mean: str = "geometric"
    rws_sleep: bool = False
    batch_size: int = 24
    lr: float = 3e-4
    grad_clip: float = 0.0
    max_steps: int = 10000
    val_every_n_steps: int = 1000
    val_size: int = 1000
    val_k: int = 100
    seed: int = 0
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in available_datasets():
            raise ValueError(
                f"unknown dataset {self.dataset!r}; valid: {sorted(available_datasets())}"
            )
        self.layers = list(check_layers(self.layers))
        if self.estimator not in SBN_ESTIMATORS:
            raise ValueError(
                f"estimator must be one of {list(SBN_ESTIMATORS)}, got {self.estimator!r}"
            )
        if self.k < 1 or (self.estimator == "vimco" and self.k < 2):
            raise ValueError(f"k must be >= 1 (>= 2 for vimco), got {self.k}")
        if self.vimco_mean not in VIMCO_MEANS:
            raise ValueError(
                f"vimco_mean must be one of {list(VIMCO_MEANS)}, got {self.vimco_mean!r}"
            )
        for name in ("batch_size", "max_steps", "val_every_n_steps", "val_size", "val_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def build_estimator(self):
        """The configured estimator (NVIL is a module with baselines and moving averages)."""
        if self.estimator == "nvil":
            return NVIL(
                self.k, self.nvil_baseline, self.nvil_centering, self.nvil_normalise,
                self.nvil_local_signals,
            )  # fmt: skip
        if self.estimator == "vimco":
            return VIMCO(self.k, self.vimco_mean)
        if self.estimator == "rws":
            return RWS(self.k, sleep=self.rws_sleep)
        return SCORE_FUNCTION_ESTIMATORS[self.estimator](self.k)


class SBN(nn.Module):
    """A sigmoid belief net and its recognition network, saved and loaded together."""

    def __init__(self, event_shape: list[int] | tuple[int, ...], layers: list[int]) -> None:
        super().__init__()
        self.model = SigmoidBeliefNet(event_shape, layers)
        self.posterior = BernoulliPosterior(event_shape, layers)

    def importance_bound(self, x: Tensor, k: int) -> Tensor:
        """log (1/K) Σ_k p(x, h_k) / q(h_k | x), h_k ~ q: ``[B]`` (a lower bound on log p(x)
        that converges to it as K grows; :func:`~diffvi.evaluation.estimate_log_likelihood`)."""
        estimate = estimate_log_likelihood(self.model, self.posterior, x, k, batch_size=len(x))
        return estimate.log_px.to(x.device)


def pixel_mean_logits(images: Tensor) -> Tensor:
    """Logits of the per-pixel means of binary ``images [N, …]``, clipped to [1e-3, 1 − 1e-3]:
    ``[prod(…)]``."""
    mean = images.flatten(1).float().mean(0).clamp(1e-3, 1 - 1e-3)
    return torch.logit(mean)


class SBNModule(L.LightningModule):
    """Trains an :class:`SBN` with the configured score-function estimator."""

    def __init__(self, config: SBNConfig | dict[str, Any], event_shape: list[int]) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = SBNConfig.from_dict(config)
        self.config = config
        self.save_hyperparameters({"config": config.to_dict(), "event_shape": list(event_shape)})
        self.sbn = SBN(event_shape, config.layers)
        self.estimator = config.build_estimator()
        if isinstance(self.estimator, NVIL):
            self.estimator.ensure_baselines(self.sbn.model)  # registered as a submodule

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x = batch[0].float()
        out = self.estimator(self.sbn.model, self.sbn.posterior, x)
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"the training loss became {out.loss.item()} at step {self.global_step}; "
                "stopping before writing a checkpoint. Try a lower learning rate."
            )
        self.log("train/bound", out.bound.mean(), prog_bar=True)
        for name, value in out.metrics.items():
            self.log(f"train/{name}", value)
        return out.loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x = batch[0].float()
        with torch.no_grad():
            s = self.sbn.posterior.sample(x, 1)
            elbo = (self.sbn.model.log_joint(x, s.z) - s.log_q).mean()
            bound = self.sbn.importance_bound(x, self.config.val_k).mean()
        self.log("val/elbo", elbo, batch_size=x.shape[0])
        self.log(f"val/bound_k{self.config.val_k}", bound, prog_bar=True, batch_size=x.shape[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.config.lr)

    def exported_spec(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "sbn",
            "event_shape": list(self.sbn.model.event_shape),
            "layers": list(self.config.layers),
            "dataset": self.config.dataset,
            "estimator": self.config.estimator,
            "k": self.config.k,
            "metadata": metadata,
        }


def load_sbn(name_or_path: str | Path, device: str | torch.device = "cpu") -> tuple[SBN, dict]:
    """Load an exported SBN (a run folder or its ``export/``; eval mode) and its spec."""
    folder = find_diffusion(name_or_path)
    spec = json.loads((folder / SPEC).read_text())
    if spec.get("kind") != "sbn":
        raise ValueError(f"{folder} holds a {spec.get('kind')!r} model, not an SBN")
    sbn = SBN(spec["event_shape"], spec["layers"])
    sbn.load_state_dict(load_file(folder / WEIGHTS, device=str(device)))
    return sbn.to(device).eval(), spec


def fit_sbn(
    config: SBNConfig,
    run_dir: str | Path,
    resume: bool = False,
    accelerator: str = "auto",
    devices: int | str = "auto",
    progress_bar: bool = True,
    callbacks: tuple[Callback, ...] | list[Callback] = (),
    log_every_n_steps: int = 50,
) -> SBNModule:
    """Train an SBN as ``config`` says and write the run to ``run_dir``: ``config.json``
    (``{"kind": "sbn", …}``), ``checkpoints/last.ckpt`` (atomic, resumable),
    ``logs/version_N/metrics.csv`` and ``export/`` (``model.safetensors`` + ``model.json``,
    loadable with :func:`load_sbn`). A non-finite loss stops with ``FloatingPointError``."""
    run_dir = Path(run_dir)
    configure_numerics(config.flush_denormal)
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = ImageDataModule(config.dataset, config.batch_size, config.seed, config.val_size)
    module = SBNModule(config, list(data.event_shape))
    if not resume:
        images = data.train_set[torch.arange(len(data.train_set))][0]
        with torch.no_grad():
            module.sbn.model.decoders[0].bias.copy_(pixel_mean_logits(images))
    ckpt_path = str(resolve_checkpoint(run_dir)) if resume else None
    trainer, seconds = fit_by_steps(
        module,
        data,
        run_dir,
        {"kind": "sbn", **config.to_dict()},
        ckpt_path,
        max_steps=config.max_steps,
        val_every_n_steps=config.val_every_n_steps,
        grad_clip=config.grad_clip,
        accelerator=accelerator,
        devices=devices,
        progress_bar=progress_bar,
        callbacks=callbacks,
        log_every_n_steps=log_every_n_steps,
    )
    if trainer.is_global_zero:
        metadata = {
            "steps": int(trainer.global_step),
            "train_seconds_this_session": round(seconds, 1),
            "val_elbo": _last_metric(trainer, "val/elbo"),
            f"val_bound_k{config.val_k}": _last_metric(trainer, f"val/bound_k{config.val_k}"),
        }
        save_diffusion(module.sbn, module.exported_spec(metadata), run_dir / "export")
    return module
