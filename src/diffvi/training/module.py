"""The one Lightning module: trains any :class:`~diffvi.training.family.Family`.

It owns what every family shares: logging of the family's figures, the NaN/Inf and divergence
stop (:mod:`~diffvi.training.divergence`), the EMA of the weights, the random state that makes
a resumed run draw the same noise as an uninterrupted one, and the checkpoint's hyperparameters
(``kind`` + the family's config), from which :func:`~diffvi.training.checkpoint.load_module`
rebuilds it.
"""

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from diffvi.training.config import RESUMABLE_FIELDS, RunConfig
from diffvi.training.divergence import DivergenceGuard, largest_weight, weight_trouble
from diffvi.training.family import Family, LossOutput, Metric, family_class


def ema_average(decay: float):
    """``multi_avg_fn`` for :class:`AveragedModel`: EMA with decay min(decay, (1+n)/(10+n)) of
    the floating-point tensors; integer buffers (step counters) follow the current values."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        n = int(num_averaged)
        rate = min(decay, (1 + n) / (10 + n))
        pairs = list(zip(averaged, current, strict=True))
        floats = [(a, c) for a, c in pairs if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1 - rate)
        for a, c in pairs:  # counters and masks are copied, not averaged
            if not a.is_floating_point():
                a.copy_(c)

    return update


class TrainingModule(L.LightningModule):
    """Trains ``family`` (built from ``kind`` and ``config`` alone, so a checkpoint's
    hyperparameters rebuild it) and keeps ``ema``, the moving average of its weights, when
    ``config.ema_decay`` is set: validation then scores, and export saves, the average.

    Non-finite losses are counted, and the training figure is tracked for divergence
    (:class:`~diffvi.training.divergence.DivergenceGuard`), on the device; both, and the
    weights, are checked every ``log_every_n_steps`` steps, at the end of each epoch and before
    every checkpoint (no host sync per step): training stops with ``FloatingPointError`` before
    a checkpoint or export could hold the bad weights. So does a linear-algebra failure (a
    Cholesky factorisation) after the first step: a symptom of divergence, too.
    """

    def __init__(self, kind: str, config: RunConfig | dict[str, Any]) -> None:
        super().__init__()
        cls = family_class(kind)
        if isinstance(config, dict):
            config = cls.config_class.from_dict(config)
        self.kind, self.config = kind, config
        self.save_hyperparameters({"kind": kind, "config": config.to_dict()})
        self.family: Family = cls(config)
        self.automatic_optimization = not self.family.manual_optimization
        self.ema: AveragedModel | None = None
        if config.ema_decay is not None:
            self.ema = AveragedModel(
                self.family, multi_avg_fn=ema_average(config.ema_decay), use_buffers=True
            )
            self.ema.requires_grad_(False)
        self.register_buffer("_nonfinite_steps", torch.zeros((), dtype=torch.long))
        self.divergence = DivergenceGuard()
        self._initial_weight: float | None = None  # the largest, at this session's first step
        self._watched = "loss"  # what the guard watches: "negative bound" where one is logged
        self._restored_rng: dict[str, Any] | None = None

    @property
    def trained(self) -> Family:
        """The family whose weights are validated and exported (the EMA where kept)."""
        return self.family if self.ema is None else self.ema.module  # type: ignore[return-value]

    # -- training -------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        if self._initial_weight is None:
            self._initial_weight = largest_weight(self)  # one host sync per session
        try:
            out = self._family_step(batch)
        except torch.linalg.LinAlgError as err:
            raise self._linalg_divergence(err) from None
        self._nonfinite_steps += (~torch.isfinite(out.loss.detach())).long()
        figure, self._watched = _watched_figure(out)
        self.divergence.update(figure, self.global_step)
        self._log("train", out.metrics, out.batch_size)
        return out.loss if self.automatic_optimization else out.loss.detach()

    def _family_step(self, batch: Any) -> LossOutput:
        if not self.automatic_optimization:
            out = self.family.manual_step(batch, self.optimizers(), self.manual_backward)
            self._update_ema()
        else:
            out = self.family.loss(batch)
        return out

    def _log(self, stage: str, metrics: dict[str, Metric], batch_size: int | None) -> None:
        shown = self.family.progress_metrics
        for name, value in metrics.items():
            size = batch_size
            if isinstance(value, tuple):
                value, size = value
            self.log(
                f"{stage}/{name}",
                value.detach().float(),
                prog_bar=name in shown,
                batch_size=size,
                sync_dist=stage == "val",
            )

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self._update_ema()

    def _update_ema(self) -> None:
        # Right after the optimiser step, not in on_train_batch_end: a checkpoint saved by a
        # callback at the end of the batch (callbacks run before this module's hooks) must
        # hold the EMA of this step, or a resumed run's average would miss one update.
        if self.ema is not None:
            self.ema.update_parameters(self.family)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.check_finite()

    def on_train_epoch_start(self) -> None:
        if not self.automatic_optimization:
            self.family.on_train_epoch_start(self.optimizers(), self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self.check_finite()

    def check_finite(self) -> None:
        """Stop training with a one-line ``FloatingPointError`` once any loss was NaN or
        infinite, the training figure diverged, or a weight became non-finite or enormous
        (:mod:`~diffvi.training.divergence`); the message names the step and what to change."""
        advice = self.family.divergence_advice()
        stop = "stopping before writing a checkpoint"
        if int(self._nonfinite_steps) > 0:
            raise FloatingPointError(
                f"the training loss became NaN or infinite (by step {self.global_step}, "
                f"epoch {self.current_epoch}); {stop}. {advice.removesuffix('.')}, or check "
                "the data range for the likelihood."
            )
        diverged = self.divergence.diverged()
        if diverged is not None:
            step, value, best = diverged
            raise FloatingPointError(
                f"training diverged at step {step} (the smoothed training {self._watched} rose "
                f"to {value:.3g} from a best of {best:.3g}); {stop}. {advice}"
            )
        trouble = weight_trouble(largest_weight(self), self._initial_weight)
        if trouble is not None:
            raise FloatingPointError(
                f"training diverged by step {self.global_step} ({trouble}); {stop}. {advice}"
            )

    def _linalg_divergence(self, err: Exception) -> Exception:
        """A failed factorisation after the first step as a divergence message (before any
        step the weights are the initial ones, so ``err`` stays what it is)."""
        if self.global_step == 0:
            return err
        reason = (str(err).strip().splitlines() or ["a factorisation failed"])[0].rstrip(".")
        return FloatingPointError(
            f"training diverged at step {self.global_step} ({reason}); stopping before writing "
            f"a checkpoint. {self.family.divergence_advice()}"
        )

    def on_validation_start(self) -> None:
        # Validation draws its own noise and gives the random state back, so that how often a
        # run validates never shifts the noise of training: a run resumed after a validation
        # draws what an uninterrupted one does.
        self._rng_before_validation = _rng_state()

    def on_validation_end(self) -> None:
        _set_rng_state(self._rng_before_validation)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        try:
            metrics = self.trained.validate(batch, batch_idx)
        except torch.linalg.LinAlgError as err:
            raise self._linalg_divergence(err) from None
        self._log("val", metrics, _batch_size(batch))

    def configure_optimizers(self) -> Any:
        return self.family.configure_optimizers()

    # -- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_finite()
        checkpoint["rng"] = _rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        upgrade_legacy_checkpoint(checkpoint)
        self._check_resumed_config(checkpoint["hyper_parameters"]["config"])
        # Applied in on_train_start, once Lightning has restored everything else.
        self._restored_rng = checkpoint.get("rng")

    def _check_resumed_config(self, saved: dict[str, Any]) -> None:
        """Refuse to continue a checkpoint under a config that differs from the one it was
        trained with (say a hand-edited ``config.json``), except in the fields a resume may
        change (:data:`~diffvi.training.config.RESUMABLE_FIELDS`)."""

        now = self.config.to_dict()
        changed = sorted(
            key
            for key in saved.keys() & now.keys()
            if key not in RESUMABLE_FIELDS and saved[key] != now[key]
        )
        if changed:
            detail = ", ".join(f"{k}: checkpoint {saved[k]!r}, now {now[k]!r}" for k in changed)
            raise ValueError(
                f"the checkpoint was trained with another config ({detail}); resume with the "
                "config it was trained with, or start a new run"
            )

    def on_train_start(self) -> None:
        if self._restored_rng is not None:
            _set_rng_state(self._restored_rng)
            self._restored_rng = None


def _rng_state() -> dict[str, Any]:
    """The global torch random state (CPU, and every CUDA device where there is one)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _watched_figure(out: LossOutput) -> tuple[Tensor, str]:
    """What the divergence guard watches, and its name: the negative bound where the family
    logs one (a score-function estimator's surrogate loss is no bound), else the loss."""
    bound = out.metrics.get("bound")
    if isinstance(bound, tuple):
        bound = bound[0]
    if isinstance(bound, Tensor):
        return -bound.detach(), "negative bound"
    return out.loss.detach(), "loss"


def _batch_size(batch: Any) -> int | None:
    first = batch[0] if isinstance(batch, list | tuple) else batch
    return int(first.shape[0]) if isinstance(first, Tensor) and first.ndim else None


# Checkpoints written before the one training contract had no "kind" hyperparameter and kept
# the family's weights at the top level; each old module's hyperparameters tell its kind.
def legacy_kind(hyper_parameters: dict[str, Any]) -> str:
    """The family kind of a checkpoint's hyperparameters, old layouts included."""
    if "kind" in hyper_parameters:
        return hyper_parameters["kind"]
    config = hyper_parameters.get("config", {})
    if "data_dim" in hyper_parameters:
        return "vaedgp"
    if "event_shape" in hyper_parameters and "layers" in config:
        return "sbn"
    if "task" in config:
        return "cvdm"
    if "loss_type" in config:
        return "diffusion"
    return "vae"


def upgrade_legacy_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Rewrite an old checkpoint (in place) to this module's layout: ``kind`` in the
    hyperparameters, data-derived fields in the config, weights under ``family.`` (the EMA's
    under ``ema.module.model.``). New checkpoints pass through unchanged."""
    hparams = checkpoint.get("hyper_parameters", {})
    if "kind" in hparams:
        return checkpoint
    kind = legacy_kind(hparams)
    config = dict(hparams.get("config", {}))
    if kind == "sbn":
        config["event_shape"] = list(hparams["event_shape"])
    if kind == "vaedgp":
        config["data_dim"], config["num_points"] = hparams["data_dim"], hparams["num_points"]
    checkpoint["hyper_parameters"] = {"kind": kind, "config": config}
    state = {}
    for key, value in checkpoint.get("state_dict", {}).items():
        if key.startswith("ema.module."):
            state["ema.module.model." + key.removeprefix("ema.module.")] = value
        elif key == "ema.n_averaged" or key == "_nonfinite_steps":
            state[key] = value
        elif kind == "sbn" and key.startswith("sbn."):
            state["family." + key.removeprefix("sbn.")] = value
        else:
            state["family." + key] = value
    state.setdefault("_nonfinite_steps", torch.zeros((), dtype=torch.long))
    checkpoint["state_dict"] = state
    return checkpoint
