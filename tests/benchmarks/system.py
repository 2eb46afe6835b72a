"""Whole-system scenarios of ``python -m tests.benchmarks`` (see ``__main__``).

Every scenario runs against real servers; the writer runs in a process of its own
(:mod:`tests.benchmarks.writer_proc`, the ``NexusSessionWriter`` command plus JSON
status lines; the Tango device server for scenario 7), a fresh one per measured row,
so its CPU time (``/proc/<pid>/stat`` utime + stime, read before and after) and its
peak RSS (``VmHWM``) belong to that row. Each scenario returns nothing and prints
one table; verdicts also go to :attr:`Context.summary`.

Conventions: *points* are values per channel times channels (one MCA spectrum is one
point); MB is 10**6 bytes of payload; a ratio is this row's wall time over the wall
time of the row it names; ``CPU s/Mpts`` is CPU seconds per million points.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import h5py
import numpy as np
import redis
import tango

from tango_devices.process import device_proxy
from nexus_writer_service.data import Publisher, ScanPublisher, get_session_node
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.simulation.lima import LimaFileWriter
from nexus_writer_service.simulation.plan import LimaSpec

from . import baselines
from .baselines import Timing, blocks, timed
from .tango_servers import PERIOD, running_device, sample
from .bench_writer import (
    WriterProcess, channel_path, check_file, create_scan, delete_session, print_table,
    proc_times, publish_all, raw_read, raw_write, scan_info, status_path)
from .bench_writer import latency as writer_latency

READER = "nexus_writer"
MiB = 1 << 20


def log(text: str) -> None:
    """Progress for people: stderr, so that stdout holds the tables only."""
    print(f"  .. {text}", file=sys.stderr, flush=True)


@dataclass
class Context:
    url: str
    client: redis.Redis
    tmp: str
    quick: bool
    #: runs of each measure of scenarios 1 and 2, whose medians are shown
    repeat: int = 5
    #: seconds of the compressed MCA scenario (None: its default)
    mca_seconds: float | None = None
    #: scenario 1 with 1e7 points per channel (1e8 in all, 800 MB)
    big: bool = False
    #: ESRF's blisswriter 3.0 command, for scenario 13 (None: BLISSWRITER, else the PATH)
    blisswriter: str | None = None
    summary: list[tuple[str, str, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def verdict(self, scenario: str, figure: str, target: str, ok: bool) -> str:
        self.summary.append((scenario, figure, target, "met" if ok else "MISSED"))
        return f"{scenario}: target {target}: {'met' if ok else 'MISSED'} ({figure})"

    def problem(self, text: str) -> None:
        self.problems.append(text)
        log(f"PROBLEM: {text}")

    def session(self, label: str) -> str:
        return f"sys_{label}_{os.getpid()}"


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    return sum(proc_times(pid))


def writer_timing(wall: float, writer: WriterProcess, before: tuple[float, float]
                  ) -> Timing:
    """``wall``, and the CPU (and system) seconds ``writer`` used since ``before``
    (its :meth:`~WriterProcess.cpu_times` then)."""
    user, kernel = (now - then for now, then in zip(writer.cpu_times(), before))
    return Timing(wall, user + kernel, kernel)


def proc_status(pid: int, name: str) -> float:
    """``name`` (VmHWM, VmRSS) of /proc/<pid>/status in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(name)


# -- the writer process -------------------------------------------------------------


class Writer(WriterProcess):
    """:mod:`tests.benchmarks.writer_proc` in a child process, stopped by its PID."""

    def __init__(self, ctx: Context, session: str, wait_signal: bool = False,
                 options: tuple[str, ...] = ()) -> None:
        """``options``: more command-line options (save options: ``--compression``)."""
        self.status_file = os.path.join(ctx.tmp, f"{session}.status")
        extra = (("--status", self.status_file) + (("--wait-signal",) if wait_signal else ())
                 + options)
        super().__init__(ctx.url, session, ctx.tmp, module="tests.benchmarks.writer_proc",
                         extra=extra)

    def lines(self) -> list[dict[str, Any]]:
        try:
            with open(self.status_file) as f:
                text = f.read()
        except OSError:
            return []
        return [json.loads(line) for line in text.splitlines()
                if line.endswith("}")]

    def wait_event(self, event: str, timeout: float, count: int = 1) -> list[dict[str, Any]]:
        """The first ``count`` status lines of kind ``event``, waiting for them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines() if line["event"] == event]
            if len(found) >= count:
                return found[:count]
            if self.process.poll() is not None:
                raise RuntimeError(f"the writer process exited ({self.process.returncode}) "
                                   f"before '{event}': {self.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no '{event}' x{count} from the writer within {timeout} s")
            time.sleep(0.005)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_event("ready", timeout)

    def go(self) -> None:
        os.kill(self.process.pid, signal.SIGUSR1)

    def peak(self) -> float:
        return self.status("VmHWM")

    def backlog(self) -> tuple[float, float]:
        """Largest (events, MiB) read from Redis and not yet written, all scans summed."""
        events = size = 0.0
        for line in self.lines():
            if line["event"] == "sample":
                events = max(events, sum(s["backlog_events"] for s in line["scans"]))
                size = max(size, sum(s["backlog_bytes"] for s in line["scans"]) / MiB)
        return events, size


def finish(ctx: Context, writer: Writer, what: str) -> None:
    """Stop ``writer`` and report whatever went wrong in it."""
    code = writer.stop()
    if code != 0:
        ctx.problem(f"{what}: writer process exit status {code}")
    for line in writer.errors()[:5]:
        ctx.problem(f"{what}, writer log: {line}")


# -- tables ----------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    name: str
    points: int
    nbytes: int
    wall: float | None
    cpu: float | None = None
    rss: float | None = None
    base: str | None = None
    cpu_ref: str | None = None  # raw h5py row for the CPU ratio (default: the table's)


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def print_rows(title: str, rows: list[Row], cpu_base: str | None,
               notes: list[str]) -> None:
    """One table: every row against the row it names (``base``) and, for CPU time,
    against the raw h5py row ``cpu_base``."""
    by_key = {row.key: row for row in rows}
    lines = []
    for row in rows:
        ref = by_key.get(row.cpu_ref or cpu_base or "")
        ref_cpu = ref.cpu / ref.points * 1e6 if ref and ref.cpu is not None else None
        base = by_key.get(row.base or "")
        ratio = (row.wall / base.wall if base and base.wall and row.wall is not None
                 else None)
        cpu_mpts = row.cpu / row.points * 1e6 if row.cpu is not None else None
        lines.append([
            f"({row.key}) {row.name}", f"{row.points:,}", f"{row.nbytes / 1e6:.0f}",
            fmt(row.wall, ".3f"),
            fmt(row.points / row.wall / 1e6 if row.wall else None),
            fmt(row.nbytes / row.wall / 1e6 if row.wall else None, ".0f"),
            f"{ratio:.2f}x vs ({base.key})" if ratio is not None and base else "-",
            fmt(cpu_mpts, ".3f"),
            fmt(cpu_mpts / ref_cpu if cpu_mpts is not None and ref_cpu and row is not ref
                else None) + ("x" if cpu_mpts is not None and ref_cpu and row is not ref
                              else ""),
            fmt(row.rss, ".0f"),
        ])
    print_table(title, ["measure", "points", "MB", "wall s", "Mpts/s", "MB/s", "ratio",
                        "CPU s/Mpts", "CPU/h5py", "peak RSS MiB"], lines, notes)


def scaled(ctx: Context) -> str:
    return " [--quick: sizes 1/10 of the issue's]" if ctx.quick else ""


# -- 0D scans (scenarios 1, 2, 6) -----------------------------------------------------


def split(timing: Timing | None) -> str:
    """``user + system s`` of a measure, ``-`` when not known."""
    if timing is None or timing.sys is None or timing.cpu != timing.cpu:
        return "-"
    return f"{timing.cpu - timing.sys:.2f} + {timing.sys:.2f} s"


def zero_d_data(nchannels: int, npoints: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"ch{i}": rng.random(npoints) for i in range(nchannels)}


def raw_entries(data: dict[str, np.ndarray], block: int) -> Iterator[dict[bytes, bytes]]:
    """The stream entries a raw producer would send: one per block, the raw bytes of
    every channel in one field (as few values per entry as a publisher sends)."""
    npoints = len(next(iter(data.values())))
    for s, e in blocks(npoints, block):
        yield {b"t": b"data", b"d": b"".join(values[s:e].tobytes() for values in data.values())}


def drain(ctx: Context, data: dict[str, np.ndarray], block: int, label: str,
          timeout: float, nexus_tree: bool = False) -> dict[str, Any]:
    """Publish a whole scan with the writer process idle, then time its drain.

    Also measures the raw baselines on the same entries: pipelined XADD, XRANGE,
    h5py (and with ``nexus_tree``, raw h5py writing them in the writer's NeXus
    tree). The writer's reader is registered first, so the writer resumes the
    ended scan when it starts (on SIGUSR1)."""
    session = ctx.session(label)
    path = os.path.join(ctx.tmp, f"{label}.h5")
    npoints = len(next(iter(data.values())))
    out: dict[str, Any] = {"outcome": ""}
    writer = Writer(ctx, session, wait_signal=True)
    try:
        writer.wait_ready()
        stream = f"raw_{label}"
        out["xadd"] = baselines.redis_xadd(ctx.client, stream, raw_entries(data, block))
        ctx.client.delete(stream)
        get_session_node(session, ctx.url).register_reader(READER)
        with Publisher(session, ctx.url) as publisher:
            scan = create_scan(publisher, path, data, 1, label)
            out["publish"] = timed(lambda: publish_all(scan, data, block))
            scan.end()
        arrays: dict[bytes, list[np.ndarray]] = {}
        out["xrange"] = timed(lambda: arrays.update(raw_read(ctx.client, scan.keys.events)))
        raw_path = os.path.join(ctx.tmp, f"raw_{label}.h5")
        nbytes = sum(values.nbytes for values in data.values())
        baselines.warm_up_memory(ctx.tmp, nbytes)
        out["h5py"] = timed(lambda: raw_write(raw_path, arrays, npoints))
        os.unlink(raw_path)
        if nexus_tree:
            fields = sorted(arrays, key=lambda field: int(field[1:]))  # declaration order
            baselines.warm_up_memory(ctx.tmp, nbytes)
            out["h5tree"] = baselines.h5_nexus_tree(
                raw_path, {name: arrays[field] for name, field in zip(data, fields)})
        arrays.clear()
        baselines.warm_up_memory(ctx.tmp, nbytes)
        cpu = writer.cpu_times()
        t0 = time.time()
        writer.go()
        done = writer.wait_event("done", timeout)[0]
        out["writer"] = writer_timing(done["t"] - t0, writer, cpu)
        out["rss"] = writer.peak()
        if done["status"] != "SUCCEEDED":
            out["outcome"] = f"{done['state']} {done['status']}: {done['reason']}"
    except Exception as exc:
        out["outcome"] = f"{type(exc).__name__}: {exc}"
    finally:
        finish(ctx, writer, f"drain {label}")
    if not out["outcome"]:
        out["outcome"] = check_file(path, 1, data, content=True)
    if out["outcome"]:
        ctx.problem(f"drain {label}: {out['outcome']}")
    delete_session(ctx.client, session)
    if os.path.exists(path):
        os.unlink(path)
    return out


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from repeated runs of :func:`drain` or :func:`end_to_end`: the median
    wall, CPU and system CPU time of each measure (over the runs that have it), the largest peak
    RSS, and the first problem seen."""
    out: dict[str, Any] = {"outcome": next((r["outcome"] for r in runs if r["outcome"]), "")}
    for key in {key for run in runs for key, value in run.items()
                if isinstance(value, Timing)}:
        timings = [run[key] for run in runs if isinstance(run.get(key), Timing)]
        kernel = [t.sys for t in timings if t.sys is not None]
        out[key] = Timing(statistics.median(t.wall for t in timings),
                          statistics.median(t.cpu for t in timings),
                          statistics.median(kernel) if kernel else None)
    rss = [run["rss"] for run in runs if run.get("rss") is not None]
    if rss:
        out["rss"] = max(rss)
    for key in ("publish",):  # end to end: the publisher's wall time, a float
        values = [run[key] for run in runs if isinstance(run.get(key), float)]
        if values:
            out[key] = statistics.median(values)
    return out


def drains_and_ends(ctx: Context, data: dict[str, np.ndarray], block: int, label: str,
                    timeout: float, nexus_tree: bool = False
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``ctx.repeat`` runs of :func:`drain` and of :func:`end_to_end`, in turn: each
    end-to-end run comes right after the drain whose raw baselines it is compared
    with (see :func:`paired`)."""
    drains, ends = [], []
    for i in range(ctx.repeat):
        suffix = f"_{i}" if i else ""
        drains.append(drain(ctx, data, block, f"{label}_drain{suffix}", timeout, nexus_tree))
        ends.append(end_to_end(ctx, data, block, f"{label}_e2e{suffix}", timeout))
    return drains, ends


def paired(drains: list[dict[str, Any]], ends: list[dict[str, Any]],
           ratio: Callable[[dict[str, Any], dict[str, Any]], float]) -> list[float]:
    """``ratio(drain, end to end)`` of each repetition where both succeeded.

    A ratio of measures taken a few seconds apart: the state of this virtual
    machine's memory and page cache, which moves the system time of writes by up to
    several times from one minute to the next, weighs on both alike. Their median
    is the figure a target is judged on."""
    out = []
    for d, e in zip(drains, ends):
        if d["outcome"] or e["outcome"]:
            continue
        try:
            out.append(ratio(d, e))
        except (KeyError, ZeroDivisionError):
            continue
    return out


def median_or_inf(values: list[float]) -> float:
    return statistics.median(values) if values else float("inf")


def listed(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values) or "-"


def end_to_end(ctx: Context, data: dict[str, np.ndarray], block: int, label: str,
               timeout: float) -> dict[str, Any]:
    """Writer process listening; publish as fast as possible; first block sent ->
    file complete (the writer's 'done' line)."""
    session = ctx.session(label)
    path = os.path.join(ctx.tmp, f"{label}.h5")
    out: dict[str, Any] = {"outcome": ""}
    writer = Writer(ctx, session)
    try:
        writer.wait_event("started", 60)
        baselines.warm_up_memory(ctx.tmp, sum(values.nbytes for values in data.values()))
        cpu = writer.cpu_times()
        with Publisher(session, ctx.url) as publisher:
            scan = create_scan(publisher, path, data, 1, label)
            t0 = time.time()
            publish_all(scan, data, block)
            scan.end()
            out["publish"] = time.time() - t0
        done = writer.wait_event("done", timeout)[0]
        out["writer"] = writer_timing(done["t"] - t0, writer, cpu)
        out["rss"] = writer.peak()
        if done["status"] != "SUCCEEDED":
            out["outcome"] = f"{done['state']} {done['status']}: {done['reason']}"
    except Exception as exc:
        out["outcome"] = f"{type(exc).__name__}: {exc}"
    finally:
        finish(ctx, writer, f"end to end {label}")
    if not out["outcome"]:
        out["outcome"] = check_file(path, 1, data, content=len(data) * len(
            next(iter(data.values()))) <= 10_000_000)
    if out["outcome"]:
        ctx.problem(f"end to end {label}: {out['outcome']}")
    delete_session(ctx.client, session)
    if os.path.exists(path):
        os.unlink(path)
    return out


def scenario_0d(ctx: Context) -> None:
    """1. 0D: 10 channels x 1e6 float64, blocks of 100 and 1000: drain and end to end
    (``--big``: 1e7 points per channel)."""
    nch, npoints = 10, 100_000 if ctx.quick else 1_000_000
    if ctx.big:
        npoints *= 10
    total, nbytes = nch * npoints, nch * npoints * 8
    scale = 0.1 if ctx.quick else 1.0
    data = zero_d_data(nch, npoints, 0)
    log(f"1. 0D: {nch} x {npoints:,} float64")
    disk = baselines.disk(ctx.tmp, nbytes)
    rows = [Row("a", "bare disk, dd + fsync", total, nbytes, disk.wall)]
    notes = []
    scale *= 10 if ctx.big else 1
    e2e_targets = {100: 2.1 * scale, 1000: 0.5 * scale}
    refs = {100: 4.3 * scale, 1000: 1.0 * scale}
    cpu_ratios = []
    timeout = (120.0 if ctx.quick else 300.0) * (10 if ctx.big else 1)
    for block in (100, 1000):
        drains, ends = drains_and_ends(ctx, data, block, f"s1_{block}", timeout)
        d, e = median_of(drains), median_of(ends)
        k = "b" if block == 100 else "c"
        base = (d["xrange"].wall + d["h5py"].wall) if "h5py" in d else None
        rows += [
            Row(f"{k}1", f"raw XADD pipelined, blocks of {block}", total, nbytes,
                d.get("xadd", Timing(float("nan"), 0)).wall, d.get("xadd", Timing(0, 0)).cpu),
            Row(f"{k}2", f"publisher, blocks of {block}", total, nbytes,
                d["publish"].wall if "publish" in d else None,
                d["publish"].cpu if "publish" in d else None, base=f"{k}1"),
            Row(f"{k}3", "raw XRANGE + frombuffer", total, nbytes,
                d["xrange"].wall if "xrange" in d else None,
                d["xrange"].cpu if "xrange" in d else None),
            Row(f"{k}4", "raw h5py, chunk-aligned", total, nbytes,
                d["h5py"].wall if "h5py" in d else None,
                d["h5py"].cpu if "h5py" in d else None, base="a"),
            Row(f"{k}5", "raw XRANGE, then raw h5py", total, nbytes, base,
                (d["xrange"].cpu + d["h5py"].cpu) if "h5py" in d else None),
            Row(f"{k}6", "writer drain (published first)", total, nbytes,
                d["writer"].wall if "writer" in d and not d["outcome"] else None,
                d["writer"].cpu if "writer" in d else None, d.get("rss"), base=f"{k}5",
                cpu_ref=f"{k}4"),
            Row(f"{k}7", "ESRF writer end to end (issue)", total, nbytes, refs[block]),
            Row(f"{k}8", "writer end to end (publish || write)", total, nbytes,
                e["writer"].wall if "writer" in e and not e["outcome"] else None,
                e["writer"].cpu if "writer" in e else None, e.get("rss"), base=f"{k}7",
                cpu_ref=f"{k}4"),
        ]
        pub = total / d["publish"].wall / 1e6 if "publish" in d else 0.0
        if block == 100:
            notes.append(ctx.verdict("1 publisher, blocks of 100", f"{pub:.1f} Mpts/s",
                                     ">= 5 Mpts/s", pub >= 5))
        drain_ratios = paired(drains, ends, lambda r, _: r["writer"].wall / (
            r["xrange"].wall + r["h5py"].wall))
        dr = median_or_inf(drain_ratios)
        notes.append(f"drain / baseline (raw XRANGE + raw h5py of the same run), blocks of "
                     f"{block}, each run: {listed(drain_ratios)}")
        notes.append(ctx.verdict(f"1 drain, blocks of {block}", f"{dr:.2f}x the baseline",
                                 "< 1.00x raw XRANGE + raw h5py",
                                 dr < 1 and not d["outcome"]))
        t_e2e = e["writer"].wall if "writer" in e else float("inf")
        notes.append(ctx.verdict(f"1 end to end, blocks of {block}", f"{t_e2e:.2f} s",
                                 f"<= {e2e_targets[block]:g} s"
                                 + (" (1/10 of the full-size target)" if ctx.quick else ""),
                                 t_e2e <= e2e_targets[block] and not e["outcome"]))
        notes.append(f"CPU, user + system, blocks of {block}: raw h5py ({k}4) "
                     f"{split(d.get('h5py'))}, writer drain ({k}6) {split(d.get('writer'))}, "
                     f"end to end ({k}8) {split(e.get('writer'))}")
        drain_cpu = paired(drains, ends, lambda r, _: r["writer"].cpu / r["h5py"].cpu)
        end_cpu = paired(drains, ends, lambda r, x: x["writer"].cpu / r["h5py"].cpu)
        notes.append(f"writer CPU / raw h5py CPU of the same run, blocks of {block}, each "
                     f"run: drain {listed(drain_cpu)}; end to end {listed(end_cpu)}")
        cpu_ratios.append((block, median_or_inf(drain_cpu), median_or_inf(end_cpu)))
        log(f"blocks of {block}: drain {fmt(d.get('writer', Timing(0, 0)).wall)} s "
            f"(baseline {fmt(base)} s), end to end {fmt(t_e2e)} s")
    for block, rd, re in cpu_ratios:
        if ctx.big:  # judged on the 1e8-point run only; else a figure for information
            notes.append(ctx.verdict(
                f"1 writer CPU (1e8 points), blocks of {block}",
                f"drain {rd:.1f}x, end to end {re:.1f}x", "<= 2x raw h5py CPU",
                max(rd, re) <= 2))
        else:
            notes.append(f"writer CPU over raw h5py's, blocks of {block} (information, "
                         f"judged with --big): drain {rd:.1f}x, end to end {re:.1f}x")
    print_rows(f"1. 0D: {nch} float64 channels x {npoints:,} points{scaled(ctx)}", rows,
               None, [
                   "CPU/h5py: CPU per point over that of the raw h5py row of the same block "
                   "size (b4, c4);",
                   "(b7)/(c7): the established ESRF writer's times from the issue"
                   + (" scaled by 1/10" if ctx.quick else "")
                   + (" scaled by 10 (--big)" if ctx.big else "") + ", not measured here.",
               ] + notes)


def scenario_many_channels(ctx: Context) -> None:
    """2. Many channels: 500 channels x 1e4 points."""
    nch, npoints, block = 500, 1_000 if ctx.quick else 10_000, 100
    total, nbytes = nch * npoints, nch * npoints * 8
    log(f"2. many channels: {nch} x {npoints:,} float64")
    data = zero_d_data(nch, npoints, 1)
    disk = baselines.disk(ctx.tmp, nbytes)
    timeout = 120.0 if ctx.quick else 300.0
    drains, ends = drains_and_ends(ctx, data, block, "s2", timeout, True)
    d, e = median_of(drains), median_of(ends)
    base = (d["xrange"].wall + d["h5py"].wall) if "h5py" in d else None

    def t(out: dict[str, Any], key: str) -> Timing:
        return out.get(key, Timing(float("nan"), float("nan")))

    rows = [
        Row("a", "bare disk, dd + fsync", total, nbytes, disk.wall),
        Row("b", "raw XADD pipelined", total, nbytes, t(d, "xadd").wall, t(d, "xadd").cpu),
        Row("c", "publisher", total, nbytes, t(d, "publish").wall, t(d, "publish").cpu,
            base="b"),
        Row("d", "raw XRANGE + frombuffer", total, nbytes, t(d, "xrange").wall,
            t(d, "xrange").cpu),
        Row("e", "raw h5py, chunk-aligned", total, nbytes, t(d, "h5py").wall,
            t(d, "h5py").cpu, base="a"),
        Row("e2", "raw h5py, in the writer's NeXus tree", total, nbytes, t(d, "h5tree").wall,
            t(d, "h5tree").cpu, base="e"),
        Row("f", "raw XRANGE, then raw h5py", total, nbytes, base,
            t(d, "xrange").cpu + t(d, "h5py").cpu),
        Row("g", "writer drain (published first)", total, nbytes,
            None if d["outcome"] else t(d, "writer").wall, t(d, "writer").cpu, d.get("rss"),
            base="f"),
        Row("h", "writer end to end", total, nbytes,
            None if e["outcome"] else t(e, "writer").wall, t(e, "writer").cpu, e.get("rss"),
            base="f"),
    ]
    drain_cpu = paired(drains, ends, lambda r, _: r["writer"].cpu / r["h5py"].cpu)
    end_cpu = paired(drains, ends, lambda r, x: x["writer"].cpu / r["h5py"].cpu)
    worst = max(median_or_inf(drain_cpu), median_or_inf(end_cpu))
    dr = t(d, "writer").wall / base if base else float("inf")
    tree = t(d, "h5tree").cpu
    worst_tree = max(t(d, "writer").cpu, t(e, "writer").cpu) / tree if tree else float("inf")

    notes = [
        f"drain: {dr:.2f}x raw XRANGE + raw h5py (no target for this scenario)",
        f"(e2): raw h5py making the writer's groups, links and attributes as well; the "
        f"writer's CPU is {worst_tree:.1f}x that (context only: the target is against (e))",
        f"CPU, user + system: raw h5py (e) {split(t(d, 'h5py'))}, writer drain (g) "
        f"{split(t(d, 'writer'))}, end to end (h) {split(t(e, 'writer'))}. About half the "
        f"writer's system time is first touches of fresh memory (pages read ahead, the "
        f"backlog and unfinished chunks, each up to about this scan's "
        f"{nbytes / MiB:.0f} MiB), the part that varies most between runs; raw h5py "
        f"writes arrays already in memory",
        f"writer CPU / raw h5py CPU of the same run, each run: drain {listed(drain_cpu)}; "
        f"end to end {listed(end_cpu)}",
        ctx.verdict("2 writer CPU, 500 channels", f"{worst:.1f}x raw h5py",
                    "<= 2x raw h5py CPU", worst <= 2 and not d["outcome"] and not e["outcome"]),
    ]
    print_rows(f"2. Many channels: {nch} float64 channels x {npoints:,} points, blocks of "
               f"{block}{scaled(ctx)}", rows, "e", notes)


def scenario_memory(ctx: Context) -> None:
    """6. A 1e7-point scan: writer peak RSS."""
    npoints, block = 1_000_000 if ctx.quick else 10_000_000, 1000
    nbytes = npoints * 8
    log(f"6. memory: 1 x {npoints:,} float64")
    data = zero_d_data(1, npoints, 2)
    disk = baselines.disk(ctx.tmp, nbytes)
    h5 = baselines.h5_write(os.path.join(ctx.tmp, "s6_raw.h5"),
                            {"ch0": lambda s, e: data["ch0"][s:e]}, npoints,
                            {"ch0": np.dtype("f8")}, {"ch0": ()})
    idle = Writer(ctx, ctx.session("s6_idle"))
    try:
        idle.wait_event("started", 60)
        idle_rss = idle.peak()
    finally:
        finish(ctx, idle, "idle writer")
    e = end_to_end(ctx, data, block, "s6_e2e", 300.0 if ctx.quick else 600.0)
    rss = e.get("rss")
    rows = [
        Row("a", "bare disk, dd + fsync", npoints, nbytes, disk.wall),
        Row("b", "raw h5py, chunk-aligned", npoints, nbytes, h5.wall, h5.cpu, base="a"),
        Row("c", "idle writer process (no scan)", 0, 0, None, None, idle_rss),
        Row("d", "writer end to end, published at full speed", npoints, nbytes,
            e["writer"].wall if "writer" in e and not e["outcome"] else None,
            e["writer"].cpu if "writer" in e else None, rss, base="b"),
    ]
    ok = rss is not None and rss * MiB / 1e6 < 300 and not e["outcome"]
    notes = [ctx.verdict(f"6 peak RSS, {npoints:,}-point scan",
                         f"{fmt(rss and rss * MiB / 1e6, '.0f')} MB", "< 300 MB", ok)]
    print_rows(f"6. Memory: one float64 channel x {npoints:,} points, blocks of {block}"
               f"{scaled(ctx)}", rows, "b", notes)


# -- paced scans (scenarios 3, 5, 7) ----------------------------------------------------


@dataclass
class Paced:
    """What a paced publication did, with the writer's lag sampled from Redis."""

    npoints: int
    nbytes: int
    started: float = 0.0  # time.time() of the first block
    sent: float = 0.0  # time.time() after the last end
    done: float = float("nan")
    late: float = 0.0  # worst lateness of a block vs the pace, s
    lag: list[tuple[float, float]] = field(default_factory=list)  # (s since start, s)
    sent_points: list[tuple[float, int]] = field(default_factory=list)  # (time.time(), n)
    rate: float = 0.0
    outcome: str = ""
    paths: list[str] = field(default_factory=list)
    #: bytes of the files written (all scans), measured before they are removed
    stored: int = 0

    def written_lag(self, samples: list[tuple[float, list[int]]]) -> list[tuple[float, float]]:
        """Seconds of data sent and not yet written, from the writer's samples
        ``(time.time(), points written per scan)``: (s since start, worst scan)."""
        if not self.sent_points:
            return []
        times = np.array([t for t, _ in self.sent_points])
        counts = np.array([n for _, n in self.sent_points])
        out = []
        for t, written in samples:
            if not written or t < self.started:
                continue
            i = int(np.searchsorted(times, t, side="right")) - 1
            sent = int(counts[i]) if i >= 0 else 0
            out.append((t - self.started, max(0, sent - min(written)) / self.rate))
        return out

    def figures(self, series: list[tuple[float, float]]) -> tuple[float, float, float]:
        """(max s, max over the last third s, trend ms per s) of a lag series, while
        publishing."""
        if os.environ.get("BENCH_LAG_TRACE"):
            log("lag: " + " ".join(f"{t:.1f}:{y:.2f}" for t, y in series))
        if not series:
            return float("nan"), float("nan"), float("nan")
        t = np.array([x for x, _ in series])
        lag = np.array([y for _, y in series])
        live = t <= self.sent - self.started
        t, lag = (t[live], lag[live]) if live.sum() > 2 else (t, lag)
        last = lag[t >= t[0] + (t[-1] - t[0]) * 2 / 3]
        slope = float(np.polyfit(t, lag, 1)[0]) * 1e3 if len(t) > 2 else float("nan")
        return float(lag.max()), float(last.max() if len(last) else lag.max()), slope


def _id_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0])


def publish_paced(ctx: Context, session: str, scans: int,
                  channels: dict[str, tuple[str, tuple[int, ...]]],
                  pool: dict[str, np.ndarray], rate: float, block: int, seconds: float,
                  wait_done: Callable[[], float], label: str,
                  directory: str | None = None) -> Paced:
    """``scans`` scans at once in ``session``, ``rate`` points/s each, ``block`` points
    per send, for ``seconds``; ``wait_done()`` blocks until the writer has finished
    them and returns when (time.time()). Lag = newest entry's time minus the
    acknowledged entry's time, sampled every 0.1 s over all scans (max)."""
    npoints = int(rate * seconds)
    point_bytes = sum(np.dtype(dt).itemsize * int(np.prod(shape))
                      for dt, shape in channels.values())
    result = Paced(npoints, npoints * point_bytes * scans, rate=rate)
    period = block / rate
    stop = threading.Event()
    with Publisher(session, ctx.url) as publisher:
        pubs: list[ScanPublisher] = []
        for n in range(scans):
            path = os.path.join(directory or ctx.tmp, f"{label}_{n}.h5")
            result.paths.append(path)
            scan = publisher.create_scan(scan_info(path, npoints, f"{label}_{n}"),
                                         name=f"{label}_{n}", number=1)
            for name, (dtype, shape) in channels.items():
                scan.add_channel(name, dtype, shape)
            scan.prepare()
            pubs.append(scan)
        first = []
        for pub in pubs:
            entries: Any = ctx.client.xrange(pub.keys.events, count=1)
            first.append(_id_ms(entries[0][0]))

        def sample() -> None:
            client = redis.Redis.from_url(ctx.url)
            try:
                while not stop.wait(0.1):
                    pipe = client.pipeline(transaction=False)
                    for s in pubs:
                        pipe.xrevrange(s.keys.events, count=1)
                        pipe.hget(s.keys.acks, READER)
                    replies = pipe.execute()
                    worst = 0.0
                    for i in range(len(pubs)):
                        newest, acked = replies[2 * i], replies[2 * i + 1]
                        if not newest:
                            continue
                        acked_ms = max(_id_ms(acked) if acked else 0, first[i])
                        worst = max(worst, (_id_ms(newest[0][0]) - acked_ms) / 1e3)
                    result.lag.append((time.time() - result.started, worst))
            finally:
                client.close()

        sampler = threading.Thread(target=sample, name=f"lag-{label}", daemon=True)
        size = len(next(iter(pool.values())))
        result.started = time.time()
        start = time.perf_counter()
        sampler.start()
        try:
            for k, (s, e) in enumerate(blocks(npoints, block)):
                delay = start + k * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    result.late = max(result.late, -delay)
                a = s % size
                chunk = {name: values[a:a + e - s] for name, values in pool.items()}
                for scan in pubs:
                    scan.send(chunk)
                result.sent_points.append((time.time(), e))
            for scan in pubs:
                scan.end()
            result.sent = time.time()
            try:
                result.done = wait_done()
            except Exception as exc:
                result.outcome = f"{type(exc).__name__}: {exc}"
        finally:
            stop.set()
            sampler.join(5)
    return result


def check_shapes(path: str, channels: dict[str, tuple[str, tuple[int, ...]]],
                 npoints: int) -> str:
    """'' when every channel holds ``npoints`` points and the status is SUCCEEDED."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            status = f[status_path(1)][()]
            status = status.decode() if isinstance(status, bytes) else str(status)
            for name, (_, shape) in channels.items():
                got = f[channel_path(1, name)].shape
                if got != (npoints,) + shape:
                    return f"{name} has shape {got}, {(npoints,) + shape} sent"
            if status != "SUCCEEDED":
                return f"writer/status is {status}"
    except (OSError, KeyError) as exc:
        return f"cannot read {path}: {exc}"
    return ""


def raw_paced_baselines(ctx: Context, label: str, scans: int,
                        channels: dict[str, tuple[str, tuple[int, ...]]],
                        pool: dict[str, np.ndarray], npoints: int, block: int,
                        ) -> tuple[Timing, Timing, Timing, Timing]:
    """Disk, raw h5py (one file per scan), raw XADD and raw XRANGE for the same bytes.

    Redis is fed one second of data at a time (XADD, XRANGE, DEL) so that it never
    holds more than a paced run would."""
    size = len(next(iter(pool.values())))
    point_bytes = sum(np.dtype(dt).itemsize * int(np.prod(shape))
                      for dt, shape in channels.values())
    nbytes = npoints * point_bytes * scans
    disk = baselines.disk(ctx.tmp, nbytes)

    def getter(values: np.ndarray) -> Callable[[int, int], np.ndarray]:
        def get(s: int, e: int) -> np.ndarray:
            parts, i = [], s
            while i < e:
                a = i % size
                n = min(e - i, size - a)
                parts.append(values[a:a + n])
                i += n
            return parts[0] if len(parts) == 1 else np.concatenate(parts)
        return get

    h5 = Timing(0.0, 0.0)
    for n in range(scans):
        t = baselines.h5_write(
            os.path.join(ctx.tmp, f"raw_{label}_{n}.h5"),
            {name: getter(values) for name, values in pool.items()}, npoints,
            {name: np.dtype(dt) for name, (dt, _) in channels.items()},
            {name: shape for name, (_, shape) in channels.items()})
        h5 = Timing(h5.wall + t.wall, h5.cpu + t.cpu)

    def entries(first: int, last: int) -> Iterator[dict[bytes, bytes]]:
        for s, e in blocks(last - first, block):
            fields = {b"t": b"data"}
            for i, values in enumerate(pool.values()):
                fields[b"d%d" % i] = getter(values)(first + s, first + e).tobytes()
            for _ in range(scans):
                yield fields

    stream = f"raw_{label}"
    xadd = xrange = Timing(0.0, 0.0)
    per_second = max(block, int(npoints / max(1, npoints * point_bytes * scans // 65e6)))
    page = max(1, min(1000, int(4e6 // max(1, point_bytes * block))))
    try:
        for first in range(0, npoints, per_second):
            last = min(npoints, first + per_second)
            t = baselines.redis_xadd(ctx.client, stream, entries(first, last))
            xadd = Timing(xadd.wall + t.wall, xadd.cpu + t.cpu)
            r, _ = baselines.redis_xrange(ctx.client, stream, page=page,
                                          dtype=next(iter(channels.values()))[0])
            xrange = Timing(xrange.wall + r.wall, xrange.cpu + r.cpu)
            ctx.client.delete(stream)
    finally:
        ctx.client.delete(stream)
    return disk, h5, xadd, xrange


def paced_rows(result: Paced, total_points: int, disk: Timing, h5: Timing, xadd: Timing,
               xrange: Timing, writer: Timing | None, rss: float | None,
               writer_name: str) -> list[Row]:
    n, b = total_points, result.nbytes
    wall = result.done - result.started if result.done == result.done else None
    return [
        Row("a", "bare disk, dd + fsync", n, b, disk.wall),
        Row("b", "raw h5py, chunk-aligned", n, b, h5.wall, h5.cpu, base="a"),
        Row("c", "raw XADD pipelined", n, b, xadd.wall, xadd.cpu),
        Row("d", "raw XRANGE + frombuffer", n, b, xrange.wall, xrange.cpu),
        Row("e", "paced publication (first block -> last end)", n, b,
            result.sent - result.started),
        Row("f", writer_name, n, b, None if result.outcome else wall,
            writer.cpu if writer else None, rss, base="e"),
    ]


def paced_notes(ctx: Context, scenario: str, result: Paced, written: list[tuple[float, float]],
                backlog: str, data_rate: float) -> list[str]:
    """Backlog figures and the verdict. The verdict is on the data sent and not yet
    written (points published minus the writer's points written, in seconds of data)."""
    peak, last, slope = result.figures(written)
    apeak, alast, aslope = result.figures(result.lag)
    tail = result.done - result.sent
    stable = last <= 1.0 and (slope != slope or slope < 50)
    return [
        f"backlog, sent and not yet written (writer's progress sampled every 0.1 s): max "
        f"{peak:.2f} s of data, max over the last third {last:.2f} s, trend {slope:+.1f} "
        f"ms/s;",
        f"not yet acknowledged (= flushed, visible; Redis entry times): max {apeak:.2f} s, "
        f"last third {alast:.2f} s, trend {aslope:+.1f} ms/s;",
        f"the writer's own backlog (read from Redis, not yet written): {backlog};",
        f"publisher's worst lateness vs the pace {result.late * 1e3:.0f} ms; file complete "
        f"{tail:.2f} s after the scan ended; data rate {data_rate / 1e6:.1f} MB/s;",
        "stable = under 1 s over the last third of the run and growing less than 50 ms/s "
        "(linear fit).",
        ctx.verdict(scenario, f"max backlog {peak:.2f} s of data, "
                    f"{'bounded and stable' if stable else 'NOT stable'}",
                    "backlog < 1 s of data, not growing",
                    peak < 1.0 and stable and not result.outcome),
    ]


def writer_samples(writer: Writer) -> list[tuple[float, list[int]]]:
    return [(line["t"], [s["points"] for s in line["scans"]]) for line in writer.lines()
            if line["event"] == "sample"]


def paced_writer_run(ctx: Context, label: str, what: str, nscans: int,
                     channels: dict[str, tuple[str, tuple[int, ...]]],
                     pool: dict[str, np.ndarray], rate: float, block: int, seconds: float,
                     writer_options: tuple[str, ...] = ()
                     ) -> tuple[Paced, float | None, float | None, float, float,
                                list[tuple[float, list[int]]]]:
    """A fresh writer process (with the command-line ``writer_options``); ``nscans``
    scans published at ``rate`` until every file is complete and checked. Returns the
    run, the writer's CPU seconds and peak RSS, its largest backlog (events, MiB) and
    its progress samples."""
    npoints = int(rate * seconds)
    session = ctx.session(label)
    writer = Writer(ctx, session, options=writer_options)
    cpu = rss = None
    result = Paced(npoints, 0, outcome="not run")
    try:
        writer.wait_event("started", 60)
        cpu0 = writer.cpu_seconds()

        def wait_done() -> float:
            lines = writer.wait_event("done", 120 + seconds, count=nscans)
            bad = [x for x in lines if x["status"] != "SUCCEEDED"]
            if bad:
                raise RuntimeError(f"{bad[0]['state']} {bad[0]['status']}: {bad[0]['reason']}")
            return max(float(x["t"]) for x in lines)

        result = publish_paced(ctx, session, nscans, channels, pool, rate, block, seconds,
                               wait_done, label)
        cpu = writer.cpu_seconds() - cpu0
        rss = writer.peak()
        events, size = writer.backlog()
        samples = writer_samples(writer)
    except Exception as exc:
        result.outcome = f"{type(exc).__name__}: {exc}"
        events = size = float("nan")
        samples = []
    finally:
        finish(ctx, writer, what)
    if not result.outcome:
        for path in result.paths:
            result.outcome = result.outcome or check_shapes(path, channels, npoints)
    if result.outcome:
        ctx.problem(f"{what}: {result.outcome}")
    delete_session(ctx.client, session)
    for path in result.paths:
        if os.path.exists(path):
            result.stored += os.path.getsize(path)
            os.unlink(path)
    return result, cpu, rss, events, size, samples


def scenario_mca(ctx: Context) -> None:
    """3. MCA: 4 detectors x 4096-channel uint32 spectra at 1 kHz for 60 s."""
    seconds = 10.0 if ctx.quick else 60.0
    rate, block, ndet = 1000.0, 50, 4
    channels: dict[str, tuple[str, tuple[int, ...]]] = {
        f"mca{d}": ("u4", (4096,)) for d in range(ndet)}
    base = np.random.default_rng(4).integers(0, 1 << 16, size=(1000, 4096), dtype=np.uint32)
    pool = {name: np.roll(base, d, axis=0) for d, name in enumerate(channels)}
    npoints = int(rate * seconds)
    log(f"3. MCA: {ndet} x 4096 uint32 at {rate:g} Hz for {seconds:g} s")
    run = paced_writer_run(ctx, "s3", "MCA", 1, channels, pool, rate, block, seconds)
    result, cpu, rss, events, size, samples = run
    log("3. MCA: baselines")
    disk, h5, xadd, xrange = raw_paced_baselines(ctx, "s3", 1, channels, pool, npoints,
                                                 block)
    data_rate = rate * ndet * 4096 * 4
    rows = paced_rows(result, npoints * ndet, disk, h5, xadd, xrange,
                      Timing(0, cpu) if cpu is not None else None, rss,
                      "writer (first block -> file complete)")
    notes = paced_notes(ctx, "3 MCA at 1 kHz", result, result.written_lag(samples),
                        f"max {events:.0f} events, {size:.0f} MiB = "
                        f"{size * MiB / data_rate:.2f} s of data", data_rate)
    print_rows(f"3. MCA: {ndet} detectors x 4096-channel uint32 spectra at {rate:g} Hz "
               f"for {seconds:g} s, blocks of {block} every {block / rate * 1e3:g} ms"
               + (" [--quick: 10 s instead of 60 s]" if ctx.quick else ""),
               rows, "b", ["a point is one spectrum; (f) wall is set by the pace"] + notes)


def scan_load(quick: bool) -> tuple[int, dict[str, tuple[str, tuple[int, ...]]],
                                    dict[str, np.ndarray], float, int, float]:
    """Scenario 5's load: 8 scans x 16 float64 channels at 10 kHz."""
    channels: dict[str, tuple[str, tuple[int, ...]]] = {
        f"ch{i}": ("f8", ()) for i in range(16)}
    rng = np.random.default_rng(5)
    pool = {name: rng.random(10_000) for name in channels}
    return 8, channels, pool, 10_000.0, 500, 5.0 if quick else 20.0


def scenario_concurrent(ctx: Context) -> None:
    """5. Eight concurrent scans in one session writer, 16 channels at 10 kHz each."""
    nscans, channels, pool, rate, block, seconds = scan_load(ctx.quick)
    npoints = int(rate * seconds)
    log(f"5. {nscans} concurrent scans x {len(channels)} channels at {rate:g} Hz "
        f"for {seconds:g} s")
    run = paced_writer_run(ctx, "s5", "concurrent scans", nscans, channels, pool, rate,
                           block, seconds)
    result, cpu, rss, events, size, samples = run
    log("5. baselines")
    disk, h5, xadd, xrange = raw_paced_baselines(ctx, "s5", nscans, channels, pool, npoints,
                                                 block)
    data_rate = rate * nscans * len(channels) * 8
    rows = paced_rows(result, npoints * nscans * len(channels), disk, h5, xadd, xrange,
                      Timing(0, cpu) if cpu is not None else None, rss,
                      "writer (first block -> all files complete)")
    notes = paced_notes(ctx, "5 eight scans at 10 kHz", result, result.written_lag(samples),
                        f"max {events:.0f} events, {size:.1f} MiB = "
                        f"{size * MiB / data_rate:.2f} s of data", data_rate)
    print_rows(f"5. Concurrent: {nscans} scans x {len(channels)} float64 channels at "
               f"{rate / 1e3:g} kHz for {seconds:g} s in one session writer, blocks of "
               f"{block}" + (" [--quick: 5 s instead of 20 s]" if ctx.quick else ""),
               rows, "b", ["(f) wall is set by the pace"] + notes)


def scenario_tango(ctx: Context) -> None:
    """7. scan_states read every 10 ms by a client during scenario 5's load, written by
    the real NexusWriterService."""
    nscans, channels, pool, rate, block, seconds = scan_load(ctx.quick)
    npoints = int(rate * seconds)
    session = f"sysdev{os.getpid()}"
    work = Path(ctx.tmp) / "tango_run"
    log(f"7. Tango: starting the database and NexusWriterService ({session})")
    idle_n = 200 if ctx.quick else 500
    result = Paced(npoints, 0, outcome="not run")
    backlog_mib: list[float] = []
    progress_samples: list[tuple[float, list[int]]] = []
    cpu = rss = None
    with running_device(work, ctx.url, session) as (server, proxy):
        pid = server.pid
        assert pid is not None
        ping = sample(ctx.client.ping, lambda: False, idle_n)
        idle = sample(lambda: proxy.scan_states, lambda: False, idle_n)
        written = threading.Event()
        published = threading.Event()
        before = len(proxy.scan_names or ())
        cpu0 = proc_cpu(pid)

        def load() -> None:
            nonlocal result
            try:
                result = publish_paced(ctx, session, nscans, channels, pool, rate, block,
                                       seconds, lambda: (written.wait(120 + seconds),
                                                         time.time())[1], "s7",
                                       directory=str(work))
            except Exception as exc:
                result.outcome = f"{type(exc).__name__}: {exc}"
            finally:
                published.set()

        def backlog() -> None:
            other = device_proxy(server.tango_host, proxy.dev_name())
            while not published.is_set():
                try:
                    backlog_mib.append(float(other.backlog_size))
                    progress = list(other.scan_progress or ())[before:]
                    progress_samples.append(
                        (time.time(), [int(p.split("/")[0]) for p in progress]
                         if len(progress) == nscans else []))
                except tango.DevFailed:
                    pass
                time.sleep(0.1)

        def finished() -> bool:
            if published.is_set():
                return True
            states = [str(state) for state in proxy.scan_states or ()]
            done = len(states) >= before + nscans and "ON" not in states
            if done:
                written.set()
            return done

        threads = [threading.Thread(target=load, name="s7-load", daemon=True),
                   threading.Thread(target=backlog, name="s7-backlog", daemon=True)]
        log(f"7. Tango: {nscans} scans x {len(channels)} channels at {rate:g} Hz")
        for thread in threads:
            thread.start()
        busy = sample(lambda: proxy.scan_states, finished, 10**7)
        written.set()
        for thread in threads:
            thread.join(120 + seconds)
        cpu = proc_cpu(pid) - cpu0
        rss = proc_status(pid, "VmHWM")
        states = [str(state) for state in proxy.scan_states or ()]
    if not result.outcome and (len(states) < before + nscans
                               or any(s != "OFF" for s in states)):
        result.outcome = f"scan states {states}"
    if not result.outcome:
        for path in result.paths:
            result.outcome = result.outcome or check_shapes(path, channels, npoints)
    if result.outcome:
        ctx.problem(f"Tango: {result.outcome}")
    delete_session(ctx.client, session)
    lines = []
    for name, ms in (("raw Redis PING (baseline)", ping),
                     ("scan_states, writer idle (baseline)", idle),
                     (f"scan_states, {nscans} scans at 10 kHz ({len(busy) * PERIOD:.0f} s)",
                      busy)):
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        lines.append([name, str(len(ms)), f"{p50:.2f}", f"{p90:.2f}", f"{p99:.2f}",
                      f"{ms.max():.2f}"])
    p99 = float(np.percentile(busy, 99))
    p50 = float(np.percentile(busy, 50))
    total = npoints * nscans * len(channels)
    data_rate = rate * nscans * len(channels) * 8
    peak, _, slope = result.figures(result.written_lag(progress_samples))
    apeak, _, _ = result.figures(result.lag)
    most = max(backlog_mib, default=float("nan"))
    notes = [
        f"server process during the load: {fmt(cpu and cpu / total * 1e6, '.3f')} CPU s/Mpts, "
        f"peak RSS {fmt(rss, '.0f')} MiB (whole server life);",
        f"backlog, sent and not yet written (scan_progress every 0.1 s): max {peak:.2f} s of "
        f"data, trend {slope:+.1f} ms/s; not yet acknowledged: max {apeak:.2f} s; "
        f"backlog_size attribute max {most:.2f} MiB = {most * MiB / data_rate:.2f} s of data "
        f"({len(backlog_mib)} reads); file complete {result.done - result.sent:.2f} s "
        "after the scans ended.",
        ctx.verdict("7 Tango scan_states during 5", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                    "p99 < 50 ms", p99 < 50 and not result.outcome),
    ]
    print_table(f"7. Tango: scan_states read every {PERIOD * 1e3:g} ms during scenario 5's "
                f"load through NexusWriterService ({seconds:g} s"
                + (", --quick" if ctx.quick else "") + ") in ms",
                ["read", "reads", "p50", "p90", "p99", "max"], lines, notes)


# -- scenario 4: lima ----------------------------------------------------------------


def scenario_lima(ctx: Context) -> None:
    """4. Lima: frames in the detector's own files; last frame saved -> VDS complete."""
    nframes = 200 if ctx.quick else 2000
    shape, per_file, per_save = (512, 512), 100, 10
    frame_bytes = shape[0] * shape[1] * 2
    nbytes = nframes * frame_bytes
    log(f"4. Lima: {nframes} frames {shape[0]}x{shape[1]} uint16")
    session = ctx.session("s4")
    path = os.path.join(ctx.tmp, "s4.h5")
    spec = LimaSpec(name="lima0", directory=os.path.join(ctx.tmp, "s4_lima"),
                    prefix="lima0_", shape=shape, frames_per_file=per_file)
    rng = np.random.default_rng(6)
    pool = rng.integers(0, 4096, size=(per_save,) + shape, dtype=np.uint16)
    dataset = channel_path(1, "lima0")
    outcome = ""
    visible = [float("nan")]
    polls = [0]
    stop = threading.Event()
    t_last = float("nan")
    saving = Timing(0.0, 0.0)
    cpu = rss = None

    def poll() -> None:
        while not stop.is_set():
            try:
                with h5py.File(path, "r", locking=False) as f:
                    dset = f[dataset]
                    polls[0] += 1
                    if (dset.shape[0] >= nframes and int(dset[nframes - 1, 0, 0])
                            == (nframes - 1) % 65536 and int(dset[0, 0, 0]) == 0):
                        visible[0] = time.perf_counter()
                        return
            except (OSError, KeyError):
                pass
            time.sleep(0.002)

    writer = Writer(ctx, session)
    reader = threading.Thread(target=poll, name="vds-reader", daemon=True)
    try:
        writer.wait_event("started", 60)
        cpu0 = writer.cpu_seconds()
        saver = LimaFileWriter(spec)
        with Publisher(session, ctx.url) as publisher:
            scan = publisher.create_scan(scan_info(path, nframes, "lima"), name="lima",
                                         number=1)
            scan.add_lima("lima0", directory=spec.directory, prefix=spec.prefix,
                          suffix=spec.suffix, frames_per_file=per_file,
                          path_in_file=spec.path_in_file, dtype="uint16", shape=shape)
            scan.prepare()
            reader.start()
            cpu_save, t_save = time.process_time(), time.perf_counter()
            for first in range(0, nframes, per_save):
                n = min(per_save, nframes - first)
                frames = pool[:n].copy()
                frames[:, 0, 0] = (np.arange(first, first + n) % 65536).astype(np.uint16)
                scan.update_lima("lima0", first + n - 1, saver.last_image_saved)
                saver.save(first, frames)
                scan.update_lima("lima0", first + n - 1, saver.last_image_saved)
            t_last = time.perf_counter()
            saving = Timing(t_last - t_save, time.process_time() - cpu_save)
            scan.end()
        done = writer.wait_event("done", 120)[0]
        if done["status"] != "SUCCEEDED":
            outcome = f"{done['state']} {done['status']}: {done['reason']}"
        reader.join(30)
        if visible[0] != visible[0]:
            outcome = outcome or "the virtual dataset never showed every frame (30 s)"
        cpu = writer.cpu_seconds() - cpu0
        rss = writer.peak()
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        stop.set()
        if reader.is_alive():
            reader.join(30)
        finish(ctx, writer, "lima")
    if outcome:
        ctx.problem(f"lima: {outcome}")
    log("4. Lima: baselines")
    files = sorted({spec.filename(spec.file_number(i)) for i in range(0, nframes, per_file)})
    sources = [(name, spec.path_in_file, min(per_file, nframes - i * per_file))
               for i, name in enumerate(files)]
    vds = baselines.h5_virtual(os.path.join(ctx.tmp, "s4_raw_vds.h5"), sources, shape,
                               np.uint16)
    disk = baselines.disk(ctx.tmp, nbytes)
    h5 = baselines.h5_write(os.path.join(ctx.tmp, "s4_raw.h5"),
                            {"frames": lambda s, e: np.resize(pool, (e - s,) + shape)},
                            nframes, {"frames": np.dtype("u2")}, {"frames": shape})
    delete_session(ctx.client, session)
    for name in files + [path]:
        if os.path.exists(name):
            os.unlink(name)
    delay = visible[0] - t_last
    rows = [
        Row("a", "bare disk, dd + fsync", nframes, nbytes, disk.wall),
        Row("b", "raw h5py, chunk-aligned frames", nframes, nbytes, h5.wall, h5.cpu,
            base="a"),
        Row("c", "detector saving (Lima-style files + events)", nframes, nbytes,
            saving.wall, saving.cpu, base="b"),
        Row("d", f"raw h5py VDS over the {len(files)} files", nframes, nbytes, vds.wall,
            vds.cpu),
        Row("e", "writer: last frame saved -> VDS complete", nframes, nbytes,
            None if outcome else delay, None, None, base="d"),
        Row("f", "writer, whole scan (CPU, RSS)", nframes, nbytes, None, cpu, rss),
    ]
    notes = [
        f"(e): from the last lima file closed and its event published until a reader "
        f"(h5py, locking=False, {polls[0]} opens) sees all {nframes} frames through the "
        f"VDS, the first and last with the right values; MB/s of (e) are not meaningful.",
        ctx.verdict("4 Lima VDS complete after last frame", f"{delay:.3f} s", "<= 1 s",
                    delay <= 1.0 and not outcome),
    ]
    print_rows(f"4. Lima: {nframes} frames {shape[0]}x{shape[1]} uint16, {per_file} per file"
               + scaled(ctx), rows, "b", notes)


# -- scenario 8: latency --------------------------------------------------------------


def scenario_latency(ctx: Context) -> None:
    """8. Publish -> visible to a reader at 10 Hz and at 10 kHz point rates."""
    cases = [("10 Hz, 1 point per send", 30 if ctx.quick else 100, 0.1, 1),
             ("10 kHz, 10 points per send", 20_000 if ctx.quick else 100_000, 1e-4, 10)]
    lines = []
    notes = []
    for name, npoints, interval, block in cases:
        log(f"8. latency: {name}, {npoints} points")
        stats: dict[str, Any] = {}
        writer_latency(ctx.url, ctx.client, ctx.tmp, npoints, interval, block, stats)
        lat = stats.get("latency", np.array([]))
        if stats.get("outcome"):
            ctx.problem(f"latency {name}: {stats['outcome']}")
        if len(lat):
            p50, p90, p99 = np.percentile(lat, [50, 90, 99])
            lines.append([f"writer, {name}", f"{npoints:,}", str(len(lat)), f"{p50:.1f}",
                          f"{p90:.1f}", f"{p99:.1f}", f"{lat.max():.1f}",
                          fmt(stats.get("cpu", float("nan")) / npoints * 1e6, ".2f"),
                          fmt(stats.get("peak"), ".0f")])
            ok = p50 < 100 and p99 < 500 and len(lat) == npoints
        else:
            p50 = p99 = float("nan")
            lines.append([f"writer, {name}", f"{npoints:,}", "0"] + ["-"] * 6)
            ok = False
        notes.append(ctx.verdict(f"8 latency {name.split(',')[0]}",
                                 f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
                                 "p50 < 100 ms, p99 < 500 ms", ok))
    rt = baselines.redis_round_trip(ctx.client, ctx.url, f"raw_rt_{os.getpid()}",
                                    200 if ctx.quick else 1000, 0.002)
    p50, p90, p99 = np.percentile(rt, [50, 90, 99])
    lines.insert(0, ["raw XADD -> blocking XREAD (baseline)", f"{len(rt):,}", str(len(rt)),
                     f"{p50:.2f}", f"{p90:.2f}", f"{p99:.2f}", f"{rt.max():.2f}", "-", "-"])
    print_table("8. Latency: publish -> visible to a reader (h5py, locking=False, one open "
                "per poll) in ms" + (" [--quick: fewer points]" if ctx.quick else ""),
                ["measure", "points", "seen", "p50", "p90", "p99", "max", "CPU s/Mpts",
                 "peak RSS MiB"], lines,
                [f"the writer makes data visible every flush_period "
                 f"({SaveOptions().flush_period:g} s, default): that, not Redis, is the "
                 "floor of these latencies;"] + notes)


SCENARIOS: dict[int, tuple[str, Callable[[Context], None]]] = {
    1: ("0D: 10 channels x 1e6 float64, blocks of 100 and 1000, drain and end to end",
        scenario_0d),
    2: ("many channels: 500 channels x 1e4 points", scenario_many_channels),
    3: ("MCA: 4 x 4096-channel uint32 spectra at 1 kHz for 60 s, backlog",
        scenario_mca),
    4: ("Lima: 2000 frames 512x512 uint16, last frame saved -> VDS complete",
        scenario_lima),
    5: ("eight concurrent scans, 16 channels at 10 kHz each, backlog", scenario_concurrent),
    6: ("a 1e7-point scan: writer peak RSS", scenario_memory),
    7: ("Tango: scan_states every 10 ms during scenario 5's load", scenario_tango),
    8: ("latency publish -> visible at 10 Hz and 10 kHz", scenario_latency),
}
