"""``NexusSessionWriter``: write every scan of a session to NeXus files, without Tango.

Runs the same :class:`~nexus_writer_service.subscribers.NexusSessionWriter` the Tango
device runs, in the main thread, until SIGINT/SIGTERM (or ``--duration``), then stops
it cleanly: scans in progress get every point received so far and stay resumable.
Exit status: 0 after a clean stop, 2 for invalid arguments, 1 when Redis cannot be
reached or the session writer fails.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import math
import os
import signal
import stat
import sys
import time
import urllib.parse
from typing import Any, Sequence

import gevent
import gevent.event

from ..data.opener import DATA_SOURCES, open_session
from ..data.session_lease import SessionLease
from ..errors import (
    ConfigurationError,
    NexusWriterError,
    RedisUnavailableError,
    SessionTakenError,
)
from .arguments import Parser, checked_or_exit
from ..io.options import COMPRESSIONS, SaveOptions, option_help
from ..subscribers import NexusSessionWriter, SubscriberState
from ..tuning import freeze_startup_objects, use_writer_settings

__all__ = ["main", "build_parser", "configure_logging", "add_save_options",
           "add_logging_options", "save_options_from_args", "read_redis_url_file",
           "url_has_password"]

PROG = "NexusSessionWriter"
#: Seconds between two attempts of a standby to take the session's lease.
STANDBY_POLL = 0.5
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_FLAGS = ("keepshape", "multivalue_positioners", "disable_external_hdf5",
          "enable_external_nonhdf5", "copy_non_external", "strict_names", "stack_mcas")
_VALUES: dict[str, Any] = {
    "allowed_roots": str, "required_disk_space": float, "recommended_disk_space": float,
    "chunk_bytes": int, "chunk_split": int, "compression_limit_nbytes": int,
    "compression_threads": int, "flush_period": float,
    "lima_refresh_period": float, "purge_delay": float, "disk_check_period": float,
    "lock_retry_time": float,
    "max_channels": int, "max_info_bytes": int, "max_dataset_bytes": int,
}
#: Other names of options on the command line: BLISS's (its ``chunk_options``).
_ALIASES = {"chunk_bytes": ("--chunk-nbytes",)}


def add_save_options(parser: argparse.ArgumentParser) -> None:
    """The writer's save options as ``--option`` arguments (shared with the device tools)."""
    helps = option_help()
    group = parser.add_argument_group("save options")
    for name in _FLAGS:
        group.add_argument(f"--{name.replace('_', '-')}", action="store_true",
                           default=None, help=helps[name])
    group.add_argument("--long-names", dest="short_names", action="store_false", default=None,
                       help="measurement links use full channel names")
    group.add_argument("--compression", choices=COMPRESSIONS, help=helps["compression"])
    group.add_argument("--file-mode", help=helps["file_mode"])
    for name, kind in _VALUES.items():
        group.add_argument(f"--{name.replace('_', '-')}", *_ALIASES.get(name, ()), dest=name,
                           type=kind, metavar=name.upper(), help=helps[name])


def save_options_from_args(args: argparse.Namespace) -> SaveOptions:
    """The :class:`SaveOptions` given on the command line (defaults for the others)."""
    names = list(_FLAGS) + ["short_names", "compression", "file_mode"] + list(_VALUES)
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return SaveOptions.from_mapping(given)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=(
        "Write every scan of a session to NeXus HDF5 files while the scans run."))
    parser.add_argument("session", help="name of the session to listen to")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--redis-url", help="Redis URL (default: the REDIS_URL environment "
                       "variable). Other users can read a command line: give a URL with a "
                       "password with --redis-url-file or REDIS_URL instead")
    where.add_argument("--redis-url-file", metavar="PATH",
                       help="read the Redis URL from this file, which only its owner may "
                       "read (chmod 600)")
    parser.add_argument("--data-source", choices=DATA_SOURCES, default="auto",
                        help="where the scans come from: our own streams (nws), BLISS 2.x's "
                        "blissdata, or auto: chosen from what the Redis holds, and logged "
                        "(default: auto)")
    parser.add_argument("--blissdata-idle-timeout", type=float, default=None,
                        metavar="SECONDS",
                        help="blissdata has no publisher lease: end a scan that was never "
                        "closed with PUBLISHER_LOST after this long without a point or a "
                        "state change; keep it longer than any pause of a scan (default: "
                        "600)")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="do not complete scans left unfinished by a previous run")
    parser.add_argument("--reader-name", default="nexus_writer",
                        help="name under which progress is acknowledged in Redis")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: run until SIGINT/SIGTERM)")
    parser.add_argument("--standby", action="store_true",
                        help="when another writer writes the session, wait and take over "
                        "when it stops (default: refuse to start)")
    parser.add_argument("--give-up-after", type=float, default=600.0, metavar="SECONDS",
                        help="when the session writer fails (Redis unreachable...), start it "
                        "again, sooner first, then every 5 s, for at most this long; 0 exits "
                        "at the first failure (default: 600)")
    add_logging_options(parser)
    add_save_options(parser)
    return parser


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """``--log``, ``--logfile``, ``--filesize``, ``--filebackups``, ``--nologstdout``."""
    parser.add_argument("--log", default="info", type=str.lower, choices=LOG_LEVELS,
                        help="level of the writer's log (default: info)")
    parser.add_argument("--logfile", help="also log to this file (rotated)")
    parser.add_argument("--filesize", type=float, default=10.0,
                        help="size in MB at which the log file is rotated (default: 10)")
    parser.add_argument("--filebackups", type=int, default=5,
                        help="number of rotated log files kept (default: 5)")
    parser.add_argument("--nologstdout", action="store_true",
                        help="do not log to the standard error stream")


def configure_logging(level: str, logfile: str | None = None, filesize: float = 10.0,
                      filebackups: int = 5, stdout: bool = True) -> None:
    """Log ``nexus_writer_service`` at ``level`` to stderr and/or a rotating file."""
    logger = logging.getLogger("nexus_writer_service")
    logger.setLevel(level.upper())
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = []
    if stdout:
        handlers.append(logging.StreamHandler())
    if logfile:
        handlers.append(logging.handlers.RotatingFileHandler(
            logfile, maxBytes=int(filesize * 1e6), backupCount=filebackups))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)


#: A Redis URL file is a line of text; anything much longer is not one.
_URL_FILE_LIMIT = 64 * 1024


def read_redis_url_file(path: str) -> str:
    """The Redis URL held in the file ``path``: its first line that is neither empty nor
    a ``#`` comment. The URL may hold a password, so the file must be a regular file
    that no other user may read or change (``chmod 600``).

    :raises ConfigurationError: the file cannot be read, is open to other users, or holds
        no URL (the message never shows the file's content)
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the Redis URL file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"the Redis URL file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise ConfigurationError(
                f"the Redis URL file {path} is open to other users (permissions {mode:03o}) "
                f"and may hold a password: make it private with 'chmod 600 {path}'")
        raw = stream.read(_URL_FILE_LIMIT + 1)
    if len(raw) > _URL_FILE_LIMIT:
        raise ConfigurationError(f"the Redis URL file {path} is too large to hold a URL")
    try:
        lines = raw.decode().splitlines()
    except UnicodeDecodeError:
        raise ConfigurationError(f"the Redis URL file {path} is not UTF-8 text") from None
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise ConfigurationError(
        f"the Redis URL file {path} holds no URL: write one line such as "
        "redis://user:password@host:6379/0")


def url_has_password(url: str) -> bool:
    """Whether the Redis URL ``url`` holds a password (``user:password@`` or a
    ``password=`` query parameter)."""
    parts = urllib.parse.urlsplit(url)
    try:
        in_netloc = parts.password is not None
    except ValueError:  # a malformed port: look for credentials by hand
        in_netloc = "@" in parts.netloc
    return in_netloc or "password" in urllib.parse.parse_qs(parts.query)


class Restarts:
    """Starts a failed session writer again, as the Tango device does, but sooner: after
    0.1 s, then twice as long each time up to 5 s, for at most ``give_up_after`` seconds
    from the failure (0: never). Each change of state is logged once. Owned by the
    main greenlet."""

    FIRST = 0.1
    LONGEST = 5.0

    def __init__(self, give_up_after: float, log: logging.Logger) -> None:
        self.give_up_after = give_up_after
        self.gave_up = ""
        self._log = log
        self._failed_at: float | None = None
        self._wait = self.FIRST

    @property
    def poll_period(self) -> float:
        return 0.05 if self._failed_at is not None else 0.5

    def after_fault(self, writer: NexusSessionWriter,
                    stop: gevent.event.Event) -> bool:
        """Start ``writer`` again after the next wait; False to give up."""
        self.failed(writer)
        assert self._failed_at is not None
        elapsed = time.monotonic() - self._failed_at
        if elapsed >= self.give_up_after:
            self.gave_up = (f" (gave up after {elapsed:.1f} s of restarts: "
                            "--give-up-after)" if self.give_up_after > 0 else "")
            return False
        wait = min(self._wait, self.give_up_after - elapsed)
        self._log.info("%s: starting the session writer again in %.1f s (giving up after "
                       "%g s)", PROG, wait, self.give_up_after)
        if stop.wait(wait):
            return True  # asked to stop: the caller's loop ends
        self._wait = min(self._wait * 2, self.LONGEST)
        try:
            writer.start(wait=True, timeout=30)
        except NexusWriterError as exc:
            self._log.warning("%s: starting the session writer again failed: %s", PROG, exc)
        return True

    def failed(self, writer: NexusSessionWriter) -> None:
        """``writer`` is in FAULT: logged once, and the clock of the restarts starts."""
        if self._failed_at is None:
            self._failed_at = time.monotonic()
            self._wait = self.FIRST
            self._log.error("%s: the session writer failed: %s", PROG, writer.state_reason)

    def running(self, writer: NexusSessionWriter) -> None:
        """The writer runs: a failure before it is over."""
        if self._failed_at is not None:
            self._log.warning("%s: the session writer runs again, %.1f s after it failed",
                              PROG, time.monotonic() - self._failed_at)
            self._failed_at = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options = checked_or_exit(parser, lambda: save_options_from_args(args))
    url = args.redis_url
    if args.redis_url_file is not None:
        url = checked_or_exit(parser, lambda: read_redis_url_file(args.redis_url_file))
    try:
        configure_logging(args.log, args.logfile, args.filesize, args.filebackups,
                          not args.nologstdout)
    except OSError as exc:
        parser.error(f"cannot open the log file: {exc}")
    node: Any = checked_or_exit(parser, lambda: open_session(
        args.session, url, args.data_source,
        blissdata_idle_timeout=args.blissdata_idle_timeout))
    log = logging.getLogger("nexus_writer_service.cli")
    if args.redis_url and url_has_password(args.redis_url):
        log.warning("%s: the password given with --redis-url can be read by every user of "
                    "this machine (process list, /proc/<pid>/cmdline): put the URL in a file "
                    "only you can read and use --redis-url-file, or set REDIS_URL", PROG)
    try:
        node.current_position()
    except NexusWriterError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    use_writer_settings()
    writer = NexusSessionWriter(node, options=options, reader_name=args.reader_name,
                                resume=args.resume)
    lease = SessionLease(node.connection, node.name,
                         name=f"{PROG} {node.name} ({args.reader_name})")
    stop = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGINT, signal.SIGTERM)]
    freeze_startup_objects()  # full garbage collections skip what the set up made
    try:
        return _write(writer, lease, stop, args, log)
    except (SessionTakenError, RedisUnavailableError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for handler in handlers:
            handler.cancel()
        lease.release()


def _take_lease(lease: SessionLease, stop: gevent.event.Event, patience: float,
                log: logging.Logger, gave_up: str = "") -> bool:
    """Hold the session's lease, trying for ``patience`` seconds (False: asked to stop
    first). A standby is patient for ever; a new writer for one lease time (the time
    the lease of a writer that just died takes to expire, when supervisor or Starter
    restart it at once); a writer whose lease lapsed (Redis unreachable) for
    ``--give-up-after``.

    :raises SessionTakenError: another writer holds it, after ``patience``
    :raises RedisUnavailableError: Redis unreachable, after ``patience``; ``gave_up``
        is added to the message of either
    """
    told = ""
    deadline = time.monotonic() + patience
    while not stop.is_set():
        try:
            lease.acquire()
        except (SessionTakenError, RedisUnavailableError) as exc:
            if time.monotonic() > deadline:
                raise type(exc)(f"{exc}{gave_up}") from None
            if str(exc) != told:
                told = str(exc)
                log.warning("%s: waiting for the session: %s", PROG, exc)
        else:
            if told:
                log.warning("%s: took over session %r", PROG, lease.session)
            return True
        stop.wait(STANDBY_POLL)
    return False


def _write(writer: NexusSessionWriter, lease: SessionLease, stop: gevent.event.Event,
           args: argparse.Namespace, log: logging.Logger) -> int:
    """Write while this process holds the session's lease; after losing it, wait to
    hold it again (see :func:`_take_lease`)."""
    started = time.monotonic()
    restarts = Restarts(args.give_up_after, log)
    patience = math.inf if args.standby else lease.ttl + STANDBY_POLL
    gave_up = ""
    while _take_lease(lease, stop, patience, log, gave_up):
        writer.start(wait=True, timeout=30)
        log.info("%s: writing session %r (%s)", PROG, lease.session, writer.options.as_dict())
        lost = False
        while not stop.wait(restarts.poll_period):
            if not lease.valid:  # first: never restart a writer without the lease
                if writer.state is SubscriberState.FAULT:
                    restarts.failed(writer)
                lost = True
                log.error("%s: %s: stopping; the scans stay resumable", PROG,
                          lease.lost_reason)
                break
            if writer.state is SubscriberState.FAULT:
                if not restarts.after_fault(writer, stop):
                    break
            elif writer.done():
                break
            else:
                restarts.running(writer)
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
        writer.stop(wait=True, timeout=120)
        lease.release()
        if not lost or stop.is_set():
            break
        if not args.standby:
            patience = args.give_up_after
            gave_up = f" (gave up after {patience:g} s: --give-up-after)"
    if writer.state is SubscriberState.FAULT:
        print(f"{PROG}: error: {writer.state_reason}{restarts.gave_up}", file=sys.stderr)
        return 1
    log.info("%s: stopped (%s)", PROG, writer.state_reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
