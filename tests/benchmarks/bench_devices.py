"""How fast NexusWriter devices answer when many of them write at once.

    python -m tests.benchmarks.bench_devices [--devices N] [--rounds N] [--scans N]
                                             [--points N] [--trace]

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

The table shows p50/p99/max per round, the machine's load average, and the spread
of p99 over the rounds next to that of the Redis PING of the same rounds (a client
starved of CPU inflates both). ``--trace`` runs the servers under
:mod:`.tango_trace` and shows where the time of the reads under load went, server
side (the tracing costs some CPU itself).
Target (issue): p99 of ``scan_states`` under 50 ms with 10 devices under load.
"""

from __future__ import annotations

import argparse
import os
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

from nexus_writer_service.embedded import EmbeddedRedis

from . import tango_trace
from .tango_servers import PERIOD, running_devices, sample

TARGET_P99_MS = 50.0


def _row(name: str, ms: np.ndarray) -> str:
    p50, p99 = np.percentile(ms, [50, 99])
    return f"{name:<52} {len(ms):>7} {p50:>8.2f} {p99:>8.2f} {ms.max():>8.2f}"


#: What the client reads, in turn; the last two are baselines measured under the same
#: load: Tango alone (``State``, no writer involved) and the machine (Redis ``PING``).
KINDS = ("scan_states", "scan_names + scan_state(last)", "State (Tango alone)",
         "Redis PING (the machine)")


Read = tuple[int, str, Callable[[], object]]


def _reads(proxies: list[tango.DeviceProxy], client: redis.Redis) -> list[Read]:
    """Every kind of :data:`KINDS` for every device (its index first), interleaved."""
    def state_of_last(proxy: tango.DeviceProxy) -> object:
        names = proxy.scan_names
        return proxy.scan_state(names[-1]) if names else None

    reads: list[Read] = []
    for index, proxy in enumerate(proxies):
        reads += [(index, KINDS[0], lambda proxy=proxy: proxy.scan_states),
                  (index, KINDS[1], lambda proxy=proxy: state_of_last(proxy)),
                  (index, KINDS[2], lambda proxy=proxy: proxy.state()),
                  (index, KINDS[3], client.ping)]
    return reads


class _Sampled:
    """What :func:`sample` measured of ``reads`` in turn: ms each, and when sent."""

    def __init__(self, reads: list[Read], until: Callable[[], bool], limit: int) -> None:
        self.reads = reads
        self.sent: list[float] = []
        self.ms = sample([read for _, _, read in reads], until, limit, self.sent)

    def _read(self, i: int) -> Read:
        return self.reads[i % len(self.reads)]

    def by_kind(self) -> dict[str, np.ndarray]:
        kinds = [self._read(i)[1] for i in range(len(self.ms))]
        return {kind: self.ms[[k == kind for k in kinds]] for kind in KINDS}

    def timed(self) -> list[tuple[int, str, float, float]]:
        """``(device, kind, sent, received)`` of every read, ``perf_counter()`` s."""
        return [(self._read(i)[0], self._read(i)[1], sent, sent + ms / 1e3)
                for i, (sent, ms) in enumerate(zip(self.sent, self.ms))]


def _round(proxies: list[tango.DeviceProxy], client: redis.Redis, sessions: list[str],
           url: str, root: Path, scans: int, points: int, seed: int
           ) -> tuple[_Sampled, float]:
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

    started = time.perf_counter()
    try:
        sampled = _Sampled(_reads(proxies, client), written, 10**7)
    finally:
        for publisher in publishers:
            if publisher.wait(timeout=600):
                raise RuntimeError(f"a publisher exited with {publisher.returncode}")
    return sampled, time.perf_counter() - started


def _machine_load() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def _print_breakdown(loaded: list[_Sampled], trace_dir: Path, sessions: list[str]) -> None:
    """Where the time of the loaded reads went, server side (see :mod:`.tango_trace`)."""
    traces = [tango_trace.load(str(trace_dir / f"{session}.json")) for session in sessions]
    parts: dict[str, list[np.ndarray]] = {}
    hubs: dict[str, list[dict[str, float]]] = {}
    for sampled in loaded:
        for kind, (rows, ran) in tango_trace.breakdown(sampled.timed(), traces).items():
            parts.setdefault(kind, []).append(rows)
            hubs.setdefault(kind, []).extend(ran)
    heads = ("before 1st", "queueing", "code", "back", "between", "after last")
    print("\nwhere the time of the reads under load went, in ms (tests/benchmarks/"
          "tango_trace.py): the median read, then the mean of the slowest 2 %, and what "
          "ran in the device's hub while their calls were queued")
    print(f"{'read':<36} {'reads':>6} {'total':>7} " + " ".join(f"{h:>10}" for h in heads))
    for kind in KINDS:
        if kind not in parts:
            continue
        rows = np.concatenate(parts[kind])
        total = rows.sum(axis=1)
        median = rows[np.argsort(total)[len(total) // 2]]
        slow = total >= np.percentile(total, 98)
        print(f"{kind:<36} {len(rows):>6} {median.sum():>7.2f} "
              + " ".join(f"{v:>10.2f}" for v in median))
        mean = rows[slow].mean(axis=0)
        print(f"{'  slowest 2 %':<36} {int(slow.sum()):>6} {mean.sum():>7.2f} "
              + " ".join(f"{v:>10.2f}" for v in mean))
        ran: dict[str, float] = {}
        for hub, is_slow in zip(hubs[kind], slow):
            if is_slow:
                for key, value in hub.items():
                    ran[key] = ran.get(key, 0.0) + value / int(slow.sum())
        top = sorted(ran.items(), key=lambda item: -item[1])[:4]
        print("    in the hub meanwhile: " + ", ".join(f"{k} {v:.1f}" for k, v in top))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scans", type=int, default=30, help="scans per session per round")
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--trace", action="store_true",
                        help="also time each request inside the servers and show where "
                             "the time of the reads under load went")
    args = parser.parse_args(argv)
    sessions = [f"bench{i}" for i in range(args.devices)]
    rows = []
    loaded: list[_Sampled] = []
    loads = [_machine_load()]
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-devices-")))
        url = stack.enter_context(EmbeddedRedis(workdir=work / "redis")).url + "/0"
        trace_dir = work / "trace"
        trace_dir.mkdir()
        traced = {"module": "tests.benchmarks.tango_trace",
                  "env": dict(os.environ, **{tango_trace.ENV: str(trace_dir)})}
        with running_devices(work, url, sessions,
                             options={"required_disk_space": 0, "recommended_disk_space": 0},
                             **(traced if args.trace else {})) as devices:
            proxies = [proxy for _, proxy in devices]
            client = redis.Redis.from_url(url)
            stack.callback(client.close)
            idle = _Sampled(_reads(proxies, client), lambda: False, 400).by_kind()
            rows += [(f"{kind}, idle", ms) for kind, ms in idle.items()]
            p99s = []
            for index in range(args.rounds):
                sampled, elapsed = _round(proxies, client, sessions, url, work, args.scans,
                                          args.points, index)
                loads.append(_machine_load())
                loaded.append(sampled)
                rows += [(f"{kind}, round {index + 1} ({elapsed:.0f} s)", ms)
                         for kind, ms in sampled.by_kind().items()]
                p99s.append((float(np.percentile(sampled.by_kind()[KINDS[0]], 99)),
                             float(np.percentile(sampled.by_kind()[KINDS[3]], 99))))
            written = [sorted(str(s) for s in proxy.scan_states or ()) for proxy in proxies]
            points = sum(int(progress.split("/")[0]) for proxy in proxies
                         for progress in proxy.scan_progress or ())
        print(f"\n{args.devices} NexusWriter devices (one server each), reads every "
              f"{PERIOD * 1e3:g} ms; load: {args.scans} ascans of {args.points} points per "
              f"session per round, each session's publisher in a process of its own "
              f"({platform.python_version()}, pytango {tango.__version__}, "
              f"{os.cpu_count()} CPUs)")
        print(f"{'read':<52} {'reads':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for name, ms in rows:
            print(_row(name, ms))
        print(f"scans written: {sum(map(len, written))} ({sorted(set(sum(written, [])))}), "
              f"{points} points in all")
        print(f"machine load average (1, 5, 15 min) before and after each round: "
              f"{'; '.join(loads)}")
        if args.trace:
            _print_breakdown(loaded, trace_dir, sessions)
    states = [p for p, _ in p99s]
    pings = [p for _, p in p99s]
    worst = max(states)
    print(f"\nscan_states p99 over {args.rounds} rounds: {min(states):.1f}-{worst:.1f} ms "
          f"(median {np.median(states):.1f}), Redis PING p99 of the same rounds "
          f"{min(pings):.1f}-{max(pings):.1f} ms (median {np.median(pings):.1f}); "
          f"target < {TARGET_P99_MS:g} ms: {'met' if worst < TARGET_P99_MS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
