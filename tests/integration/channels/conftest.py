"""Helpers for the channels integration tests: child processes and waiting.

``spawn(code, *args)`` runs ``python -c code args...`` with its stdout piped; every
child is resumed (SIGCONT) and killed by PID at the end of the test. ``wait_for``
polls a condition until a deadline instead of sleeping.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from typing import Callable, Iterator

import pytest

import channels


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


def read_line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    """The next line the child prints, or an AssertionError with its stderr."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"child printed nothing within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"child exited (code {proc.wait(5)}): {err}")
    return line.strip()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    children: list[subprocess.Popen[str]] = []

    def start(code: str, *args: str) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env.pop("REDIS_URL", None)
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        children.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in children:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture(autouse=True)
def _channels_shutdown() -> Iterator[None]:
    """Safety net: stop channels' background threads even when a test fails half-way."""
    yield
    channels.shutdown()
