"""A synchronous client: one call, one connection, no background threads.

Modelled on caproto's synchronous client. Every function opens its own Redis
connection and closes it before returning, which is simple and slow: fine for
command-line tools, scripts and debugging; long-lived programs use
:class:`channels.Channel`.

* :func:`read` -> :class:`Response` (value, version, who set it, when);
* :func:`write` (``notify=True`` returns a :class:`WriteResponse`);
* :func:`read_write_read` -> ``(before, write_response_or_None, after)``;
* :func:`subscribe` -> :class:`Subscription`; :func:`block` processes one or more
  subscriptions in the calling thread until ``duration`` ends or it is interrupted.

These functions do not hold the channel: a value written while no process holds the
channel lives for one lease (``lease`` seconds), then disappears.

Interrupting: ``sub.interrupt()`` stops any block processing ``sub`` (from any
thread); module-level :func:`interrupt` stops the block of one thread (by default the
calling one, e.g. from inside a callback). An interrupt sent before the block starts
is honoured by the next block. Ctrl+C (or ``KeyboardInterrupt`` raised by a
callback) ends the block cleanly.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import threading
import time
import types
import weakref
from typing import Any, Callable, Iterator

from ..channel import resolve_lease
from ..codec import Codec, default_codec
from ..connection import (
    check_name,
    check_timeout,
    default_who,
    make_client,
    make_connection,
    resolve_url,
    translate_errors,
)
from ..errors import DecodeError, InvalidArgumentError, InvalidTypeError
from ..store import Snapshot, Store, parse_update

__all__ = [
    "Response",
    "WriteResponse",
    "Subscription",
    "read",
    "write",
    "read_write_read",
    "subscribe",
    "block",
    "interrupt",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 1.0


@dataclasses.dataclass(frozen=True)
class Response:
    """A channel's value and its metadata.

    ``present`` is False when the channel has no value (``value`` is then None).
    ``version`` is the Redis version; ``who`` is ``host:pid`` of the writer; ``when``
    is the Redis server time of the write (seconds since the epoch, 0 if no value).
    """

    name: str
    value: Any
    present: bool
    version: int
    who: str
    when: float

    @property
    def timestamp(self) -> datetime.datetime | None:
        if not self.present:
            return None
        return datetime.datetime.fromtimestamp(self.when, tz=datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class WriteResponse:
    """Confirmation of a write: the version it got and the server time it happened."""

    name: str
    version: int
    previous_version: int
    when: float


def _response(name: str, snap: Snapshot, codec: Codec) -> Response:
    if snap.data is None:
        return Response(name, None, False, snap.version, "", 0.0)
    try:
        value = codec.decode(snap.data)
    except DecodeError as exc:
        raise DecodeError(f"channel {name!r}: {exc}") from None
    return Response(name, value, True, snap.version, snap.who, snap.when_us / 1e6)


class _Session:
    """One connection for the duration of one call."""

    def __init__(self, redis_url: str | None, timeout: float) -> None:
        self.url = resolve_url(redis_url)
        self.timeout = timeout
        self.client = make_client(self.url, timeout)
        self.store = Store(self.client)

    def errors(self, what: str) -> Any:
        return translate_errors(self.url, what, self.timeout)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "_Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(session: _Session, name: str, codec: Codec) -> Response:
    with session.errors(f"reading channel {name!r}"):
        return _response(name, session.store.read(name), codec)


def _write(session: _Session, name: str, value: Any, codec: Codec,
           lease: float) -> WriteResponse:
    data = codec.encode(value)
    with session.errors(f"writing channel {name!r}"):
        version, previous, when = session.store.set(name, data, default_who(), lease)
    return WriteResponse(name, version, previous, when / 1e6)


def read(name: str, *, timeout: float = DEFAULT_TIMEOUT, redis_url: str | None = None,
         codec: Codec | None = None) -> Response:
    """Read a channel's value and metadata."""
    check_name(name)
    with _Session(redis_url, check_timeout(timeout)) as session:
        return _read(session, name, codec or default_codec)


def write(name: str, value: Any, *, notify: bool = False, timeout: float = DEFAULT_TIMEOUT,
          redis_url: str | None = None, codec: Codec | None = None,
          lease: float | None = None) -> WriteResponse | None:
    """Write a channel's value; with ``notify=True`` return the server's confirmation.

    The write always completes before returning (errors are raised either way).
    """
    check_name(name)
    codec = codec or default_codec
    lease_s = resolve_lease(lease)
    with _Session(redis_url, check_timeout(timeout)) as session:
        response = _write(session, name, value, codec, lease_s)
    return response if notify else None


def read_write_read(name: str, value: Any, *, notify: bool = False,
                    timeout: float = DEFAULT_TIMEOUT, redis_url: str | None = None,
                    codec: Codec | None = None, lease: float | None = None,
                    ) -> tuple[Response, WriteResponse | None, Response]:
    """Read, write, read again, over a single connection."""
    check_name(name)
    codec = codec or default_codec
    lease_s = resolve_lease(lease)
    with _Session(redis_url, check_timeout(timeout)) as session:
        before = _read(session, name, codec)
        written = _write(session, name, value, codec, lease_s)
        after = _read(session, name, codec)
    return before, (written if notify else None), after


def _weak(func: Callable[..., Any]) -> "weakref.ref[Any]":
    if isinstance(func, types.MethodType):
        return weakref.WeakMethod(func)
    return weakref.ref(func)


class Subscription:
    """Callbacks for one channel, run by :func:`block` in the blocking thread."""

    def __init__(self, name: str, *, redis_url: str | None = None,
                 codec: Codec | None = None) -> None:
        self.name = check_name(name)
        self.redis_url = resolve_url(redis_url)
        self.codec = codec or default_codec
        self._tokens = itertools.count()
        self._callbacks: dict[int, weakref.ref[Any]] = {}
        self._lock = threading.Lock()
        self._interrupted = threading.Event()
        self.last_version = 0

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r}: {len(self._callbacks)} callback(s)>"

    def add_callback(self, func: Callable[[Response], Any]) -> int:
        """Call ``func(response)`` on each update; returns a token for remove_callback.

        Only a weak reference is kept: keep your own reference to ``func`` (a bare
        lambda is collected at once and silently removed).
        """
        if not callable(func):
            raise InvalidTypeError(f"callback must be callable, not {type(func).__name__}")
        token = next(self._tokens)
        with self._lock:
            self._callbacks[token] = _weak(func)
        return token

    def remove_callback(self, token: int) -> None:
        """Forget the callback registered under ``token`` (no error if already gone)."""
        with self._lock:
            self._callbacks.pop(token, None)

    def clear(self) -> None:
        """Forget every callback."""
        with self._lock:
            self._callbacks.clear()

    @property
    def callbacks(self) -> dict[int, Callable[[Response], Any]]:
        """The live callbacks by token (dead weak references are dropped)."""
        with self._lock:
            live = {token: ref() for token, ref in self._callbacks.items()}
            for token, func in live.items():
                if func is None:
                    del self._callbacks[token]
        return {token: func for token, func in live.items() if func is not None}

    def process(self, response: Response) -> None:
        """Run the callbacks on ``response``; used by :func:`block`.

        An exception in a callback is logged and the others still run;
        ``KeyboardInterrupt`` propagates and ends the block.
        """
        if response.version <= self.last_version and response.version:
            return
        self.last_version = response.version
        for func in self.callbacks.values():
            try:
                func(response)
            except Exception:
                logger.exception("callback %r of subscription %r failed", func, self.name)

    def block(self, duration: float | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Process this subscription in the calling thread (see :func:`block`)."""
        block(self, duration=duration, timeout=timeout)

    def interrupt(self) -> None:
        """Stop the block processing this subscription, or the next one. Idempotent."""
        self._interrupted.set()


def subscribe(name: str, *, redis_url: str | None = None,
              codec: Codec | None = None) -> Subscription:
    """Define a subscription to ``name``; nothing is sent until :func:`block`."""
    return Subscription(name, redis_url=redis_url, codec=codec)


_thread_interrupts: dict[int, threading.Event] = {}
_thread_interrupts_lock = threading.Lock()


def _interrupt_event(ident: int) -> threading.Event:
    with _thread_interrupts_lock:
        return _thread_interrupts.setdefault(ident, threading.Event())


def interrupt(thread: threading.Thread | None = None) -> None:
    """Stop the block running in ``thread`` (default: the calling thread), or its next.

    Blocks in other threads are not affected. Idempotent.
    """
    target = thread if thread is not None else threading.current_thread()
    if target.ident is None:
        raise InvalidArgumentError(f"thread {target.name!r} is not started")
    _interrupt_event(target.ident).set()


@dataclasses.dataclass
class _Blocking:
    subscriptions: tuple[Subscription, ...]
    thread_flag: threading.Event

    def interrupted(self) -> bool:
        return self.thread_flag.is_set() or any(
            sub._interrupted.is_set() for sub in self.subscriptions)

    def consume(self) -> None:
        self.thread_flag.clear()
        for sub in self.subscriptions:
            sub._interrupted.clear()


def _slices(duration: float | None) -> Iterator[float]:
    deadline = None if duration is None else time.monotonic() + duration
    while True:
        if deadline is None:
            yield 0.05
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return
        yield min(0.05, left)


def block(*subscriptions: Subscription, duration: float | None = None,
          timeout: float = DEFAULT_TIMEOUT) -> None:
    """Process subscriptions in this thread until ``duration`` ends or an interrupt.

    Each subscription first gets the current value, then every update. ``timeout``
    bounds connecting and each Redis exchange (``ChannelsTimeoutError``,
    ``ChannelsConnectionError``); it is not a limit on how long to block.
    """
    if not subscriptions:
        raise InvalidArgumentError("block() needs at least one Subscription")
    for sub in subscriptions:
        if not isinstance(sub, Subscription):
            raise InvalidTypeError(f"block() takes Subscriptions, not {type(sub).__name__}")
    urls = {sub.redis_url for sub in subscriptions}
    if len(urls) > 1:
        raise InvalidArgumentError("block() needs subscriptions on the same Redis URL; "
                                   "run one block per server in separate threads")
    if duration is not None and (isinstance(duration, bool) or duration < 0):
        raise InvalidArgumentError(f"duration must be None or >= 0 seconds, not {duration!r}")
    state = _Blocking(subscriptions, _interrupt_event(threading.get_ident()))
    if state.interrupted():
        state.consume()
        return
    seconds = check_timeout(timeout)
    try:
        with _Session(urls.pop(), seconds) as session:
            _run_block(session, state, duration)
    except KeyboardInterrupt:
        logger.debug("block() ended by KeyboardInterrupt")
    finally:
        state.consume()


def _run_block(session: _Session, state: _Blocking, duration: float | None) -> None:
    by_channel: dict[bytes, list[Subscription]] = {}
    for sub in state.subscriptions:
        by_channel.setdefault(session.store.ns.update_channel(sub.name).encode(), []).append(sub)
    conn = make_connection(session.client)
    try:
        with session.errors("subscribing"):
            conn.connect()
            conn.send_command("SUBSCRIBE", *by_channel)
            for _ in by_channel:
                conn.read_response()
            for sub in state.subscriptions:
                snap = session.store.read(sub.name)
                sub.last_version = 0
                sub.process(_response(sub.name, snap, sub.codec))
        for wait in _slices(duration):
            if state.interrupted():
                return
            with session.errors("waiting for channel updates"):
                if not conn.can_read(timeout=wait):
                    continue
                reply = conn.read_response()
            _dispatch(reply, by_channel)
    finally:
        conn.disconnect()


def _dispatch(reply: Any, by_channel: dict[bytes, list[Subscription]]) -> None:
    if not isinstance(reply, list) or len(reply) != 3 or reply[0] != b"message":
        return
    subs = by_channel.get(reply[1], [])
    try:
        update = parse_update(reply[2])
    except ValueError:
        logger.error("ignoring a malformed update on %r", reply[1])
        return
    for sub in subs:
        snap = Snapshot(None if update.cleared else update.data, update.version,
                        update.who, update.when_us)
        try:
            response = _response(sub.name, snap, sub.codec)
        except DecodeError:
            logger.exception("cannot decode update of %r", sub.name)
            continue
        sub.process(response)
