"""Hostile scale: what a scan at the limits costs the other scans of its session, and
the writer process's memory.

    python -m tests.benchmarks.bench_hostile [--channels N] [--repeat N] [--info-mb N]

Starts an embedded Redis and ``NexusSessionWriter`` as a child process (default save
options). Each round publishes a good small scan (a loopscan of 10 points, two
channels) and times it from its creation until its file says SUCCEEDED to a reader
without locking: once alone (the baseline), once right after a scan declaring
``--channels`` channels (the ``max_channels`` limit by default: 10,000) whose datasets
the writer creates on the session's one HDF5 thread meanwhile. The table shows the
medians, the spread (min-max) and their ratio. Target (issue): the good scan keeps
its normal latency (under 2 s) while the big one is written.

Memory: the writer's RSS (``VmRSS``) after the baseline scans, after the big scans,
and after a scan whose scan_info takes ``--info-mb`` MiB (refused by its size).
Target (issue): RSS returns within 200 MB of its level before the hostile scans.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import redis

from nexus_writer_service.data import Publisher
from nexus_writer_service.embedded import EmbeddedRedis

from .bench_writer import WriterProcess

SESSION = "hostile"
_TIME = "timer:elapsed_time"
_DIODE = "diode:diode1"
LATENCY_TARGET_S = 2.0
RSS_TARGET_MB = 200.0


def _status(filename: Path, entry: str) -> bytes:
    try:
        with h5py.File(filename, "r", locking=False) as h5:
            return bytes(h5[f"{entry}/writer/status"][()])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        return b""


def _wait_status(filename: Path, entry: str, timeout: float = 300.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(filename, entry)
        if status in (b"SUCCEEDED", b"FAILED"):
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"{filename}::{entry} not finished after {timeout} s")
        time.sleep(0.005)


def _info(filename: Path, npoints: int, scalars: list[str], **extra: Any) -> dict[str, Any]:
    return {"title": f"loopscan {npoints} 0", "npoints": npoints, "filename": str(filename),
            "acquisition_chain": {"timer": {"master": {"scalars": [_TIME]},
                                            "scalars": scalars}}, **extra}


def good_scan(publisher: Publisher, filename: Path, number: int) -> float:
    """Seconds from creating a small scan until its file says it succeeded."""
    started = time.perf_counter()
    scan = publisher.create_scan(_info(filename, 10, [_DIODE]), name="loopscan",
                                 number=number)
    scan.add_channel(_TIME, "float64", subscan="timer", unit="s")
    scan.add_channel(_DIODE, "float64", subscan="timer")
    scan.prepare()
    scan.send({_TIME: np.arange(10.0), _DIODE: np.ones(10)})
    scan.end()
    status = _wait_status(filename, f"{number}.1")
    elapsed = time.perf_counter() - started
    if status != b"SUCCEEDED":
        raise RuntimeError(f"good scan {number} ended {status!r}")
    return elapsed


def big_scan(publisher: Publisher, filename: Path, number: int, channels: int) -> Any:
    """Declare ``channels`` scalar channels (with the timer), send 10 points, end."""
    names = [f"diode:d{i}" for i in range(channels - 1)]
    scan = publisher.create_scan(_info(filename, 10, names), name="bigscan", number=number)
    scan.add_channel(_TIME, "float64", subscan="timer", unit="s")
    for name in names:
        scan.add_channel(name, "float64", subscan="timer")
    scan.prepare()
    data = np.arange(10.0)
    scan.send({name: data for name in [_TIME, *names]})
    scan.end()
    return scan


def run(channels: int, repeat: int, info_mb: float, work: Path) -> dict[str, Any]:
    redis_server = EmbeddedRedis(workdir=work / "redis")
    redis_server.start()
    url = redis_server.url + "/0"
    data = work / "data"
    data.mkdir()
    writer = WriterProcess(url, SESSION, str(data), extra=(
        "--required-disk-space", "0", "--recommended-disk-space", "0"))
    admin = redis.Redis.from_url(url)
    results: dict[str, Any] = {"alone": [], "beside": [], "big": [], "rss": {}}
    try:
        writer.wait_ready()
        number = 0
        with Publisher(SESSION, url, lease=30.0, retention=600) as publisher:
            for _ in range(2):  # warm up
                number += 1
                good_scan(publisher, data / f"warm{number}.h5", number)
            for _ in range(repeat):
                number += 1
                results["alone"].append(good_scan(publisher, data / f"alone{number}.h5",
                                                  number))
            time.sleep(1.0)
            results["rss"]["before the big scans"] = writer.status("VmRSS")
            for _ in range(repeat):
                number += 1
                big_file, big_number = data / f"big{number}.h5", number
                started = time.perf_counter()
                big_scan(publisher, big_file, number, channels)
                number += 1
                results["beside"].append(good_scan(publisher, data / f"beside{number}.h5",
                                                   number))
                if _wait_status(big_file, f"{big_number}.1") != b"SUCCEEDED":
                    raise RuntimeError(f"big scan {big_number} did not succeed: {writer.errors()}")
                results["big"].append(time.perf_counter() - started)
            time.sleep(2.0)
            results["rss"]["after the big scans"] = writer.status("VmRSS")
            number += 1
            refused = data / f"info{number}.h5"
            scan = publisher.create_scan(_info(refused, 10, [], comment="x" * int(
                info_mb * (1 << 20))), name="infoscan", number=number)
            scan.add_channel(_TIME, "float64", subscan="timer")
            scan.end()
            number += 1
            good_scan(publisher, data / f"after{number}.h5", number)
            time.sleep(1.0)
            results["rss"][f"after a {info_mb:g} MiB scan_info"] = writer.status("VmRSS")
            results["rss"]["peak (VmHWM)"] = writer.status("VmHWM")
            results["refused file"] = refused.exists()
        if writer.process.poll() is not None:
            raise RuntimeError("the writer exited")
    finally:
        writer.stop()
        admin.close()
        redis_server.cleanup()
    return results


def _stats(values: list[float]) -> str:
    ms = np.array(values) * 1e3
    return f"{np.median(ms):>10.0f}{ms.min():>10.0f}{ms.max():>10.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_hostile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--info-mb", type=float, default=50.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_hostile_") as tmp:
        results = run(args.channels, args.repeat, args.info_mb, Path(tmp))
    print(f"\ngood scan (10 points, 2 channels), creation -> SUCCEEDED in its file, "
          f"{args.repeat} runs each")
    print(f"{'':<44}{'p50 ms':>10}{'min ms':>10}{'max ms':>10}")
    print(f"{'alone (baseline)':<44}{_stats(results['alone'])}")
    print(f"{f'beside a scan of {args.channels} channels':<44}{_stats(results['beside'])}")
    print(f"{f'the scan of {args.channels} channels itself':<44}{_stats(results['big'])}")
    ratio = float(np.median(results["beside"]) / np.median(results["alone"]))
    worst = max(results["beside"])
    print(f"\nratio beside / alone (medians): {ratio:.1f}; worst beside: {worst:.2f} s "
          f"(target < {LATENCY_TARGET_S:g} s: {'met' if worst < LATENCY_TARGET_S else 'missed'})")
    print("\nwriter RSS")
    for label, mib in results["rss"].items():
        print(f"{label:<44}{mib:>10.0f} MiB")
    grown = results["rss"][f"after a {args.info_mb:g} MiB scan_info"] - \
        results["rss"]["before the big scans"]
    print(f"grown over the hostile scans: {grown:.0f} MiB (target < {RSS_TARGET_MB:g} MB: "
          f"{'met' if grown < RSS_TARGET_MB else 'missed'}); scan_info scan refused, no "
          f"file: {'yes' if not results['refused file'] else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
