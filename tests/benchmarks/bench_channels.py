"""Benchmark of channels against raw redis-py, measured in the same run.

    python -m tests.benchmarks.bench_channels [--redis-url URL] [--samples N]

Without ``--redis-url`` an embedded server is started. Latencies are one-way, from
the set (or PUBLISH) in this process to the callback in a child process, using the
host's monotonic clock (shared by processes on one machine). Sustained sets/s count
the sets made in ``--seconds`` and end when Redis has confirmed them all (``flush``),
next to raw redis-py ``SET`` (one round trip each). Events/s delivered: from the first
``post_many`` here to the last of ``--events`` events received by a child process,
which also reports how many events it lost (must be 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
import uuid

import redis

from channels import Channel, EventChannel

_CHILD_CHANNEL = """
import json, sys, time, threading
from channels import Channel
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lat = []
done = threading.Event()
def cb(value):
    lat.append(time.monotonic_ns() - value)
    if len(lat) >= n:
        done.set()
c = Channel(name, redis_url=url, callback=cb)
print("ready", flush=True)
done.wait(120)
c.close()
print(json.dumps(lat), flush=True)
"""

_CHILD_EVENTS = """
import json, sys, time, threading
from channels import EventChannel
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = [0]
done = threading.Event()
def receive(events):
    count[0] += len(events)
    if count[0] >= n:
        done.set()
rx = EventChannel(name, redis_url=url)
rx.register_callback(receive)
print("ready", flush=True)
done.wait(120)
end = time.monotonic_ns()
lost = rx.lost_events
rx.close()
print(json.dumps([end, count[0], lost]), flush=True)
"""

_CHILD_RAW = """
import json, sys, time, redis
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = redis.Redis.from_url(url)
p = r.pubsub(ignore_subscribe_messages=True)
p.subscribe(name)
while p.get_message(timeout=1) is None and not p.subscribed:
    pass
print("ready", flush=True)
lat = []
while len(lat) < n:
    m = p.get_message(timeout=10)
    if m is not None:
        lat.append(time.monotonic_ns() - int(m["data"]))
print(json.dumps(lat), flush=True)
"""


def _child(code: str, url: str, name: str, n: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), url, name, str(n)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("benchmark child failed to start")
    return proc


def _collect(proc: subprocess.Popen[str]) -> list[float]:
    out, _ = proc.communicate(timeout=180)
    return [ns / 1e6 for ns in json.loads(out.strip().splitlines()[-1])]


def _percentiles(lat: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(lat, n=100)
    return statistics.median(lat), q[98]


def bench_channel_latency(url: str, n: int) -> tuple[float, float]:
    name = f"bench-{uuid.uuid4().hex}"
    with Channel(name, redis_url=url, value=0) as c:
        proc = _child(_CHILD_CHANNEL, url, name, n)
        for _ in range(n):
            c.value = time.monotonic_ns()
            time.sleep(0.0005)
        return _percentiles(_collect(proc))


def bench_raw_latency(url: str, n: int) -> tuple[float, float]:
    name = f"bench-raw-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(url)
    try:
        proc = _child(_CHILD_RAW, url, name, n)
        for _ in range(n):
            client.publish(name, time.monotonic_ns())
            time.sleep(0.0005)
        return _percentiles(_collect(proc))
    finally:
        client.close()


def bench_sets(url: str, seconds: float) -> tuple[float, float]:
    name = f"bench-sets-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(url)
    try:
        with Channel(name, redis_url=url) as c:
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                c.value = count
                count += 1
            c.flush()  # counted only once Redis has them all
            sets = count / (time.perf_counter() - start)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            client.set(name, count)
            count += 1
        raw = count / (time.perf_counter() - start)
    finally:
        client.close()
    return sets, raw


def bench_events(url: str, total: int) -> tuple[float, float, int]:
    """Post ``total`` events in blocks of 1000; a receiver in a child process counts them.

    Delivered events/s: from the first post to the child holding all ``total`` events
    (host monotonic clock). The sender keeps the default ``maxlen``, smaller than
    ``total``: a connected receiver must lose nothing anyway.
    """
    name = f"bench-events-{uuid.uuid4().hex}"
    proc = _child(_CHILD_EVENTS, url, name, total)
    try:
        with EventChannel(name, redis_url=url) as tx:
            batch = list(range(1000))
            start_ns = time.monotonic_ns()
            for _ in range(total // 1000):
                tx.post_many(batch)
            posted = total / ((time.monotonic_ns() - start_ns) / 1e9)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    done_ns, received, lost = json.loads(out.strip().splitlines()[-1])
    delivered = received / ((done_ns - start_ns) / 1e9)
    return posted, delivered, lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args(argv)
    server = None
    url = args.redis_url
    if url is None:
        from nexus_writer_service.embedded import EmbeddedRedis

        server = EmbeddedRedis().start()
        url = server.url + "/0"
    try:
        ch50, ch99 = bench_channel_latency(url, args.samples)
        raw50, raw99 = bench_raw_latency(url, args.samples)
        sets, raw_sets = bench_sets(url, args.seconds)
        posted, delivered, lost = bench_events(url, args.events)
    finally:
        if server is not None:
            server.cleanup()
    rows = [
        ("set -> callback in other process, p50", f"{ch50:.3f} ms", f"{raw50:.3f} ms",
         "< 1 ms"),
        ("set -> callback in other process, p99", f"{ch99:.3f} ms", f"{raw99:.3f} ms",
         "< 5 ms"),
        ("sustained sets/s (one process)", f"{sets:,.0f}", f"{raw_sets:,.0f}", "10,000"),
        ("EventChannel events/s posted (post_many)", f"{posted:,.0f}", "", ""),
        ("EventChannel events/s delivered (other process)", f"{delivered:,.0f}", "",
         "100,000"),
        ("EventChannel events lost by the receiver", f"{lost}", "", "0"),
    ]
    header = ("measure", "channels", "raw redis-py", "target")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
