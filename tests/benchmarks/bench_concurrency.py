"""Benchmark of the cross-thread primitives against their standard baselines.

Run with ``python -m tests.benchmarks.bench_concurrency [--items N] [--rounds N]``.
Every baseline is measured in the same run as the primitive it is compared with:

* ``Queue`` throughput across two threads next to ``queue.Queue`` and
  ``gevent.queue.Queue`` used from one thread (target: within 3x of ``queue.Queue``);
* ``Launcher.apply`` round-trip latency next to a bare ``threading.Event`` ping-pong
  between two threads (target: median under 100 µs).
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time
from typing import Callable, List, Tuple

import gevent.queue

from nexus_writer_service.concurrency import Queue, Thread

Row = Tuple[str, str, str, str]


def _same_thread(q: object, items: int) -> float:
    put: Callable[[int], None] = getattr(q, "put")
    get: Callable[[], int] = getattr(q, "get")
    start = time.perf_counter()
    for index in range(items):
        put(index)
    for _ in range(items):
        get()
    return items / (time.perf_counter() - start)


def _stdlib_cross_thread(items: int) -> float:
    q: "queue.Queue[int]" = queue.Queue()

    def produce() -> None:
        for index in range(items):
            q.put(index)

    producer = threading.Thread(target=produce)
    start = time.perf_counter()
    producer.start()
    try:
        for _ in range(items):
            q.get(timeout=30)
    finally:
        producer.join(30)
    return items / (time.perf_counter() - start)


def _queue_cross_thread(items: int, worker: Thread) -> float:
    q: Queue[int] = Queue()

    def produce() -> None:
        for index in range(items):
            q.put(index)

    start = time.perf_counter()
    produced = worker.apply_async(produce)
    for _ in range(items):
        q.get(timeout=30)
    produced.get(timeout=30)
    return items / (time.perf_counter() - start)


def _percentiles(samples: List[float]) -> Tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e6, p99 * 1e6


def _event_ping_pong(rounds: int) -> Tuple[float, float]:
    ping, pong = threading.Event(), threading.Event()
    stop = False

    def answer() -> None:
        while True:
            ping.wait(30)
            ping.clear()
            if stop:
                return
            pong.set()

    responder = threading.Thread(target=answer)
    responder.start()
    samples: List[float] = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            ping.set()
            pong.wait(30)
            pong.clear()
            samples.append(time.perf_counter() - start)
    finally:
        stop = True
        ping.set()
        responder.join(30)
    return _percentiles(samples)


def _launcher_round_trip(rounds: int, worker: Thread) -> Tuple[float, float]:
    samples: List[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        worker.apply(int)
        samples.append(time.perf_counter() - start)
    return _percentiles(samples)


def _throughput_rows(items: int, worker: Thread) -> List[Row]:
    stdlib = _same_thread(queue.Queue(), items)
    rows = [
        ("queue.Queue, one thread (baseline)", stdlib),
        ("gevent.queue.Queue, one thread", _same_thread(gevent.queue.Queue(), items)),
        ("Queue, one thread", _same_thread(Queue(), items)),
        ("queue.Queue, two threads", _stdlib_cross_thread(items)),
        ("Queue, two threads", _queue_cross_thread(items, worker)),
    ]
    return [
        (name, f"{rate / 1e3:,.0f} k items/s", f"{stdlib / rate:.2f}x baseline time", "")
        for name, rate in rows
    ]


def _latency_rows(rounds: int, worker: Thread) -> List[Row]:
    event_median, event_p99 = _event_ping_pong(rounds)
    launcher_median, launcher_p99 = _launcher_round_trip(rounds, worker)
    return [
        ("threading.Event ping-pong (baseline)", f"{event_median:.1f} µs", f"{event_p99:.1f} µs",
         ""),
        ("Launcher.apply round trip", f"{launcher_median:.1f} µs", f"{launcher_p99:.1f} µs",
         f"{launcher_median / event_median:.2f}x baseline median"),
    ]


def _print_table(title: str, header: Row, rows: List[Row]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000, help="items per queue run")
    parser.add_argument("--rounds", type=int, default=5_000, help="round trips per latency run")
    args = parser.parse_args(argv)
    worker = Thread(name="bench-worker")
    worker.start(timeout=10)
    try:
        worker.apply(int)
        throughput = _throughput_rows(args.items, worker)
        latency = _latency_rows(args.rounds, worker)
    finally:
        worker.stop(timeout=10)
    _print_table(
        f"Queue throughput ({args.items:,} items)", ("queue", "throughput", "time ratio", ""),
        throughput,
    )
    _print_table(
        f"Round-trip latency ({args.rounds:,} rounds)", ("mechanism", "median", "p99", "ratio"),
        latency,
    )


if __name__ == "__main__":
    main()
