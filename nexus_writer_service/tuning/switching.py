"""How often the interpreter passes the GIL between the native threads of a writer.

A writer process reads Redis in one thread and writes HDF5 in another. h5py gives the
GIL back around each HDF5 call and must then wait to get it again; with Python's
default switch interval (5 ms) the thread that holds it (parsing a Redis reply, say)
keeps it up to 5 ms each time, so the HDF5 thread spends most of its time waiting
(a "convoy"). A shorter interval lets both threads progress. It is a setting of the
whole process, so only the writer's own entry points (the ``NexusSessionWriter``
command and the Tango device server) change it, never an import.
"""

from __future__ import annotations

import sys

from ..errors import ArgumentTypeError, ConfigurationError

__all__ = ["WRITER_SWITCH_INTERVAL", "use_switch_interval"]

#: Seconds: the switch interval of a writer process.
WRITER_SWITCH_INTERVAL = 0.0005


def use_switch_interval(seconds: float = WRITER_SWITCH_INTERVAL) -> float:
    """Set the interpreter's thread switch interval; returns the previous one."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise ArgumentTypeError(
            f"switch interval must be a number of seconds, not {type(seconds).__name__}")
    if not 1e-6 <= seconds <= 1.0:
        raise ConfigurationError(
            f"switch interval must be between 1e-6 and 1 s, got {seconds!r}")
    previous = sys.getswitchinterval()
    sys.setswitchinterval(float(seconds))
    return previous
