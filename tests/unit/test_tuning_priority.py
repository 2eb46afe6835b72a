"""The lower priority a Tango device server gives its background threads."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from nexus_writer_service.errors import ArgumentTypeError, ConfigurationError
from nexus_writer_service.tuning import (
    BACKGROUND_NICE,
    lower_this_thread,
    use_background_nice,
)

linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="per-thread nice values are a Linux feature")


def _in_a_thread() -> tuple[bool, int, int]:
    """(lowered, nice of that thread after, nice of the main thread after)."""
    out: list[tuple[bool, int]] = []

    def run() -> None:
        done = lower_this_thread()
        out.append((done, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return out[0][0], out[0][1], os.getpriority(os.PRIO_PROCESS, 0)


@pytest.fixture
def background_nice():
    previous = use_background_nice(0)
    yield use_background_nice
    use_background_nice(previous)


def test_off_by_default_leaves_threads_as_they_are(background_nice):
    main = os.getpriority(os.PRIO_PROCESS, 0)
    assert _in_a_thread() == (False, main, main)


@linux
def test_lowers_the_calling_thread_only(background_nice):
    main = os.getpriority(os.PRIO_PROCESS, 0)
    assert background_nice(BACKGROUND_NICE) == 0
    lowered, nice, main_after = _in_a_thread()
    assert lowered
    assert nice == min(19, main + BACKGROUND_NICE)
    assert main_after == main  # the process and its main thread keep theirs


def test_never_lowers_the_main_thread(background_nice):
    background_nice(5)
    main = os.getpriority(os.PRIO_PROCESS, 0)
    assert lower_this_thread() is False
    assert os.getpriority(os.PRIO_PROCESS, 0) == main


@pytest.mark.parametrize("bad, error, words", [
    ("10", ArgumentTypeError, "integer"),
    (True, ArgumentTypeError, "integer"),
    (-1, ConfigurationError, "between 0 and 19"),
    (20, ConfigurationError, "between 0 and 19"),
])
def test_bad_values_are_refused_and_change_nothing(background_nice, bad, error, words):
    with pytest.raises(error, match=words):
        background_nice(bad)
    assert background_nice(0) == 0
