"""``NexusWriterService <instance>``: the Tango device server of the NeXus writers.

Runs every ``NexusWriter`` device registered for ``NexusWriterService/<instance>``
in the Tango database, in green mode. Our options come first; anything else
(``-ORBendPoint giop:tcp::<port>``, ``-v4``, ``-nodb``, ``-dlist``, ``-file=``) is
passed to Tango unchanged. SIGINT/SIGTERM stop the server cleanly: every scan in
progress gets what was received written and stays resumable.

Exit status: 0 after a clean stop, 2 for invalid arguments, 1 when the Tango
database cannot be reached or the instance is not registered.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import tango
import tango.server

from nexus_writer_service.cli.arguments import Parser
from nexus_writer_service.cli.session_writer import (
    LOG_LEVELS, add_logging_options, configure_logging)
from nexus_writer_service.data.opener import import_sources
from nexus_writer_service.tuning import (
    freeze_startup_objects, use_background_nice, use_writer_settings)

from .nexus_writer import NexusWriter

__all__ = ["main", "SERVER", "check_registration"]

SERVER = "NexusWriterService"
_TANGO_SHUTDOWN = "Caught an unknown exception!"
_TANGO_VERBOSITY = {"debug": 5, "info": 4, "warning": 3, "error": 2, "critical": 1}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=SERVER, allow_abbrev=False, description=(
        "Tango device server writing NeXus HDF5 files for the sessions of its "
        "NexusWriter devices. Unknown options are passed to Tango."))
    parser.add_argument("instance", help="server instance, as registered in the Tango database")
    add_logging_options(parser)
    parser.add_argument("--log_tango", "--log-tango", dest="log_tango", type=str.lower,
                        choices=LOG_LEVELS, default=None,
                        help="level of Tango's own log (default: Tango's)")
    return parser


def check_registration(instance: str) -> str | None:
    """Why the server cannot start from the database (None when it can)."""
    host = os.environ.get("TANGO_HOST", "")
    try:
        database = tango.Database()
    except tango.DevFailed as exc:
        return (f"cannot reach the Tango database (TANGO_HOST={host or 'not set'}): "
                f"{exc.args[0].desc.strip()}; start the database or set TANGO_HOST")
    server = f"{SERVER}/{instance}"
    try:
        listing = list(database.get_device_class_list(server))
    except tango.DevFailed as exc:
        return f"cannot read {server} from the Tango database at {host}: {exc.args[0].desc}"
    classes = listing[1::2]
    if "NexusWriter" not in classes:
        return (f"{server} has no NexusWriter device in the Tango database at {host}: "
                f"register one with `RegisterNexusWriter <session> --instance {instance}`")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, tango_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        configure_logging(args.log, args.logfile, args.filesize, args.filebackups,
                          not args.nologstdout)
    except OSError as exc:
        parser.error(f"cannot open the log file: {exc}")
    logging.getLogger("tango_devices").setLevel(args.log.upper())
    for handler in logging.getLogger("nexus_writer_service").handlers:
        logging.getLogger("tango_devices").addHandler(handler)
    no_database = any(a == "-nodb" or a.startswith("-file=") for a in tango_args)
    if not no_database:
        problem = check_registration(args.instance)
        if problem is not None:
            print(f"{SERVER}: error: {problem}", file=sys.stderr)
            return 1
    if args.log_tango is not None:
        tango_args.append(f"-v{_TANGO_VERBOSITY[args.log_tango]}")
    logging.getLogger("tango_devices").info(
        "%s/%s starting (log %s)", SERVER, args.instance, args.log)
    log = logging.getLogger("tango_devices")
    use_writer_settings()
    use_background_nice()  # Tango's threads answer clients before the writer's work
    # full garbage collections skip the modules' objects, blissdata's included (not the
    # devices': Init replaces their writers, whose garbage must stay collectable)
    import_sources()
    freeze_startup_objects()
    try:
        tango.server.run((NexusWriter,), args=[SERVER, args.instance, *tango_args],
                         green_mode=tango.GreenMode.Gevent, raises=True)
    except tango.DevFailed as exc:
        print(f"{SERVER}: error: {exc.args[0].desc.strip()}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        # Tango ends its event loop on SIGINT/SIGTERM by throwing an exception pytango
        # cannot name; the devices were deleted (scans finalised) before it.
        if str(exc) != _TANGO_SHUTDOWN:
            raise
    log.info("%s/%s stopped", SERVER, args.instance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
