"""What Redis durability costs the publisher: the append-only file's fsync policy,
and WAITAOF.

    python -m tests.benchmarks.bench_durability [--entries N] [--repeat N]

For each setting, an embedded Valkey is started with its working directory in
``--dir`` (default: a temporary directory; give a directory on the disk the data
Redis will use, since fsync costs what that disk costs), and one publisher sends
``--entries`` data entries of 10 float64 channels, in blocks of 100 points (a fast
scan) and of 1 point (a step scan). The baseline, in the same run, is Redis without
an append-only file. WAITAOF rows: after each entry (``WAITAOF 1 0``: wait until
this connection's writes are fsynced on the server), measured with raw commands
on one connection, and once at the end of the scan.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from nexus_writer_service.data import Publisher
from nexus_writer_service.embedded import EmbeddedRedis
from tests.benchmarks.bench_writer import print_table

SETTINGS = [("no AOF (baseline)", {"appendonly": "no"}),
            ("appendfsync no", {"appendonly": "yes", "appendfsync": "no"}),
            ("appendfsync everysec", {"appendonly": "yes", "appendfsync": "everysec"}),
            ("appendfsync always", {"appendonly": "yes", "appendfsync": "always"})]
CHANNELS = 10


def _publish(url: str, entries: int, block: int, wait_end: bool) -> float:
    data = {f"c{c}": np.arange(block, dtype=np.float64) for c in range(CHANNELS)}
    with Publisher("durability", url, lease=30, retention=5) as publisher:
        scan = publisher.create_scan({"title": "durability"})
        for c in range(CHANNELS):
            scan.add_channel(f"c{c}", "float64")
        started = time.perf_counter()
        for _ in range(entries):
            scan.send(data)
        scan.end()
        if wait_end:
            publisher._client.execute_command("WAITAOF", 1, 0, 10_000)
        return time.perf_counter() - started


def _waitaof_each(url: str, entries: int, block: int) -> float:
    client = redis.Redis.from_url(url)
    payload = np.arange(block * CHANNELS, dtype=np.float64).tobytes()
    started = time.perf_counter()
    for _ in range(entries):
        client.xadd("durability:raw", {"p": payload})
        client.execute_command("WAITAOF", 1, 0, 10_000)
    elapsed = time.perf_counter() - started
    client.delete("durability:raw")
    client.close()
    return elapsed


def _filesystem(path: Path) -> str:
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True,
                             check=True).stdout.splitlines()[-1].split()
        return f"{out[1]} ({out[0]})"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    base = args.dir or Path(tempfile.mkdtemp(prefix="nws-durability-"))
    print(f"AOF directory on {_filesystem(base)}; {args.entries} entries of {CHANNELS} "
          f"float64 channels; medians of {args.repeat} runs")
    rows: list[list[Any]] = []
    baseline: dict[int, float] = {}
    for label, config in SETTINGS:
        workdir = base / label.split()[-1].strip("()")
        with EmbeddedRedis(workdir=workdir, config=config) as server:
            url = server.url + "/0"
            tests: list[tuple[str, int, Any]] = [
                ("publisher", 100, lambda b: _publish(url, args.entries, b, False)),
                ("publisher", 1, lambda b: _publish(url, args.entries, b, False))]
            if config.get("appendfsync") in ("everysec", "always"):
                tests += [("publisher + WAITAOF at end", 100,
                           lambda b: _publish(url, args.entries, b, True)),
                          ("raw XADD + WAITAOF each", 1,
                           lambda b: _waitaof_each(url, args.entries // 10, b) * 10)]
            for what, block, run in tests:
                wall = statistics.median(run(block) for _ in range(args.repeat))
                if label.startswith("no AOF"):
                    baseline[block] = wall
                npoints = args.entries * block * CHANNELS
                ratio = wall / baseline[block] if block in baseline else float("nan")
                rows.append([label, what, str(block), f"{wall:.3f}",
                             f"{npoints / wall / 1e6:.2f}", f"{args.entries / wall:,.0f}",
                             f"{ratio:.2f}x"])
    print_table("Publish throughput by durability setting",
                ["setting", "what", "points/block", "wall s", "Mpts/s", "entries/s",
                 "vs baseline"], rows)
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
