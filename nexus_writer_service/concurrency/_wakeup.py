"""One greenlet parked in its own hub until another thread or greenlet wakes it.

Ownership: a :class:`Wakeup` belongs to the greenlet that created it and to that
greenlet's hub (the hub of its native thread). Only that greenlet calls
:meth:`Wakeup.wait`. Any thread or greenlet may call :meth:`Wakeup.wake`; the wake-up
travels through a libev ``async`` watcher of the owner's loop, the hub-safe way to
interrupt a loop from another thread. The owner may be the main greenlet of a thread
whose hub loop is not running: waiting switches into the hub, which runs the loop
until the watcher fires.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from gevent import getcurrent
from gevent.exceptions import InvalidSwitchError
from gevent.hub import get_hub

from ..errors import ConcurrencyUsageError


class Wakeup:
    """A one-shot signal for one waiting greenlet.

    ``wake()`` is thread-safe and never blocks; calling it several times, or after
    the wait ended, is harmless. ``wait()`` blocks only the calling greenlet (other
    greenlets of its thread keep running) and costs no CPU while parked.
    """

    __slots__ = ("greenlet", "_hub", "_guard", "_watcher", "_woken", "_closed", "payload")

    def __init__(self) -> None:
        self.greenlet = getcurrent()
        self._hub = get_hub()
        if self.greenlet is self._hub:
            raise ConcurrencyUsageError(
                "cannot wait inside the gevent hub greenlet (for example in a loop "
                "callback): wait from a greenlet or from the thread's main greenlet"
            )
        self._guard = threading.Lock()
        self._watcher: Any = None
        self._woken = False
        self._closed = False
        self.payload: Any = None

    @property
    def woken(self) -> bool:
        return self._woken

    def wake(self) -> None:
        """Wake the owner (from any thread). Never blocks."""
        with self._guard:
            if self._woken:
                return
            self._woken = True
            if self._watcher is not None and not self._closed:
                self._watcher.send()

    def wait(self, timeout: Optional[float]) -> bool:
        """Park the calling greenlet until :meth:`wake` or ``timeout`` seconds.

        ``timeout`` must already be validated. Returns whether it was woken.
        Exceptions thrown into the greenlet while parked (``GreenletExit``,
        ``gevent.Timeout``) propagate after the watchers are released.
        """
        if getcurrent() is not self.greenlet:
            raise ConcurrencyUsageError("a Wakeup can only be waited on by its creator")
        loop = self._hub.loop
        watcher = loop.async_()
        timer = None
        token = object()
        try:
            with self._guard:
                if self._woken:
                    return True
                watcher.start(self._resume, token)
                self._watcher = watcher
            if timeout is not None:
                timer = loop.timer(timeout)
                loop.update_now()
                timer.start(self._resume, token)
            result = self._hub.switch()
            if result is not token:
                raise InvalidSwitchError(
                    f"unexpected switch into a waiting greenlet: got {result!r}"
                )
            return self._woken
        finally:
            with self._guard:
                self._closed = True
                self._watcher = None
            watcher.stop()
            watcher.close()
            if timer is not None:
                timer.stop()
                timer.close()

    def _resume(self, token: object) -> None:
        # Runs in the owner's hub; both watchers may be pending in the same loop
        # iteration, only the first one resumes the greenlet.
        if self._closed or self._watcher is None:
            return
        self._watcher = None
        self.greenlet.switch(token)
