"""A native thread with its own gevent hub, driven from any thread.

Ownership: the creator of a :class:`Thread` owns it and must stop it. Inside, the
thread's main greenlet owns the hub of that thread and a
:class:`~.launcher.Launcher` through which every other thread sends work; the
main function (``target``) and every ``spawn`` run in greenlets of that thread,
owned by the launcher and killed when the thread stops. Start, stop and finish
are signalled with cross-thread :class:`~.event.Event` objects, so waiting for
them parks the waiting greenlet in its own hub.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from gevent import GreenletExit
from gevent.hub import get_hub

from ..errors import ArgumentTypeError, ConcurrencyUsageError, ThreadStoppedError, WaitTimeout
from ._timeouts import check_timeout
from .async_result import AsyncResult
from .event import Event
from .launcher import Launcher

logger = logging.getLogger(__name__)

_counter = itertools.count(1)

#: Seconds a stopping thread waits for its killed greenlets before it goes on.
_KILL_TIMEOUT = 10.0


class Thread:
    """A native thread running a gevent hub, with a stop mechanism.

    ``Thread(target=None, args=(), kwargs=None, name=None, daemon=True)``. With a
    ``target``, the thread ends when ``target`` returns (its value or exception is
    available through :meth:`get`) or when stopped; without one it serves
    ``apply``/``spawn`` requests until stopped. All methods are thread-safe and
    greenlet-safe; every wait accepts a ``timeout`` and raises
    :class:`~nexus_writer_service.errors.WaitTimeout` when it expires.
    """

    def __init__(
        self,
        target: Optional[Callable[..., Any]] = None,
        args: Tuple[Any, ...] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        name: Optional[str] = None,
        daemon: bool = True,
    ) -> None:
        if target is not None and not callable(target):
            raise ArgumentTypeError(f"target must be callable, not {type(target).__name__}")
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self.name = name or f"GeventThread-{next(_counter)}"
        self._thread = threading.Thread(target=self._bootstrap, name=self.name, daemon=daemon)
        self._start_lock = threading.Lock()
        self._start_requested = False
        self._started = Event()
        self._exit_requested = Event()
        self._finished = Event()
        self._launcher: Optional[Launcher] = None
        self._outcome: AsyncResult[Any] = AsyncResult()

    # -- life cycle ----------------------------------------------------------

    def start(self, wait: bool = True, timeout: Optional[float] = None) -> None:
        """Start the thread; with ``wait``, block until it accepts work.

        :raises ConcurrencyUsageError: already started
        :raises WaitTimeout: not ready within ``timeout`` seconds
        """
        seconds = check_timeout(timeout)
        with self._start_lock:
            if self._start_requested:
                raise ConcurrencyUsageError(f"{self.name} was already started")
            self._start_requested = True
        self._thread.start()
        if wait and not self._started.wait(seconds):
            raise WaitTimeout(f"{self.name} did not start within {seconds} s")

    def stop(self, wait: bool = True, timeout: Optional[float] = None) -> None:
        """Ask the thread to stop: running work is killed, pending work fails.

        Idempotent; a thread never started just finishes. With ``wait``, block
        until it has finished (see :meth:`join`).
        """
        seconds = check_timeout(timeout)
        self._exit_requested.send()
        with self._start_lock:
            never_started = not self._start_requested
            self._start_requested = True
        if never_started:
            self._outcome.set_exception(ThreadStoppedError(f"{self.name} was never started"))
            self._started.send()
            self._finished.send()
            return
        if wait:
            self.join(seconds)

    def join(self, timeout: Optional[float] = None) -> None:
        """Block the calling greenlet until the thread has finished.

        :raises WaitTimeout: still running after ``timeout`` seconds
        :raises ConcurrencyUsageError: called from the thread itself, or before start
        """
        seconds = check_timeout(timeout)
        if threading.current_thread() is self._thread:
            raise ConcurrencyUsageError(f"{self.name} cannot join itself (it would deadlock)")
        if not self._start_requested:
            raise ConcurrencyUsageError(f"cannot join {self.name}: it was never started")
        if not self._finished.wait(seconds):
            raise WaitTimeout(f"{self.name} did not finish within {seconds} s")
        if self._thread.ident is not None:
            # The hub is gone already; only the native thread's exit remains.
            self._thread.join()

    def get(self, timeout: Optional[float] = None) -> Any:
        """Join, then return the main function's value or raise its exception.

        Without a ``target`` the value is ``None``. A thread stopped before its
        ``target`` returned raises ThreadStoppedError.
        """
        self.join(timeout)
        return self._outcome.get(block=False)

    def is_alive(self) -> bool:
        """Whether the thread has started and not yet finished."""
        return self._started.is_set() and not self._finished.is_set()

    @property
    def stopping(self) -> Event:
        """Set once a stop was requested or the main function returned."""
        return self._exit_requested

    @property
    def ident(self) -> Optional[int]:
        return self._thread.ident

    # -- work from other threads ---------------------------------------------

    def apply(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func`` in this thread and return its value (see ``Launcher.apply``)."""
        return self._ready_launcher().apply(func, *args, **kwargs)

    def apply_async(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        """Queue ``func`` for this thread; returns its AsyncResult at once."""
        return self._ready_launcher().apply_async(func, *args, **kwargs)

    def spawn(self, run: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        """Run ``run`` in a new greenlet of this thread; returns its AsyncResult.

        The greenlet is killed when the thread stops.
        """
        return self._ready_launcher().spawn(run, *args, **kwargs)

    def _ready_launcher(self) -> Launcher:
        if not self._start_requested:
            raise ConcurrencyUsageError(f"cannot send work to {self.name}: start it first")
        if self._launcher is None:
            # Starting: the launcher exists as soon as the thread's hub does.
            self._started.wait()
        if self._launcher is None:
            raise ThreadStoppedError(f"cannot send work to {self.name}: it failed to start")
        return self._launcher

    # -- inside the thread ---------------------------------------------------

    def _bootstrap(self) -> None:
        hub = get_hub()
        launcher: Optional[Launcher] = None
        try:
            launcher = Launcher()
            self._launcher = launcher
            if self._target is None:
                self._outcome.set_value(None)
            else:
                launcher.spawn(self._run_target)
            self._started.send()
            self._exit_requested.wait()
        except BaseException as exc:
            logger.exception("%s failed", self.name)
            if not self._outcome.ready():
                self._outcome.set_exception(exc)
        finally:
            self._started.send()
            if launcher is not None:
                launcher.close(timeout=_KILL_TIMEOUT)
            if not self._outcome.ready():
                self._outcome.set_exception(
                    ThreadStoppedError(f"{self.name} was stopped before its target returned")
                )
            hub.destroy(destroy_loop=True)
            self._finished.send()

    def _run_target(self) -> None:
        assert self._target is not None
        try:
            value = self._target(*self._args, **self._kwargs)
        except GreenletExit:
            raise
        except BaseException as exc:
            self._outcome.set_exception(exc)
        else:
            self._outcome.set_value(value)
        finally:
            self._exit_requested.send()

    def __repr__(self) -> str:
        if not self._start_requested:
            state = "initial"
        elif self._finished.is_set():
            state = "finished"
        elif self._exit_requested.is_set():
            state = "stopping"
        else:
            state = "running"
        return f"<Thread {self.name} {state}>"
