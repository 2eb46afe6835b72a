"""Timeouts: validated everywhere, and honoured within 50 ms in any thread."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import pytest

from nexus_writer_service.concurrency import AsyncResult, Event, Lock, Queue, RLock, Thread
from nexus_writer_service.errors import (
    ArgumentTypeError,
    ConfigurationError,
    NexusWriterError,
    QueueEmpty,
    WaitTimeout,
)

TOLERANCE = 0.05


def _waits() -> dict[str, Callable[[Any], Any]]:
    return {
        "Lock.acquire": lambda t: Lock().acquire(timeout=t),
        "RLock.acquire": lambda t: RLock().acquire(timeout=t),
        "Event.wait": lambda t: Event().wait(t),
        "Queue.get": lambda t: Queue().get(timeout=t),
        "AsyncResult.get": lambda t: AsyncResult().get(timeout=t),
        "AsyncResult.wait": lambda t: AsyncResult().wait(t),
        "Thread.start": lambda t: Thread().start(timeout=t),
        "Thread.stop": lambda t: Thread().stop(timeout=t),
    }


@pytest.mark.parametrize("call", list(_waits()))
@pytest.mark.parametrize("bad", ["1", b"1", [1], True, object()])
def test_non_numeric_timeout_is_a_type_error_naming_the_argument(call: str, bad: Any) -> None:
    with pytest.raises(TypeError, match="timeout") as info:
        _waits()[call](bad)
    assert isinstance(info.value, ArgumentTypeError)
    assert isinstance(info.value, NexusWriterError)


@pytest.mark.parametrize("call", list(_waits()))
@pytest.mark.parametrize("bad", [-0.001, -1, math.nan])
def test_negative_timeout_is_a_value_error_naming_the_argument(call: str, bad: Any) -> None:
    with pytest.raises(ValueError, match="timeout") as info:
        _waits()[call](bad)
    assert isinstance(info.value, ConfigurationError)


def _elapsed(func: Callable[[], Any]) -> float:
    start = time.monotonic()
    func()
    return time.monotonic() - start


def _expire_all(timeout: float) -> dict[str, float]:
    """Let every kind of wait expire; return how long each took."""
    held = Lock()
    held_by_other = AsyncResult[None]()

    def expect(exc_type: type, func: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            with pytest.raises(exc_type):
                func()

        return run

    elapsed = {
        "Event.wait": _elapsed(lambda: Event().wait(timeout)),
        "Queue.get": _elapsed(expect(QueueEmpty, lambda: Queue().get(timeout=timeout))),
        "AsyncResult.get": _elapsed(
            expect(WaitTimeout, lambda: held_by_other.get(timeout=timeout))
        ),
    }
    held.acquire()
    try:
        import gevent

        other = gevent.spawn(held.acquire, timeout=timeout)
        elapsed["Lock.acquire"] = _elapsed(lambda: other.get(timeout=5))
        assert other.value is False
    finally:
        held.release()
    return elapsed


def test_timeouts_are_honoured_in_the_main_thread() -> None:
    for name, took in _expire_all(0.2).items():
        assert 0.2 - 0.002 <= took <= 0.2 + TOLERANCE, name


def test_timeouts_are_honoured_in_a_worker_thread(start_thread: Callable[..., Thread]) -> None:
    worker = start_thread(name="timeouts")
    for name, took in worker.apply(_expire_all, 0.2).items():
        assert 0.2 - 0.002 <= took <= 0.2 + TOLERANCE, name


def test_lock_held_in_another_thread_times_out(start_thread: Callable[..., Thread]) -> None:
    lock = Lock()
    acquired, done = Event(), Event()

    def hold() -> None:
        with lock:
            acquired.send()
            done.wait(10)

    worker = start_thread(name="holder")
    holder = worker.spawn(hold)
    try:
        assert acquired.wait(5)
        start = time.monotonic()
        assert lock.acquire(timeout=0.15) is False
        took = time.monotonic() - start
        assert 0.15 - 0.002 <= took <= 0.15 + TOLERANCE
    finally:
        done.send()
        holder.get(timeout=5)


def test_zero_timeout_never_waits() -> None:
    assert Event().wait(0) is False
    with pytest.raises(QueueEmpty):
        Queue().get(timeout=0)
    with pytest.raises(WaitTimeout):
        AsyncResult().get(timeout=0)
    lock = Lock()
    lock.acquire()
    try:
        import gevent

        assert gevent.spawn(lock.acquire, timeout=0).get(timeout=1) is False
    finally:
        lock.release()


def test_timeout_errors_are_builtin_timeouts() -> None:
    import queue

    with pytest.raises(TimeoutError):
        Queue().get(timeout=0.01)
    with pytest.raises(queue.Empty):
        Queue().get(block=False)
    with pytest.raises(TimeoutError):
        AsyncResult().get(timeout=0.01)
