"""Peak memory of one benchmark run, on CUDA or on the CPU.

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensors only; the caching
allocator's reserve is not counted), so the total includes the model's weights.

CPU: torch keeps no allocator statistics there, so the process's resident set is read instead. Linux
lets a process reset its own high-water mark (writing ``5`` to ``/proc/self/clear_refs``), so the peak
of each run is ``VmHWM`` after the run, and its extra memory is that minus ``VmRSS`` before it (the
loaded model and libraries; freed heap pages are first handed back with ``malloc_trim``). Without that
file (macOS, some sandboxes) the lifetime peak ``ru_maxrss`` is used, which is only right in a fresh
process per case; the benchmark runs each CPU case in its own process for that reason (and for a clean
allocator).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
MB = 1024.0 * 1024.0


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_rss_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _lifetime_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, kB on Linux


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them), so the resident set counts live data."""
    gc.collect()
    # not glibc: the baseline then includes whatever the allocator keeps
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """``start()`` before a run, ``stop()`` after it: (peak total MB, peak above the start MB)."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.method = ""
        self._baseline = 0.0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device) / MB
            self.method = "cuda max_memory_allocated"
            return
        _release_freed_memory()
        rss = _status_kb("VmRSS")
        self._baseline = rss / 1024.0 if rss is not None else _lifetime_peak_mb()
        self.method = "VmHWM after clear_refs" if _reset_rss_peak() else "ru_maxrss (lifetime)"

    def stop(self) -> tuple[float, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / MB
        else:
            hwm = _status_kb("VmHWM") if self.method.startswith("VmHWM") else None
            peak = hwm / 1024.0 if hwm is not None else _lifetime_peak_mb()
        return peak, max(0.0, peak - self._baseline)
