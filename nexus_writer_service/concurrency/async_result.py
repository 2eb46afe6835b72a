"""The outcome (value or exception) of work done in another thread or greenlet.

Ownership: the producer (one greenlet, any thread) sets the outcome once; any
number of consumers in any threads and greenlets wait for it, each parked in its
own hub and woken there by the internal :class:`~.event.Event`.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Generic, Optional, TypeVar

from ..errors import ConcurrencyUsageError, WaitTimeout
from ._timeouts import check_timeout
from .event import Event

T = TypeVar("T")


class AsyncResult(Generic[T]):
    """A write-once result shared across threads and greenlets.

    ``set(value)`` stores a value, or an exception when ``value`` is an
    exception instance; ``get`` returns the value or raises the exception with the
    traceback it had where it was raised. Setting twice is an error, so a result
    is never delivered twice with two different outcomes.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._event = Event()
        self._value: Any = None
        self._exception: Optional[BaseException] = None
        self._traceback: Optional[TracebackType] = None

    def set(self, result: Any = None) -> None:
        """Store ``result`` (an exception instance is stored as a failure).

        Never blocks; any thread.

        :raises ConcurrencyUsageError: the result was already set
        """
        if isinstance(result, BaseException):
            self.set_exception(result)
            return
        self.set_value(result)

    def set_value(self, value: Any) -> None:
        """Store ``value`` as a success, even when it is an exception instance."""
        with self._mutex:
            self._check_unset()
            self._value = value
            self._event.send()

    def set_exception(self, exception: BaseException) -> None:
        """Store a failure; ``get`` will raise it with its current traceback."""
        if not isinstance(exception, BaseException):
            raise ConcurrencyUsageError(
                f"set_exception needs an exception instance, not {type(exception).__name__}"
            )
        with self._mutex:
            self._check_unset()
            self._exception = exception
            self._traceback = exception.__traceback__
            self._event.send()

    def _check_unset(self) -> None:
        if self._event.is_set():
            raise ConcurrencyUsageError(
                "this AsyncResult is already set; a result can only be set once"
            )

    def ready(self) -> bool:
        """Whether the outcome is known. Never blocks."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether the outcome is known and is a value (not an exception)."""
        return self._event.is_set() and self._exception is None

    @property
    def exception(self) -> Optional[BaseException]:
        """The stored exception, if the outcome is a failure (else ``None``)."""
        return self._exception

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block the calling greenlet until the outcome is known; returns ``ready()``."""
        return self._event.wait(timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> T:
        """Return the value, or raise the stored exception.

        Blocks the calling greenlet at most ``timeout`` seconds (``None``: no
        limit); ``block=False`` does not wait.

        :raises WaitTimeout: the outcome is not known in time
        """
        seconds = check_timeout(timeout)
        if not block:
            seconds = 0.0
        if not self._event.wait(seconds):
            raise WaitTimeout(f"the result was not ready within {seconds} s")
        if self._exception is not None:
            raise self._exception.with_traceback(self._traceback)
        value: T = self._value
        return value

    def __repr__(self) -> str:
        if not self.ready():
            state = "pending"
        elif self._exception is not None:
            state = f"failed {self._exception!r}"
        else:
            state = f"value {self._value!r}"
        return f"<AsyncResult {state}>"
