"""blissdata 2.x, the data layer of BLISS 2.x, as a scan source (:mod:`.source`).

BLISS 2.x publishes each scan through blissdata: a JSON document per scan (its
identity: name, number, session, data policy fields; its ``info``, the scan_info;
the models of its streams), one Redis stream per channel, a state stream
(CREATED -> PREPARED -> STARTED -> STOPPED -> CLOSED) and one ``_SCAN_HISTORY_``
stream that announces every new scan of every session. Everything is read here with
blissdata's own reader API (:class:`blissdata.DataStore`, ``load_scan``,
``Scan.update``, :class:`blissdata.streams.CursorGroup`), never by parsing its keys.

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
their names), were given; a writer
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
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
from blissdata.exceptions import (
    EndOfStream,
    IndexNoMoreThereError,
    NoScanAvailable,
    ScanLoadError,
    ScanNotFoundError,
)
from blissdata.redis_engine.scan import Scan, ScanState, scan_creation_stream
from blissdata.redis_engine.store import DataStore
from blissdata.streams import CursorGroup
from blissdata.streams.default import Stream

from ..errors import (
    ConfigurationError,
    DataLostError,
    MalformedEventError,
    NexusWriterError,
    NodeNotFoundError,
)
from . import codec
from .connection import Client, connect, redis_errors, resolve_redis_url
from .blissdata_lima import is_lima_info, lima_node_info, lima_progress
from .events import EndReason, EventData, EventType, NodeDeclaration, NodeType
from .keys import check_name
from .nodes import Node, make_node
from .source import Event, ScanSource, SessionSource, StopHandle

__all__ = ["BlissdataSession", "BlissdataScan", "DEFAULT_IDLE_TIMEOUT", "END_REASONS",
           "PROTOCOL_KEY", "SCAN_HISTORY", "is_blissdata_database"]

logger = logging.getLogger(__name__)

#: The key in which blissdata keeps the version of its data layout: present once the
#: database was set up for blissdata (BLISS does it when it starts).
PROTOCOL_KEY = "_PROTOCOL_VERSION_"
#: The stream announcing every new scan, of every session.
SCAN_HISTORY = scan_creation_stream
#: BLISS's end reasons, onto ours: ``(reason, message)``.
END_REASONS: dict[str, tuple[EndReason, str]] = {
    "SUCCESS": (EndReason.SUCCESS, ""),
    "FAILURE": (EndReason.FAILED, ""),
    "USER_ABORT": (EndReason.ABORTED, "aborted by the user"),
    "DELETION": (EndReason.ABORTED, "the scan was deleted from Redis before it ended"),
}
#: How long a reader's acknowledgement of a scan is kept after its last update.
ACK_RETENTION = 7 * 24 * 3600
#: Seconds without a point or a state change after which a scan that was never
#: closed is taken as abandoned by its publisher (see the module).
DEFAULT_IDLE_TIMEOUT = 600.0
_START = "0-0"


def is_blissdata_database(client: Client) -> bool:
    """Whether the Redis of ``client`` was set up for blissdata (or holds its scans)."""
    with redis_errors("looking for blissdata"):
        return bool(client.exists(PROTOCOL_KEY, SCAN_HISTORY))


def _wait_time(seconds: float) -> float:
    """A blocking time for blissdata, which reads 0 as "for ever"."""
    return max(float(seconds), 0.001)


def _with_socket_timeout(url: str, seconds: float = 30.0) -> str:
    """``url`` whose connections give up on a server silent for ``seconds`` (blissdata's
    own blocking reads are much shorter), unless it says otherwise."""
    if "socket_timeout=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}socket_timeout={seconds:g}"


def _duration(seconds: float) -> str:
    """``seconds`` as a person reads it: ``"0.5 s"``, ``"90 s"``, ``"10 min"``."""
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _end_reason(info: Mapping[str, Any], key: str) -> tuple[EndReason, str]:
    raw = info.get("end_reason")
    if raw is None:
        return EndReason.FAILED, "the scan was closed without an end reason"
    try:
        return END_REASONS[str(raw)]
    except KeyError:
        return EndReason.FAILED, f"unknown end reason {raw!r} in the scan_info of {key}"


class _Deleted(Exception):
    """The scan was deleted while it was walked (blissdata gives its keys a few
    seconds to live: its streams can still be read to their end)."""


class _Silence:
    """The clock of a walk that takes the publisher of a silent scan as lost: it
    restarts at every point given and every state change. ``lost``: the verdict is
    already in (another walk gave it, with ``message``): it expires at once."""

    def __init__(self, timeout: float, message: str | None) -> None:
        self.timeout = timeout
        self.message = message
        self._since = time.monotonic()

    def restart(self) -> None:
        self._since = time.monotonic()

    def expired(self) -> bool:
        return self.message is not None or time.monotonic() - self._since >= self.timeout


class _Progress:
    """How far a walk is: the scan state reached and the points given per stream."""

    def __init__(self, state: int = -1, counts: Sequence[int] = ()) -> None:
        self.state = state
        self.counts = list(counts)

    @classmethod
    def parse(cls, position: str | None, nstreams: int | None = None) -> "_Progress":
        if not position or position == _START:
            return cls()
        state, sep, counts = position.partition(":")
        try:
            progress = cls(int(state), [int(n) for n in counts.split(",") if n])
        except ValueError:
            progress = cls(-2)
        valid = sep and progress.state >= 0 and all(n >= 0 for n in progress.counts)
        if not valid or (nstreams is not None and progress.counts
                         and len(progress.counts) != nstreams):
            raise ValueError(f"invalid position {position!r}: expected '<state>:<n1>,<n2>,...' "
                             f"with one count per stream ({nstreams})")
        return progress

    def text(self) -> str:
        return f"{max(self.state, 0)}:{','.join(map(str, self.counts))}"


class BlissdataScan:
    """One blissdata scan, as a :class:`~.source.ScanSource`.

    Its identity is read when first asked for; a document blissdata cannot read makes
    every property and walk raise :class:`MalformedEventError` naming the key."""

    def __init__(self, session: "BlissdataSession", key: str) -> None:
        self._session = session
        self._key = key
        self._lock = threading.Lock()
        self._identity: tuple[str, int, str] | None = None
        self._info: dict[str, Any] | None = None
        self._nodes: dict[str, Node] = {}

    # -- identity ------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self._key

    @property
    def uid(self) -> str:
        """The ULID blissdata gave the scan (the end of its key): never reused."""
        return self._key.rsplit(":", 1)[-1]

    @property
    def session_name(self) -> str:
        return self._loaded_identity()[2]

    @property
    def name(self) -> str:
        return self._loaded_identity()[0]

    @property
    def number(self) -> int:
        return self._loaded_identity()[1]

    @property
    def info(self) -> dict[str, Any]:
        """The scan_info as last read (at CREATED, then as each walk sees it change)."""
        self._loaded_identity()
        with self._lock:
            assert self._info is not None
            return dict(self._info)

    def _loaded_identity(self) -> tuple[str, int, str]:
        if self._identity is None:
            self._remember(self._load())
        assert self._identity is not None
        return self._identity

    def _remember(self, scan: Scan) -> None:
        """Keep the identity and scan_info of ``scan`` (checked: this is where a hostile
        document is caught, with the key named)."""
        what = f"scan {self._key}"
        # the identity fields are properties blissdata adds to each scan it loads
        name, number, session, info = (getattr(scan, field, None)
                                       for field in ("name", "number", "session", "info"))
        if not isinstance(name, str) or not name:
            raise MalformedEventError(f"{what}: its name {name!r} is not a text")
        if isinstance(number, bool) or not isinstance(number, int):
            raise MalformedEventError(f"{what}: its number {number!r} is not an integer")
        if not isinstance(info, dict):
            raise MalformedEventError(f"{what}: its info (scan_info) is not a JSON object")
        with self._lock:
            self._identity = (name, number, str(session or ""))
            self._info = codec.jsonable(info)

    def _load(self) -> Scan:
        """A new reader of the scan (blissdata's objects stay in one thread)."""
        store = self._session.data_store()
        try:
            return store.load_scan(self._key)
        except ScanNotFoundError:
            raise NodeNotFoundError(f"scan {self._key} is not in Redis (deleted, or expired)") \
                from None
        except (ScanLoadError, KeyError, TypeError, ValueError, AssertionError) as exc:
            raise MalformedEventError(
                f"scan {self._key}: blissdata cannot read its document ({exc})") from None

    def _update(self, scan: Scan, timeout: float | None) -> bool:
        """``scan.update``: wait up to ``timeout`` (None: do not wait) for its next state."""
        try:
            if timeout is None:
                changed = scan.update(block=False)
            else:
                changed = scan.update(block=True, timeout=_wait_time(timeout))
        except ScanNotFoundError:
            raise _Deleted() from None
        except (ScanLoadError, KeyError, TypeError, ValueError, AssertionError) as exc:
            raise MalformedEventError(
                f"scan {self._key}: blissdata cannot read its document ({exc})") from None
        if changed:
            self._remember(scan)
        return bool(changed)

    # -- nodes ---------------------------------------------------------------------

    def nodes(self) -> dict[str, Node]:
        """The subscans and channels, once the scan is prepared (none before)."""
        with self._lock:
            if self._nodes:
                return dict(self._nodes)
        scan = self._load()
        self._remember(scan)
        if scan.state < ScanState.PREPARED:
            return {}
        return self._declare(scan, _readable_streams(scan, self._key))

    def _declare(self, scan: Scan, streams: Sequence[Any]) -> dict[str, Node]:
        info = self.info
        subscans, placement = _subscans(info)
        declarations = [NodeDeclaration(name, NodeType.SUBSCAN, index, {"index": index + 1})
                        for index, name in enumerate(subscans)]
        channels = info.get("channels")
        units: dict[str, Any] = channels if isinstance(channels, dict) else {}
        for stream in streams:
            subscan = placement.get(stream.name, subscans[0])
            if _is_lima(stream):
                declarations.append(self._lima(stream, len(declarations), subscan))
                continue
            declarations.append(self._channel(stream, len(declarations), subscan,
                                              units.get(stream.name)))
        nodes = {decl.name: make_node(self, decl) for decl in declarations}
        with self._lock:
            self._nodes = dict(nodes)
        return nodes

    def _lima(self, stream: Any, index: int, subscan: str) -> NodeDeclaration:
        what = f"lima stream {stream.name!r} ({stream.key}) of scan {self._key}"
        node_info = lima_node_info(stream.info or {}, subscan, what)
        assert node_info is not None  # unsaved ones are not read (_readable_streams)
        return NodeDeclaration(stream.name, NodeType.LIMA, index, node_info)

    def _channel(self, stream: Any, index: int, subscan: str, channel_info: Any
                 ) -> NodeDeclaration:
        what = f"stream {stream.name!r} ({stream.key}) of scan {self._key}"
        try:
            node_info = dict(codec.jsonable(stream.info or {}))
            node_info.update(dtype=codec.dtype_to_text(stream.dtype),
                             shape=list(codec.check_point_shape(stream.shape, what)),
                             subscan=subscan)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEventError(f"{what}: cannot read its encoding ({exc})") from None
        if isinstance(channel_info, dict) and isinstance(channel_info.get("unit"), str):
            node_info["unit"] = channel_info["unit"]
        return NodeDeclaration(stream.name, NodeType.CHANNEL, index, node_info)

    # -- the walk ------------------------------------------------------------------

    def walk_events(self, *, stop: StopHandle | None = None, poll_interval: float = 0.25,
                    from_position: str | None = None, merge_blocks: bool = False
                    ) -> Iterator[Event]:
        """The scan's events after ``from_position`` (see the module), ending after
        END_SCAN. Each block comes as the cursor read it (``merge_blocks`` changes
        nothing: blissdata's cursors read up to 100 entries of each stream at once).

        :raises DataLostError: points after ``from_position`` are no longer in Redis
        :raises MalformedEventError: the document or a stream cannot be read"""
        progress = _Progress.parse(from_position)
        scan = self._load()
        self._remember(scan)
        silence = _Silence(self._session.idle_timeout, self._lost_message())
        while scan.state < ScanState.PREPARED:
            if stop is not None and stop.is_set():
                return
            try:
                if self._update(scan, poll_interval):
                    silence.restart()
            except _Deleted:
                yield self._deleted(progress)
                return
            if scan.state < ScanState.PREPARED and silence.expired():
                yield self._publisher_lost(progress, silence)
                return
        streams = _readable_streams(scan, self._key)
        if not progress.counts:
            progress.counts = [0] * len(streams)
        elif len(progress.counts) != len(streams):
            raise ValueError(f"position {from_position!r} does not fit scan {self._key}, "
                             f"which has {len(streams)} numeric streams")
        nodes = self._declare(scan, streams)
        if progress.state < ScanState.PREPARED:
            for node in nodes.values():
                yield EventType.NEW_NODE, node, EventData(progress.text())
            progress.state = int(ScanState.PREPARED)
            yield EventType.PREPARED_SCAN, self, EventData(progress.text())
        yield from self._walk_data(scan, streams, nodes, progress, stop, poll_interval,
                                   silence)

    def _walk_data(self, scan: Scan, streams: Sequence[Any], nodes: Mapping[str, Node],
                   progress: _Progress, stop: StopHandle | None, poll_interval: float,
                   silence: _Silence) -> Iterator[Event]:
        order = {stream.name: i for i, stream in enumerate(streams)}
        cursors = CursorGroup(list(streams)) if streams else None
        seen = self.info  # what the writer planned with: BLISS completes it at CLOSED
        while stop is None or not stop.is_set():
            views, sealed = self._read(cursors, poll_interval)
            for stream, view in views.items():
                event = self._block(stream, view, nodes[stream.name], order[stream.name],
                                    progress)
                if event is not None:
                    yield event
            if views:
                silence.restart()
                continue
            # nothing new: has the scan been closed? (wait for it once every stream is
            # sealed, since no data can come)
            if scan.state < ScanState.CLOSED:
                try:
                    if self._update(scan, poll_interval if sealed else None):
                        silence.restart()
                except _Deleted:
                    yield from self._drain(cursors, streams, nodes, order, progress)
                    yield self._deleted(progress)
                    return
                if scan.state < ScanState.CLOSED and silence.expired():
                    yield from self._info_changes(seen, progress)
                    yield self._publisher_lost(progress, silence)
                    return
                if scan.state < ScanState.CLOSED or not sealed:
                    continue  # not sealed: read what came before the state changed
            progress.state = int(ScanState.CLOSED)
            yield from self._info_changes(seen, progress)
            reason, message = _end_reason(self.info, self._key)
            yield EventType.END_SCAN, self, EventData(progress.text(), reason=reason,
                                                      message=message)
            return

    def _info_changes(self, seen: Mapping[str, Any], progress: _Progress) -> Iterator[Event]:
        """INFO_UPDATE with what the scan_info gained since the writer planned with
        ``seen`` (BLISS completes it at CLOSED: positioners_end, end_time, end_reason,
        comments...)."""
        final = self.info
        changes = {key: value for key, value in final.items() if seen.get(key) != value}
        if changes:
            yield EventType.INFO_UPDATE, self, EventData(progress.text(), info=changes)

    @property
    def _lost_key(self) -> str:
        return f"nws-blissdata:{self._key}:lost"

    def _lost_message(self) -> str | None:
        """Why the scan's publisher was taken as lost by a walk, if one did."""
        with redis_errors(f"reading {self._lost_key}"):
            raw = self._session.connection.get(self._lost_key)
        return raw.decode(errors="replace") if raw else None

    def _publisher_lost(self, progress: _Progress, silence: _Silence) -> Event:
        """END_SCAN ``PUBLISHER_LOST`` of a scan silent for ``silence.timeout``, the
        verdict kept for later walks (the first one's message wins)."""
        message = silence.message or (
            f"no data came for {_duration(silence.timeout)} (no point, no state change) "
            "and the scan was never closed: its publisher is taken as lost (BLISS died "
            "or lost Redis)")
        with redis_errors(f"writing {self._lost_key}"):
            self._session.connection.set(self._lost_key, message, nx=True, ex=ACK_RETENTION)
        progress.state = int(ScanState.CLOSED)
        return EventType.END_SCAN, self, EventData(progress.text(),
                                                   reason=EndReason.PUBLISHER_LOST,
                                                   message=message)

    def _drain(self, cursors: CursorGroup | None, streams: Sequence[Any],
               nodes: Mapping[str, Node], order: Mapping[str, int], progress: _Progress
               ) -> Iterator[Event]:
        """What the streams of a deleted scan still hold."""
        while cursors is not None:
            try:
                views = cursors.read(block=False)
            except EndOfStream:
                return
            if not views:
                return
            for stream, view in views.items():
                event = self._block(stream, view, nodes[stream.name], order[stream.name],
                                    progress)
                if event is not None:
                    yield event

    def _deleted(self, progress: _Progress) -> Event:
        progress.state = int(ScanState.CLOSED)
        reason, message = END_REASONS["DELETION"]
        return EventType.END_SCAN, self, EventData(progress.text(), reason=reason,
                                                   message=message)

    def _read(self, cursors: CursorGroup | None, poll_interval: float
              ) -> tuple[dict[Any, Any], bool]:
        """New views of the streams (waiting up to ``poll_interval`` for some), and
        whether every stream is sealed and read to its end."""
        if cursors is None:
            return {}, True
        try:
            return cursors.read(block=True, timeout=_wait_time(poll_interval)), False
        except EndOfStream:
            return {}, True
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEventError(f"scan {self._key}: a stream cannot be read ({exc})") \
                from None

    def _block(self, stream: Any, view: Any, node: Node, index: int, progress: _Progress
               ) -> Event | None:
        """The NEW_DATA event of the points of ``view`` not given yet (None if none)."""
        had = progress.counts[index]
        first, count = int(view.index), len(view)
        skip = max(0, had - first)
        if skip >= count:
            return None
        what = f"stream {stream.name!r} ({stream.key}) of scan {self._key}"
        if _is_lima(stream):  # only the last status counts: given again when resumed
            progress.counts[index] = first + count
            try:
                status = lima_progress(view.get_data(count - 1, None), what)
            except IndexNoMoreThereError:
                raise DataLostError(f"{what}: its last status is no longer in Redis") \
                    from None
            return EventType.NEW_DATA, node, EventData(progress.text(), first_index=first,
                                                       data=status)
        try:
            data = view.get_data(skip, count)
        except IndexNoMoreThereError:
            raise DataLostError(
                f"{what}: points from {first + skip} on are no longer in Redis (trimmed by "
                "blissdata's memory tracker before they were written)") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEventError(f"{what}: cannot decode points {first + skip}.. "
                                      f"({exc})") from None
        if getattr(node, "variable_length", False):
            data = [np.asarray(point).reshape(-1) for point in data]
        progress.counts[index] = first + count
        return EventType.NEW_DATA, node, EventData(progress.text(), first_index=first + skip,
                                                   data=data)

    # -- positions -----------------------------------------------------------------

    def current_position(self) -> str:
        """The position a walk reaches after the last event the scan has so far."""
        scan = self._load()
        if scan.state < ScanState.PREPARED:
            return _START
        streams = _readable_streams(scan, self._key)
        counts = []
        for stream in streams:
            try:
                counts.append(len(stream))
            except (KeyError, TypeError, ValueError) as exc:
                raise MalformedEventError(f"stream {stream.name!r} ({stream.key}) of scan "
                                          f"{self._key}: cannot read its length ({exc})") \
                    from None
        state = int(scan.state)
        if state < ScanState.CLOSED and self._lost_message() is not None:
            state = int(ScanState.CLOSED)  # as the walk that took it as lost ended it
        return _Progress(state, counts).text()

    @property
    def _acks_key(self) -> str:
        return f"nws-blissdata:{self._key}:acks"

    def acknowledge(self, reader: str, position: str) -> None:
        """Keep ``position`` as how far ``reader`` wrote (for :data:`ACK_RETENTION`)."""
        _Progress.parse(position)
        client = self._session.connection
        with redis_errors(f"acknowledging {self._key}"):
            pipe = client.pipeline(transaction=True)
            pipe.hset(self._acks_key, reader, position)
            pipe.expire(self._acks_key, ACK_RETENTION)
            pipe.execute()

    def acknowledged(self, reader: str) -> str | None:
        with redis_errors(f"reading acknowledgements of {self._key}"):
            raw = self._session.connection.hget(self._acks_key, reader)
        return raw.decode() if raw else None

    def publisher_alive(self) -> bool:
        """Always True: blissdata has no sign of its publisher's life."""
        return True

    def __repr__(self) -> str:
        return f"<BlissdataScan {self._key}>"


def _is_lima(stream: Any) -> bool:
    """Whether ``stream`` (of :func:`_readable_streams`) gives the statuses of a lima
    detector."""
    return bool(getattr(stream, "lima", False))


class _LimaStatuses(Stream):
    """The statuses of a lima detector's stream: its JSON events, read as they are
    (blissdata's ``LimaStream`` turns them into frames, which are never read here)."""

    lima = True


def _readable_streams(scan: Scan, key: str) -> list[Any]:
    """The numeric streams of ``scan`` and the statuses of its lima detectors whose
    frames are saved, by name; the others are logged and left out.

    :raises MalformedEventError: a lima stream is not as blissdata writes them"""
    streams: list[Any] = []
    for name, stream in sorted(scan.streams.items()):
        info = stream.info if isinstance(stream.info, dict) else {}
        if is_lima_info(info):
            what = f"lima stream {name!r} ({stream.key}) of scan {key}"
            if lima_node_info(info, "", what) is not None:
                streams.append(_LimaStatuses(stream.event_stream))
            else:
                logger.warning("scan %s: %s is not written: its frames are not saved", key,
                               what)
        elif isinstance(stream, Stream) and stream.kind == "array":
            streams.append(stream)
        else:
            logger.warning("scan %s: stream %r (%s, plugin %r) is not written: only numeric "
                           "streams are", key, name, type(stream).__name__,
                           getattr(stream, "plugin", None))
    return streams


def _subscans(info: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The top masters of the acquisition chain (``["main"]`` without one), and the one
    each channel named there belongs to."""
    chain = info.get("acquisition_chain")
    if not isinstance(chain, dict) or not chain:
        return ["main"], {}
    placement: dict[str, str] = {}
    for top, entry in chain.items():
        if not isinstance(entry, dict):
            continue
        master = entry.get("master")
        parts: list[dict[str, Any]] = [entry, master if isinstance(master, dict) else {}]
        for part in parts:
            for kind in ("scalars", "spectra", "images"):
                names = part.get(kind)
                if isinstance(names, list):
                    for name in names:
                        placement.setdefault(str(name), str(top))
    return [str(top) for top in chain], placement


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
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, (int, float)) \
                or not 0 < idle_timeout < float("inf"):
            raise ConfigurationError(
                f"idle_timeout must be a positive number of seconds, got {idle_timeout!r}")
        self.idle_timeout = float(idle_timeout)
        self._name = check_name(name)
        self._url = resolve_redis_url(redis_url)
        self._client = client if client is not None else connect(self._url, retry_dropped=True)
        self._store: DataStore | None = None
        self._store_lock = threading.Lock()
        #: what is known of each scan seen: its source, or None when it is not written
        self._seen: dict[str, BlissdataScan | None] = {}

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
                    self._store = DataStore(_with_socket_timeout(self._url))
                except RuntimeError as exc:
                    raise MalformedEventError(f"blissdata refuses the Redis: {exc}") from None
            return self._store

    def current_position(self) -> str:
        """The position of the last scan announced in ``_SCAN_HISTORY_`` (any session)."""
        try:
            store = self.data_store()
        except NodeNotFoundError:
            return _START
        return str(store.get_last_scan_timetag())

    def scan(self, key: str) -> BlissdataScan:
        seen = self._seen.get(key)
        if seen is not None:
            return seen
        if not key.startswith("esrf:scan:"):
            raise ValueError(f"{key!r} is not the key of a blissdata scan (esrf:scan:<id>)")
        return BlissdataScan(self, key)

    def _written(self, key: str, announce: bool) -> BlissdataScan | None:
        """The scan ``key`` if it is one of this session's to write, else None (the
        reason logged once, when ``announce``)."""
        if key in self._seen:
            return self._seen[key]
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
                self._seen[key] = None
                return None
            # announced: its writer goes FAULT with the reason, naming the key
            logger.error("session %s: %s", self._name, exc)
            self._seen[key] = scan
            return scan
        if session != self._name:
            self._seen[key] = None
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
            self._seen[key] = None
            return None
        self._seen[key] = scan
        return scan

    def _raw_session(self, key: str) -> str | None:
        """The session named in the document ``key``, read as JSON without blissdata:
        only to tell whose a document blissdata refuses is (its writer then goes FAULT
        naming the key, and other sessions' writers ignore it)."""
        try:
            with redis_errors(f"reading the session of {key}"):
                raw = self._client.execute_command("JSON.GET", key, "$.id.session")
            found = json.loads(raw) if raw else None
        except (NexusWriterError, ValueError):
            return None
        if isinstance(found, list) and found and isinstance(found[0], str):
            return str(found[0])
        return None

    def scan_keys(self) -> list[tuple[str, bool]]:
        """The session's scans to write that ``_SCAN_HISTORY_`` still lists, oldest
        first: ``(key, ended)`` (ended: CLOSED)."""
        try:
            store = self.data_store()
        except NodeNotFoundError:
            return []
        keys = []
        since = _START
        while True:
            try:
                since, key = store.get_next_scan(since=since, block=False)
            except NoScanAvailable:
                break
            if self._written(key, announce=False) is not None:
                keys.append(key)
        states = self._states(store, keys)
        return [(key, states.get(key, ScanState.CLOSED) >= ScanState.CLOSED) for key in keys]

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
        closed, after ``from_position`` (a ``_SCAN_HISTORY_`` position; else now)."""
        since = from_position or self.current_position()
        running: dict[str, BlissdataScan] = {}
        last_check = time.monotonic()
        while stop is None or not stop.is_set():
            try:
                store = self.data_store()
            except NodeNotFoundError:
                time.sleep(poll_interval)
                continue
            try:
                since, key = store.get_next_scan(since=since, block=True,
                                                 timeout=_wait_time(poll_interval))
            except NoScanAvailable:
                key = None
            if key is not None:
                scan = self._written(key, announce=True)
                if scan is not None:
                    running[key] = scan
                    yield EventType.NEW_NODE, scan, EventData(since)
            now = time.monotonic()
            if running and (key is None or now - last_check >= poll_interval):
                last_check = now
                yield from self._closed(store, running, since)

    def _closed(self, store: DataStore, running: dict[str, BlissdataScan], position: str
                ) -> Iterator[Event]:
        """END_SCAN for the running scans that were closed (or deleted)."""
        keys = list(running)
        states = self._states(store, keys)
        for key in keys:
            if states.get(key, ScanState.CLOSED) < ScanState.CLOSED:
                continue
            scan = running.pop(key)
            try:
                loaded = scan._load()
                info = loaded.info
                if loaded.state < ScanState.CLOSED:  # never closed: see _states
                    reason = EndReason.PUBLISHER_LOST
                else:
                    reason, _ = _end_reason(info if isinstance(info, dict) else {}, key)
            except (NodeNotFoundError, MalformedEventError):
                reason = EndReason.ABORTED
            yield EventType.END_SCAN, scan, EventData(position, reason=reason)

    def __repr__(self) -> str:
        return f"<BlissdataSession {self._name!r}>"


if TYPE_CHECKING:  # both implement the protocol (checked by mypy)
    _session: SessionSource = BlissdataSession("session")
    _scan: ScanSource = _session.scan("key")
