"""blissdata 2.x, the data layer of BLISS 2.x, as a scan source (:mod:`.source`).

BLISS 2.x publishes each scan through blissdata: a JSON document per scan (its
identity: name, number, session, data policy fields; its ``info``, the scan_info;
the models of its streams), one Redis stream per channel, a state stream
(CREATED -> PREPARED -> STARTED -> STOPPED -> CLOSED) and one ``_SCAN_HISTORY_``
stream that announces every new scan of every session. Everything is read here with
blissdata's own reader API (:class:`blissdata.DataStore`, ``load_scan``,
``Scan.update``, its stream models and views), but two things, each measured to be
much faster and tested against blissdata's reader on the same data:

* when a writer starts, the scans ``_SCAN_HISTORY_`` lists (up to 2048) are read in
  batches, with the session of each from its document (``BlissdataSession._history``;
  15 times faster);
* the entries of a scan's streams are read in one ``XREAD`` for all streams and
  decoded as blissdata decodes them, without its per-entry objects
  (:class:`~.blissdata_streams.Cursors`: 1.5 to 2.4 times less CPU than
  blissdata's ``CursorGroup``).

What the writers see is the event model of every source:

* the session walk announces a scan of the session at CREATED (BLISS asks the
  writer whether it knows the scan before it prepares it) if it is to be written:
  ``save`` true and ``data_writer`` ``"nexus"`` in its scan_info; others are
  skipped, with the reason logged;
* a scan walk waits for PREPARED, declares one subscan per top master of
  ``scan_info["acquisition_chain"]``, one channel per numeric stream and one lima
  node per lima detector whose frames are saved (:mod:`.blissdata_lima`), gives
  PREPARED_SCAN, then the blocks of points as the cursors read them (point index
  and all) and the last status of each lima stream read as its progress, and
  END_SCAN once the scan is CLOSED and every stream was read, with
  ``scan_info["end_reason"]`` mapped onto ours (:data:`END_REASONS`).

A position is ``"<state>:<n1>,<n2>,..."``: the scan state reached and how many
points of each numeric stream, or statuses of each lima stream (in the order of
:func:`~.blissdata_streams.stream_order`: their names at PREPARED, then the streams
created later), were given; a writer
acknowledges it in a hash of ours, ``nws-blissdata:<scan key>:acks``, since
blissdata keeps no readers' positions.

blissdata has no publisher lease either: a scan whose publisher died is never
closed. A walk takes the publisher as lost when the scan was given no point and
changed no state for ``idle_timeout`` seconds (a session option, 10 minutes by
default: BLISS scans legitimately wait, a long count, a sleep between points), and
ends it with END_SCAN ``PUBLISHER_LOST``, the silence named in the message. The
verdict is kept in a key of ours, ``nws-blissdata:<scan key>:lost``, as our own
source keeps the end of a scan whose lease expired: a writer started again later
ends that scan as soon as it read what the streams hold, and lists it as ended.

Thread-safety: a session and its scans may be used from any thread; each walk
blocks its own thread and honours ``stop`` within ``poll_interval``. blissdata's
objects (scans, streams, cursors) never leave the walk that created them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Generator, Iterable, Iterator

from blissdata.exceptions import NoScanAvailable
from blissdata.redis_engine.scan import ScanState
from blissdata.redis_engine.store import DataStore

from ..errors import MalformedEventError, NexusWriterError, NodeNotFoundError
from .blissdata_progress import END_REASONS, START, end_reason, wait_time, with_socket_timeout
from .blissdata_scan import DEFAULT_IDLE_TIMEOUT, PROTOCOL_KEY, SCAN_HISTORY, BlissdataScan
from .connection import Client, connect, redis_errors, resolve_redis_url, translated
from .events import EndReason, EventData, EventType
from .keys import check_name
from .opener import check_idle_timeout
from .source import Event, ScanSource, SessionSource, StopHandle

__all__ = ["BlissdataSession", "BlissdataScan", "DEFAULT_IDLE_TIMEOUT", "END_REASONS",
           "PROTOCOL_KEY", "SCAN_HISTORY", "is_blissdata_database"]

logger = logging.getLogger(__name__)

#: How many entries of ``_SCAN_HISTORY_`` are read at once when a writer starts.
HISTORY_BATCH = 512


def is_blissdata_database(client: Client) -> bool:
    """Whether the Redis of ``client`` was set up for blissdata (or holds its scans)."""
    with redis_errors("looking for blissdata"):
        return bool(client.exists(PROTOCOL_KEY, SCAN_HISTORY))


class BlissdataSession:
    """A BLISS session whose scans blissdata publishes, as a :class:`~.source.SessionSource`.

    ``redis_url``: the Redis of BLISS (else ``REDIS_URL``). Creating it does not
    connect yet. ``connection`` is a client of ours on the same Redis (the writer's
    session lease, acknowledgements). ``idle_timeout``: seconds without a point or a
    state change after which a scan never closed is ended ``PUBLISHER_LOST`` (see the
    module).

    :raises ConfigurationError: ``idle_timeout`` is not a positive number"""

    #: which source this is (see :mod:`.opener`)
    data_source = "blissdata"

    def __init__(self, name: str, redis_url: str | None = None, *,
                 client: Client | None = None,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self.idle_timeout = check_idle_timeout(idle_timeout)
        self._name = check_name(name)
        self._url = resolve_redis_url(redis_url)
        self._client = client if client is not None else connect(self._url, retry_dropped=True)
        self._store: DataStore | None = None
        self._store_lock = threading.Lock()
        #: the scans to write announced by a walk and not closed yet (what ``scan``
        #: gives for them): a scan is forgotten once closed, so that a writer running
        #: for months keeps no trace of the scans it wrote nor of those it skipped
        self._running: dict[str, BlissdataScan] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def connection(self) -> Client:
        return self._client

    def data_store(self) -> DataStore:
        """blissdata's :class:`DataStore` on the Redis (one per session source).

        :raises NodeNotFoundError: the database is not set up for blissdata yet"""
        with self._store_lock:
            if self._store is None:
                with redis_errors(f"reading {PROTOCOL_KEY}"):
                    ready = self._client.exists(PROTOCOL_KEY)
                if not ready:
                    raise NodeNotFoundError(
                        f"the Redis of session {self._name!r} is not set up for blissdata "
                        f"(no {PROTOCOL_KEY} key): BLISS sets it up when it starts")
                try:
                    self._store = DataStore(with_socket_timeout(self._url))
                except RuntimeError as exc:
                    raise MalformedEventError(f"blissdata refuses the Redis: {exc}") from None
            return self._store

    def current_position(self) -> str:
        """The position of the last scan announced in ``_SCAN_HISTORY_`` (any session)."""
        try:
            store = self.data_store()
        except NodeNotFoundError:
            return START
        return str(store.get_last_scan_timetag())

    def scan(self, key: str) -> BlissdataScan:
        running = self._running.get(key)
        if running is not None:
            return running
        if not key.startswith("esrf:scan:"):
            raise ValueError(f"{key!r} is not the key of a blissdata scan (esrf:scan:<id>)")
        return BlissdataScan(self, key)

    def _written(self, key: str, announce: bool) -> BlissdataScan | None:
        """The scan ``key`` if it is one of this session's to write, else None (the
        reason logged when ``announce``). Nothing is kept: each scan is announced once
        per walk, and which scans a writer finished is known from its acknowledgements
        (the session writer checks them when it starts)."""
        scan = BlissdataScan(self, key)
        reason = ""
        try:
            session = scan.session_name
        except NodeNotFoundError:
            return None  # deleted meanwhile: nothing to write
        except MalformedEventError as exc:
            if self._raw_session(key) != self._name:
                logger.error("session %s: %s (its session cannot be told: skipped)",
                             self._name, exc)
                return None
            # announced: its writer goes FAULT with the reason, naming the key
            logger.error("session %s: %s", self._name, exc)
            return scan
        if session != self._name:
            return None
        info = scan.info
        if info.get("save") is not True:
            reason = f"scan_info save={info.get('save')!r}"
        elif info.get("data_writer") != "nexus":
            reason = f"scan_info data_writer={info.get('data_writer')!r}, not 'nexus'"
        if reason:
            if announce:
                logger.info("session %s: scan %s (%d_%s) is not written: %s", self._name,
                            key, scan.number, scan.name, reason)
            return None
        return scan

    def _raw_session(self, key: str) -> str | None:
        """The session named in the document ``key``, read as JSON without blissdata:
        only to tell whose a document blissdata refuses is (its writer then goes FAULT
        naming the key, and other sessions' writers ignore it)."""
        try:
            with redis_errors(f"reading the session of {key}"):
                raw = self._client.execute_command("JSON.GET", key, "$.id.session")
        except NexusWriterError:
            return None
        return _session_of(raw)

    def scan_keys(self) -> list[tuple[str, bool]]:
        """The session's scans to write that ``_SCAN_HISTORY_`` still lists, oldest
        first: ``(key, ended)`` (ended: CLOSED)."""
        try:
            store = self.data_store()
        except NodeNotFoundError:
            return []
        keys = [key for key in self._history() if self._written(key, announce=False)]
        states = self._states(store, keys)
        return [(key, states.get(key, ScanState.CLOSED) >= ScanState.CLOSED) for key in keys]

    def _history(self) -> Iterator[str]:
        """The scans that ``_SCAN_HISTORY_`` lists, oldest first, less those deleted and
        those of other sessions, read :data:`HISTORY_BATCH` at a time: one ``XRANGE``
        and one pipeline (the TTL and the session of each scan) per batch, where
        blissdata's ``get_next_scan`` takes two round trips per scan (up to 2048 scans
        when a writer starts). What blissdata's reader skips is skipped the same way:
        a scan whose key expires within 10 s is being deleted."""
        since = "-"
        while True:
            with redis_errors(f"reading {SCAN_HISTORY}"):
                entries: list[Any] = list(self._client.xrange(SCAN_HISTORY, min=since,
                                                              count=HISTORY_BATCH) or [])
            if not entries:
                return
            since = "(" + _text(entries[-1][0])
            keys = [_text((fields or {}).get(b"key", b"")) for _, fields in entries]
            keys = [key for key in keys if key.startswith("esrf:scan:")]
            if keys:
                with redis_errors(f"reading the scans listed in {SCAN_HISTORY}"):
                    pipe = self._client.pipeline(transaction=False)
                    for key in keys:
                        pipe.ttl(key)
                    pipe.execute_command("JSON.MGET", *keys, "$.id.session")
                    *ttls, sessions = pipe.execute()
                for key, ttl, raw in zip(keys, ttls, sessions):
                    if ttl != -1 and ttl <= 10:
                        continue  # deleted, or being deleted
                    session = _session_of(raw)
                    if session is None or session == self._name:
                        yield key  # a session that cannot be read: _written says why
            if len(entries) < HISTORY_BATCH:
                return

    def _states(self, store: DataStore, keys: list[str]) -> dict[str, ScanState]:
        """The state of each scan: all at once (``get_scans_state``), else one by one
        (a scan that cannot be read, or is gone, counts as CLOSED: nothing will come;
        so does a scan whose publisher a walk took as lost)."""
        if not keys:
            return {}
        try:
            states = dict(store.get_scans_state(keys))
        except (TypeError, ValueError, KeyError, IndexError, AttributeError):
            states = {}
            for key in keys:
                try:
                    states[key] = ScanState(BlissdataScan(self, key)._load().state)
                except (NodeNotFoundError, MalformedEventError, ValueError):
                    states[key] = ScanState.CLOSED
        for key in self._lost(k for k, state in states.items() if state < ScanState.CLOSED):
            states[key] = ScanState.CLOSED
        return states

    def _lost(self, keys: Iterable[str]) -> list[str]:
        """Those of the scans ``keys`` whose publisher a walk took as lost."""
        keys = list(keys)
        if not keys:
            return []
        with redis_errors("reading which scans lost their publisher"):
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.exists(BlissdataScan(self, key)._lost_key)
            found = pipe.execute()
        return [key for key, lost in zip(keys, found) if lost]

    def register_reader(self, reader: str) -> None:
        """Nothing to do: blissdata keeps a scan until it is deleted, whoever reads it."""

    def walk_on_new_events(self, *, from_position: str | None = None,
                           stop: StopHandle | None = None, poll_interval: float = 0.25
                           ) -> Iterator[Event]:
        """NEW_NODE when a scan of the session to write is created, END_SCAN when it is
        closed, after ``from_position`` (a ``_SCAN_HISTORY_`` position; else now).

        :raises RedisUnavailableError: Redis cannot be reached (blissdata's own calls
            included)"""
        return translated(f"reading the scans of session {self._name!r} from blissdata",
                          self._walk(from_position, stop, poll_interval))

    def _walk(self, from_position: str | None, stop: StopHandle | None,
              poll_interval: float) -> Generator[Event, None, None]:
        since = from_position or self.current_position()
        running: dict[str, BlissdataScan] = {}
        last_check = time.monotonic()
        try:
            while stop is None or not stop.is_set():
                try:
                    store = self.data_store()
                except NodeNotFoundError:
                    time.sleep(poll_interval)
                    continue
                try:
                    since, key = store.get_next_scan(since=since, block=True,
                                                     timeout=wait_time(poll_interval))
                except NoScanAvailable:
                    key = None
                if key is not None:
                    scan = self._written(key, announce=True)
                    if scan is not None:
                        running[key] = self._running[key] = scan
                        yield EventType.NEW_NODE, scan, EventData(since)
                now = time.monotonic()
                if running and (key is None or now - last_check >= poll_interval):
                    last_check = now
                    yield from self._closed(store, running, since)
        finally:
            for key in running:
                self._running.pop(key, None)

    def _closed(self, store: DataStore, running: dict[str, BlissdataScan], position: str
                ) -> Iterator[Event]:
        """END_SCAN for the running scans that were closed (or deleted)."""
        keys = list(running)
        states = self._states(store, keys)
        for key in keys:
            if states.get(key, ScanState.CLOSED) < ScanState.CLOSED:
                continue
            scan = running.pop(key)
            self._running.pop(key, None)
            try:
                loaded = scan._load()
                info = loaded.info
                if loaded.state < ScanState.CLOSED:  # never closed: see _states
                    reason = EndReason.PUBLISHER_LOST
                else:
                    reason, _ = end_reason(info if isinstance(info, dict) else {}, key)
            except (NodeNotFoundError, MalformedEventError):
                reason = EndReason.ABORTED
            yield EventType.END_SCAN, scan, EventData(position, reason=reason)

    def __repr__(self) -> str:
        return f"<BlissdataSession {self._name!r}>"


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _session_of(raw: bytes | str | None) -> str | None:
    """The session of a scan document from ``JSON.GET``/``JSON.MGET`` of
    ``$.id.session`` (None when it is not a text)."""
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    if isinstance(found, list) and found and isinstance(found[0], str):
        return str(found[0])
    return None


if TYPE_CHECKING:  # both implement the protocol (checked by mypy)
    _session: SessionSource = BlissdataSession("session")
    _scan: ScanSource = _session.scan("key")
