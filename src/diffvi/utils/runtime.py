"""Device choice, threads, floating-point settings and Lightning's log level.

Denormal floats: the log-sum-exp weights of IWAE-style objectives make most per-sample gradients
tiny, and arithmetic on denormal floats is very slow on x86 CPUs (3× on an IWAE step here,
see docs). Training and evaluation entry points therefore flush denormals to zero by default;
this only changes values below ~1e-38 and can be turned off with ``flush_denormal=False``.
"""

import logging
import os
import warnings

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; other values are passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here")
    return resolved


def configure_numerics(flush_denormal: bool = True) -> None:
    """Flush denormal floats to zero on the CPU (see the module docstring)."""
    torch.set_flush_denormal(flush_denormal)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given; ``None`` keeps torch's default."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def quiet_lightning() -> None:
    """Silence Lightning's info lines ("GPU available", tips, "`Trainer.fit` stopped") and a few
    warnings that do not concern the user; progress bars and real warnings stay.

    Imports Lightning first: its import sets its loggers' level to INFO."""
    import lightning.pytorch  # noqa: F401

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        r".*isinstance\(treespec, LeafSpec\).*",  # torch deprecation inside Lightning
        r".*does not have many workers.*",  # data are in memory; workers would not help
        r"Checkpoint directory .* exists and is not empty.*",  # the demo reuses its folder
    ):
        warnings.filterwarnings("ignore", message=pattern)


# Where launchers put a process's global rank: torchrun (RANK), SLURM (SLURM_PROCID, in a job
# step of several tasks), Open MPI, and Lightning's own launcher of the other processes of one
# machine (LOCAL_RANK), in that order.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "LOCAL_RANK")


def launcher_rank() -> int:
    """This process's global rank as its launcher set it, before any process group exists
    (0 without a launcher): what lets rank 0 alone do the work that precedes training. A
    single-task SLURM job's SLURM_PROCID (0 in every process Lightning starts in it) is not
    a rank."""
    tasks = os.environ.get("SLURM_NTASKS", "1").strip()
    several_tasks = tasks.isdigit() and int(tasks) > 1
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if name == "SLURM_PROCID" and not several_tasks:
            continue
        if value.isdigit():
            return int(value)
    return 0
