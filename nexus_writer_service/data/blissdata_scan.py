"""One scan that blissdata 2.x publishes, as a :class:`~.source.ScanSource`.

What it reads, how positions are written and acknowledged, and how a scan whose
publisher died is ended are said in :mod:`.blissdata_source`, the session side.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Generator, Iterator, Mapping, Sequence

import numpy as np
from blissdata.exceptions import (
    IndexNoMoreThereError,
    ScanLoadError,
    ScanNotFoundError,
    UnknownEncodingError,
)
from blissdata.redis_engine.scan import Scan, ScanState, scan_creation_stream

from ..errors import DataLostError, MalformedEventError, NexusWriterError, NodeNotFoundError
from . import codec
from .connection import redis_errors, translated
from .blissdata_lima import lima_node_info, lima_progress
from .blissdata_progress import (
    END_REASONS,
    START,
    Progress,
    Silence,
    duration,
    end_reason,
    unreadable,
    wait_time,
)
from .blissdata_streams import (
    Cursors,
    encoding_problems,
    first_kept,
    is_lima,
    is_scans,
    readable_streams,
    stream_order,
    subscans,
)
from .events import (
    EndReason,
    EventData,
    EventType,
    NodeDeclaration,
    NodeType,
    ScanReference,
)
from .nodes import Node, make_node
from .source import Event, StopHandle

if TYPE_CHECKING:
    from .blissdata_source import BlissdataSession

__all__ = ["BlissdataScan", "DEFAULT_IDLE_TIMEOUT", "END_REASONS", "PROTOCOL_KEY",
           "SCAN_HISTORY"]

logger = logging.getLogger(__name__)

#: The key in which blissdata keeps the version of its data layout: present once the
#: database was set up for blissdata (BLISS does it when it starts).
PROTOCOL_KEY = "_PROTOCOL_VERSION_"
#: The stream announcing every new scan, of every session.
SCAN_HISTORY = scan_creation_stream
#: How long a reader's acknowledgement of a scan is kept after its last update.
ACK_RETENTION = 7 * 24 * 3600
#: Seconds without a point or a state change after which a scan that was never
#: closed is taken as abandoned by its publisher (see the module).
DEFAULT_IDLE_TIMEOUT = 600.0
#: Seconds at least between two reads of a scan's streams that each took every entry
#: there was, while data keeps coming (a writer's walk, ``merge_blocks``): without it
#: a writer keeping up reads one publication at a time (BLISS sends each channel's
#: block as it comes), at a cost per read and per event. Points reach the file up to
#: that much later, well within ``flush_period``.
READ_GAP = 0.02
#: What blissdata raises for a scan document (or stream model) it cannot read.
_UNREADABLE = (ScanLoadError, UnknownEncodingError, KeyError, TypeError, ValueError,
               AssertionError)


class _Deleted(Exception):
    """The scan was deleted while it was walked (blissdata gives its keys a few
    seconds to live: its streams can still be read to their end)."""


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

    @property
    def info_bytes(self) -> int:
        """Bytes of JSON of the scan_info (blissdata decodes the scan's document
        when it loads it: this is known only after that)."""
        return len(codec.to_json(self.info))

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
        except _UNREADABLE as exc:
            raise unreadable(self._key, exc, self._stream_problems()) from None

    def _stream_problems(self) -> list[str]:
        """The streams of the raw document whose encoding blissdata cannot read (read
        as JSON without blissdata, only to name them in an error)."""
        try:
            with redis_errors(f"reading the streams of {self._key}"):
                raw = self._session.connection.execute_command("JSON.GET", self._key,
                                                               "$.data_streams")
            found = json.loads(raw) if raw else []
        except (NexusWriterError, ValueError, TypeError):
            return []
        return encoding_problems(found[0]) if isinstance(found, list) and found else []

    def _update(self, scan: Scan, timeout: float | None) -> bool:
        """``scan.update``: wait up to ``timeout`` (None: do not wait) for its next state."""
        try:
            if timeout is None:
                changed = scan.update(block=False)
            else:
                changed = scan.update(block=True, timeout=wait_time(timeout))
        except ScanNotFoundError:
            raise _Deleted() from None
        except _UNREADABLE as exc:
            raise unreadable(self._key, exc, self._stream_problems()) from None
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
        return self._declare(scan, self._streams(scan))

    def _streams(self, scan: Scan) -> list[Any]:
        """The streams read, in the order positions count them
        (:func:`~.blissdata_streams.stream_order`)."""
        return stream_order(self._session.connection, self._key,
                            readable_streams(scan, self._key), ACK_RETENTION)

    def _declare(self, scan: Scan, streams: Sequence[Any],
                 known: Mapping[str, Node] | None = None) -> dict[str, Node]:
        """The nodes of ``scan``: its subscans, then ``streams``; those of ``known``
        (declared before) are kept as they are."""
        info = self.info
        tops, placement = subscans(info)
        nodes = dict(known or {})
        declarations = [] if known else [
            NodeDeclaration(name, NodeType.SUBSCAN, index, {"index": index + 1})
            for index, name in enumerate(tops)]
        channels = info.get("channels", {})
        if not isinstance(channels, dict):
            raise MalformedEventError(
                f"scan {self._key}: scan_info 'channels' is {channels!r:.200} "
                f"({type(channels).__name__}), not an object of channels: the acquisition "
                "program sent a malformed scan_info")
        units: dict[str, Any] = channels
        for stream in streams:
            if stream.name in nodes:
                continue
            index = len(nodes) + len(declarations)
            subscan = placement.get(stream.name, tops[0])
            if is_lima(stream):
                declarations.append(self._lima(stream, index, subscan))
                continue
            if is_scans(stream):
                declarations.append(NodeDeclaration(stream.name, NodeType.SCANS, index,
                                                    {"subscan": subscan}))
                continue
            declarations.append(self._channel(stream, index, subscan, units.get(stream.name)))
        nodes.update((decl.name, make_node(self, decl)) for decl in declarations)
        with self._lock:
            self._nodes = dict(nodes)
        return nodes

    def _lima(self, stream: Any, index: int, subscan: str) -> NodeDeclaration:
        what = f"lima stream {stream.name!r} ({stream.key}) of scan {self._key}"
        node_info = lima_node_info(stream.info or {}, subscan, what)
        assert node_info is not None  # unsaved ones are not read (readable_streams)
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
        END_SCAN. Each block comes as one read gave it: a read takes many entries of
        each stream at once (see :class:`~.blissdata_streams.Cursors`). With
        ``merge_blocks``, reads that take every entry there is are
        :data:`READ_GAP` apart at least while data keeps coming, so that each takes
        the entries of several publications.

        :raises DataLostError: points after ``from_position`` are no longer in Redis
        :raises MalformedEventError: the document or a stream cannot be read
        :raises RedisUnavailableError: Redis cannot be reached (blissdata's own calls
            included): a cause outside the scan, the walk may be started again"""
        gap = READ_GAP if merge_blocks else 0.0
        return translated(f"reading blissdata scan {self._key}",
                          self._walk(stop, poll_interval, from_position, gap))

    def _walk(self, stop: StopHandle | None, poll_interval: float,
              from_position: str | None, gap: float) -> Generator[Event, None, None]:
        progress = Progress.parse(from_position)
        scan = self._load()
        self._remember(scan)
        silence = Silence(self._session.idle_timeout, self._lost_message())
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
        streams = self._streams(scan)
        if len(progress.counts) > len(streams):
            raise ValueError(f"position {from_position!r} does not fit scan {self._key}, "
                             f"which has {len(streams)} numeric streams")
        # streams that came after the position was written start at 0
        progress.counts += [0] * (len(streams) - len(progress.counts))
        if scan.state >= ScanState.STARTED:  # (no point is sent before)
            self._check_kept(streams, progress)
        nodes = self._declare(scan, streams)
        if progress.state < ScanState.PREPARED:
            for node in nodes.values():
                yield EventType.NEW_NODE, node, EventData(progress.text())
            progress.state = int(ScanState.PREPARED)
            yield EventType.PREPARED_SCAN, self, EventData(progress.text())
        yield from self._walk_data(scan, streams, nodes, progress, stop, poll_interval,
                                   silence, gap)

    def _check_kept(self, streams: Sequence[Any], progress: Progress) -> None:
        """Raise DataLostError, naming every stream and the points gone, when blissdata
        no longer holds points after ``progress`` (its memory tracker trims the oldest
        points of a stream when Redis runs short of memory): the walk then gives
        nothing, so that a writer resumes from its acknowledgement instead, or reports
        the gap (never a silent one)."""
        gone = []
        for stream, had in zip(streams, progress.counts):
            if is_lima(stream):
                continue  # only the last status counts
            kept = first_kept(stream, had)
            if kept > had:
                gone.append(f"points {had}..{kept - 1} of stream {stream.name!r} "
                            f"({stream.key})")
        if gone:
            raise DataLostError(
                f"scan {self._key}: {'; '.join(gone)} are no longer in Redis (trimmed by "
                f"blissdata's memory tracker) after position {progress.text()}")

    def _walk_data(self, scan: Scan, streams: Sequence[Any], nodes: Mapping[str, Node],
                   progress: Progress, stop: StopHandle | None, poll_interval: float,
                   silence: Silence, gap: float) -> Iterator[Event]:
        streams, nodes = list(streams), dict(nodes)
        order = {stream.name: i for i, stream in enumerate(streams)}
        # each stream from the entry holding its next point (lima: all its statuses)
        start = [0 if is_lima(stream) else had for stream, had in zip(streams, progress.counts)]
        cursors = Cursors(streams, self._key, self._session.connection, start)
        try:
            yield from self._read_data(scan, cursors, streams, nodes, order, progress, stop,
                                       poll_interval, silence, gap)
        finally:
            cursors.close()

    def _read_data(self, scan: Scan, cursors: Cursors, streams: list[Any],
                   nodes: dict[str, Node], order: dict[str, int], progress: Progress,
                   stop: StopHandle | None, poll_interval: float, silence: Silence,
                   gap: float) -> Iterator[Event]:
        seen = self.info  # what the writer planned with: BLISS completes it at CLOSED
        last_read: float | None = None  # when the last read that took all there was began
        while stop is None or not stop.is_set():
            if last_read is not None:
                pause = last_read + gap - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            started = time.monotonic()
            views, sealed = cursors.read(wait_time(poll_interval))
            last_read = started if gap and views and cursors.caught_up else None
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
                    changed = self._update(scan, poll_interval if sealed else None)
                except _Deleted:
                    yield from self._drain(cursors, nodes, order, progress)
                    yield self._deleted(progress)
                    return
                if changed:
                    silence.restart()
                    late = yield from self._late_streams(scan, streams, nodes, order,
                                                         progress)
                    if late:
                        cursors.add(late)
                        continue
                if scan.state < ScanState.CLOSED and silence.expired():
                    yield from self._info_changes(seen, progress)
                    yield self._publisher_lost(progress, silence)
                    return
                if scan.state < ScanState.CLOSED or not sealed:
                    continue  # not sealed: read what came before the state changed
            progress.state = int(ScanState.CLOSED)
            yield from self._info_changes(seen, progress)
            reason, message = end_reason(self.info, self._key)
            yield EventType.END_SCAN, self, EventData(progress.text(), reason=reason,
                                                      message=message)
            return

    def _late_streams(self, scan: Scan, streams: list[Any], nodes: dict[str, Node],
                      order: dict[str, int], progress: Progress
                      ) -> Generator[Event, None, list[Any]]:
        """NEW_NODE for the streams the publisher created after PREPARED (the scan
        document lists them from the next state change on), which join ``streams``,
        ``nodes``, ``order`` and ``progress``; returns them."""
        known = {stream.name for stream in streams}
        ordered = self._streams(scan)
        late = [stream for stream in ordered if stream.name not in known]
        if not late:
            return []
        if [stream.name for stream in ordered[:len(streams)]] != [s.name for s in streams]:
            raise MalformedEventError(f"scan {self._key}: its streams changed order "
                                      f"({sorted(known)} read so far)")
        logger.info("scan %s: streams created after PREPARED are read too: %s", self._key,
                    ", ".join(stream.name for stream in late))
        before = set(nodes)
        nodes.update(self._declare(scan, late, nodes))
        for stream in late:
            order[stream.name] = len(streams)
            streams.append(stream)
            progress.counts.append(0)
        for name, node in nodes.items():
            if name not in before:
                yield EventType.NEW_NODE, node, EventData(progress.text())
        return late

    def _info_changes(self, seen: Mapping[str, Any], progress: Progress) -> Iterator[Event]:
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

    def _publisher_lost(self, progress: Progress, silence: Silence) -> Event:
        """END_SCAN ``PUBLISHER_LOST`` of a scan silent for ``silence.timeout``, the
        verdict kept for later walks (the first one's message wins)."""
        message = silence.message or (
            f"no data came for {duration(silence.timeout)} (no point, no state change) "
            "and the scan was never closed: its publisher is taken as lost (BLISS died "
            "or lost Redis)")
        with redis_errors(f"writing {self._lost_key}"):
            self._session.connection.set(self._lost_key, message, nx=True, ex=ACK_RETENTION)
        progress.state = int(ScanState.CLOSED)
        return EventType.END_SCAN, self, EventData(progress.text(),
                                                   reason=EndReason.PUBLISHER_LOST,
                                                   message=message)

    def _drain(self, cursors: Cursors, nodes: Mapping[str, Node], order: Mapping[str, int],
               progress: Progress) -> Iterator[Event]:
        """What the streams of a deleted scan still hold."""
        while True:
            views, _ = cursors.read(None)
            if not views:
                return
            for stream, view in views.items():
                event = self._block(stream, view, nodes[stream.name], order[stream.name],
                                    progress)
                if event is not None:
                    yield event

    def _deleted(self, progress: Progress) -> Event:
        progress.state = int(ScanState.CLOSED)
        reason, message = END_REASONS["DELETION"]
        return EventType.END_SCAN, self, EventData(progress.text(), reason=reason,
                                                   message=message)

    def _block(self, stream: Any, view: Any, node: Node, index: int, progress: Progress
               ) -> Event | None:
        """The NEW_DATA event of the points of ``view`` not given yet (None if none)."""
        had = progress.counts[index]
        first, count = int(view.index), len(view)
        skip = max(0, had - first)
        if skip >= count:
            return None
        what = _Naming(stream, self._key)  # (said only in messages: read when said)
        if is_lima(stream):  # only the last status counts: given again when resumed
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
            kept = first_kept(stream, first + skip)
            raise DataLostError(
                f"{what}: points {first + skip}..{kept - 1} are no longer in Redis (trimmed "
                "by blissdata's memory tracker before they were written)") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEventError(f"{what}: cannot decode points {first + skip}.. "
                                      f"({exc})") from None
        if is_scans(stream):
            progress.counts[index] = first + count
            return EventType.NEW_DATA, node, EventData(
                progress.text(), first_index=first + skip,
                data=[self._look_up(event, what) for event in data])
        if getattr(node, "variable_length", False):
            data = [np.asarray(point).reshape(-1) for point in data]
        progress.counts[index] = first + count
        return EventType.NEW_DATA, node, EventData(progress.text(), first_index=first + skip,
                                                   data=data)

    def _look_up(self, event: Any, what: object) -> ScanReference:
        """A scan the sequence groups, as BLISS names it (``{"key", "scan_number"}``),
        looked up (see :class:`~.events.ScanReference`)."""
        key = event.get("key") if isinstance(event, dict) else None
        number = event.get("scan_number") if isinstance(event, dict) else None
        if isinstance(number, bool) or not isinstance(number, int):
            number = None
        if not isinstance(key, str) or not key:
            return ScanReference(str(key), number,
                                 problem=f"{what} names no scan key in {event!r:.200}")
        scan = BlissdataScan(self._session, key)
        try:
            return ScanReference(key, scan.number, scan.info)
        except NodeNotFoundError as exc:
            return ScanReference(key, number, problem=str(exc))
        except MalformedEventError as exc:
            return ScanReference(key, number, problem=f"scan {key} cannot be read: {exc}")

    # -- positions -----------------------------------------------------------------

    def current_position(self) -> str:
        """The position a walk reaches after the last event the scan has so far."""
        scan = self._load()
        if scan.state < ScanState.PREPARED:
            return START
        streams = self._streams(scan)
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
        return Progress(state, counts).text()

    @property
    def _acks_key(self) -> str:
        return f"nws-blissdata:{self._key}:acks"

    def entries_after(self, position: str) -> tuple[int, int]:
        """Always none: blissdata seals a scan's streams at its end."""
        return 0, 0

    def acknowledge(self, reader: str, position: str) -> None:
        """Keep ``position`` as how far ``reader`` wrote (for :data:`ACK_RETENTION`)."""
        Progress.parse(position)
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


class _Naming:
    """``stream {name!r} ({key}) of scan {scan key}``, made when said (blissdata's
    stream key is slow to ask for, and a message is rarely needed)."""

    __slots__ = ("_stream", "_scan")

    def __init__(self, stream: Any, scan: str) -> None:
        self._stream, self._scan = stream, scan

    def __str__(self) -> str:
        return f"stream {self._stream.name!r} ({self._stream.key}) of scan {self._scan}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)
