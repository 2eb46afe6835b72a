"""Thread and Launcher: work crosses threads, outcomes come back, stop cleans up."""

from __future__ import annotations

import threading
import traceback
from typing import Callable, List

import gevent
import pytest

from nexus_writer_service.concurrency import Event, Launcher, Thread
from nexus_writer_service.errors import ConcurrencyUsageError, ThreadStoppedError, WaitTimeout


def where() -> int:
    return threading.get_ident()


def explode(message: str) -> None:
    raise KeyError(message)


def test_apply_runs_in_the_thread_and_returns_the_value(
    start_thread: Callable[..., Thread],
) -> None:
    worker = start_thread(name="apply")
    assert worker.apply(where) == worker.ident != threading.get_ident()
    assert worker.apply(divmod, 7, 2) == (3, 1)
    assert worker.apply(int, "ff", base=16) == 255
    assert worker.is_alive()


def test_apply_raises_the_functions_exception_with_its_traceback(
    start_thread: Callable[..., Thread],
) -> None:
    worker = start_thread(name="apply-fail")
    with pytest.raises(KeyError, match="frame") as info:
        worker.apply(explode, "frame")
    assert "explode" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]


def test_apply_async_runs_in_submission_order(start_thread: Callable[..., Thread]) -> None:
    worker = start_thread(name="order")
    done: List[int] = []
    results = [worker.apply_async(done.append, index) for index in range(500)]
    for result in results:
        result.get(timeout=10)
    assert done == list(range(500))


def test_many_callers_in_many_threads_and_greenlets(start_thread: Callable[..., Thread]) -> None:
    target = start_thread(name="target")

    def call_many(caller: int) -> List[int]:
        def one(greenlet: int) -> List[int]:
            return [target.apply(lambda v: v, (caller, greenlet, n)) for n in range(50)]

        workers = [gevent.spawn(one, g) for g in range(10)]
        try:
            gevent.joinall(workers, timeout=60, raise_error=True)
        finally:
            gevent.killall(workers, timeout=5)
        return [len(w.value) for w in workers]

    callers = [start_thread(name=f"caller-{i}") for i in range(4)]
    pending = [c.apply_async(call_many, i) for i, c in enumerate(callers)]
    assert [p.get(timeout=60) for p in pending] == [[50] * 10] * 4


def test_thread_target_value_and_exception() -> None:
    thread = Thread(target=lambda a, b=0: a + b, args=(2,), kwargs={"b": 3}, name="target")
    thread.start(timeout=10)
    assert thread.get(timeout=10) == 5
    assert not thread.is_alive()
    failing = Thread(target=explode, args=("target failed",), name="failing")
    failing.start(timeout=10)
    with pytest.raises(KeyError, match="target failed") as info:
        failing.get(timeout=10)
    assert "explode" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]


def test_stop_kills_running_work_and_fails_pending_work() -> None:
    gate = Event()
    thread = Thread(name="stopping")
    thread.start(timeout=10)
    try:
        blocked = thread.apply_async(gate.wait)
        queued = thread.apply_async(where)
        spawned = thread.spawn(gevent.sleep, 60)
        gevent.sleep(0.05)
    finally:
        thread.stop(timeout=10)
    for result in (blocked, queued, spawned):
        with pytest.raises(ThreadStoppedError, match="launcher closed"):
            result.get(timeout=5)
    late = thread.apply_async(where)
    with pytest.raises(ThreadStoppedError):
        late.get(timeout=5)
    with pytest.raises(ThreadStoppedError):
        thread.apply(where)
    assert thread.get(timeout=1) is None
    thread.stop()


def test_stopping_a_thread_interrupts_its_target() -> None:
    thread = Thread(target=gevent.sleep, args=(60,), name="sleeper")
    thread.start(timeout=10)
    thread.stop(timeout=10)
    with pytest.raises(ThreadStoppedError, match="before its target returned"):
        thread.get(timeout=1)


def test_wrong_use_raises_clear_errors() -> None:
    thread = Thread(name="misused")
    with pytest.raises(ConcurrencyUsageError, match="start it first"):
        thread.apply(where)
    with pytest.raises(ConcurrencyUsageError, match="never started"):
        thread.join(1)
    thread.start(timeout=10)
    try:
        with pytest.raises(ConcurrencyUsageError, match="already started"):
            thread.start()
        with pytest.raises(ConcurrencyUsageError, match="join itself"):
            thread.apply(thread.join)
        with pytest.raises(WaitTimeout, match="did not finish"):
            thread.join(timeout=0.05)
    finally:
        thread.stop(timeout=10)


def test_stop_of_a_thread_never_started_just_finishes() -> None:
    thread = Thread(name="unused")
    thread.stop(timeout=1)
    with pytest.raises(ThreadStoppedError, match="never started"):
        thread.get(timeout=1)


def test_launcher_apply_from_its_own_thread_calls_directly() -> None:
    launcher = Launcher()
    try:
        assert launcher.in_owner_thread()
        assert launcher.apply(where) == threading.get_ident()
        assert launcher.apply_async(where).get(timeout=5) == threading.get_ident()
    finally:
        launcher.close()
    with pytest.raises(ThreadStoppedError):
        launcher.apply(where)


def test_launcher_in_the_main_thread_serves_other_threads(
    start_thread: Callable[..., Thread],
) -> None:
    launcher = Launcher()
    try:
        worker = start_thread(name="client")
        pending = worker.apply_async(launcher.apply, where)
        assert pending.get(timeout=5) == threading.get_ident()
        with pytest.raises(ConcurrencyUsageError, match="thread that created"):
            worker.apply(launcher.close)
    finally:
        launcher.close()
