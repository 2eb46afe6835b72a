"""Channel: a small value shared by every process that holds it, kept in Redis.

Reading ``channel.value`` is local (no round trip): this process keeps the latest
value, which the link's I/O thread updates from Redis messages within about a
millisecond of a change anywhere. Setting it encodes the value in the caller (bad
values raise ``TypeError``/``ValueError`` there) and queues it: the link's writer
thread sends the sets of a process in order, many per round trip. This process reads
its new value at once; other processes see it when Redis has it, usually within a
millisecond. :meth:`Channel.flush` waits until Redis has every set made so far (and
raises the error of one that failed); a set that failed is otherwise reported by the
next set of that channel. Versions come from Redis, never from a clock.

The value is not persisted: when the last process holding the channel closes it, lets
it be garbage collected or exits, the value is removed at once; when the last holder
crashes or is stopped, it is removed when its lease runs out (``lease`` seconds,
default :data:`DEFAULT_LEASE` or the ``CHANNELS_LEASE`` environment variable).

Thread-safety: a Channel may be used from any thread. Constructing, flushing and
closing block for at most ``timeout`` seconds (one round trip each, after the queued
sets); setting blocks only when ``MAX_QUEUED`` sets are already waiting.
"""

from __future__ import annotations

import os
import sys
import weakref
from types import TracebackType
from typing import Any, Callable

from . import link as _link
from .callbacks import CallbackList, Executor, running_callbacks_of
from .codec import Codec, default_codec
from .connection import (
    check_name,
    check_timeout,
    default_who,
    make_client,
    resolve_url,
    translate_errors,
)
from .errors import (
    CallbackError,
    ChannelsTimeoutError,
    ClosedError,
    ConfigurationError,
    DecodeError,
    InvalidArgumentError,
    InvalidTypeError,
)
from .store import Store

__all__ = ["Channel", "Cache", "clear_cache", "DEFAULT_LEASE", "resolve_lease"]

DEFAULT_LEASE = _link.DEFAULT_LEASE

_MISSING: Any = object()


def resolve_lease(lease: float | None) -> float:
    """``lease`` if given, else ``$CHANNELS_LEASE``, else :data:`DEFAULT_LEASE`."""
    if lease is None:
        env = os.environ.get("CHANNELS_LEASE")
        if not env:
            return DEFAULT_LEASE
        try:
            lease = float(env)
        except ValueError:
            raise ConfigurationError(
                f"CHANNELS_LEASE={env!r} is not a number of seconds") from None
    if isinstance(lease, bool) or not isinstance(lease, (int, float)):
        raise InvalidTypeError(f"lease must be a number of seconds, not {lease!r}")
    if not 0.1 <= lease <= 3600:
        raise InvalidArgumentError(f"lease must be between 0.1 and 3600 seconds, not {lease}")
    return float(lease)


class Channel:
    """A named value shared between processes through Redis.

    ``default_value`` is what the channel reads when nobody set a value; if no value
    exists yet it is also stored, so other processes read it too. ``value`` sets the
    value unconditionally at construction. ``callback`` is registered as with
    :meth:`register_callback`. ``executor`` (e.g. :class:`GeventHubExecutor`) decides
    where callbacks run; by default on a background thread of this process.
    ``codec`` defaults to the safe msgpack codec.
    """

    def __init__(
        self,
        name: str,
        default_value: Any = _MISSING,
        value: Any = _MISSING,
        callback: Callable[[Any], Any] | None = None,
        timeout: float | None = None,
        redis_url: str | None = None,
        *,
        lease: float | None = None,
        codec: Codec | None = None,
        executor: Executor | None = None,
    ) -> None:
        self._name = check_name(name)
        self._timeout = check_timeout(timeout)
        self._lease = resolve_lease(lease)
        self._codec = codec if codec is not None else default_codec
        if not isinstance(self._codec, Codec):
            raise InvalidTypeError(f"codec must be a channels.Codec, not {codec!r}")
        self._default = None if default_value is _MISSING else default_value
        self._callbacks = CallbackList()
        if callback is not None:
            self._callbacks.add(callback)
        self._executor = executor
        self._cache: tuple[bytes, Any] | None = None
        default_data = None if default_value is _MISSING else self._codec.encode(default_value)
        data = None if value is _MISSING else self._codec.encode(value)
        url = resolve_url(redis_url)
        self._closed = True
        # callbacks only for changes after what the constructor itself saw or set
        self._min_version = sys.maxsize
        self._generation = 0
        self._link = _link.acquire_link(url, self._timeout)
        try:
            self._state = self._link.attach(self._name, self, self._lease)
            with translate_errors(url, f"opening channel {self._name!r}", self._timeout):
                snap = self._link.store.acquire(self._name, self._state.member, self._lease,
                                                default_data, self._link.who)
        except BaseException:
            self._abandon()
            raise
        self._state.apply_snapshot(snap, skip=id(self))
        self._closed = False
        self._finalizer = weakref.finalize(
            self, self._link.forget_later, self._state, id(self))
        self._finalizer.atexit = False
        if data is not None:
            try:
                self._set_data(data)
                self.flush()
            except BaseException:
                self.close()
                raise
        self._min_version = self._state.version
        self._generation = self._state.generation

    def _abandon(self) -> None:
        """Undo a construction that failed half-way (best effort, never raises)."""
        state = getattr(self, "_state", None)
        try:
            if state is not None and self._link.detach(state, id(self)) is not None:
                self._link.release_state(state)
        except Exception as exc:
            _link.logger.debug("could not release channel %r: %s", self._name, exc)
        finally:
            _link.release_user(self._link)

    @property
    def name(self) -> str:
        return self._name

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def version(self) -> int:
        """Redis version of the value this process knows (0 before any value exists)."""
        return max(0, self._state.version)

    @property
    def value(self) -> Any:
        """The shared value, or the default when nobody set one. Local: never blocks."""
        self._check_open()
        return self._decode(*self._state.current())

    @value.setter
    def value(self, new_value: Any) -> None:
        self._check_open()
        if running_callbacks_of.get() is self._state:
            raise CallbackError(
                f"a callback of channel {self._name!r} tried to set that same channel, which "
                "would loop between processes; set it from outside the callback"
            )
        self._set_data(self._codec.encode(new_value))

    def _set_data(self, data: bytes) -> None:
        error = self._state.take_write_error()
        if error is not None:
            raise error
        self._link.writer.submit_set(self._state, data, self._lease, self._timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until Redis has every value set so far in this process.

        Raises the error of a set of this channel that failed (e.g. Redis unreachable),
        or ``ChannelsTimeoutError`` after ``timeout`` (default: the channel's).
        """
        self._check_open()
        seconds = self._timeout if timeout is None else check_timeout(timeout)
        done = self._link.flush(seconds)
        error = self._state.take_write_error()
        if error is not None:
            raise error
        if not done:
            raise ChannelsTimeoutError(
                f"flushing channel {self._name!r}: Redis at {self._link.label} did not confirm "
                f"the sets within {seconds} s; check that the server is running and not "
                "overloaded, or raise the timeout")

    def _decode(self, version: int, data: bytes | None) -> Any:
        if data is None:
            return self._default
        cache = self._cache
        if cache is not None and cache[0] is data:
            return cache[1]
        try:
            value = self._codec.decode(data)
        except DecodeError as exc:
            raise DecodeError(f"channel {self._name!r}: {exc}") from None
        self._cache = (data, value)
        return value

    def register_callback(self, callback: Callable[[Any], Any]) -> None:
        """Call ``callback(new_value)`` after every change, made by any process.

        Changes are those after the value this channel holds when registering: a
        change already visible in :attr:`value` is not reported later to this
        callback. Only a weak reference is kept. Callbacks run off the I/O thread, in the order
        of changes; one failing is logged and does not stop the others.
        """
        self._check_open()
        state = self._state
        with state.lock:
            # a change this process already knows is not reported to a new callback,
            # even when its notification is still on its way to the other callbacks
            self._callbacks.add(callback, since=(state.generation, state.version))

    def unregister_callback(self, callback: Callable[[Any], Any]) -> None:
        """Stop calling ``callback``; no error if it was not registered."""
        self._callbacks.remove(callback)

    def _deliver(self, version: int, data: bytes | None) -> None:
        if self._closed or not len(self._callbacks):
            return
        if version <= self._min_version and self._generation == self._state.generation:
            return  # seen or set by the constructor
        generation = self._state.generation
        if self._executor is not None:
            self._executor.submit(self._run_callbacks, version, data, generation)
        else:
            self._run_callbacks(version, data, generation)

    def _run_callbacks(self, version: int, data: bytes | None, generation: int) -> None:
        if self._closed:
            return
        try:
            value = self._decode(version, data)
        except DecodeError:
            _link.logger.exception("cannot decode the new value of channel %r", self._name)
            return

        def accept(since: tuple[int, int] | None) -> bool:
            return since is None or since[0] != generation or version > since[1]

        self._callbacks.call_all(self._state, value, accept=accept)

    def close(self) -> None:
        """Stop holding the channel (idempotent); the last holder removes the value.

        The sets made before are sent first, so the value is removed after them.
        """
        if self._closed:
            return
        self._closed = True
        self._callbacks.clear()
        if self._finalizer.detach() is not None:
            if not self._link.flush(self._timeout):
                _link.logger.warning("channel %r: closing before Redis confirmed its sets",
                                     self._name)
            error = self._state.take_write_error()
            if error is not None:
                _link.logger.warning("channel %r: a set was lost before close: %s",
                                     self._name, error)
            self._release_state()

    def _release_state(self) -> None:
        link = self._link
        try:
            released = link.detach(self._state, id(self))
            if released is not None:
                link.release_state(released)
        finally:
            _link.release_user(link)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"channel {self._name!r} is closed; create a new Channel")

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"version {self._state.version}"
        return f"<Channel {self._name!r} {state}>"


def _object_name(obj: object) -> str:
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise InvalidTypeError(
            f"Cache needs an object with a non-empty str attribute 'name'; "
            f"{type(obj).__name__} has name={name!r}"
        )
    return name


def Cache(obj: object, key: str, default_value: Any = _MISSING, **kwargs: Any) -> Channel:
    """A Channel named ``"<obj.name>:<key>"``, registered for :func:`clear_cache`.

    Other keyword arguments are those of :class:`Channel`.
    """
    name = f"{_object_name(obj)}:{check_name(key)}"
    channel = Channel(name, default_value=default_value, **kwargs)
    try:
        with translate_errors(channel._link.url, f"registering cache {name!r}", channel.timeout):
            channel._link.client.sadd(channel._link.ns.caches, name)
    except BaseException:
        channel.close()
        raise
    return channel


def clear_cache(*devices: object, redis_url: str | None = None,
                timeout: float | None = None) -> int:
    """Remove the cached values of ``devices`` (of every Cache if none is given).

    Every process holding one of those caches then reads its default value. Returns
    the number of values removed.
    """
    prefixes = [_object_name(device) + ":" for device in devices]
    url = resolve_url(redis_url)
    seconds = check_timeout(timeout)
    _link.flush_all(seconds)  # sets made before in this process go first
    client = make_client(url, seconds)
    try:
        with translate_errors(url, "clearing caches", seconds):
            store = Store(client)
            members: Any = client.smembers(store.ns.caches)
            names = sorted(n.decode("utf-8", "surrogateescape") for n in members)
            if prefixes:
                names = [n for n in names if n.startswith(tuple(prefixes))]
            who = default_who()
            cleared = sum(store.clear(name, who) for name in names)
            return cleared
    finally:
        client.close()
