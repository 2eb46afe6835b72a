"""A flag that greenlets of any thread can wait for.

Ownership: nobody owns an :class:`Event`; any thread or greenlet may send, clear
or wait. Each waiter parks in its own hub and is woken there (through a libev
``async`` watcher of its loop), so a send from thread A resumes a waiter of thread
B in B's hub. The internal ``threading.Lock`` guards the flag and the list of
waiters and is never held while waiting.
"""

from __future__ import annotations

import threading
from typing import List, Optional

from ._timeouts import check_timeout
from ._wakeup import Wakeup


class Event:
    """A thread-safe and greenlet-safe event flag.

    ``send()`` sets the flag and wakes every current waiter; ``clear()`` resets
    it; ``wait(timeout)`` blocks the calling greenlet (only) until the flag is set.
    It also offers ``set()`` and ``is_set()``, so it can be passed where a
    ``threading.Event`` is expected as a stop handle.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._flag = False
        self._waiters: List[Wakeup] = []

    def is_set(self) -> bool:
        """Whether the flag is set (a snapshot). Never blocks."""
        return self._flag

    def send(self) -> None:
        """Set the flag and wake all waiters. Never blocks; any thread."""
        with self._mutex:
            self._flag = True
            waiters, self._waiters = self._waiters, []
            for wakeup in waiters:
                wakeup.wake()

    set = send

    def clear(self) -> None:
        """Reset the flag. Waiters already woken still return ``True``."""
        with self._mutex:
            self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block the calling greenlet until the flag is set or ``timeout`` expires.

        Returns ``True`` when the flag was set (now or while waiting), ``False``
        on timeout. ``timeout=None`` waits without limit.

        :raises ArgumentTypeError: ``timeout`` is not a number
        :raises ConfigurationError: ``timeout`` is negative
        """
        seconds = check_timeout(timeout)
        with self._mutex:
            if self._flag:
                return True
            if seconds == 0:
                return False
            wakeup = Wakeup()
            self._waiters.append(wakeup)
        try:
            wakeup.wait(seconds)
        finally:
            with self._mutex:
                if not wakeup.woken:
                    self._waiters.remove(wakeup)
        return wakeup.woken

    def __repr__(self) -> str:
        return f"<Event set={self._flag} waiters={len(self._waiters)}>"
