"""The options that ``diffvi embed genotypes`` and ``diffvi embed table`` share: the embedding
method, its training budget, the hardware of its training and the scores (both run
:func:`diffvi.training.embedding.embed_labelled`).

**Distributed training** (``--strategy ddp``, ``--devices``, ``--num-nodes``): every process
of the run executes the command — Lightning starts the other processes of this machine by
running the same command line again, torchrun and SLURM start one per device on every node —
but only rank 0 reads the data and computes the features (the PCA): it writes them to
``OUT/features.npz``, which the other ranks wait for and load (so OUT must be on a file system
that every node sees), named by a key of the command's arguments and the input's size and
time. All ranks then train together; rank 0 alone encodes the N samples and writes
embedding.csv/png, metrics.json and the exported model.
"""

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from diffvi.cli.options import choice, parse_devices
from diffvi.training.embedding import (
    EMBEDDING_METHODS,
    EmbeddingOptions,
    parse_likelihood_scale,
)

MethodOpt = Annotated[choice(EMBEDDING_METHODS), typer.Option(help="Embedding method.")]
EpochsOpt = Annotated[int, typer.Option(min=1, help="Training epochs (variational methods).")]
HiddenOpt = Annotated[int, typer.Option(min=1, help="Hidden units per MLP layer.")]
LrOpt = Annotated[float, typer.Option(min=1e-12, help="Adam learning rate.")]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Samples per training batch.")]
KnnOpt = Annotated[
    int, typer.Option(min=1, help="Neighbours of the leave-one-out kNN classifier on the labels.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of training, sampling and the GMM.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show progress bars.")]


def embedding_options(
    epochs: int,
    batch_size: int,
    lr: float,
    hidden: int,
    likelihood_scale: float | str | None,
    seed: int,
    device: str,
    progress: bool,
    devices: str = "1",
    num_nodes: int = 1,
    strategy: str = "auto",
) -> EmbeddingOptions:
    """The :class:`EmbeddingOptions` of the shared options (``likelihood_scale`` None: the
    library's default, ``"median"``; text: a rule or a number, see
    :func:`~diffvi.training.embedding.parse_likelihood_scale`; ``devices`` as ``--devices``
    takes it)."""
    default = EmbeddingOptions().likelihood_scale
    return EmbeddingOptions(
        epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden,
        likelihood_scale=default if likelihood_scale is None else parse_likelihood_scale(
            likelihood_scale
        ),
        seed=seed, device=device, progress=progress, devices=parse_devices(devices),
        num_nodes=num_nodes, strategy=strategy,
    )  # fmt: skip


FEATURES_FILE = "features.npz"
WAIT_SECONDS = 7 * 24 * 3600.0  # how long the other ranks wait for rank 0's features


def distributed(options: EmbeddingOptions) -> bool:
    """Whether ``options`` train on more than one process (DDP and the like)."""
    many = options.devices not in (1, "1") or options.num_nodes > 1
    return many or any(s in options.strategy for s in ("ddp", "fsdp", "deepspeed"))


def features_key(input: Path, arguments: dict[str, Any]) -> str:
    """SHA-256 naming the features of ``arguments`` computed from the file ``input`` (its
    resolved path, size and modification time)."""
    stat = Path(input).stat()
    identity = [str(Path(input).resolve()), stat.st_size, stat.st_mtime_ns, arguments]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def share_features(
    out: Path,
    key: str,
    rank: int,
    compute: Callable[[], dict[str, np.ndarray]],
    wait_seconds: float = WAIT_SECONDS,
    poll_seconds: float = 2.0,
) -> dict[str, np.ndarray] | None:
    """Rank 0: ``compute()`` (arrays by name) and write them to ``out/features.npz`` under
    ``key``; returns ``None``. Another rank: wait (up to ``wait_seconds``) for that file with
    this ``key`` and return its arrays. A file left by an earlier run with the same key holds
    the same numbers, so it may be read before rank 0 rewrites it."""
    from diffvi.utils.io import atomic_write

    path = out / FEATURES_FILE
    if rank == 0:
        arrays = compute()
        atomic_write(path, lambda tmp: np.savez(tmp, key=np.array(key), **arrays))
        return None
    deadline = time.monotonic() + wait_seconds
    typer.echo(f"rank {rank}: waiting for rank 0's features in {path}")
    while True:
        if path.is_file():
            with np.load(path) as saved:
                if str(saved["key"]) == key:
                    return {name: saved[name] for name in saved.files if name != "key"}
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"rank {rank}: rank 0 wrote no features for this command to {path} in "
                f"{wait_seconds:.0f} s (is OUT on a file system every node sees?)"
            )
        time.sleep(poll_seconds)
