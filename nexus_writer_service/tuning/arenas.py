"""malloc settings of a writer process (glibc): one arena for all its native threads,
and fixed thresholds that keep freed blocks of a few MiB for the next ones.

glibc gives each new thread that allocates while another holds the main arena an
arena of its own, up to eight per core. A thread arena grows one page at a time, an
``mprotect`` call each, and gives freed pages back to the kernel at once: a writer's
reader thread, which takes in a scan's data page after page, then asks the kernel
for the same memory again and again (a system call and fresh page faults for every
4 KiB). The main arena grows by larger steps and keeps what is freed below its trim
threshold for the next pages: with many channels, a writer process then needs
markedly less CPU time for a scan, and varies less from one run to the next.

glibc also moves its thresholds as blocks come and go: a block above the mmap
threshold (128 KiB at first) is mapped on its own and, once freed, raises the
threshold to its size, and the top of the heap is given back to the kernel once more
than twice that is free there. A writer takes in and frees blocks of about a MiB all
the time (received payloads, chunks put together for the compressors), several at a
time, so the heap's top is given back and taken again, in fresh pages: 4 MCAs of
4096 channels at 1 kHz took 26,000 page faults in its threads over a 10 s scan, 2,000
with :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` fixed, and 0.1 CPU s less
(2.21 to 2.32 against 2.37 to 2.38 s, three runs each, interleaved). What the heap
keeps beyond the trim threshold is given back, and :func:`.memory.release_memory`
gives back the rest after a scan of many channels.

Settings of the whole process, so only the writer's own entry points (the
``NexusSessionWriter`` command and the Tango device server) make them, never an
import. ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` in the environment, when set, have the last word.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

__all__ = ["use_one_malloc_arena", "use_malloc_thresholds", "MMAP_THRESHOLD",
           "TRIM_THRESHOLD"]

#: ``mallopt`` parameter numbers (glibc's ``M_ARENA_MAX``, ``M_MMAP_THRESHOLD``,
#: ``M_TRIM_THRESHOLD``).
M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -8, -3, -1
#: Blocks under this many bytes come from the heap (glibc's own upper bound for its
#: moving threshold on 64-bit systems).
MMAP_THRESHOLD = 32 << 20
#: Bytes free at the heap's top that it keeps rather than gives back.
TRIM_THRESHOLD = 64 << 20


def _mallopt() -> object:
    """glibc's ``mallopt`` (None: another C library, which may lack or ignore it)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def use_one_malloc_arena() -> bool:
    """Have threads started from now on share the main malloc arena; whether done
    (not on a C library other than glibc, nor when ``MALLOC_ARENA_MAX`` is set)."""
    mallopt: Any = _mallopt()
    if os.environ.get("MALLOC_ARENA_MAX") or mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, 1))


def use_malloc_thresholds(mmap: int = MMAP_THRESHOLD, trim: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds (see the module); whether done (not on a
    C library other than glibc, nor when either is set in the environment)."""
    mallopt: Any = _mallopt()
    if (os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_")
            or mallopt is None):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap)) and bool(mallopt(M_TRIM_THRESHOLD, trim))
