"""Waiting costs no CPU: no polling loop hides behind any wait."""

from __future__ import annotations

import resource
import time
from typing import Any, Callable, List

import gevent
import pytest

from nexus_writer_service.concurrency import Event, Lock, Queue, Thread
from nexus_writer_service.errors import QueueEmpty

WAIT = 2.0
GREENLETS_PER_THREAD = 5
MAX_CORE_FRACTION = 0.05


def _process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wait_in_greenlets(wait_once: Callable[[], Any]) -> int:
    waiters = [gevent.spawn(wait_once) for _ in range(GREENLETS_PER_THREAD)]
    try:
        gevent.joinall(waiters, timeout=WAIT + 10, raise_error=True)
    finally:
        gevent.killall(waiters, timeout=5)
    return len(waiters)


def _lock_waiter(lock: Lock) -> Callable[[], Any]:
    def wait_once() -> None:
        assert lock.acquire(timeout=WAIT) is False

    return wait_once


def _event_waiter(event: Event) -> Callable[[], Any]:
    def wait_once() -> None:
        assert event.wait(WAIT) is False

    return wait_once


def _queue_waiter(q: "Queue[int]") -> Callable[[], Any]:
    def wait_once() -> None:
        with pytest.raises(QueueEmpty):
            q.get(timeout=WAIT)

    return wait_once


@pytest.mark.slow
@pytest.mark.parametrize("primitive", ["Lock", "Event", "Queue"])
def test_ten_greenlets_in_two_threads_waiting_cost_under_five_percent_of_a_core(
    primitive: str, start_thread: Callable[..., Thread]
) -> None:
    lock = Lock()
    waiters = {
        "Lock": lambda: _lock_waiter(lock),
        "Event": lambda: _event_waiter(Event()),
        "Queue": lambda: _queue_waiter(Queue()),
    }
    threads: List[Thread] = [start_thread(name=f"idle-{i}") for i in range(2)]
    with lock:
        wall_start, cpu_start = time.monotonic(), _process_cpu_seconds()
        pending = [t.apply_async(_wait_in_greenlets, waiters[primitive]()) for t in threads]
        assert [p.get(timeout=WAIT + 20) for p in pending] == [GREENLETS_PER_THREAD] * 2
        wall, cpu = time.monotonic() - wall_start, _process_cpu_seconds() - cpu_start
    assert wall >= WAIT
    assert cpu / wall < MAX_CORE_FRACTION, f"{cpu:.3f} s of CPU in {wall:.3f} s"
