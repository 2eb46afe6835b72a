"""Compressed writing: scenarios 9 to 12 of ``python -m tests.benchmarks``.

9. 0D under BLISS's default chunk options (gzip-byteshuffle above 1 MB): 10
   channels x 2e6 float64 realistic counts, drain (published first) and end to end
   (publisher beside the writer), against raw h5py writing the same arrays through
   HDF5's own gzip + shuffle, one thread, same chunks and level.
10. MCA under gzip-byteshuffle: 4 x 4096 uint32 spectra at 1 kHz, backlog.
11. Eight concurrent scans under gzip-byteshuffle, backlog.
12. lz4-bitshuffle: the writer's input throughput against the bare disk's fsync'd
    bandwidth.

Every row has the writer's CPU per MB of input, the bytes on disk and the
compression ratio (input bytes over file bytes). Each measure of 9 and 12 is repeated
(``--repeat``); the tables show the median and the spread (min-max) of each figure,
and ratios are taken run by run against the baseline measured beside them.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable, Mapping

import h5py
import numpy as np

from nexus_writer_service.data import Publisher, get_session_node
from nexus_writer_service.io.chunking import CLASSIC
from nexus_writer_service.io.codecs import GZIP_LEVEL
from nexus_writer_service.io.layout import chunk_rows
from nexus_writer_service.io.nexus import filter_options

from . import baselines
from .baselines import Timing, timed
from .bench_writer import channel_path, check_file, delete_session, print_table, publish_all
from .bench_writer import spread as shared_spread
from .system import (
    READER, Context, Writer, finish, log, paced_notes, paced_rows, paced_writer_run,
    print_rows, scan_load, writer_timing)

MB = 1e6


def counts(nchannels: int, npoints: int, seed: int) -> dict[str, np.ndarray]:
    """Realistic 0D data: a motor position, an elapsed time, and counters (Poisson
    counts around rates from 10 to 1e5 per point, varying along the scan)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, npoints)
    data = {"ch0": np.round(-2.5 + 5.0 * x, 6), "ch1": np.arange(npoints) * 1e-3}
    for i in range(2, nchannels):
        rate = 10.0 ** (1 + i % 5) * (1.0 + 0.5 * np.sin(2 * np.pi * (i + 1) * x))
        data[f"ch{i}"] = rng.poisson(rate).astype(np.float64)
    return data


def spectra(npoints: int, nchannels: int, seed: int) -> np.ndarray:
    """Realistic MCA spectra: Poisson counts of a few peaks on a background."""
    rng = np.random.default_rng(seed)
    energy = np.arange(nchannels)
    shape = 5.0 + 40.0 * np.exp(-energy / 800.0)
    for centre, width, height in ((600, 12, 800.0), (1400, 18, 300.0), (2200, 25, 120.0)):
        shape += height * np.exp(-0.5 * ((energy - centre) / width) ** 2)
    return rng.poisson(shape, (npoints, nchannels)).astype(np.uint32)


def create_bliss_scan(publisher: Publisher, path: str, data: Mapping[str, np.ndarray],
                      label: str, chunk_options: Mapping[str, Any]) -> Any:
    """A scan whose scan_info carries BLISS's ``writer_options``."""
    npoints = len(next(iter(data.values())))
    info = {"title": label, "filename": path, "npoints": npoints,
            "writer_options": {"chunk_options": dict(chunk_options),
                               "separate_scan_files": None}}
    scan = publisher.create_scan(info, name=label, number=1)
    for name in data:
        scan.add_channel(name, "f8")
    scan.prepare()
    return scan


def expected_filters(path: str, data: Mapping[str, np.ndarray], scheme: str) -> str:
    """'' when every channel's dataset has the filters of ``scheme``."""
    wanted = filter_options(scheme)
    with h5py.File(path, "r", locking=False) as f:
        for name in data:
            dset = f[channel_path(1, name)]
            got = {"compression": dset.compression, "shuffle": dset.shuffle}
            code = wanted.get("compression")
            if (code == "gzip") != (got["compression"] == "gzip") \
                    or bool(wanted.get("shuffle")) != got["shuffle"] \
                    or (isinstance(code, int) and str(code) not in dset._filters):
                return f"{name} has filters {dset._filters}, not those of {scheme}"
    return ""


def writer_run(ctx: Context, data: Mapping[str, np.ndarray], block: int, label: str,
               chunk_options: Mapping[str, Any], scheme: str, drain: bool,
               options: tuple[str, ...] = ()) -> dict[str, Any]:
    """One writer process. ``drain``: the scan is published first, then the writer
    started on it (time from its start to the file complete); else the writer
    listens and the scan is published as fast as possible (time from the first block
    sent to the file complete). The file is checked bit-exact, and its size kept."""
    session = ctx.session(label)
    path = os.path.join(ctx.tmp, f"{label}.h5")
    nbytes = sum(values.nbytes for values in data.values())
    out: dict[str, Any] = {"outcome": ""}
    writer = Writer(ctx, session, wait_signal=drain, options=options)
    try:
        if drain:
            writer.wait_ready()
            get_session_node(session, ctx.url).register_reader(READER)
        else:
            writer.wait_event("started", 60)
        with Publisher(session, ctx.url) as publisher:
            scan = create_bliss_scan(publisher, path, data, label, chunk_options)
            if drain:
                publish_all(scan, data, block)
                scan.end()
                baselines.warm_up_memory(ctx.tmp, nbytes)
                cpu = writer.cpu_times()
                t0 = time.time()
                writer.go()
            else:
                baselines.warm_up_memory(ctx.tmp, nbytes)
                cpu = writer.cpu_times()
                t0 = time.time()
                publish_all(scan, data, block)
                scan.end()
        done = writer.wait_event("done", 600)[0]
        out["writer"] = writer_timing(done["t"] - t0, writer, cpu)
        if done["status"] != "SUCCEEDED":
            out["outcome"] = f"{done['state']} {done['status']}: {done['reason']}"
    except Exception as exc:
        out["outcome"] = f"{type(exc).__name__}: {exc}"
    finally:
        finish(ctx, writer, label)
    if not out["outcome"]:
        out["outcome"] = (check_file(path, 1, dict(data), content=True)
                          or expected_filters(path, data, scheme))
    if out["outcome"]:
        ctx.problem(f"{label}: {out['outcome']}")
    if os.path.exists(path):
        out["stored"] = os.path.getsize(path)
        os.unlink(path)
    delete_session(ctx.client, session)
    return out


def raw_h5py(ctx: Context, data: Mapping[str, np.ndarray], rows: int, scheme: str,
             label: str) -> dict[str, Any]:
    """Raw h5py: one resizable dataset per channel with the scheme's filters, written
    chunk by chunk through HDF5's own pipeline, on this one thread."""
    path = os.path.join(ctx.tmp, f"raw_{label}.h5")
    options = filter_options(scheme)
    npoints = len(next(iter(data.values())))

    def write() -> None:
        with h5py.File(path, "w") as f:
            for name, values in data.items():
                dset = f.create_dataset(name, shape=(0,), maxshape=(None,), dtype="f8",
                                        chunks=(rows,), **options)
                for s in range(0, npoints, rows):
                    stop = min(s + rows, npoints)
                    dset.resize(stop, axis=0)
                    dset[s:stop] = values[s:stop]

    baselines.warm_up_memory(ctx.tmp, sum(v.nbytes for v in data.values()))
    out = {"h5py": timed(write), "outcome": ""}
    out["stored"] = os.path.getsize(path)
    os.unlink(path)
    return out


def spread(values: list[float], spec: str = ".2f") -> str:
    """``median [min-max]`` of the runs that have a value."""
    return shared_spread(values, spec, "[]")


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def table(title: str, nbytes: int, rows: list[tuple[str, list[dict[str, Any]], str]],
          ratios: dict[str, list[float]], notes: list[str]) -> None:
    """One row per measure: its runs' wall time, input MB/s, ratio to the baseline
    (run by run), writer CPU per MB of input, MB on disk and compression ratio."""
    lines = []
    for name, runs, key in rows:
        ok = [r for r in runs if not r["outcome"] and key in r]
        walls = [r[key].wall for r in ok]
        cpu = [r[key].cpu / (nbytes / MB) for r in ok]
        stored = [r["stored"] / MB for r in ok if "stored" in r]
        lines.append([
            name, f"{nbytes / MB:.0f}", spread(walls, ".3f"),
            spread([nbytes / MB / w for w in walls], ".0f"),
            spread(ratios.get(name, []), ".2f") + ("x" if ratios.get(name) else ""),
            spread(cpu, ".4f"), spread(stored, ".1f"),
            spread([nbytes / MB / s for s in stored], ".2f")])
    print_table(title, ["measure", "MB in", "wall s", "MB/s in", "ratio", "CPU s/MB",
                        "MB on disk", "compr."], lines, notes)


def by_run(first: list[dict[str, Any]], second: list[dict[str, Any]], key1: str, key2: str,
           ratio: Callable[[float, float], float]) -> list[float]:
    out = []
    for a, b in zip(first, second):
        if a["outcome"] or b["outcome"] or key1 not in a or key2 not in b:
            continue
        out.append(ratio(a[key1].wall, b[key2].wall))
    return out


def scenario_0d_gzip(ctx: Context) -> None:
    """9. 0D under BLISS's defaults (gzip-byteshuffle above 1 MB)."""
    nch, npoints, block = 10, 200_000 if ctx.quick else 2_000_000, 1000
    data = counts(nch, npoints, 9)
    nbytes = nch * npoints * 8
    rows = chunk_rows(8, CLASSIC.chunk_nbytes, npoints, CLASSIC.chunk_split)
    log(f"9. 0D gzip-byteshuffle: {nch} x {npoints:,} float64 counts, chunks of {rows}")
    base, drains, ends, pipeline = [], [], [], []
    for i in range(ctx.repeat):
        base.append(raw_h5py(ctx, data, rows, "gzip-byteshuffle", f"s9_{i}"))
        drains.append(writer_run(ctx, data, block, f"s9_drain_{i}", {}, "gzip-byteshuffle",
                                 True))
        ends.append(writer_run(ctx, data, block, f"s9_e2e_{i}", {}, "gzip-byteshuffle",
                               False))
        pipeline.append(writer_run(ctx, data, block, f"s9_hdf5_{i}", {}, "gzip-byteshuffle",
                                   True, ("--compression-threads", "0")))
        log(f"run {i}: raw h5py {base[-1]['h5py'].wall:.2f} s, drain "
            f"{drains[-1].get('writer', Timing(float('nan'), 0)).wall:.2f} s, end to end "
            f"{ends[-1].get('writer', Timing(float('nan'), 0)).wall:.2f} s")
    drain_ratio = by_run(drains, base, "writer", "h5py", lambda w, b: w / b)
    # throughput over the baseline's: (bytes / our wall) / (bytes / its wall)
    end_ratio = by_run(ends, base, "writer", "h5py", lambda w, b: b / w)
    hdf5_ratio = by_run(pipeline, base, "writer", "h5py", lambda w, b: w / b)
    names = ("(a) raw h5py, HDF5 gzip 4 + shuffle, 1 thread", "(b) writer drain",
             "(c) writer end to end", "(d) writer drain, compression_threads=0")
    dr, er = median(drain_ratio), median(end_ratio)
    notes = [
        f"ratio: (b), (d) wall over (a)'s of the same run; (c) throughput over (a)'s "
        f"(a's wall over c's); chunks of {rows} points ({rows * 8 // 1024} KiB), gzip level "
        f"{GZIP_LEVEL}, BLISS's chunk_options {{}};",
        ctx.verdict("9 drain, gzip-byteshuffle", f"{dr:.2f}x raw h5py's wall",
                    "<= 0.7x", dr <= 0.7),
        ctx.verdict("9 end to end, gzip-byteshuffle", f"{er:.2f}x raw h5py's throughput",
                    ">= 1.2x", er >= 1.2),
    ]
    table(f"9. 0D under BLISS's defaults (gzip-byteshuffle): {nch} channels x {npoints:,} "
          f"float64 counts, blocks of {block}, {ctx.repeat} runs: median [min-max]",
          nbytes, [(names[0], base, "h5py"), (names[1], drains, "writer"),
                   (names[2], ends, "writer"), (names[3], pipeline, "writer")],
          {names[1]: drain_ratio, names[2]: end_ratio, names[3]: hdf5_ratio}, notes)


def scenario_lz4_disk(ctx: Context) -> None:
    """12. lz4-bitshuffle: the writer's input throughput against the bare disk."""
    nch, npoints, block = 10, 200_000 if ctx.quick else 2_000_000, 1000
    data = counts(nch, npoints, 12)
    nbytes = nch * npoints * 8
    rows = chunk_rows(8, CLASSIC.chunk_nbytes, npoints, CLASSIC.chunk_split)
    options = {"compression_scheme": "lz4-bitshuffle"}
    log(f"12. lz4-bitshuffle vs disk: {nch} x {npoints:,} float64 counts")
    disks, base, drains, ends = [], [], [], []
    for i in range(ctx.repeat):
        disks.append({"disk": baselines.disk(ctx.tmp, nbytes), "outcome": ""})
        base.append(raw_h5py(ctx, data, rows, "lz4-bitshuffle", f"s12_{i}"))
        drains.append(writer_run(ctx, data, block, f"s12_drain_{i}", options,
                                 "lz4-bitshuffle", True))
        ends.append(writer_run(ctx, data, block, f"s12_e2e_{i}", options, "lz4-bitshuffle",
                               False))
    # input throughput over the disk's: disk wall over ours
    drain_ratio = by_run(drains, disks, "writer", "disk", lambda w, d: d / w)
    end_ratio = by_run(ends, disks, "writer", "disk", lambda w, d: d / w)
    h5_ratio = by_run(base, disks, "h5py", "disk", lambda w, d: d / w)
    names = ("(a) bare disk, dd + fsync", "(b) raw h5py, HDF5 lz4-bitshuffle, 1 thread",
             "(c) writer drain", "(d) writer end to end")
    notes = [
        "ratio: input MB/s over the bare disk's MB/s of the same run (disk wall over "
        "this row's);",
        ctx.verdict("12 drain, lz4-bitshuffle", f"{median(drain_ratio):.2f}x the disk's "
                    "bandwidth", ">= 0.8x", median(drain_ratio) >= 0.8),
        f"end to end: {median(end_ratio):.2f}x the disk's bandwidth (publisher beside the "
        "writer on the same 2 cores)",
    ]
    table(f"12. lz4-bitshuffle against the disk: {nch} channels x {npoints:,} float64 "
          f"counts, {ctx.repeat} runs: median [min-max]", nbytes,
          [(names[0], disks, "disk"), (names[1], base, "h5py"), (names[2], drains, "writer"),
           (names[3], ends, "writer")],
          {names[1]: h5_ratio, names[2]: drain_ratio, names[3]: end_ratio}, notes)


def paced_compressed(ctx: Context, number: int, what: str, label: str, nscans: int,
                     channels: dict[str, tuple[str, tuple[int, ...]]],
                     pool: dict[str, np.ndarray], rate: float, block: int, seconds: float,
                     title: str) -> None:
    """A paced scenario (see system.paced_writer_run) with the writer compressing
    every dataset with gzip-byteshuffle (the operator's session option)."""
    options = ("--compression", "gzip-byteshuffle")
    run = paced_writer_run(ctx, label, what, nscans, channels, pool, rate, block, seconds,
                           options)
    result, cpu, rss, events, size, samples = run
    npoints = int(rate * seconds)
    point_bytes = sum(np.dtype(dt).itemsize * int(np.prod(shape))
                      for dt, shape in channels.values())
    nbytes = npoints * point_bytes * nscans
    data_rate = rate * point_bytes * nscans
    log(f"{number}. baselines")
    disk = baselines.disk(ctx.tmp, nbytes)
    points = npoints * nscans * len(channels)
    rows = paced_rows(result, points, disk, Timing(float("nan"), float("nan")),
                      Timing(float("nan"), float("nan")), Timing(float("nan"), float("nan")),
                      Timing(0, cpu) if cpu is not None else None, rss,
                      "writer, gzip-byteshuffle (first block -> all files complete)")
    rows = [row for row in rows if row.key in ("a", "e", "f")]
    stored = result.stored / MB if result.stored else float("nan")
    notes = paced_notes(ctx, f"{number} {what}, gzip-byteshuffle", result,
                        result.written_lag(samples),
                        f"max {events:.0f} events, {size:.1f} MiB = "
                        f"{size * (1 << 20) / data_rate:.2f} s of data", data_rate)
    notes.insert(0, f"writer CPU {cpu / (nbytes / MB) if cpu else float('nan'):.4f} s per MB "
                    f"in; {nbytes / MB:.0f} MB in, {stored:.1f} MB on disk, compression "
                    f"{nbytes / MB / stored if stored == stored else float('nan'):.2f}x")
    print_rows(title, rows, None, notes)


def scenario_mca_gzip(ctx: Context) -> None:
    """10. MCA under gzip-byteshuffle: 4 x 4096 uint32 at 1 kHz, backlog."""
    seconds = ctx.mca_seconds or (10.0 if ctx.quick else 60.0)
    rate, block, ndet = 1000.0, 50, 4
    channels: dict[str, tuple[str, tuple[int, ...]]] = {
        f"mca{d}": ("u4", (4096,)) for d in range(ndet)}
    base = spectra(1000, 4096, 10)
    pool = {name: np.roll(base, d, axis=0) for d, name in enumerate(channels)}
    log(f"10. MCA gzip-byteshuffle: {ndet} x 4096 uint32 at {rate:g} Hz for {seconds:g} s")
    paced_compressed(ctx, 10, "MCA at 1 kHz", "s10", 1, channels, pool, rate, block, seconds,
                     f"10. MCA under gzip-byteshuffle: {ndet} detectors x 4096-channel "
                     f"uint32 spectra (Poisson counts) at {rate:g} Hz for {seconds:g} s, "
                     f"blocks of {block}")


def scenario_concurrent_gzip(ctx: Context) -> None:
    """11. Eight concurrent scans under gzip-byteshuffle, backlog."""
    nscans, channels, _, rate, block, seconds = scan_load(ctx.quick)
    pool = counts(len(channels), 10_000, 11)
    log(f"11. {nscans} concurrent scans, gzip-byteshuffle, {len(channels)} channels at "
        f"{rate:g} Hz for {seconds:g} s")
    paced_compressed(ctx, 11, "eight scans at 10 kHz", "s11", nscans, channels, pool, rate,
                     block, seconds,
                     f"11. Concurrent under gzip-byteshuffle: {nscans} scans x "
                     f"{len(channels)} float64 counters at {rate / 1e3:g} kHz for "
                     f"{seconds:g} s in one session writer, blocks of {block}")


SCENARIOS: dict[int, tuple[str, Callable[[Context], None]]] = {
    9: ("0D under BLISS's defaults (gzip-byteshuffle): 10 x 2e6 float64 counts, drain and "
        "end to end vs raw h5py", scenario_0d_gzip),
    10: ("MCA under gzip-byteshuffle: 4 x 4096 uint32 at 1 kHz, backlog", scenario_mca_gzip),
    11: ("eight concurrent scans under gzip-byteshuffle, backlog", scenario_concurrent_gzip),
    12: ("lz4-bitshuffle: writer input throughput vs the bare disk", scenario_lz4_disk),
}
