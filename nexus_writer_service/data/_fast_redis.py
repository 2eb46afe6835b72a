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
  the publisher, which also encodes and checks them).

If a redis-py release changes these internals, this module is the one to adapt.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import redis
from redis.client import NEVER_DECODE

from .connection import Client, redis_errors
from .parser import RawEntry

__all__ = ["XRead", "raw_xread", "StreamWriter"]

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


class StreamWriter:
    """Writes commands on one dedicated connection without waiting for each reply.

    Every command is on the wire (so visible to readers) when ``send`` returns;
    replies are read once more than ``window`` are outstanding, and all of them
    by :meth:`flush`. An error reply is raised by the ``send``/``flush`` that
    reads it. Thread-safe; commands keep their order.
    """

    def __init__(self, client: Client, window: int = 64):
        self._pool = client.connection_pool
        self._connection: Any = None
        self._pending = 0
        self._window = window
        self._lock = threading.Lock()

    def send(self, what: str, *args: Any) -> None:
        with self._lock, redis_errors(what):
            if self._connection is None:
                self._connection = self._pool.get_connection()
            try:
                self._check_connection()
                self._connection.send_command(*args)
                self._pending += 1
                while self._pending > self._window:
                    self._read_one()
            except BaseException:
                self._discard()
                raise

    def _check_connection(self) -> None:
        """Before sending: read the replies that have arrived, without waiting. A
        connection the server closed (Redis restarted) is replaced when no reply is
        outstanding; otherwise its error is raised now. Either way the next command
        never vanishes into a dead socket with only a later call failing."""
        try:
            while self._pending and self._connection.can_read(timeout=0):
                self._read_one()
            closed = not self._pending and self._connection.can_read(timeout=0)
        except (redis.ConnectionError, OSError):
            if self._pending:
                raise
            closed = True
        if closed:
            self._connection.disconnect()
            self._connection.connect()

    def _read_one(self) -> None:
        """Read one reply; a reply lost with the connection stays outstanding."""
        try:
            self._connection.read_response()
        except redis.ResponseError:
            self._pending -= 1
            raise
        self._pending -= 1

    def flush(self, what: str) -> None:
        with self._lock, redis_errors(what):
            try:
                while self._pending:
                    self._read_one()
            except BaseException:
                self._discard()
                raise

    def _discard(self) -> None:
        if self._connection is not None:
            self._connection.disconnect()
            self._pool.release(self._connection)
        self._connection = None
        self._pending = 0

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                try:
                    while self._pending:
                        self._read_one()
                finally:
                    self._pool.release(self._connection)
                    self._connection = None
                    self._pending = 0
