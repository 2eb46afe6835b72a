"""NexusScanWriter: write one scan's NeXus file while the scan runs.

Ownership: parallel mode. The listener greenlet runs in the thread that calls
``start`` (the session writer's); the consumer greenlet, which owns the
:class:`~nexus_writer_service.io.nexus.NexusFile` and does ALL the HDF5 I/O, runs in
the worker :class:`~nexus_writer_service.concurrency.Thread` given as ``worker``
(shared by every scan of a session). A *ticker* greenlet in that same worker hub
flushes buffered points every ``flush_period``, refreshes lima virtual datasets
and checks the free disk space; it never runs while the consumer is inside an
HDF5 call (same hub, no I/O yields), so the file has one owner at a time.

Progress is acknowledged to the scan source (``reader_name``) only after the points
are flushed to the file, so the publisher never trims what the file does not hold,
and a restarted writer that finds the stream trimmed resumes after its last
acknowledgement. A periodic flush may leave a compressed chunk begun for the next
flush (it fills up before then, see :meth:`.Stream.flush`): the acknowledgement is
then the position of the last event before the first point left (each event is
numbered, and its points carry its number). Properties read by other threads are
plain snapshots.

The scans a sequence groups and the scan_info updates are taken in by
:class:`~.scan_updates.ScanUpdates` (the consumer's too).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from typing import Any, Iterator, Optional

import gevent

from ..concurrency import Event, Thread
from ..data.codec import jsonable
from ..data.events import EventData, EventType
from ..data.nodes import ChannelNode, LimaNode, ScansNode
from ..data.source import ScanSource, StopHandle
from ..errors import (
    DataLostError,
    DiskSpaceError,
    FileFinishedError,
    NexusWriterError,
    RedisUnavailableError,
    ScanStateError,
)
from ..io import checks, masterfiles
from ..io import scan_info as scan_info_keys
from ..io.scan_info import skip_reason
from ..io.layout import NodeSpec, ScanDescription, ScanLayout, plan_scan
from ..io.plan import ChildScan
from ..io.compressor import CompressionPool
from ..io.nexus import NexusFile, now_iso
from ..io.options import SaveOptions
from ..io.parking import ParkedFiles
from ..tuning import release_memory
from .file_status import WriterStatus, check_status_transition
from .scan_limits import check_info_size, check_limits, check_lima_files, check_storable
from .scan_updates import ScanUpdates
from .states import SubscriberMode
from .subscriber import Subscriber, SubscriberEvent

__all__ = ["NexusScanWriter", "WriterStatus", "check_info_size"]

logger = logging.getLogger(__name__)

#: Seconds of HDF5 work a scan does on the session's worker thread before it lets
#: the other scans of the session in (creating the tree of a scan of many channels).
HDF5_SLICE = 0.1
#: Faults that leave the file resumable (status RUNNING, its message saying why):
#: their cause is outside the scan, and a writer started again once it is gone
#: completes the file from Redis. Any other fault, and a kill, make it FAILED: final.
TRANSIENT_FAULTS = (RedisUnavailableError, DiskSpaceError)
#: A scan of at least that many channels gives the memory it took back to the system
#: when its file is closed (see :mod:`nexus_writer_service.tuning.memory`).
RELEASE_MEMORY_CHANNELS = 1000
#: A flush that takes ``t`` seconds is followed by the next one ``FLUSH_DUTY * t``
#: seconds later at the soonest (``flush_period`` when that is longer).
FLUSH_DUTY = 10


class NexusScanWriter(Subscriber, ScanUpdates):
    """Write the scan ``scan_node`` (a :class:`~..data.source.ScanSource`) to
    ``scan_info["filename"]``.

    ``NexusScanWriter(scan_node, options=SaveOptions(), worker=None,
    reader_name=None, name=None, poll_interval=0.25)``

    ``worker``: the started Thread that does the HDF5 I/O (one is created when
    ``None``). ``reader_name``: the name under which progress is acknowledged
    (register it with ``SessionNode.register_reader`` so the publisher keeps
    unwritten data). A bad path, a locked file, a full disk or a foreign entry of
    the same name put the writer in FAULT with the reason; the file keeps every
    point received until then. ``parked``: where a file that cannot be closed for
    lack of space is kept open (the session writer's; a new one when None).
    ``compression``: the threads compressing its chunks, shared by the scans of a
    session (the file has threads of its own when None).
    """

    def __init__(self, scan_node: ScanSource, options: Optional[SaveOptions] = None,
                 worker: Optional[Thread] = None, reader_name: Optional[str] = None,
                 name: Optional[str] = None, poll_interval: float = 0.25,
                 parked: Optional[ParkedFiles] = None,
                 compression: Optional[CompressionPool] = None) -> None:
        super().__init__(scan_node, SubscriberMode.PARALLEL, worker=worker,
                         name=name or f"NexusScanWriter({scan_node.key})",
                         poll_interval=poll_interval)
        self.options = options or SaveOptions()
        self._reader_name = reader_name
        self._parked = ParkedFiles() if parked is None else parked
        self._compression = compression
        self.status = WriterStatus.STARTING
        self.filename: str = ""
        self.entries: list[str] = []
        self.start_time: Optional[str] = None
        self.end_time: Optional[str] = None
        #: the scan_info as the publisher has completed it so far (INFO_UPDATE events)
        self.scan_info: dict[str, Any] = {}
        self.end_reason: Optional[str] = None
        self.end_message = ""
        self.resumed = False
        self.warning: Optional[str] = None
        self.npoints_expected = 0
        self._points: dict[str, int] = {}
        self._nodes: dict[str, NodeSpec] = {}
        self._lima_nodes: dict[str, LimaNode] = {}
        self._lima_saved: dict[str, int] = {}
        #: a sequence: the scans it groups so far, by key
        self._children: dict[str, ChildScan] = {}
        self._file: Optional[NexusFile] = None
        self._layout: Optional[ScanLayout] = None
        self._dirty = False
        self._position: Optional[str] = None
        self._acked: Optional[str] = None
        # events numbered from 1, and the (number, position) of those not acknowledged
        self._event_number = 0
        self._unacknowledged: deque[tuple[int, str]] = deque()
        self._last_flush = 0.0
        self._flush_gap = self.options.flush_period
        self._last_lima = 0.0
        self._last_disk_check = 0.0
        self._ticker: Optional[gevent.Greenlet] = None
        self._ticker_stop: Optional[Event] = None
        self._ended = False
        self._layout_notes: set[str] = set()
        #: the consumer lets the other scans in while it creates the tree
        self._materialising = False
        #: why the scan is not written (its data_writer is another writer), or ""
        self.skipped = ""
        self._last_ack = 0.0

    # -- snapshots for other threads -------------------------------------------

    @property
    def progress(self) -> tuple[int, int]:
        """``(points written, points expected)``: the least advanced channel; 0 if unknown."""
        points = self._points
        done = min(points.values()) if points else 0
        return done, self.npoints_expected

    @property
    def points(self) -> dict[str, int]:
        """Points received per channel (written at the latest after ``flush_period``)."""
        return dict(self._points)

    @property
    def frames(self) -> dict[str, int]:
        """Frames saved so far per lima detector, as its progress says (shown in the
        file at the latest after ``lima_refresh_period``)."""
        return dict(self._lima_saved)

    @property
    def urls(self) -> list[str]:
        """``<file>::/<entry>`` of every entry of the scan."""
        return [f"{self.filename}::/{entry}" for entry in self.entries]

    # -- reading (reader thread) -----------------------------------------------

    def _walk_events(self, stop: StopHandle) -> Iterator[SubscriberEvent]:
        return self._events(stop)

    def _events(self, stop: StopHandle) -> Iterator[SubscriberEvent]:
        node = self.node
        walk = node.walk_events(stop=stop, poll_interval=self._poll_interval,
                                merge_blocks=True)
        try:
            first = next(walk, None)
        except DataLostError:
            acked = node.acknowledged(self._reader_name) if self._reader_name else None
            if acked is None:
                raise
            for declared in node.nodes().values():
                yield EventType.NEW_NODE, declared, EventData(acked)
            walk = node.walk_events(stop=stop, from_position=acked,
                                    poll_interval=self._poll_interval, merge_blocks=True)
            first = next(walk, None)
        if first is None:
            return
        yield first
        yield from walk

    # -- consuming (worker thread) ---------------------------------------------

    def _process_event(self, event_type: EventType, node: Any, event_data: EventData) -> None:
        if self._file is None and not self.skipped:
            check_info_size(self.node, self.options)
            self.skipped = skip_reason(self.node.info)
            if self.skipped:
                logger.info("%s: %s", self.name, self.skipped)
            else:
                self._open()
        self._position = event_data.position
        if self.skipped:
            self._pass_over(event_type, event_data)
            return
        self._event_number += 1
        self._unacknowledged.append((self._event_number, event_data.position))
        if event_type is EventType.NEW_NODE:
            self._declare(node)
            return
        if self._dirty:
            self._materialise()
        if event_type is EventType.NEW_DATA:
            if isinstance(node, LimaNode):
                self._lima_progress(node, event_data)
            elif isinstance(node, ScansNode):
                self._add_children(event_data.data or [])
            else:
                self._add_points(node, event_data)
            # under a steady stream the consumer never waits, so the ticker would
            # not run: do what is due here
            self._housekeeping(time.monotonic())
        elif event_type is EventType.PREPARED_SCAN:
            self._set_status(WriterStatus.RUNNING)
        elif event_type is EventType.INFO_UPDATE:
            self._update_info(event_data.info or {})
        elif event_type is EventType.END_SCAN:
            self._end(event_data)

    def _pass_over(self, event_type: EventType, event_data: EventData) -> None:
        """A skipped scan: what it publishes is acknowledged (every ``flush_period``
        and at its end), so the publisher trims it as if it were written."""
        now = time.monotonic()
        if event_type is EventType.END_SCAN or now - self._last_ack >= self.options.flush_period:
            self._acknowledge(event_data.position)
            self._last_ack = now
        if event_type is EventType.END_SCAN:
            self.end_reason = event_data.reason.value if event_data.reason else "UNKNOWN"
            self._ended = True

    def _finished_reason(self) -> str:
        return self.skipped or super()._finished_reason()

    def _open(self) -> None:
        info = self.scan_info = dict(self.node.info)
        self.start_time = now_iso()
        filename = scan_info_keys.scan_file(info)
        if not filename:
            raise NexusWriterError(
                f"scan {self.node.key} has no 'filename' in its scan_info: the acquisition "
                "program must say where to save the scan")
        # malformed keys fault the scan before any file is made
        masters = scan_info_keys.master_files(info)
        unknown = scan_info_keys.unknown_keys(info)
        if unknown:
            logger.debug("%s: scan_info keys not used by the writer (kept in "
                         "writer/scan_info): %s", self.name, ", ".join(unknown))
        options = self.options
        path = checks.check_path_allowed(filename, options.allowed_roots,
                                         f"scan file (scan_info['filename'] of {self.node.key})")
        self.filename = path
        checks.makedirs_allowed(os.path.dirname(path), options.allowed_roots)
        checks.check_writable(path)
        self.warning = checks.check_disk_space(path, options.required_disk_space,
                                               options.recommended_disk_space)
        self._last_disk_check = time.monotonic()
        self.npoints_expected = _expected(info)
        # planned before the file is opened: a scan that cannot be planned (a malformed
        # name, say) leaves no file behind
        layout = self._plan()
        try:
            self._file = nexus_file = NexusFile(path, options, self._parked, self._compression)
            existing = nexus_file.check_entries(layout, self.node.key, self.node.uid)
        except FileFinishedError as exc:
            # written to its end already (a restart that found its acknowledgement
            # short): passed over and acknowledged, never written again
            nexus_file.discard()
            self._file = None
            self.status = WriterStatus(exc.status)
            self.skipped = f"not written again: {exc}"
            logger.warning("%s: %s", self.name, self.skipped)
            return
        except Exception:
            # the entries belong to someone else, or the file cannot be used: close
            # without writing a status there (a file it just created is removed)
            self.entries = []
            if self._file is not None:
                self._file.discard()
            raise
        if existing:
            self.resumed = True
        self._materialise()
        if self.resumed:
            self._file.set_text(f"/{self.entries[0]}/writer/resumed",
                                f"resumed at {now_iso()}: the file was completed from Redis")
        self._write_status(self.status)
        self._link_master_files(masters, str(info["filename"]), path)
        self._acknowledge("0-0")
        self._start_ticker()

    def _link_master_files(self, masters: dict[str, str], dataset: str, path: str) -> None:
        """Link the entries into the master files the scan asks for (``{level: path}``),
        named as the classic writer names them (``dataset``: the dataset file). A
        master file that cannot be updated gives a warning: the scan file itself is
        complete."""
        options = self.options
        problems = []
        for level, master in masters.items():
            if os.path.abspath(master) == path:
                continue  # the scan file itself
            names = [scan_info_keys.master_link_name(level, dataset, entry)
                     for entry in self.entries]
            try:
                masterfiles.link_entries(master, path, self.entries, options.allowed_roots,
                                         options.lock_retry_time, options.file_mode,
                                         self._parked, names)
            except (OSError, ValueError, NexusWriterError) as exc:
                problems.append(f"{level}: {exc}")
        if problems:
            self.warning = "master file not updated: " + "; ".join(problems)
            logger.warning("%s: %s", self.name, self.warning)

    def _plan(self) -> ScanLayout:
        node = self.node
        description = ScanDescription(node.key, node.name, node.number, self.scan_info,
                                      tuple(self._nodes.values()), node.uid,
                                      tuple(self._children.values()))
        layout = self._layout = plan_scan(description, self.options)
        self.entries = [entry.name for entry in layout.entries]
        for note in layout.notes:
            if note not in self._layout_notes:
                self._layout_notes.add(note)
                logger.warning("%s: %s", self.name, note)
        return layout

    def _materialise(self) -> None:
        """Create what is planned and not in the file yet, in slices of
        :data:`HDF5_SLICE` seconds: the other scans of the session (same worker
        thread) write their points in between. This scan's housekeeping waits
        until the tree is complete."""
        assert self._file is not None
        file = self._file
        with self._reader_paused():
            layout = self._plan()
            self._materialising = True
            try:
                while not file.materialise(layout, time.monotonic() + HDF5_SLICE):
                    gevent.idle()
            finally:
                self._materialising = False
        self._dirty = False

    def _declare(self, node: Any) -> None:
        if isinstance(node, (ChannelNode, LimaNode)):
            check_limits(node, len(self._nodes) + (node.name not in self._nodes),
                         self.npoints_expected, self.options)
        if isinstance(node, ChannelNode):
            check_storable(node)
            self._nodes[node.name] = NodeSpec(node.name, "channel", node.subscan,
                                              node.dtype.str, node.shape, node.unit,
                                              node.info)
            self._points.setdefault(node.name, 0)
        elif isinstance(node, LimaNode):
            check_lima_files(node, self.options.allowed_roots)
            self._nodes[node.name] = NodeSpec(node.name, "lima", node.subscan,
                                              node.dtype.str, node.shape, None, node.info)
            self._lima_nodes[node.name] = node
        else:
            return
        self._dirty = True

    def _add_points(self, node: ChannelNode, event_data: EventData) -> None:
        assert self._file is not None
        self._file.add_points(node.name, event_data.first_index, event_data.data,
                              (self._event_number, time.monotonic()))
        self._points[node.name] = max(self._points.get(node.name, 0), event_data.last_index)

    def _lima_progress(self, node: LimaNode, event_data: EventData) -> None:
        self._lima_saved[node.name] = int(event_data.data.last_image_saved) + 1
        expected = self.npoints_expected
        if expected and self._lima_saved[node.name] >= expected:
            self._refresh_images()

    def _refresh_images(self, final: bool = False) -> None:
        """Show the frames saved so far. Frames to copy or link whose files cannot be
        read yet are retried at the next refresh; ``final`` (the scan ended) raises
        instead, so the scan goes FAULT with the file and the reason, and gives the
        frames of virtual datasets their final mapping (see NexusFile.update_images)."""
        assert self._file is not None and self._layout is not None
        self._last_lima = time.monotonic()
        for name, saved in self._lima_saved.items():
            plan = self._layout.images.get(name)
            if plan is None or (saved <= self._file.frames_shown(name) and not final):
                continue
            lima = self._lima_nodes[name]
            self._file.update_images(plan, saved, _image_source(lima), final)

    def _flush(self) -> None:
        if self._file is None or self._file.closed:
            return
        # compressed chunks handed to the compression threads are written first, the
        # reader running: waiting for them is the writing itself, not a flush's cost
        self._file.settle()
        started = time.monotonic()
        self._flush_file(period=self.options.flush_period)
        self._last_flush = time.monotonic()
        # a file with many channels takes long to flush: never spend more than about
        # 1/FLUSH_DUTY of the time flushing
        self._flush_gap = max(self.options.flush_period,
                              FLUSH_DUTY * (self._last_flush - started))
        position = self._flushed_position()
        if position is not None and position != self._acked:
            self._acknowledge(position)

    def _flushed_position(self) -> Optional[str]:
        """The position of the last event whose points are all in the file (None:
        none since the last acknowledgement)."""
        assert self._file is not None
        left = self._file.unflushed
        unacknowledged = self._unacknowledged
        if left is None:
            unacknowledged.clear()
            return self._position
        position = None
        while unacknowledged and unacknowledged[0][0] < left[0]:
            position = unacknowledged.popleft()[1]
        return position

    def _flush_file(self, final: bool = False, period: Optional[float] = None) -> None:
        """Flush the file with the reader paused: as many short HDF5 calls as there
        are channels with points held (see :meth:`_reader_paused`); ``final``: the
        scan has no more points, ``period``: seconds to the next flush (see
        :meth:`.NexusFile.flush`)."""
        assert self._file is not None
        with self._reader_paused():
            self._file.flush(final, period)

    def _acknowledge(self, position: str) -> None:
        if self._reader_name:
            self.node.acknowledge(self._reader_name, position)
            self._acked = position

    def _set_status(self, status: WriterStatus, message: Optional[str] = None) -> None:
        """Change the status (see :mod:`.file_status`), then write it to the file."""
        self.status = check_status_transition(self.status, status, self.name)
        self._write_status(status, message)

    def _write_status(self, status: WriterStatus, message: Optional[str] = None) -> None:
        if self._file is None or self._file.closed:
            return
        for entry in self.entries:
            self._file.set_text(f"/{entry}/writer/status", status.value)
            if message is not None:
                self._file.set_text(f"/{entry}/writer/message", message)

    def _end(self, event_data: EventData) -> None:
        assert self._file is not None
        self._refresh_images(final=True)
        if self._dirty:
            self._materialise()
        self.end_reason = event_data.reason.value if event_data.reason else "UNKNOWN"
        self.end_message = event_data.message
        published_end = self.scan_info.get("end_time")
        self.end_time = published_end if isinstance(published_end, str) else now_iso()
        final_info = json.dumps(jsonable(self.scan_info))
        after_end = self._published_after_end(event_data.position)
        for entry in self.entries:
            self._file.set_text(f"/{entry}/end_time", self.end_time)
            self._file.set_text(f"/{entry}/writer/end_reason", self.end_reason)
            self._file.set_text(f"/{entry}/writer/scan_info", final_info)
            if after_end:
                self._file.set_text(f"/{entry}/writer/after_end", after_end)
        message = f"scan ended: {self.end_reason}" + (
            f" ({self.end_message})" if self.end_message else "")
        check_status_transition(self.status, WriterStatus.SUCCEEDED, self.name)
        # every point in the file before the status says the scan is complete: a
        # reader that finds the final status then reads them all
        self._flush_file(final=True)
        self._write_status(WriterStatus.SUCCEEDED, message)
        self._flush_file()
        # final once the file holds it: a flush that fails leaves the status as it
        # was, and the fault that follows makes it FAILED
        self.status = WriterStatus.SUCCEEDED
        self._file.close()
        self._ended = True
        self._acknowledge(event_data.position)

    def _published_after_end(self, position: str) -> str:
        """What the scan holds after its end (``position``), said in the log and as
        the scan's warning; "" when nothing. A source that cannot be asked is logged:
        the file is complete without it."""
        try:
            entries, data = self.node.entries_after(position)
        except NexusWriterError as exc:
            logger.warning("%s: cannot tell whether anything was published after the end "
                           "of scan %s: %s", self.name, self.node.key, exc)
            return ""
        if not entries:
            return ""
        note = (f"{entries} entries ({data} of them data) were published after the end "
                f"of the scan (position {position}) and are not in this file: the "
                "acquisition program went on publishing after ending the scan")
        logger.warning("%s: scan %s: %s", self.name, self.node.key, note)
        self.warning = note
        return note

    # -- ticker (worker thread) ------------------------------------------------

    def _start_ticker(self) -> None:
        self._ticker_stop = Event()
        self._ticker = gevent.spawn(self._tick, self._ticker_stop)

    def _tick(self, stop: Event) -> None:
        options = self.options
        period = min(options.flush_period, options.lima_refresh_period) / 2
        try:
            while not stop.wait(period):
                self._housekeeping(time.monotonic())
        except Exception as exc:
            self._record_fault(exc, "writing in the background")
            run = self._run
            if run is not None:
                self._abort(run)

    def _housekeeping(self, now: float) -> None:
        """Flush, refresh lima datasets and check the disk when each is due."""
        options = self.options
        if self._file is None or self._file.closed or self._materialising:
            return
        if now - self._last_flush >= self._flush_gap:
            self._flush()
        if self._lima_saved and now - self._last_lima >= options.lima_refresh_period:
            self._refresh_images()
        if now - self._last_disk_check >= options.disk_check_period:
            self._last_disk_check = now
            self.warning = checks.check_disk_space(
                self.filename, options.required_disk_space, options.recommended_disk_space)

    def _stop_ticker(self) -> None:
        if self._ticker_stop is not None:
            self._ticker_stop.send()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker.kill()
            self._ticker = None

    def _on_stop(self) -> None:
        self._stop_ticker()
        try:
            self._close_file()
        finally:
            self._release()

    def _close_file(self) -> None:
        """A scan that did not end: its file says why, and is closed."""
        file = self._file
        if file is None or file.closed:
            return
        killed = self._run is not None and self._run.killed
        try:
            if self._fault_reason is None and not self._ended and not killed:
                self._flush()
                self._set_status(WriterStatus.RUNNING,
                                 "the writer stopped before the scan ended; start it again "
                                 "to complete the file from Redis")
                self._flush_file()
            elif not self._ended:
                reason = self._fault_reason or "the writer was killed"
                transient = isinstance(self._fault_error, TRANSIENT_FAULTS)
                try:
                    self._flush_file()
                finally:
                    if transient:  # the file stays resumable: a restart completes it
                        self._set_status(WriterStatus.RUNNING,
                                         f"the writer stopped: {reason}; start it again "
                                         "to complete the file from Redis")
                    else:
                        self._set_status(WriterStatus.FAILED, reason)
        finally:
            file.close()

    def _release(self) -> None:
        """The file is closed: what only writing it needed goes (the record of the
        scan stays listed for ``purge_delay``), and after a scan of many channels,
        the memory it took goes back to the system."""
        self._layout = None
        self._file = None
        if len(self._nodes) >= RELEASE_MEMORY_CHANNELS:
            release_memory()


def _image_source(lima: LimaNode) -> Any:
    def source(frame: int) -> tuple[str, str | None, int]:
        ref = lima.image_reference(frame)
        return ref.filename, ref.path_in_file, ref.index_in_file

    return source


def _expected(info: dict[str, Any]) -> int:
    try:
        npoints = int(info.get("npoints") or 0)
        grid = int(info.get("npoints1") or 0) * int(info.get("npoints2") or 0)
    except (TypeError, ValueError):
        raise ScanStateError("scan_info npoints/npoints1/npoints2 must be integers") from None
    return max(npoints, grid)
