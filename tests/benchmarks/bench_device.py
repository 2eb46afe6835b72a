"""How fast the NexusWriter device answers while its writer works flat out.

    python -m tests.benchmarks.bench_device [--quick] [--points N]

Starts an embedded Redis and the embedded sqlite Tango database, registers a
NexusWriter and runs the real ``NexusWriterService`` as a child process. A client
reads ``scan_states`` every 10 ms:

1. baseline, measured in the same run: a raw Redis ``PING`` from this process, and
   ``scan_states`` while the writer is idle;
2. during the simulator's ``long`` scan (1e6 points, ``--quick`` 1e5) published as
   fast as the publisher can, ``--repeat`` times in a row (default 10, ``--quick``
   3), while the writer drains them;
3. during ``many_channels`` scans (128 counters of mixed dtypes, 20000 points each,
   the same number of times): many datasets per file.

Target (issue): p99 of ``scan_states`` reads under 50 ms during the scan.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import redis
import tango

from nexus_writer_service.embedded import EmbeddedRedis
from nexus_writer_service.simulation import SimulationOptions, simulate

from .tango_servers import PERIOD, running_device, sample

TARGET_P99_MS = 50.0


def _row(name: str, ms: np.ndarray) -> str:
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return (f"{name:<40} {len(ms):>7} {p50:>8.2f} {p90:>8.2f} {p99:>8.2f} "
            f"{ms.max():>8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1e5 points instead of 1e6")
    parser.add_argument("--points", type=int, help="points of the long scan")
    parser.add_argument("--repeat", type=int, help="scans of each kind (default 10, quick 3)")
    args = parser.parse_args(argv)
    npoints = args.points or (100_000 if args.quick else 1_000_000)
    repeat = args.repeat or (3 if args.quick else 10)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-device-")))
        redis_server = stack.enter_context(EmbeddedRedis(workdir=work / "redis"))
        url = redis_server.url + "/0"
        _, proxy = stack.enter_context(running_device(work, url))

        client = redis.Redis.from_url(url)
        stack.callback(client.close)
        ping = sample(client.ping, lambda: False, 500)
        idle = sample(lambda: proxy.scan_states, lambda: False, 500)

        busy = {}
        for kind, points in (("long", npoints), ("many_channels", 20_000)):
            options = SimulationOptions(session="bench", scans=(kind,), npoints=points,
                                        redis_url=url, root=str(work), repeat=repeat)
            busy[kind] = _while_writing(proxy, options)
        progress = proxy.scan_progress
        states = proxy.scan_states
    print(f"\nNexusWriter device: attribute reads every {PERIOD * 1e3:g} ms "
          f"({platform.python_version()}, {platform.machine()}, pytango {tango.__version__})")
    print(f"{'read':<40} {'reads':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(_row("raw Redis PING (baseline)", ping))
    print(_row("scan_states, writer idle (baseline)", idle))
    for kind, (ms, elapsed) in busy.items():
        print(_row(f"scan_states, {repeat} x {kind} ({elapsed:.1f} s)", ms))
    print(f"\nscans written: {len(states)}, states {sorted(set(states))}, last "
          f"{progress[-1]} points")
    p99 = max(float(np.percentile(ms, 99)) for ms, _ in busy.values())
    verdict = "met" if p99 < TARGET_P99_MS else "MISSED"
    print(f"target p99 < {TARGET_P99_MS:g} ms while writing: {verdict} ({p99:.1f} ms)")
    return 0


def _while_writing(proxy: tango.DeviceProxy, options: SimulationOptions
                   ) -> tuple[np.ndarray, float]:
    """Read scan_states every PERIOD while ``options`` are published and written."""
    published = threading.Event()
    before = len(proxy.scan_names or ())

    def publish() -> None:
        try:
            simulate(options)
        finally:
            published.set()

    def written() -> bool:
        states = [str(state) for state in proxy.scan_states or ()]
        return (published.is_set() and len(states) >= before + options.repeat
                and "ON" not in states)

    publisher = threading.Thread(target=publish, name="bench-publisher")
    started = time.perf_counter()
    publisher.start()
    try:
        ms = sample(lambda: proxy.scan_states, written, 10**7)
    finally:
        publisher.join()
    return ms, time.perf_counter() - started


if __name__ == "__main__":
    raise SystemExit(main())
