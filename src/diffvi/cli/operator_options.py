"""``diffvi restore``'s operator options, generated from the operator registry: one option per
parameter of :data:`diffvi.inverse.registry.PARAMETERS` (``--missing``, ``--box-size``,
``--box-position``, ``--blur-size``, ``--blur-sigma``, ``--boundary``, ``--sr-factor``, …), its
type, help, choices and bounds from there. A parameter added to an operator's builder and to
``PARAMETERS`` is an option of ``restore`` without an edit here.

A command decorated with :func:`operator_options` gets the options that were given as one
keyword, ``operator_params`` (``{parameter name: value}``), after a check that the ``task``
takes each of them (a one-line error naming the flags it does take).
"""

import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from diffvi.cli.options import choice
from diffvi.inverse.registry import PARAMETERS, OperatorParameter, operator_parameters

__all__ = ["check_operator_options", "operator_options", "parse_size"]

PANEL = "Operator (--task) parameters"


def _annotation(name: str, meta: OperatorParameter) -> Any:
    kind = choice(meta.choices) if meta.choices else meta.kind
    option = typer.Option(
        OperatorParameter.flag(name),
        help=meta.help,
        metavar=meta.metavar,
        min=meta.min,
        rich_help_panel=PANEL,
        show_default="the task's",
    )
    return Annotated[kind | None, option]


def check_operator_options(task: str, solver: str, given: dict[str, Any]) -> None:
    """Every option in ``given`` must be a parameter of ``task`` (and the solver not cvdm)."""
    if not given:
        return
    flags = ", ".join(OperatorParameter.flag(name) for name in given)
    if solver == "cvdm":
        raise ValueError(f"{flags} do not apply to --solver cvdm: its task is the model's own")
    accepted = operator_parameters(task)
    for name in given:
        if name not in accepted:
            takes = [OperatorParameter.flag(n) for n in accepted if n in PARAMETERS]
            raise ValueError(
                f"{OperatorParameter.flag(name)} does not apply to --task {task}; its options "
                f"are {', '.join(takes) if takes else 'none'}"
            )


def parse_size(text: str | None, flag: str) -> tuple[int, int] | None:
    """``"H,W"`` or ``"S"`` (a square) as ``(H, W)`` of positive ints; ``None`` stays."""
    if text is None:
        return None
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise ValueError(f"expected {flag} H,W or S (positive pixel counts), got {text!r}")
    return sizes[0], sizes[-1]


def operator_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add an option per operator parameter to ``command`` (which takes ``task``, ``solver``
    and ``operator_params``) and pass those given as ``operator_params``."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "operator_params"]
    clash = {p.name for p in own} & set(PARAMETERS)
    if clash:
        raise TypeError(f"{command.__name__} already has options {sorted(clash)}")
    keyword = inspect.Parameter.KEYWORD_ONLY
    added = [
        inspect.Parameter(name, keyword, default=None, annotation=_annotation(name, meta))
        for name, meta in PARAMETERS.items()
    ]

    def run(**values: Any) -> None:
        given = {name: values.pop(name) for name in PARAMETERS}
        given = {name: value for name, value in given.items() if value is not None}
        check_operator_options(values["task"], values["solver"], given)
        command(**values, operator_params=given)

    run.__signature__ = inspect.Signature([p.replace(kind=keyword) for p in own] + added)  # type: ignore[attr-defined]
    run.__doc__, run.__name__ = command.__doc__, command.__name__
    return run
