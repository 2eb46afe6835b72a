"""Make a function run in the hub of the thread that created the trigger.

Ownership: a :class:`HubTrigger` belongs to the thread that created it; ``func``
always runs there, in that thread's hub (``blocking=True``) or in one greenlet of
that thread owned by the trigger (``blocking=False``). ``send`` may be called from
any thread: it signals a libev ``async`` watcher of the owner's loop, which is
the hub-safe way to interrupt a loop from another thread. Only the owner thread
may ``close`` the trigger. The watcher does not keep the owner's loop alive by
itself: ``func`` runs while that thread's hub is running, that is while one of its
greenlets waits for something.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

import gevent
from gevent import getcurrent
from gevent.hub import get_hub

from ..errors import ArgumentTypeError, ConcurrencyUsageError
from ._timeouts import check_timeout

logger = logging.getLogger(__name__)


class HubTrigger:
    """Run ``func()`` in the creating thread, triggered from any thread.

    No arguments go in and no result comes out (use :class:`~.launcher.Launcher`
    for that). Sends that arrive before ``func`` starts coalesce into one call;
    every ``send`` is followed by at least one call of ``func`` that starts after
    it. Calls never overlap. An exception raised by ``func`` is logged with its
    traceback and does not stop the trigger.

    ``blocking=True`` runs ``func`` directly in the hub: it must then never wait
    (no gevent switch). ``blocking=False`` (the default) runs it in a greenlet
    that the trigger owns and kills on :meth:`close`.
    """

    def __init__(self, func: Callable[[], Any], blocking: bool = False) -> None:
        if not callable(func):
            raise ArgumentTypeError(f"func must be callable, not {type(func).__name__}")
        self._func = func
        self._blocking = bool(blocking)
        self._owner_ident = threading.get_ident()
        self._hub = get_hub()
        self._guard = threading.Lock()
        self._closed = False
        self._greenlet: Optional[gevent.Greenlet] = None
        self._rerun = False
        self._watcher = self._hub.loop.async_(ref=False)
        self._watcher.start(self._on_send)

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self) -> None:
        """Request a call of ``func`` in the owner thread. Never blocks; any thread.

        :raises ConcurrencyUsageError: the trigger is closed
        """
        with self._guard:
            if self._closed:
                raise ConcurrencyUsageError(f"cannot send {self!r}: it is closed")
            self._watcher.send()

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop the trigger; kill a running ``func`` greenlet (owner thread only).

        Idempotent. Waits at most ``timeout`` seconds for the killed greenlet.

        :raises ConcurrencyUsageError: called from another thread
        """
        seconds = check_timeout(timeout)
        if threading.get_ident() != self._owner_ident:
            raise ConcurrencyUsageError(
                "a HubTrigger can only be closed by the thread that created it"
            )
        with self._guard:
            if self._closed:
                return
            self._closed = True
            self._watcher.stop()
            self._watcher.close()
        runner = self._greenlet
        if runner is not None and runner is not getcurrent():
            runner.kill(block=True, timeout=seconds)

    def _on_send(self) -> None:
        # Runs in the owner's hub.
        if self._closed:
            return
        if self._blocking:
            self._call()
        elif self._greenlet is not None:
            self._rerun = True
        else:
            self._greenlet = gevent.Greenlet(self._run)
            self._greenlet.start()

    def _run(self) -> None:
        try:
            while True:
                self._rerun = False
                self._call()
                if not self._rerun or self._closed:
                    return
        finally:
            self._greenlet = None

    def _call(self) -> None:
        try:
            self._func()
        except Exception:
            logger.exception("%r: the triggered function failed", self)

    def __enter__(self) -> "HubTrigger":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        name = getattr(self._func, "__qualname__", repr(self._func))
        state = "closed" if self._closed else "open"
        return f"<HubTrigger {name} {state}>"
