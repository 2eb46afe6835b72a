"""Reading scans back from Redis: ``get_session_node`` and the walks.

Our Redis streams as a scan source (:mod:`.source`): :class:`SessionNode` and
:class:`ScanNode` implement its protocol. What the entries mean is parsed by
:mod:`.parser`; this module reads, acknowledges and checks leases.

Walks are plain blocking generators (use them from a native thread, or from the
gevent hub's threadpool in a green program). They read streams in batches with
``XREAD BLOCK`` in short slices so that a ``stop`` handle (anything with
``is_set()``) is honoured within ``poll_interval``; ``timeout`` bounds the time
without any new entry and raises :class:`~nexus_writer_service.errors.EventTimeout`.
Every event carries its stream position: pass it as ``from_position`` to resume
right after it, without loss or duplicates.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Iterator

from ..errors import DataLostError, EventTimeout, MalformedEventError, NodeNotFoundError
from . import _fast_redis, codec, parser
from .blocks import fields_dict
from .connection import Client, connect, end_scan, redis_errors
from .events import (
    EndReason,
    EntryKind,
    EventData,
    EventType,
    NodeDeclaration,
    NodeType,
    ScanReference,
    SessionEntryKind,
    decode_session_entry,
)
from .keys import ScanKeys, SessionKeys, check_name
from .nodes import Node, ScansNode, make_node
from .parser import RawEntry, ScanStreamParser
from .source import Event, StopHandle

__all__ = ["get_session_node", "get_scan_node", "SessionNode", "ScanNode", "Event",
           "StopHandle"]

logger = logging.getLogger(__name__)

#: The fields of a scan's hash read with its identity (its scan_info, which may be
#: large, is read apart, when asked for).
_META_FIELDS = ["name", "number", "uid", "retention", "lease"]

#: Entries of the first read of a stream, before their size is known.
FIRST_BATCH = 50


# Records a reader's acknowledgement and, in the same step, trims the scan's event
# stream up to the oldest position every registered reader (the fields of the acks
# hash, set when the scan was created) has acknowledged. A reader that acknowledged
# nothing yet holds "0-0", and then nothing is trimmed.
_ACK_AND_TRIM = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local oldest, oldest_ms, oldest_seq = nil, 0, 0
for _, position in ipairs(redis.call('HVALS', KEYS[1])) do
  local dash = string.find(position, '-', 1, true)
  local ms = tonumber(string.sub(position, 1, dash - 1))
  local seq = tonumber(string.sub(position, dash + 1))
  if oldest == nil or ms < oldest_ms or (ms == oldest_ms and seq < oldest_seq) then
    oldest, oldest_ms, oldest_seq = position, ms, seq
  end
end
if oldest == nil or oldest == '0-0' then return 0 end
return redis.call('XTRIM', KEYS[2], 'MINID', oldest)
"""


# Counts the entries of a scan stream after a position (exclusive), and those of
# them that are data (field "t" first, its value ARGV[2]), without sending them.
_COUNT_AFTER = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+')
local data = 0
for _, entry in ipairs(entries) do
  local fields = entry[2]
  if fields[1] == 't' and fields[2] == ARGV[2] then data = data + 1 end
end
return {#entries, data}
"""


def _parse_id(position: str | bytes) -> tuple[int, int]:
    text = position.decode() if isinstance(position, bytes) else str(position)
    try:
        ms, _, seq = text.partition("-")
        return int(ms), int(seq or 0)
    except ValueError:
        raise ValueError(f"invalid stream position {position!r}: expected '<ms>-<seq>'") from None


def _check_timeout(timeout: float | None, name: str = "timeout") -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, got {timeout!r}")
    return float(timeout)


def _filter(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    names = {value} if isinstance(value, str) else set(value)
    valid = {t.value for t in NodeType}
    unknown = names - valid
    if unknown:
        raise ValueError(f"unknown node types {sorted(unknown)} in filter; use {sorted(valid)}")
    return names


def _stream_info(client: Client, key: str) -> dict[str, Any] | None:
    """``XINFO STREAM key``, None when there is no such stream (Redis answers a
    missing key with a generic error: asked first, in the same round trip)."""
    pipe = client.pipeline(transaction=True)
    pipe.exists(key)
    pipe.xinfo_stream(key)
    exists, info = pipe.execute(raise_on_error=False)
    if not exists:
        return None
    if isinstance(info, Exception):
        raise info
    return info


def read_raw_pages(
    client: Client, key: str, position: str, *, stop: StopHandle | None,
    timeout: float | None, poll_interval: float, on_idle: Callable[[], None] | None = None,
    on_batch: Callable[[str], None] | None = None, read_interval: float = 0.0,
    first_count: int = FIRST_BATCH, page_count: Callable[[list[RawEntry]], int] | None = None,
    idle_pages: bool = False,
) -> Iterator[list[RawEntry]]:
    """Entries of stream ``key`` after ``position`` as the server sends them, one
    list per read, forever (until stop/timeout). ``on_batch`` gets the last position
    of a page once the caller asks for the next one.

    ``read_interval``: after a page that was not full (the reader has caught up with
    the stream), the next read starts at least that many seconds after this one, so
    that a stream written to all the time is read in pages of some size rather
    than an entry or two at a time.

    ``first_count`` entries are asked for first, then ``page_count(last page)``
    (by default, about :data:`.parser.PAGE_BYTES` at the size of the last page's entries).
    ``idle_pages``: an empty page is given after each read that found nothing."""
    timeout = _check_timeout(timeout)
    page_count = page_count or parser.page_count
    block_ms = max(1, int(poll_interval * 1000))
    last_activity = time.monotonic()
    count = first_count
    xread = _fast_redis.raw_xread(client)
    next_read = 0.0
    while stop is None or not stop.is_set():
        delay = next_read - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        asked, next_read = count, time.monotonic() + read_interval
        with redis_errors(f"reading stream {key}"):
            page = xread(key, position, count, block_ms)
        if not page:
            if on_idle is not None:
                on_idle()
            if timeout is not None and time.monotonic() - last_activity > timeout:
                raise EventTimeout(f"no new event on {key} within {timeout} s")
            if idle_pages:
                yield page
            continue
        last_activity = time.monotonic()
        if len(page) >= asked:  # more is waiting: read on at once
            next_read = 0.0
        position = page[-1][0].decode()
        count = page_count(page)
        yield page
        if on_batch is not None:
            on_batch(position)


def read_pages(
    client: Client, key: str, position: str, *, stop: StopHandle | None,
    timeout: float | None, poll_interval: float, on_idle: Callable[[], None] | None = None,
    on_batch: Callable[[str], None] | None = None,
) -> Iterator[list[tuple[str, dict[bytes, bytes]]]]:
    """Like :func:`read_raw_pages`, each entry as ``(position, {field: value})``."""
    for page in read_raw_pages(client, key, position, stop=stop, timeout=timeout,
                               poll_interval=poll_interval, on_idle=on_idle,
                               on_batch=on_batch):
        yield [(entry_id.decode(), fields_dict(fields)) for entry_id, fields in page]


def read_stream(
    client: Client, key: str, position: str, *, stop: StopHandle | None,
    timeout: float | None, poll_interval: float, on_idle: Callable[[], None] | None = None,
    on_batch: Callable[[str], None] | None = None,
) -> Iterator[tuple[str, dict[bytes, bytes]]]:
    """Entries of stream ``key`` after ``position``, forever (until stop/timeout)."""
    for page in read_pages(client, key, position, stop=stop, timeout=timeout,
                           poll_interval=poll_interval, on_idle=on_idle, on_batch=on_batch):
        yield from page


class ScanNode:
    """A scan: ``name``, ``number``, ``info`` (the scan_info dict), its nodes and events."""

    type = NodeType.SCAN

    def __init__(self, client: Client, key: str, session: "SessionNode | None" = None):
        self._client = client
        self.keys = ScanKeys(key)
        self.session_name = self.keys.session
        self._session = session
        self._meta: dict[bytes, bytes] | None = None
        self._info_bytes = 0
        self._info: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return self.keys.base

    def _load(self) -> dict[bytes, bytes]:
        """The scan's small metadata fields, and the size of its scan_info (read with
        them, decoded only when asked for: see :attr:`info_bytes`)."""
        if self._meta is None:
            pipe = self._client.pipeline(transaction=True)
            pipe.hmget(self.key, _META_FIELDS)
            pipe.hstrlen(self.key, "scan_info")
            pipe.exists(self.key)
            with redis_errors(f"reading scan {self.key}"):
                values, info_bytes, exists = pipe.execute()
            if not exists:
                raise NodeNotFoundError(
                    f"scan {self.key} is not in Redis (never created, or expired after "
                    "its retention time)"
                )
            meta = {field.encode(): value for field, value in zip(_META_FIELDS, values)
                    if value is not None}
            self._info_bytes = int(info_bytes)
            self._meta = meta
        return self._meta

    def exists(self) -> bool:
        """Whether the scan's metadata is in Redis (its content is not checked here)."""
        try:
            self._load()
        except NodeNotFoundError:
            return False
        return True

    @property
    def name(self) -> str:
        raw = self._load().get(b"name", b"")
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise MalformedEventError(f"name of scan {self.key} is not UTF-8: {raw!r}") \
                from None

    @property
    def number(self) -> int:
        raw = self._load().get(b"number", b"0")
        try:
            return int(raw)
        except ValueError:
            raise MalformedEventError(f"number of scan {self.key} is not an integer: {raw!r}") \
                from None

    @property
    def uid(self) -> str:
        """A unique id the publisher gave the scan ("" from older publishers). A key is
        reused when Redis loses its data (the scan counter restarts); a uid is not."""
        return self._load().get(b"uid", b"").decode(errors="replace")

    @property
    def info_bytes(self) -> int:
        """Bytes of the scan_info as stored (JSON), known without reading it, so that
        a hostile one is refused before it is decoded."""
        self._load()
        return self._info_bytes

    @property
    def info(self) -> dict[str, Any]:
        """The ``scan_info`` dict the publisher gave."""
        if self._info is None:
            self._load()
            with redis_errors(f"reading scan {self.key}"):
                raw = self._client.hget(self.key, "scan_info")
            info = codec.from_json(raw or b"{}", f"scan_info of {self.key}")
            if not isinstance(info, dict):
                raise MalformedEventError(f"scan_info of {self.key} is not a JSON object")
            self._info = info
        return self._info

    @property
    def end_reason(self) -> EndReason | None:
        """Why the scan ended (read fresh from Redis), ``None`` while it runs."""
        with redis_errors(f"reading scan {self.key}"):
            raw = self._client.hget(self.key, "end_reason")
        if not raw:
            return None
        try:
            return EndReason(raw.decode())
        except ValueError:
            raise MalformedEventError(f"scan {self.key} has an unknown end_reason {raw!r}") \
                from None

    def publisher_alive(self) -> bool:
        with redis_errors(f"reading lease of {self.key}"):
            return bool(self._client.exists(self.keys.lease))

    def check_publisher(self) -> bool:
        """End the scan with PUBLISHER_LOST if its publisher's lease expired; True if so.

        A lease that expired while Redis was down does not count until Redis has been
        up for one lease again: a publisher that outlived the outage has that long
        to come back and end its scan itself, saying what happened."""
        if self.publisher_alive():
            return False
        info = self._load()
        try:
            retention = float(info.get(b"retention", b"0"))
            lease = float(info.get(b"lease", b"0"))
        except ValueError:
            raise MalformedEventError(
                f"retention or lease of scan {self.key} is not a number") from None
        with redis_errors(f"reading the uptime of Redis for {self.key}"):
            uptime = float(self._client.info("server").get("uptime_in_seconds", 0))
        if uptime < lease:
            return False
        return end_scan(self._client, self.keys, EndReason.PUBLISHER_LOST,
                        f"the publisher stopped renewing its lease of {lease:g} s: its "
                        "process died or hung, or it could not reach Redis that long",
                        retention=retention, only_if_lease_expired=True)

    def nodes(self) -> dict[str, Node]:
        """Every node declared so far, by name (subscans first, then in declaration order)."""
        with redis_errors(f"reading nodes of {self.key}"):
            raw = self._client.hgetall(self.keys.nodes)
        nodes = [make_node(self, self._parse_declaration(k, v)) for k, v in raw.items()]
        return {node.name: node for node in sorted(nodes, key=lambda n: n.index)}

    def _parse_declaration(self, name: bytes, value: bytes) -> NodeDeclaration:
        what = f"node {name!r} in {self.keys.nodes}"
        try:
            node_type, index, info = value.split(b"|", 2)
            decl = NodeDeclaration(name.decode(), NodeType(node_type.decode()), int(index),
                                   codec.from_json(info, what))
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEventError(f"{what}: cannot decode declaration ({exc})") from None
        return decl

    def acknowledge(self, reader: str, position: str) -> None:
        """Tell the publisher that ``reader`` has processed everything up to ``position``,
        and drop the entries every registered reader has acknowledged (see
        :data:`_ACK_AND_TRIM`): Redis holds a scan's data only until the last of its
        writers has it, during the scan and after its end alike."""
        _parse_id(position)
        with redis_errors(f"acknowledging {self.key}"):
            self._client.eval(_ACK_AND_TRIM, 2, self.keys.acks, self.keys.events, reader,
                              position)

    def entries_after(self, position: str) -> tuple[int, int]:
        """``(entries, data entries)`` of the scan's stream after ``position`` (its
        END entry): a publisher that went on after the end. Counted in Redis (one
        round trip, nothing sent back but the counts)."""
        _parse_id(position)
        with redis_errors(f"reading the end of {self.keys.events}"):
            counts = self._client.eval(_COUNT_AFTER, 1, self.keys.events, "(" + position,
                                       EntryKind.DATA.value)
        return int(counts[0]), int(counts[1])

    def acknowledged(self, reader: str) -> str | None:
        """The position ``reader`` acknowledged last, ``None`` if it never did."""
        with redis_errors(f"reading acknowledgements of {self.key}"):
            raw = self._client.hget(self.keys.acks, reader)
        return raw.decode() if raw else None

    def _check_not_trimmed(self, position: str) -> None:
        info = _stream_info(self._client, self.keys.events)
        if info is None:
            raise NodeNotFoundError(f"scan {self.key} has no event stream (expired?)")
        if int(info.get("entries-added", 0)) <= int(info.get("length", 0)):
            return  # nothing was ever removed
        first = info.get("first-entry")
        oldest = first[0] if first else info["last-generated-id"] + b"+"
        if first is None and _parse_id(info["last-generated-id"]) <= _parse_id(position):
            return
        if first is None or _parse_id(oldest) > _parse_id(position):
            raise DataLostError(
                f"scan {self.key}: entries after position {position} were trimmed from Redis "
                f"(oldest kept: {oldest.decode()}); register the reader (ack_as=...) so the "
                "publisher keeps what it has not acknowledged"
            )

    def current_position(self) -> str:
        """The server's position at the end of this scan's stream."""
        info = _stream_info(self._client, self.keys.events)
        return "0-0" if info is None else info["last-generated-id"].decode()

    def walk_events(
        self, include_filter: str | Iterable[str] | None = None,
        exclude_filter: str | Iterable[str] | None = None, *, stop: StopHandle | None = None,
        timeout: float | None = None, from_position: str | None = None,
        ack_as: str | None = None, poll_interval: float = 0.25, merge_blocks: bool = False,
    ) -> Iterator[Event]:
        """Replay the scan's events from its beginning (or after ``from_position``).

        Yields NEW_NODE for each node before any of its NEW_DATA, PREPARED_SCAN,
        NEW_DATA blocks (``first_index`` and numpy ``data``), and END_SCAN last,
        after which the walk ends. With ``ack_as``, the reader's progress is
        acknowledged as it goes, so the publisher may trim what it has read.

        With ``merge_blocks``, the blocks of one channel read together (up to
        1000 stream entries at a time) come as one NEW_DATA event, so a consumer
        handles a few large blocks instead of many small ones; once caught up with
        a stream written to all the time, reads are :data:`MERGE_READ_INTERVAL`
        apart, so that they bring more than an entry or two each. Channels may then
        come out of their publishing order within that batch, and resuming from
        an event's position may give again points already received (same
        indices), never skip one.
        """
        position = from_position or "0-0"
        self._load()
        self._check_not_trimmed(position)
        by_index = {node.index: node for node in self.nodes().values()}
        # merged blocks may be held from one page to the next while more entries wait,
        # unless every page read is acknowledged (what is held would not be given out)
        stream = ScanStreamParser(self, by_index, position, include=_filter(include_filter),
                                  exclude=_filter(exclude_filter) or (),
                                  merge_blocks=merge_blocks, hold_over=not ack_as,
                                  what=self.keys.events)

        def on_idle() -> None:
            if self.end_reason is None:
                self.check_publisher()

        on_batch = (lambda pos: self.acknowledge(ack_as, pos)) if ack_as else None
        pages = read_raw_pages(self._client, self.keys.events, position, stop=stop,
                               timeout=timeout, poll_interval=poll_interval, on_idle=on_idle,
                               on_batch=on_batch, read_interval=stream.read_interval,
                               first_count=stream.sizer.asked, page_count=stream.sizer,
                               idle_pages=stream.hold_over)
        for page in pages:
            if not page:  # nothing new (idle_pages): give out what is held
                yield from stream.idle()
                continue
            if ack_as:
                for event in stream.feed(page):
                    if event[0] is EventType.END_SCAN:
                        self.acknowledge(ack_as, event[2].position)
                    yield self._resolved(event)
            else:
                for event in stream.feed(page):
                    yield self._resolved(event)
            if stream.ended:
                return
        yield from stream.close()  # stopped

    def _resolved(self, event: Event) -> Event:
        """``event``, with the scans a sequence references looked up (see
        :class:`~.events.ScanReference`)."""
        kind, node, data = event
        if kind is not EventType.NEW_DATA or not isinstance(node, ScansNode):
            return event
        found = [self._look_up(reference) for reference in data.data]
        return kind, node, EventData(data.position, data.first_index, found)

    def _look_up(self, reference: ScanReference) -> ScanReference:
        key = reference.key
        if not key.startswith("nws:") or ":scan:" not in key:
            return reference._replace(problem=f"{key!r} is not the key of a scan published "
                                              "through nexus_writer_service")
        scan = ScanNode(self._client, key)
        try:
            return reference._replace(number=scan.number, info=scan.info)
        except NodeNotFoundError as exc:
            return reference._replace(problem=str(exc))
        except MalformedEventError as exc:
            return reference._replace(problem=f"scan {key} cannot be read: {exc}")

    def walk_on_new_events(self, **kwargs: Any) -> Iterator[Event]:
        """Like :meth:`walk_events`, starting at the server's current end of the scan."""
        kwargs.setdefault("from_position", self.current_position())
        return self.walk_events(**kwargs)

    def __repr__(self) -> str:
        return f"<ScanNode {self.key}>"


class SessionNode:
    """A session: the stream of its scans starting and ending."""

    type = NodeType.SESSION
    #: which source this is (see :mod:`.opener`)
    data_source = "nws"

    def __init__(self, client: Client, name: str):
        self._client = client
        self.name = check_name(name)
        self.keys = SessionKeys(name)

    @property
    def connection(self) -> Client:
        return self._client

    def current_position(self) -> str:
        with redis_errors(f"reading {self.keys.stream}"):
            info = _stream_info(self._client, self.keys.stream)
        return "0-0" if info is None else info["last-generated-id"].decode()

    def scan(self, key: str) -> ScanNode:
        scan = ScanNode(self._client, key, self)
        if scan.session_name != self.name:
            raise ValueError(f"scan {key} does not belong to session {self.name!r}")
        return scan

    def scan_keys(self) -> list[tuple[str, bool]]:
        """Every scan the session stream still lists, oldest first: ``(key, ended)``."""
        with redis_errors(f"reading {self.keys.stream}"):
            entries = self._client.xrange(self.keys.stream)
        ended: dict[str, bool] = {}
        for position, fields in entries:
            announced = self._announced(position.decode(), fields)
            if announced is not None:
                kind, key, _ = announced
                ended[key] = ended.get(key, False) or kind is not SessionEntryKind.NEW
        return list(ended.items())

    def _announced(self, position: str, fields: dict[bytes, bytes]
                   ) -> tuple[SessionEntryKind, str, EndReason | None] | None:
        """The decoded session entry, or None (logged) when it cannot name one of this
        session's scans: one bad entry must not stop the walk over every other scan."""
        what = f"{self.keys.stream} entry {position}"
        try:
            kind, key, reason = decode_session_entry(fields, what)
            self.scan(key)
        except ValueError as exc:
            logger.error("%s ignored: %s", what, exc)
            return None
        return kind, key, reason

    def register_reader(self, reader: str) -> None:
        """Scans created from now on keep their data until ``reader`` acknowledges it."""
        with redis_errors(f"registering reader {reader!r}"):
            self._client.sadd(self.keys.readers, reader)

    def unregister_reader(self, reader: str) -> None:
        with redis_errors(f"unregistering reader {reader!r}"):
            self._client.srem(self.keys.readers, reader)

    def walk_on_new_events(
        self, include_filter: str | Iterable[str] | None = "scan", *, from_next: bool = True,
        stop: StopHandle | None = None, timeout: float | None = None,
        from_position: str | None = None, poll_interval: float = 0.25,
    ) -> Iterator[Event]:
        """NEW_NODE when a scan starts, END_SCAN (with the reason) when it ends.

        ``from_next`` starts at the server's current end of the session stream when
        this method is called (old scans are skipped); otherwise the walk replays
        every scan still in Redis.
        """
        included = _filter(include_filter)
        if included is not None and included != {"scan"}:
            raise ValueError(
                "a session walk yields scan nodes only (include_filter='scan'); walk each "
                "scan's own events with scan_node.walk_events()"
            )
        if from_position is None:
            from_position = self.current_position() if from_next else "0-0"
        _check_timeout(timeout)
        return self._walk(from_position, stop, timeout, poll_interval)

    def _walk(self, from_position: str, stop: StopHandle | None, timeout: float | None,
              poll_interval: float) -> Iterator[Event]:
        running: dict[str, ScanNode] = {}

        def on_idle() -> None:
            for key, scan in list(running.items()):
                try:
                    if scan.end_reason is not None or scan.check_publisher():
                        running.pop(key, None)
                except (NodeNotFoundError, MalformedEventError):
                    running.pop(key, None)

        entries = read_stream(self._client, self.keys.stream, from_position, stop=stop,
                              timeout=timeout, poll_interval=poll_interval, on_idle=on_idle)
        for position, fields in entries:
            announced = self._announced(position, fields)
            if announced is None:
                continue
            kind, key, reason = announced
            scan = self.scan(key)
            if not scan.exists():
                logger.info("scan %s has expired from Redis; skipped", key)
                continue
            if kind is SessionEntryKind.NEW:
                running[key] = scan
                yield EventType.NEW_NODE, scan, EventData(position)
            else:
                running.pop(key, None)
                yield EventType.END_SCAN, scan, EventData(position, reason=reason)

    def walk_events(self, **kwargs: Any) -> Iterator[Event]:
        """Every scan still in Redis from the beginning, then new ones."""
        kwargs["from_next"] = False
        return self.walk_on_new_events(**kwargs)

    def __repr__(self) -> str:
        return f"<SessionNode {self.name!r}>"


def get_session_node(session: str, redis_url: str | None = None, *,
                     client: Client | None = None) -> SessionNode:
    """The session node of ``session`` (it need not exist yet)."""
    return SessionNode(client if client is not None else connect(redis_url, retry_dropped=True),
                       session)


def get_scan_node(key: str, redis_url: str | None = None, *,
                  client: Client | None = None) -> ScanNode:
    """A scan node from its key (as given by ``ScanNode.key`` or ``ScanPublisher.key``)."""
    return ScanNode(client if client is not None else connect(redis_url, retry_dropped=True),
                    key)
