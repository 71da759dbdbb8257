"""The training entry point: config in, trained run folder out."""

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from diffvi.diffusion.pretrained import save_diffusion
from diffvi.training.callbacks import PosteriorWarmup
from diffvi.training.checkpoint import AtomicCheckpointIO, export_model, resolve_checkpoint
from diffvi.training.config import TrainConfig
from diffvi.training.data import ImageDataModule
from diffvi.training.diffusion_module import DiffusionConfig, DiffusionModule
from diffvi.training.module import VAEModule
from diffvi.utils.io import write_json
from diffvi.utils.runtime import configure_numerics


def fit(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    accelerator: str = "auto",
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    progress_bar: bool = True,
    limit_train_batches: int | float | None = None,
    callbacks: Sequence[Callback] = (),
    log_every_n_steps: int = 50,
    checkpoint_every_n_epochs: int = 1,
    datamodule: L.LightningDataModule | None = None,
) -> VAEModule:
    """Train a VAE as ``config`` says and write the run to ``run_dir``:
    ``config.json``, ``checkpoints/last.ckpt`` (every ``checkpoint_every_n_epochs`` epochs
    and at the end, written atomically), ``logs/version_N/metrics.csv``, and
    ``export/model.safetensors`` at the end.

    ``resume=True`` continues from ``run_dir/checkpoints/last.ckpt`` with the optimiser,
    schedule, step count and random state restored; training then runs up to
    ``config.max_epochs`` in total. The Lightning arguments (``accelerator``, ``devices``,
    ``num_nodes``, ``strategy``) pass through unchanged, e.g. ``strategy="ddp"``.

    ``datamodule`` (e.g. a :class:`~diffvi.training.data.FeatureDataModule`) replaces the
    registered data set ``config.dataset`` names; its ``event_shape`` sets the config's.
    """
    run_dir = Path(run_dir)
    if datamodule is not None and config.num_labelled:
        raise ValueError("semi-supervised training (num_labelled > 0) needs a registered data set")
    configure_numerics(config.flush_denormal)
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = datamodule or ImageDataModule(
        config.dataset,
        config.batch_size,
        config.seed,
        config.val_size,
        num_labelled=config.num_labelled,
        labelled_batch=config.labelled_batch,
    )
    config.event_shape = list(data.event_shape)
    ckpt_path = str(resolve_checkpoint(run_dir)) if resume else None
    module = VAEModule(config)
    if config.num_labelled > 0:
        classes, parts = data.num_classes, module.model.prior.num_partitions
        if classes is None or classes > parts:
            raise ValueError(
                f"semi-supervised training needs one prior partition per class: {config.dataset} "
                f"has {classes} classes, prior {config.prior!r} has {parts} partitions"
            )
    # One file, rewritten (atomically) every few epochs and once more at the end.
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="last",
        save_top_k=1,
        every_n_epochs=checkpoint_every_n_epochs,
        enable_version_counter=False,
    )
    all_callbacks: list[Callback] = [checkpoint, *callbacks]
    if config.warmup_steps:
        all_callbacks.append(PosteriorWarmup(config.warmup_steps, progress=progress_bar))
    trainer = _trainer(
        run_dir,
        all_callbacks,
        progress_bar,
        max_epochs=config.max_epochs,
        max_steps=config.max_steps,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        limit_train_batches=limit_train_batches,
        log_every_n_steps=log_every_n_steps,
        use_distributed_sampler=False,  # the data module shards batches itself
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", config.to_dict())
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)  # rank 0
    if trainer.is_global_zero:
        export_model(module, run_dir / "export")
    return module


def _trainer(
    run_dir: Path, callbacks: list[Callback], progress_bar: bool, **options: Any
) -> L.Trainer:
    """A Lightning ``Trainer`` writing CSV logs to ``run_dir/logs`` and atomic checkpoints;
    ``options`` go to the ``Trainer`` unchanged."""
    if progress_bar:
        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=20)]
    return L.Trainer(
        default_root_dir=run_dir,
        logger=CSVLogger(run_dir, name="logs"),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        **options,
    )


def fit_diffusion(
    config: DiffusionConfig,
    run_dir: str | Path,
    resume: bool = False,
    accelerator: str = "auto",
    devices: int | str = "auto",
    progress_bar: bool = True,
    callbacks: Sequence[Callback] = (),
    log_every_n_steps: int = 50,
) -> DiffusionModule:
    """Train an image diffusion model as ``config`` says and write the run to ``run_dir``:
    ``config.json``, ``checkpoints/last.ckpt`` (every ``val_every_n_steps`` steps and at the
    end, atomically), ``logs/version_N/metrics.csv`` (train loss, validation bits/dim of the EMA
    weights) and ``export/`` (EMA weights as ``model.safetensors`` + ``model.json``, loadable
    with :func:`~diffvi.diffusion.pretrained.load_diffusion`).

    ``resume=True`` continues from ``run_dir/checkpoints/last.ckpt`` (optimiser, EMA, step and
    random state restored) up to ``config.max_steps`` in total.
    """
    run_dir = Path(run_dir)
    configure_numerics(config.flush_denormal)
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = ImageDataModule(config.dataset, config.batch_size, config.seed, config.val_size)
    config.event_shape = list(data.event_shape)
    if len(config.event_shape) != 3:
        raise ValueError(
            f"diffusion training needs images [C, H, W]; {config.dataset} has "
            f"items of shape {config.event_shape}"
        )
    ckpt_path = str(resolve_checkpoint(run_dir)) if resume else None
    module = DiffusionModule(config)
    trainer, seconds = fit_by_steps(
        module,
        data,
        run_dir,
        {"kind": "diffusion", **config.to_dict()},
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
            "dataset": config.dataset,
            "steps": int(trainer.global_step),
            "train_seconds_this_session": round(seconds, 1),
            "val_bpd": _last_metric(trainer, "val/bpd"),
        }
        save_diffusion(module.ema.module, module.exported_spec(metadata), run_dir / "export")
    return module


def fit_by_steps(
    module: L.LightningModule,
    data: L.LightningDataModule,
    run_dir: Path,
    saved_config: dict[str, Any],
    ckpt_path: str | None,
    *,
    max_steps: int,
    val_every_n_steps: int,
    grad_clip: float,
    accelerator: str = "auto",
    devices: int | str = "auto",
    progress_bar: bool = True,
    callbacks: Sequence[Callback] = (),
    log_every_n_steps: int = 50,
    **trainer_options: Any,
) -> tuple[L.Trainer, float]:
    """The step-based training loop shared by :func:`fit_diffusion` and
    :func:`~diffvi.training.cvdm_module.fit_cvdm`: validate and checkpoint
    (``run_dir/checkpoints/last.ckpt``, atomically) every ``val_every_n_steps`` steps, write
    ``saved_config`` to ``run_dir/config.json`` (rank 0), train up to ``max_steps`` in total
    (from ``ckpt_path`` when resuming, weights-only loading), then write the final checkpoint.

    ``trainer_options`` go to the Lightning ``Trainer``. Returns the trainer and the seconds
    spent in ``trainer.fit`` (this session); exporting is the caller's.
    """
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="last",
        save_top_k=1,
        every_n_train_steps=val_every_n_steps,
        enable_version_counter=False,
    )
    trainer = _trainer(
        run_dir,
        [checkpoint, *callbacks],
        progress_bar,
        max_steps=max_steps,
        max_epochs=-1,
        accelerator=accelerator,
        devices=devices,
        gradient_clip_val=grad_clip or None,
        val_check_interval=val_every_n_steps,
        check_val_every_n_epoch=None,
        log_every_n_steps=log_every_n_steps,
        use_distributed_sampler=False,
        **trainer_options,
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", saved_config)
    started = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return trainer, time.perf_counter() - started


def _last_metric(trainer: L.Trainer, name: str) -> float | None:
    value = trainer.callback_metrics.get(name)
    return None if value is None else float(value)
