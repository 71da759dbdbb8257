import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tensors are tiny: intra-op threads only add synchronisation, which costs up to
    100× on a machine whose cores are shared with other jobs. Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
