"""EventChannel: events posted by any process, received by every registered receiver.

Events travel in a Redis stream (``channels:events:<name>``), so a slow receiver
loses nothing while it is registered: its reader thread simply fetches bigger blocks.
Receivers get events *in blocks* (lists, in posting order) that start with the first
event posted after :meth:`EventChannel.register_callback`.

The stream is trimmed to about ``maxlen`` entries. If trimming removes events a
receiver has not read yet, the loss is reported (logged as an error, counted in
:attr:`EventChannel.lost_events`, and passed to ``on_lost``), never hidden.

Threads: :meth:`post` runs in the caller (one round trip). Receiving uses one reader
thread per EventChannel, started by the first :meth:`register_callback` and stopped
by the last :meth:`unregister_callback` or :meth:`close`; callbacks run in that
thread (or are handed to ``executor``), never in the caller's.
"""

from __future__ import annotations

import logging
import threading
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

__all__ = ["EventChannel", "DEFAULT_MAXLEN", "DEFAULT_BLOCK_SIZE"]

logger = logging.getLogger(__name__)

DEFAULT_MAXLEN = 100_000
DEFAULT_BLOCK_SIZE = 1000
_BLOCK_MS = 100
_NETWORK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class _Reader:
    """The reader thread of one EventChannel; holds no reference to the EventChannel."""

    def __init__(self, channel: "EventChannel", start_id: bytes, added: int) -> None:
        self.name = channel.name
        self.key = channel._key
        self.client = channel._client
        self.url = channel._url
        self.codec = channel._codec
        self.block_size = channel._block_size
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

    def _run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                reply: Any = self.client.xread({self.key: self.last_id}, count=self.block_size,
                                               block=_BLOCK_MS)
                failures = 0
            except _NETWORK_ERRORS as exc:
                failures += 1
                if failures == 1:
                    logger.warning("event channel %r: lost Redis at %s (%s); retrying",
                                   self.name, redact(self.url), exc)
                self.stopping.wait(min(1.0, 0.05 * failures))
                continue
            if reply:
                self._handle(reply[0][1])

    def _handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        previous = self.last_id
        self.last_id = entries[-1][0]
        self.added += len(entries)
        self._check_trimmed(previous)
        events = []
        for entry_id, fields in entries:
            try:
                events.append(self.codec.decode(fields.get(b"d", b"")))
            except DecodeError:
                logger.exception("event channel %r: dropping undecodable event %s",
                                 self.name, entry_id)
        if not events:
            return
        if self.executor is not None:
            self.executor.submit(self.callbacks.call_all, self, events)
        else:
            self.callbacks.call_all(self, events)

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

    ``maxlen`` bounds the stream (approximately); ``block_size`` is the largest list
    given to a callback at once; ``on_lost(message)`` is called if trimming ever
    removes events before this receiver read them. ``codec`` defaults to the safe one.
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
        executor: Executor | None = None,
        on_lost: Callable[[str], Any] | None = None,
    ) -> None:
        self.name = check_name(name)
        self._timeout = check_timeout(timeout)
        for label, number in (("maxlen", maxlen), ("block_size", block_size)):
            if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
                raise InvalidArgumentError(f"{label} must be a positive int, not {number!r}")
        self._maxlen = maxlen
        self._block_size = block_size
        self._codec = codec if codec is not None else default_codec
        self._executor = executor
        self._on_lost = on_lost
        self._lost_counter = [0]
        self._url = resolve_url(redis_url)
        # the reader blocks up to _BLOCK_MS inside XREAD: the socket must wait longer
        self._client = make_client(self._url, self._timeout + _BLOCK_MS / 1000)
        self._key = Namespace.of(self._client).events_key(self.name)
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
            pipe = self._client.pipeline(transaction=False)
            for payload in payloads:
                pipe.xadd(self._key, {"d": payload}, maxlen=self._maxlen, approximate=True)
            pipe.execute()

    def register_callback(self, callback: Callable[[list[Any]], Any]) -> None:
        """Call ``callback(events)`` with blocks of events posted from now on.

        Only a weak reference is kept. Blocks as for the other receivers already
        registered in this object: they share one position in the stream.
        """
        self._check_open()
        self._callbacks.add(callback)
        with self._lock:
            if self._reader is None:
                self._reader = _Reader(self, *self._current_position())
                self._finalizer.detach()
                self._finalizer = weakref.finalize(
                    self, EventChannel._cleanup, self._client, [self._reader])

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
