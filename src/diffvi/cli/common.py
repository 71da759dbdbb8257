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
    from diffvi.utils.paths import find_model

    config = target / "config.json"
    is_vae_run = config.is_file() and json.loads(config.read_text()).get("kind") != "diffusion"
    if is_vae_run or target.suffix == ".ckpt":
        return None
    try:
        return find_model(target)
    except FileNotFoundError:
        if target.exists():
            return None
        raise


_BUDGET = "Budget"
_OPTIM = "Optimisation"
_HARDWARE = "Hardware (passed to Lightning's Trainer)"

ConfigFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        exists=True,
        dir_okay=False,
        help="A YAML or JSON file of config fields (a run's config.json reruns it); "
        "options given on the command line override it.",
        show_default=False,
    ),
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        help="Continue the run in --run-dir from checkpoints/last.ckpt with its saved config "
        "(only the budget, --precision and --flush-denormal may change)."
    ),
]
SeedOpt = Annotated[
    int | None, typer.Option(show_default="0", help="Seed of weights, noise and data order.")
]
MaxEpochsOpt = Annotated[
    int | None,
    typer.Option(
        min=-1, show_default="the family's", rich_help_panel=_BUDGET, help="-1: no limit."
    ),
]
MaxStepsOpt = Annotated[
    int | None,
    typer.Option(
        min=-1,
        show_default="the family's",
        rich_help_panel=_BUDGET,
        help="Optimiser steps in total (across resumes); -1: no limit.",
    ),
]
MaxMinutesOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        show_default="no limit",
        rich_help_panel=_BUDGET,
        help="Wall-clock minutes of this session.",
    ),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        show_default="32-true",
        rich_help_panel=_HARDWARE,
        help="32-true, bf16-mixed, 16-mixed (CUDA), bf16-true or 64-true.",
    ),
]
AcceleratorOpt = Annotated[str, typer.Option(help="cpu, gpu, auto …", rich_help_panel=_HARDWARE)]
DevicesOpt = Annotated[
    str, typer.Option(help="auto, a count (2) or ids (0,1).", rich_help_panel=_HARDWARE)
]
NumNodesOpt = Annotated[int, typer.Option(min=1, rich_help_panel=_HARDWARE)]
StrategyOpt = Annotated[str, typer.Option(help="auto, ddp …", rich_help_panel=_HARDWARE)]
ProgressOpt = Annotated[bool, typer.Option(help="Show progress bars.")]
LogEveryOpt = Annotated[
    int, typer.Option(min=1, help="Write training metrics to logs/ every N steps.")
]


def dataset_opt(default: str) -> Any:
    from diffvi.data import available_datasets

    return Annotated[
        str | None,
        typer.Option(help=f"Data set: {', '.join(available_datasets())}.", show_default=default),
    ]


def run_dir_opt(default: str) -> Any:
    return Annotated[
        Path | None,
        typer.Option(
            show_default=default,
            help="Folder of the run: config.json, checkpoints/, logs/, export/.",
        ),
    ]


def batch_size_opt(default: str) -> Any:
    return Annotated[int | None, typer.Option(min=1, show_default=default, rich_help_panel=_OPTIM)]


def lr_opt(default: str) -> Any:
    return Annotated[
        float | None,
        typer.Option(
            min=1e-12, show_default=default, rich_help_panel=_OPTIM, help="Learning rate."
        ),
    ]


def run_training(
    kind: str,
    given: dict[str, Any],
    run_dir: Path | None,
    resume: bool,
    hardware: dict[str, Any],
    config_file: Path | None = None,
    defaults: dict[str, Any] | None = None,
    run_name: Callable[[Any], str] | None = None,
) -> tuple[Any, Path, dict[str, Any]] | None:
    """What every ``train`` sub-command does once its options are read: set up torch, resolve
    the config (:func:`~diffvi.training.runs.resolve_run`), train with
    :func:`~diffvi.training.fit`. Returns ``(config, run_dir, export metadata)`` on global rank
    0, ``None`` on the other ranks.

    ``hardware``: ``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``flush_denormal``,
    ``threads``, ``progress``, ``log_every_n_steps`` as the command received them.
    """
    setup_numerics(hardware["flush_denormal"])
    quiet_lightning()
    set_threads(hardware["threads"])
    from diffvi.training import fit, read_spec
    from diffvi.training.runs import resolve_run

    given = {**given, "flush_denormal": hardware["flush_denormal"]}
    config, run_dir = resolve_run(
        kind,
        given,
        run_dir,
        resume,
        config_file=config_file,
        defaults=defaults,
        run_name=run_name,
    )
    module = fit(
        config,
        run_dir,
        resume=resume,
        accelerator=hardware["accelerator"],
        devices=parse_devices(hardware["devices"]),
        num_nodes=hardware["num_nodes"],
        strategy=hardware["strategy"],
        progress_bar=hardware["progress"],
        log_every_n_steps=hardware["log_every_n_steps"],
    )
    if module.global_rank != 0:
        return None
    return config, run_dir, read_spec(run_dir)["metadata"]


def parse_sizes(text: str, option: str) -> list[int]:
    """Comma-separated positive sizes such as ``200,200`` (``option`` names the flag)."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ValueError(
            f"{option} takes comma-separated positive sizes such as 200,200, got {text!r}"
        )
    return sizes


def parse_resolutions(text: str | None) -> list[int] | None:
    """``--attention``: comma-separated resolutions, ``''`` for none, ``None`` if not given."""
    if text is None:
        return None
    return parse_sizes(text, "--attention") if text.strip() else []
