"""glibc allocator settings for CPU runs: keep large activations out of per-call mmap.

glibc serves every allocation above its mmap threshold (at most 32 MiB by default) with a
fresh ``mmap`` and returns it with ``munmap`` on free, so each forward pass of a wide table
page-faults its large activations in anew (zero-filled pages, one fault per 4 KiB). On a
2-core CPU ``F.linear`` on FT-Mamba's in_proj shape (54272, 64) @ (64, 256) ran at 87 GFLOP/s
into a fresh output against 298 into a reused one. Raising the mmap threshold and the trim
threshold keeps freed blocks in the heap for the next call to reuse; the cost is that the
process's resident memory stays at its peak instead of shrinking between calls.

It tunes the whole process, so it belongs to the process's set-up, not to a library call:
:func:`amfmedit.train.runtime.setup_runtime` (what every stage runs first) calls
:func:`tune_cpu_allocator` for a CPU run, which applies it once per process
(``AMFMEDIT_MALLOPT=0`` disables it); it does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30  # allocations up to 1 GiB come from the heap and are reused

_DONE: bool | None = None
_LOCK = threading.Lock()


def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once; True when the settings are in force."""
    global _DONE
    if _DONE is not None:
        return _DONE
    with _LOCK:
        if _DONE is not None:
            return _DONE
        _DONE = False
        if os.environ.get("AMFMEDIT_MALLOPT", "1").strip().lower() in ("0", "false", "no", "off"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _DONE = bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * THRESHOLD_BYTES))
        return _DONE
