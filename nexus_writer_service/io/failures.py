"""What went wrong with a file: one table from errno and exception types to a failure.

Every decision the writer takes on an error of the file system or of HDF5 (retry a
locked file, park a file met by a full disk, create a file in place where hard links
are not supported) is taken here, by errno and exception type, never by the text of
a message. Pure: no h5py, no I/O.

What h5py leaves in an exception: it reads HDF5's error stack once, picks the Python
class from the minor code at the top of the stack (``OSError``, ``KeyError``,
``ValueError``, ``TypeError``, ``RuntimeError`` for the codes it does not map), and
when the HDF5 error came from a system call (the sec2 driver, file locking) it
raises ``OSError(errno, message)``, so the builtin subclass follows the errno
(``BlockingIOError`` for ``EAGAIN``, ``FileNotFoundError`` for ``ENOENT``). The
stack itself is gone by then (h5py has no API to read it). Hence:

* a full disk or quota met while writing data or creating objects is an
  ``OSError`` with ``errno`` ``ENOSPC`` or ``EDQUOT``;
* a lock held by another process is an ``OSError`` with ``errno`` ``EAGAIN``
  (HDF5 locks with ``flock``); ``ENOLCK`` (a file system without locks) is
  treated the same way, as before;
* a flush that fails after an earlier write failure is a ``RuntimeError`` whose
  errno only HDF5's message holds (the top of the stack is the cache's "can't
  flush", which h5py does not map to ``OSError``): :data:`Failure.UNWRITTEN`. The
  caller tells a full disk apart by asking the file system for the free space;
  a quota reached behind such a ``RuntimeError`` cannot be told apart from any
  other failed write (``statvfs`` does not see quotas);
* opening a file that this process already holds open with other flags
  ("already open for read-only", "file locking flag values don't match") and
  opening a file that is not HDF5 are all ``OSError`` without errno: they are
  told apart by looking at the files this process holds open, not by the message.
"""

from __future__ import annotations

import enum
import errno
from types import MappingProxyType
from typing import Mapping, Optional

from ..errors import DiskSpaceError

__all__ = ["Failure", "Operation", "ERRNO_TABLE", "classify"]


class Operation(enum.Enum):
    """What was being done to the file when the error came."""

    #: HDF5 opens an existing file for writing (with file locking).
    OPEN = "open"
    #: ``os.open`` creates a new file, ``os.write`` fills it.
    CREATE = "create"
    #: ``os.link`` gives a new file its final name.
    LINK = "link"
    #: HDF5 writes or flushes an open file (data, objects, attributes, metadata).
    WRITE = "write"


class Failure(enum.Enum):
    """What the writer does about an error."""

    #: No space left on the device, or the quota is reached: say so; a file HDF5
    #: could not flush is kept open until there is space again.
    DISK_FULL = "disk full"
    #: Another process holds a lock on the file: retry, then say who holds it.
    LOCKED = "locked"
    #: The file system has no hard links: create the file in place.
    NO_HARD_LINKS = "no hard links"
    #: HDF5 failed to write and the exception does not say why (see the module's
    #: docstring): the caller asks the file system.
    UNWRITTEN = "unwritten"
    #: Anything else: reported as it is.
    OTHER = "other"


_ANY: Optional[Operation] = None
#: ``(operation, errno) -> failure``; an operation of None holds for every operation.
ERRNO_TABLE: Mapping[tuple[Optional[Operation], int], Failure] = MappingProxyType({
    (_ANY, errno.ENOSPC): Failure.DISK_FULL,
    (_ANY, errno.EDQUOT): Failure.DISK_FULL,
    (Operation.OPEN, errno.EAGAIN): Failure.LOCKED,  # == EWOULDBLOCK on Linux
    (Operation.OPEN, errno.EWOULDBLOCK): Failure.LOCKED,
    (Operation.OPEN, errno.ENOLCK): Failure.LOCKED,
    (Operation.LINK, errno.EPERM): Failure.NO_HARD_LINKS,  # vfat, some network ones
    (Operation.LINK, errno.EOPNOTSUPP): Failure.NO_HARD_LINKS,
    (Operation.LINK, errno.EXDEV): Failure.NO_HARD_LINKS,
})


def classify(exc: BaseException, operation: Operation) -> Failure:
    """The failure ``exc``, raised during ``operation``, stands for."""
    if isinstance(exc, DiskSpaceError):
        return Failure.DISK_FULL
    if isinstance(exc, OSError) and exc.errno is not None:
        found = ERRNO_TABLE.get((operation, exc.errno))
        if found is None:
            found = ERRNO_TABLE.get((_ANY, exc.errno), Failure.OTHER)
        return found
    if operation is Operation.WRITE and type(exc) is RuntimeError:
        return Failure.UNWRITTEN
    return Failure.OTHER
