"""Secure file creation and locking: the one way a file is opened for writing.

A new file has exactly its final permissions from the moment it appears, is never
created through a symbolic link, and never truncates or replaces a file that
appeared meanwhile; an existing file is opened with HDF5 file locking, retried while
another process holds a lock, and refused when the file really opened lies outside
the allowed roots (a link swapped after the path was checked). Errors are told apart
by :mod:`.failures`, never by their messages.

Thread-safe: no state; each call opens its own file, which then belongs to the
calling thread.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import secrets
import time
from typing import Optional, Sequence

import h5py

from ..errors import DiskSpaceError, FileLockedError, NexusWriterError, PathNotAllowedError
from ._lowlevel import file_descriptor, held_here
from .checks import check_opened_file_allowed, describe_holders, opened_file_path
from .failures import Failure, Operation, classify
from .parking import ParkedFiles

__all__ = ["CHUNK_CACHE_SLOTS", "Identity", "discard", "open_for_writing", "open_or_create"]

#: (st_dev, st_ino): which file a path named when this process created it.
Identity = tuple[int, int]
#: Hash table slots of each dataset's chunk cache. HDF5 2.0 gives 8191 by default:
#: 64 KiB allocated for every dataset opened, 32 MiB for a scan of 500 channels. A
#: stream keeps at most a chunk or two in its cache (whole chunks go to the file
#: directly), for which HDF5 1.x's default is plenty.
CHUNK_CACHE_SLOTS = 521
#: The HDF5 format versions (h5py ``libver``) of everything the writer puts in a file:
#: HDF5 1.10's, whose metadata all carries checksums (object headers, link storage,
#: chunk indexes). A process reading the file without locking while it is written may
#: meet metadata half written or freed; it then gets an error ("incorrect metadata
#: checksum"), where the older formats (symbol table groups, local heaps, version 1
#: B-trees) have no checksum, and HDF5 followed their stale addresses into a
#: segmentation fault. Files need HDF5 1.10 or newer to read.
WRITE_LIBVER = ("v110", "v110")
#: The format of a new, empty file: HDF5 1.8's superblock (version 2, with a checksum)
#: and root group (links in its object header). HDF5 1.10's superblock (version 3)
#: marks a file open for writing, and HDF5 then refuses every other opening of it,
#: even without locking: readers could not follow a scan.
CREATE_LIBVER = ("v108", "v110")
#: How this process may hold a file open that makes HDF5 refuse to open it again
#: with file locking, as another process's lock would: read-write, without locking.
_HELD_WITHOUT_LOCKING = (False, False)


def _no_space(what: str, path: str) -> DiskSpaceError:
    return DiskSpaceError(
        f"no space left on device (disk full or quota reached) to open {what} "
        f"{path}: free disk space, then start the writer again")


@functools.lru_cache(maxsize=1)
def _empty_file_image() -> bytes:
    """The bytes of a new, empty HDF5 file, as ``h5py.File(path, "w",
    libver=CREATE_LIBVER)`` writes them."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver=CREATE_LIBVER):
        pass
    return buffer.getvalue()


def _same_file(path: str, identity: Identity) -> bool:
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == identity


def discard(path: str, identity: Identity) -> None:
    """Remove ``path`` if it is still the file ``identity`` that this process created."""
    if _same_file(path, identity):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _new_file(path: str, file_mode: int, what: str, roots: Sequence[str],
              shown: str) -> Identity:
    """Create ``path`` (never through a symbolic link; FileExistsError if it exists) as
    an empty HDF5 file with permissions ``file_mode``; until it has them, only this
    user may open it. Returns its identity; on any error nothing is left behind.
    ``shown`` is the path errors name."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    info = os.fstat(fd)
    identity = (info.st_dev, info.st_ino)
    try:
        check_opened_file_allowed(fd, shown, roots, what, creating=True)
        try:
            os.fchmod(fd, file_mode)
        except OSError as exc:
            raise PathNotAllowedError(
                f"cannot give {what} {shown} the permissions {file_mode:#o} (file_mode): "
                f"{exc.strerror}; the file was not created: set file_mode to permissions "
                "this file system accepts, or write to another file system") from None
        view = memoryview(_empty_file_image())
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        opened = opened_file_path(fd) or path
        os.close(fd)
        discard(opened, identity)
        raise
    os.close(fd)
    return identity


def _create_file(path: str, file_mode: int, what: str, roots: Sequence[str]
                 ) -> Identity | None:
    """Create ``path`` as an empty HDF5 file that has exactly the permissions
    ``file_mode`` from the moment it appears; returns its identity, or None when
    ``path`` exists (it is left untouched).

    The file is made under a unique temporary name in the same directory, then
    hard-linked to ``path``, which fails if ``path`` appeared meanwhile: nothing is
    ever truncated or replaced. The temporary name is removed in every case. On a
    file system without hard links (vfat), ``path`` is created in place: only this
    user may open it until it has ``file_mode``.

    :raises PathNotAllowedError: the file system refuses ``file_mode``, or the
        directory now leads outside ``roots`` (nothing is left behind)
    :raises DiskSpaceError: no space left (nothing is left behind)
    """
    directory, name = os.path.split(path)
    # under NAME_MAX (255 bytes) whatever the length of ``name``
    temporary = os.path.join(directory, f".{name[:50]}.{secrets.token_hex(8)}.new")
    try:
        identity = _new_file(temporary, file_mode, what, roots, path)
        try:
            os.link(temporary, path, follow_symlinks=False)
        except FileExistsError:
            return None
        except OSError as exc:
            if classify(exc, Operation.LINK) is not Failure.NO_HARD_LINKS:
                raise
            try:
                return _new_file(path, file_mode, what, roots, path)
            except FileExistsError:
                return None
        return identity
    except NexusWriterError:
        raise
    except OSError as exc:
        if classify(exc, Operation.CREATE) is Failure.DISK_FULL:
            raise _no_space(what, path) from None
        raise NexusWriterError(
            f"cannot create {what} {path}: {exc.strerror or exc}; check the permissions "
            f"of {directory} or change the scan's filename") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _open_existing(path: str) -> h5py.File:
    """The one place a file is opened for writing: never creates, never truncates."""
    return h5py.File(path, "r+", locking=True, libver=WRITE_LIBVER,
                     rdcc_nslots=CHUNK_CACHE_SLOTS)


def _check_opened(file: h5py.File, path: str, what: str, roots: Sequence[str],
                  created: Identity | None) -> None:
    """Close ``file`` and refuse it when the file really opened lies outside ``roots``
    (a symbolic link changed since the path was checked); a file this call created
    there is removed."""
    if not roots:
        return
    fd = file_descriptor(file)
    try:
        check_opened_file_allowed(fd, path, roots, what)
    except PathNotAllowedError:
        opened = opened_file_path(fd)
        file.close()
        if created is not None and opened is not None:
            discard(opened, created)
        raise


def open_or_create(path: str, retry_time: float, what: str = "scan file",
                   file_mode: int = 0o664, roots: Sequence[str] = (),
                   parked: Optional[ParkedFiles] = None
                   ) -> tuple[h5py.File, Identity | None]:
    """Open the HDF5 file ``path`` for writing, creating it if needed, with HDF5 file
    locking; retry ``retry_time`` seconds while another process holds a lock.

    A new file has exactly the permissions ``file_mode`` from the moment it appears
    (see :func:`_create_file`); an existing file is never truncated and keeps its
    permissions. After the open, the file really opened must lie inside ``roots``
    (when given): a symbolic link swapped after the path was checked cannot lead
    the writer out. Returns the file and, when this call created it, its identity
    ``(st_dev, st_ino)`` (None otherwise).

    A file of the same path that ``parked`` holds (it could not be closed when the
    disk was full, see :class:`~.parking.ParkedFiles`) is closed first, now that
    there is space.

    :raises FileLockedError: still locked after the retries (names the holders)
    :raises DiskSpaceError: no space left to create the file (none is left behind), or
        to finish a file of this path that ``parked`` still holds since the disk
        filled up
    :raises PathNotAllowedError: the file opened lies outside ``roots`` (it was closed
        untouched), or the file system refuses ``file_mode`` (no file is left behind)
    :raises NexusWriterError: not an HDF5 file, or not writable (it was not modified)
    """
    if parked is not None:
        parked.release(path, what)
    deadline = time.monotonic() + retry_time
    created: Identity | None = None
    missing = 0
    while True:
        try:
            file = _open_existing(path)
        except FileNotFoundError:
            missing += 1
            if missing > 3:
                raise NexusWriterError(
                    f"cannot open {what} {path}: it is a symbolic link to a missing file, or "
                    "it is removed each time it is created; remove the link or change the "
                    "scan's filename") from None
            created = _create_file(path, file_mode, what, roots) or created
            continue
        except OSError as exc:
            failure = _open_failure(exc, path)
            locked = failure is Failure.LOCKED
            if locked and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            if failure is Failure.DISK_FULL:
                error: NexusWriterError = _no_space(what, path)
            elif locked:
                error = FileLockedError(
                    f"{what} {path} is locked by another process ({describe_holders(path)}); "
                    "readers must open scan files with locking=False while scans are "
                    "written (h5py.File(path, 'r', locking=False))")
            else:
                error = NexusWriterError(
                    f"cannot open {what} {path} for writing: {exc} (if the file exists, it is "
                    "not a valid HDF5 file or cannot be written; it was not modified)")
            if created is not None:
                discard(path, created)  # the empty file it made and could not open
            raise error from None
        _check_opened(file, path, what, roots, created)
        return file, created


def open_for_writing(path: str, retry_time: float, what: str = "scan file",
                     file_mode: int = 0o664, roots: Sequence[str] = (),
                     parked: Optional[ParkedFiles] = None) -> h5py.File:
    """:func:`open_or_create` without the identity: the file, open for writing."""
    return open_or_create(path, retry_time, what, file_mode, roots, parked)[0]


def _open_failure(exc: OSError, path: str) -> Failure:
    """Why HDF5 could not open ``path`` for writing. Without an errno, the file may be
    held open by this process without locking (HDF5 then refuses other locking
    flags): a lock that its holder releases, like another process's."""
    failure = classify(exc, Operation.OPEN)
    if failure is Failure.OTHER and exc.errno is None and (
            held_here(path) == _HELD_WITHOUT_LOCKING):
        return Failure.LOCKED
    return failure
