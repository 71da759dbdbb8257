"""Test-session settings shared by every test folder.

Real data: when ``DIFFVI_DATA`` is unset and ``<repo>/../shared/data`` exists, point
``DIFFVI_DATA`` there. Tests never download: ``DIFFVI_OFFLINE`` is forced to ``1``.
"""

import os
from pathlib import Path

_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

if not os.environ.get("DIFFVI_DATA") and _SHARED_DATA.is_dir():
    os.environ["DIFFVI_DATA"] = str(_SHARED_DATA)
os.environ["DIFFVI_OFFLINE"] = "1"
