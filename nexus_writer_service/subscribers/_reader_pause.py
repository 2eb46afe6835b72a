"""Pausing a subscriber's reader thread while its consumer makes many short HDF5 calls.

This works around the interpreter lock, not a need of the design. h5py lets go of
the lock around each HDF5 call and must get it back afterwards; while another thread
of the process runs Python code (the reader, parsing Redis replies), each call waits
for it. For work made of many short calls (creating the groups and datasets of
hundreds of channels, flushing as many datasets) that wait costs several times the
CPU time of the work itself; with the reader paused the calls run back to back. It
is measured by the benchmark's many-channel scenario (2) and pinned by
``tests/integration/test_writer_files.py`` (the reader is paused while the tree is
built and flushed) and ``tests/integration/test_subscriber.py`` (a paused reader
reads nothing, a stop still reaches it at once).

The reader is only ever paused between two reads: the walk asks its ``stop``
handle before each read, and :class:`ReadGate` waits there while the consumer holds
:func:`reader_paused`. What is not read yet waits in Redis.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Optional, Protocol

__all__ = ["PausableRun", "ReadGate", "reader_paused"]

#: Seconds between two looks of a paused reader at a stop, a kill or the consumer's end.
_PAUSED_POLL = 0.05


class PausableRun(Protocol):
    """What a run of a subscriber shares between its reader thread and its consumer."""

    #: cleared while the consumer pauses the reader
    reading_allowed: threading.Event
    killed: bool
    stop_reading: Any
    consumer_done: Any
    reader: Optional[threading.Thread]


class ReadGate:
    """The ``stop`` handle given to a run's walk (reader thread): ``is_set()`` tells
    whether to stop reading, after waiting while the consumer pauses the reader.
    A stop, a kill or the consumer's end is seen within :data:`_PAUSED_POLL`."""

    __slots__ = ("_run",)

    def __init__(self, run: PausableRun) -> None:
        self._run = run

    def is_set(self) -> bool:
        run = self._run
        while not run.reading_allowed.wait(_PAUSED_POLL):
            if run.killed or run.stop_reading.is_set() or run.consumer_done.is_set():
                break
        return bool(run.stop_reading.is_set())


@contextlib.contextmanager
def reader_paused(run: Optional[PausableRun]) -> Iterator[None]:
    """Inside, the reader thread of ``run`` reads nothing more from Redis (its walk
    stops before its next read). Consumer side only; not nested: an inner use, a use
    from the reader thread itself or without a run does nothing."""
    if (run is None or not run.reading_allowed.is_set()
            or threading.current_thread() is run.reader):
        yield
        return
    run.reading_allowed.clear()
    try:
        yield
    finally:
        run.reading_allowed.set()
