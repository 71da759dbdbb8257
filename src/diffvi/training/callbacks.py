"""Lightning callbacks that change how a run trains (not what it logs)."""

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from tqdm.auto import tqdm


class PosteriorWarmup(Callback):
    """Pretrain a diffusion posterior's reverse chain on the prior before the first step.

    The first stage of the official DDVI code (``DiffVAE._train_diff``: an unconditional latent
    diffusion trained for 100 epochs on prior samples before the VAE): ``steps`` Adam steps on
    the sleep (denoising) loss alone, z ~ p(z) and x̂ ~ p(x|z) from the still untrained decoder,
    updating only the posterior's parameters. Without it the reverse chain starts as the
    identity (zero-initialised denoiser) and the wake terms shape it before it knows the
    prior's geometry. Skipped when the run resumes (``global_step > 0``).

    Args:
        steps: warm-up steps (0: nothing).
        batch_size: fantasy pairs per step.
        lr: the warm-up Adam's learning rate.
        progress: show a progress bar.
    """

    def __init__(
        self, steps: int, batch_size: int = 512, lr: float = 1e-3, progress: bool = False
    ) -> None:
        if steps < 0 or batch_size < 1 or lr <= 0:
            raise ValueError(
                f"need steps >= 0, batch_size >= 1, lr > 0; got {steps}, {batch_size}, {lr}"
            )
        self.steps, self.batch_size, self.lr, self.progress = steps, batch_size, lr, progress
        self.seconds = 0.0  # wall time of the warm-up, so that epoch timings can leave it out

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.steps == 0 or trainer.global_step > 0:
            return
        import time

        from diffvi.objectives.ddvi import DDVI

        started = time.perf_counter()

        family = pl_module.family
        posterior = family.posterior
        sleep = DDVI()
        optimizer = torch.optim.Adam(posterior.parameters(), lr=self.lr)
        bar = tqdm(
            range(self.steps), desc="posterior warm-up", disable=not self.progress, leave=False
        )
        for _ in bar:
            loss = sleep.sleep_loss(family.model, posterior, self.batch_size)
            if not torch.isfinite(loss):
                raise FloatingPointError("the posterior warm-up loss became NaN or infinite")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        # The decoder got no gradient here, but zero any stale ones for the first real step.
        family.zero_grad(set_to_none=True)
        self.seconds = time.perf_counter() - started


class BatchClock(Callback):
    """Before every batch, tells the family where training stands: the global step
    (``family.current_step``), the epoch (``family.current_epoch``, from 0) and whether the
    batch is the epoch's last (``family.epoch_ending``), for families whose loop depends on
    them (the official DDVI recipes)."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        family = pl_module.family
        family.current_step = trainer.global_step
        family.current_epoch = trainer.current_epoch
        family.epoch_ending = batch_idx + 1 >= trainer.num_training_batches


class StageSchedule(BatchClock):
    """Drives a family trained in stages (the official DDVI recipe, ``TrainConfig.stage2``).

    At the start of training it has the family fix the steps at which its stages change from
    the run's budget in optimiser steps (``family.fix_stage_boundaries``: the smaller of
    ``max_steps`` and ``max_epochs`` × the batches of an epoch; ``None`` without either), which
    a resumed run keeps from its checkpoint; before every batch it tells the family the global
    step (``family.current_step``), from which the family picks the stage.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.family.fix_stage_boundaries(budget_steps(trainer))


def budget_steps(trainer: L.Trainer) -> int | None:
    """The run's budget in optimiser steps: the smaller of ``max_steps`` and ``max_epochs`` ×
    the training batches of an epoch, where set (``None`` where neither is)."""
    limits = []
    if trainer.max_steps is not None and trainer.max_steps > 0:
        limits.append(int(trainer.max_steps))
    per_epoch = trainer.num_training_batches
    if trainer.max_epochs is not None and trainer.max_epochs > 0 and per_epoch != float("inf"):
        limits.append(int(trainer.max_epochs * per_epoch))
    return min(limits) if limits else None
