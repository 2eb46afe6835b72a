"""A lower scheduling priority for a writer's background threads.

A Tango device server answers its clients from Tango's request threads and the
device's hub (the main thread), while each scan being written has a reader thread
(Redis replies parsed into events) and the session shares one HDF5 thread (and its
compression threads). With many scans at once, these are always ready to run; the
request and hub threads, woken once per request and several times in it, then wait
for a CPU (and for the GIL) behind them: measured with ten devices under load
(``tests/benchmarks/bench_devices.py --trace``), most of a slow read was spent
waiting to be scheduled, not in the device's code. A higher nice value for the
background threads lets the scheduler run the threads that answer clients first;
the background threads still get every CPU cycle nobody else wants.

Linux sets the nice value of one thread (``setpriority`` on its thread id); threads
a background thread starts inherit it. Elsewhere, or when the system refuses,
nothing changes. A setting of the whole process, made only by the Tango device
server's entry point, never by an import: a command-line writer has no client to
answer.
"""

from __future__ import annotations

import logging
import os
import threading

from ..errors import ArgumentTypeError, ConfigurationError

__all__ = ["BACKGROUND_NICE", "use_background_nice", "lower_this_thread"]

logger = logging.getLogger(__name__)

#: The nice value added to the background threads of a Tango device server.
BACKGROUND_NICE = 10

_nice = 0


def use_background_nice(nice: int = BACKGROUND_NICE) -> int:
    """Background threads started from now on run ``nice`` steps below the others
    (0: as the others); returns the previous setting."""
    global _nice
    if not isinstance(nice, int) or isinstance(nice, bool):
        raise ArgumentTypeError(f"nice must be an integer, not {type(nice).__name__}")
    if not 0 <= nice <= 19:
        raise ConfigurationError(f"nice must be between 0 and 19, got {nice!r}")
    previous, _nice = _nice, nice
    return previous


def lower_this_thread() -> bool:
    """Called first thing by a background thread (a scan's reader, the HDF5 thread):
    add the process's background nice value to the calling thread. Whether done."""
    if not _nice or threading.current_thread() is threading.main_thread():
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + _nice)
    except (OSError, AttributeError) as exc:  # not Linux, or refused: the thread runs as is
        logger.debug("cannot lower the priority of %s: %s", threading.current_thread().name,
                     exc)
        return False
    return True
