"""The places where the data layer uses redis-py below its public API, and why.

Everything else of the data layer uses plain ``redis.Redis`` calls. These are on
the hot path of every point a scan publishes or a writer reads:

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
* :class:`DirectCommand`: one command sent on a connection of the pool, its reply
  read from the connection's socket by this module's own RESP parser
  (:class:`_ReplyReader`), each large bulk string received by the kernel straight
  into an array of its own, in one ``recv`` (``MSG_WAITALL``). redis-py reads a
  reply 64 KiB at a time, feeds each piece to hiredis, which copies it into its
  buffer, then into a ``bytes``; every piece also lets go of the GIL and takes it
  back. The blissdata streams of 4 MCAs at 1 kHz (655 MB) come through redis-py in
  about 10,000 such pieces, here in one receive per entry (800 in that scan).
  Anything the parser does not expect, a TLS connection (whose socket takes no
  flags) or a dropped connection falls back to redis-py's own reading of the same
  command, retries included.

If a redis-py release changes these internals, this module is the one to adapt.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from typing import Any, Callable, NamedTuple, Protocol

import numpy as np
import redis
from redis.client import NEVER_DECODE

from .connection import Client, redis_errors
from .parser import RawEntry

__all__ = ["XRead", "raw_xread", "StreamWriter", "Unanswered", "RecoveryHandler",
           "DirectCommand", "DIRECT_BYTES"]

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


#: Bulk strings of at least that many bytes are received straight into an array of
#: their own (the others are sliced out of the parser's buffer, as ``bytes``).
DIRECT_BYTES = 1 << 16
#: Bytes the parser asks the socket for at a time, outside large bulk strings.
_RECEIVE_BYTES = 1 << 16
_TIMEVAL = struct.Struct("ll")


class DirectCommand:
    """``command(*args)``: the reply of one read-only command (no reply callback,
    never decoded: bytes, lists, dicts, ints and None; a bulk string of at least
    :data:`DIRECT_BYTES` as a read-only uint8 array), read by :class:`_ReplyReader`
    on a connection of its own made by ``client``'s pool (see the module), whose
    socket blocks with the kernel's timeouts set to the pool's socket timeout. An
    error reply raises :class:`redis.ResponseError`; when the connection fails, it
    is dropped (the next command makes another) and the command goes through
    ``client``'s pool (redis-py's reading and retries). :meth:`close` closes the
    connection. Not thread-safe: one thread per instance."""

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool
        self._fallback = redis.Redis(connection_pool=self._pool)
        self._fallback.response_callbacks.clear()
        self._connection: Any = None
        self._reader: _ReplyReader | None = None

    def __call__(self, *args: Any) -> Any:
        try:
            if self._connection is None:
                self._connection = self._pool.make_connection()
            connection = self._connection
            connection.send_command(*args)  # (connects first when it must)
            sock = connection._sock
            if type(sock) is not socket.socket:  # TLS: no recv flags
                reply = connection.read_response(disable_decoding=True)
            else:
                if self._reader is None or self._reader.sock is not sock:
                    self._reader = _ReplyReader(sock, connection.socket_timeout)
                reply = self._reader.reply()
        except (redis.ConnectionError, redis.TimeoutError, OSError, _Unexpected):
            self.close()
            return self._fallback.execute_command(*args, **{NEVER_DECODE: True})
        except BaseException:
            self.close()
            raise
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def close(self) -> None:
        connection, self._connection, self._reader = self._connection, None, None
        if connection is not None:
            connection.disconnect()


class _Unexpected(Exception):
    """The reply holds a type the parser does not read."""


class _ReplyReader:
    """Reads RESP2 and RESP3 replies from ``sock``, which it makes blocking, its
    kernel's timeouts ``timeout`` seconds (None: none), so that ``MSG_WAITALL`` waits
    for a whole bulk string."""

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock = sock
        seconds = 0.0 if not timeout else max(float(timeout), 0.001)
        value = _TIMEVAL.pack(int(seconds), int(seconds % 1 * 1e6))
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        self._buffer = bytearray(_RECEIVE_BYTES)
        self._view = memoryview(self._buffer)
        self._start = self._end = 0

    def reply(self) -> Any:
        try:
            return self._value()
        except BlockingIOError:  # the kernel's timeout
            raise redis.TimeoutError("Timeout reading from socket") from None

    def _receive(self) -> None:
        """More bytes in the buffer (what was parsed is dropped first)."""
        if self._start:
            left = self._end - self._start
            self._buffer[:left] = self._view[self._start:self._end]
            self._start, self._end = 0, left
        if self._end == len(self._buffer):
            self._view.release()
            self._buffer.extend(bytes(len(self._buffer)))
            self._view = memoryview(self._buffer)
        got = self.sock.recv_into(self._view[self._end:])
        if not got:
            raise redis.ConnectionError("Connection closed by server.")
        self._end += got

    def _line(self) -> bytes:
        while True:
            at = self._buffer.find(b"\r\n", self._start, self._end)
            if at >= 0:
                line = bytes(self._view[self._start:at])
                self._start = at + 2
                return line
            self._receive()

    def _bulk(self, size: int) -> Any:
        if size < DIRECT_BYTES:
            while self._end - self._start < size + 2:
                self._receive()
            value = bytes(self._view[self._start:self._start + size])
            self._start += size + 2
            return value
        array: Any = np.empty(size + 2, dtype=np.uint8)  # its CRLF too
        target = memoryview(array)
        have = min(self._end - self._start, size + 2)
        target[:have] = self._view[self._start:self._start + have]
        self._start += have
        while have < size + 2:
            got = self.sock.recv_into(target[have:], size + 2 - have, socket.MSG_WAITALL)
            if not got:
                raise redis.ConnectionError("Connection closed by server.")
            have += got
        target.release()
        received = array[:size]
        received.flags.writeable = False
        return received

    def _value(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$" or kind == b"=":
            size = int(rest)
            if size < 0:
                return None
            value = self._bulk(size)
            return value[4:] if kind == b"=" else value  # verbatim: "txt:" first
        if kind == b"*" or kind == b"~" or kind == b">":
            count = int(rest)
            return None if count < 0 else [self._value() for _ in range(count)]
        if kind == b"%":
            return {_hashable(self._value()): self._value() for _ in range(int(rest))}
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest
        if kind == b"_":
            return None
        if kind == b"-":
            return redis.ResponseError(rest.decode(errors="replace"))
        raise _Unexpected(f"RESP type {kind!r}")


def _hashable(key: Any) -> Any:
    if isinstance(key, np.ndarray):
        return key.tobytes()
    if isinstance(key, list):
        raise _Unexpected("a map key that is an array")
    return key
