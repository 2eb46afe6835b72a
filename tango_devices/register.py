"""``RegisterNexusWriter <session>``: register a NexusWriter device in the Tango database.

Creates (or updates) the device ``<domain>/<family>/<member>`` of class
``NexusWriter`` in the server ``<server>/<instance>`` and sets its properties:
``session``, ``redis_url`` and the save options given. A device already
writing another session is not moved unless ``--force`` is given.

Exit status: 0 when registered, 2 for invalid arguments, 1 when the database
cannot be reached or the device belongs to another session.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import tango

from nexus_writer_service.cli.arguments import Parser, checked_or_exit
from nexus_writer_service.cli.session_writer import add_save_options, save_options_from_args
from nexus_writer_service.data.keys import check_name
from nexus_writer_service.data.opener import DATA_SOURCES, check_data_source, check_idle_timeout
from nexus_writer_service.errors import ConfigurationError, NexusWriterError

from .server import SERVER

__all__ = ["register_nexus_writer", "device_name", "RegistrationError", "main"]

PROG = "RegisterNexusWriter"


class RegistrationError(NexusWriterError, RuntimeError):
    """The device cannot be registered (database unreachable, or owned by another session)."""


def device_name(session: str, domain: str = "id00", family: str = "bliss_nxwriter",
                member: Optional[str] = None) -> str:
    return f"{domain}/{family}/{member or session}"


def _property_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value] or [""]
    return str(value)


@dataclass(frozen=True)
class Registration:
    device: str
    server: str
    created: bool
    moved_from: Optional[str]
    #: the device was running (exported) when its properties were set: they apply
    #: after its ``Init`` command or a restart of the server
    running: bool = False


def register_nexus_writer(session: str, *, domain: str = "id00",
                          family: str = "bliss_nxwriter", member: Optional[str] = None,
                          instance: Optional[str] = None, server: str = SERVER,
                          redis_url: Optional[str] = None,
                          options: Optional[Mapping[str, Any]] = None, force: bool = False,
                          data_source: Optional[str] = None,
                          blissdata_idle_timeout: Optional[float] = None,
                          database: Optional[tango.Database] = None) -> Registration:
    """Register (or update) the NexusWriter of ``session``; returns what was done.

    ``options``: save options as ``{name: value}`` to set as device properties
    (others are left as they are). ``data_source``: ``auto``, ``nws`` or ``blissdata``
    (left as it is when None). ``blissdata_idle_timeout``: seconds after which a
    blissdata scan never closed is ended ``PUBLISHER_LOST`` (left as it is when None).
    ``database``: default ``tango.Database()``.

    :raises ConfigurationError: ``data_source`` or ``blissdata_idle_timeout`` is invalid
    :raises RegistrationError: database unreachable, or the device writes another
        session and ``force`` is false
    """
    check_name(session)
    if data_source is not None:
        data_source = check_data_source(data_source)
    if blissdata_idle_timeout is not None:
        blissdata_idle_timeout = check_idle_timeout(blissdata_idle_timeout)
    name = device_name(session, domain, family, member)
    server_name = f"{server}/{instance or session}"
    try:
        db = database if database is not None else tango.Database()
    except tango.DevFailed as exc:
        raise RegistrationError(
            f"cannot reach the Tango database: {exc.args[0].desc.strip()}; "
            "start it or set TANGO_HOST") from None
    created = True
    moved_from: Optional[str] = None
    try:
        info = db.get_device_info(name)
    except tango.DevFailed:
        info = None
    if info is not None:
        created = False
        if info.class_name not in ("NexusWriter", ""):
            raise RegistrationError(
                f"{name} is a {info.class_name} device, not a NexusWriter: "
                "choose another --domain/--family/--member")
        current = list(db.get_device_property(name, ["session"])["session"])
        if current and current[0] and current[0] != session and not force:
            raise RegistrationError(
                f"{name} already writes session {current[0]!r}: use --force to make it "
                f"write {session!r}, or choose another --member")
        if current and current[0] and current[0] != session:
            moved_from = current[0]
    if info is None or info.class_name != "NexusWriter" or info.ds_full_name != server_name:
        # adding a device that exists marks it not exported: a running server would
        # stay unreachable until restarted, so an update only sets properties
        dev_info = tango.DbDevInfo()
        dev_info.name = name
        dev_info._class = "NexusWriter"
        dev_info.server = server_name
        db.add_device(dev_info)
    properties: dict[str, Any] = {"session": session}
    if redis_url:
        properties["redis_url"] = redis_url
    if data_source is not None:
        properties["data_source"] = data_source
    if blissdata_idle_timeout is not None:
        properties["blissdata_idle_timeout"] = _property_text(blissdata_idle_timeout)
    for key, value in (options or {}).items():
        properties[key] = _property_text(value)
    db.put_device_property(name, properties)
    running = bool(info is not None and info.exported and info.ds_full_name == server_name)
    return Registration(name, server_name, created, moved_from, running)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("session", help="session whose scans the device writes")
    parser.add_argument("--domain", default="id00", help="device domain (default: id00)")
    parser.add_argument("--family", default="bliss_nxwriter",
                        help="device family (default: bliss_nxwriter)")
    parser.add_argument("--member", help="device member (default: the session name)")
    parser.add_argument("--instance", help="server instance (default: the session name)")
    parser.add_argument("--server", default=SERVER, help=f"server name (default: {SERVER})")
    parser.add_argument("--redis-url", help="data Redis URL (default: the server's REDIS_URL)")
    parser.add_argument("--data-source", choices=DATA_SOURCES,
                        help="where the scans come from: nws, blissdata (BLISS 2.x) or auto "
                        "(the device's default: chosen from what the Redis holds)")
    parser.add_argument("--blissdata-idle-timeout", type=float, metavar="SECONDS",
                        help="blissdata has no publisher lease: end a scan that was never "
                        "closed with PUBLISHER_LOST after this long without a point or a "
                        "state change; keep it longer than any pause of a scan (the "
                        "device's default: 600)")
    parser.add_argument("--force", action="store_true",
                        help="move an existing device from its session to this one")
    add_save_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options = checked_or_exit(parser, lambda: save_options_from_args(args))
    # every option given on the command line, even with its default value, so that
    # `--compression none` resets a property that was gzip
    given = {k: v for k, v in options.as_dict().items() if getattr(args, k, None) is not None}
    if "file_mode" in given:
        given["file_mode"] = f"{options.file_mode:o}"
    try:
        done = register_nexus_writer(
            args.session, domain=args.domain, family=args.family, member=args.member,
            instance=args.instance, server=args.server, redis_url=args.redis_url,
            options=given, force=args.force, data_source=args.data_source,
            blissdata_idle_timeout=args.blissdata_idle_timeout)
    except ConfigurationError as exc:
        parser.error(str(exc))
    except NexusWriterError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    what = "registered" if done.created else "updated"
    print(f"{what} {done.device} (class NexusWriter, server {done.server}) for session "
          f"{args.session!r}" + (f" (was {done.moved_from!r})" if done.moved_from else ""))
    if done.running:
        print(f"it is running: run its Init command (jive, or "
              f"tango.DeviceProxy({done.device!r}).Init()) for the new properties to apply")
    else:
        print(f"start it with: {done.server.split('/')[0]} {done.server.split('/')[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
