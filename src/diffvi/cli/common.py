"""Helpers shared by the command modules: error reporting, quiet Lightning, devices, data, JSON.

Heavy imports (torch, Lightning) stay inside functions so that ``diffvi --help`` is quick.
"""

import functools
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

# Errors that mean "bad input": reported in one line, exit code 1, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, FloatingPointError)


def report_errors(command: F) -> F:
    """Turn the user errors a command raises into ``Error: <message>`` on stderr and exit 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            typer.secho(f"Error: {err}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


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


def setup_numerics(flush_denormal: bool) -> None:
    """Flush denormals (or not) before any computation; see ``diffvi.utils.runtime``."""
    from diffvi.utils.runtime import configure_numerics

    configure_numerics(flush_denormal)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given; ``None`` keeps torch's default."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def parse_devices(devices: str) -> int | str:
    """Lightning's ``devices``: ``"auto"``, a count such as ``"2"``, or a list such as ``"0,1"``."""
    text = devices.strip()
    if text.isdigit():
        return int(text)
    if text in ("auto", "-1") or all(part.strip().isdigit() for part in text.split(",")):
        return text
    raise ValueError(
        f"--devices must be 'auto', a count (2) or a list of ids (0,1), got {devices!r}"
    )


def check_dataset(name: str) -> str:
    """Fail early, with the list of valid names, on an unknown data set."""
    from diffvi.data import dataset_splits

    dataset_splits(name)  # raises ValueError listing the valid names
    return name


def check_split(name: str, split: str) -> None:
    from diffvi.data import dataset_splits

    splits = dataset_splits(name)
    if split not in splits:
        raise ValueError(f"unknown split {split!r} for data set {name!r}; valid: {list(splits)}")


RunOrCheckpoint = Annotated[
    Path,
    typer.Argument(
        metavar="RUN_OR_CKPT",
        help="A run folder (uses checkpoints/last.ckpt) or a .ckpt file.",
        show_default=False,
    ),
]

DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda, cuda:N.")]
FlushDenormalOpt = Annotated[
    bool, typer.Option(help="Flush denormal floats to zero on the CPU (faster IWAE-type steps).")
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(min=1, help="CPU threads for torch.", show_default="torch's default"),
]


def diffusion_folder(target: Path) -> Path | None:
    """The saved diffusion model that ``target`` names (a run, an export folder, or a model
    name), or ``None`` when it is something else (a VAE run or checkpoint)."""
    from diffvi.diffusion.pretrained import find_diffusion

    config = target / "config.json"
    is_vae_run = config.is_file() and json.loads(config.read_text()).get("kind") != "diffusion"
    if is_vae_run or target.suffix == ".ckpt":
        return None
    try:
        return find_diffusion(target)
    except FileNotFoundError:
        if target.exists():
            return None
        raise


def fresh_run_dir(run_dir: Path) -> Path:
    """``run_dir`` for a new run; a folder that already holds a run is an error."""
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        raise ValueError(
            f"{run_dir} already holds a run (checkpoints/last.ckpt); pass --resume to "
            "continue it, or choose another --run-dir"
        )
    return run_dir


def resumed_step_config(run_dir: Path | None, given: dict, config_class: type, kind: str):
    """The saved config (``config.json``, of kind ``kind``) of a step-based run to resume;
    only ``max_steps`` may differ from it among the options the user ``given``."""
    if run_dir is None:
        raise ValueError("--resume needs the --run-dir of the run to continue")
    path = run_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: no config.json in {run_dir}")
    saved = json.loads(path.read_text())
    if saved.pop("kind", None) != kind:
        raise ValueError(f"{run_dir} does not hold a {kind} run; resume it with its command")
    config = config_class.from_dict(saved)
    clashes = [k for k, v in given.items() if k != "max_steps" and v != getattr(config, k)]
    if clashes:
        raise ValueError(
            f"--resume continues {run_dir} with its saved config; these options differ: "
            f"{', '.join(clashes)}. Drop them, or start a new --run-dir"
        )
    config.max_steps = given.get("max_steps", config.max_steps)
    return config
