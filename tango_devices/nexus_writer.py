"""The ``NexusWriter`` Tango device: one session's NeXus writer, watched by Tango clients.

Green mode (gevent): every request, ``init_device`` and ``delete_device`` run as
greenlets in the server's main thread, which is where the device's
:class:`~nexus_writer_service.subscribers.NexusSessionWriter` runs too. HDF5 I/O
happens in the session writer's worker thread and Redis reads in reader threads,
so attribute reads are answered while the writer works flat out.

A *monitor* greenlet looks at the session writer every ``_MONITOR_PERIOD``: it sets
the device state (INIT, ON, RUNNING, OFF, FAULT) and status, pushes change events
for ``State`` and ``scan_states``, purges finished scans after ``purge_delay`` and
announces state and scan starts/ends through ``channels`` (see :mod:`.announce`).
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import time
from typing import Any, Callable, Optional, TypeVar

import gevent
import numpy.typing  # noqa: F401  pytango 10.3.1 reads np.typing, which numpy < 2 loads on demand
import tango
from tango import AttrWriteType, DevState, GreenMode
from tango.server import Device, attribute, command, device_property

from channels.connection import redact
from nexus_writer_service.data.opener import open_session
from nexus_writer_service.data.session_lease import SessionLease
from nexus_writer_service.errors import (
    ConfigurationError,
    NexusWriterError,
    RedisUnavailableError,
    ScanStateError,
    SessionTakenError,
)
from nexus_writer_service.io import checks
from nexus_writer_service.io.options import SaveOptions, option_help
from nexus_writer_service.io.parking import ParkedFiles
from nexus_writer_service.profiling import Profiler, ResourceProfiling
from nexus_writer_service.subscribers import NexusSessionWriter, ScanRecord, SubscriberState

from .announce import Announcer, ScanAnnouncements
from .classic import (
    PY_LEVEL,
    SCAN_DEVSTATE,
    SESSION_DEVSTATE,
    TANGO_LEVEL,
    WRITER_LOGGERS,
    LogLevel,
    classic_rows,
    from_py_level,
    scan_info_columns,
)
from .session_hold import SessionHold
from .throughput import PointRate

__all__ = ["NexusWriter", "SAVE_OPTION_PROPERTIES", "UNSUPPORTED_PROPERTIES"]

logger = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])

_MONITOR_PERIOD = 0.1
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 60.0
_RATE_WINDOW = 5.0
#: Seconds before the first attempt to restart a session writer that failed (Redis
#: down...), and the longest between two attempts (each waits twice the one before).
FIRST_RETRY = 0.1
RETRY_PERIOD = 5.0
_MAX_SCANS = 100000
_HELP = option_help()
_DEFAULTS = SaveOptions()

#: Device properties that are save options (their names are SaveOptions fields).
SAVE_OPTION_PROPERTIES = (
    "keepshape", "multivalue_positioners", "disable_external_hdf5",
    "enable_external_nonhdf5", "copy_non_external", "short_names",
    "strict_names", "stack_mcas", "allowed_roots", "required_disk_space",
    "recommended_disk_space",
    "chunk_bytes", "chunk_split", "compression", "compression_limit_nbytes",
    "compression_threads", "flush_period",
    "lima_refresh_period", "purge_delay",
    "disk_check_period", "file_mode", "lock_retry_time", "max_channels", "max_info_bytes",
    "max_dataset_bytes",
)

#: Save options of the BLISS writer this writer does not implement: accepted as
#: properties so existing configurations load, reported in Status when enabled.
#: ``noconfig`` ignores the writer configuration BLISS puts in the scan_info
#: (``nexuswriter``), which this writer does not read yet.
UNSUPPORTED_PROPERTIES: tuple[str, ...] = ("noconfig",)


def _option_property(name: str, dtype: Any) -> Any:
    default = getattr(_DEFAULTS, name)
    if name == "allowed_roots":
        default = list(default) or [""]
    elif name == "file_mode":
        default = f"{default:o}"
    return device_property(dtype=dtype, default_value=default, doc=_HELP[name])


def _throw(reason: str, message: str, origin: str) -> None:
    tango.Except.throw_exception(reason, message, origin)


def _translate(func: _F) -> _F:
    """Commands raise ``DevFailed`` whose reason is the error class and whose
    description is the message (not a Python traceback)."""
    @functools.wraps(func)
    def wrapper(self: "NexusWriter", *args: Any) -> Any:
        try:
            return func(self, *args)
        except (NexusWriterError, OSError, ValueError) as exc:
            _throw(f"NexusWriter_{type(exc).__name__}", str(exc),
                   f"{self.get_name()}.{func.__name__}")
    return wrapper  # type: ignore[return-value]


def _iso(value: Optional[str]) -> str:
    return value or ""


class NexusWriter(Device):
    """Writes every scan of the session ``session`` to NeXus HDF5 files.

    Properties: ``session`` (required), ``redis_url`` (default: ``REDIS_URL`` of the
    server's environment) and the save options. ``Init`` re-reads them (scans being
    written are stopped and resumed by the new writer).
    """

    green_mode = GreenMode.Gevent

    session = device_property(dtype=str, default_value="",
                              doc="name of the session whose scans are written (required)")
    redis_url = device_property(dtype=str, default_value="",
                                doc="URL of the data Redis (default: REDIS_URL of the server)")
    data_source = device_property(
        dtype=str, default_value="auto",
        doc="where the scans come from: nws (our own streams), blissdata (BLISS 2.x), or "
            "auto: chosen from what the Redis holds when the writer starts (the status "
            "says which)")
    blissdata_idle_timeout = device_property(
        dtype=float, default_value=600.0,
        doc="blissdata has no publisher lease: seconds without a point or a state change "
            "after which a scan never closed is ended with PUBLISHER_LOST (keep it longer "
            "than any pause of a scan)")
    keepshape = _option_property("keepshape", bool)
    multivalue_positioners = _option_property("multivalue_positioners", bool)
    disable_external_hdf5 = _option_property("disable_external_hdf5", bool)
    enable_external_nonhdf5 = _option_property("enable_external_nonhdf5", bool)
    copy_non_external = _option_property("copy_non_external", bool)
    short_names = _option_property("short_names", bool)
    strict_names = _option_property("strict_names", bool)
    stack_mcas = _option_property("stack_mcas", bool)
    allowed_roots = _option_property("allowed_roots", (str,))
    required_disk_space = _option_property("required_disk_space", float)
    recommended_disk_space = _option_property("recommended_disk_space", float)
    chunk_bytes = _option_property("chunk_bytes", int)
    chunk_split = _option_property("chunk_split", int)
    compression = _option_property("compression", str)
    compression_limit_nbytes = _option_property("compression_limit_nbytes", int)
    compression_threads = _option_property("compression_threads", int)
    flush_period = _option_property("flush_period", float)
    lima_refresh_period = _option_property("lima_refresh_period", float)
    purge_delay = _option_property("purge_delay", float)
    disk_check_period = _option_property("disk_check_period", float)
    file_mode = _option_property("file_mode", str)
    lock_retry_time = _option_property("lock_retry_time", float)
    max_channels = _option_property("max_channels", int)
    max_info_bytes = _option_property("max_info_bytes", int)
    max_dataset_bytes = _option_property("max_dataset_bytes", int)
    # Classic names: ``stackmca`` (BLISS <= 1.11) is stack_mcas, ``chunk_nbytes``
    # (BLISS's chunk_options) is chunk_bytes; ``noconfig`` is not supported (see
    # UNSUPPORTED_PROPERTIES).
    stackmca = device_property(dtype=bool, default_value=False,
                               doc="same as stack_mcas (the name of BLISS <= 1.11)")
    chunk_nbytes = device_property(dtype=int, default_value=0,
                                   doc="same as chunk_bytes (BLISS's chunk_options name)")
    standby = device_property(
        dtype=bool, default_value=False,
        doc="when another writer writes the session, wait (state STANDBY) and take over "
            "when it stops (default: refuse, FAULT, after one lease time)")
    noconfig = device_property(
        dtype=bool, default_value=False,
        doc="ignore the writer configuration in the scan_info (not supported yet)")

    #: The files the writers of this server could not close when the disk was full,
    #: shared by its devices and kept across Init: the writer of a new Init completes
    #: and closes what its predecessor left open, and a master file that one
    #: session's writer left open is released before another's opens it.
    parked_files = ParkedFiles()

    # -- life cycle -----------------------------------------------------------

    def init_device(self) -> None:
        self._writer: Optional[NexusSessionWriter] = None
        self._options: Optional[SaveOptions] = None
        self._url: Optional[str] = None
        self._fault: Optional[str] = None
        self._notes: list[str] = []
        self._monitor: Optional[gevent.Greenlet] = None
        self._announcer: Optional[Announcer] = None
        self._last_states: Optional[tuple[tuple[str, SubscriberState], ...]] = None
        self._scan_news = ScanAnnouncements()
        self._rate = PointRate(_RATE_WINDOW)
        self._retry_at: Optional[float] = None
        self._retry_wait = FIRST_RETRY
        self._hold: Optional[SessionHold] = None
        self._profiling = ResourceProfiling.OFF
        self._profiler: Optional[Profiler] = None
        self.set_state(DevState.INIT)
        self.set_status("reading the device properties")
        super().init_device()
        for name in ("State", "Status", "scan_states"):
            self.set_change_event(name, True, False)
        try:
            self._configure()
        except (NexusWriterError, ValueError, TypeError) as exc:
            self._fault = f"invalid configuration: {exc}"
            if isinstance(exc, ConfigurationError):
                self._fault += ("; correct the device property (jive, or "
                                "RegisterNexusWriter) and run Init")
            logger.error("%s: %s", self.get_name(), self._fault)
        else:
            self._announcer = Announcer(self.get_name(), self._url)
            self._start_writer()
        self._update()
        self._monitor = gevent.spawn(self._monitor_loop)

    def delete_device(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.kill()
        self._stop_writer()
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.close()
        self._update()
        self._end_profiling()
        announcer, self._announcer = self._announcer, None
        if announcer is not None:
            announcer.close()

    def _configure(self) -> None:
        session = (self.session or "").strip()
        if not session:
            raise NexusWriterError(
                "the device property 'session' is empty: set it to the session name "
                "(jive, or RegisterNexusWriter) and run Init")
        values = {name: getattr(self, name) for name in SAVE_OPTION_PROPERTIES}
        values["stack_mcas"] = bool(self.stack_mcas or self.stackmca)
        if self.chunk_nbytes:
            if self.chunk_bytes and self.chunk_bytes != self.chunk_nbytes:
                raise ConfigurationError(
                    f"the device properties chunk_bytes ({self.chunk_bytes}) and "
                    f"chunk_nbytes ({self.chunk_nbytes}) are the same option with two "
                    "values: set only one")
            values["chunk_bytes"] = self.chunk_nbytes
        self._options = SaveOptions.from_mapping(values)
        self._url = (self.redis_url or "").strip() or os.environ.get("REDIS_URL") or None
        if self._url is None:
            raise NexusWriterError(
                "no Redis URL: set the device property 'redis_url' or REDIS_URL in the "
                "server's environment")
        self._notes = [f"property {name}=True is not supported and is ignored"
                       for name in UNSUPPORTED_PROPERTIES if getattr(self, name)]
        for note in self._notes:
            logger.warning("%s: %s", self.get_name(), note)

    def _start_writer(self) -> None:
        assert self._options is not None
        self._fault = None
        try:
            source = open_session(self.session.strip(), self._url, self.data_source or "auto",
                                  blissdata_idle_timeout=self.blissdata_idle_timeout)
            self._writer = NexusSessionWriter(source, options=self._options,
                                              parked=self.parked_files)
        except NexusWriterError as exc:
            self._fault = f"cannot start the writer: {exc}"
            logger.error("%s: %s", self.get_name(), self._fault)
            return
        if self._hold is not None:
            self._hold.close()
        self._hold = SessionHold(SessionLease(
            self._writer.node.connection, self._writer.node.name,
            name=f"NexusWriter {self.get_name()}"))
        self._take_session(patient=bool(self.standby))

    def _take_session(self, patient: bool) -> None:
        """Start the writer once it holds the session's lease (see :mod:`.session_hold`)."""
        assert self._hold is not None
        self._fault = None
        self._hold.begin(patient)
        self._follow_lease()

    def _follow_lease(self) -> None:
        """Take the lease when waiting for it, and stop writing when it is lost."""
        hold, writer = self._hold, self._writer
        if hold is None or writer is None:
            return
        if hold.waiting:
            try:
                taken = hold.try_take()
            except (SessionTakenError, RedisUnavailableError) as exc:
                fault = f"cannot start the writer: {exc}"
                if fault != self._fault:  # once per change, not at every attempt
                    logger.error("%s: %s", self.get_name(), fault)
                self._fault = fault
                return
            if taken:
                self._restart_writer(writer)
        elif hold.lost:
            logger.error("%s: %s: stopping the writer (its scans stay resumable) until it "
                         "holds the session again", self.get_name(), hold.lease.lost_reason)
            self._stop_writer()
            hold.release()
            self._take_session(patient=True)

    def _restart_writer(self, writer: NexusSessionWriter) -> None:
        """Start ``writer`` (again: the scans it listed stay listed)."""
        self._fault = None
        try:
            writer.start(wait=True, timeout=_START_TIMEOUT)
        except NexusWriterError as exc:
            self._fault = f"cannot start the writer: {exc}"
        else:
            if writer.state is SubscriberState.FAULT:
                self._fault = f"cannot start the writer: {writer.state_reason}"
        if self._fault is not None:
            logger.error("%s: %s", self.get_name(), self._fault)
        else:
            logger.info("%s: writing session %r from %s", self.get_name(),
                        self.session, redact(self._url or ""))

    def _stop_writer(self) -> None:
        writer = self._writer
        if writer is None or writer.state is not SubscriberState.ON:
            return
        try:
            writer.stop(wait=True, timeout=_STOP_TIMEOUT)
        except NexusWriterError as exc:
            logger.error("%s: stopping the writer: %s", self.get_name(), exc)
        self._rate.sample(self._records())

    # -- state, events and announcements -----------------------------------------

    def _records(self) -> list[ScanRecord]:
        writer = self._writer
        return writer.scans() if writer is not None else []

    def _compute_state(self) -> tuple[DevState, str]:
        writer = self._writer
        notes = "".join(f"\nWarning: {note}" for note in self._notes)
        if self._fault is not None:
            retry = (f"; retrying every {RETRY_PERIOD:g} s" if writer is not None
                     and writer.state is SubscriberState.FAULT else
                     "; retrying" if self._hold is not None and self._hold.waiting else "")
            return DevState.FAULT, self._fault + retry + notes
        if self._hold is not None and self._hold.waiting and self._fault is None:
            return DevState.STANDBY, (f"standby: {self._hold.why or 'taking the session'}; "
                                      "writing as soon as it is free") + notes
        state = SESSION_DEVSTATE[writer.state if writer is not None else SubscriberState.INIT]
        if writer is None or state == DevState.INIT:
            return state, "starting the writer" + notes
        if state == DevState.FAULT:
            return state, (f"the session writer failed: {writer.state_reason}; "
                           f"restarting it every {RETRY_PERIOD:g} s at most") + notes
        if state == DevState.OFF:
            return state, (f"not listening to session {self.session!r} "
                           f"({writer.state_reason}); run start") + notes
        records = self._records()
        running = [r.name for r in records if r.state is SubscriberState.ON]
        faulty = [r.name for r in records if r.state is SubscriberState.FAULT]
        text = f"listening to session {self.session!r}"
        source = getattr(writer.node, "data_source", "")
        if source == "blissdata":
            text += " (BLISS 2.x scans, from blissdata)"
        if faulty:
            text += f"; {len(faulty)} scan(s) in FAULT: {', '.join(faulty[-5:])}"
        if running:
            return DevState.RUNNING, (f"writing {len(running)} scan(s): "
                                      f"{', '.join(running[-5:])}; " + text + notes)
        return DevState.ON, text + notes

    def _update(self) -> None:
        state, status = self._compute_state()
        if state != self.get_state() or status != self.get_status():
            changed = state != self.get_state()
            self.set_state(state)
            self.set_status(status)
            if changed:
                self.push_change_event("State")
                logger.info("%s: %s (%s)", self.get_name(), state, status)
            self.push_change_event("Status", status)
            if self._announcer is not None:
                self._announcer.state({"state": str(state), "status": status,
                                       "running": state == DevState.RUNNING})
        self._follow_profiling()
        records = self._records()
        states = tuple((r.name, r.state) for r in records)
        if states != self._last_states:
            self._last_states = states
            self.push_change_event("scan_states", [SCAN_DEVSTATE[r.state] for r in records])
        if self._announcer is not None:
            for event in self._scan_news.events(records, self.session):
                self._announcer.post(event)

    def _monitor_loop(self) -> None:
        last_purge = time.monotonic()
        while True:
            gevent.sleep(_MONITOR_PERIOD)
            try:
                self._follow_lease()
                self._retry()
                self._rate.sample(self._records())
                self._update()
                if self._writer is not None and time.monotonic() - last_purge > 1.0:
                    last_purge = time.monotonic()
                    self._writer.purge()
            except Exception:  # the monitor must survive anything; the error is logged
                logger.exception("%s: monitor", self.get_name())

    def _retry(self) -> None:
        """Restart a session writer that failed (not one stopped on request): after
        FIRST_RETRY, then twice as long each time, at most every RETRY_PERIOD. Once
        Redis is back, it resumes the unfinished scans."""
        writer = self._writer
        if (writer is None or writer.state is not SubscriberState.FAULT
                or self._hold is None or not self._hold.lease.valid):
            self._retry_at = None
            return
        now = time.monotonic()
        if self._retry_at is None:
            self._retry_wait = FIRST_RETRY
            self._retry_at = now + self._retry_wait
        elif now >= self._retry_at:
            self._retry_wait = min(2 * self._retry_wait, RETRY_PERIOD)
            self._retry_at = now + self._retry_wait
            logger.warning("%s: restarting the session writer (%s)", self.get_name(),
                           writer.state_reason)
            self._restart_writer(writer)

    def _follow_profiling(self) -> None:
        """Profile while scans are written: from the moment the device is RUNNING with
        a ``resource_profiling`` other than OFF until it is no longer RUNNING."""
        wanted = (self.get_state() == DevState.RUNNING
                  and self._profiling is not ResourceProfiling.OFF)
        if wanted and self._profiler is None:
            profiler = Profiler(self._profiling)
            try:
                profiler.start()
            except NexusWriterError as exc:
                logger.error("%s: resource profiling: %s", self.get_name(), exc)
                self._profiling = ResourceProfiling.OFF
                return
            self._profiler = profiler
            logger.info("%s: resource profiling %s started", self.get_name(),
                        self._profiling.name)
        elif not wanted and self._profiler is not None:
            self._end_profiling()

    def _end_profiling(self) -> None:
        profiler, self._profiler = self._profiler, None
        if profiler is not None:
            report = profiler.stop()
            logger.info("%s: resource profiling %s of the scans just written, %s",
                        self.get_name(), profiler.choice.name, report)

    def dev_state(self) -> DevState:
        self._update()
        return self.get_state()

    def dev_status(self) -> str:
        self._update()
        return self.get_status()

    # -- attributes ---------------------------------------------------------------

    def _column(self, func: Callable[[ScanRecord], Any]) -> list[Any]:
        return [func(record) for record in self._records()]

    # The names, the states and scan_state are what clients poll, during scans: they
    # are answered in Tango's request thread, from snapshots (a copy of the list of
    # scans, taken under its lock, and each writer's state), without a trip through
    # the device's hub.

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS, doc="scan names, oldest first",
               green_mode=False)
    def scan_names(self) -> list[str]:
        return self._column(lambda r: r.name)

    @attribute(dtype=(DevState,), max_dim_x=_MAX_SCANS,
               doc="writer state of each scan: ON (writing), OFF (done), FAULT",
               green_mode=False)
    def scan_states(self) -> list[DevState]:
        return self._column(lambda r: SCAN_DEVSTATE[r.state])

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS, doc="why each scan is in its state")
    def scan_states_info(self) -> list[str]:
        return self._column(lambda r: r.writer.state_reason)

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS,
               doc="file::/entry of each scan (comma separated when several entries)")
    def scan_urls(self) -> list[str]:
        return self._column(lambda r: ",".join(r.writer.urls))

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS,
               doc="same as scan_urls (the name of BLISS <= 1.11)")
    def scan_uris(self) -> list[str]:
        return self._column(lambda r: ",".join(r.writer.urls))

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS, doc="start time of each scan (ISO 8601)")
    def scan_start(self) -> list[str]:
        return self._column(lambda r: _iso(r.writer.start_time))

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS,
               doc="end time of each scan (ISO 8601; empty while it runs)")
    def scan_end(self) -> list[str]:
        return self._column(lambda r: _iso(r.writer.end_time))

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS,
               doc="'<scan>: <h:mm:ss.ffffff>' of each scan: how long it has been (or "
                   "was) written")
    def scan_duration(self) -> list[str]:
        return classic_rows(self._records(), lambda r: [
            str(datetime.timedelta(seconds=r.writer.duration()))])

    @attribute(dtype=(float,), max_dim_x=_MAX_SCANS, unit="s",
               doc="seconds each scan has been (or was) written")
    def scan_duration_seconds(self) -> list[float]:
        return self._column(lambda r: r.writer.duration())

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS,
               doc="points written / points expected of each scan ('?' when unknown)")
    def scan_progress(self) -> list[str]:
        def text(record: ScanRecord) -> str:
            done, expected = record.writer.progress
            return f"{done}/{expected if expected else '?'}"
        return self._column(text)

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS,
               doc="'<scan>: <state> <least>pts-<most>pts duration: ... start: ... end: "
                   "...' of each scan, aligned")
    def scan_info(self) -> list[str]:
        return classic_rows(self._records(), scan_info_columns)

    @attribute(dtype=(str,), max_dim_x=_MAX_SCANS,
               doc="everything known about each scan, as JSON")
    def scan_info_json(self) -> list[str]:
        return self._column(lambda r: json.dumps(r.as_dict(), default=str))

    @attribute(dtype=float, unit="points/s",
               doc="points written per second, all scans, over the last 5 s")
    def throughput(self) -> float:
        return self._rate.per_second

    @attribute(dtype=int, doc="events read from Redis and not yet written, all scans")
    def backlog_events(self) -> int:
        return sum(r.writer.backlog[0] for r in self._records())

    @attribute(dtype=float, unit="MiB",
               doc="MiB read from Redis and not yet written, all scans")
    def backlog_size(self) -> float:
        return sum(r.writer.backlog[1] for r in self._records()) / 2**20

    @attribute(dtype=str, doc="save options in use, as JSON")
    def save_options(self) -> str:
        return json.dumps(self._options.as_dict() if self._options else {})

    @attribute(dtype=ResourceProfiling, access=AttrWriteType.READ_WRITE,
               doc="profile the writer while scans are written and log the top functions "
                   "(CPU or wall time) or source lines (memory) when none is left")
    def resource_profiling(self) -> ResourceProfiling:
        return self._profiling

    @resource_profiling.write  # type: ignore[no-redef]
    def resource_profiling(self, value: int) -> None:
        choice = ResourceProfiling(value)
        if choice is not self._profiling:
            self._end_profiling()
            self._profiling = choice
            self._follow_profiling()

    @attribute(dtype=LogLevel, access=AttrWriteType.READ_WRITE,
               doc="level of the writer's Python log (NOTSET: that of the root logger)")
    def writer_log_level(self) -> LogLevel:
        level = logging.getLogger(WRITER_LOGGERS[0]).getEffectiveLevel()
        return from_py_level(level)

    @writer_log_level.write  # type: ignore[no-redef]
    def writer_log_level(self, value: int) -> None:
        level = PY_LEVEL[LogLevel(value)]
        for name in WRITER_LOGGERS:
            logging.getLogger(name).setLevel(level)

    @attribute(dtype=LogLevel, access=AttrWriteType.READ_WRITE,
               doc="level of the device's Tango log (NOTSET: off)")
    def tango_log_level(self) -> LogLevel:
        level = int(self.get_logger().get_level())
        for name, value in TANGO_LEVEL.items():
            if value == level:
                return name
        return LogLevel.NOTSET

    @tango_log_level.write  # type: ignore[no-redef]
    def tango_log_level(self, value: int) -> None:
        self.get_logger().set_level(TANGO_LEVEL[LogLevel(value)])

    # -- commands -----------------------------------------------------------------

    def _scan(self, name: str) -> ScanRecord:
        writer = self._writer
        if writer is None:
            raise ScanStateError(f"{self.get_name()} has no writer ({self._fault}); "
                                 f"no scan {name!r}")
        return writer.scan(name)

    def _scan_file(self, name: str) -> str:
        record = self._scan(name)
        # never the writer's info: that may read and decode the scan_info in this call
        filename = record.writer.filename or record.filename
        if not filename:
            raise ScanStateError(f"scan {name!r} has no filename in its scan_info")
        return str(filename)

    def _known_scan(self, name: str) -> Optional[ScanRecord]:
        try:
            return self._scan(name)
        except ScanStateError:
            return None

    @command(dtype_in=str, dtype_out=DevState, doc_in="scan name",
             doc_out="ON (writing), OFF (done), FAULT, or UNKNOWN (not known)",
             cmd_green_mode=False)
    def scan_state(self, name: str) -> DevState:
        record = self._known_scan(name)
        return DevState.UNKNOWN if record is None else SCAN_DEVSTATE[record.state]

    @command(dtype_in=str, dtype_out=str, doc_in="scan name", doc_out="why it is in its state")
    def scan_state_reason(self, name: str) -> str:
        record = self._known_scan(name)
        if record is None:
            return (f"scan {name!r} is not known to {self.get_name()}: not published "
                    f"(yet) in session {self.session!r}, or purged")
        return record.writer.state_reason

    @command(dtype_in=str, dtype_out=(str,), doc_in="scan name", doc_out="file::/entry URLs")
    @_translate
    def scan_url(self, name: str) -> list[str]:
        return self._scan(name).writer.urls

    @command(dtype_in=str, dtype_out=(str,), doc_in="scan name",
             doc_out="same as scan_url (the name of BLISS <= 1.11)")
    @_translate
    def scan_uri(self, name: str) -> list[str]:
        return self._scan(name).writer.urls

    @command(dtype_in=str, dtype_out=bool, doc_in="scan name",
             doc_out="whether this writer knows the scan (written, or being written)")
    def scan_exists(self, name: str) -> bool:
        try:
            self._scan(name)
        except ScanStateError:
            return False
        return True

    @command(dtype_in=str, dtype_out=bool, doc_in="scan name",
             doc_out="whether the writer may create or write the scan's file")
    @_translate
    def scan_has_write_permissions(self, name: str) -> bool:
        try:
            checks.check_writable(self._scan_file(name))
        except PermissionError:
            return False
        return True

    def _disk_space(self, name: str) -> tuple[str, str]:
        options = self._options or SaveOptions()
        try:
            warning = checks.check_disk_space(self._scan_file(name), options.required_disk_space,
                                              options.recommended_disk_space)
        except OSError as exc:
            return str(exc), str(exc)
        return "", warning or ""

    @command(dtype_in=str, dtype_out=bool, doc_in="scan name",
             doc_out="whether the free space is enough to write (see scan_disk_space_error)")
    @_translate
    def scan_has_required_disk_space(self, name: str) -> bool:
        return not self._disk_space(name)[0]

    @command(dtype_in=str, dtype_out=str, doc_in="scan name",
             doc_out="why the free space is too low to write (empty: enough)")
    @_translate
    def scan_disk_space_error(self, name: str) -> str:
        return self._disk_space(name)[0]

    @command(dtype_in=str, dtype_out=str, doc_in="scan name",
             doc_out="why the free space is below the recommended (empty: enough)")
    @_translate
    def scan_disk_space_warning(self, name: str) -> str:
        return self._disk_space(name)[1]

    @command(dtype_in=str, doc_in="scan name: write what was received, leave it resumable")
    @_translate
    def stop_scan(self, name: str) -> None:
        self._scan(name)
        assert self._writer is not None
        self._writer.stop_scan(name, timeout=_STOP_TIMEOUT)
        self._update()

    @command(dtype_in=str, doc_in="scan name: stop writing it at once (FAULT)")
    @_translate
    def kill_scan(self, name: str) -> None:
        self._scan(name)
        assert self._writer is not None
        self._writer.kill_scan(name, timeout=_STOP_TIMEOUT)
        self._update()

    @command(doc_in="start listening to the session (after stop, or a fault)")
    @_translate
    def start(self) -> None:
        writer = self._writer
        if writer is not None and writer.state is SubscriberState.ON:
            return
        if self._options is None:
            _throw("NexusWriter_Configuration", f"{self._fault}", f"{self.get_name()}.start")
        if writer is not None and writer.done() and self._hold is not None:
            if self._hold.lease.valid:
                self._restart_writer(writer)
            else:
                self._take_session(patient=bool(self.standby))
        else:
            self._start_writer()
        self._update()
        if self._fault is not None:
            _throw("NexusWriter_StartFailed", self._fault, f"{self.get_name()}.start")

    @command(doc_in="stop listening to the session; refused while scans are written")
    @_translate
    def stop(self) -> None:
        writer = self._writer
        if writer is None or writer.state is not SubscriberState.ON:
            return
        running = [r.name for r in writer.running_scans()]
        if running:
            _throw("NexusWriter_ScansRunning",
                   f"{len(running)} scan(s) are being written ({', '.join(running)}): wait "
                   "for them, or stop_scan/kill_scan them first", f"{self.get_name()}.stop")
        self._stop_writer()
        if self._hold is not None:
            self._hold.release()  # a standby elsewhere may take over
        self._update()

    @command(doc_in="forget the finished scans (their files stay)")
    @_translate
    def purge_scans(self) -> None:
        writer = self._writer
        names = writer.purge(delay=0) if writer is not None else []
        if names:
            logger.info("%s: purged %s", self.get_name(), ", ".join(names))
        self._update()

    @command(dtype_in=str, doc_in="absolute directory under the allowed roots: created "
             "with its parents (nothing to do when it exists)")
    @_translate
    def makedirs(self, path: str) -> None:
        if not os.path.isabs(path):
            raise ValueError(f"makedirs needs an absolute path, got {path!r}")
        options = self._options or SaveOptions()
        checks.makedirs_allowed(path, options.allowed_roots)
