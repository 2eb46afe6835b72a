"""Weakly referenced callbacks, and where they run.

A :class:`CallbackList` keeps weak references (``WeakMethod`` for bound methods), so
registering a callback never keeps its object alive; a lambda with no other
reference disappears at once, as in caproto. :meth:`CallbackList.call_all` calls
each live callback; an exception in one is logged with its traceback and the others
still run.

An *executor* decides where callbacks run: by default on the dispatch thread of the
connection; :class:`GeventHubExecutor` hands them to a gevent hub instead.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import threading
import types
import weakref
from typing import Any, Callable, Protocol

from .errors import InvalidTypeError

__all__ = ["CallbackList", "Executor", "GeventHubExecutor", "running_callbacks_of"]

logger = logging.getLogger(__name__)

running_callbacks_of: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "channels_running_callbacks_of", default=None)
"""The channel state whose callbacks the current thread or greenlet is running."""


class Executor(Protocol):
    """Runs ``func(*args)`` somewhere else; ``submit`` must not block."""

    def submit(self, func: Callable[..., Any], *args: Any) -> None: ...


def _weak(func: Callable[..., Any]) -> "weakref.ref[Any]":
    if isinstance(func, types.MethodType):
        return weakref.WeakMethod(func)
    return weakref.ref(func)


class CallbackList:
    """Thread-safe list of weakly referenced callbacks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: list[weakref.ref[Any]] = []
        # what each callback was registered after (see ``add``), by position in _refs
        self._since: list[Any] = []

    def add(self, func: Callable[..., Any], since: Any = None) -> None:
        """Register ``func``; ``since`` is handed to the ``accept`` of :meth:`call_all`.

        Registering a callback again keeps its first ``since``.
        """
        if not callable(func):
            raise InvalidTypeError(f"callback must be callable, not {type(func).__name__}")
        try:
            ref = _weak(func)
        except TypeError as exc:
            raise InvalidTypeError(
                f"callback {func!r} cannot be weakly referenced; wrap it in a function"
            ) from exc
        with self._lock:
            if ref not in self._refs:
                self._refs.append(ref)
                self._since.append(since)

    def remove(self, func: Callable[..., Any]) -> bool:
        """Forget ``func``; False if it was not registered."""
        with self._lock:
            for index, ref in enumerate(self._refs):
                if ref() == func:
                    del self._refs[index], self._since[index]
                    return True
        return False

    def clear(self) -> None:
        with self._lock:
            self._refs.clear()
            self._since.clear()

    def _live(self) -> list[tuple[Callable[..., Any], Any]]:
        with self._lock:
            pairs = [(ref(), since) for ref, since in zip(self._refs, self._since)]
            kept = [index for index, (func, _) in enumerate(pairs) if func is not None]
            self._refs = [self._refs[index] for index in kept]
            self._since = [self._since[index] for index in kept]
        return [(func, since) for func, since in pairs if func is not None]

    def live(self) -> list[Callable[..., Any]]:
        return [func for func, _ in self._live()]

    def __len__(self) -> int:
        return len(self._live())

    def call_all(self, owner: object, *args: Any,
                 accept: Callable[[Any], bool] | None = None) -> None:
        """Call every live callback with ``args``; failures are logged, not raised.

        With ``accept``, only the callbacks whose ``since`` it accepts are called.
        """
        token = running_callbacks_of.set(owner)
        try:
            for func, since in self._live():
                if accept is not None and not accept(since):
                    continue
                try:
                    func(*args)
                except Exception:
                    logger.exception("callback %r failed", func)
        finally:
            running_callbacks_of.reset(token)


class GeventHubExecutor:
    """Runs callbacks in a greenlet of a gevent hub, woken from any thread.

    Create it in the thread that runs the hub (``hub`` defaults to that thread's hub).
    Callbacks submitted from the channels' dispatch thread are queued and the hub is
    woken with an async watcher; they then run, in order, in a greenlet spawned for
    each batch. Call :meth:`close` (in the hub's thread) when done. gevent is imported
    only here, when this class is used; nothing is monkey-patched.
    """

    def __init__(self, hub: Any = None) -> None:
        import gevent

        self._gevent = gevent
        self.hub = hub if hub is not None else gevent.get_hub()
        self._pending: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]]
        self._pending = collections.deque()
        self._watcher = self.hub.loop.async_()
        self._watcher.ref = False
        self._watcher.start(self._wake)
        self._closed = False

    def submit(self, func: Callable[..., Any], *args: Any) -> None:
        if self._closed:
            return
        self._pending.append((func, args))
        self._watcher.send()

    def _wake(self) -> None:
        if self._pending:
            self._gevent.spawn(self._drain)

    def _drain(self) -> None:
        while self._pending:
            func, args = self._pending.popleft()
            try:
                func(*args)
            except Exception:
                logger.exception("callback %r failed in the gevent hub", func)

    def close(self) -> None:
        """Stop waking the hub; callbacks not yet run are dropped."""
        self._closed = True
        self._pending.clear()
        self._watcher.stop()
        self._watcher.close()

    def __enter__(self) -> "GeventHubExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
