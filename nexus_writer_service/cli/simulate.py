"""``nexus-writer-simulate``: publish realistic simulated scans into a session in Redis.

Prints one line per scan published (type, number, Redis key, points, end reason,
duration). Exit status: 0 when every scan was published, 2 for invalid arguments
(unknown scan, no Redis URL, bad numbers), 1 when Redis cannot be reached or
publishing fails, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import redis

from ..errors import ConfigurationError, NexusWriterError
from .arguments import Parser, non_negative_float, non_negative_int, positive_int
from ..simulation import (
    DATA_SOURCES,
    LIMA_FILE_FORMATS,
    SCAN_TYPES,
    SEQUENCE_TYPES,
    PublishedScan,
    SimulationOptions,
    default_root,
    simulate,
)

__all__ = ["main", "build_parser"]

PROG = "nexus-writer-simulate"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _scan_name(text: str) -> str:
    if text != "all" and text not in SCAN_TYPES and text not in SEQUENCE_TYPES:
        raise argparse.ArgumentTypeError(
            f"unknown scan {text!r}; choose from "
            f"{', '.join(list(SCAN_TYPES) + list(SEQUENCE_TYPES))} or 'all'")
    return text


def build_parser() -> argparse.ArgumentParser:
    scans = "\n".join(f"  {name:<16} {t.description}" for name, t in
                      list(SCAN_TYPES.items()) + list(SEQUENCE_TYPES.items()))
    parser = Parser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Publish realistic, deterministic simulated scans into a session in Redis.",
        epilog=f"scan types:\n{scans}",
    )
    parser.add_argument("--redis-url", help="Redis URL (default: the REDIS_URL environment "
                        "variable), e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--session", default="demo", help="session name (default: demo)")
    parser.add_argument("--scan", action="append", type=_scan_name, metavar="NAME",
                        help="scan type to publish, repeatable, or 'all' (the default)")
    parser.add_argument("--npoints", type=positive_int,
                        help="points per scan (default: each scan type's own size)")
    parser.add_argument("--count-time", type=non_negative_float, default=0.0,
                        help="seconds per point; 0 publishes as fast as possible (default)")
    parser.add_argument("--nchannels", type=positive_int, default=128,
                        help="counters of the many_channels scan (default: 128)")
    parser.add_argument("--mca-detectors", type=positive_int, default=1,
                        help="detectors of the mca scan's MCA controller (default: 1)")
    parser.add_argument("--repeat", type=positive_int, default=1,
                        help="publish the selection this many times (default: 1)")
    parser.add_argument("--root", help="directory of lima files and of the NeXus files "
                        f"scan_info asks for (default: {default_root()})")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="random seed; the same seed publishes the same data (default: 0)")
    parser.add_argument("--lima-format", choices=LIMA_FILE_FORMATS, default="hdf5",
                        help="file format of the simulated lima detector (default: hdf5)")
    parser.add_argument("--lima-frames-per-file", type=positive_int, default=10,
                        metavar="N", help="frames per lima file (default: 10)")
    parser.add_argument("--lima-frames-per-acquisition", type=non_negative_int, default=0,
                        metavar="N", help="frames per lima acquisition: a scan runs several, "
                        "each starting a new file (default: 0, one acquisition per scan)")
    parser.add_argument("--lima-first-file-number", type=non_negative_int, default=0,
                        metavar="N", help="number of the first lima file (default: 0)")
    parser.add_argument("--master-files", action="store_true",
                        help="each scan names a dataset collection and a proposal master "
                             "file (nexuswriter.masterfiles), as BLISS does")
    parser.add_argument("--data-source", choices=DATA_SOURCES, default="nws",
                        help="publish into our own nws: streams (default), or with "
                             "blissdata 2.x as BLISS 2.x does (needs the blissdata extra and "
                             "a Redis with the RedisJSON and RediSearch modules: "
                             "nexus-writer-embedded redis --blissdata)")
    parser.add_argument("--truth", metavar="FILE",
                        help="write everything published to this HDF5 file")
    parser.add_argument("--lease", type=float, default=10.0,
                        help="publisher lease in seconds (default: 10)")
    parser.add_argument("--reconnect-timeout", type=float, default=None, metavar="SECONDS",
                        help="how long a dropped connection to Redis is retried before "
                             "the points not stored are given up, named in an error and "
                             "in the scan's end (default: the lease)")
    parser.add_argument("--block-size", type=positive_int, default=1000,
                        help="most points per Redis round trip (default: 1000)")
    parser.add_argument("--log", default="WARNING", type=str.upper, choices=LOG_LEVELS,
                        metavar="LEVEL", help="log level (default: WARNING)")
    return parser


def _print_line(scan: PublishedScan) -> None:
    print(scan.summary(), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if not (args.redis_url or os.environ.get("REDIS_URL")):
        print(f"{PROG}: error: no Redis URL: pass --redis-url redis://HOST:PORT/DB or set "
              "the REDIS_URL environment variable", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = SimulationOptions(
        session=args.session, scans=tuple(args.scan or ()), redis_url=args.redis_url,
        root=args.root, npoints=args.npoints, count_time=args.count_time,
        nchannels=args.nchannels, mca_detectors=args.mca_detectors, repeat=args.repeat,
        seed=args.seed, truth=args.truth,
        lease=args.lease, reconnect_timeout=args.reconnect_timeout,
        block_size=args.block_size, lima_format=args.lima_format,
        lima_frames_per_file=args.lima_frames_per_file,
        lima_frames_per_acquisition=args.lima_frames_per_acquisition,
        lima_first_file_number=args.lima_first_file_number,
        master_files=args.master_files,
        data_source=args.data_source,
    )
    try:
        simulate(options, on_published=_print_line)
    except ConfigurationError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (NexusWriterError, OSError, redis.RedisError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
