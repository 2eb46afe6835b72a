"""Memory a writer process gives back after a scan of many channels (glibc, HDF5).

A scan at the channel limit (10,000 channels) takes a writer process from about
70 MiB to more than 400 MiB, and two things keep that memory once the scan is
written:

* HDF5 keeps the blocks it frees on free lists of its own, for its next objects.
  :func:`limit_hdf5_free_lists` bounds them (a setting of the whole process, made
  by its entry points), and :func:`release_memory` empties them;
* glibc gives freed memory back to the kernel only from the top of its heap; the
  free pages in between stay in the process: :func:`release_memory` hands them back
  (``malloc_trim``).

The scan writer calls :func:`release_memory` when the file of a scan of many
channels is closed (a few tens of milliseconds for a heap of 400 MiB). Measured by
``python -m tests.benchmarks.bench_hostile``: after three scans of 10,000 channels,
a writer process that had grown by 463 MiB grew by 57 MiB with both. The HDF5 calls
are made through h5py's low-level module (:mod:`nexus_writer_service.io._lowlevel`);
both do nothing on a C library other than glibc, or when the HDF5 library cannot
be found.
"""

from __future__ import annotations

import ctypes

from ..io._lowlevel import collect_hdf5_garbage
from ..io._lowlevel import limit_hdf5_free_lists as _limit_free_lists

__all__ = ["limit_hdf5_free_lists", "release_memory", "HDF5_FREE_LIST_LIMITS"]

#: Bytes HDF5 may keep on its free lists of regular blocks, arrays and blocks: all
#: lists of a kind together, then one list (``H5set_free_list_limits``).
HDF5_FREE_LIST_LIMITS = (4 << 20, 1 << 20, 4 << 20, 1 << 20, 4 << 20, 1 << 20)


def limit_hdf5_free_lists() -> bool:
    """Bound HDF5's free lists to :data:`HDF5_FREE_LIST_LIMITS`; whether done. Made
    by the process's entry point, before any scan is written."""
    return _limit_free_lists(HDF5_FREE_LIST_LIMITS)


def release_memory() -> bool:
    """HDF5's free lists emptied, then the free pages of the malloc heap given back
    to the kernel; whether the latter was done (glibc only). Safe from any thread."""
    collect_hdf5_garbage()
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    trim(0)
    return True
