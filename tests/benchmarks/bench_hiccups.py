"""What a dropped Redis connection costs the command-line writer.

    python -m tests.benchmarks.bench_hiccups [--points N] [--drops N]

Starts an embedded Redis and ``NexusSessionWriter`` as a child process, then publishes
a loopscan one point at a time: each point is sent, and the time until a reader
without locking sees it in the file is measured. After every ``points / drops``
points, the writer's connections are dropped (``CLIENT KILL``, Redis stays up) right
after the point is sent. The table compares the latency of the points sent with a drop
against the others, measured in the same run. Target (issue): a dropped connection
costs less than 1 s of delay, and no data.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import redis

from nexus_writer_service.data import Publisher
from nexus_writer_service.embedded import EmbeddedRedis

TARGET_S = 1.0
_TIME = "timer:elapsed_time"


def _visible(filename: Path) -> int:
    try:
        with h5py.File(filename, "r", locking=False) as h5:
            return int(h5["1.1/measurement/elapsed_time"].shape[0])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        return -1


def _drop(client: redis.Redis, pid: int) -> int:
    dropped = 0
    for connection in client.client_list():
        if connection.get("name") == f"nexus_writer_service:{pid}":
            dropped += int(client.client_kill_filter(_id=connection["id"]))
    return dropped


def _wait_visible(filename: Path, count: int, timeout: float = 30.0) -> float:
    started = time.perf_counter()
    while _visible(filename) < count:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"point {count} not in the file after {timeout} s")
        time.sleep(0.002)
    return time.perf_counter() - started


def run(points: int, drops: int, work: Path) -> tuple[list[float], list[float]]:
    redis_server = EmbeddedRedis(workdir=work / "redis")
    redis_server.start()
    url = redis_server.url + "/0"
    filename = work / "data" / "hiccups.h5"
    writer = subprocess.Popen(
        [sys.executable, "-m", "nexus_writer_service.cli.session_writer", "hiccups",
         "--redis-url", url, "--allowed-roots", str(work / "data"), "--flush-period",
         "0.01", "--log", "warning"])
    admin = redis.Redis.from_url(url)
    normal: list[float] = []
    dropped: list[float] = []
    try:
        deadline = time.monotonic() + 30
        while b"nexus_writer" not in admin.smembers("nws:hiccups:readers"):
            assert time.monotonic() < deadline, "the writer did not register"
            time.sleep(0.05)
        every = max(1, points // max(1, drops))
        with Publisher("hiccups", url) as publisher:
            scan = publisher.create_scan(
                {"title": f"loopscan {points} 0", "npoints": points,
                 "filename": str(filename),
                 "acquisition_chain": {"timer": {"master": {"scalars": [_TIME]}}}},
                name="loopscan", number=1)
            scan.add_channel(_TIME, "float64", subscan="timer", unit="s")
            scan.prepare()
            for index in range(points):
                scan.send({_TIME: np.array([float(index)])})
                drop = index % every == every // 2
                if drop:
                    assert _drop(admin, writer.pid) >= 1, "no connection of the writer seen"
                (dropped if drop else normal).append(_wait_visible(filename, index + 1))
            scan.end()
        assert writer.poll() is None, "the writer exited"
    finally:
        writer.terminate()
        writer.wait(30)
        admin.close()
        redis_server.cleanup()
    return normal, dropped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_hiccups",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--drops", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_hiccups_") as tmp:
        normal, dropped = run(args.points, args.drops, Path(tmp))
    print(f"\nsend -> visible to a reader, {args.points} points, {len(dropped)} with the "
          "writer's connections dropped")
    print(f"{'points':<34}{'n':>5}{'p50 ms':>10}{'p90 ms':>10}{'max ms':>10}")
    for label, values in (("no drop (baseline)", normal), ("connections dropped", dropped)):
        ms = np.array(values) * 1e3
        print(f"{label:<34}{len(ms):>5}{np.median(ms):>10.1f}{np.percentile(ms, 90):>10.1f}"
              f"{ms.max():>10.1f}")
    cost = max(dropped) - float(np.median(normal))
    verdict = "met" if cost < TARGET_S else "missed"
    print(f"\nworst cost of a drop over the baseline median: {cost * 1e3:.0f} ms "
          f"(target < {TARGET_S * 1e3:.0f} ms: {verdict}); every point written: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
