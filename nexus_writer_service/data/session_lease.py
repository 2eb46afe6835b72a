"""One writer per session: a lease in Redis decides who writes a session.

The lease is the hash ``nws:<session>:writer`` (``token``, ``host``, ``pid``,
``since``, ``name``), created only when it does not exist and expiring on the
*server's* clock ``ttl`` seconds after its last renewal. The holder renews it every
``ttl / 3`` from one thread of its own. A writer that cannot renew (Redis unreachable,
a network partition, the process stopped) considers the lease lost ``ttl * 2 / 3``
after the last renewal it *sent*: the server keeps it at least ``ttl`` after that, so
the holder stops writing at least ``ttl / 3`` before anybody else may start.

Threads: :meth:`SessionLease.acquire` and :meth:`SessionLease.release` are called by
the owner (one thread or greenlet); :attr:`SessionLease.valid` may be read from
anywhere; the renewal thread only renews and records.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Optional

import redis

from ..errors import SessionTakenError
from .connection import Client, redis_errors
from .keys import SessionKeys

__all__ = ["SessionLease", "LeaseHolder", "DEFAULT_TTL"]

#: Seconds a lease outlives its last renewal on the server.
DEFAULT_TTL = 3.0

# Takes the lease if nobody holds it; returns nothing then, else the holder's fields.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HGETALL', KEYS[1]) end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'host', ARGV[2], 'pid', ARGV[3],
           'name', ARGV[4], 'since', now[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {}
"""

# 1: renewed; 0: the lease expired; -1: somebody else holds it.
_RENEW = """
local token = redis.call('HGET', KEYS[1], 'token')
if not token then return 0 end
if token ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a session's lease."""

    host: str
    pid: int
    name: str
    since: float

    def __str__(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{self.name} (host {self.host}, pid {self.pid}) since {since}"

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> "LeaseHolder":
        def text(key: str) -> str:
            return fields.get(key.encode(), b"").decode(errors="replace")
        try:
            pid, since = int(text("pid") or 0), float(text("since") or 0)
        except ValueError:
            pid, since = 0, 0.0
        return cls(text("host") or "?", pid, text("name") or "?", since)


class SessionLease:
    """``SessionLease(client, session, name=...)``: :meth:`acquire`, then :attr:`valid`
    until :meth:`release` (also a context manager)."""

    def __init__(self, client: Client, session: str, name: str = "NexusSessionWriter",
                 ttl: float = DEFAULT_TTL) -> None:
        if not 0.3 <= ttl <= 3600:
            raise ValueError(f"a session lease lasts 0.3 to 3600 s, got {ttl}")
        self.session = session
        self.name = name
        self.ttl = ttl
        self.key = f"{SessionKeys(session).prefix}:writer"
        self._client = client
        self._token = uuid.uuid4().hex
        self._sent_at: Optional[float] = None  # monotonic time of the last renewal sent
        self._lost_reason = ""
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- owner ---------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease and keep it renewed.

        :raises SessionTakenError: another writer holds it (the message names it)
        :raises RedisUnavailableError: Redis cannot be reached
        """
        if self._thread is not None:
            return
        sent = time.monotonic()
        with redis_errors(f"taking the writer lease of session {self.session!r}"):
            holder = self._client.eval(_ACQUIRE, 1, self.key, self._token,
                                       socket.gethostname(), os.getpid(), self.name,
                                       int(self.ttl * 1000))
        if holder:
            fields = dict(zip(holder[::2], holder[1::2]))
            raise SessionTakenError(
                f"session {self.session!r} is written by {LeaseHolder.from_fields(fields)}: "
                "one writer per session; stop that one, or start this one as a standby")
        self._sent_at = sent
        self._lost_reason = ""
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                        name=f"lease-{self.session}")
        self._thread.start()

    def holder(self) -> Optional[LeaseHolder]:
        """Who holds the lease now (None: nobody)."""
        with redis_errors(f"reading the writer lease of session {self.session!r}"):
            fields = self._client.hgetall(self.key)
        return LeaseHolder.from_fields(fields) if fields else None

    def release(self) -> None:
        """Stop renewing and give the lease up (another writer may start at once)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(self.ttl + 5)
        try:
            self._client.eval(_RELEASE, 1, self.key, self._token)
        except redis.RedisError:
            pass  # it expires by itself within ttl
        self._sent_at = None
        self._lost_reason = ""

    def __enter__(self) -> "SessionLease":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- anyone ----------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """Whether this writer may write: it holds the lease and renewed it recently
        enough that nobody else can hold it yet."""
        sent = self._sent_at
        return (self._thread is not None and not self._lost_reason and sent is not None
                and time.monotonic() < sent + self.ttl * 2 / 3)

    @property
    def lost_reason(self) -> str:
        """Why the lease was lost ('' while valid, or when it lapsed without an answer)."""
        if self._lost_reason:
            return self._lost_reason
        if self._thread is not None and not self.valid:
            return (f"the writer lease of session {self.session!r} could not be renewed "
                    f"for {self.ttl * 2 / 3:.1f} s (Redis unreachable, or this process "
                    "stopped)")
        return ""

    # -- renewal thread ------------------------------------------------------------------

    def _renew_loop(self) -> None:
        period = self.ttl / 3
        while not self._stop.wait(period):
            sent = time.monotonic()
            try:
                answer = self._client.eval(_RENEW, 1, self.key, self._token,
                                           int(self.ttl * 1000))
            except redis.RedisError:
                continue  # retried next period; valid lapses by itself meanwhile
            if answer == 1:
                if not self._lost_reason:
                    self._sent_at = sent
                continue
            self._lost_reason = (
                f"the writer lease of session {self.session!r} "
                + ("expired before it was renewed (this process was stopped or cut "
                   "off longer than the lease)" if answer == 0 else
                   "is held by another writer"))
            return
