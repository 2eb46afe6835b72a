"""Materialise a planned layout with h5py and write a scan's points into it.

Ownership: a :class:`NexusFile` belongs to the thread that opened it (the writers'
worker thread); nothing here is thread-safe and nothing here talks to Redis.

Writing is idempotent by point index: a block of points ``[first, first + n)``
always lands at rows ``[first, first + n)``, so a writer that replays a scan from
its beginning after a restart completes the file without doubling anything.
Points are buffered per channel and written in chunk-aligned pieces; whatever is
buffered is written by :meth:`NexusFile.flush`, which the writer calls at least
every ``flush_period`` seconds, so readers see data while the scan runs.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import errno
import functools
import io
import json
import math
import os
import secrets
import threading
import time
from typing import Any, Callable, Sequence, TypeVar

import h5py
import numpy as np

from .. import __version__
from ..errors import (
    DiskSpaceError,
    EntryExistsError,
    FileLockedError,
    NexusWriterError,
    PathNotAllowedError,
)
from .checks import (
    MIB,
    check_opened_file_allowed,
    describe_holders,
    free_disk_space,
    opened_file_path,
)
from .layout import (
    FieldPlan,
    GridPlan,
    GroupPlan,
    ImagesPlan,
    LinkPlan,
    ScanLayout,
    StackPlan,
    StreamPlan,
)
from .lima_files import LimaFrameFiles, NotLinkableError, frame_runs, unplot_references
from .objects import create_group, create_stream_dataset, open_uncached, soft_link
from .objects import set_attrs as _set_attrs
from .options import SaveOptions

__all__ = ["NexusFile", "ImageSource", "now_iso", "open_for_writing", "open_or_create"]

Array = np.ndarray[Any, Any]
_STR = h5py.string_dtype()
#: (filename, path in file, index in file) of every saved frame, given its number.
ImageSource = Callable[[int], tuple[str, str | None, int]]
#: MiB kept free on the disk whatever ``required_disk_space`` says: what HDF5 needs to
#: write the status and close the file once the scan stops for lack of space.
MIN_FREE_DISK_SPACE = 1.0
_Method = TypeVar("_Method", bound=Callable[..., Any])
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
#: What link() says on a file system that has no hard links (vfat, some network ones).
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV)
#: (st_dev, st_ino): which file a path named when this process created it.
_Identity = tuple[int, int]
#: Seconds and bytes that bound how long the free disk space is estimated, not asked.
DISK_RECHECK_PERIOD = 0.5
DISK_RECHECK_MARGIN = 64 * MIB
#: Hash table slots of each dataset's chunk cache. HDF5 2.0 gives 8191 by default:
#: 64 KiB allocated for every dataset opened, 32 MiB for a scan of 500 channels. A
#: stream keeps at most a chunk or two in its cache (whole chunks go to the file
#: directly), for which HDF5 1.x's default is plenty.
CHUNK_CACHE_SLOTS = 521
#: Most bytes of variable-length points padded in memory at once (one longer point
#: is padded on its own).
RAGGED_SLICE_BYTES = 64 * MIB


def _disk_full_errors(method: _Method) -> _Method:
    """Translate a full disk met by HDF5 (ENOSPC, EDQUOT) into a DiskSpaceError that
    says what to do."""
    @functools.wraps(method)
    def guarded(self: "NexusFile", *args: Any, **kwargs: Any) -> Any:
        full = DiskSpaceError(
            f"no space left on device (disk full or quota reached) while writing "
            f"{self.path}: free disk space, then start the writer again to complete "
            "the file from Redis")
        if self._disk_full:
            # once HDF5 failed to write for lack of space, another flush may report a
            # success it did not have and leave a corrupt file: see close()
            raise full
        try:
            return method(self, *args, **kwargs)
        except NexusWriterError:
            raise
        except (OSError, RuntimeError) as exc:  # a failed flush is a RuntimeError
            if not _met_disk_full(exc):
                raise
            self._disk_full = True
            raise full from None
    return guarded  # type: ignore[return-value]


def now_iso() -> str:
    """The local time with its UTC offset, as NeXus wants it."""
    return datetime.datetime.now().astimezone().isoformat()


def _field_data(value: Any) -> Any:
    if isinstance(value, str):
        return np.array(value, dtype=_STR)
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, (list, tuple)):
        try:
            array = np.asarray(value)
        except ValueError:
            return np.array(json.dumps(value), dtype=_STR)
        if array.dtype.kind in "OU":
            return np.array(json.dumps(value), dtype=_STR)
        return array
    return value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text_attr(obj: h5py.HLObject, name: str) -> str | None:
    value = obj.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value


def _compression(options: SaveOptions) -> dict[str, Any]:
    if options.compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if options.compression == "bitshuffle-lz4":
        import hdf5plugin

        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    return {}


def _no_space(what: str, path: str) -> DiskSpaceError:
    return DiskSpaceError(
        f"no space left on device (disk full or quota reached) to open {what} "
        f"{path}: free disk space, then start the writer again")


@functools.lru_cache(maxsize=1)
def _empty_file_image() -> bytes:
    """The bytes of a new, empty HDF5 file, as ``h5py.File(path, "w")`` writes them."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w"):
        pass
    return buffer.getvalue()


def _same_file(path: str, identity: _Identity) -> bool:
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == identity


def _discard(path: str, identity: _Identity) -> None:
    """Remove ``path`` if it is still the file ``identity`` that this process created."""
    if _same_file(path, identity):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _new_file(path: str, file_mode: int, what: str, roots: Sequence[str],
              shown: str) -> _Identity:
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
        _discard(opened, identity)
        raise
    os.close(fd)
    return identity


def _create_file(path: str, file_mode: int, what: str, roots: Sequence[str]
                 ) -> _Identity | None:
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
            if exc.errno not in _NO_HARD_LINKS:
                raise
            try:
                return _new_file(path, file_mode, what, roots, path)
            except FileExistsError:
                return None
        return identity
    except NexusWriterError:
        raise
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise _no_space(what, path) from None
        raise NexusWriterError(
            f"cannot create {what} {path}: {exc.strerror or exc}; check the permissions "
            f"of {directory} or change the scan's filename") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _open_existing(path: str) -> h5py.File:
    """The one place a file is opened for writing: never creates, never truncates."""
    return h5py.File(path, "r+", locking=True, rdcc_nslots=CHUNK_CACHE_SLOTS)


def _check_opened(file: h5py.File, path: str, what: str, roots: Sequence[str],
                  created: _Identity | None) -> None:
    """Close ``file`` and refuse it when the file really opened lies outside ``roots``
    (a symbolic link changed since the path was checked); a file this call created
    there is removed."""
    if not roots:
        return
    fd = file.id.get_vfd_handle()
    try:
        check_opened_file_allowed(fd, path, roots, what)
    except PathNotAllowedError:
        opened = opened_file_path(fd)
        file.close()
        if created is not None and opened is not None:
            _discard(opened, created)
        raise


def open_or_create(path: str, retry_time: float, what: str = "scan file",
                   file_mode: int = 0o664, roots: Sequence[str] = ()
                   ) -> tuple[h5py.File, _Identity | None]:
    """Open the HDF5 file ``path`` for writing, creating it if needed, with HDF5 file
    locking; retry ``retry_time`` seconds while another process holds a lock.

    A new file has exactly the permissions ``file_mode`` from the moment it appears
    (see :func:`_create_file`); an existing file is never truncated and keeps its
    permissions. After the open, the file really opened must lie inside ``roots``
    (when given): a symbolic link swapped after the path was checked cannot lead
    the writer out. Returns the file and, when this call created it, its identity
    ``(st_dev, st_ino)`` (None otherwise).

    A file of the same path that this process could not close when the disk was
    full (see :func:`close_or_park`) is closed first, now that there is space.

    :raises FileLockedError: still locked after the retries (names the holders)
    :raises DiskSpaceError: no space left to create the file (none is left behind), or
        to finish a file of this path that this process still holds since the disk
        filled up
    :raises PathNotAllowedError: the file opened lies outside ``roots`` (it was closed
        untouched), or the file system refuses ``file_mode`` (no file is left behind)
    :raises NexusWriterError: not an HDF5 file, or not writable (it was not modified)
    """
    release_parked(path, what)
    deadline = time.monotonic() + retry_time
    created: _Identity | None = None
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
            locked = "lock" in str(exc).lower() and exc.errno not in _DISK_FULL
            if locked and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            if exc.errno in _DISK_FULL:
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
                _discard(path, created)  # the empty file it made and could not open
            raise error from None
        _check_opened(file, path, what, roots, created)
        return file, created


def open_for_writing(path: str, retry_time: float, what: str = "scan file",
                     file_mode: int = 0o664, roots: Sequence[str] = ()) -> h5py.File:
    """:func:`open_or_create` without the identity: the file, open for writing."""
    return open_or_create(path, retry_time, what, file_mode, roots)[0]


def _met_disk_full(exc: BaseException) -> bool:
    """Whether HDF5 failed for lack of space (flush failures come as RuntimeError with
    the errno in the message)."""
    if isinstance(exc, DiskSpaceError):
        return True
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return True
    message = str(exc)
    return any(f"errno = {code}," in message for code in _DISK_FULL)


#: Files HDF5 could not flush for lack of space, by path, held open (and locked) by
#: this process until a flush succeeds. They must not be closed before: HDF5 then
#: fails to close them, and any later call on such a file (closing it again, or
#: opening the same file) crashes the process. Guarded by _PARKED_LOCK (any thread).
_PARKED: dict[str, h5py.File] = {}
_PARKED_LOCK = threading.Lock()


def close_or_park(file: h5py.File, path: str) -> bool:
    """Flush and close ``file``; True when closed. When the flush fails for lack of
    space, the file is parked instead (kept open, see :data:`_PARKED`) and False is
    returned; :func:`release_parked` closes it once space is back. Other flush
    errors are raised after the file is closed."""
    try:
        file.flush()
    except Exception as exc:
        if not _met_disk_full(exc):
            file.close()
            raise
        _park(path, file)
        return False
    file.close()
    return True


def _park(path: str, file: h5py.File) -> None:
    with _PARKED_LOCK:
        _PARKED[path] = file


def release_parked(path: str | None = None, what: str = "scan file") -> None:
    """Close every parked file that can now be flushed (space was freed).

    :raises DiskSpaceError: ``path`` is parked and still cannot be flushed
    """
    with _PARKED_LOCK:
        for parked, file in list(_PARKED.items()):
            if not _flushed_with_space(parked, file):
                if parked == path:
                    raise DiskSpaceError(
                        f"{what} {path} is still open in this process since the disk filled "
                        "up, and it still cannot be written: free disk space, then start "
                        "the writer again")
                continue
            del _PARKED[parked]
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


def ragged_slices(lengths: Sequence[int], itemsize: int, limit: int
                  ) -> list[tuple[int, int]]:
    """Consecutive row ranges ``[start, stop)`` covering ``lengths`` such that each
    range padded to its longest point takes at most ``limit`` bytes; a point larger
    than ``limit`` gets a range of its own."""
    slices = []
    start, longest = 0, 0
    for i, length in enumerate(lengths):
        wider = max(longest, length)
        if i > start and (i + 1 - start) * wider * itemsize > limit:
            slices.append((start, i))
            start, wider = i, length
        longest = wider
    if start < len(lengths):
        slices.append((start, len(lengths)))
    return slices


def _stored_as_given(dataset: h5py.Dataset) -> bool:
    """Whether a whole chunk of ``dataset`` is stored as the bytes of its rows: chunked,
    no filter (compression), chunks spanning whole points, fixed-size numbers. Such
    chunks can be written straight to the file (HDF5's direct chunk write), without
    passing through the chunk cache."""
    dcpl = dataset.id.get_create_plist()
    return (dcpl.get_layout() == h5py.h5d.CHUNKED and dcpl.get_nfilters() == 0
            and dataset.chunks is not None and dataset.chunks[1:] == dataset.shape[1:]
            and dataset.dtype.kind in "biufc")


class _Scratch:
    """One reusable buffer, in which the pieces of a chunk are put together before it
    is written: the same memory each time, rather than a new array per chunk."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def rows(self, n: int, like: Array) -> Array:
        """An uninitialised array of ``n`` points shaped and typed like ``like``'s."""
        size = n * math.prod(like.shape[1:])
        if len(self.buffer) < size * like.itemsize:
            self.buffer = bytearray(size * like.itemsize)
        return np.frombuffer(self.buffer, dtype=like.dtype, count=size
                             ).reshape((n,) + like.shape[1:])


class _Stream:
    """The buffer of one channel's dataset; writes whole chunks, the rest on flush.

    A whole chunk held in one received block is written from that block; one spread
    over several blocks is put together in the file's scratch buffer. Whole chunks of
    a dataset stored as given (see :func:`_stored_as_given`) go straight to the file.
    """

    def __init__(self, dataset: h5py.Dataset, plan: StreamPlan,
                 lengths: h5py.Dataset | None, scratch: _Scratch,
                 known: tuple[int, np.dtype[Any], bool] | None = None) -> None:
        """``known``: the dataset's length, dtype and whether it is stored as given,
        when the caller knows them (asking HDF5 costs more than the rest)."""
        self.dataset = dataset
        self.plan = plan
        self.lengths = lengths
        self.rows = plan.chunk_rows
        self.pending: collections.deque[Array] = collections.deque()
        self.scratch = scratch
        self.start = 0
        self.count = 0
        if known is None:
            known = (int(dataset.shape[0]), dataset.dtype,
                     lengths is None and _stored_as_given(dataset))
            self.tail = tuple(dataset.shape[1:])
        else:
            self.tail = tuple(plan.point_shape)
        self.written, self.dtype, self.direct = known

    def add(self, first: int, data: Any) -> None:
        if self.lengths is not None:
            self._write_ragged(first, data)
            return
        if self.count and first != self.start + self.count:
            self.flush()
        if not self.count:
            self.start = first
        self.pending.append(data)
        self.count += len(data)
        end = self.start + self.count
        boundary = (end // self.rows) * self.rows
        if boundary > self.start and self.count >= self.rows:
            self._write_until(boundary)

    def _write_until(self, stop: int) -> None:
        """Write the held points up to ``stop``, one chunk (or part of one) per write."""
        while self.start < stop:
            end = min(stop, (self.start // self.rows + 1) * self.rows)
            self._write(self.start, self._take(end - self.start))
            self.start = end

    def _take(self, n: int) -> Array:
        """The first ``n`` held points, no longer held: a view of the first block when
        it has them all, else copied into the scratch buffer (valid until its next use)."""
        pending = self.pending
        self.count -= n
        head = pending[0]
        if len(head) >= n:
            if len(head) == n:
                pending.popleft()
            else:
                pending[0] = head[n:]
            return head[:n]
        block = self.scratch.rows(n, head)
        filled = 0
        while filled < n:
            head = pending[0]
            k = min(len(head), n - filled)
            block[filled:filled + k] = head[:k]
            filled += k
            if k == len(head):
                pending.popleft()
            else:
                pending[0] = head[k:]
        return block

    def _write(self, first: int, block: Array) -> None:
        stop = first + len(block)
        if self.lengths is not None:  # padded points, as wide as the widest so far
            if stop > self.written:  # the dataset's length (h5py's shape is slow to ask)
                self.dataset.resize(stop, axis=0)
            # the columns past the block's width are the fill value
            if block.shape[1]:
                self.dataset[first:stop, :block.shape[1]] = block
            self.written = max(self.written, stop)
            return
        dsid = self.dataset.id
        fresh = first >= self.written  # nothing in the file at or after first
        if stop > self.written:
            dsid.set_extent((stop,) + self.tail)
            self.written = stop
        if block.dtype != self.dtype or not block.flags.c_contiguous:
            self.dataset[first:stop] = block  # h5py converts
        elif self.direct and not first % self.rows and (len(block) == self.rows or fresh):
            # a whole chunk, stored as it is: straight to the file. The first part of
            # a new chunk (a flush) too, padded: HDF5 would write it whole anyway,
            # padded with the fill value, after more work; the padding lies past the
            # dataset's end, where no reader sees it, until the next points replace it
            if len(block) < self.rows:
                block = self._padded(block)
            dsid.write_direct_chunk((first,) + (0,) * len(self.tail), block)
        else:  # what dataset[first:stop] = block does, without its checks
            space = dsid.get_space()
            space.select_hyperslab((first,) + (0,) * len(self.tail), block.shape)
            dsid.write(h5py.h5s.create_simple(block.shape), space, block)

    def _padded(self, block: Array) -> Array:
        """``block`` (the first rows of a chunk) followed by zeros up to a whole
        chunk, in the scratch buffer (``block`` may already be there, at its start)."""
        chunk = self.scratch.rows(self.rows, block)
        n = len(block)
        if block.__array_interface__["data"][0] != chunk.__array_interface__["data"][0]:
            chunk[:n] = block  # (numpy copies overlapping memory safely)
        chunk[n:] = 0
        return chunk

    def _write_ragged(self, first: int, points: Sequence[Array]) -> None:
        """Pad points to a common width in slices of rows, each padded slice under
        RAGGED_SLICE_BYTES: one long point does not pad the whole block in memory.
        Cells past a slice's width keep the dataset's fill value (the padding)."""
        lengths = [len(p) for p in points]
        width = max(lengths + [self.dataset.shape[1]])
        if width > self.dataset.shape[1]:
            self.dataset.resize(width, axis=1)
        itemsize = self.dataset.dtype.itemsize
        for start, stop in ragged_slices(lengths, itemsize, RAGGED_SLICE_BYTES):
            block = np.full((stop - start, max(lengths[start:stop])), self.plan.fill,
                            dtype=self.dataset.dtype)
            for i in range(start, stop):
                block[i - start, :lengths[i]] = points[i]
            self._write(first + start, block)
            del block
        assert self.lengths is not None
        stop = first + len(points)
        if stop > self.lengths.shape[0]:
            self.lengths.resize(stop, axis=0)
        self.lengths[first:stop] = lengths

    def flush(self) -> None:
        if self.count:
            self._write_until(self.start + self.count)


class _Stack:
    """A dataset shared by several channels, one column each (``stack_mcas``).

    ``counts[i]`` is the number of points of column ``i`` in the file; it is saved in
    the dataset's ``detector_points`` attribute after the data, so a resumed writer
    knows what each column holds (the dataset's length is that of the longest one).
    """

    def __init__(self, dataset: h5py.Dataset, plan: StackPlan) -> None:
        self.dataset = dataset
        self.plan = plan
        self.rows = int(dataset.shape[0])
        self.counts = np.zeros(len(plan.channels), dtype=np.int64)
        saved = dataset.attrs.get("detector_points")
        if saved is not None and len(saved) == len(self.counts):
            self.counts[:] = saved

    def write(self, column: int, first: int, block: Array) -> None:
        stop = first + len(block)
        if stop > self.rows:
            self.dataset.resize(stop, axis=0)
            self.rows = stop
        self.dataset[first:stop, column] = block
        if stop > self.counts[column]:
            self.counts[column] = stop
            self.dataset.attrs["detector_points"] = self.counts


class _ColumnStream(_Stream):
    """The buffer of one channel written into its column of a :class:`_Stack`."""

    def __init__(self, stack: _Stack, column: int, scratch: _Scratch) -> None:
        self.stack = stack
        self.column = column
        self.dataset = stack.dataset
        self.lengths = None
        self.rows = stack.plan.chunk_rows
        self.pending = collections.deque()
        self.scratch = scratch
        self.start = 0
        self.count = 0
        self.written = int(stack.counts[column])
        self.dtype = stack.dataset.dtype
        self.direct = False
        self.tail = tuple(stack.plan.point_shape)

    def _write(self, first: int, block: Array) -> None:
        self.stack.write(self.column, first, block)
        self.written = max(self.written, first + len(block))


class NexusFile:
    """One scan file, open for writing from the moment it is created.

    ``NexusFile(path, options)`` opens (or creates) the file in append mode with
    HDF5 file locking, retrying ``options.lock_retry_time`` seconds while another
    process holds a lock. An existing file is never truncated, and nothing is
    written to it before the first :meth:`materialise` (so a file refused by
    :meth:`check_entries` is left as it was).

    :raises FileLockedError: still locked after the retries (names the holders)
    :raises NexusWriterError: the file exists and is not an HDF5 file, or cannot be opened
    """

    def __init__(self, path: str, options: SaveOptions) -> None:
        self.path = path
        self.options = options
        self._compression = _compression(options)
        self.file, self._identity = open_or_create(path, options.lock_retry_time, "scan file",
                                                   options.file_mode, options.allowed_roots)
        self.created = self._identity is not None
        self._parked = False
        self._disk_full = False  # HDF5 met a full disk: no more flushing, see close()
        self._streams: dict[str, _Stream] = {}
        self._scratch = _Scratch()
        self._images: dict[str, int] = {}
        self._root_ready = False
        # entries this object created, and the paths it created in them: asking h5py
        # whether each planned path exists costs more than creating it
        self._fresh_entries: set[str] = set()
        self._free: int | None = None
        self._free_at = 0.0
        self._created: set[str] = set()

    def _init_root(self) -> None:
        attrs = self.file.attrs
        if "NX_class" not in attrs:
            attrs["NX_class"] = "NXroot"
        attrs["creator"] = "nexus_writer_service"
        attrs["creator_version"] = __version__
        attrs["file_name"] = self.path
        attrs["file_time"] = now_iso()
        attrs["HDF5_Version"] = h5py.version.hdf5_version
        attrs["h5py_version"] = h5py.version.version

    # -- layout ------------------------------------------------------------------

    def check_entries(self, layout: ScanLayout, scan_key: str, scan_uid: str = "") -> list[str]:
        """The entries of ``layout`` already in the file (to resume); refuses foreign ones.

        An entry belongs to the scan when its ``scan_key`` is the scan's and, when both
        are known, so is its ``scan_uid``: after Redis lost its data, a new scan may get
        the key of an old one.

        :raises EntryExistsError: an entry of the same name belongs to another scan
        """
        existing = []
        for entry in layout.entries:
            group = self.file.get(entry.name)
            if group is None:
                continue
            owner = _text_attr(group, "scan_key")
            if owner != scan_key:
                raise EntryExistsError(
                    f"{self.path} already has an entry {entry.name!r} written for "
                    f"{owner or 'another program'}, not for scan {scan_key}; the file was "
                    "left untouched: give the scan another file name or number")
            uid = _text_attr(group, "scan_uid")
            if uid and scan_uid and uid != scan_uid:
                raise EntryExistsError(
                    f"{self.path} already has an entry {entry.name!r} written for an "
                    f"earlier scan with the same key {scan_key} (Redis lost its data and "
                    "restarted its scan counter); the file was left untouched: give the "
                    "scan another file name or number")
            existing.append(entry.name)
        return existing

    @_disk_full_errors
    def materialise(self, layout: ScanLayout) -> None:
        """Create every planned item that is not in the file yet, and bring the
        attributes of existing groups (plot signals and axes) up to date (idempotent)."""
        if not self._root_ready:
            self._init_root()
            self._root_ready = True
        for entry in layout.entries:
            fresh = entry.name in self._fresh_entries
            if not fresh and entry.name not in self.file:
                self._fresh_entries.add(entry.name)
                fresh = True
            for item in entry.items:
                if item.path in self._created if fresh else (
                        item.path in self.file or (isinstance(item, LinkPlan)
                                                   and self._has_link(item.path))):
                    if isinstance(item, StreamPlan) and item.channel not in self._streams:
                        self._open_stream(item)
                    elif isinstance(item, StackPlan) and any(
                            channel not in self._streams for channel in item.channels):
                        self._open_stack(item)
                    elif isinstance(item, GroupPlan) and item.attrs:
                        _set_attrs(self.file[item.path], item.attrs)
                    continue
                self._create(item)
                self._created.add(item.path)
            if entry.default:
                self.file[entry.name].attrs["default"] = entry.default
        if not self.file.attrs.get("default") and layout.root_attrs.get("default"):
            self.file.attrs["default"] = layout.root_attrs["default"]

    def _has_link(self, path: str) -> bool:
        parent, name = path.rsplit("/", 1)
        group = self.file.get(parent or "/")
        return isinstance(group, h5py.Group) and name in group

    def _create(self, item: Any) -> None:
        if isinstance(item, GroupPlan):
            create_group(self.file, item.path, {"NX_class": item.nx_class, **item.attrs})
        elif isinstance(item, FieldPlan):
            dataset = self.file.create_dataset(item.path, data=_field_data(item.value))
            _set_attrs(dataset, item.attrs)
        elif isinstance(item, StreamPlan):
            self._create_stream(item)
        elif isinstance(item, StackPlan):
            self._create_stack(item)
        elif isinstance(item, ImagesPlan):
            self._create_placeholder(item)
        elif isinstance(item, GridPlan):
            self._create_grid(item)
        elif isinstance(item, LinkPlan):
            soft_link(self.file, item.path, item.target)

    def _create_stream(self, plan: StreamPlan) -> None:
        dtype = np.dtype(plan.dtype)
        if plan.lengths_path is not None:
            dataset = create_stream_dataset(
                self.file, plan.path, (0, 0), (None, None), (plan.chunk_rows, 64), dtype,
                plan.fill, self._compression)
            create_stream_dataset(self.file, plan.lengths_path, (0,), (None,),
                                  (plan.chunk_rows,), np.int64)
        else:
            shape = tuple(plan.point_shape)
            # what a new dataset is, known without asking HDF5
            direct = not self._compression and dtype.kind in "biufc"
            dataset = create_stream_dataset(
                self.file, plan.path, (0,) + shape, (None,) + shape,
                (plan.chunk_rows,) + shape, dtype, None, self._compression, cached=not direct)
            self._streams[plan.channel] = _Stream(dataset, plan, None, self._scratch,
                                                  (0, dtype, direct))
        _set_attrs(dataset, plan.attrs, new=True)
        if plan.channel not in self._streams:
            self._open_stream(plan, dataset)

    def _open_stream(self, plan: StreamPlan, dataset: h5py.Dataset | None = None) -> None:
        lengths = self.file[plan.lengths_path] if plan.lengths_path else None
        if dataset is None:
            dataset = self.file[plan.path]
            if lengths is None and _stored_as_given(dataset):
                # closed first: an object opened twice shares the cache of its first opening
                del dataset
                dataset = open_uncached(self.file, plan.path)
        self._streams[plan.channel] = _Stream(dataset, plan, lengths, self._scratch)

    def _create_stack(self, plan: StackPlan) -> None:
        written = [c for c in plan.channels if c in self._streams]
        if written:
            raise NexusWriterError(
                f"{self.path}: the MCA channels {written} already have datasets of their own "
                f"and cannot move to the stacked {plan.path} (another detector of the "
                "controller was declared after their points came); write this scan without "
                "stack_mcas")
        shape = (len(plan.channels),) + tuple(plan.point_shape)
        dataset = self.file.create_dataset(
            plan.path, shape=(0,) + shape, maxshape=(None,) + shape,
            dtype=np.dtype(plan.dtype), chunks=(plan.chunk_rows, 1) + tuple(plan.point_shape),
            **self._compression)
        _set_attrs(dataset, plan.attrs)
        dataset.attrs["detector_points"] = np.zeros(len(plan.channels), dtype=np.int64)
        self._open_stack(plan, dataset)

    def _open_stack(self, plan: StackPlan, dataset: h5py.Dataset | None = None) -> None:
        """The columns of a stacked dataset; refuses one stacking other channels (a
        detector declared after the dataset was created)."""
        dataset = self.file[plan.path] if dataset is None else dataset
        saved = [_text(c) for c in dataset.attrs.get("channels", [])]
        if saved != list(plan.channels):
            raise NexusWriterError(
                f"{self.path}::{plan.path} stacks the MCA channels {saved}, but the scan now "
                f"declares {list(plan.channels)} (a detector was declared after the "
                "dataset was created); write this scan without stack_mcas")
        stack = _Stack(dataset, plan)
        for column, channel in enumerate(plan.channels):
            self._streams[channel] = _ColumnStream(stack, column, self._scratch)

    def _create_placeholder(self, plan: ImagesPlan) -> None:
        self._images_dataset(plan, plan.storage)
        self._images[plan.lima] = 0

    def _images_dataset(self, plan: ImagesPlan, storage: str) -> h5py.Dataset:
        """The empty dataset of a lima detector's frames for ``storage``: copies grow
        along the first axis; virtual and external datasets are rebuilt as frames come."""
        shape = tuple(plan.frame_shape)
        if storage == "copy":
            dataset = self.file.create_dataset(
                plan.path, shape=(0,) + shape, maxshape=(None,) + shape,
                dtype=np.dtype(plan.dtype), chunks=(1,) + shape, **self._compression)
        elif storage in ("virtual", "external"):
            dataset = self.file.create_dataset(plan.path, shape=(0,) + shape,
                                               dtype=np.dtype(plan.dtype))
        else:
            dataset = self.file.create_dataset(plan.path, shape=(0,), maxshape=(None,),
                                               dtype=_STR, chunks=(256,))
            dataset.attrs["format"] = "<file relative to this one>::<path>[<index>]"
        _set_attrs(dataset, plan.attrs)
        return dataset

    def _create_grid(self, plan: GridPlan) -> None:
        rows, columns = plan.shape
        layout = h5py.VirtualLayout(shape=(rows, columns), dtype=np.dtype(plan.dtype))
        source = h5py.VirtualSource(".", plan.source, shape=(rows * columns,))
        for row in range(rows):
            layout[row] = source[row * columns:(row + 1) * columns]
        fill = np.nan if np.dtype(plan.dtype).kind == "f" else 0
        dataset = self.file.create_virtual_dataset(plan.path, layout, fillvalue=fill)
        _set_attrs(dataset, plan.attrs)

    # -- data --------------------------------------------------------------------

    @_disk_full_errors
    def add_points(self, channel: str, first: int, data: Any) -> None:
        """Points ``[first, first + len(data))`` of ``channel`` (buffered).

        :raises DiskSpaceError: writing them would leave less than ``required_disk_space``
            (at least :data:`MIN_FREE_DISK_SPACE`) MiB free; nothing is written, so the
            file can still be closed cleanly
        """
        self._check_disk_space(channel, first, data)
        self._streams[channel].add(first, data)

    def _check_disk_space(self, channel: str, first: int, data: Any) -> None:
        """Only points past the rows already in the file need space (a resumed scan
        writes its first points again, in place)."""
        count = len(data)
        new = max(0, min(count, first + count - self._streams[channel].written))
        if not new:
            return
        nbytes = getattr(data, "nbytes", None)
        if nbytes is None:
            nbytes = sum(np.asarray(point).nbytes for point in data)
        nbytes = nbytes * new // count
        keep = max(self.options.required_disk_space, MIN_FREE_DISK_SPACE)
        free = self._free_space(nbytes, keep * MIB)
        if free - nbytes < keep * MIB:
            raise DiskSpaceError(
                f"disk full: {free / MIB:.1f} MiB free for {self.path}, where "
                f"{nbytes / MIB:.2f} MiB of points of {channel!r} are to be written and "
                f"{keep:g} MiB must stay free (required_disk_space); free disk space, then "
                "start the writer again to complete the file from Redis")
        self._free = free - nbytes

    def _free_space(self, nbytes: int, keep: float) -> int:
        """Free bytes on the file's disk: asked again every DISK_RECHECK_PERIOD, or
        when the estimate comes within DISK_RECHECK_MARGIN of ``keep``; in between,
        estimated from what this file wrote."""
        now = time.monotonic()
        if (self._free is None or now - self._free_at >= DISK_RECHECK_PERIOD
                or self._free - nbytes < keep + DISK_RECHECK_MARGIN):
            self._free = free_disk_space(self.path)
            self._free_at = now
        return self._free

    def points_written(self, channel: str) -> int:
        stream = self._streams.get(channel)
        return 0 if stream is None else max(stream.written, stream.start + stream.count)

    def has_stream(self, channel: str) -> bool:
        return channel in self._streams

    def frames_shown(self, lima: str) -> int:
        return self._images.get(lima, 0)

    #: The lima files read to link (EDF) or copy frames; created on first use.
    _lima_files: LimaFrameFiles | None = None

    @_disk_full_errors
    def update_images(self, plan: ImagesPlan, nframes: int, source: ImageSource,
                      final: bool = False) -> None:
        """Show frames ``[0, nframes)`` of a lima detector.

        Virtual and external datasets are rebuilt, references and copies extended.
        A frame to link or copy that cannot be read yet (file not written, truncated)
        is shown by a later call; frames that cannot be linked switch the detector to
        ``plan.fallback`` (the reason is in the dataset's ``not_linked`` attribute).

        :raises LimaFileError: ``final`` (the scan ended) and a frame to link or copy
            cannot be read; the message names the file and what is wrong
        """
        if nframes <= self._images.get(plan.lima, 0):
            return
        if self._lima_files is None:
            self._lima_files = LimaFrameFiles()
        files = self._lima_files
        storage = files.storage.get(plan.lima, plan.storage)
        directory = os.path.dirname(os.path.abspath(self.path))
        if storage == "external":
            try:
                nframes = files.rebuild_external(self.file, plan, nframes, source, final)
            except NotLinkableError as exc:
                files.storage[plan.lima] = plan.fallback
                del self.file[plan.path]
                self._images_dataset(plan, plan.fallback).attrs["not_linked"] = str(exc)
                if plan.fallback == "references":
                    unplot_references(self.file, plan.path)
                self._images[plan.lima] = 0
                self.update_images(plan, nframes, source, final)
                return
        elif storage == "copy":
            nframes = files.append_copies(self.file[plan.path], plan,
                                          self._images.get(plan.lima, 0), nframes, source,
                                          final)
        elif storage == "virtual":
            self._rebuild_virtual(plan, nframes, source, directory)
        else:
            dataset = self.file[plan.path]
            first = dataset.shape[0]
            dataset.resize(nframes, axis=0)
            uris = []
            for frame in range(first, nframes):
                filename, path, index = source(frame)
                rel = os.path.relpath(filename, directory)
                uris.append(f"{rel}::{path or ''}[{index}]")
            dataset[first:nframes] = np.array(uris, dtype=_STR)
        self._images[plan.lima] = nframes

    def _rebuild_virtual(self, plan: ImagesPlan, nframes: int, source: ImageSource,
                         directory: str) -> None:
        shape = tuple(plan.frame_shape)
        layout = h5py.VirtualLayout(shape=(nframes,) + shape, dtype=np.dtype(plan.dtype))
        frame = 0
        for filename, path, index, count in frame_runs(source, 0, nframes):
            rel = os.path.relpath(filename, directory)
            vsource = h5py.VirtualSource(rel, path or "/", shape=(index + count,) + shape)
            layout[frame:frame + count] = vsource[index:index + count]
            frame += count
        del self.file[plan.path]
        dataset = self.file.create_virtual_dataset(plan.path, layout, fillvalue=0)
        _set_attrs(dataset, plan.attrs)
        dataset.attrs["frames"] = nframes

    # -- status and end ----------------------------------------------------------

    @_disk_full_errors
    def set_text(self, path: str, value: str) -> None:
        """Create or overwrite the text field at ``path``."""
        if path in self.file:
            self.file[path][()] = value
        else:
            self.file.create_dataset(path, data=np.array(value, dtype=_STR))

    @_disk_full_errors
    def flush(self) -> None:
        """Write every buffered point and make it visible to readers."""
        for stream in self._streams.values():
            stream.flush()
        self.file.flush()

    def close(self) -> None:
        """Flush and close; idempotent. The file stays consistent if flushing fails.

        :raises DiskSpaceError: HDF5 met a full disk while writing this file. HDF5
            cannot close such a file then, so it stays open (and locked) in this
            process (see :data:`_PARKED`) until space is freed and the same path is
            opened again (by a writer started again), or the process ends;
            :attr:`closed` is true from now on.
        """
        if self.closed:
            return
        if not self._disk_full:
            try:
                self.flush()
            except DiskSpaceError:
                pass  # HDF5 met the full disk (else the error is raised below)
            except BaseException:
                self.file.close()
                raise
        if self._disk_full or not close_or_park(self.file, self.path):
            self._disk_full = self._parked = True
            _park(self.path, self.file)
            raise DiskSpaceError(
                f"no space left on device to finish {self.path}: it stays open in this "
                "process until space is freed; free disk space, then start the writer "
                "again to complete the file from Redis")

    def discard(self) -> None:
        """Close without writing anything more; the file is removed if this object
        created it and nothing was written to it yet (a scan refused before its first
        entry leaves no empty file behind). Idempotent."""
        if self.file.id.valid:
            self.file.close()
        if self._identity is not None and not self._root_ready:
            _discard(self.path, self._identity)
            self._identity = None

    @property
    def closed(self) -> bool:
        """Closed, or parked after the disk filled up: not to be used any more."""
        return self._parked or not self.file.id.valid
