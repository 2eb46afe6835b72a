"""Throughput, memory and latency of the NeXus writer next to raw redis-py + h5py.

    python -m tests.benchmarks.bench_writer [--quick] [--redis-url URL]

Without ``--redis-url`` (or the ``REDIS_URL`` environment variable) an embedded
server is started for the run. Files go to a temporary directory; every writer
uses the default :class:`SaveOptions` except ``allowed_roots``. Tables:

1. Drain: 10 float64 channels x N points (1e6, ``--quick`` 1e5) published first,
   in blocks of 100 and of 1000, while no writer listens; then a ``NexusScanWriter``
   writes the ended scan (start to join: file complete). Baseline, measured in the
   same run: redis-py XRANGE of the same entries (pages of 1000, ``np.frombuffer``)
   then h5py writing the 10 arrays chunk-aligned into resizable datasets with the
   writer's chunking. Target (issue): writer / baseline <= 1.25.
2. End-to-end: a ``NexusSessionWriter`` in the main thread, a publisher in another
   thread publishing the same scan as fast as it can; time from the first block
   sent until the writer has finished the file. The established ESRF writer's
   times on this machine (from the issue, not measured here) are printed beside.
3. Memory: peak RSS (``VmHWM``) of a ``NexusSessionWriter`` process writing one
   float64 channel of 1e7 points (``--quick`` 1e6), and of a scan 10x shorter.
4. Latency: one point every 10 ms; a reader thread opens the file
   (``locking=False``) in a loop and notes when each point becomes visible.
   Targets: p50 < 100 ms, p99 < 500 ms. The writer runs in its own process here so
   that the reader sees the file as another program would (an h5py reader in the
   writer's process would share the writer's open HDF5 file and its caches).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from typing import Any, Callable

import gevent
import h5py
import numpy as np
import redis

from nexus_writer_service.data import Publisher, get_scan_node
from nexus_writer_service.data.keys import SessionKeys
from nexus_writer_service.embedded import EmbeddedRedis
from nexus_writer_service.errors import WaitTimeout
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.io.chunking import DEFAULT_CHUNK_BYTES
from nexus_writer_service.io.layout import chunk_rows
from nexus_writer_service.subscribers import NexusScanWriter, NexusSessionWriter

#: The established ESRF writer on this machine, end to end (from the issue).
ESRF_REFERENCE = {100: 4.3, 1000: 1.0}
DRAIN_TARGET = 1.25
LATENCY_TARGETS = (100.0, 500.0)  # ms: p50, p99
PAGE = 1000  # entries per XRANGE page (the reader's batch too)

problems: list[str] = []


def problem(text: str) -> None:
    """Remember a writer problem for the summary and show it at once."""
    problems.append(text)
    print(f"  !! {text}", flush=True)


def channel_path(number: int, channel: str) -> str:
    return f"/{number}.1/instrument/{channel}/data"


def status_path(number: int) -> str:
    return f"/{number}.1/writer/status"


def scan_info(path: str, npoints: int, title: str) -> dict[str, Any]:
    return {"title": title, "filename": path, "npoints": npoints}


def delete_session(client: redis.Redis, session: str) -> None:
    keys = list(client.scan_iter(match=f"{SessionKeys(session).prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])


def check_file(path: str, number: int, data: dict[str, np.ndarray], content: bool) -> str:
    """'' when the file holds every point (and, with ``content``, the right values)."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            status = f[status_path(number)][()]
            status = status.decode() if isinstance(status, bytes) else str(status)
            for name, values in data.items():
                dset = f[channel_path(number, name)]
                if dset.shape[0] != len(values):
                    return f"{name} has {dset.shape[0]} points, {len(values)} sent"
                if content and not np.array_equal(dset[()], values):
                    return f"{name}: the values written differ from those sent"
            if status != "SUCCEEDED":
                return f"writer/status is {status}"
    except (OSError, KeyError) as exc:
        return f"cannot read {path}: {exc}"
    return ""


def publish_all(scan: Any, data: dict[str, np.ndarray], block: int,
                rate: float | None = None) -> None:
    """Send every point in blocks, as fast as possible or at ``rate`` points/s."""
    npoints = len(next(iter(data.values())))
    start = time.perf_counter()
    for s in range(0, npoints, block):
        if rate:
            delay = start + s / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        scan.send({name: values[s:s + block] for name, values in data.items()})


def create_scan(publisher: Publisher, path: str, data: dict[str, np.ndarray], number: int,
                title: str) -> Any:
    npoints = len(next(iter(data.values())))
    scan = publisher.create_scan(scan_info(path, npoints, title), name=title, number=number)
    for name in data:
        scan.add_channel(name, "f8")
    scan.prepare()
    return scan


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def spread(values: list[float], spec: str = ".2f", brackets: str = "()") -> str:
    """``median (min-max)`` of the values that are numbers (not NaN), ``-`` when there
    are none; ``brackets`` around the range."""
    values = [v for v in values if v == v]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, spec)
    low, high = format(min(values), spec), format(max(values), spec)
    return f"{format(med, spec)} {brackets[0]}{low}-{high}{brackets[1]}"


def print_table(title: str, header: list[str], rows: list[list[str]],
                notes: tuple[str, ...] | list[str] = ()) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    print()
    print(title)
    line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in
                     enumerate(zip(header, widths)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(row, widths))))
    for note in notes:
        print(note)
    sys.stdout.flush()


# -- 1. drain ---------------------------------------------------------------------


def raw_read(client: redis.Redis, stream: str) -> dict[bytes, list[np.ndarray]]:
    """XRANGE every entry of ``stream`` in pages of PAGE; the float64 blocks of its
    data entries (packed as a publisher sends them) as arrays, per ``d<channel>``."""
    arrays: dict[bytes, list[np.ndarray]] = {}
    start = "-"
    while True:
        page: list[Any] = client.xrange(stream, min=start, max="+", count=PAGE)  # type: ignore
        for _, fields in page:
            if fields.get(b"t") != b"data":
                continue
            packed = np.frombuffer(fields[b"p"], dtype="f8")
            at = 0
            for item in fields[b"k"].split(b","):
                index, size = item.split(b":")
                n = int(size) // 8
                arrays.setdefault(b"d" + index, []).append(packed[at:at + n])
                at += n
        if len(page) < PAGE:
            return arrays
        last = page[-1][0].decode()
        start = "(" + last


def raw_write(path: str, arrays: dict[bytes, list[np.ndarray]], npoints: int) -> None:
    """h5py: one resizable chunked dataset per channel, written chunk by chunk."""
    rows = chunk_rows(8, DEFAULT_CHUNK_BYTES, npoints)
    with h5py.File(path, "w") as f:
        for field, pieces in arrays.items():
            values = np.concatenate(pieces)
            dset = f.create_dataset(field.decode(), shape=(0,), maxshape=(None,), dtype="f8",
                                    chunks=(rows,))
            for s in range(0, len(values), rows):
                stop = min(s + rows, len(values))
                dset.resize(stop, axis=0)
                dset[s:stop] = values[s:stop]


def drain(url: str, client: redis.Redis, tmp: str, npoints: int, nchannels: int,
          blocks: list[int], timeout: float) -> list[list[str]]:
    rng = np.random.default_rng(0)
    data = {f"ch{i}": rng.random(npoints) for i in range(nchannels)}
    options = SaveOptions(allowed_roots=(tmp,))
    rows = []
    for block in blocks:
        session = f"bench_drain_{block}_{os.getpid()}"
        path = os.path.join(tmp, f"drain_{block}.h5")
        with Publisher(session, url) as publisher:
            scan = create_scan(publisher, path, data, 1, f"drain{block}")
            t0 = time.perf_counter()
            publish_all(scan, data, block)
            scan.end()
            t_pub = time.perf_counter() - t0

        t0 = time.perf_counter()
        arrays = raw_read(client, scan.keys.events)
        t_read = time.perf_counter() - t0
        got = sum(len(p) for pieces in arrays.values() for p in pieces)
        assert got == npoints * nchannels, f"raw XRANGE read {got} points"
        t0 = time.perf_counter()
        raw_write(os.path.join(tmp, f"raw_{block}.h5"), arrays, npoints)
        t_write = time.perf_counter() - t0
        del arrays
        baseline = t_read + t_write

        writer = NexusScanWriter(get_scan_node(scan.key, url), options)
        t0 = time.perf_counter()
        writer.start()
        outcome = ""
        try:
            writer.join(timeout)
        except WaitTimeout:
            done, expected = writer.progress
            outcome = f"TIMEOUT after {timeout:.0f} s ({done}/{expected} points)"
            writer.kill(wait=True, timeout=60)
        t_writer = time.perf_counter() - t0
        if not outcome and (writer.state.value != "OFF" or writer.status.value != "SUCCEEDED"):
            outcome = f"{writer.state.value} {writer.status.value}: {writer.state_reason}"
        if not outcome:
            outcome = check_file(path, 1, data, content=True)
        if outcome:
            problem(f"drain, blocks of {block}: {outcome}")
        delete_session(client, session)
        ratio = t_writer / baseline
        rows.append([
            str(block), f"{npoints * nchannels / 1e6:g}M", fmt(t_pub), fmt(t_read),
            fmt(t_write), fmt(baseline), fmt(t_writer) if not outcome else "FAILED",
            f"{ratio:.2f}x", f"{npoints * nchannels / t_writer / 1e6:.2f}",
            "ok" if ratio <= DRAIN_TARGET and not outcome else "MISSED",
        ])
        print(f"  drain, blocks of {block}: baseline {baseline:.2f} s, writer {t_writer:.2f} s",
              flush=True)
    return rows


# -- 2. end to end ----------------------------------------------------------------


def green_wait(condition: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    """Let the main thread's hub (the writer's greenlets) run until ``condition()``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(step)
    return True


def end_to_end(url: str, client: redis.Redis, tmp: str, npoints: int, nchannels: int,
               blocks: list[int], timeout: float) -> list[list[str]]:
    rng = np.random.default_rng(1)
    data = {f"ch{i}": rng.random(npoints) for i in range(nchannels)}
    options = SaveOptions(allowed_roots=(tmp,))
    rows = []
    for block in blocks:
        session = f"bench_e2e_{block}_{os.getpid()}"
        path = os.path.join(tmp, f"e2e_{block}.h5")
        times: dict[str, float] = {}
        errors: list[BaseException] = []

        def publish() -> None:
            try:
                with Publisher(session, url) as publisher:
                    scan = create_scan(publisher, path, data, 1, f"e2e{block}")
                    times["first"] = time.perf_counter()
                    publish_all(scan, data, block)
                    scan.end()
                    times["published"] = time.perf_counter()
            except BaseException as exc:  # reported below
                errors.append(exc)

        writer = NexusSessionWriter(session, url, options=options)
        writer.start(wait=True, timeout=10)
        outcome = ""
        thread = threading.Thread(target=publish, name=f"publisher-{block}", daemon=True)
        try:
            thread.start()

            def finished() -> bool:
                scans = writer.scans()
                return bool(scans) and all(r.writer.done() for r in scans)

            ok = green_wait(lambda: finished() or (not thread.is_alive() and bool(errors)),
                            timeout)
            t_done = time.perf_counter()
            if errors:
                outcome = f"publisher failed: {errors[0]!r}"
            elif not ok:
                scans = [r.as_dict() for r in writer.scans()]
                outcome = (f"TIMEOUT after {timeout:.0f} s: "
                           + "; ".join(f"{s['state']} {s['points']}/{s['npoints']} points"
                                       for s in scans) or "no scan seen")
            else:
                record = writer.scans()[0]
                if record.state.value != "OFF" or record.writer.status.value != "SUCCEEDED":
                    outcome = (f"{record.state.value} {record.writer.status.value}: "
                               f"{record.writer.state_reason}")
            green_wait(lambda: not thread.is_alive(), 60)
        finally:
            writer.stop(wait=True, timeout=60)
        if writer.state.value == "FAULT":
            problem(f"end to end, blocks of {block}: session writer FAULT: "
                    f"{writer.state_reason}")
        if not outcome:
            outcome = check_file(path, 1, data, content=True)
        if outcome:
            problem(f"end to end, blocks of {block}: {outcome}")
        delete_session(client, session)
        t_pub = times.get("published", float("nan")) - times.get("first", float("nan"))
        t_total = t_done - times.get("first", float("nan"))
        ref = ESRF_REFERENCE.get(block)
        rows.append([
            str(block), f"{npoints * nchannels / 1e6:g}M", fmt(t_pub),
            fmt(t_total) if not outcome else "FAILED",
            f"{npoints * nchannels / t_total / 1e6:.2f}",
            fmt(ref, ".1f") if ref else "-",
            f"{t_total / ref:.2f}x" if ref and not outcome else "-",
        ])
        print(f"  end to end, blocks of {block}: publisher {t_pub:.2f} s, "
              f"file complete after {t_total:.2f} s", flush=True)
    return rows


# -- writer process (3. memory, 4. latency) -----------------------------------------


def proc_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


class WriterProcess:
    """``NexusSessionWriter`` command line in a child process, stopped by its PID."""

    def __init__(self, url: str, session: str, tmp: str,
                 module: str = "nexus_writer_service.cli.session_writer",
                 extra: tuple[str, ...] = ()) -> None:
        self.log = os.path.join(tmp, f"{session}.log")
        self.out = open(os.path.join(tmp, f"{session}.out"), "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, session,
             "--redis-url", url, "--allowed-roots", tmp, "--logfile", self.log,
             "--nologstdout", *extra],
            stdout=self.out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the writer process exited ({self.process.returncode}): "
                                   f"{self.output()}")
            try:
                with open(self.log) as f:
                    if "writing session" in f.read():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the writer process was not ready within {timeout} s")

    def status(self, field: str) -> float:
        """``field`` (VmRSS, VmHWM) of /proc/<pid>/status in MiB."""
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise KeyError(field)

    def cpu_times(self) -> tuple[float, float]:
        """User and system CPU seconds of the process so far."""
        return proc_times(self.process.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process so far."""
        return sum(self.cpu_times())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                problem(f"writer process {self.process.pid} ignored SIGTERM for 60 s: killed")
                self.process.kill()
                self.process.wait(timeout=30)
        self.out.close()
        return self.process.returncode

    def output(self) -> str:
        text = ""
        for name in (self.out.name, self.log):
            try:
                with open(name, errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def errors(self) -> list[str]:
        return [line for line in self.output().splitlines()
                if " ERROR " in line or "Traceback" in line or line.startswith(
                    "NexusSessionWriter: error")]


def wait_file(path: str, number: int, channel: str, npoints: int, timeout: float,
              alive: Callable[[], bool]) -> str:
    """Poll the file until ``channel`` has every point and the status is SUCCEEDED."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        if not alive():
            return "the writer process exited"
        try:
            with h5py.File(path, "r", locking=False) as f:
                seen = f[channel_path(number, channel)].shape[0]
                status = f[status_path(number)][()]
                status = status.decode() if isinstance(status, bytes) else str(status)
                if seen >= npoints and status in ("SUCCEEDED", "FAILED"):
                    return "" if status == "SUCCEEDED" else "writer/status FAILED"
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    return f"TIMEOUT after {timeout:.0f} s ({max(seen, 0)}/{npoints} points in the file)"


def memory(url: str, client: redis.Redis, tmp: str, lengths: list[int], block: int,
           rate: float | None, timeout: float) -> list[list[str]]:
    rows = []
    pace = f"{rate / 1e6:g}M pts/s" if rate else "max"
    for npoints in lengths:
        session = f"bench_mem_{npoints}_{int(rate or 0)}_{os.getpid()}"
        path = os.path.join(tmp, f"mem_{npoints}_{int(rate or 0)}.h5")
        data = {"ch0": np.random.default_rng(2).random(npoints)}
        writer = WriterProcess(url, session, tmp)
        outcome = ""
        idle = end_rss = peak = None
        t_total = None
        try:
            writer.wait_ready()
            idle = writer.status("VmRSS")
            with Publisher(session, url) as publisher:
                scan = create_scan(publisher, path, data, 1, f"mem{npoints}")
                t0 = time.perf_counter()
                publish_all(scan, data, block, rate)
                scan.end()
            outcome = wait_file(path, 1, "ch0", npoints, timeout,
                                lambda: writer.process.poll() is None)
            t_total = time.perf_counter() - t0
            if writer.process.poll() is None:
                end_rss = writer.status("VmRSS")
                peak = writer.status("VmHWM")
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        finally:
            code = writer.stop()
        if code != 0:
            problem(f"memory, {npoints} points: writer process exit status {code}")
        for line in writer.errors():
            problem(f"memory, {npoints} points, writer log: {line}")
        if not outcome:
            outcome = check_file(path, 1, data, content=False)
        if outcome:
            problem(f"memory, {npoints} points: {outcome}")
        delete_session(client, session)
        rows.append([
            f"{npoints:,}", pace, f"{npoints * 8 / 2**20:.0f}", fmt(t_total), fmt(idle, ".0f"),
            fmt(end_rss, ".0f"), fmt(peak, ".0f"),
            fmt(None if peak is None or idle is None else peak - idle, ".0f"),
            "ok" if not outcome else "FAILED",
        ])
        print(f"  memory, {npoints} points ({pace}): peak RSS {fmt(peak, '.0f')} MiB", flush=True)
    return rows


# -- 4. latency -----------------------------------------------------------------------


def latency(url: str, client: redis.Redis, tmp: str, npoints: int, interval: float,
            block: int = 1, stats: dict[str, Any] | None = None) -> list[list[str]]:
    """Send ``block`` points every ``block * interval`` s; with ``stats``, fill it with
    the latencies (ms), the writer's CPU seconds and its peak RSS (MiB)."""
    session = f"bench_latency_{os.getpid()}_{block}_{int(1 / interval)}"
    path = os.path.join(tmp, f"latency_{block}_{int(1 / interval)}.h5")
    dataset = channel_path(1, "ch0")
    sent = np.full(npoints, np.nan)
    visible = np.full(npoints, np.nan)
    stop = threading.Event()
    polls = {"ok": 0, "failed": 0}

    def read() -> None:
        shown = 0
        while shown < npoints and not stop.is_set():
            try:
                with h5py.File(path, "r", locking=False) as f:
                    n = f[dataset].shape[0]
                now = time.perf_counter()
                polls["ok"] += 1
                if n > shown:
                    visible[shown:n] = now
                    shown = n
            except (OSError, KeyError):
                polls["failed"] += 1
            time.sleep(0.001)

    writer = WriterProcess(url, session, tmp)
    reader = threading.Thread(target=read, name="latency-reader", daemon=True)
    outcome = ""
    try:
        writer.wait_ready()
        cpu = writer.cpu_seconds()
        reader.start()
        values = np.random.default_rng(3).random(npoints)
        with Publisher(session, url) as publisher:
            scan = create_scan(publisher, path, {"ch0": values}, 1, "latency")
            start = time.perf_counter()
            for i in range(0, npoints, block):
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent[i:i + block] = time.perf_counter()
                scan.send({"ch0": values[i:i + block]})
            scan.end()
        reader.join(timeout=30)
        if reader.is_alive():
            outcome = "not every point became visible within 30 s"
        if stats is not None and writer.process.poll() is None:
            stats["cpu"] = writer.cpu_seconds() - cpu
            stats["peak"] = writer.status("VmHWM")
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        stop.set()
        reader.join(timeout=30)
        code = writer.stop()
    if code != 0:
        problem(f"latency: writer process exit status {code}")
    for line in writer.errors():
        problem(f"latency, writer log: {line}")
    if outcome:
        problem(f"latency: {outcome}")
    delete_session(client, session)
    lat = (visible - sent)[~np.isnan(visible)] * 1000
    if stats is not None:
        stats["latency"] = lat
        stats["outcome"] = outcome
    if not len(lat):
        return [[str(npoints), f"{interval * 1000:.0f}", "0", "-", "-", "-", "-", "-",
                 f"{polls['ok']}/{polls['failed']}", "FAILED"]]
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    ok = p50 < LATENCY_TARGETS[0] and p99 < LATENCY_TARGETS[1] and len(lat) == npoints
    return [[str(npoints), f"{interval * 1000:.0f}", str(len(lat)), f"{lat.min():.0f}",
             f"{p50:.0f}", f"{p90:.0f}", f"{p99:.0f}", f"{lat.max():.0f}",
             f"{polls['ok']}/{polls['failed']}", "ok" if ok else "MISSED"]]


# -- main -------------------------------------------------------------------------------


def machine_facts(client: redis.Redis) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = client.info("server")
    server = (f"valkey {info['valkey_version']}" if "valkey_version" in info
              else f"redis {info.get('redis_version', '?')}")
    return (f"machine: {os.cpu_count()} CPUs ({cpu}); python {platform.python_version()}; "
            f"h5py {h5py.version.version}; HDF5 {h5py.version.hdf5_version}; "
            f"numpy {np.__version__}; redis-py {redis.__version__}; server {server}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer points")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                        help="use this server instead of an embedded one")
    parser.add_argument("--parts", default="1234", help="which tables to make (default 1234)")
    args = parser.parse_args(argv)
    quick = args.quick
    npoints = 100_000 if quick else 1_000_000
    long_scan = 1_000_000 if quick else 10_000_000
    nchannels = 10
    blocks = [100, 1000]
    timeout = 120.0 if quick else 240.0
    t_start = time.perf_counter()
    with ExitStack() as stack:
        url = args.redis_url
        if not url:
            url = stack.enter_context(EmbeddedRedis()).url + "/0"
        client = redis.Redis.from_url(url)
        stack.callback(client.close)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_writer_"))
        print(machine_facts(client))
        print(f"mode: {'quick' if quick else 'full'}; SaveOptions defaults "
              f"(chunk_bytes {DEFAULT_CHUNK_BYTES}, flush_period "
              f"{SaveOptions().flush_period} s) except allowed_roots", flush=True)
        if "1" in args.parts:
            rows = drain(url, client, tmp, npoints, nchannels, blocks, timeout)
            print_table(
                f"1. Drain: {nchannels} float64 channels x {npoints:,} points, scan published "
                "and ended before the writer starts (seconds)",
                ["block", "total points", "publish", "raw XRANGE", "raw h5py", "baseline",
                 "writer", "writer/baseline", "writer Mpts/s", "target<=1.25"], rows,
                [("baseline = raw XRANGE (pages of 1000 entries, np.frombuffer) + raw h5py "
                  "(resizable datasets, writer's chunking, chunk by chunk), one after the "
                  "other;"),
                 ("writer = NexusScanWriter.start() to join() (file complete, status "
                  "SUCCEEDED); 'publish' is shown for information only.")])
        if "2" in args.parts:
            rows = end_to_end(url, client, tmp, npoints, nchannels, blocks, timeout)
            print_table(
                f"2. End to end: {nchannels} float64 channels x {npoints:,} points, "
                "publisher thread + NexusSessionWriter in the main thread (seconds)",
                ["block", "total points", "publisher only", "first block -> file complete",
                 "Mpts/s", "ESRF writer (ref)", "vs ref"], rows,
                [("ESRF writer (ref): the issue's numbers for the established ESRF writer on "
                  "this machine, full size (1e6 points), not measured here.")])
        if "3" in args.parts:
            rows = []
            for rate in (None, 500_000.0):
                rows += memory(url, client, tmp, [long_scan // 10, long_scan], 1000, rate,
                               timeout * 2)
            print_table(
                "3. Memory: NexusSessionWriter process, 1 float64 channel, blocks of 1000",
                ["points", "publish pace", "data MiB", "publish -> file complete s", "idle RSS MiB",
                 "RSS at end MiB", "peak RSS (VmHWM) MiB", "peak - idle MiB", "result"],
                rows, [("pace 'max': published as fast as possible (a writer that lags "
                        "holds its backlog in memory); '0.5M pts/s': paced below the "
                        "writer's speed."),
                       ("One fresh writer process per row; RSS read from /proc/<pid>/status "
                        "just before SIGTERM.")])
        if "4" in args.parts:
            n = 100 if quick else 300
            rows = latency(url, client, tmp, n, 0.010)
            print_table(
                "4. Latency: one point every 10 ms, from send to visible to a reader "
                "(h5py, locking=False, one open per poll) in milliseconds",
                ["points", "interval ms", "seen", "min", "p50", "p90", "p99", "max",
                 "polls ok/failed", "target p50<100 p99<500"], rows)
    print()
    print(f"total time {time.perf_counter() - t_start:.0f} s")
    if problems:
        print(f"{len(problems)} problem(s) seen:")
        for text in problems:
            print(f"  - {text}")
        return 1
    print("no writer problem seen")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
