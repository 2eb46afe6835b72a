"""Throughput of the scan data layer next to raw redis-py moving the same bytes.

    python -m tests.benchmarks.bench_data [--points 1000000] [--block 100]
                                          [--channels 10] [--redis-url URL]

Without ``--redis-url`` an embedded Valkey server is started for the run. Rows:

* raw XADD (pipelined): redis-py XADD of the same entries (one field per channel,
  raw float64 bytes), sent in pipelines of 100 entries: the floor for publishing.
* raw XADD (1 round trip each): the same, one round trip per block, as a publisher
  that makes each block visible at once must do.
* publisher: ``ScanPublisher.send`` per block (encoding, checks, one round trip).
* raw XREAD: redis-py XREAD COUNT 1000 of the whole stream plus ``np.frombuffer``.
* reader: ``ScanNode.walk_events`` draining the scan, one NEW_DATA per channel block.
* reader (merge_blocks): the same with ``merge_blocks=True``, as the NeXus writer reads.

``CPU s`` is this process's CPU time (``time.process_time``) for the row: the Redis
server runs in another process, so it is the client's cost alone, less noisy than
wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from typing import Callable

import numpy as np
import redis

from nexus_writer_service.data import EventType, Publisher, get_scan_node
from nexus_writer_service.embedded import EmbeddedRedis


Row = tuple[str, float, float]


def _timed(name: str, func: Callable[[], object]) -> Row:
    """``(name, wall seconds, CPU seconds of this process)`` of one call."""
    cpu = time.process_time()
    t0 = time.perf_counter()
    func()
    return name, time.perf_counter() - t0, time.process_time() - cpu


def run(redis_url: str, npoints: int, block: int, nchannels: int) -> list[Row]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    rng = np.random.default_rng(0)
    data = {f"ch{i}": rng.random(npoints) for i in range(nchannels)}
    starts = range(0, npoints, block)
    entries = [
        {b"t": b"data", **{f"d{i}".encode(): data[f"ch{i}"][s:s + block].tobytes()
                           for i in range(nchannels)},
         **{f"f{i}".encode(): str(s).encode() for i in range(nchannels)}}
        for s in starts
    ]

    def raw_pipelined() -> None:
        pipe = client.pipeline(transaction=False)
        for n, fields in enumerate(entries, 1):
            pipe.xadd("raw:pipelined", fields)
            if n % 100 == 0:
                pipe.execute()
        pipe.execute()

    def raw_each() -> None:
        for fields in entries:
            client.xadd("raw:each", fields)

    def raw_read() -> None:
        position = "0-0"
        total = 0
        while True:
            reply = client.xread({"raw:each": position}, count=1000)
            if not reply:
                break
            for entry_id, fields in reply[0][1]:
                for i in range(nchannels):
                    total += len(np.frombuffer(fields[f"d{i}".encode()], dtype="f8"))
                position = entry_id
        assert total == npoints * nchannels

    rows = [_timed("raw XADD (pipelined)", raw_pipelined),
            _timed("raw XADD (1 round trip each)", raw_each)]

    with Publisher("bench", redis_url, retention=0) as publisher:
        scan = publisher.create_scan({"title": "bench"})
        for name in data:
            scan.add_channel(name, "f8")
        scan.prepare()

        def publish() -> None:
            for s in starts:
                scan.send({name: values[s:s + block] for name, values in data.items()})

        rows.append(_timed("publisher", publish))
        scan.end()

    node = get_scan_node(scan.key, redis_url)

    def drain(merge_blocks: bool = False) -> None:
        total = 0
        for event, _, event_data in node.walk_events(timeout=30, merge_blocks=merge_blocks):
            if event is EventType.NEW_DATA:
                total += len(event_data.data)
        assert total == npoints * nchannels

    rows.append(_timed("raw XREAD + frombuffer", raw_read))
    rows.append(_timed("reader (walk_events)", drain))
    rows.append(_timed("reader (merge_blocks)", lambda: drain(merge_blocks=True)))
    client.flushdb()
    client.close()
    return rows


def print_table(rows: list[Row], total_points: int, nbytes: int, title: str) -> None:
    """One line per row; ``vs raw`` compares wall and CPU time with the raw row."""
    baselines = {"publisher": "raw XADD (pipelined)",
                 "reader (walk_events)": "raw XREAD + frombuffer",
                 "reader (merge_blocks)": "raw XREAD + frombuffer"}
    by_name = {name: (wall, cpu) for name, wall, cpu in rows}
    print(title)
    print(f"{'operation':32} {'seconds':>8} {'Mpoints/s':>10} {'MB/s':>8} {'vs raw':>7} "
          f"{'CPU s':>7} {'CPU s/Mpts':>10} {'CPU vs raw':>10}")
    for name, seconds, cpu in rows:
        ratio = cpu_ratio = ""
        if name in baselines:
            base_wall, base_cpu = by_name[baselines[name]]
            ratio = f"{seconds / base_wall:.2f}x"
            cpu_ratio = f"{cpu / base_cpu:.2f}x" if base_cpu else ""
        print(f"{name:32} {seconds:8.3f} {total_points / seconds / 1e6:10.2f} "
              f"{nbytes / seconds / 1e6:8.1f} {ratio:>7} {cpu:7.3f} "
              f"{cpu / total_points * 1e6:10.3f} {cpu_ratio:>10}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="points per channel")
    parser.add_argument("--block", type=int, default=100, help="points per block")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--redis-url", help="use this server instead of an embedded one")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        url = args.redis_url
        if not url:
            url = stack.enter_context(EmbeddedRedis()).url + "/0"
        rows = run(url, args.points, args.block, args.channels)
    total = args.points * args.channels
    print_table(rows, total, total * 8,
                f"0D float64: {args.channels} channels x {args.points} points, "
                f"blocks of {args.block}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
