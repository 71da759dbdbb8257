"""Peak memory of a block of code, in bytes above the level where it started.

CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``). CPU (Linux): the
process's peak resident set size, reset on entry through ``/proc/self/clear_refs`` — it counts
every allocation of the process, so run one measured job at a time, and it does not see memory
the C allocator serves from pages it kept resident after an earlier ``free`` (measure in a fresh
process, as ``benchmarks/inverse_mnist.py`` does). Elsewhere: ``None``.
"""

import re
from pathlib import Path
from types import TracebackType

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.bytes`` (``None`` if unmeasurable)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.bytes: int | None = None
        self._start: int | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif self.device.type == "cpu":
            try:
                _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
                rss = _status_kib("VmRSS")
                self._start = None if rss is None else rss * 1024
            except OSError:
                self._start = None
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._start is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            hwm = _status_kib("VmHWM")
            if hwm is None:
                return
            peak = hwm * 1024
        self.bytes = max(0, peak - self._start)
