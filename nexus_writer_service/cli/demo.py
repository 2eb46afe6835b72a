"""``nexus-writer-demo``: the whole chain on embedded defaults.

Starts an embedded Redis server and a :class:`NexusSessionWriter` (in the main
thread), publishes the simulated scans into the session from another thread, then
prints what a reader gets back from Redis (nodes, points per channel, lima frames,
how each scan ended) and what the writer wrote (state, points, NeXus file). Files
go to ``--root`` (a temporary directory by default, removed at the end unless
``--keep``).

With ``--data-source blissdata`` the scans are published with blissdata 2.x, as
BLISS 2.x publishes them: the embedded Redis loads the RedisJSON and RediSearch
modules and the writer reads the session's blissdata scans (the read back from
Redis, which uses our own reader, is then left out).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from typing import Any

import gevent

from ..data import EventType, get_session_node
from ..data.opener import open_session
from ..embedded import EmbeddedRedis
from ..errors import ConfigurationError, EmbeddedServerError, EventTimeout, NexusWriterError
from ..io.options import SaveOptions
from ..simulation.info import master_filenames
from ..simulation.blissdata_publish import prepare_blissdata_db
from ..subscribers import NexusSessionWriter
from . import simulate

_WRITE_TIMEOUT = 300.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexus-writer-demo", description=__doc__)
    parser.add_argument("--redis-url", help="use this Redis server instead of an embedded one")
    parser.add_argument("--session", default="demo", help="session name (default: demo)")
    parser.add_argument("--scan", action="append",
                        help="scan to simulate (repeatable; default: all, and a sequence)")
    parser.add_argument("--root", help="directory for detector files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep --root's temporary files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-source", choices=("nws", "blissdata"), default="nws",
                        help="publish into our own nws: streams (default) or with "
                             "blissdata 2.x as BLISS 2.x does (the blissdata extra)")
    return parser


#: The name under which the demo reads the scans back from Redis.
_READ_BACK = "nexus_writer_demo_read_back"


def summarize(scan: Any) -> str:
    """One line on what a reader gets from Redis for ``scan``."""
    points: Counter[str] = Counter()
    frames = 0
    nodes: Counter[str] = Counter()
    reason = "?"
    for event, node, data in scan.walk_events(timeout=10, ack_as=_READ_BACK):
        if event is EventType.NEW_NODE:
            nodes[node.type.value] += 1
        elif event is EventType.NEW_DATA and node.type.value == "channel":
            points[node.name] += data.npoints
        elif event is EventType.NEW_DATA and node.type.value == "lima":
            frames = max(frames, data.data.last_image_saved + 1)
        elif event is EventType.END_SCAN:
            reason = data.reason.value
    counts = sorted(set(points.values()))
    span = "-" if not counts else (str(counts[0]) if len(counts) == 1
                                   else f"{counts[0]}..{counts[-1]}")
    return (f"{scan.number:>4} {scan.name:<22.22} {nodes['channel']:>8} {span:>15} "
            f"{frames:>6} {reason:<14} {scan.info.get('title', '')}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    blissdata = args.data_source == "blissdata"
    with ExitStack() as stack:
        url = args.redis_url
        if not url:
            try:
                server = stack.enter_context(EmbeddedRedis(blissdata=blissdata))
            except EmbeddedServerError as exc:
                print(f"nexus-writer-demo: {exc}", file=sys.stderr)
                return 1
            url = server.url + "/0"
            modules = " with the RedisJSON and RediSearch modules" if blissdata else ""
            print(f"embedded Redis{modules} at {url} (log: {server.log_path})")
        root = args.root
        if root is None:
            root = tempfile.mkdtemp(prefix="nws-demo-")
            if not args.keep:
                stack.callback(shutil.rmtree, root, ignore_errors=True)
        sim_args = ["--redis-url", url, "--session", args.session, "--root", root,
                    "--seed", str(args.seed), "--master-files",
                    "--data-source", args.data_source]
        for name in args.scan or ["all", "sequence"]:
            sim_args += ["--scan", name]
        if blissdata:
            try:
                prepare_blissdata_db(url)  # as BLISS's beacon does, before any reader
                source: Any = open_session(args.session, url, "blissdata")
            except ConfigurationError as exc:
                print(f"nexus-writer-demo: {exc}", file=sys.stderr)
                return 1
        else:
            session = get_session_node(args.session, url)
            # the writer's acknowledgements trim what it wrote: the read back below is a
            # reader of its own, registered so that the scans keep their data for it
            session.register_reader(_READ_BACK)
            stack.callback(session.unregister_reader, _READ_BACK)
            start = session.current_position()
            source = session
        writer = NexusSessionWriter(source, options=SaveOptions(allowed_roots=(root,)),
                                    resume=False)
        writer.start(wait=True, timeout=30)
        try:
            code = _simulate_beside(writer, sim_args)
        finally:
            writer.stop(wait=True, timeout=_WRITE_TIMEOUT)
        if code:
            return code
        if not blissdata:
            print(f"\nread back from Redis (session {args.session!r}):")
            print(f"{'#':>4} {'scan':<22} {'channels':>8} {'points/channel':>15} "
                  f"{'frames':>6} {'end':<14} title")
            try:
                for event, scan, _ in session.walk_on_new_events(
                        from_position=start, timeout=0.5, poll_interval=0.05):
                    if event is EventType.END_SCAN:
                        print(summarize(scan))
            except EventTimeout:
                pass
            except NexusWriterError as exc:
                print(f"nexus-writer-demo: {exc}", file=sys.stderr)
                return 1
        print(f"\nwritten by the NeXus writer from {args.data_source} scans (files under "
              f"{root}{'' if args.keep or args.root else ', removed at exit: --keep keeps them'}):")
        print(f"{'scan':<24} {'state':<6} {'status':<10} {'points':>8} file")
        failed = False
        for record in writer.scans():
            done, _ = record.writer.progress
            failed = failed or record.state.value != "OFF"
            print(f"{record.name:<24.24} {record.state.value:<6} "
                  f"{record.writer.status.value:<10} {done:>8} "
                  f"{','.join(record.writer.urls) or record.writer.state_reason}")
        masters = {level: path for level, path in
                   master_filenames(root, args.session).items() if os.path.exists(path)}
        if masters:
            print("\nmaster files (every scan linked as <dataset file>_<N.M>):")
            for level, path in masters.items():
                print(f"{level:<24} {path}")
        if failed:
            return 1
    return 0


def _simulate_beside(writer: NexusSessionWriter, sim_args: list[str]) -> int:
    """Publish in a thread while the writer's greenlets run in this one; wait for both."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(simulate.main(sim_args)),
                              name="demo-publisher")
    thread.start()
    try:
        while thread.is_alive():
            gevent.sleep(0.1)
    finally:
        thread.join()
    deadline = time.monotonic() + _WRITE_TIMEOUT
    while any(not record.writer.done() for record in writer.scans()):
        if time.monotonic() > deadline:
            print("nexus-writer-demo: the writer did not finish in time", file=sys.stderr)
            return 1
        gevent.sleep(0.1)
    return result[0] if result else 1


if __name__ == "__main__":
    sys.exit(main())
