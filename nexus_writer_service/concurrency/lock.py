"""Locks held by one greenlet at a time, across all threads and hubs.

Ownership: the lock belongs to the greenlet that acquired it, whatever its thread;
only that greenlet may release it. Waiters park in their own hub (see
:class:`~._wakeup.Wakeup`) and are served in arrival order: ``release`` hands the
lock directly to the oldest waiter and wakes it in its own hub. The internal
``threading.Lock`` only guards a few field updates and is never held while waiting.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType
from typing import Any, Deque, Optional, Type

from gevent import getcurrent

from ..errors import ConcurrencyUsageError, LockNotOwnedError
from ._timeouts import check_timeout
from ._wakeup import Wakeup


class _GreenletLock:
    """Shared implementation of :class:`Lock` and :class:`RLock`."""

    _reentrant = False

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: Any = None
        self._count = 0
        self._waiters: Deque[Wakeup] = deque()

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """Acquire the lock for the calling greenlet.

        Blocks only the calling greenlet, at most ``timeout`` seconds (``None``:
        no limit). With ``blocking=False`` it never waits and ``timeout`` must be
        ``None``. Returns whether the lock was acquired.

        :raises ConcurrencyUsageError: a non-reentrant :class:`Lock` is acquired
            again, blocking, by the greenlet that holds it (it would deadlock)
        """
        seconds = check_timeout(timeout)
        if not blocking and seconds is not None:
            raise ConcurrencyUsageError("a non-blocking acquire cannot have a timeout")
        me = getcurrent()
        with self._mutex:
            if self._owner is None and not self._waiters:
                self._owner = me
                self._count = 1
                return True
            if self._owner is me:
                if self._reentrant:
                    self._count += 1
                    return True
                if blocking:
                    raise ConcurrencyUsageError(
                        f"{type(self).__name__} is already held by this greenlet; acquiring "
                        "it again would deadlock (use an RLock for re-entrant locking)"
                    )
                return False
            if not blocking or seconds == 0:
                return False
            wakeup = Wakeup()
            self._waiters.append(wakeup)
        try:
            wakeup.wait(seconds)
        except BaseException:
            # Killed or interrupted while waiting: give the lock on if it was
            # handed over meanwhile, else leave the queue of waiters.
            self._abandon(wakeup, me)
            raise
        with self._mutex:
            if self._owner is me:
                return True
            self._waiters.remove(wakeup)
            return False

    def _abandon(self, wakeup: Wakeup, me: Any) -> None:
        with self._mutex:
            handed = self._owner is me
            if not handed:
                self._waiters.remove(wakeup)
        if handed:
            self.release()

    def release(self) -> None:
        """Release the lock (once, for an RLock). Never blocks; any thread.

        :raises LockNotOwnedError: the calling greenlet does not hold the lock
        """
        me = getcurrent()
        with self._mutex:
            if self._owner is not me:
                state = "not held by anyone" if self._owner is None else (
                    f"held by {self._owner!r}"
                )
                raise LockNotOwnedError(
                    f"cannot release {type(self).__name__}: it is {state}, not by the calling "
                    f"greenlet {me!r}; only the greenlet that acquired a lock may release it"
                )
            self._count -= 1
            if self._count:
                return
            if self._waiters:
                wakeup = self._waiters.popleft()
                self._owner = wakeup.greenlet
                self._count = 1
                wakeup.wake()
            else:
                self._owner = None

    def locked(self) -> bool:
        """Whether some greenlet holds the lock (a snapshot)."""
        return self._owner is not None

    def owned(self) -> bool:
        """Whether the calling greenlet holds the lock."""
        return self._owner is getcurrent()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} owner={self._owner!r} count={self._count} "
            f"waiters={len(self._waiters)}>"
        )


class Lock(_GreenletLock):
    """A mutual-exclusion lock held by one greenlet, shared across threads.

    Thread-safe and greenlet-safe; waiters are served first come, first served.
    Unlike ``threading.Lock``, only the holder may release it.
    """


class RLock(_GreenletLock):
    """A re-entrant lock: the holding greenlet may acquire it again.

    It is free again once released as many times as it was acquired.
    """

    _reentrant = True
