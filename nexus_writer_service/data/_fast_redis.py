"""The two places where the data layer uses redis-py below its public API, and why.

Everything else of the data layer uses plain ``redis.Redis`` calls. These two are
on the hot path of every point a scan publishes or a writer reads:

* :func:`raw_xread`: one ``XREAD`` whose reply is kept as the server sends it. redis-py
  turns every stream entry into a dict, which costs more CPU time than the rest of
  reading small entries (reading 20,000 entries of 10 channels x 100 float64: 0.27 s
  of CPU time through ``Redis.xread``, 0.07 s raw). It removes the ``XREAD`` reply
  callback of a second client on the caller's own connection pool (same connections,
  timeouts, retries and health checks); the caller's client is left as it was.
* :class:`StreamWriter`: commands written on one dedicated connection with
  ``send_command``, their replies read later with ``read_response``, so that a
  publisher sends each block at once without waiting one round trip for it (3,000
  entries of 10 channels x 100 float64: 0.34 s one round trip each, 0.16 s through
  the publisher, which also encodes and checks them). It keeps each command until
  its reply is read, so that after a dropped connection its owner can tell which of
  them Redis stored and send the others again (see :mod:`.publish_recovery`).

If a redis-py release changes these internals, this module is the one to adapt.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, NamedTuple, Protocol

import redis
from redis.client import NEVER_DECODE

from .connection import Client, redis_errors
from .parser import RawEntry

__all__ = ["XRead", "raw_xread", "StreamWriter", "Unanswered", "RecoveryHandler"]

#: ``xread(key, position, count, block_ms)``: the entries of one XREAD.
XRead = Callable[[str, str, int, int], list[RawEntry]]


def raw_xread(client: Client) -> XRead:
    """``xread(key, position, count, block_ms)``: the entries of one XREAD, as the
    server sends them (each ``(ID, [field, value, ...])``).

    A client of another kind (or bound to a single connection) is read the usual
    way, then flattened."""
    if isinstance(client, redis.Redis) and client.connection is None:
        raw = redis.Redis(connection_pool=client.connection_pool)
        if "XREAD" in raw.response_callbacks:
            del raw.response_callbacks["XREAD"]

        def read(key: str, position: str, count: int, block_ms: int) -> list[RawEntry]:
            reply = raw.execute_command("XREAD", "COUNT", count, "BLOCK", block_ms,
                                        "STREAMS", key, position, **{NEVER_DECODE: True})
            if not reply:
                return []
            # RESP3 answers {key: entries}, RESP2 [[key, entries]]; each entry is
            # [ID, fields] (XREAD never gives None fields, as XREADGROUP can)
            entries: list[RawEntry] = (next(iter(reply.values())) if isinstance(reply, dict)
                                       else reply[0][1])
            return entries
        return read

    def read_flattened(key: str, position: str, count: int, block_ms: int
                       ) -> list[RawEntry]:
        reply = client.xread({key: position}, count=count, block=block_ms)
        if not reply:
            return []
        entries = reply[0][1]
        return [(entry_id, [item for pair in (fields or {}).items() for item in pair])
                for entry_id, fields in entries]
    return read_flattened


class Unanswered(NamedTuple):
    """A command sent on the stream connection whose reply has not been read:
    the caller's ``token`` for it and its arguments."""

    token: Any
    args: tuple[Any, ...]


class RecoveryHandler(Protocol):
    """What a :class:`StreamWriter` asks its owner when a command cannot go through."""

    def recover(self, unanswered: list[Unanswered], cause: Exception, since: float
                ) -> list[Unanswered]:
        """The connection dropped (first at ``time.monotonic()`` ``since``) with
        ``unanswered`` commands, in the order sent: wait for Redis (raising when
        the caller should be told that it cannot wait more) and return those to send
        again, in that order. Runs with the writer's lock held: no other command
        goes out meanwhile."""

    def refused(self, token: Any, error: redis.ResponseError) -> None:
        """Redis refused the command ``token`` (out of memory, read-only replica...)."""


#: Errors after which the replies of the commands in flight may be lost.
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class StreamWriter:
    """Writes commands on one dedicated connection without waiting for each reply.

    Every command is on the wire (so visible to readers) when ``send`` returns;
    replies are read once more than ``window`` are outstanding, and all of them
    by :meth:`flush`. Commands whose reply has not come are kept: when the
    connection drops, ``handler`` decides which of them to send again (see
    :class:`RecoveryHandler`) and this writer sends them on a new connection before
    anything else; a command Redis refuses is handed to ``handler``. Thread-safe;
    commands keep their order.
    """

    def __init__(self, client: Client, handler: RecoveryHandler, window: int = 64):
        self._pool = client.connection_pool
        self._handler = handler
        self._connection: Any = None
        self._sent: deque[Unanswered] = deque()
        self._window = window
        self._lock = threading.Lock()

    def send(self, what: str, token: Any, *args: Any) -> None:
        item = Unanswered(token, args)
        with self._lock, redis_errors(what):
            try:
                if self._connection is None:
                    self._connection = self._pool.get_connection()
                self._check_connection()
            except CONNECTION_ERRORS as exc:
                self._sent.append(item)  # not sent: the recovery sends it
                self._recover(exc)
                return
            try:
                # kept before it is sent: a command half-written is unanswered too
                self._sent.append(item)
                self._connection.send_command(*args)
                while len(self._sent) > self._window:
                    self._read_one()
            except CONNECTION_ERRORS as exc:
                self._recover(exc)

    def _check_connection(self) -> None:
        """Before sending: read the replies that have arrived, without waiting. A
        connection the server closed (Redis restarted) with no reply outstanding is
        replaced at once; with replies outstanding, its error starts the recovery."""
        while self._sent and self._connection.can_read(timeout=0):
            self._read_one()
        if not self._sent and self._connection.can_read(timeout=0):
            self._connection.disconnect()
            self._connection.connect()

    def _read_one(self) -> None:
        """Read the oldest reply; a reply lost with the connection stays outstanding."""
        try:
            self._connection.read_response()
        except redis.ResponseError as exc:
            self._handler.refused(self._sent.popleft().token, exc)
            return
        self._sent.popleft()

    def _recover(self, cause: Exception) -> None:
        """The connection dropped: until every unanswered command is answered or
        given up by the handler, ask the handler what to send again and send it on
        a new connection."""
        since = time.monotonic()
        while True:
            unanswered = list(self._sent)
            self._sent.clear()
            self._drop_connection()
            resend = self._handler.recover(unanswered, cause, since)
            if not resend:  # (the next command connects again)
                return
            pushed = 0
            try:
                self._connection = self._pool.get_connection()
                for item in resend:
                    self._sent.append(item)
                    pushed += 1
                    self._connection.send_command(*item.args)
                while self._sent:
                    self._read_one()
                return
            except CONNECTION_ERRORS as exc:
                # answered ones have left ``_sent``; those never pushed are still due
                cause = exc
                self._sent.extend(resend[pushed:])

    def flush(self, what: str) -> None:
        with self._lock, redis_errors(what):
            try:
                while self._sent:
                    self._read_one()
            except CONNECTION_ERRORS as exc:
                self._recover(exc)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.disconnect()
            self._pool.release(self._connection)
        self._connection = None

    def close(self) -> None:
        self.flush("closing the stream connection")
        with self._lock:
            if self._connection is not None:
                self._pool.release(self._connection)
                self._connection = None
