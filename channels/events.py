"""EventChannel: events posted by any process, received by every registered receiver.

Events travel in a Redis stream (``channels:events:<name>``). Receivers get events
*in blocks* (lists, in posting order) that start with the first event posted after
:meth:`EventChannel.register_callback`; the reader thread fetches up to
``read_count`` events per round trip and hands them on in blocks of ``block_size``.

A slow receiver loses nothing while it is connected: each receiver registers its
position in the stream under a key that expires ``lease`` seconds after its reader
last came back to Redis (``channels:eventreader:<name>:<id>``, listed in the set
``channels:eventreaders:<name>``), and posting (one script) trims only events that
every connected receiver has read. Without receivers the stream is trimmed to about
``maxlen`` entries. A receiver whose registration expired (its process was stopped,
or a callback ran longer than the lease) may find events trimmed: the loss is
reported (logged as an error, counted in :attr:`EventChannel.lost_events`, and passed
to ``on_lost``), never hidden.

Threads: :meth:`post` runs in the caller (one round trip). Receiving uses one reader
thread per EventChannel, started by the first :meth:`register_callback` and stopped
by the last :meth:`unregister_callback` or :meth:`close`; callbacks run in that
thread (or are handed to ``executor``), never in the caller's.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from types import TracebackType
from typing import Any, Callable, Iterable

import redis
import redis.exceptions

from .callbacks import CallbackList, Executor
from .codec import Codec, default_codec
from .connection import (
    Namespace,
    check_name,
    check_timeout,
    make_client,
    redact,
    resolve_url,
    translate_errors,
)
from .errors import ClosedError, DecodeError, InvalidArgumentError

__all__ = ["EventChannel", "DEFAULT_MAXLEN", "DEFAULT_BLOCK_SIZE", "DEFAULT_READ_COUNT",
           "DEFAULT_RECEIVER_LEASE"]

logger = logging.getLogger(__name__)

DEFAULT_MAXLEN = 100_000
DEFAULT_BLOCK_SIZE = 1000
DEFAULT_READ_COUNT = 10_000
DEFAULT_RECEIVER_LEASE = 10.0
_BLOCK_MS = 100
_NETWORK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_RAW_XREAD = "XREAD"

# KEYS: stream, set of receiver keys. ARGV: maxlen, event payload, event payload, ...
# Appends the events, then trims: to the oldest position of the receivers still
# registered (their keys expire with their lease), or to ~maxlen without receivers.
_POST = """
local stream, readers = KEYS[1], KEYS[2]
for i = 2, #ARGV do
  redis.call('XADD', stream, '*', 'd', ARGV[i])
end
local maxlen = tonumber(ARGV[1])
if redis.call('XLEN', stream) <= maxlen then return 0 end
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) < tonumber(bm) end
  return tonumber(as) < tonumber(bs)
end
local oldest = nil
for _, reader in ipairs(redis.call('SMEMBERS', readers)) do
  local position = redis.call('GET', reader)
  if not position then
    redis.call('SREM', readers, reader)
  elseif oldest == nil or older(position, oldest) then
    oldest = position
  end
end
if oldest == nil then
  return redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen)
end
return redis.call('XTRIM', stream, 'MINID', '~', oldest)
"""


class _Reader:
    """The reader thread of one EventChannel; holds no reference to the EventChannel."""

    def __init__(self, channel: "EventChannel", start_id: bytes, added: int,
                 position_key: str) -> None:
        self.name = channel.name
        self.key = channel._key
        self.client = channel._client
        self.url = channel._url
        self.codec = channel._codec
        self.block_size = channel._block_size
        self.read_count = channel._read_count
        self.readers_key = channel._readers_key
        self.position_key = position_key
        self.lease_ms = int(channel._lease * 1000)
        self.callbacks = channel._callbacks
        self.executor = channel._executor
        self.on_lost = channel._on_lost
        self.counter = channel._lost_counter
        self.last_id = start_id
        # entries added to the stream up to last_id: compared with the server's count
        self.added = added
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"channels-events {self.name}",
                                       daemon=True)
        self.thread.start()

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    def _unregister(self) -> None:
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.srem(self.readers_key, self.position_key)
            pipe.delete(self.position_key)
            pipe.execute()
        except _NETWORK_ERRORS as exc:
            logger.warning("event channel %r: could not unregister the receiver (%s); "
                           "its registration expires by itself", self.name, exc)

    def _read(self) -> Any:
        """Renew the registration at the current position and read, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.position_key, self.last_id, px=self.lease_ms)
        pipe.sadd(self.readers_key, self.position_key)
        pipe.execute_command(_RAW_XREAD, "COUNT", self.read_count, "BLOCK", _BLOCK_MS,
                             "STREAMS", self.key, self.last_id)
        return pipe.execute()[-1]

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._unregister()

    def _loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                reply: Any = self._read()
                failures = 0
            except _NETWORK_ERRORS as exc:
                failures += 1
                if failures == 1:
                    logger.warning("event channel %r: lost Redis at %s (%s); retrying",
                                   self.name, redact(self.url), exc)
                self.stopping.wait(min(1.0, 0.05 * failures))
                continue
            if reply:
                self._handle(reply[0][1])  # [[key, [[id, [field, value, ...]], ...]]]

    def _handle(self, entries: list[Any]) -> None:
        previous = self.last_id
        self.last_id = entries[-1][0]
        self.added += len(entries)
        if len(entries) < self.read_count:  # probably caught up: compare counts
            self._check_trimmed(previous)
        decode = self.codec.decode
        events = []
        for entry_id, fields in entries:
            try:
                events.append(decode(fields[1] if fields[:1] == [b"d"] else b""))
            except DecodeError:
                logger.exception("event channel %r: dropping undecodable event %s",
                                 self.name, entry_id)
        size = self.block_size
        for start in range(0, len(events), size):
            block = events[start:start + size]
            if self.executor is not None:
                self.executor.submit(self.callbacks.call_all, self, block)
            else:
                self.callbacks.call_all(self, block)

    def _check_trimmed(self, previous: bytes) -> None:
        """Compare the server's count of added entries with ours when caught up."""
        try:
            info: Any = self.client.xinfo_stream(self.key)
        except _NETWORK_ERRORS + (redis.exceptions.ResponseError,):
            return
        if info.get("last-generated-id") != self.last_id:
            return  # more to read: compare once caught up
        missed = int(info.get("entries-added", 0)) - self.added
        if missed <= 0:
            return
        self.added += missed
        message = (f"event channel {self.name!r}: {missed} event(s) after {previous.decode()} "
                   "were trimmed from the stream before this receiver read them; raise "
                   "maxlen or make the receiver faster")
        logger.error(message)
        self.counter[0] += missed
        if self.on_lost is not None:
            try:
                self.on_lost(message)
            except Exception:
                logger.exception("on_lost callback of event channel %r failed", self.name)


class EventChannel:
    """Post events to every process that receives on ``name``.

    ``maxlen`` bounds the stream (approximately) when no receiver is connected;
    ``block_size`` is the largest list given to a callback at once; ``read_count`` the
    most events read per round trip; ``lease`` how long (seconds) a receiver stays
    registered after its reader last came back to Redis; ``on_lost(message)`` is
    called if trimming ever removes events before this receiver read them. ``codec``
    defaults to the safe one.
    """

    def __init__(
        self,
        name: str,
        *,
        redis_url: str | None = None,
        timeout: float | None = None,
        codec: Codec | None = None,
        maxlen: int = DEFAULT_MAXLEN,
        block_size: int = DEFAULT_BLOCK_SIZE,
        read_count: int = DEFAULT_READ_COUNT,
        lease: float = DEFAULT_RECEIVER_LEASE,
        executor: Executor | None = None,
        on_lost: Callable[[str], Any] | None = None,
    ) -> None:
        self.name = check_name(name)
        self._timeout = check_timeout(timeout)
        for label, number in (("maxlen", maxlen), ("block_size", block_size),
                              ("read_count", read_count)):
            if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
                raise InvalidArgumentError(f"{label} must be a positive int, not {number!r}")
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not lease >= 0.1:
            raise InvalidArgumentError(f"lease must be at least 0.1 seconds, not {lease!r}")
        self._maxlen = maxlen
        self._block_size = block_size
        self._read_count = max(read_count, block_size)
        self._lease = float(lease)
        self._codec = codec if codec is not None else default_codec
        self._executor = executor
        self._on_lost = on_lost
        self._lost_counter = [0]
        self._url = resolve_url(redis_url)
        # the reader blocks up to _BLOCK_MS inside XREAD: the socket must wait longer
        self._client = make_client(self._url, self._timeout + _BLOCK_MS / 1000)
        # the reader parses XREAD replies itself: no dict per entry
        self._client.set_response_callback(_RAW_XREAD, lambda response, **options: response)
        ns = Namespace.of(self._client)
        self._key = ns.events_key(self.name)
        self._readers_key = ns.event_readers_key(self.name)
        self._reader_prefix = ns.event_reader_prefix(self.name)
        self._post = self._client.register_script(_POST)
        self._callbacks = CallbackList()
        self._lock = threading.Lock()
        self._reader: _Reader | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, EventChannel._cleanup, self._client, [None])

    @staticmethod
    def _cleanup(client: redis.Redis, reader_box: list[_Reader | None]) -> None:
        reader = reader_box[0]
        if reader is not None:
            reader.stop(5.0)
        client.close()

    @property
    def lost_events(self) -> int:
        """How many events trimming removed before this receiver read them."""
        return self._lost_counter[0]

    def post(self, event: Any) -> None:
        """Append one event (one round trip); encoding errors are raised here."""
        self.post_many([event])

    def post_many(self, events: Iterable[Any]) -> None:
        """Append several events in order, in one round trip."""
        self._check_open()
        payloads = [self._codec.encode(event) for event in events]
        if not payloads:
            return
        with translate_errors(self._url, f"posting to event channel {self.name!r}",
                              self._timeout):
            self._post(keys=[self._key, self._readers_key], args=[self._maxlen, *payloads])

    def register_callback(self, callback: Callable[[list[Any]], Any]) -> None:
        """Call ``callback(events)`` with blocks of events posted from now on.

        Only a weak reference is kept. Blocks as for the other receivers already
        registered in this object: they share one position in the stream.
        """
        self._check_open()
        self._callbacks.add(callback)
        with self._lock:
            if self._reader is None:
                self._reader = self._start_reader()
                self._finalizer.detach()
                self._finalizer = weakref.finalize(
                    self, EventChannel._cleanup, self._client, [self._reader])

    def _start_reader(self) -> _Reader:
        with translate_errors(self._url, f"registering on event channel {self.name!r}",
                              self._timeout):
            position_key = f"{self._reader_prefix}:{uuid.uuid4().hex}"
            pipe = self._client.pipeline(transaction=True)
            pipe.set(position_key, b"0-0", px=int(self._lease * 1000))
            pipe.sadd(self._readers_key, position_key)
            pipe.execute()
        try:
            start_id, added = self._current_position()
        except BaseException:
            self._client.srem(self._readers_key, position_key)
            self._client.delete(position_key)
            raise
        return _Reader(self, start_id, added, position_key)

    def _current_position(self) -> tuple[bytes, int]:
        """The stream's last ID and its count of added entries, read atomically."""
        with translate_errors(self._url, f"reading event channel {self.name!r}", self._timeout):
            try:
                info: Any = self._client.xinfo_stream(self._key)
            except redis.exceptions.ResponseError:
                return b"0-0", 0  # no stream yet
        return info["last-generated-id"], int(info.get("entries-added", 0))

    def unregister_callback(self, callback: Callable[[list[Any]], Any]) -> None:
        """Stop calling ``callback``; the reader stops with the last callback."""
        self._callbacks.remove(callback)
        if not len(self._callbacks):
            self._stop_reader()

    def _stop_reader(self) -> None:
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop(self._timeout + 1.0)

    def close(self) -> None:
        """Stop receiving and release the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._callbacks.clear()
        self._stop_reader()
        self._finalizer.detach()
        self._client.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"event channel {self.name!r} is closed; create a new one")

    def __enter__(self) -> "EventChannel":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EventChannel {self.name!r}{' closed' if self._closed else ''}>"
