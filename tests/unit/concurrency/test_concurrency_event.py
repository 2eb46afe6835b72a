"""Event: a send in one thread wakes waiters of every thread in their own hub."""

from __future__ import annotations

import threading
from typing import Callable, List

import gevent

from nexus_writer_service.concurrency import Event, Thread

THREADS = 4
GREENLETS = 10


def _wait_in_greenlets(event: Event, count: int, timeout: float) -> List[tuple]:
    def wait_one() -> tuple:
        return event.wait(timeout), threading.get_ident()

    waiters = [gevent.spawn(wait_one) for _ in range(count)]
    try:
        gevent.joinall(waiters, timeout=timeout + 5, raise_error=True)
    finally:
        gevent.killall(waiters, timeout=5)
    return [waiter.value for waiter in waiters]


def test_send_wakes_every_waiter_of_every_thread_in_its_own_thread(
    start_thread: Callable[..., Thread],
) -> None:
    event = Event()
    threads = [start_thread(name=f"waiter-{index}") for index in range(THREADS)]
    results = [t.apply_async(_wait_in_greenlets, event, GREENLETS, 10) for t in threads]
    gevent.sleep(0.1)
    assert not any(result.ready() for result in results)
    event.send()
    for thread, result in zip(threads, results):
        outcome = result.get(timeout=10)
        assert outcome == [(True, thread.ident)] * GREENLETS


def test_wait_returns_at_once_when_set_and_blocks_after_clear() -> None:
    event = Event()
    event.send()
    assert event.is_set() and event.wait(5) is True
    event.clear()
    assert not event.is_set()
    assert event.wait(0.01) is False


def test_set_is_send_so_it_works_as_a_stop_handle(start_thread: Callable[..., Thread]) -> None:
    stop = Event()
    worker = start_thread(name="stopper")
    worker.apply(stop.set)
    assert stop.is_set()


def test_repeated_send_and_clear_from_many_threads_loses_no_wakeup(
    start_thread: Callable[..., Thread],
) -> None:
    """Ping-pong: each side waits for its event, clears it and sends the other's."""
    ping, pong = Event(), Event()
    rounds = 300

    def player(mine: Event, theirs: Event, serve: bool) -> int:
        if serve:
            theirs.send()
        for _ in range(rounds):
            assert mine.wait(10)
            mine.clear()
            theirs.send()
        return rounds

    left = start_thread(name="ping")
    right = start_thread(name="pong")
    a = left.spawn(player, ping, pong, False)
    b = right.spawn(player, pong, ping, True)
    assert a.get(timeout=30) == rounds
    assert b.get(timeout=30) == rounds


def test_main_greenlet_of_a_plain_thread_can_wait() -> None:
    event = Event()
    woken: List[bool] = []

    def plain() -> None:
        woken.append(event.wait(5))
        gevent.get_hub().destroy(destroy_loop=True)

    thread = threading.Thread(target=plain)
    thread.start()
    gevent.sleep(0.05)
    event.send()
    thread.join(10)
    assert woken == [True]


def test_killed_waiter_does_not_disturb_the_others(greenlets: List[gevent.Greenlet]) -> None:
    event = Event()
    doomed = gevent.spawn(event.wait)
    patient = gevent.spawn(event.wait, 5)
    greenlets.extend([doomed, patient])
    gevent.sleep(0.01)
    doomed.kill(block=True, timeout=5)
    event.send()
    assert patient.get(timeout=5) is True
