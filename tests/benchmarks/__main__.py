"""Whole-system benchmark of nexus-writer-service: every scenario of the issue, each
next to the baselines that bound it, measured in the same run.

    python -m tests.benchmarks [--quick] [--scenario N ...] [--repeat N]
                               [--mca-seconds S] [--big] [--blisswriter PATH]
                               [--redis-url URL] [--write-docs docs/benchmarks.rst]

Redis: ``--redis-url``, else the ``REDIS_URL`` environment variable, else an embedded
server started for the run. Scenario 7 also starts the embedded sqlite Tango database
and the ``NexusWriterService`` device server. Files go to a temporary directory
(removed at the end); the bare-disk baseline writes there too. Tables go to stdout,
progress to stderr. The drain and end-to-end measures of scenarios 1 and 2, a
second or less each, are repeated (``--repeat``, 5 by default) and their medians
shown: one run alone varies by a third on a shared machine. ``--quick`` scales sizes
down about 10x (under 2 minutes); the full run takes under 15 minutes, scenario 13
about 8 more. Exit status 1
if a writer problem was seen (a missed target alone is not an error: read the
summary). ``BENCH_LAG_TRACE=1`` also
prints the backlog series of scenarios 3, 5 and 7 to stderr. ``--write-docs PATH``
also writes the tables, as printed, to a documentation page (``docs/benchmarks.rst``).
Scenarios 9 to 12 (compressed writing, :mod:`.bench_compression`) repeat each measure
too and show the spread; ``--mca-seconds`` shortens scenario 10, ``--big`` runs
scenario 1 with 1e8 points (800 MB), on which the writer's CPU is judged.
Scenario 13 (:mod:`.bench_blisswriter`) compares our writer with ESRF's blisswriter
3.0 on the same blissdata scans, on a server of its own with the modules blissdata
needs; ``--blisswriter`` names blisswriter's command (installed apart).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext

import redis

from nexus_writer_service.embedded import EmbeddedRedis

from .bench_writer import machine_facts, print_table
from .docs_page import Recorder, render_page, write_page
from . import bench_blisswriter, bench_compression, system
from .system import Context, log

SCENARIOS = {**system.SCENARIOS, **bench_compression.SCENARIOS, **bench_blisswriter.SCENARIOS}


def build_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {n}. {text}" for n, (text, _) in SCENARIOS.items())
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"scenarios:\n{lines}")
    parser.add_argument("--quick", action="store_true",
                        help="sizes and durations scaled down about 10x")
    parser.add_argument("--scenario", type=int, action="append", choices=sorted(SCENARIOS),
                        metavar="N", help="run only scenario N (repeatable; default: all)")
    parser.add_argument("--repeat", type=int, default=5, metavar="N",
                        help="runs of each drain and end-to-end measure of scenarios 1 and 2; "
                             "tables show their medians (default 5)")
    parser.add_argument("--mca-seconds", type=float, default=None, metavar="S",
                        help="duration of scenario 10 (default 60 s, 10 s with --quick)")
    parser.add_argument("--big", action="store_true",
                        help="scenario 1 with 1e7 points per channel (1e8 in all)")
    parser.add_argument("--blisswriter", default=None, metavar="PATH",
                        help="ESRF's blisswriter 3.0 command, for scenario 13 (default: the "
                             "BLISSWRITER environment variable, else blisswriter on the PATH)")
    parser.add_argument("--redis-url", default=None,
                        help="Redis server to use (default: REDIS_URL, else an embedded one)")
    parser.add_argument("--write-docs", metavar="PATH", default=None,
                        help="also write the tables to this documentation page "
                             "(reStructuredText), e.g. docs/benchmarks.rst")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chosen = sorted(set(args.scenario or SCENARIOS))
    started = time.perf_counter()
    recorder = Recorder()
    machine = ""
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_system_"))
        url = args.redis_url or os.environ.get("REDIS_URL")
        if not url:
            log("starting an embedded Redis")
            url = stack.enter_context(EmbeddedRedis(workdir=os.path.join(tmp, "redis"))
                                      ).url + "/0"
        client = redis.Redis.from_url(url)
        stack.callback(client.close)
        ctx = Context(url, client, tmp, args.quick, max(1, args.repeat),
                      mca_seconds=args.mca_seconds, big=args.big,
                      blisswriter=args.blisswriter)
        machine = machine_facts(client)
        print(machine)
        print(f"mode: {'quick' if args.quick else 'full'}; medians of {ctx.repeat} runs; "
              f"scenarios "
              f"{', '.join(map(str, chosen))}; files in {tmp}", flush=True)
        for number in chosen:
            text, run = SCENARIOS[number]
            t0 = time.perf_counter()
            record = (recorder.section(f"Scenario {number}: {text}") if args.write_docs
                      else nullcontext())
            try:
                with record:
                    run(ctx)
            except Exception as exc:
                ctx.problem(f"scenario {number} could not run: {type(exc).__name__}: {exc}")
                ctx.summary.append((f"{number} {text.split(':')[0]}", "not measured", "-",
                                    "MISSED"))
            log(f"scenario {number} took {time.perf_counter() - t0:.0f} s")
    summary = Recorder()
    with summary.section("Summary"):
        print_table("Summary", ["scenario", "key figure", "target", "result"],
                    [list(row) for row in ctx.summary])
    print()
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    closing = report_problems(ctx.problems)
    if args.write_docs:
        run_text = (f"{'quick' if args.quick else 'full'} run of scenarios "
                    f"{', '.join(map(str, chosen))}, medians of {ctx.repeat} repetitions")
        write_page(args.write_docs, render_page(
            time.strftime("%Y-%m-%d"), run_text, recorder.sections, summary.sections[0].text,
            machine=machine, closing=closing))
        print(f"tables written to {args.write_docs}")
    return 1 if ctx.problems else 0


def report_problems(problems: list[str]) -> str:
    """Print the problems seen (or that there were none); the same in one sentence."""
    if not problems:
        print("no writer problem seen")
        return "No writer problem seen."
    print(f"{len(problems)} problem(s) seen:")
    for text in problems:
        print(f"  - {text}")
    return f"{len(problems)} problem(s) seen: " + "; ".join(problems) + "."


if __name__ == "__main__":
    sys.exit(main())
