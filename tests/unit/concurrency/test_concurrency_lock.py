"""Lock and RLock: one holder greenlet across all threads, first come first served."""

from __future__ import annotations

import threading
from typing import Callable, List

import gevent
import pytest

from nexus_writer_service.concurrency import Event, Lock, RLock, Thread
from nexus_writer_service.errors import ConcurrencyUsageError, LockNotOwnedError, NexusWriterError

THREADS = 4
GREENLETS = 10
ROUNDS = 50


def test_release_of_an_unheld_lock_raises_a_clear_error() -> None:
    for lock in (Lock(), RLock()):
        with pytest.raises(RuntimeError, match="not held by anyone") as info:
            lock.release()
        assert isinstance(info.value, LockNotOwnedError)
        assert isinstance(info.value, NexusWriterError)


def test_release_by_another_greenlet_raises(greenlets: List[gevent.Greenlet]) -> None:
    lock = Lock()
    lock.acquire()
    try:
        intruder = gevent.spawn(lock.release)
        greenlets.append(intruder)
        intruder.join(timeout=5)
        assert isinstance(intruder.exception, LockNotOwnedError)
        assert lock.owned()
    finally:
        lock.release()
    assert not lock.locked()


def test_release_from_another_thread_raises(start_thread: Callable[..., Thread]) -> None:
    lock = Lock()
    with lock:
        worker = start_thread(name="intruder")
        with pytest.raises(LockNotOwnedError, match="only the greenlet that acquired"):
            worker.apply(lock.release)
        assert lock.owned()


def test_reacquiring_a_held_lock_raises_instead_of_deadlocking() -> None:
    lock = Lock()
    with lock:
        with pytest.raises(ConcurrencyUsageError, match="RLock"):
            lock.acquire()
        with pytest.raises(ConcurrencyUsageError, match="RLock"):
            lock.acquire(timeout=1)
        assert lock.acquire(blocking=False) is False


def test_non_blocking_acquire_refuses_a_timeout() -> None:
    with pytest.raises(ConcurrencyUsageError, match="timeout"):
        Lock().acquire(blocking=False, timeout=1)


def test_rlock_is_free_after_as_many_releases_as_acquires(
    greenlets: List[gevent.Greenlet],
) -> None:
    lock = RLock()
    for _ in range(3):
        assert lock.acquire()
    for _ in range(2):
        lock.release()
    other = gevent.spawn(lock.acquire, timeout=0.05)
    greenlets.append(other)
    assert other.get(timeout=5) is False
    lock.release()
    assert not lock.locked()
    with pytest.raises(LockNotOwnedError):
        lock.release()


def test_waiters_are_served_in_arrival_order(greenlets: List[gevent.Greenlet]) -> None:
    lock = Lock()
    order: List[int] = []

    def take(index: int) -> None:
        with lock:
            order.append(index)

    lock.acquire()
    for index in range(10):
        greenlets.append(gevent.spawn(take, index))
        gevent.sleep(0)
    lock.release()
    gevent.joinall(greenlets, timeout=5, raise_error=True)
    assert order == list(range(10))


def test_killed_waiter_leaves_the_lock_usable(greenlets: List[gevent.Greenlet]) -> None:
    lock = Lock()
    lock.acquire()
    doomed = gevent.spawn(lock.acquire)
    patient = gevent.spawn(lock.acquire, timeout=5)
    greenlets.extend([doomed, patient])
    gevent.sleep(0.01)
    doomed.kill(block=True, timeout=5)
    lock.release()
    assert patient.get(timeout=5) is True
    assert not lock.owned()
    with pytest.raises(LockNotOwnedError):
        lock.release()


def _hammer(lock: Lock | RLock, shared: dict, rounds: int, reentrant: bool) -> int:
    def one_greenlet() -> None:
        for _ in range(rounds):
            with lock:
                if reentrant:
                    lock.acquire()
                shared["inside"] += 1
                assert shared["inside"] == 1, "two holders at once"
                value = shared["count"]
                gevent.sleep(0)
                shared["count"] = value + 1
                shared["inside"] -= 1
                if reentrant:
                    lock.release()

    workers = [gevent.spawn(one_greenlet) for _ in range(GREENLETS)]
    try:
        gevent.joinall(workers, timeout=60, raise_error=True)
    finally:
        gevent.killall(workers, timeout=5)
    return sum(1 for worker in workers if worker.successful())


@pytest.mark.parametrize("lock_type", [Lock, RLock])
def test_many_threads_and_greenlets_never_hold_it_together(
    lock_type: type, start_thread: Callable[..., Thread]
) -> None:
    lock = lock_type()
    shared = {"count": 0, "inside": 0}
    threads = [start_thread(name=f"hammer-{index}") for index in range(THREADS)]
    results = [
        thread.apply_async(_hammer, lock, shared, ROUNDS, lock_type is RLock)
        for thread in threads
    ]
    assert [result.get(timeout=60) for result in results] == [GREENLETS] * THREADS
    assert shared["count"] == THREADS * GREENLETS * ROUNDS
    assert not lock.locked()


def test_lock_can_be_waited_on_by_a_plain_thread_without_a_running_hub() -> None:
    lock = Lock()
    got: List[bool] = []
    ready = threading.Event()

    def plain() -> None:
        ready.set()
        got.append(lock.acquire(timeout=5))
        lock.release()
        gevent.get_hub().destroy(destroy_loop=True)

    with lock:
        thread = threading.Thread(target=plain)
        thread.start()
        assert ready.wait(5)
        gevent.sleep(0.05)
    thread.join(10)
    assert got == [True]
    assert not lock.locked()


def test_event_based_handoff_between_threads(start_thread: Callable[..., Thread]) -> None:
    lock = Lock()
    release = Event()

    def hold() -> bool:
        with lock:
            release.wait(10)
        return True

    worker = start_thread(name="holder")
    holding = worker.spawn(hold)
    gevent.sleep(0.05)
    assert lock.locked() and not lock.owned()
    release.send()
    assert lock.acquire(timeout=5)
    lock.release()
    assert holding.get(timeout=5) is True
