"""The one training entry point: a family's config in, a trained run folder out."""

import contextlib
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from diffvi.training.checkpoint import (
    AtomicCheckpointIO,
    RunCheckpoint,
    export_model,
    resolve_checkpoint,
)
from diffvi.training.config import RunConfig
from diffvi.training.family import family_class, kind_of
from diffvi.training.module import TrainingModule
from diffvi.training.run_log import LOG_FILE, RunLogger
from diffvi.utils.io import remove_stale_temporaries, write_json
from diffvi.utils.paths import MODEL_SPEC, MODEL_WEIGHTS
from diffvi.utils.runtime import configure_numerics

# The files of a run folder, each written atomically: (subfolder, name).
RUN_FILES = (
    (".", "config.json"),
    ("checkpoints", "last.ckpt"),
    ("logs", LOG_FILE),
    ("export", MODEL_SPEC),
    ("export", MODEL_WEIGHTS),
)


def fit(
    config: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    accelerator: str = "auto",
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    progress_bar: bool = True,
    limit_train_batches: int | float | None = None,
    callbacks: Sequence[Callback] = (),
    log_every_n_steps: int | None = None,
    checkpoint_every_n_epochs: int = 1,
    datamodule: L.LightningDataModule | None = None,
) -> TrainingModule:
    """Train the family whose config ``config`` is (a :class:`~diffvi.training.TrainConfig`,
    ``DiffusionConfig``, ``CVDMConfig``, ``SBNConfig`` or ``VAEDGPConfig``) and write the run
    to ``run_dir``, the same layout for every family:

    - ``config.json``: ``{"kind": …, **config}``; ``diffvi train … --config`` reruns it;
    - ``checkpoints/last.ckpt``: every ``config.val_every_n_steps`` steps (else every
      ``checkpoint_every_n_epochs`` epochs) and at the end, written atomically;
    - ``logs/metrics.csv``: ``train/…`` and ``val/…`` figures, one log per run (a resumed run
      continues it from the checkpoint's step);
    - ``export/``: ``model.json`` (``kind``, how to rebuild, metadata) + ``model.safetensors``
      (the EMA weights where the config keeps them), loadable with :func:`diffvi.load`.

    Training stops at the first of ``config.max_epochs``, ``max_steps`` (in total, across
    resumes) and ``max_minutes`` (this session). ``resume=True`` continues from
    ``run_dir/checkpoints/last.ckpt`` with the optimiser, schedule, EMA, step count and random
    state restored. A non-finite loss stops training with ``FloatingPointError`` before any
    further checkpoint or export. The Lightning arguments (``accelerator``, ``devices``,
    ``num_nodes``, ``strategy``) pass through unchanged, e.g. ``strategy="ddp"``;
    ``datamodule`` replaces the data the config names (e.g. a
    :class:`~diffvi.data.modules.FeatureDataModule` for a VAE). Training figures are logged
    every ``log_every_n_steps`` steps (default: 50, or often enough that a short run or a
    short epoch still logs about ten rows).

    Returns the trained :class:`~diffvi.training.module.TrainingModule` (``.family`` holds the
    model; ``.trained`` the weights that were exported).
    """
    run_dir = Path(run_dir)
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"accelerator {accelerator!r}: there is no CUDA GPU here. Train on the CPU with "
            "accelerator 'cpu'; DDP runs on CPU processes too (--accelerator cpu --devices 2 "
            "--strategy ddp)"
        )
    _check_nodes(num_nodes)
    kind = kind_of(config)
    cls = family_class(kind)
    configure_numerics(config.flush_denormal)
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = datamodule or cls.build_data(config)
    cls.fit_config_to_data(config, data)
    ckpt_path = str(resolve_checkpoint(run_dir)) if resume else None
    module = TrainingModule(kind, config)
    module.family.attach_data(data, resumed=resume)
    every = config.val_every_n_steps
    checkpoint = RunCheckpoint(
        run_dir,
        every_n_train_steps=every,
        every_n_epochs=None if every else checkpoint_every_n_epochs,
    )
    all_callbacks = [checkpoint, *module.family.callbacks(progress_bar), *callbacks]
    if progress_bar:
        all_callbacks.append(TQDMProgressBar(refresh_rate=20))
    automatic = module.automatic_optimization
    trainer = L.Trainer(
        default_root_dir=run_dir,
        logger=RunLogger(run_dir, resume=resume),
        callbacks=all_callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        max_epochs=config.max_epochs,
        max_steps=config.max_steps,
        max_time=timedelta(minutes=config.max_minutes) if config.max_minutes else None,
        val_check_interval=every,
        check_val_every_n_epoch=None if every else 1,
        gradient_clip_val=(config.grad_clip or None) if automatic else None,
        precision=config.precision,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        limit_train_batches=limit_train_batches,
        log_every_n_steps=log_every_n_steps or _log_interval(config, data),
        use_distributed_sampler=False,  # the data modules shard batches themselves
        # No validation before the first step: for diffusion and CVDM runs it sampled whole
        # reverse chains (14-37 s on 2 CPU cores) to check code the test suite covers.
        num_sanity_val_steps=0,
        # CVDM's learned schedule differentiates γ̄ in t during validation too (autograd
        # inside no_grad works; inside inference_mode it does not).
        inference_mode=False,
    )
    if log_every_n_steps is None and trainer.world_size > 1:  # each rank has 1/W of an epoch
        trainer.log_every_n_steps = _log_interval(config, data, trainer.world_size)
    if trainer.is_global_zero:
        for folder, name in RUN_FILES:  # what a kill mid-write left behind
            remove_stale_temporaries(run_dir / folder, name)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {"kind": kind, **config.to_dict()})
    started = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    seconds = time.perf_counter() - started
    module.check_finite()
    if checkpoint.stop_step != trainer.global_step:  # else saved where training stopped
        trainer.save_checkpoint(checkpoint.path, weights_only=False)  # rank 0
    if trainer.is_global_zero:
        metadata = {
            **{k: getattr(config, k) for k in ("dataset", "task") if hasattr(config, k)},
            "steps": int(trainer.global_step),
            "epochs": _epochs_trained(trainer),
            "train_seconds_this_session": round(seconds, 1),
            **_validation_metrics(trainer),
        }
        metadata.update(module.trained.on_fit_end(run_dir, data))
        export_model(module.trained, run_dir / "export", metadata)
    return module


# What a multi-node launcher (torchrun, SLURM, MPI) sets; without one, num_nodes > 1 waits
# forever for the other nodes.
CLUSTER_VARIABLES = ("MASTER_ADDR", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "LSB_JOBID")


def _check_nodes(num_nodes: int) -> None:
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    if num_nodes > 1 and not any(os.environ.get(v) for v in CLUSTER_VARIABLES):
        raise ValueError(
            f"num_nodes={num_nodes} needs a cluster launcher on every node (torchrun, SLURM or "
            f"MPI, which set {', '.join(CLUSTER_VARIABLES)}); none is set here, so training "
            "would wait forever for the other nodes. On one machine use --devices instead"
        )


def _log_interval(config: RunConfig, data: L.LightningDataModule, world_size: int = 1) -> int:
    """50 steps, at most a tenth of ``max_steps`` and at most one epoch of each of the
    ``world_size`` ranks (never below 1)."""
    interval = 50
    if config.max_steps > 0:
        interval = min(interval, config.max_steps // 10)
    with contextlib.suppress(TypeError):  # a loader without a length
        interval = min(interval, len(data.train_dataloader()) // world_size)
    return max(1, interval)


def _epochs_trained(trainer: L.Trainer) -> float:
    """Epochs trained in all (fractional where training stopped inside one)."""
    batches = trainer.fit_loop.epoch_loop.total_batch_idx + 1
    per_epoch = trainer.num_training_batches
    if not per_epoch or per_epoch == float("inf"):
        return float(trainer.current_epoch)
    return round(batches / per_epoch, 3)


def _validation_metrics(trainer: L.Trainer) -> dict[str, Any]:
    """The last ``val/…`` figures, as ``val_…`` floats."""
    return {
        name.replace("/", "_"): float(value)
        for name, value in trainer.callback_metrics.items()
        if name.startswith("val/")
    }
