"""Run folders: which config a new or resumed run trains with, and where it lives.

A new run's config is layered: the family's dataclass defaults, then a command's own defaults,
then a config file (YAML or JSON; a run's own ``config.json`` reproduces that run), then the
options given explicitly. A resumed run takes its saved ``config.json``; only the fields of
:data:`~diffvi.training.config.RESUMABLE_FIELDS` (budget and numerics) may change.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffvi.training.config import RESUMABLE_FIELDS, RunConfig


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (``.yaml``/``.yml``) or JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as err:
        reason = " ".join(str(err).split())  # one line: YAML's messages span several
        raise ValueError(f"{path} is not a readable YAML or JSON config: {reason}") from None
    if not isinstance(values, dict):
        raise ValueError(
            f"{path} must hold a mapping of config fields, got {type(values).__name__}"
        )
    return values


def new_run_config(
    kind: str,
    given: dict[str, Any],
    config_file: str | Path | None = None,
    defaults: dict[str, Any] | None = None,
) -> RunConfig:
    """The config of a new run of family ``kind``: ``defaults`` < ``config_file`` < ``given``
    (``None`` values in ``given`` mean "not given")."""
    from diffvi.training.family import family_class

    values = dict(defaults or {})
    if config_file is not None:
        from_file = read_config_file(config_file)
        saved_kind = from_file.pop("kind", kind)
        if saved_kind != kind:
            raise ValueError(f"{config_file} is the config of a {saved_kind!r} run, not {kind!r}")
        values.update(from_file)
    values.update({k: v for k, v in given.items() if v is not None})
    return family_class(kind).config_class.from_dict(values)


def resumed_run_config(kind: str, run_dir: Path | None, given: dict[str, Any]) -> RunConfig:
    """The saved config of the run in ``run_dir``, with the ``RESUMABLE_FIELDS`` among
    ``given`` applied; any other given value that differs from the saved one is an error."""
    from diffvi.training.family import family_class
    from diffvi.training.module import legacy_kind

    if run_dir is None:
        raise ValueError("--resume needs the --run-dir of the run to continue")
    path = run_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: no config.json in {run_dir}")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot resume: {path} is not valid JSON ({err})") from err
    saved_kind = saved.pop("kind", None) or legacy_kind({"config": saved})
    if saved_kind != kind:
        raise ValueError(
            f"{run_dir} holds a {saved_kind} run, not a {kind} run; resume it with "
            f"`diffvi train {saved_kind}`"
        )
    config = family_class(kind).config_class.from_dict(saved)
    given = {k: v for k, v in given.items() if v is not None}
    clashes = {
        name: (value, getattr(config, name))
        for name, value in given.items()
        if name not in RESUMABLE_FIELDS and value != getattr(config, name)
    }
    if clashes:
        detail = ", ".join(
            f"{n}: given {new!r}, run has {old!r}" for n, (new, old) in clashes.items()
        )
        raise ValueError(
            f"--resume continues {run_dir} with its saved config; these options differ "
            f"({detail}). Drop them, or start a new --run-dir"
        )
    for name in RESUMABLE_FIELDS:
        if name in given:
            setattr(config, name, given[name])
    config.check_run()
    return config


def fresh_run_dir(run_dir: Path) -> Path:
    """``run_dir`` for a new run; a folder that already holds a run is an error."""
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        raise ValueError(
            f"{run_dir} already holds a run (checkpoints/last.ckpt); pass --resume to "
            "continue it, or choose another --run-dir"
        )
    return run_dir


def resolve_run(
    kind: str,
    given: dict[str, Any],
    run_dir: Path | None,
    resume: bool,
    *,
    config_file: str | Path | None = None,
    defaults: dict[str, Any] | None = None,
    run_name: Callable[[Any], str] | None = None,
) -> tuple[RunConfig, Path]:
    """``(config, run_dir)`` of a run: resumed from ``run_dir``, or new (in ``run_dir``, else
    ``runs/<run_name(config)>``, which must not hold a run yet)."""
    if resume:
        if config_file is not None:
            raise ValueError("--resume continues a run with its saved config; drop --config")
        return resumed_run_config(kind, run_dir, given), run_dir  # type: ignore[return-value]
    config = new_run_config(kind, given, config_file, defaults)
    if run_dir is None:
        run_dir = Path("runs") / (run_name(config) if run_name else kind)
    return config, fresh_run_dir(run_dir)
