"""The NexusWriter device's hold on its session's writer lease.

One writer per session (:mod:`nexus_writer_service.data.session_lease`): the device
writes only while it holds the lease. It tries to take it when it starts; a device
with the ``standby`` property waits for it as long as it takes (Tango state STANDBY),
another waits one lease time (the lease of a writer that just died, restarted at once
by Starter or supervisor, expires) and then refuses, naming the holder. A device
whose lease lapsed (Redis unreachable, the server stopped) stops writing and waits to
take it again. Owned by the device's monitor greenlet.

Every Redis command of the lease (take, give up) runs in the hold's own native thread
while the calling greenlet waits cooperatively: the device's hub, which answers Tango
clients, stays free however long Redis takes to answer, refuse or time out (a lease
given up waits for its renewal thread, whose command may be retried).
"""

from __future__ import annotations

import math
import time

from nexus_writer_service.concurrency import Thread
from nexus_writer_service.data.session_lease import SessionLease
from nexus_writer_service.errors import RedisUnavailableError, SessionTakenError

__all__ = ["SessionHold", "POLL"]

#: Seconds between two attempts to take the lease.
POLL = 0.5


class SessionHold:
    """``begin(patient)``, then ``try_take()`` every tick until it is True; ``lost``
    when the lease lapses; ``release()`` to give it up; ``close()`` at the end."""

    def __init__(self, lease: SessionLease) -> None:
        self.lease = lease
        self._worker = Thread(name=f"lease-{lease.session}")
        self._worker.start()
        self.waiting = False
        self.why = ""
        self._deadline = 0.0
        self._next = 0.0

    def begin(self, patient: bool) -> None:
        """Start trying to take the lease: for ever when ``patient``, else one lease
        time."""
        self.waiting = True
        self.why = ""
        self._next = 0.0
        self._deadline = math.inf if patient else time.monotonic() + self.lease.ttl + POLL

    def try_take(self) -> bool:
        """Whether the lease is held now (an attempt at most every :data:`POLL`).

        :raises SessionTakenError: another writer still holds it after the patience
            (the attempts end)
        :raises RedisUnavailableError: Redis is unreachable (the attempts go on)
        """
        if not self.waiting:
            return self.lease.valid
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + POLL
        try:
            self._worker.apply(self.lease.acquire)
        except SessionTakenError as exc:
            self.why = str(exc)
            if now > self._deadline:
                self.waiting = False
                raise
            return False
        except RedisUnavailableError as exc:
            self.why = str(exc)
            raise
        self.waiting = False
        self.why = ""
        return True

    @property
    def lost(self) -> bool:
        """The lease was held, and is no longer valid."""
        return not self.waiting and self.lease.lost_reason != ""

    def release(self) -> None:
        self.waiting = False
        self._worker.apply(self.lease.release)

    def close(self) -> None:
        """Give the lease up and stop the hold's thread."""
        self.release()
        self._worker.stop(wait=True, timeout=5.0)
