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

import datetime
import errno
import functools
import json
import os
import time
from typing import Any, Callable, Mapping, Sequence, TypeVar

import h5py
import numpy as np

from .. import __version__
from ..errors import DiskSpaceError, EntryExistsError, FileLockedError, NexusWriterError
from .checks import MIB, describe_holders, free_disk_space
from .layout import (
    FieldPlan,
    GridPlan,
    GroupPlan,
    ImagesPlan,
    LinkPlan,
    ScanLayout,
    StreamPlan,
)
from .options import SaveOptions

__all__ = ["NexusFile", "ImageSource", "now_iso", "open_for_writing"]

Array = np.ndarray[Any, Any]
_STR = h5py.string_dtype()
#: (filename, path in file, index in file) of every saved frame, given its number.
ImageSource = Callable[[int], tuple[str, str | None, int]]
#: MiB kept free on the disk whatever ``required_disk_space`` says: what HDF5 needs to
#: write the status and close the file once the scan stops for lack of space.
MIN_FREE_DISK_SPACE = 1.0
_Method = TypeVar("_Method", bound=Callable[..., Any])
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
#: Seconds and bytes that bound how long the free disk space is estimated, not asked.
DISK_RECHECK_PERIOD = 0.5
DISK_RECHECK_MARGIN = 64 * MIB


def _disk_full_errors(method: _Method) -> _Method:
    """Translate a full disk met by HDF5 (ENOSPC, EDQUOT) into a DiskSpaceError that
    says what to do."""
    @functools.wraps(method)
    def guarded(self: "NexusFile", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except NexusWriterError:
            raise
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            raise DiskSpaceError(
                f"no space left on device (disk full or quota reached) while writing "
                f"{self.path}: free disk space, then start the writer again to complete "
                "the file from Redis") from None
    return guarded  # type: ignore[return-value]


def now_iso() -> str:
    """The local time with its UTC offset, as NeXus wants it."""
    return datetime.datetime.now().astimezone().isoformat()


def _attr_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, str) for v in value):
            return np.array(value, dtype=_STR)
        return np.asarray(value)
    if isinstance(value, Mapping):
        return json.dumps(value)
    return value


def _set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        obj.attrs[key] = _attr_value(value)


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


def open_for_writing(path: str, retry_time: float, what: str = "scan file") -> h5py.File:
    """``h5py.File(path, "a")`` with HDF5 file locking, retrying ``retry_time`` seconds
    while another process holds a lock. Never truncates.

    :raises FileLockedError: still locked after the retries (names the holders)
    :raises DiskSpaceError: no space left to create the file (none is left behind)
    :raises NexusWriterError: not an HDF5 file, or not writable (it was not modified)
    """
    deadline = time.monotonic() + retry_time
    existed = os.path.exists(path)
    while True:
        try:
            return h5py.File(path, "a", locking=True)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                if not existed and os.path.exists(path):
                    os.remove(path)  # the empty start of a file it could not create
                raise DiskSpaceError(
                    f"no space left on device (disk full or quota reached) to open {what} "
                    f"{path}: free disk space, then start the writer again") from None
            if "lock" not in str(exc).lower():
                raise NexusWriterError(
                    f"cannot open {what} {path} for writing: {exc} (if the file exists, it is "
                    "not a valid HDF5 file or cannot be written; it was not modified)"
                ) from None
        if time.monotonic() >= deadline:
            raise FileLockedError(
                f"{what} {path} is locked by another process ({describe_holders(path)}); "
                "readers must open scan files with locking=False while scans are written "
                "(h5py.File(path, 'r', locking=False))")
        time.sleep(0.1)


class _Stream:
    """The buffer of one channel's dataset; writes whole chunks, the rest on flush."""

    def __init__(self, dataset: h5py.Dataset, plan: StreamPlan,
                 lengths: h5py.Dataset | None) -> None:
        self.dataset = dataset
        self.plan = plan
        self.lengths = lengths
        self.rows = plan.chunk_rows
        self.pending: list[Array] = []
        self.start = 0
        self.count = 0
        self.written = int(dataset.shape[0])

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
        block = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        n = stop - self.start
        self._write(self.start, block[:n])
        rest = block[n:]
        self.pending = [rest] if len(rest) else []
        self.start = stop
        self.count = len(rest)

    def _write(self, first: int, block: Array) -> None:
        stop = first + len(block)
        if stop > self.written:  # the dataset's length (h5py's shape is slow to ask)
            self.dataset.resize(stop, axis=0)
        self.dataset[first:stop] = block
        self.written = max(self.written, stop)

    def _write_ragged(self, first: int, points: Sequence[Array]) -> None:
        width = max([len(p) for p in points] + [self.dataset.shape[1]])
        if width > self.dataset.shape[1]:
            self.dataset.resize(width, axis=1)
        block = np.full((len(points), width), self.plan.fill, dtype=self.dataset.dtype)
        for i, point in enumerate(points):
            block[i, :len(point)] = point
        self._write(first, block)
        assert self.lengths is not None
        stop = first + len(points)
        if stop > self.lengths.shape[0]:
            self.lengths.resize(stop, axis=0)
        self.lengths[first:stop] = [len(p) for p in points]

    def flush(self) -> None:
        if self.count:
            self._write_until(self.start + self.count)


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
        existed = os.path.exists(path)
        self.file = open_for_writing(path, options.lock_retry_time)
        self.created = not existed
        if self.created:
            try:
                os.chmod(path, options.file_mode)
            except OSError:
                pass
        self._streams: dict[str, _Stream] = {}
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
            group = self.file.require_group(item.path)
            group.attrs["NX_class"] = item.nx_class
            _set_attrs(group, item.attrs)
        elif isinstance(item, FieldPlan):
            dataset = self.file.create_dataset(item.path, data=_field_data(item.value))
            _set_attrs(dataset, item.attrs)
        elif isinstance(item, StreamPlan):
            self._create_stream(item)
        elif isinstance(item, ImagesPlan):
            self._create_placeholder(item)
        elif isinstance(item, GridPlan):
            self._create_grid(item)
        elif isinstance(item, LinkPlan):
            self.file[item.path] = h5py.SoftLink(item.target)

    def _create_stream(self, plan: StreamPlan) -> None:
        dtype = np.dtype(plan.dtype)
        if plan.lengths_path is not None:
            dataset = self.file.create_dataset(
                plan.path, shape=(0, 0), maxshape=(None, None), dtype=dtype,
                chunks=(plan.chunk_rows, 64), fillvalue=plan.fill, **self._compression)
            self.file.create_dataset(plan.lengths_path, shape=(0,), maxshape=(None,),
                                     dtype=np.int64, chunks=(plan.chunk_rows,))
        else:
            shape = tuple(plan.point_shape)
            dataset = self.file.create_dataset(
                plan.path, shape=(0,) + shape, maxshape=(None,) + shape, dtype=dtype,
                chunks=(plan.chunk_rows,) + shape, **self._compression)
        _set_attrs(dataset, plan.attrs)
        self._open_stream(plan, dataset)

    def _open_stream(self, plan: StreamPlan, dataset: h5py.Dataset | None = None) -> None:
        lengths = self.file[plan.lengths_path] if plan.lengths_path else None
        self._streams[plan.channel] = _Stream(
            self.file[plan.path] if dataset is None else dataset, plan, lengths)

    def _create_placeholder(self, plan: ImagesPlan) -> None:
        shape = tuple(plan.frame_shape)
        if plan.virtual:
            dataset = self.file.create_dataset(plan.path, shape=(0,) + shape,
                                               dtype=np.dtype(plan.dtype))
        else:
            dataset = self.file.create_dataset(plan.path, shape=(0,), maxshape=(None,),
                                               dtype=_STR, chunks=(256,))
            dataset.attrs["format"] = "<file relative to this one>::<path>[<index>]"
        _set_attrs(dataset, plan.attrs)
        self._images[plan.lima] = 0

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

    @_disk_full_errors
    def update_images(self, plan: ImagesPlan, nframes: int, source: ImageSource) -> None:
        """Show frames ``[0, nframes)`` of a lima detector (rebuilds the dataset)."""
        if nframes <= self._images.get(plan.lima, 0):
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        if plan.virtual:
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
        while frame < nframes:
            filename, path, index = source(frame)
            count = 1
            while frame + count < nframes:
                nxt = source(frame + count)
                if nxt[0] != filename or nxt[2] != index + count:
                    break
                count += 1
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

    @_disk_full_errors
    def close(self) -> None:
        """Flush and close; idempotent. The file stays consistent if flushing fails."""
        if not self.file.id.valid:
            return
        try:
            self.flush()
        finally:
            self.file.close()

    @property
    def closed(self) -> bool:
        return not self.file.id.valid
