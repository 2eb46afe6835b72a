"""NexusSessionWriter: one NeXus file writer per scan of a session.

Ownership: sequential mode. Everything of the session writer (its listener, the
per-scan listeners, the purge) runs as greenlets in the thread that calls
``start`` (the *start thread*, the main thread of the Tango device). It owns ONE
worker :class:`~nexus_writer_service.concurrency.Thread` in which the consumers of
all its scan writers do their HDF5 I/O, started in ``start`` and stopped when the
session writer has finished, and ONE
:class:`~nexus_writer_service.io.compressor.CompressionPool` of
``compression_threads`` threads that compress the chunks of all its scans (they
start with the first chunk and stop after the worker). Methods that read
(``scans``, ``scan``, ``summary``) are safe from any thread; the ones that change
scan writers must be called from the start thread (the Tango device's green mode
does that).

On start, scans that are still running in Redis, or whose file this writer
(``reader_name``) started but never finished, are written (resumed) first; then
every new scan of the session is written as it starts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from ..concurrency import Thread
from ..data.events import EventData, EventType
from ..data.opener import open_session
from ..data.source import ScanSource, SessionSource, StopHandle
from ..errors import (
    MalformedEventError,
    NexusWriterError,
    NodeNotFoundError,
    ScanStateError,
    WaitTimeout,
)
from ..io.compressor import CompressionPool
from ..io.options import SaveOptions
from ..io.parking import ParkedFiles
from ..tuning.priority import lower_this_thread
from .scan_writer import NexusScanWriter, check_info_size
from .states import SubscriberMode, SubscriberState
from .subscriber import Subscriber, SubscriberEvent

__all__ = ["NexusSessionWriter", "ScanRecord"]

logger = logging.getLogger(__name__)

_STOP_TIMEOUT = 30.0


@dataclass
class ScanRecord:
    """One scan the session writer knows: its writer and when it started/ended."""

    key: str
    name: str
    writer: NexusScanWriter
    started: float = field(default_factory=time.time)
    ended: Optional[float] = None
    #: the file the scan_info names, known as soon as the scan is listed (the
    #: writer's ``filename`` is set once its thread has the scan in hand)
    filename: str = ""

    @property
    def state(self) -> SubscriberState:
        return self.writer.state

    def as_dict(self) -> dict[str, Any]:
        """A snapshot for clients (device attributes, logs, the command line)."""
        writer = self.writer
        done, expected = writer.progress
        backlog_events, backlog_bytes = writer.backlog
        return {
            "name": self.name, "key": self.key, "state": writer.state.value,
            "state_reason": writer.state_reason, "status": writer.status.value,
            "filename": writer.filename, "urls": writer.urls,
            "start_time": writer.start_time, "end_time": writer.end_time,
            "duration": writer.duration(), "points": done, "npoints": expected,
            "end_reason": writer.end_reason, "resumed": writer.resumed,
            "warning": writer.warning, "backlog_events": backlog_events,
            "backlog_bytes": backlog_bytes,
        }


class NexusSessionWriter(Subscriber):
    """Write every scan of ``session`` to its NeXus file.

    ``NexusSessionWriter(session, redis_url=None, options=None,
    reader_name="nexus_writer", resume=True, poll_interval=0.25)``

    ``session`` is a session name (its source is chosen by
    :func:`~nexus_writer_service.data.opener.open_session`) or a
    :class:`~nexus_writer_service.data.source.SessionSource`.
    ``reader_name`` is registered with the session so the publisher keeps what the
    writer has not written yet; ``resume`` completes unfinished scans on start.
    ``parked``: the files its scans could not close when the disk was full (see
    :mod:`~nexus_writer_service.io.parking`); the writer owns a new one when None.
    Give a writer that replaces another in the same process the one of its
    predecessor, so that it completes and closes what that one left open.
    """

    def __init__(self, session: "str | SessionSource", redis_url: Optional[str] = None,
                 options: Optional[SaveOptions] = None, reader_name: str = "nexus_writer",
                 resume: bool = True, poll_interval: float = 0.25,
                 parked: Optional[ParkedFiles] = None) -> None:
        node = open_session(session, redis_url) if isinstance(session, str) else session
        super().__init__(node, SubscriberMode.SEQUENTIAL,
                         name=f"NexusSessionWriter({node.name})", poll_interval=poll_interval)
        self.options = options or SaveOptions()
        self.reader_name = reader_name
        self.resume = resume
        self.parked = ParkedFiles() if parked is None else parked
        self._records: dict[str, ScanRecord] = {}
        self._records_lock = threading.Lock()
        self._scan_worker: Optional[Thread] = None
        self._compression: Optional[CompressionPool] = None

    # -- queries (any thread) ----------------------------------------------------

    def scans(self) -> list[ScanRecord]:
        """Every scan still listed, oldest first."""
        with self._records_lock:
            return list(self._records.values())

    def scan(self, name: str) -> ScanRecord:
        """The scan named ``name`` (``"<number>_<name>"``) or with Redis key ``name``
        (the latest one, if Redis lost its data and a key or name came back).

        :raises ScanStateError: no such scan (never seen, or purged)
        """
        with self._records_lock:
            for record in reversed(self._records.values()):
                if name in (record.name, record.key):
                    return record
            known = ", ".join(r.name for r in self._records.values()) or "none"
        raise ScanStateError(f"{self.name} has no scan {name!r} (known: {known})")

    def running_scans(self) -> list[ScanRecord]:
        return [r for r in self.scans() if r.state is SubscriberState.ON]

    # -- control (start thread) --------------------------------------------------

    def stop_scan(self, name: str, timeout: Optional[float] = None) -> None:
        """Stop writing scan ``name``: what was received is written, the file is
        left resumable (status RUNNING)."""
        self.scan(name).writer.stop(wait=timeout is not None, timeout=timeout)

    def kill_scan(self, name: str, timeout: Optional[float] = None) -> None:
        """Stop writing scan ``name`` at once: the file is closed with status FAILED."""
        self.scan(name).writer.kill(wait=timeout is not None, timeout=timeout)

    def purge(self, delay: Optional[float] = None) -> list[str]:
        """Forget finished scans that ended more than ``delay`` seconds ago
        (``options.purge_delay`` by default); returns their names."""
        delay = self.options.purge_delay if delay is None else delay
        now = time.time()
        purged = []
        with self._records_lock:
            for key, record in list(self._records.items()):
                if record.writer.done() and record.ended is None:
                    record.ended = now
                if record.ended is not None and now - record.ended >= delay:
                    del self._records[key]
                    purged.append(record.name)
        return purged

    # -- subscriber hooks --------------------------------------------------------

    def _on_start(self) -> None:
        self.node.register_reader(self.reader_name)
        worker = Thread(name=f"{self.name}-worker")
        worker.start(timeout=_STOP_TIMEOUT)
        worker.apply(lower_this_thread)  # and the compression threads it starts
        self._scan_worker = worker
        if self.options.compression_threads:
            self._compression = CompressionPool(self.options.compression_threads,
                                                name=f"{self.node.name}-compressor")

    def _walk_events(self, stop: StopHandle) -> Iterator[SubscriberEvent]:
        # the position is taken now, before the subscriber says it listens: a scan
        # created once ``start(wait=True)`` returns is after it (a generator would
        # take it only when first asked for an event, maybe after that scan)
        return self._events(stop, self.node.current_position())

    def _events(self, stop: StopHandle, position: str) -> Iterator[SubscriberEvent]:
        node: SessionSource = self.node
        if self.resume:
            for key in self._unfinished(node):
                yield EventType.NEW_NODE, self._prefetched(node.scan(key)), EventData(position)
        for event_type, scan, data in node.walk_on_new_events(
                from_position=position, stop=stop, poll_interval=self._poll_interval):
            if event_type is EventType.NEW_NODE:
                scan = self._prefetched(scan)
            yield event_type, scan, data

    def _prefetched(self, scan: ScanSource) -> ScanSource:
        """Reader thread: read what :meth:`_start_scan` needs of a new scan (number,
        name, scan_info, which the scan source keeps once read), so that the hub it
        runs in, which also answers the Tango clients, neither waits for Redis nor
        decodes JSON. A scan_info over ``max_info_bytes`` is not decoded."""
        try:
            _ = (scan.number, scan.name)
            check_info_size(scan, self.options)
            _ = scan.info
        except NexusWriterError:
            pass  # met again, and reported, by _start_scan
        return scan

    def _unfinished(self, node: SessionSource) -> list[str]:
        """Scans running in Redis, and ended scans whose file this writer started
        but did not finish (its acknowledgement is short of the scan's end)."""
        keys = []
        for key, ended in node.scan_keys():
            scan = node.scan(key)
            try:
                acked = scan.acknowledged(self.reader_name)
                if ended and (acked is None or acked == scan.current_position()):
                    continue
            except NodeNotFoundError:
                continue
            keys.append(key)
        return keys

    def _process_event(self, event_type: EventType, node: Any, event_data: EventData) -> None:
        if event_type is EventType.NEW_NODE:
            self.purge()
            self._start_scan(node)
        elif event_type is EventType.END_SCAN:
            logger.info("%s: scan %s ended (%s)", self.name, node.key,
                        event_data.reason.value if event_data.reason else "?")

    def _start_scan(self, scan: ScanSource) -> None:
        known = self._records.get(scan.key)
        if known is not None and not known.writer.done():
            return  # already being written
        # a finished writer of this scan is replaced only when the scan is resumed
        # (restart after stop): the new writer continues from the acknowledgement
        try:
            name = f"{scan.number}_{scan.name}"
            check_info_size(scan, self.options)
            info = scan.info
        except MalformedEventError as exc:
            # its scan writer goes FAULT with this reason: the session carries on
            logger.error("%s: scan %s has malformed metadata: %s", self.name, scan.key, exc)
            info, name = {}, scan.key
        except NexusWriterError as exc:
            # too large to be read: its scan writer goes FAULT with this reason
            logger.error("%s: %s", self.name, exc)
            info = {}
        if known is not None and known.writer.node.uid != scan.uid:
            self._keep_listed(known)
        if not info.get("save", True):
            logger.info("%s: scan %s is not saved (scan_info save=False)", self.name, name)
            return
        writer = NexusScanWriter(scan, self.options, worker=self._scan_worker,
                                 reader_name=self.reader_name,
                                 name=f"NexusScanWriter({name})",
                                 poll_interval=self._poll_interval, parked=self.parked,
                                 compression=self._compression)
        with self._records_lock:
            self._records[scan.key] = ScanRecord(scan.key, name, writer,
                                                 filename=str(info.get("filename") or ""))
        logger.info("%s: writing scan %s to %s", self.name, name, info.get("filename"))
        writer.start()

    def _keep_listed(self, record: ScanRecord) -> None:
        """Redis lost its data and gave ``record``'s key to a new scan: the old scan
        stays listed, with its state and reason, under another internal key."""
        alias = f"{record.key}#{record.writer.node.uid or id(record)}"
        with self._records_lock:
            self._records = {alias if value is record else key: value
                             for key, value in self._records.items()}

    def _on_stop(self) -> None:
        for record in self.scans():
            if record.writer.done():
                continue
            try:
                record.writer.stop(wait=True, timeout=_STOP_TIMEOUT)
            except WaitTimeout:
                logger.error("%s: %s did not stop; killing it", self.name, record.writer.name)
                record.writer.kill()
        worker, self._scan_worker = self._scan_worker, None
        if worker is not None:
            worker.stop(timeout=_STOP_TIMEOUT)
        compression, self._compression = self._compression, None
        if compression is not None:
            compression.close(timeout=_STOP_TIMEOUT)
        self.purge()
