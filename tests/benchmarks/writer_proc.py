"""The ``NexusSessionWriter`` command, reporting its scans as JSON lines.

    python -m tests.benchmarks.writer_proc SESSION --status FILE [--wait-signal]
        [any NexusSessionWriter option]

Same parser, same :class:`NexusSessionWriter` and same clean stop on SIGINT/SIGTERM
as ``NexusSessionWriter`` (``nexus_writer_service.cli.session_writer``), any data
source (``--data-source``) included, so the
benchmarks can measure the writer's CPU time and peak memory in a process of its
own. It appends to ``--status``, one JSON object per line, ``t`` being
``time.time()``:

* ``{"event": "ready"}`` once imported and connected;
* ``{"event": "started"}`` once the session writer listens (with ``--wait-signal``,
  only after SIGUSR1: a benchmark can publish a whole scan first, then time the drain);
* ``{"event": "done", "key", "state", "status", "reason", "points"}`` within
  ``--poll`` seconds (0.01 by default) of each scan writer finishing, with ``t`` the
  moment it finished (measured in the writer, whatever the poll);
* ``{"event": "sample", "scans": [{"key", "points", "backlog_events",
  "backlog_bytes", "state"}]}`` every ``--sample`` seconds.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any, Sequence

import gevent
import gevent.event

from nexus_writer_service.cli.session_writer import (
    build_parser, configure_logging, save_options_from_args)
from nexus_writer_service.tuning import freeze_startup_objects, use_writer_settings
from nexus_writer_service.data.opener import open_session
from nexus_writer_service.subscribers import NexusSessionWriter, SubscriberState


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--status", required=True, help="JSON lines file to append to")
    parser.add_argument("--sample", type=float, default=0.1,
                        help="seconds between backlog samples (default 0.1)")
    parser.add_argument("--poll", type=float, default=0.01,
                        help="seconds between looks for finished scans (default 0.01)")
    parser.add_argument("--wait-signal", action="store_true",
                        help="start the session writer only on SIGUSR1")
    args = parser.parse_args(argv)
    options = save_options_from_args(args)
    configure_logging(args.log, args.logfile, args.filesize, args.filebackups,
                      not args.nologstdout)
    node = open_session(args.session, args.redis_url, args.data_source,
                        blissdata_idle_timeout=args.blissdata_idle_timeout)
    node.current_position()
    stop = gevent.event.Event()
    go = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGINT, signal.SIGTERM)]
    handlers.append(gevent.signal_handler(signal.SIGUSR1, go.set))
    out = open(args.status, "a", buffering=1)

    def emit(event: str, **fields: Any) -> None:
        out.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")

    use_writer_settings()  # as the command's
    writer = NexusSessionWriter(node, options=options, reader_name=args.reader_name,
                                resume=args.resume)
    freeze_startup_objects()
    try:
        emit("ready")
        if args.wait_signal:
            while not go.wait(0.05):
                if stop.is_set():
                    return 0
        writer.start(wait=True, timeout=30)
        emit("started")
        reported: set[str] = set()
        last_sample = 0.0
        while not stop.wait(args.poll):
            records = writer.scans()
            for record in records:
                if record.key not in reported and record.writer.done():
                    reported.add(record.key)
                    # when the scan writer finished, not when this loop saw it
                    ended = record.writer.ended_at
                    t = time.time() - (time.monotonic() - ended if ended is not None else 0.0)
                    emit("done", t=t, key=record.key, state=record.writer.state.value,
                         status=record.writer.status.value,
                         reason=record.writer.state_reason,
                         points=record.writer.progress[0])
            now = time.monotonic()
            if now - last_sample >= args.sample:
                last_sample = now
                scans = []
                for record in records:
                    events, nbytes = record.writer.backlog
                    scans.append({"key": record.key, "points": record.writer.progress[0],
                                  "backlog_events": events, "backlog_bytes": nbytes,
                                  "state": record.writer.state.value})
                emit("sample", scans=scans)
            if writer.done():
                break
        writer.stop(wait=True, timeout=120)
    finally:
        for handler in handlers:
            handler.cancel()
        out.close()
    if writer.state is SubscriberState.FAULT:
        print(f"writer_proc: error: {writer.state_reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
