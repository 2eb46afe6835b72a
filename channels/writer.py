"""Pipelined writes of one link: the sets (and releases) of a process, in order.

Threads and ownership:

* any thread *submits*: :meth:`Writer.submit_set` and :meth:`Writer.submit_call` only
  append to the queue (a set waits, at most its timeout, when ``MAX_QUEUED`` sets are
  already waiting);
* the *writer thread* owns one dedicated Redis connection. It takes every queued set
  (up to ``MAX_BATCH``), sends them at once as ``EVALSHA`` of the set script and
  reads the replies in order, so a process's sets reach Redis in the order they were
  made, many per round trip. Calls (releases of garbage-collected channels) run in
  the writer thread between batches, so they never overtake an earlier set.

A set that fails (Redis unreachable, a refused command) is recorded on its channel's
shared state and raised by the next set or ``flush()`` of that channel.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import redis.exceptions

from .connection import make_connection, read_epoch, redact, translate_errors
from .errors import ChannelsConnectionError, ChannelsError, ChannelsTimeoutError, ClosedError

if TYPE_CHECKING:
    from .link import Link, SharedState

__all__ = ["Writer", "MAX_QUEUED", "MAX_BATCH"]

logger = logging.getLogger(__name__)

MAX_QUEUED = 10_000
"""Sets waiting to be sent before a new set waits for room."""

MAX_BATCH = 1000
"""Sets sent in one round trip at most."""

_NETWORK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class _Set:
    __slots__ = ("state", "data", "lease_ms")

    def __init__(self, state: "SharedState", data: bytes, lease: float) -> None:
        self.state = state
        self.data = data
        self.lease_ms = int(lease * 1000)


class _Call:
    __slots__ = ("func",)

    def __init__(self, func: Callable[[], None]) -> None:
        self.func = func


class Writer:
    """The write queue and writer thread of one :class:`~channels.link.Link`."""

    def __init__(self, link: "Link", label: str) -> None:
        self._link = link
        self._cond = threading.Condition()
        self._queue: collections.deque[_Set | _Call] = collections.deque()
        self._sets_queued = 0
        self._submitted = 0
        self._completed = 0
        self._stopping = False
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name=f"channels-writer {label}",
                                        daemon=True)
        self._thread.start()

    # --- any thread -------------------------------------------------------------------

    def submit_set(self, state: "SharedState", data: bytes, lease: float,
                   timeout: float) -> None:
        """Queue a set; this process reads ``data`` at once (``state.pending``)."""
        item = _Set(state, data, lease)
        # the state's lock is never taken while holding self._cond (a garbage-collected
        # channel may call submit_call while its thread holds a state's lock)
        state.begin_local_set(data)
        try:
            with self._cond:
                if self._stopping:
                    raise ClosedError(f"channel {state.name!r}: its connection is closed")
                if self._sets_queued >= MAX_QUEUED:
                    self._wait_for_room(state.name, timeout)
                self._queue.append(item)
                self._sets_queued += 1
                self._submitted += 1
                self._cond.notify_all()
        except BaseException:
            state.cancel_local_set()
            raise

    def _wait_for_room(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._sets_queued >= MAX_QUEUED and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelsTimeoutError(
                    f"setting channel {name!r}: {MAX_QUEUED} earlier sets still wait for "
                    f"Redis at {self._link.label} after {timeout} s; check that the server "
                    "is running and not overloaded, or raise the timeout")
            self._cond.wait(left)
        if self._stopping:
            raise ClosedError(f"channel {name!r}: its connection is closed")

    def submit_call(self, func: Callable[[], None]) -> None:
        """Run ``func`` in the writer thread after every set queued so far (never waits)."""
        with self._cond:
            if self._stopping and not self._thread.is_alive():
                return
            self._queue.append(_Call(func))
            self._submitted += 1
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is done; False on timeout."""
        if threading.current_thread() is self._thread:
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            while self._completed < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return self._completed >= target
                self._cond.wait(left)
        return True

    def on_writer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def stop(self, timeout: float) -> None:
        """Finish what is queued, then stop the thread (joined unless called from it)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # --- writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if not self._queue:
                        return
                    batch = self._take()
                if isinstance(batch, _Call):
                    self._call(batch)
                    count = 1
                else:
                    self._write(batch)
                    count = len(batch)
                with self._cond:
                    self._completed += count
                    self._cond.notify_all()
        finally:
            self._disconnect()
            self._link.writer_stopped()

    def _take(self) -> "_Call | list[_Set]":
        first = self._queue.popleft()
        if isinstance(first, _Call):
            return first
        batch = [first]
        while self._queue and len(batch) < MAX_BATCH and isinstance(self._queue[0], _Set):
            batch.append(self._queue.popleft())  # type: ignore[arg-type]
        self._sets_queued -= len(batch)
        return batch

    def _call(self, item: _Call) -> None:
        try:
            item.func()
        except Exception:
            logger.exception("channels background call failed")

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None

    def _connection(self) -> Any:
        """The write connection, (re)connected and with the set script loaded."""
        conn = self._conn
        if conn is not None:
            try:
                if conn.can_read(timeout=0):  # a reply nobody asked for: start afresh
                    self._disconnect()
            except _NETWORK_ERRORS:  # closed by the server while idle
                self._disconnect()
        if self._conn is None:
            conn = make_connection(self._link.client)
            try:
                conn.connect()
                self._link.note_epoch(read_epoch(conn, self._link.ns))
                self._load_script(conn)
            except BaseException:
                conn.disconnect()
                raise
            self._conn = conn
        return self._conn

    def _load_script(self, conn: Any) -> None:
        conn.send_command("SCRIPT", "LOAD", self._link.store.set_script)
        conn.read_response()

    def _write(self, batch: list[_Set]) -> None:
        store = self._link.store
        who = self._link.who
        try:
            conn = self._connection()
            conn.send_packed_command(conn.pack_commands(
                [store.set_command(item.state.name, item.data, who, item.lease_ms)
                 for item in batch]), check_health=False)
        except _NETWORK_ERRORS as exc:
            self._disconnect()
            self._fail(batch, exc)
            return
        unknown_script: list[_Set] = []
        for index, item in enumerate(batch):
            try:
                reply = conn.read_response()
            except redis.exceptions.NoScriptError:
                unknown_script.append(item)
                continue
            except redis.exceptions.ResponseError as exc:
                self._fail([item], exc)
                continue
            except _NETWORK_ERRORS as exc:
                self._disconnect()
                self._fail(batch[index:], exc)
                return
            version, _, when = reply
            item.state.confirm_local_set(int(version), item.data, who, int(when))
        if unknown_script:  # the server's script cache was flushed: load and send again
            try:
                self._load_script(conn)
            except _NETWORK_ERRORS as exc:
                self._disconnect()
                self._fail(unknown_script, exc)
                return
            self._write(unknown_script)

    def _fail(self, items: list[_Set], exc: BaseException) -> None:
        errors = [self._translate(item.state.name, exc) for item in items]
        for item, error in zip(items, errors):
            item.state.fail_local_set(error)
        logger.warning("%d set(s) lost, raised by the next set or flush() of their "
                       "channel: %s", len(items), errors[0])

    def _translate(self, name: str, exc: BaseException) -> ChannelsError:
        link = self._link
        try:
            with translate_errors(link.url, f"setting channel {name!r}", link.timeout):
                raise exc
        except ChannelsError as translated:
            return translated
        except BaseException:
            pass
        return ChannelsConnectionError(
            f"setting channel {name!r}: cannot talk to Redis at {redact(link.url)} ({exc}); "
            "check that the server is running and the URL is right")
