"""Test-session settings shared by every test folder.

Real data: when ``DIFFVI_DATA`` is unset and ``<repo>/../shared/data`` exists, point
``DIFFVI_DATA`` there. Tests never download: ``DIFFVI_OFFLINE`` is forced to ``1``.
"""

import os
from pathlib import Path

import pytest
import torch
from linear_gaussian import LinearGaussian

_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

if not os.environ.get("DIFFVI_DATA") and _SHARED_DATA.is_dir():
    os.environ["DIFFVI_DATA"] = str(_SHARED_DATA)
os.environ["DIFFVI_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Test tensors are tiny: intra-op threads only add synchronisation, which costs up to
    100× on a machine whose cores are shared with other jobs. Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def linear_gaussian() -> LinearGaussian:
    return LinearGaussian()
