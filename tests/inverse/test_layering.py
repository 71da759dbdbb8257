"""The inverse layer's imports point down only: data and evaluation never import
``diffvi.inverse``, and the operator classes do not import the phase operators built on them
(the registry, ``diffvi.inverse.registry``, imports both)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "diffvi"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", ["data", "evaluation"])
def test_lower_layers_never_import_inverse(package):
    for path in sorted((SRC / package).glob("*.py")):
        upward = {m for m in _imports(path) if m.startswith("diffvi.inverse")}
        assert not upward, f"{path.name} imports {sorted(upward)}"


def test_operator_classes_do_not_import_the_modules_built_on_them():
    imports = _imports(SRC / "inverse" / "operators.py")
    assert not {m for m in imports if m.startswith("diffvi.inverse")}, sorted(imports)
