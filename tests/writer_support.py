"""Helpers for tests of the NeXus writers (imported by test modules, not collected)."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import gevent

from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import NexusSessionWriter, ScanRecord


@contextlib.contextmanager
def session_writer(redis_url: str, session: str, options: SaveOptions | None = None,
                   **kwargs: Any) -> Iterator[NexusSessionWriter]:
    """A started NexusSessionWriter in the calling thread; stopped (and joined) at exit."""
    writer = NexusSessionWriter(session, redis_url, options=options, **kwargs)
    writer.start(wait=True, timeout=10)
    try:
        yield writer
    finally:
        writer.stop(wait=True, timeout=60)


def wait_until(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Let the calling thread's hub run until ``condition()`` is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        gevent.sleep(0.05)


def wait_scans_done(writer: NexusSessionWriter, count: int, timeout: float = 60.0
                    ) -> list[ScanRecord]:
    """Wait until ``count`` scans are known and all their writers have finished."""
    wait_until(lambda: len(writer.scans()) >= count
               and all(r.writer.done() for r in writer.scans()), timeout,
               f"{count} scans written by {writer.name} "
               f"(now: {[r.as_dict()['state'] for r in writer.scans()]})")
    return writer.scans()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
