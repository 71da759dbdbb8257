"""What the command modules share: error reporting, the common options, and the ``diffvi train``
commands' options, generated from the config dataclasses.

A config field made with :func:`diffvi.training.config.option` is one option of the command
that trains that config: its help, ``flag`` (the field's name by default; a differing flag keeps
``--field-name`` as an alias), ``panel``, ``choices`` (the registry the config validates
against), ``min``/``max`` and its default (the dataclass's, or the command's own) come from the
field. Types: ``int``, ``float``, ``str`` (a choice where ``choices`` is set), ``bool`` (``--x/
--no-x`` unless the flag names both), ``list[int]`` (comma-separated, ``--layers 200,200``;
repeats add up), ``list[list[int]]`` (one list per repeat, ``--hidden 256,256 --hidden 128``)
and ``dict`` (``NAME=VALUE`` per repeat). An option not given is ``None``, so that a
``--config`` file and a resumed run's saved config fill it.

Heavy imports (Lightning) stay inside functions so that ``diffvi --help`` is quick.
"""

import dataclasses
import functools
import inspect
import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import typer

from diffvi.training.config import HARDWARE, RunConfig
from diffvi.utils.io import WRITE_ERRNOS, NotWritableError, ensure_writable, write_failure
from diffvi.utils.runtime import configure_numerics as setup_numerics
from diffvi.utils.runtime import quiet_lightning, set_threads

F = TypeVar("F", bound=Callable[..., Any])

# Errors that mean "bad input" or an output that cannot be written: reported in one line, exit
# code 1, no traceback.
USER_ERRORS = (
    ValueError, FileNotFoundError, NotADirectoryError, FloatingPointError, NotWritableError,
)  # fmt: skip


def report_errors(command: F) -> F:
    """Turn the user errors a command raises into ``Error: <message>`` on stderr and exit 1;
    so too a write that fails for a cause outside the program (no permission, a read-only or
    full file system) wherever it happens, e.g. a checkpoint written by Lightning."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            message = str(err)
        except OSError as err:
            if err.errno not in WRITE_ERRNOS:
                raise
            message = str(write_failure(err))
        typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1)

    return wrapper  # type: ignore[return-value]


def choice(values: Any) -> Any:
    """The type of an option whose value is one of ``values`` (a registry's names)."""
    return Literal[tuple(values)]


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
    str,
    typer.Argument(
        metavar="RUN_OR_CKPT",
        help="A run folder, its export/, a .ckpt file, a model name (mnist; a folder of the "
        "current directory is ./NAME), or a guided-diffusion checkpoint (adm:CONFIG:FILE.pt, "
        "FILE.pt).",
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


DevicesOpt = Annotated[
    str,
    typer.Option(
        help="Devices per node (Lightning's devices): auto, a count (2) or ids (0,1); with "
        "--strategy ddp, one training process each (CPU processes too).",
        rich_help_panel=HARDWARE,
    ),
]
NumNodesOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Nodes of a multi-node DDP run, started on every node by torchrun or SLURM "
        "(srun), which set the ranks.",
        rich_help_panel=HARDWARE,
    ),
]
StrategyOpt = Annotated[
    str,
    typer.Option(
        help="Lightning's strategy: auto, ddp (data-parallel over --devices and --num-nodes) …",
        rich_help_panel=HARDWARE,
    ),
]


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


# -- diffvi train ---------------------------------------------------------------------------


@dataclasses.dataclass
class RunOptions:
    """Where and how a ``diffvi train`` command runs: the options every one of them takes
    besides its config fields (typer reads them from this class's signature)."""

    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            show_default=False,
            help="A YAML or JSON file of config fields (a run's config.json reruns it); "
            "options given on the command line override it.",
        ),
    ] = None
    run_dir: Annotated[
        Path | None,
        typer.Option(
            show_default=False,
            help="Folder of the run: config.json, checkpoints/, logs/, export/ (default: "
            "runs/NAME, named after the config).",
        ),
    ] = None
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the run in --run-dir from checkpoints/last.ckpt with its saved "
            "config (only the budget, --precision and --flush-denormal may change)."
        ),
    ] = False
    accelerator: Annotated[str, typer.Option(help="cpu, gpu, auto …", rich_help_panel=HARDWARE)] = (
        "auto"
    )
    devices: DevicesOpt = "auto"
    num_nodes: NumNodesOpt = 1
    strategy: StrategyOpt = "auto"
    flush_denormal: FlushDenormalOpt = True
    threads: ThreadsOpt = None
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True
    log_every_n_steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Write training metrics to logs/metrics.csv every N steps [default: 50, or "
            "about ten rows for a shorter run or epoch].",
        ),
    ] = None

    def train(
        self,
        kind: str,
        given: dict[str, Any],
        defaults: dict[str, Any] | None = None,
        run_name: Callable[[Any], str] | None = None,
    ) -> tuple[Any, Path, dict[str, Any]] | None:
        """Resolve the config (:func:`~diffvi.training.runs.resolve_run`: ``defaults`` <
        ``--config`` < ``given``) and train it with :func:`~diffvi.training.fit`. Returns
        ``(config, run_dir, export metadata)`` on global rank 0, ``None`` on the other ranks."""
        setup_numerics(self.flush_denormal)
        quiet_lightning()
        set_threads(self.threads)
        from diffvi.training import fit, read_spec
        from diffvi.training.runs import resolve_run

        if given.get("dataset") is not None:
            check_dataset(given["dataset"])
        if given.get("data") is not None and given.get("dataset") is not None:
            raise ValueError("--dataset and --data both name the training data; give one")
        config, run_dir = resolve_run(
            kind,
            {**given, "flush_denormal": self.flush_denormal},
            self.run_dir,
            self.resume,
            config_file=self.config,
            defaults=defaults,
            run_name=run_name,
        )
        ensure_writable(run_dir, folder=True)  # before the data and the model are loaded
        module = fit(
            config,
            run_dir,
            resume=self.resume,
            accelerator=self.accelerator,
            devices=parse_devices(self.devices),
            num_nodes=self.num_nodes,
            strategy=self.strategy,
            progress_bar=self.progress,
            log_every_n_steps=self.log_every_n_steps,
        )
        if module.global_rank != 0:
            return None
        return config, run_dir, read_spec(run_dir)["metadata"]


def parse_sizes(texts: list[str], flag: str, nested: bool = False) -> list[Any]:
    """Comma-separated positive sizes (``200,200``), one text per repeat of ``flag``: all of
    them in one list (``''`` is no size), or one list per text when ``nested``."""
    lists = []
    for text in texts:
        try:
            sizes = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            sizes = [0]
        if min(sizes, default=1) < 1 or (nested and not sizes):
            raise ValueError(
                f"{flag} takes comma-separated positive sizes such as 200,200, got {text!r}"
            )
        lists.append(sizes)
    return lists if nested else [size for sizes in lists for size in sizes]


def parse_pairs(texts: list[str], flag: str) -> dict[str, Any]:
    """``NAME=VALUE`` texts as a dict (VALUE parsed as JSON where it is JSON, else text)."""
    values: dict[str, Any] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{flag} takes NAME=VALUE, got {text!r}")
        try:
            values[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            values[name.strip()] = value
    return values


def option_settings(config_class: type, name: str) -> dict[str, Any] | None:
    """The option settings of field ``name``: its own, else those of the class it overrides."""
    for cls in config_class.__mro__:
        found = getattr(cls, "__dataclass_fields__", {}).get(name)
        if found is not None and "help" in found.metadata:
            return dict(found.metadata)
    return None


def _shown(value: Any, kind: Any, flags: list[str]) -> str | bool:
    """How ``--help`` shows the default ``value`` of an option of type ``kind``."""
    if value is None or value == {}:
        return False
    if kind is bool:
        on, _, off = flags[0].partition("/")
        return (on if value else off or f"--no-{on[2:]}").lstrip("-")
    if kind == list[list[int]]:
        return " ".join(",".join(map(str, sizes)) for sizes in value)
    if kind == list[int]:
        return ",".join(map(str, value)) or "''"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _field_option(field: dataclasses.Field, hint: Any, meta: dict[str, Any], default: Any) -> Any:
    """``(annotation, kind, flag)``: the typer option of config ``field``, the field's type
    (``Optional`` removed) and the option's name in messages."""
    optional = get_origin(hint) in (Union, types.UnionType)
    kind = next(t for t in get_args(hint) if t is not type(None)) if optional else hint
    own = f"--{field.name.replace('_', '-')}"
    flag = meta.get("flag", own)
    flags = [flag] if isinstance(flag, str) else list(flag)
    if kind is not bool and own not in flags:
        flags.append(own)
    settings: dict[str, Any] = {
        "help": meta["help"],
        "rich_help_panel": meta.get("panel"),
        "show_default": _shown(default, kind, flags),
    }
    if kind is bool:
        option_type: Any = bool
        if "/" not in flags[0]:
            flags[0] = f"{flags[0]}/--no-{flags[0][2:]}"
    elif get_origin(kind) in (list, dict):
        option_type = list[str]
        settings["metavar"] = "NAME=VALUE" if get_origin(kind) is dict else "N,N"
    else:
        option_type = choice(meta["choices"]) if "choices" in meta else kind
        settings.update(min=meta.get("min"), max=meta.get("max"))
    option = Annotated[option_type | None, typer.Option(*flags, **settings)]
    return option, kind, flags[0].partition("/")[0]


def _to_config(value: Any, kind: Any, flag: str) -> Any:
    """The config value of an option's command-line ``value`` (``None``: not given)."""
    if value is None or value == []:  # a repeatable option not given may come as []
        return None
    if get_origin(kind) is dict:
        return parse_pairs(value, flag)
    if get_origin(kind) is list:
        return parse_sizes(value, flag, nested=kind == list[list[int]])
    return value


def train_command(
    config_class: type[RunConfig],
    *,
    defaults: dict[str, Any] | None = None,
    exclude: tuple[str, ...] = (),
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate ``command(given, run, **own_options)`` into a ``diffvi train`` command.

    Its options are one per option field of ``config_class`` (less ``exclude``; defaults shown
    from ``defaults``, else the dataclass), then ``command``'s own options, then those of
    :class:`RunOptions`. ``command`` gets ``given``, the config values from the command line
    (``None`` where not given), and ``run``, a :class:`RunOptions`; its docstring is the help.
    """
    hints = get_type_hints(config_class)
    fields: dict[str, tuple[Any, Any, str]] = {}
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    ordered = sorted(dataclasses.fields(config_class), key=lambda f: f.name in run_fields)
    for field in ordered:
        meta = option_settings(config_class, field.name)
        if meta is None or field.name in exclude:
            continue
        if defaults and field.name in defaults:
            default = defaults[field.name]
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = field.default
        fields[field.name] = _field_option(field, hints[field.name], meta, default)
    run_parameters = inspect.signature(RunOptions).parameters

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(command).parameters.values())[2:]
        keyword = inspect.Parameter.KEYWORD_ONLY
        parameters = [
            *(
                inspect.Parameter(n, keyword, default=None, annotation=a)
                for n, (a, *_) in fields.items()
            ),
            *(p.replace(kind=keyword) for p in own),
            *(p.replace(kind=keyword) for p in run_parameters.values()),
        ]

        def run_command(**values: Any) -> None:
            given = {
                n: _to_config(values.pop(n), kind, flag) for n, (_, kind, flag) in fields.items()
            }
            run = RunOptions(**{name: values.pop(name) for name in run_parameters})
            command(given, run, **values)

        run_command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run_command.__doc__ = command.__doc__
        run_command.__name__ = command.__name__
        return report_errors(run_command)

    return decorate
