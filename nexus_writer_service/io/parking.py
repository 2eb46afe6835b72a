"""Disk-full handling: files HDF5 could not flush for lack of space, kept open.

A file HDF5 failed to flush must not be closed: HDF5 then fails to close it, and any
later call on it (closing it again, or opening the same file) crashes the process.
Such a file is *parked*: held open (and locked) by its :class:`ParkedFiles` until a
flush succeeds, once the disk has space again; whoever opens a file first asks the
same :class:`ParkedFiles` to release that path.

Ownership: the session writer owns one :class:`ParkedFiles` and passes it to its scan
writers, their scan files and the master-file updates; a writer started again in the
same process gets the same one from its owner (the Tango server shares one among
its devices), so it can complete and close what the previous one parked. Thread-safe:
the worker thread parks, any thread may release.
"""

from __future__ import annotations

import threading
from typing import Optional

import h5py

from ..errors import DiskSpaceError
from .checks import MIB, free_disk_space
from .failures import Failure, Operation, classify

__all__ = ["MIN_FREE_DISK_SPACE", "ParkedFiles", "met_disk_full"]

#: MiB kept free on the disk whatever ``required_disk_space`` says: what HDF5 needs to
#: write the status and close the file once the scan stops for lack of space.
MIN_FREE_DISK_SPACE = 1.0


def met_disk_full(exc: BaseException, path: str) -> bool:
    """Whether HDF5 failed to write ``path`` for lack of space.

    Classified by :func:`~.failures.classify`; a failed write whose exception does
    not say why (a ``RuntimeError`` from a flush, see :mod:`.failures`) counts as a
    full disk when the file's disk has less than :data:`MIN_FREE_DISK_SPACE` free.
    """
    failure = classify(exc, Operation.WRITE)
    if failure is Failure.UNWRITTEN:
        try:
            return free_disk_space(path) < MIN_FREE_DISK_SPACE * MIB
        except OSError:
            return False
    return failure is Failure.DISK_FULL


class ParkedFiles:
    """The files one owner could not close when the disk was full, by path."""

    def __init__(self) -> None:
        self._files: dict[str, h5py.File] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return path in self._files

    def park(self, path: str, file: h5py.File) -> None:
        """Hold ``file`` open until :meth:`release` can flush it."""
        with self._lock:
            self._files[path] = file

    def close_or_park(self, file: h5py.File, path: str) -> bool:
        """Flush and close ``file``; True when closed. When the flush fails for lack of
        space, the file is parked instead and False is returned; :meth:`release`
        closes it once space is back. Other flush errors are raised after the file
        is closed."""
        try:
            file.flush()
        except Exception as exc:
            if not met_disk_full(exc, path):
                file.close()
                raise
            self.park(path, file)
            return False
        file.close()
        return True

    def release(self, path: Optional[str] = None, what: str = "scan file") -> None:
        """Close every parked file that can now be flushed (space was freed).

        :raises DiskSpaceError: ``path`` is parked and still cannot be flushed
        """
        with self._lock:
            for parked, file in list(self._files.items()):
                if not _flushed_with_space(parked, file):
                    if parked == path:
                        raise DiskSpaceError(
                            f"{what} {path} is still open in this process since the disk "
                            "filled up, and it still cannot be written: free disk space, "
                            "then start the writer again")
                    continue
                del self._files[parked]
                file.close()


def _flushed_with_space(path: str, file: h5py.File) -> bool:
    """Flush a parked file, only if its disk has MIN_FREE_DISK_SPACE free again: a flush
    on a full disk may report a success it did not have. The first flush after a
    failed one fails ("slist already enabled") and resets HDF5's state; the next
    writes what is pending."""
    if free_disk_space(path) < MIN_FREE_DISK_SPACE * MIB:
        return False
    for _ in range(2):
        try:
            file.flush()
            return True
        except Exception:  # closing a file that cannot be flushed would be fatal
            continue
    return False
