"""Resource profiling of a writer process: where its CPU time, wall time or memory went.

The choices are those of the classic NexusWriter's ``resource_profiling`` attribute
(OFF, CPU30, CPU50, CPU100, WALL30, WALL50, WALL100, MEM30, MEM50, MEM100): a kind of
measure and how many of the top functions (CPU, WALL) or source lines (MEM) to report.

A :class:`Profiler` covers every thread of the process (the scan writers' readers and
their shared HDF5 thread included): yappi for CPU and wall time, ``tracemalloc`` for
memory. Only one profiler may run at a time in a process, since both tools are
process-wide; :meth:`Profiler.start` refuses a second one. ``start`` and ``stop`` are
meant to be called by one owner (the device's monitor); they do not block.
"""

from __future__ import annotations

import enum
import io
import threading
import tracemalloc
from typing import Optional

import yappi

from .errors import NexusWriterError

__all__ = ["ResourceProfiling", "Profiler"]


class ResourceProfiling(enum.IntEnum):
    """What to profile and how many top entries to report (Tango enum order)."""

    OFF = 0
    CPU30 = 1
    CPU50 = 2
    CPU100 = 3
    WALL30 = 4
    WALL50 = 5
    WALL100 = 6
    MEM30 = 7
    MEM50 = 8
    MEM100 = 9

    @property
    def kind(self) -> str:
        """``"off"``, ``"cpu"``, ``"wall"`` or ``"memory"``."""
        return _KINDS[self.name.rstrip("0123456789")]

    @property
    def limit(self) -> int:
        """How many functions or source lines the report lists (0 for OFF)."""
        digits = self.name.lstrip("CPUWALMEOF")
        return int(digits) if digits else 0


_KINDS = {"OFF": "off", "CPU": "cpu", "WALL": "wall", "MEM": "memory"}
_RUNNING = threading.Lock()


class Profiler:
    """Profile the whole process between :meth:`start` and :meth:`stop`.

    ``stop`` returns the report as text: the top functions by total time (own time
    plus callees) for CPU and WALL, the top source lines by memory still allocated
    for MEM.
    """

    def __init__(self, choice: ResourceProfiling) -> None:
        if choice is ResourceProfiling.OFF:
            raise ValueError("a Profiler needs a choice other than OFF")
        self.choice = choice
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Start measuring.

        :raises NexusWriterError: another profiler runs in this process
        """
        if self._running:
            return
        if not _RUNNING.acquire(blocking=False):
            raise NexusWriterError(
                "another resource profiling runs in this process: set it OFF first")
        try:
            if self.choice.kind == "memory":
                tracemalloc.start()
            else:
                yappi.clear_stats()
                yappi.set_clock_type(self.choice.kind)
                yappi.start(builtins=False, profile_threads=True)
        except BaseException:
            _RUNNING.release()
            raise
        self._running = True

    def stop(self) -> str:
        """Stop measuring and return the report ("" if it was not running)."""
        if not self._running:
            return ""
        self._running = False
        try:
            if self.choice.kind == "memory":
                return self._memory_report()
            return self._time_report()
        finally:
            _RUNNING.release()

    def _time_report(self) -> str:
        yappi.stop()
        stats = yappi.get_func_stats()
        yappi.clear_stats()
        stats.sort("ttot", "desc")
        out = io.StringIO()
        out.write(f"{self.choice.kind} time, top {self.choice.limit} functions "
                  "by total time (s):\n")
        out.write(f"{'calls':>10} {'total':>10} {'own':>10}  function\n")
        for stat in list(stats)[:self.choice.limit]:
            out.write(f"{stat.ncall:>10} {stat.ttot:>10.4f} {stat.tsub:>10.4f}  "
                      f"{stat.full_name}\n")
        return out.getvalue()

    def _memory_report(self) -> str:
        snapshot: Optional[tracemalloc.Snapshot] = tracemalloc.take_snapshot()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert snapshot is not None
        snapshot = snapshot.filter_traces((
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<unknown>"),
        ))
        lines = snapshot.statistics("lineno")
        total = sum(stat.size for stat in lines)
        out = io.StringIO()
        out.write(f"memory allocated at the peak: {peak / 2**20:.1f} MiB, "
                  f"still allocated: {total / 2**20:.1f} MiB, top "
                  f"{self.choice.limit} source lines (KiB, blocks):\n")
        for stat in lines[:self.choice.limit]:
            frame = stat.traceback[0]
            out.write(f"{stat.size / 1024:>12.1f} {stat.count:>8}  "
                      f"{frame.filename}:{frame.lineno}\n")
        return out.getvalue()
