"""One process's connection to one Redis database, shared by all its Channels.

Threads and ownership:

* the caller's thread runs the blocking calls it asks for (acquire, release), each
  bounded by the link's socket timeout, and *queues* its sets;
* the link's *writer thread* (:mod:`channels.writer`) owns a write connection: it sends
  the queued sets in order, many per round trip, and runs the releases of
  garbage-collected channels after the sets queued before them;
* the link's *I/O thread* owns the pub/sub connection: it reads update messages,
  refreshes the leases of every channel this process holds (one script call per
  period), reconnects and resynchronises after a disconnect;
* the link's *dispatch thread* runs user callbacks, in order, so that a slow or
  failing callback never delays the I/O thread.

The threads are daemons owned by the link; they stop when the last user of the link
detaches (``release_user``) or at interpreter exit. Links are shared per Redis URL
through :func:`acquire_link`.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import queue
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Protocol

import redis.exceptions

from .connection import (
    default_who,
    make_client,
    make_connection,
    read_epoch,
    redact,
    translate_errors,
)
from .errors import ChannelsError
from .store import Snapshot, Store, Update, parse_update
from .writer import Writer

__all__ = ["Link", "SharedState", "acquire_link", "flush_all", "shutdown", "DEFAULT_LEASE"]

logger = logging.getLogger(__name__)

DEFAULT_LEASE = 3.0
"""Seconds a crashed holder keeps a channel's value alive (see ``Channel(lease=...)``)."""

_POLL = 0.05
_RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0)
_NETWORK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class _Listener(Protocol):
    def _deliver(self, version: int, data: bytes | None) -> None: ...


class SharedState:
    """What this process knows of one channel, shared by its Channel objects.

    ``version``/``data`` only move forward (by version). ``pending`` counts this
    process's sets not yet confirmed by Redis; while there are some, this process reads
    ``pending_data``, its latest set. Guarded by ``lock``.
    """

    _serials = itertools.count(1)

    def __init__(self, link: "Link", name: str) -> None:
        self.link = link
        self.name = name
        self.member = f"{link.member}:{next(self._serials)}"
        self.lock = threading.RLock()
        self.version = 0
        self.data: bytes | None = None
        self.who = ""
        self.when_us = 0
        self.lease = DEFAULT_LEASE
        self.pending = 0
        self.generation = 0
        self.pending_data: bytes | None = None
        self.write_error: ChannelsError | None = None
        self.listeners: dict[int, weakref.ref[_Listener]] = {}

    def apply_snapshot(self, snap: Snapshot, skip: int | None = None) -> None:
        """Apply a value read from Redis; ``skip`` is a listener not to call back."""
        with self.lock:
            if snap.version <= self.version:
                return
            if snap.data is None and self.data is None:
                self.version = snap.version
                return
            self._change(snap.version, snap.data, snap.who, snap.when_us, skip)

    def apply_update(self, update: Update) -> bool:
        """Apply a message; False when a message was missed and a re-read is needed."""
        with self.lock:
            if update.version <= self.version:
                return True
            if update.previous != self.version and not (
                update.previous == 0 and self.data is None
            ):
                return False
            self._change(update.version, None if update.cleared else update.data,
                         update.who, update.when_us)
            return True

    def forget_versions(self) -> None:
        """Redis lost its data: accept the next snapshot or update whatever its version."""
        with self.lock:
            self.version = -1
            self.generation += 1

    def current(self) -> tuple[int, bytes | None]:
        """``(version, data)`` as this process reads it (its latest set first)."""
        with self.lock:
            if self.pending:
                return -1, self.pending_data
            return self.version, self.data

    def begin_local_set(self, data: bytes) -> None:
        with self.lock:
            self.pending += 1
            self.pending_data = data

    def confirm_local_set(self, version: int, data: bytes, who: str, when_us: int) -> None:
        with self.lock:
            self._end_pending()
            if version > self.version:
                self._change(version, data, who, when_us)

    def fail_local_set(self, error: ChannelsError) -> None:
        with self.lock:
            self._end_pending()
            self.write_error = error

    def cancel_local_set(self) -> None:
        """A set that was never queued."""
        with self.lock:
            self._end_pending()

    def _end_pending(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.pending = 0
            self.pending_data = None

    def take_write_error(self) -> ChannelsError | None:
        """The error of a failed earlier set, once (then forgotten)."""
        with self.lock:
            error, self.write_error = self.write_error, None
        return error

    def _change(self, version: int, data: bytes | None, who: str, when_us: int,
                skip: int | None = None) -> None:
        self.version, self.data, self.who, self.when_us = version, data, who, when_us
        for key, ref in list(self.listeners.items()):
            if key == skip:
                continue
            listener = ref()
            if listener is not None:
                self.link.dispatch(listener._deliver, version, data)


class Link:
    """Redis client, pub/sub reader, lease keeper and callback dispatcher for one URL."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.who = default_who()
        self.member = f"{self.who}:{uuid.uuid4().hex[:12]}"
        self.client = make_client(url, timeout)
        self.store = Store(self.client)
        self.ns = self.store.ns
        self.states: dict[str, SharedState] = {}
        self.users = 0
        self.closed = False
        self.label = redact(url)
        self.epoch: bytes | None = None
        self._lock = threading.Lock()
        self._callbacks: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None]
        self._callbacks = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._period = DEFAULT_LEASE / 3.0
        with translate_errors(url, "subscribing to channel updates", timeout):
            self._conn: Any = self._subscribe()
        label = self.label
        self._client_closed = False
        self._client_closed_by_writer = False
        self.writer = Writer(self, label)
        self._io = threading.Thread(target=self._run_io, name=f"channels-io {label}", daemon=True)
        self._dispatcher = threading.Thread(
            target=self._run_dispatch, name=f"channels-callbacks {label}", daemon=True)
        self._io.start()
        self._dispatcher.start()

    # --- used by Channel (any thread) -------------------------------------------------

    def attach(self, name: str, listener: _Listener, lease: float) -> SharedState:
        with self._lock:
            state = self.states.get(name)
            if state is None:
                state = self.states[name] = SharedState(self, name)
            state.listeners[id(listener)] = weakref.ref(listener)
            state.lease = min(state.lease, lease) if len(state.listeners) > 1 else lease
            self._period = min(self._period, lease / 3.0)
        return state

    def detach(self, state: SharedState, listener_id: int) -> SharedState | None:
        """Forget a listener; returns the state when nobody in this process holds it."""
        with self._lock:
            state.listeners.pop(listener_id, None)
            if state.listeners or self.states.get(state.name) is not state:
                return None
            del self.states[state.name]
            return state

    def release_state(self, state: SharedState) -> None:
        """Unregister this process as a holder (blocking, one round trip)."""
        with translate_errors(self.url, f"releasing channel {state.name!r}", self.timeout):
            self.store.release(state.name, state.member, self.who)

    def forget_later(self, state: SharedState, listener_id: int) -> None:
        """Detach from a garbage-collected Channel: the writer thread does the release."""
        if not self.closed:
            self.writer.submit_call(lambda: self._forget_now(state, listener_id))

    def flush(self, timeout: float) -> bool:
        """Wait until every set queued so far is done; False on timeout."""
        return self.writer.flush(timeout)

    def _forget_now(self, state: SharedState, listener_id: int) -> None:
        released = self.detach(state, listener_id)
        try:
            if released is not None:
                self.store.release(released.name, released.member, self.who)
        except _NETWORK_ERRORS as exc:
            logger.warning("could not release channel %r (%s); its lease will expire",
                           state.name, exc)
        finally:
            release_user(self)

    def dispatch(self, func: Callable[..., None], *args: Any) -> None:
        self._callbacks.put((func, args))

    def on_dispatch_thread(self) -> bool:
        return threading.current_thread() is self._dispatcher

    # --- life cycle -------------------------------------------------------------------

    def stop(self, release: bool) -> None:
        """Stop the threads; with ``release``, unregister every channel still held."""
        if release:
            if not self.writer.flush(self.timeout):
                logger.warning("sets to %s not confirmed at exit", self.label)
            with self._lock:
                states = list(self.states.values())
                self.states.clear()
            for state in states:
                try:
                    self.store.release(state.name, state.member, self.who)
                except _NETWORK_ERRORS as exc:
                    logger.warning("could not release channel %r at exit: %s", state.name, exc)
        self.closed = True
        self._client_closed_by_writer = self.writer.on_writer_thread()
        self.writer.stop(self.timeout + 1.0)
        self._stopping.set()
        self._callbacks.put(None)
        current = threading.current_thread()
        for thread in (self._io, self._dispatcher):
            if thread is not current:
                thread.join(self.timeout + 1.0)
        if not self.writer.on_writer_thread():
            self._close_client()

    def note_epoch(self, epoch: bytes) -> None:
        """Called on every (re)connection: a new epoch means Redis lost the data."""
        with self._lock:
            if self.epoch is None or self.epoch == epoch:
                self.epoch = epoch
                return
            self.epoch = epoch
            states = list(self.states.values())
        logger.warning("Redis at %s lost the channels' data (restart without persistence "
                       "or flush): resynchronising %d channel(s)", self.label, len(states))
        for state in states:
            state.forget_versions()

    def writer_stopped(self) -> None:
        """Called by the writer thread as it ends (after the link was stopped)."""
        if self.closed and self._client_closed_by_writer:
            self._close_client()

    def _close_client(self) -> None:
        with self._lock:
            if self._client_closed:
                return
            self._client_closed = True
        self.client.close()

    # --- I/O thread -------------------------------------------------------------------

    def _subscribe(self) -> Any:
        conn = make_connection(self.client)
        try:
            conn.connect()
            self.note_epoch(read_epoch(conn, self.ns))
            conn.send_command("PSUBSCRIBE", self.ns.update_pattern)
            reply = conn.read_response()
            if not reply or reply[0] != b"psubscribe":
                raise redis.exceptions.ConnectionError(f"unexpected PSUBSCRIBE reply {reply!r}")
        except BaseException:
            conn.disconnect()
            raise
        return conn

    def _run_io(self) -> None:
        conn = self._conn
        failures = 0
        last_refresh = time.monotonic()
        while not self._stopping.is_set():
            try:
                if conn is None:
                    conn = self._subscribe()
                    failures = 0
                    self._resync_all()
                next_refresh = last_refresh + self._period
                wait = min(_POLL, max(0.0, next_refresh - time.monotonic()))
                if conn.can_read(timeout=wait):
                    self._on_reply(conn.read_response())
                    continue
                if time.monotonic() >= next_refresh:
                    last_refresh = time.monotonic()
                    self._refresh_leases()
                    self._period = self._refresh_period()
            except _NETWORK_ERRORS as exc:
                if conn is not None:
                    logger.warning("lost the channel update connection to %s (%s); "
                                   "reconnecting", redact(self.url), exc)
                    conn.disconnect()
                    conn = None
                delay = _RECONNECT_DELAYS[min(failures, len(_RECONNECT_DELAYS) - 1)]
                failures += 1
                self._stopping.wait(delay)
        if conn is not None:
            conn.disconnect()

    def _refresh_period(self) -> float:
        with self._lock:
            leases = [state.lease for state in self.states.values()]
        return min(leases, default=DEFAULT_LEASE) / 3.0

    def _refresh_leases(self) -> None:
        with self._lock:
            states = dict(self.states)
        if not states:
            return
        held = list(states.values())
        for index in self.store.refresh([(s.name, s.member, s.lease) for s in held]):
            state = held[index]
            logger.warning("lease of channel %r had expired (process stopped or Redis "
                           "unreachable); registering again", state.name)
            self._reacquire(state)

    def _reacquire(self, state: SharedState) -> None:
        state.apply_snapshot(self.store.acquire(state.name, state.member, state.lease,
                                                None, self.who))

    def _resync_all(self) -> None:
        with self._lock:
            states = list(self.states.values())
        for state in states:
            self._reacquire(state)

    def _on_reply(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) != 4 or reply[0] != b"pmessage":
            return
        name = self.ns.name_of_update_channel(reply[2])
        state = self.states.get(name) if name is not None else None
        if state is None:
            return
        try:
            update = parse_update(reply[3])
        except ValueError:
            logger.error("ignoring a malformed update on %r", reply[2])
            return
        if not state.apply_update(update):
            state.apply_snapshot(self.store.read(state.name))

    # --- dispatch thread --------------------------------------------------------------

    def _run_dispatch(self) -> None:
        while True:
            item = self._callbacks.get()
            if item is None:
                return
            func, args = item
            try:
                func(*args)
            except Exception:
                logger.exception("channels callback dispatch failed")
            # drop the references now: a waiting thread must not keep a Channel alive
            del item, func, args


_links: dict[str, Link] = {}
_links_lock = threading.Lock()
_atexit_registered = False


def acquire_link(url: str, timeout: float) -> Link:
    """The shared link for ``url`` (created on first use); call :func:`release_user`."""
    global _atexit_registered
    with _links_lock:
        link = _links.get(url)
        if link is None:
            link = _links[url] = Link(url, timeout)
            if not _atexit_registered:
                atexit.register(shutdown)
                _atexit_registered = True
        link.users += 1
        return link


def release_user(link: Link) -> None:
    """One user less; the last one stops the link's threads."""
    with _links_lock:
        link.users -= 1
        if link.users > 0:
            return
        if _links.get(link.url) is link:
            del _links[link.url]
    link.stop(release=False)


def flush_all(timeout: float) -> None:
    """Wait (up to ``timeout`` each) until every link has sent the sets queued so far."""
    with _links_lock:
        links = list(_links.values())
    for link in links:
        link.flush(timeout)


def shutdown() -> None:
    """Release every channel this process holds and stop all background threads.

    Registered with :mod:`atexit` so that a clean exit frees the channels at once;
    also callable by programs and tests. Channels still open afterwards are unusable.
    """
    with _links_lock:
        links = list(_links.values())
        _links.clear()
    for link in links:
        link.stop(release=True)
