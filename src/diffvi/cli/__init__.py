"""The ``diffvi`` command line (typer): one module per command group; ``main.app`` is the entry
point declared in pyproject.toml."""
