"""Process-level settings that make CPU training faster."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_cpu_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let glibc keep freed blocks of up to ``mmap_threshold`` bytes for reuse.

    A fused scan allocates a few large [batch, time, neurons] tensors per call. With glibc's
    defaults, freed blocks of a few MB go back to the OS and every new allocation page-faults
    again, which on this project's CPU benchmarks cost as much as the kernels themselves. This
    raises the mmap and trim thresholds for the whole process (memory stays reserved for reuse
    instead of being returned). Returns False where it does not apply (not Linux/glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
    )
