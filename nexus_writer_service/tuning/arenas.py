"""One malloc arena for all the native threads of a writer process (glibc).

glibc gives each new thread that allocates while another holds the main arena an
arena of its own, up to eight per core. A thread arena grows one page at a time, an
``mprotect`` call each, and gives freed pages back to the kernel at once: a writer's
reader thread, which takes in a scan's data page after page, then asks the kernel
for the same memory again and again (a system call and fresh page faults for every
4 KiB). The main arena grows by larger steps and keeps what is freed below its trim
threshold for the next pages: with many channels, a writer process then needs
markedly less CPU time for a scan, and varies less from one run to the next.

A setting of the whole process, so only the writer's own entry points (the
``NexusSessionWriter`` command and the Tango device server) make it, never an import.
``MALLOC_ARENA_MAX`` in the environment, when set, has the last word.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["use_one_malloc_arena"]

#: ``mallopt`` parameter number of the most arenas (glibc's ``M_ARENA_MAX``).
M_ARENA_MAX = -8


def use_one_malloc_arena() -> bool:
    """Have threads started from now on share the main malloc arena; whether done
    (not on a C library other than glibc, nor when ``MALLOC_ARENA_MAX`` is set)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: others may lack or ignore M_ARENA_MAX
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, 1))
