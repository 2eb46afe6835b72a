"""Command-line tools: ``channels-get``, ``channels-put``, ``channels-monitor``.

Each exits with 0 on success and, on any error, prints one line
``<tool>: error: <what happened and what to do>`` to stderr and exits with 1
(2 for a command-line usage error, as argparse does). Run them also as
``python -m channels.cli get|put|monitor ...``.

``--format`` is a :meth:`str.format` template with the fields ``name``, ``value``,
``version``, ``who``, ``when`` (ISO 8601 server time) and ``present``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from .errors import ChannelsError
from .sync import client

__all__ = ["get_main", "put_main", "monitor_main", "main"]

DEFAULT_FORMAT = "{name} {value!r}"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=None,
                        help="Redis URL (default: the REDIS_URL environment variable)")
    parser.add_argument("--timeout", type=float, default=client.DEFAULT_TIMEOUT,
                        help="seconds to wait for Redis (default %(default)s)")
    parser.add_argument("--format", default=DEFAULT_FORMAT,
                        help="output template, fields: name value version who when present "
                             "(default %(default)r)")


def _render(template: str, response: client.Response) -> str:
    when = response.timestamp.isoformat() if response.timestamp else ""
    try:
        return template.format(name=response.name, value=response.value,
                               version=response.version, who=response.who, when=when,
                               present=response.present)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ValueError(f"bad --format template {template!r}: {exc!r}") from None


def _run(prog: str, body: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
         argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return body(args)
    except (ChannelsError, ValueError, TypeError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1


def get_main(argv: Sequence[str] | None = None) -> int:
    """``channels-get NAME [NAME ...]``: print the current values."""
    parser = argparse.ArgumentParser(prog="channels-get", description="Read channels.")
    parser.add_argument("names", nargs="+", metavar="NAME")
    _common(parser)

    def body(args: argparse.Namespace) -> int:
        missing = []
        for name in args.names:
            response = client.read(name, timeout=args.timeout, redis_url=args.redis_url)
            if not response.present:
                missing.append(name)
                continue
            print(_render(args.format, response))
        if missing:
            raise ValueError(f"no value for channel(s) {', '.join(map(repr, missing))}: "
                             "no process holds them")
        return 0

    return _run(parser.prog, body, parser, argv)


def _parse_value(text: str, as_string: bool) -> Any:
    if as_string:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def put_main(argv: Sequence[str] | None = None) -> int:
    """``channels-put NAME VALUE``: write a value, print the old and the new one."""
    parser = argparse.ArgumentParser(
        prog="channels-put",
        description="Write a channel. VALUE is read as JSON when it parses, else as text.")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("value", metavar="VALUE")
    parser.add_argument("--string", action="store_true", help="take VALUE as text, not JSON")
    _common(parser)

    def body(args: argparse.Namespace) -> int:
        value = _parse_value(args.value, args.string)
        before, _, after = client.read_write_read(
            args.name, value, notify=True, timeout=args.timeout, redis_url=args.redis_url)
        print("Old : " + _render(args.format, before))
        print("New : " + _render(args.format, after))
        return 0

    return _run(parser.prog, body, parser, argv)


def monitor_main(argv: Sequence[str] | None = None) -> int:
    """``channels-monitor NAME [NAME ...]``: print each value as it changes."""
    parser = argparse.ArgumentParser(prog="channels-monitor",
                                     description="Print channel values as they change.")
    parser.add_argument("names", nargs="+", metavar="NAME")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: until Ctrl+C)")
    parser.add_argument("--maximum", type=int, default=None,
                        help="stop after printing this many updates")
    _common(parser)

    def body(args: argparse.Namespace) -> int:
        if args.maximum is not None and args.maximum <= 0:
            raise ValueError(f"--maximum must be a positive number, not {args.maximum}")
        subs = [client.subscribe(name, redis_url=args.redis_url) for name in args.names]
        count = [0]

        def show(response: client.Response) -> None:
            print(_render(args.format, response), flush=True)
            count[0] += 1
            if args.maximum is not None and count[0] >= args.maximum:
                client.interrupt()

        for sub in subs:
            sub.add_callback(show)
        client.block(*subs, duration=args.duration, timeout=args.timeout)
        return 0

    return _run(parser.prog, body, parser, argv)


_TOOLS = {"get": get_main, "put": put_main, "monitor": monitor_main}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m channels.cli get|put|monitor ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _TOOLS:
        print(f"usage: python -m channels.cli {{{','.join(_TOOLS)}}} ...", file=sys.stderr)
        return 2
    return _TOOLS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
