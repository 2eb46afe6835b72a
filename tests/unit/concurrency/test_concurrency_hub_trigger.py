"""HubTrigger: func runs in the creating thread; sends coalesce but none is lost."""

from __future__ import annotations

import logging
import threading
from typing import Callable, List

import gevent
import pytest

from nexus_writer_service.concurrency import Event, HubTrigger, Thread
from nexus_writer_service.errors import ArgumentTypeError, ConcurrencyUsageError


def test_func_runs_in_the_creating_thread(start_thread: Callable[..., Thread]) -> None:
    ran_in: List[int] = []
    done = Event()

    def func() -> None:
        ran_in.append(threading.get_ident())
        done.send()

    for blocking in (False, True):
        ran_in.clear()
        done.clear()
        trigger = HubTrigger(func, blocking=blocking)
        try:
            worker = start_thread(name=f"sender-{blocking}")
            worker.apply(trigger.send)
            assert done.wait(5)
            assert ran_in == [threading.get_ident()]
        finally:
            trigger.close()


def test_sends_coalesce_and_the_last_one_is_always_followed_by_a_run(
    start_thread: Callable[..., Thread],
) -> None:
    sent = [0]
    seen: List[int] = []
    caught_up = Event()
    total = 2000

    def func() -> None:
        seen.append(sent[0])
        if sent[0] == total:
            caught_up.send()

    trigger = HubTrigger(func)

    def send_many() -> None:
        for _ in range(total):
            sent[0] += 1
            trigger.send()

    try:
        worker = start_thread(name="sender")
        worker.apply(send_many)
        assert caught_up.wait(5)
        assert 1 <= len(seen) < total
        assert seen == sorted(seen)
    finally:
        trigger.close()


def test_failing_func_is_logged_and_the_trigger_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: List[int] = []
    again = Event()

    def func() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        again.send()

    with HubTrigger(func) as trigger:
        with caplog.at_level(logging.ERROR):
            trigger.send()
            gevent.sleep(0.05)
        assert "first call fails" in caplog.text
        trigger.send()
        assert again.wait(5)


def test_misuse_raises_clear_errors(start_thread: Callable[..., Thread]) -> None:
    with pytest.raises(ArgumentTypeError, match="callable"):
        HubTrigger("not a function")  # type: ignore[arg-type]
    trigger = HubTrigger(lambda: None)
    try:
        worker = start_thread(name="closer")
        with pytest.raises(ConcurrencyUsageError, match="thread that created"):
            worker.apply(trigger.close)
    finally:
        trigger.close()
    trigger.close()
    assert trigger.closed
    with pytest.raises(ConcurrencyUsageError, match="closed"):
        trigger.send()


def test_close_kills_a_running_func() -> None:
    started = Event()
    finished: List[bool] = []

    def func() -> None:
        started.send()
        gevent.sleep(30)
        finished.append(True)

    trigger = HubTrigger(func)
    trigger.send()
    assert started.wait(5)
    trigger.close(timeout=5)
    assert finished == []
