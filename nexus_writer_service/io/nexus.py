"""Tree materialisation: a planned layout made into a scan file, and the scan's
points, frames and status written into it.

A :class:`NexusFile` opens its file through :mod:`.files` (secure creation and
locking), creates the planned groups, fields, streams and links (objects through
:mod:`._lowlevel`), brings what the file holds up to a plan that changed
(:mod:`.rewriting`), hands each channel's points to its stream (:mod:`.streams`),
and leaves a file it cannot close for lack of space to its owner's
:class:`~.parking.ParkedFiles`.

Ownership: a :class:`NexusFile` belongs to the thread that opened it (the writers'
worker thread); nothing here is thread-safe and nothing here talks to Redis.
"""

from __future__ import annotations

import datetime
import functools
import time
from typing import Any, Callable, Mapping, Optional, TypeVar

import h5py
import numpy as np

from .. import __version__
from ..errors import DiskSpaceError, EntryExistsError, FileFinishedError, NexusWriterError
from ._lowlevel import create_group, create_stream_dataset, filter_pipeline, open_uncached
from ._lowlevel import soft_link
from ._lowlevel import set_attrs as _set_attrs
from ._lowlevel import stored_as_given
from .checks import MIB, free_disk_space
from .codecs import GZIP_LEVEL, ChunkCodec, codec_for, codec_from_filters, filter_options
from .compressor import ChunkCompressor, CompressionPool
from .files import CHUNK_CACHE_SLOTS, discard, open_for_writing, open_or_create
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
from .lima_images import ImageSource, LimaImages
from .options import SaveOptions
from .parking import MIN_FREE_DISK_SPACE, ParkedFiles, met_disk_full
from .rewriting import Rewriting, _text_attr
from .streams import (NO_MARK, RAGGED_SLICE_BYTES, ColumnStream, Mark, Scratch, Stack, Stream,
                      ragged_slices)

__all__ = [
    "GZIP_LEVEL",
    "filter_options",
    "CHUNK_CACHE_SLOTS",
    "MIN_FREE_DISK_SPACE",
    "RAGGED_SLICE_BYTES",
    "ImageSource",
    "NexusFile",
    "ParkedFiles",
    "now_iso",
    "open_for_writing",
    "open_or_create",
    "ragged_slices",
]

_STR = h5py.string_dtype()
_Method = TypeVar("_Method", bound=Callable[..., Any])
#: Seconds and bytes that bound how long the free disk space is estimated, not asked.
DISK_RECHECK_PERIOD = 0.5
DISK_RECHECK_MARGIN = 64 * MIB
#: The writer statuses of a finished file (see subscribers.file_status): such a file is
#: never written again.
FINAL_STATUSES = ("SUCCEEDED", "FAILED")
#: Items created between two looks at the clock of a sliced :meth:`NexusFile.materialise`.
_SLICE_ITEMS = 16


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
            if not met_disk_full(exc, self.path):
                raise
            self._disk_full = True
            raise full from None
    return guarded  # type: ignore[return-value]


def now_iso() -> str:
    """The local time with its UTC offset, as NeXus wants it."""
    return datetime.datetime.now().astimezone().isoformat()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text_field(group: h5py.Group, path: str) -> str | None:
    """The text of the scalar dataset ``path`` under ``group``, None if there is none."""
    dataset = group.get(path)
    if not isinstance(dataset, h5py.Dataset) or dataset.shape != ():
        return None
    value = dataset[()]
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NexusFile(Rewriting, LimaImages):
    """One scan file, open for writing from the moment it is created.

    ``NexusFile(path, options)`` opens (or creates) the file in append mode with
    HDF5 file locking, retrying ``options.lock_retry_time`` seconds while another
    process holds a lock (see :func:`~.files.open_or_create`); ``parked``: the
    owner's files left open when the disk was full (see :mod:`.parking`);
    ``compression``: the threads that compress its chunks, shared with the other
    files of a session (see :mod:`.compressor`; threads of its own when None). An
    existing file is never truncated, and nothing is written to it before the first
    :meth:`materialise` (so a file refused by :meth:`check_entries` is left as it
    was).

    :raises FileLockedError: still locked after the retries (names the holders)
    :raises NexusWriterError: the file exists and is not an HDF5 file, or cannot be opened
    """

    def __init__(self, path: str, options: SaveOptions,
                 parked: Optional[ParkedFiles] = None,
                 compression: Optional[CompressionPool] = None) -> None:
        self.path = path
        self.options = options
        # a file left open when the disk was full is released from, or parked in,
        # the owner's ParkedFiles; without one, this file keeps its own
        self._parked_files = ParkedFiles() if parked is None else parked
        self.file, self._identity = open_or_create(path, options.lock_retry_time, "scan file",
                                                   options.file_mode, options.allowed_roots,
                                                   self._parked_files)
        self.created = self._identity is not None
        self._parked = False
        self._disk_full = False  # HDF5 met a full disk: no more flushing, see close()
        #: the mark of the oldest point the last flush left held (None: it wrote all)
        self.unflushed: Mark | None = None
        self._streams: dict[str, Stream] = {}
        self._scratch = Scratch()
        self._images: dict[str, int] = {}
        self._frame_mapped = {}
        self._root_ready = False
        # entries this object created, and the paths it created in them: asking h5py
        # whether each planned path exists costs more than creating it
        self._fresh_entries: set[str] = set()
        self._free: int | None = None
        self._free_at = 0.0
        # the kind of plan item each path was made (or found) for
        self._created: dict[str, type] = {}
        self._group_class: dict[str, str] = {}
        #: where a sliced materialise stopped: (layout, entry index, item index)
        self._paused_at: tuple[ScanLayout, int, int] | None = None
        self._compressor: ChunkCompressor | None = None
        self._compression_pool = compression
        # the value and attributes of every field as last written (or found) here
        self._fields: dict[str, tuple[Any, Mapping[str, Any]]] = {}
        # the attributes of every stream as last written here
        self._stream_attrs: dict[str, Mapping[str, Any]] = {}

    def _codec(self, codec: ChunkCodec | None
               ) -> tuple[ChunkCodec | None, ChunkCompressor | None]:
        """``codec`` and the file's compressor (created on first use, a client of the
        session's pool, else with threads of its own), or nothing when chunks are
        compressed by HDF5 on this thread (``compression_threads=0``)."""
        if codec is None or not self.options.compression_threads:
            return None, None
        if self._compressor is None:
            self._compressor = ChunkCompressor(self.options.compression_threads,
                                               pool=self._compression_pool)
        return codec, self._compressor

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
        :raises FileFinishedError: the scan's entries say their writer finished them
            (``writer/status`` SUCCEEDED or FAILED): a finished file is never written
            again
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
            status = _text_field(group, "writer/status")
            if status in FINAL_STATUSES:
                message = _text_field(group, "writer/message")
                raise FileFinishedError(
                    f"{self.path}: entry {entry.name!r} of scan {scan_key} was finished by "
                    f"an earlier writer (writer/status {status}"
                    + (f": {message}" if message else "") + "); a finished file is never "
                    "written again", status)
            existing.append(entry.name)
        return existing

    @_disk_full_errors
    def materialise(self, layout: ScanLayout, until: float | None = None) -> bool:
        """Create every planned item that is not in the file yet, and bring the
        attributes of existing groups (plot signals and axes) and the fields whose
        planned value changed (the scan_info completed during the scan: end
        positions, comments...) up to date (idempotent).

        ``until`` (``time.monotonic()``): stop creating items once past it, and
        answer False; calling again with the same layout carries on where it
        stopped. The file is valid in between; the entries' plots and default may
        wait for the last call. True once everything is done."""
        if not self._root_ready:
            self._init_root()
            self._root_ready = True
        paused, self._paused_at = self._paused_at, None
        start_entry, start_item = paused[1:] if paused and paused[0] is layout else (0, 0)
        for index, entry in enumerate(layout.entries):
            if index < start_entry:
                continue
            fresh = entry.name in self._fresh_entries
            if not fresh and entry.name not in self.file:
                self._fresh_entries.add(entry.name)
                fresh = True
            first = start_item if index == start_entry else 0
            for count, item in enumerate(entry.items[first:], first):
                if until is not None and not count % _SLICE_ITEMS and count > first \
                        and time.monotonic() > until:
                    self._paused_at = (layout, index, count)
                    return False
                if self._exists(item, fresh):
                    if isinstance(item, StreamPlan):
                        if item.channel not in self._streams:
                            self._open_stream(item)
                        self._update_stream_attrs(item)
                    elif isinstance(item, StackPlan) and any(
                            channel not in self._streams for channel in item.channels):
                        self._open_stack(item)
                    elif isinstance(item, GroupPlan):
                        self._update_group(item)
                    elif isinstance(item, FieldPlan):
                        self._update_field(item)
                    continue
                self._create(item)
                self._created[item.path] = type(item)
            self._set_member_attrs(entry.items)
            if entry.default:
                self.file[entry.name].attrs["default"] = entry.default
        if not self.file.attrs.get("default") and layout.root_attrs.get("default"):
            self.file.attrs["default"] = layout.root_attrs["default"]
        return True

    def _set_member_attrs(self, items: list[Any]) -> None:
        """The attributes groups give their members, once the members exist."""
        for item in items:
            if not isinstance(item, GroupPlan) or not item.member_attrs:
                continue
            group = self.file[item.path]
            for name, attrs in item.member_attrs.items():
                member = group.get(name)
                if member is not None:
                    _set_attrs(member, attrs)

    def _create(self, item: Any) -> None:
        if isinstance(item, GroupPlan):
            create_group(self.file, item.path, {"NX_class": item.nx_class, **item.attrs})
            self._group_class[item.path] = item.nx_class
        elif isinstance(item, FieldPlan):
            self._create_field(item)
        elif isinstance(item, StreamPlan):
            self._create_stream(item)
        elif isinstance(item, StackPlan):
            self._create_stack(item)
        elif isinstance(item, ImagesPlan):
            self._create_placeholder(item)
        elif isinstance(item, GridPlan):
            self._create_grid(item)
        elif isinstance(item, LinkPlan) and item.filename:
            self.file[item.path] = h5py.ExternalLink(item.filename, item.target)
        elif isinstance(item, LinkPlan):
            soft_link(self.file, item.path, item.target)

    def _create_stream(self, plan: StreamPlan) -> None:
        dtype = np.dtype(plan.dtype)
        filters = filter_options(plan.compression)
        if plan.lengths_path is not None:
            dataset = create_stream_dataset(
                self.file, plan.path, (0, 0), (None, None), (plan.chunk_rows, 64), dtype,
                plan.fill, filters)
            create_stream_dataset(self.file, plan.lengths_path, (0,), (None,),
                                  (plan.chunk_rows,), np.int64)
        else:
            shape = tuple(plan.point_shape)
            # what a new dataset is, known without asking HDF5
            direct = not filters and dtype.kind in "biufc"
            dataset = create_stream_dataset(
                self.file, plan.path, (0,) + shape, (None,) + shape,
                (plan.chunk_rows,) + shape, dtype, None, filters, cached=not direct)
            codec = codec_for(plan.compression) if dtype.kind in "biufc" else None
            self._streams[plan.channel] = Stream(dataset, plan, None, self._scratch,
                                                 (0, dtype, direct), *self._codec(codec))
        _set_attrs(dataset, plan.attrs, new=True)
        self._stream_attrs[plan.path] = plan.attrs
        if plan.channel not in self._streams:
            self._open_stream(plan, dataset)

    def _open_stream(self, plan: StreamPlan, dataset: h5py.Dataset | None = None) -> None:
        lengths = self.file[plan.lengths_path] if plan.lengths_path else None
        if dataset is None:
            dataset = self.file[plan.path]
            if lengths is None and stored_as_given(dataset):
                # closed first: an object opened twice shares the cache of its first opening
                del dataset
                dataset = open_uncached(self.file, plan.path)
        codec = None
        if lengths is None and dataset.dtype.kind in "biufc" and dataset.chunks is not None \
                and dataset.chunks[1:] == dataset.shape[1:]:
            codec = codec_from_filters(filter_pipeline(dataset), dataset.dtype.itemsize)
        self._streams[plan.channel] = Stream(dataset, plan, lengths, self._scratch, None,
                                             *self._codec(codec))

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
            **filter_options(plan.compression))
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
        stack = Stack(dataset, plan)
        for column, channel in enumerate(plan.channels):
            self._streams[channel] = ColumnStream(stack, column, self._scratch)

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
    def add_points(self, channel: str, first: int, data: Any, mark: Mark = NO_MARK
                   ) -> None:
        """Points ``[first, first + len(data))`` of ``channel`` (buffered), received
        with ``mark`` (see :attr:`unflushed`).

        :raises DiskSpaceError: writing them would leave less than ``required_disk_space``
            (at least :data:`MIN_FREE_DISK_SPACE`) MiB free; nothing is written, so the
            file can still be closed cleanly
        """
        self._check_disk_space(channel, first, data)
        self._streams[channel].add(first, data, mark)

    def _check_disk_space(self, channel: str, first: int, data: Any) -> None:
        """Only points past the rows already in the file need space (a resumed scan
        writes its first points again, in place)."""
        count = len(data)
        stream = self._streams[channel]
        new = max(0, min(count, first + count - stream.written))
        if not new:
            return
        claim = stream.chunk_claim(first, count)
        nbytes: int
        if claim is not None:
            nbytes = claim  # the whole chunks HDF5 will allocate for them
        else:
            given = getattr(data, "nbytes", None)
            if given is None:
                given = sum(np.asarray(point).nbytes for point in data)
            nbytes = int(given) * new // count
        if not nbytes:
            return
        keep = max(self.options.required_disk_space, MIN_FREE_DISK_SPACE)
        free = self._free_space(nbytes, keep * MIB)
        if free - nbytes < keep * MIB:
            raise DiskSpaceError(
                f"disk full: {free / MIB:.1f} MiB free for {self.path}, where "
                f"{nbytes / MIB:.2f} MiB of points of {channel!r} are to be written and "
                f"{keep:g} MiB must stay free (required_disk_space); free disk space, then "
                "start the writer again to complete the file from Redis")
        stream.commit_claim(first, count)
        self._free = free - nbytes

    def _free_space(self, nbytes: int, keep: float) -> int:
        """Free bytes on the file's disk: asked again every DISK_RECHECK_PERIOD, or
        when the estimate comes within DISK_RECHECK_MARGIN of ``keep``; in between,
        estimated from what this file wrote."""
        now = time.monotonic()
        if (self._free is None or now - self._free_at >= DISK_RECHECK_PERIOD
                or self._free - nbytes < keep + DISK_RECHECK_MARGIN):
            # the disk's free space, less what the points held were promised
            self._free = free_disk_space(self.path) - sum(
                stream.unallocated_bytes() for stream in self._streams.values())
            self._free_at = now
        return self._free

    def points_written(self, channel: str) -> int:
        stream = self._streams.get(channel)
        return 0 if stream is None else max(stream.written, stream.start + stream.count)

    def has_stream(self, channel: str) -> bool:
        return channel in self._streams

    @_disk_full_errors
    def update_images(self, plan: ImagesPlan, nframes: int, source: ImageSource,
                      final: bool = False) -> None:
        """See :meth:`.LimaImages.show_images` (a full disk met becomes a
        DiskSpaceError)."""
        self.show_images(plan, nframes, source, final)

    # -- status and end ----------------------------------------------------------

    @_disk_full_errors
    def set_text(self, path: str, value: str) -> None:
        """Create or overwrite the text field at ``path``."""
        if path in self.file:
            self.file[path][()] = value
        else:
            self.file.create_dataset(path, data=np.array(value, dtype=_STR))

    @_disk_full_errors
    def settle(self) -> None:
        """Write the chunks handed to the compression threads so far (waits for them)."""
        if self._compressor is not None:
            self._compressor.drain(wait=True)

    @_disk_full_errors
    def flush(self, final: bool = False, period: float | None = None) -> None:
        """Write every buffered point and make it visible to readers; ``final``: the
        last flush before closing (every chunk begun compressed at once, see
        :meth:`.Stream.flush`). ``period``: seconds to the next flush: a compressed
        chunk begun that fills up before then may be left for it (see
        :meth:`.Stream.flush`); :attr:`unflushed` then says the oldest point left."""
        now = time.monotonic()
        unflushed: Mark | None = None
        for stream in self._streams.values():
            stream.flush(final, period, now)
            if stream.unflushed is not None and (unflushed is None
                                                 or stream.unflushed < unflushed):
                unflushed = stream.unflushed
        self.unflushed = unflushed
        if self._compressor is not None:
            self._compressor.drain(wait=True)
        self.file.flush()

    def _stop_compressor(self) -> None:
        compressor, self._compressor = self._compressor, None
        if compressor is not None:
            compressor.close()

    def close(self) -> None:
        """Flush and close; idempotent. The file stays consistent if flushing fails.

        :raises DiskSpaceError: HDF5 met a full disk while writing this file. HDF5
            cannot close such a file then, so it stays open (and locked) in this
            process (parked, see :mod:`.parking`) until space is freed and the same
            path is opened again (by a writer started again with the same owner), or
            the process ends;
            :attr:`closed` is true from now on.
        """
        if self.closed:
            return
        if not self._disk_full:
            try:
                self.flush(final=True)
            except DiskSpaceError:
                pass  # HDF5 met the full disk (else the error is raised below)
            except BaseException:
                self._stop_compressor()
                self.file.close()
                raise
        self._stop_compressor()
        if self._disk_full or not self._parked_files.close_or_park(self.file, self.path):
            self._disk_full = self._parked = True
            self._parked_files.park(self.path, self.file)
            raise DiskSpaceError(
                f"no space left on device to finish {self.path}: it stays open in this "
                "process until space is freed; free disk space, then start the writer "
                "again to complete the file from Redis")

    def discard(self) -> None:
        """Close without writing anything more; the file is removed if this object
        created it and nothing was written to it yet (a scan refused before its first
        entry leaves no empty file behind). Idempotent."""
        self._stop_compressor()
        if self.file:  # open (h5py: its id is valid)
            self.file.close()
        if self._identity is not None and not self._root_ready:
            discard(self.path, self._identity)
            self._identity = None

    @property
    def closed(self) -> bool:
        """Closed, or parked after the disk filled up: not to be used any more."""
        return self._parked or not self.file
