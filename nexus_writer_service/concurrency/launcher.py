"""Run functions in the thread that created the launcher, from any thread.

Ownership: a :class:`Launcher` belongs to the thread that created it. Every
function it is given runs there: ``apply``/``apply_async`` functions one after the
other in one greenlet of that thread (the runner of a
:class:`~.hub_trigger.HubTrigger`), ``spawn`` functions each in a greenlet of their
own. The launcher owns these greenlets and kills them on :meth:`Launcher.close`,
which only the owner thread may call. Callers in other threads get the outcome
through an :class:`~.async_result.AsyncResult` and wait in their own hub.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Tuple

import gevent
from gevent import GreenletExit

from ..errors import ArgumentTypeError, ConcurrencyUsageError, ThreadStoppedError
from ._timeouts import check_timeout
from .async_result import AsyncResult
from .hub_trigger import HubTrigger

logger = logging.getLogger(__name__)


class _Task:
    __slots__ = ("func", "args", "kwargs", "result", "own_greenlet")

    def __init__(
        self,
        func: Callable[..., Any],
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
        own_greenlet: bool,
    ) -> None:
        if not callable(func):
            raise ArgumentTypeError(f"func must be callable, not {type(func).__name__}")
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.result: AsyncResult[Any] = AsyncResult()
        self.own_greenlet = own_greenlet

    def run(self) -> None:
        try:
            value = self.func(*self.args, **self.kwargs)
        except GreenletExit:
            self.cancel("was interrupted")
            raise
        except BaseException as exc:
            self.settle(exception=exc)
        else:
            self.settle(value=value)

    def settle(self, value: Any = None, exception: Optional[BaseException] = None) -> None:
        # Only ever called in the launcher's owner thread (or before the task is
        # shared), so checking then setting cannot race.
        if self.result.ready():
            return
        if exception is None:
            self.result.set_value(value)
        else:
            self.result.set_exception(exception)

    def cancel(self, what: str) -> None:
        self.settle(exception=ThreadStoppedError(f"{self.name} {what}: its launcher closed"))

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))


class Launcher:
    """Execute functions in the creating thread and hand back their outcome.

    * ``apply_async(func, *args, **kwargs)`` queues ``func`` and returns an
      :class:`AsyncResult` at once. Queued functions run in submission order, one
      at a time: a function that waits delays those queued after it.
    * ``apply(func, *args, **kwargs)`` is ``apply_async(...).get()``: it blocks the
      calling greenlet until ``func`` returns (use ``apply_async(...).get(timeout)``
      to bound the wait). Called from the owner thread it calls ``func`` directly.
    * ``spawn(func, *args, **kwargs)`` runs ``func`` in a new greenlet of the
      owner thread, for long-running work, and returns its :class:`AsyncResult`.

    Exceptions raised by ``func`` come back to the caller with their traceback.
    Work submitted after :meth:`close`, or still pending or running when it is
    called, fails with :class:`~nexus_writer_service.errors.ThreadStoppedError`.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._tasks: Deque[_Task] = deque()
        self._closed = False
        self._owner_ident = threading.get_ident()
        self._spawned: Dict[gevent.Greenlet, _Task] = {}
        self._trigger = HubTrigger(self._run_tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    def in_owner_thread(self) -> bool:
        """Whether the caller runs in the thread that owns this launcher."""
        return threading.get_ident() == self._owner_ident

    def apply_async(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        """Queue ``func(*args, **kwargs)`` for the owner thread. Never blocks."""
        return self._submit(_Task(func, args, kwargs, own_greenlet=False))

    def apply(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` in the owner thread and return its value."""
        if self.in_owner_thread():
            if self._closed:
                raise ThreadStoppedError(f"cannot run {func!r}: the launcher is closed")
            return func(*args, **kwargs)
        return self.apply_async(func, *args, **kwargs).get()

    def spawn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        """Run ``func(*args, **kwargs)`` in a new greenlet of the owner thread."""
        return self._submit(_Task(func, args, kwargs, own_greenlet=True))

    def close(self, timeout: Optional[float] = None) -> None:
        """Fail pending work, kill running work and stop (owner thread only).

        Idempotent. Waits at most ``timeout`` seconds for the killed greenlets.

        :raises ConcurrencyUsageError: called from another thread
        """
        seconds = check_timeout(timeout)
        if not self.in_owner_thread():
            raise ConcurrencyUsageError(
                "a Launcher can only be closed by the thread that created it"
            )
        with self._mutex:
            self._closed = True
            pending = list(self._tasks)
            self._tasks.clear()
        for task in pending:
            task.cancel("was not run")
        self._trigger.close(timeout=seconds)
        spawned = dict(self._spawned)
        if spawned:
            gevent.killall(list(spawned), block=True, timeout=seconds)
        for task in spawned.values():
            task.cancel("was not run")
        survivors = [greenlet for greenlet in spawned if not greenlet.dead]
        if survivors:
            logger.warning(
                "%r: %d greenlet(s) ignored the kill and still run: %r",
                self, len(survivors), survivors,
            )

    def _submit(self, task: _Task) -> AsyncResult[Any]:
        with self._mutex:
            if not self._closed:
                self._tasks.append(task)
                self._trigger.send()
                return task.result
        task.cancel("cannot run")
        return task.result

    def _run_tasks(self) -> None:
        # Runs in the trigger's greenlet in the owner thread.
        while True:
            with self._mutex:
                if not self._tasks:
                    return
                task = self._tasks.popleft()
            if task.own_greenlet:
                greenlet = gevent.Greenlet(self._run_spawned, task)
                self._spawned[greenlet] = task
                greenlet.start()
            else:
                task.run()

    def _run_spawned(self, task: _Task) -> None:
        try:
            task.run()
        finally:
            self._spawned.pop(gevent.getcurrent(), None)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Launcher {state} pending={len(self._tasks)} spawned={len(self._spawned)}>"
