"""``python -m diffvi``: the ``diffvi`` command."""

from diffvi.cli.main import app

app(prog_name="diffvi")
