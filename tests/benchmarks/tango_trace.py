"""Where a Tango request's time goes inside ``NexusWriterService`` (benchmarks only).

    python -m tests.benchmarks.tango_trace <NexusWriterService arguments>

runs the real device server with every call pytango hands to the device's gevent hub
timed (``GeventExecutor.execute``: ``always_executed_hook``, ``read_attr_hardware``,
the attribute read or the command itself), and writes the records, on a clean stop,
to ``<instance>.json`` in the directory named by the ``BENCH_TANGO_TRACE``
environment variable. Each record is
``(thread, name, entered, started, ended, returned)``, ``time.perf_counter()``
seconds (``CLOCK_MONOTONIC``, the same in every process of the machine):

* ``entered``: Tango's request thread calls pytango's wrapper (it holds the GIL);
* ``started``: the device's hub runs the call (after its queueing);
* ``ended``: the call returns, in the hub;
* ``returned``: the request thread has the result back (woken, and the GIL again).

:func:`breakdown` matches these to a client's reads by time (one read at a time per
device) and splits each read into: before the first hub call (network, omniORB, the
request thread getting the GIL), hub queueing, device code, the way back to the
request thread, between hub calls (Tango's C++ and the GIL between two calls), and
after the last one (back to the client, and the client itself being scheduled; for
a read answered in the request thread, ``green_mode=False``, also its code).

This wraps a pytango method at run time: a diagnostic of the benchmark, never done by
the product.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from bisect import bisect_left
from typing import Any, Callable, Sequence

import greenlet
import numpy as np

ENV = "BENCH_TANGO_TRACE"
#: The parts of a read, in order (see the module's docstring).
PARTS = ("before the first hub call", "hub queueing", "device code",
         "back to the request thread", "between hub calls", "after the last hub call")

Record = tuple[int, str, float, float, float, float, dict[str, float]]


class _HubClock:
    """Seconds each kind of greenlet of the main thread has run (``greenlet.settrace``):
    the hub itself (its loop, idle or not), a Tango request, or a greenlet of ours,
    named by its function."""

    def __init__(self) -> None:
        self.busy: dict[str, float] = {}
        self._current = "hub"
        self._since = time.perf_counter()

    @staticmethod
    def _label(target: Any) -> str:
        run = getattr(target, "_run", None)
        name = getattr(run, "__qualname__", None) or type(target).__name__
        return "tango request" if name == "GeventTask.run" else name

    def trace(self, event: str, args: Any) -> None:
        if event in ("switch", "throw"):
            now = time.perf_counter()
            self.busy[self._current] = self.busy.get(self._current, 0.0) + now - self._since
            self._current, self._since = self._label(args[1]), now

    def snapshot(self) -> dict[str, float]:
        busy = dict(self.busy)
        busy[self._current] = busy.get(self._current, 0.0) + time.perf_counter() - self._since
        return busy


def _install(records: list[Record], clock: _HubClock) -> None:
    from tango.gevent_executor import GeventExecutor

    execute = GeventExecutor.execute

    def timed_execute(self: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.in_executor_context():
            return fn(*args, **kwargs)
        marks = [0.0, 0.0]
        ran: dict[str, float] = {}

        def run(*a: Any, **k: Any) -> Any:
            marks[0] = time.perf_counter()
            ran.update({key: value - before.get(key, 0.0)
                        for key, value in clock.snapshot().items()})
            try:
                return fn(*a, **k)
            finally:
                marks[1] = time.perf_counter()

        before = clock.snapshot()
        entered = time.perf_counter()
        try:
            return execute(self, run, *args, **kwargs)
        finally:
            records.append((threading.get_ident(), getattr(fn, "__name__", "?"), entered,
                            marks[0], marks[1], time.perf_counter(),
                            {k: v for k, v in ran.items() if v > 1e-4}))

    GeventExecutor.execute = timed_execute  # type: ignore[method-assign]


def main() -> int:
    from tango_devices.server import main as server_main

    path = os.path.join(os.environ[ENV], f"{sys.argv[1]}.json")
    records: list[Record] = []
    clock = _HubClock()
    greenlet.settrace(clock.trace)
    _install(records, clock)

    def dump() -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(records, f)

    atexit.register(dump)
    return server_main(sys.argv[1:])


def load(path: str) -> list[Record]:
    with open(path, encoding="utf-8") as f:
        return [tuple(r) for r in json.load(f)]  # type: ignore[misc]


def _parts(calls: list[Record], sent: float, received: float) -> list[float]:
    queue = sum(c[3] - c[2] for c in calls)
    code = sum(c[4] - c[3] for c in calls)
    back = sum(c[5] - c[4] for c in calls)
    between = sum(b[2] - a[5] for a, b in zip(calls, calls[1:]))
    return [calls[0][2] - sent, queue, code, back, between, received - calls[-1][5]]


def _hub(calls: list[Record]) -> dict[str, float]:
    total: dict[str, float] = {}
    for call in calls:
        for key, value in call[6].items():
            total[key] = total.get(key, 0.0) + value * 1e3
    return total


def breakdown(reads: Sequence[tuple[int, str, float, float]], traces: Sequence[list[Record]]
              ) -> dict[str, tuple[np.ndarray, list[dict[str, float]]]]:
    """Per kind of read, an array ``(reads, len(PARTS))`` in ms, and for each read what
    ran in the hub while its calls were queued (ms per kind of greenlet).

    ``reads``: ``(device index, kind, sent, received)`` as the client timed them;
    ``traces``: the records of each device's server, in the same order. A read is
    matched with the hub calls of its server that lie within it (the client reads one
    thing at a time); reads without one (a Redis PING) are left out.
    """
    calls = [sorted(t, key=lambda c: c[2]) for t in traces]
    starts = [[c[2] for c in t] for t in calls]
    out: dict[str, tuple[list[list[float]], list[dict[str, float]]]] = {}
    for device, kind, sent, received in reads:
        i = bisect_left(starts[device], sent)
        inside = []
        while i < len(calls[device]) and calls[device][i][2] < received:
            if calls[device][i][5] <= received:
                inside.append(calls[device][i])
            i += 1
        if not inside:
            continue
        rows, hubs = out.setdefault(kind, ([], []))
        rows.append(_parts(inside, sent, received))
        hubs.append(_hub(inside))
    return {kind: (np.asarray(rows) * 1e3, hubs) for kind, (rows, hubs) in out.items()}


if __name__ == "__main__":
    raise SystemExit(main())
