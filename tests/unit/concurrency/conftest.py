"""Fixtures for the concurrency tests: worker threads and greenlets that are
always stopped, whatever the outcome of the test."""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import gevent
import pytest

from nexus_writer_service.concurrency import Thread

StartThread = Callable[..., Thread]


@pytest.fixture
def start_thread() -> Iterator[StartThread]:
    """Start a :class:`Thread`; every thread started this way is stopped at teardown."""
    threads: List[Thread] = []

    def start(**kwargs: Any) -> Thread:
        thread = Thread(**kwargs)
        threads.append(thread)
        thread.start(timeout=10)
        return thread

    try:
        yield start
    finally:
        for thread in threads:
            thread.stop(timeout=10)


@pytest.fixture
def greenlets() -> Iterator[List[gevent.Greenlet]]:
    """A list to which tests add greenlets of the main thread; killed at teardown."""
    spawned: List[gevent.Greenlet] = []
    try:
        yield spawned
    finally:
        gevent.killall(spawned, block=True, timeout=10)
