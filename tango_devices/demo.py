"""``nexus-writer-demo``: the whole product on embedded defaults, in about a minute.

1. Redis: the server named by ``--redis-url`` or ``REDIS_URL``, else an embedded one.
2. Tango: the database named by ``TANGO_HOST``, else the embedded sqlite database.
3. Registers a ``NexusWriter`` for the session (``RegisterNexusWriter``), starts the
   real ``NexusWriterService`` as a child process and waits until the device is ON.
4. Publishes a representative set of simulated scans, showing the writer's progress
   as Tango clients see it, and waits for the writer through Tango reads.
5. Prints one line per scan: state, points, file and the ``nxcheck`` verdict.

Files stay in a new folder ``--root/<date-time>`` per run (``--root`` defaults to
``./nexus-writer-demo-data``): open them with silx (``silx view <folder>``).
``--keep-running`` leaves Redis, the database and the server up for exploration
(jive, silx, Tango clients) until Ctrl-C. Every process the demo
starts is stopped by its PID when it ends or on Ctrl-C. ``--no-tango`` runs the
session writer in this process instead (no Tango at all). ``--data-source
blissdata`` publishes the scans with blissdata 2.x, as BLISS 2.x does: the embedded
Redis loads the RedisJSON and RediSearch modules (the ``blissdata`` extra) and the
device reads them with ``data_source`` ``blissdata``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import tango

from nexus_writer_service.cli import demo as local_demo
from nexus_writer_service.cli.arguments import Parser
from nexus_writer_service.embedded import EmbeddedRedis, EmbeddedTangoDatabase
from nexus_writer_service.errors import NexusWriterError
from nexus_writer_service.io.nxcheck import NxcheckError, nxcheck_errors
from nexus_writer_service.simulation import (
    SCAN_TYPES,
    SEQUENCE_TYPES,
    PublishedScan,
    SimulationOptions,
    simulate,
)
from nexus_writer_service.simulation.info import master_filenames
from nexus_writer_service.simulation.blissdata_publish import prepare_blissdata_db

from .process import ServerProcess
from .register import device_name, register_nexus_writer

__all__ = ["main", "DEFAULT_SCANS"]

PROG = "nexus-writer-demo"
#: Every simulated scan type but the million-point one, then a sequence of scans.
DEFAULT_SCANS = tuple(name for name in SCAN_TYPES if name != "long") + tuple(SEQUENCE_TYPES)
#: Every name --scan takes.
_SCAN_NAMES = list(SCAN_TYPES) + list(SEQUENCE_TYPES)
_WRITE_TIMEOUT = 300.0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                    epilog="Scan types: " + ", ".join(_SCAN_NAMES))
    parser.add_argument("--session", default="demo", help="session name (default: demo)")
    parser.add_argument("--scan", action="append", choices=sorted(_SCAN_NAMES), metavar="TYPE",
                        help="scan type to publish (repeatable; default: all but 'long', "
                             "and a sequence)")
    parser.add_argument("--npoints", type=int, help="points per scan (default: per type)")
    parser.add_argument("--count-time", type=float, default=0.02,
                        help="seconds per point (default: 0.02)")
    parser.add_argument("--root", default="nexus-writer-demo-data",
                        help="directory for the files (default: ./nexus-writer-demo-data)")
    parser.add_argument("--redis-url", help="Redis to use (default: REDIS_URL, else embedded)")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave Redis, the database and the server running until Ctrl-C")
    parser.add_argument("--no-tango", action="store_true",
                        help="run the session writer in this process, without Tango")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (default: 0)")
    parser.add_argument("--data-source", choices=("nws", "blissdata"), default="nws",
                        help="publish into our own nws: streams (default) or with "
                             "blissdata 2.x as BLISS 2.x does (needs the blissdata extra)")
    return parser


def _say(text: str = "") -> None:
    print(text, flush=True)


class _Progress:
    """Shows, as scans are published, what the device reports about them."""

    def __init__(self, proxy: tango.DeviceProxy, total: int) -> None:
        self.proxy = proxy
        self.total = total
        self.published: list[PublishedScan] = []
        self._shown: dict[str, str] = {}

    def on_published(self, scan: PublishedScan) -> None:
        self.published.append(scan)

    def poll(self) -> list[tuple[str, str, str]]:
        names = list(self.proxy.scan_names or ())
        states = [str(state) for state in self.proxy.scan_states or ()]
        progress = list(self.proxy.scan_progress or ())
        rows = list(zip(names, states, progress))
        for name, state, points in rows:
            key = f"{state} {points}"
            if self._shown.get(name) != key and (state != "ON" or name not in self._shown):
                verb = "writing" if state == "ON" else "written"
                _say(f"  [{len(self.published)}/{self.total} published] {verb:<8} {name:<22} "
                     f"{state:<6} {points} points")
                self._shown[name] = key
        return rows


def _publish(options: SimulationOptions, progress: _Progress, stop: threading.Event,
             errors: list[BaseException]) -> None:
    try:
        simulate(options, on_published=progress.on_published, stop=stop)
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)


def _verdict(path: str, strict: bool) -> str:
    if not os.path.exists(path):
        return "no file"
    try:
        errors = nxcheck_errors(path, ignore_entry_names=not strict)
    except NxcheckError as exc:
        return f"nxcheck failed: {str(exc).splitlines()[0]}"
    return "valid" if not errors else f"{len(errors)} error(s): {errors[0]}"


def _table(proxy: tango.DeviceProxy, root: Path, published: Sequence[PublishedScan]) -> bool:
    kinds = {f"{scan.number}_{scan.name}": scan.kind for scan in published}
    infos = [json.loads(text) for text in proxy.scan_info_json or ()]
    progress = list(proxy.scan_progress or ())
    ok = True
    _say(f"\n{'scan':<20} {'type':<16} {'end':<8} {'state':<6} {'points':>11}  "
         f"{'nxcheck':<8} file")
    for info, points in zip(infos, progress):
        name, state = info["name"], info["state"]
        path = info["filename"] or ""
        verdict = _verdict(path, strict=False) if path else "no file"
        ok = ok and state == "OFF" and verdict == "valid"
        shown = os.path.relpath(path, root) if path else info["state_reason"]
        _say(f"{name:<20.20} {kinds.get(name, '?'):<16.16} {info['end_reason'] or '-':<8} "
             f"{state:<6} {points:>11}  {verdict:<8} {shown}")
    return ok


def _wait_written(proxy: tango.DeviceProxy, progress: _Progress, thread: threading.Thread,
                  errors: list[BaseException]) -> int:
    deadline = time.monotonic() + _WRITE_TIMEOUT
    while True:
        rows = progress.poll()
        if not thread.is_alive():
            if errors:
                _say(f"{PROG}: publishing failed: {errors[0]}")
                return 1
            published = {f"{s.number}_{s.name}" for s in progress.published}
            listed = {name for name, _, _ in rows}
            if published <= listed and all(state != "ON" for _, state, _ in rows):
                return 0
        if time.monotonic() > deadline:
            _say(f"{PROG}: the writer did not finish within {_WRITE_TIMEOUT:g} s")
            return 1
        time.sleep(0.2)


def _say_master_files(root: str, session: str) -> None:
    """Where every scan is linked, as BLISS asks for (``nexuswriter.masterfiles``)."""
    for level, path in master_filenames(root, session).items():
        if os.path.exists(path):
            _say(f"  {level.replace('_', ' ')} file, every scan linked as "
                 f"<dataset>_<N.M>: {os.path.relpath(path, root)}")


def _wait_for_ctrl_c(lines: Sequence[str]) -> None:
    try:
        _say("\nEverything keeps running for exploration (Ctrl-C stops it all):")
        for line in lines:
            _say(f"  {line}")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say("\nstopping")


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the demo as Ctrl-C does (every process it started is
    stopped), also when it runs from a script that ignores SIGINT; the previous
    handlers are back on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.default_int_handler)
                for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.no_tango:
        local = ["--session", args.session, "--root", args.root, "--keep",
                 "--seed", str(args.seed), "--data-source", args.data_source]
        for name in args.scan or DEFAULT_SCANS:
            local += ["--scan", name]
        if args.redis_url:
            local += ["--redis-url", args.redis_url]
        return local_demo.main(local)
    # each run in a folder of its own: scan numbers restart with a new embedded Redis
    root = Path(args.root).resolve() / time.strftime("%Y%m%d-%H%M%S")
    scans = tuple(args.scan or DEFAULT_SCANS)
    stop = threading.Event()
    try:
        with ExitStack() as stack:
            stack.enter_context(_terminate_as_interrupt())
            return _run(args, root, scans, stack, stop)
    except KeyboardInterrupt:
        stop.set()
        _say(f"\n{PROG}: interrupted; every process it started was stopped")
        return 130
    except (NexusWriterError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, root: Path, scans: tuple[str, ...], stack: ExitStack,
         stop: threading.Event) -> int:
    root.mkdir(parents=True, exist_ok=True)
    servers = root / ".servers"
    url = args.redis_url or os.environ.get("REDIS_URL")
    blissdata = args.data_source == "blissdata"
    if url:
        _say(f"Redis: {url} (given)")
    else:
        redis_server = stack.enter_context(EmbeddedRedis(workdir=servers / "redis",
                                                         blissdata=blissdata))
        url = redis_server.url + "/0"
        modules = " with the RedisJSON and RediSearch modules" if blissdata else ""
        _say(f"Redis: {url} (embedded{modules}, pid {redis_server.pid})")
    if blissdata:  # as BLISS's beacon does, before anything reads the Redis
        prepare_blissdata_db(url)
    tango_host = os.environ.get("TANGO_HOST")
    if tango_host:
        _say(f"Tango database: {tango_host} (TANGO_HOST)")
    else:
        database = stack.enter_context(EmbeddedTangoDatabase(workdir=servers / "tango-db"))
        tango_host = database.tango_host
        _say(f"Tango database: {tango_host} (embedded sqlite, pid {database.pid})")
    host, port = tango_host.rsplit(":", 1)
    device = device_name(args.session)
    registration = register_nexus_writer(
        args.session, instance=args.session, redis_url=url, force=True,
        options={"allowed_roots": [str(root)]}, database=tango.Database(host, int(port)),
        data_source=args.data_source)
    _say(f"registered {registration.device} in {registration.server}")
    server = ServerProcess(args.session, tango_host, output=root / "nexus-writer-service.out",
                           args=["--log=info", "--logfile", str(root / "nexus-writer.log"),
                                 "--nologstdout"])
    stack.enter_context(server)
    proxy = server.wait_ready(device)
    _say(f"started NexusWriterService {args.session} (pid {server.pid}): {device} is "
         f"{proxy.state()}")
    options = SimulationOptions(session=args.session, scans=scans, redis_url=url,
                                root=str(root), npoints=args.npoints,
                                count_time=args.count_time, seed=args.seed,
                                master_files=True,
                                data_source=args.data_source)
    # a sequence publishes its scans and itself
    total = sum(1 + len(SEQUENCE_TYPES[s].scans) if s in SEQUENCE_TYPES else 1 for s in scans)
    progress = _Progress(proxy, total)
    errors: list[BaseException] = []
    _say(f"\npublishing {total} scans into session {args.session!r}: {', '.join(scans)}")
    thread = threading.Thread(target=_publish, args=(options, progress, stop, errors),
                              name="demo-publisher")
    thread.start()
    try:
        code = _wait_written(proxy, progress, thread, errors)
    except BaseException:
        stop.set()
        raise
    finally:
        thread.join()
    ok = _table(proxy, root, progress.published)
    _say(f"\nfiles are in {root} (open them with: silx view {root})")
    _say_master_files(str(root), args.session)
    if args.keep_running:
        _wait_for_ctrl_c([
            f"TANGO_HOST={tango_host}  device {device}  (jive, or tango.DeviceProxy)",
            f"REDIS_URL={url}  (nexus-writer-simulate --redis-url {url} "
            f"--session {args.session} --root {root} --data-source {args.data_source})",
            f"silx view {root}",
        ])
    return code or (0 if ok else 1)


if __name__ == "__main__":
    sys.exit(main())
