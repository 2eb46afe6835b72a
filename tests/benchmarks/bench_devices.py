"""How fast NexusWriter devices answer when many of them write at once.

    python -m tests.benchmarks.bench_devices [--devices N] [--rounds N] [--scans N]
                                             [--points N]

Starts an embedded Redis and the embedded sqlite Tango database, registers
``--devices`` NexusWriter devices (one session each, default 10) and runs each in
its own ``NexusWriterService`` process, as a beamline control room does. A client
reads ``scan_states``, ``scan_names`` then ``scan_state(<last scan>)``, and, as
baselines under the same load, ``State`` (Tango alone, no writer involved) and a
Redis ``PING`` (the machine), of the devices in turn, one read every 10 ms:

1. baseline, measured in the same run: the same reads while every writer is idle;
2. under load, ``--rounds`` times (default 3): every session publishes ``--scans``
   ``ascan`` scans (``--points`` points each; default 30 scans of 20,000 points: the
   300 concurrent scans of the fault-injection round) at once, as fast as
   its publisher (``nexus-writer-simulate``, a process of its own) can, while the
   client reads.

The table shows p50/p99/max per round and the spread of p99 over the rounds.
Target (issue): p99 of ``scan_states`` under 50 ms with 10 devices under load.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import numpy as np
import redis
import tango

from nexus_writer_service.embedded import EmbeddedRedis, EmbeddedTangoDatabase
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
    return f"{name:<52} {len(ms):>7} {p50:>8.2f} {p99:>8.2f} {ms.max():>8.2f}"


#: What the client reads, in turn; the last two are baselines measured under the same
#: load: Tango alone (``State``, no writer involved) and the machine (Redis ``PING``).
KINDS = ("scan_states", "scan_names + scan_state(last)", "State (Tango alone)",
         "Redis PING (the machine)")


def _reads(proxies: list[tango.DeviceProxy], client: redis.Redis
           ) -> list[tuple[str, Callable[[], object]]]:
    """Every kind of :data:`KINDS` for every device, interleaved."""
    def state_of_last(proxy: tango.DeviceProxy) -> object:
        names = proxy.scan_names
        return proxy.scan_state(names[-1]) if names else None

    reads: list[tuple[str, Callable[[], object]]] = []
    for proxy in proxies:
        reads += [(KINDS[0], lambda proxy=proxy: proxy.scan_states),
                  (KINDS[1], lambda proxy=proxy: state_of_last(proxy)),
                  (KINDS[2], lambda proxy=proxy: proxy.state()),
                  (KINDS[3], client.ping)]
    return reads


def _by_kind(reads: list[tuple[str, Callable[[], object]]], ms: np.ndarray
             ) -> dict[str, np.ndarray]:
    kinds = [reads[i % len(reads)][0] for i in range(len(ms))]
    return {kind: ms[[k == kind for k in kinds]] for kind in KINDS}


def _round(proxies: list[tango.DeviceProxy], client: redis.Redis, sessions: list[str],
           url: str, root: Path, scans: int, points: int, seed: int
           ) -> tuple[dict[str, np.ndarray], float]:
    """Every session publishes ``scans`` scans at once while the client reads."""
    befores = [len(proxy.scan_names or ()) for proxy in proxies]
    # publishers in processes of their own: in the client's, they would hold its GIL
    publishers = [subprocess.Popen(
        [sys.executable, "-m", "nexus_writer_service.cli.simulate", "--redis-url", url,
         "--session", session, "--scan", "ascan", "--npoints", str(points), "--repeat",
         str(scans), "--root", str(root), "--seed", str(seed), "--log", "warning"],
        stdout=subprocess.DEVNULL) for session in sessions]

    def written() -> bool:
        if any(publisher.poll() is None for publisher in publishers):
            return False
        for proxy, before in zip(proxies, befores):
            states = [str(state) for state in proxy.scan_states or ()]
            if len(states) < before + scans or "ON" in states:
                return False
        return True

    reads = _reads(proxies, client)
    started = time.perf_counter()
    try:
        ms = _sample([read for _, read in reads], written, 10**7)
    finally:
        for publisher in publishers:
            if publisher.wait(timeout=600):
                raise RuntimeError(f"a publisher exited with {publisher.returncode}")
    return _by_kind(reads, ms), time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scans", type=int, default=30, help="scans per session per round")
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
        client = redis.Redis.from_url(url)
        stack.callback(client.close)
        reads = _reads(proxies, client)
        idle = _by_kind(reads, _sample([read for _, read in reads], lambda: False, 400))
        rows += [(f"{kind}, idle", ms) for kind, ms in idle.items()]
        p99s = []
        for index in range(args.rounds):
            loaded, elapsed = _round(proxies, client, sessions, url, work, args.scans,
                                     args.points, index)
            rows += [(f"{kind}, round {index + 1} ({elapsed:.0f} s)", ms)
                     for kind, ms in loaded.items()]
            p99s.append(float(np.percentile(loaded[KINDS[0]], 99)))
        written = [sorted(str(s) for s in proxy.scan_states or ()) for proxy in proxies]
        points = sum(int(progress.split("/")[0]) for proxy in proxies
                     for progress in proxy.scan_progress or ())
    print(f"\n{args.devices} NexusWriter devices (one server each), reads every "
          f"{PERIOD * 1e3:g} ms; load: {args.scans} ascans of {args.points} points per "
          f"session per round, each session's publisher in a process of its own "
          f"({platform.python_version()}, pytango {tango.__version__})")
    print(f"{'read':<52} {'reads':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, ms in rows:
        print(_row(name, ms))
    print(f"scans written: {sum(map(len, written))} ({sorted(set(sum(written, [])))}), "
          f"{points} points in all")
    worst = max(p99s)
    print(f"\nscan_states p99 over {args.rounds} rounds: {min(p99s):.1f}-{worst:.1f} ms "
          f"(median {np.median(p99s):.1f}); target < {TARGET_P99_MS:g} ms: "
          f"{'met' if worst < TARGET_P99_MS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
