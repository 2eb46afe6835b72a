"""How fast NexusWriter devices answer when many of them write at once.

    python -m tests.benchmarks.bench_devices [--devices N] [--rounds N] [--scans N]
                                             [--points N]

Starts an embedded Redis and the embedded sqlite Tango database, registers
``--devices`` NexusWriter devices (one session each, default 10) and runs each in
its own ``NexusWriterService`` process, as a beamline control room does. A client
reads ``scan_states`` and ``scan_state(<last scan>)`` of the devices in turn, one read
every 10 ms:

1. baseline, measured in the same run: the same reads while every writer is idle;
2. under load, ``--rounds`` times (default 3): every session publishes ``--scans``
   ``ascan`` scans (``--points`` points each, 20 scalar counters) at once, as fast as
   its publisher can, while the client reads.

The table shows p50/p99/max per round and the spread of p99 over the rounds.
Target (issue): p99 of ``scan_states`` under 50 ms with 10 devices under load.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import numpy as np
import tango

from nexus_writer_service.embedded import EmbeddedRedis, EmbeddedTangoDatabase
from nexus_writer_service.simulation import SimulationOptions, simulate
from tango_devices.process import ServerProcess
from tango_devices.register import register_nexus_writer

TARGET_P99_MS = 50.0
PERIOD = 0.010


def _sample(reads: list[Callable[[], object]], until: Callable[[], bool], limit: int
            ) -> np.ndarray:
    """The reads in turn, one every PERIOD seconds, until ``until()`` or ``limit``;
    ms each."""
    times: list[float] = []
    next_time = time.perf_counter()
    while len(times) < limit and not until():
        read = reads[len(times) % len(reads)]
        start = time.perf_counter()
        read()
        times.append((time.perf_counter() - start) * 1e3)
        next_time += PERIOD
        time.sleep(max(0.0, next_time - time.perf_counter()))
    return np.asarray(times)


def _row(name: str, ms: np.ndarray) -> str:
    p50, p99 = np.percentile(ms, [50, 99])
    return f"{name:<44} {len(ms):>7} {p50:>8.2f} {p99:>8.2f} {ms.max():>8.2f}"


def _reads(proxies: list[tango.DeviceProxy]) -> tuple[list[Callable[[], object]],
                                                       list[Callable[[], object]]]:
    """``scan_states`` of every device, and ``scan_state`` of its last scan."""
    states = [lambda proxy=proxy: proxy.scan_states for proxy in proxies]

    def state_of_last(proxy: tango.DeviceProxy) -> object:
        names = proxy.scan_names
        return proxy.scan_state(names[-1]) if names else None

    return states, [lambda proxy=proxy: state_of_last(proxy) for proxy in proxies]


def _round(proxies: list[tango.DeviceProxy], sessions: list[str], url: str, root: Path,
           scans: int, points: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Every session publishes ``scans`` scans at once while the client reads."""
    left = threading.Semaphore(0)
    befores = [len(proxy.scan_names or ()) for proxy in proxies]

    def publish(session: str) -> None:
        try:
            simulate(SimulationOptions(session=session, scans=("ascan",), npoints=points,
                                       nchannels=20, redis_url=url, root=str(root),
                                       repeat=scans, seed=seed))
        finally:
            left.release()

    threads = [threading.Thread(target=publish, args=(s,), name=f"publish-{s}")
               for s in sessions]
    published = [0]

    def written() -> bool:
        while left.acquire(blocking=False):
            published[0] += 1
        if published[0] < len(sessions):
            return False
        for proxy, before in zip(proxies, befores):
            states = [str(state) for state in proxy.scan_states or ()]
            if len(states) < before + scans or "ON" in states:
                return False
        return True

    states, state = _reads(proxies)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        ms = _sample([read for pair in zip(states, state) for read in pair], written, 10**7)
    finally:
        for thread in threads:
            thread.join()
    elapsed = time.perf_counter() - started
    return ms[0::2], ms[1::2], elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scans", type=int, default=3, help="scans per session per round")
    parser.add_argument("--points", type=int, default=20_000)
    args = parser.parse_args(argv)
    sessions = [f"bench{i}" for i in range(args.devices)]
    rows = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-devices-")))
        url = stack.enter_context(EmbeddedRedis(workdir=work / "redis")).url + "/0"
        database = stack.enter_context(EmbeddedTangoDatabase(workdir=work / "tango"))
        host, port = database.tango_host.split(":")
        db = tango.Database(host, int(port))
        servers = []
        for session in sessions:
            register_nexus_writer(session, redis_url=url, database=db,
                                  options={"allowed_roots": [str(work)],
                                           "required_disk_space": 0,
                                           "recommended_disk_space": 0})
            servers.append(stack.enter_context(ServerProcess(
                session, database.tango_host, args=["--log=warning"],
                output=work / f"{session}.out")))
        proxies = [server.wait_ready(f"id00/bliss_nxwriter/{session}")
                   for server, session in zip(servers, sessions)]
        states, state = _reads(proxies)
        rows.append(("scan_states, idle (baseline)", _sample(states, lambda: False, 300)))
        p99s = []
        for index in range(args.rounds):
            loaded, loaded_state, elapsed = _round(proxies, sessions, url, work, args.scans,
                                                   args.points, index)
            rows.append((f"scan_states, round {index + 1} ({elapsed:.1f} s)", loaded))
            rows.append((f"scan_state(last), round {index + 1}", loaded_state))
            p99s.append(float(np.percentile(loaded, 99)))
    print(f"\n{args.devices} NexusWriter devices (one server each), reads every "
          f"{PERIOD * 1e3:g} ms; load: {args.scans} ascans of {args.points} points x 20 "
          f"counters per session per round ({platform.python_version()}, pytango "
          f"{tango.__version__})")
    print(f"{'read':<44} {'reads':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, ms in rows:
        print(_row(name, ms))
    worst = max(p99s)
    print(f"\nscan_states p99 over {args.rounds} rounds: {min(p99s):.1f}-{worst:.1f} ms "
          f"(median {np.median(p99s):.1f}); target < {TARGET_P99_MS:g} ms: "
          f"{'met' if worst < TARGET_P99_MS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
