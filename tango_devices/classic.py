"""The classic NexusWriter's types and texts, as Tango clients (BLISS, jive) know them.

Pure helpers of :mod:`.nexus_writer`: the ``DevEnum`` of the log level attributes,
per-scan states as ``DevState``, and the aligned ``"<scan>: <columns>"`` rows of the
classic ``scan_duration`` and ``scan_info`` attributes. Any thread may call them.
"""

from __future__ import annotations

import datetime
import enum
import logging
from typing import Callable, Iterable, Optional

from tango import DevState

from nexus_writer_service.subscribers import ScanRecord, SubscriberState

__all__ = ["LogLevel", "PY_LEVEL", "TANGO_LEVEL", "SCAN_DEVSTATE", "SESSION_DEVSTATE",
           "WRITER_LOGGERS",
           "from_py_level", "aligned", "classic_rows", "scan_info_columns"]

#: Loggers whose level ``writer_log_level`` sets.
WRITER_LOGGERS = ("nexus_writer_service", "tango_devices", "channels")


class LogLevel(enum.IntEnum):
    """The log levels of the classic ``writer_log_level`` and ``tango_log_level``
    attributes (Tango ``DevEnum``: the labels and their order are the contract)."""

    NOTSET = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    FATAL = 5


#: Python logging level of each LogLevel (NOTSET: inherit the parent's).
PY_LEVEL = {LogLevel.NOTSET: logging.NOTSET, LogLevel.DEBUG: logging.DEBUG,
            LogLevel.INFO: logging.INFO, LogLevel.WARN: logging.WARNING,
            LogLevel.ERROR: logging.ERROR, LogLevel.FATAL: logging.CRITICAL}
#: log4tango level of each LogLevel (NOTSET: logging off, as the classic device).
TANGO_LEVEL = {LogLevel.NOTSET: 100, LogLevel.FATAL: 200, LogLevel.ERROR: 300,
               LogLevel.WARN: 400, LogLevel.INFO: 500, LogLevel.DEBUG: 600}

#: Per-scan states as Tango states (a scan the device does not know is UNKNOWN).
SCAN_DEVSTATE = {SubscriberState.INIT: DevState.INIT, SubscriberState.ON: DevState.ON,
                 SubscriberState.OFF: DevState.OFF, SubscriberState.FAULT: DevState.FAULT}

#: The device's state for the state of its session writer: ON is RUNNING while scans
#: are written. A configuration fault (FAULT) and a session held by another writer
#: (STANDBY) come before it.
SESSION_DEVSTATE = {SubscriberState.INIT: DevState.INIT, SubscriberState.ON: DevState.ON,
                    SubscriberState.OFF: DevState.OFF,
                    SubscriberState.FAULT: DevState.FAULT}


def from_py_level(level: int) -> LogLevel:
    """The LogLevel of a Python level: the highest one at or below it."""
    found = LogLevel.NOTSET
    for name, value in PY_LEVEL.items():
        if value <= level:
            found = max(found, name)
    return found


def aligned(rows: Iterable[list[str]]) -> list[str]:
    """Rows of columns as lines: every column but the last right-aligned to its widest
    cell, the last left-aligned, one space between (the classic device's layout)."""
    rows = list(rows)
    if not rows:
        return []
    ncolumns = max(len(row) for row in rows)
    rows = [row + [""] * (ncolumns - len(row)) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(ncolumns)]
    return [" ".join([cell.rjust(width) for cell, width in zip(row[:-1], widths)]
                     + [row[-1]]).rstrip() for row in rows]


def classic_rows(records: Iterable[ScanRecord],
                 columns: Callable[[ScanRecord], list[str]]) -> list[str]:
    """One aligned line per scan: ``"<scan>:"`` then ``columns(record)``."""
    return aligned([f"{record.name}:", *columns(record)] for record in records)


def _local_time(iso: Optional[str], missing: str) -> str:
    if not iso:
        return missing
    moment = datetime.datetime.fromisoformat(iso)
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def scan_info_columns(record: ScanRecord) -> list[str]:
    """The classic ``scan_info`` columns of a scan: state, the least and the most
    points written over its channels, how long it has been written, start and end."""
    writer = record.writer
    points = list(writer.points.values()) or [0]
    duration = datetime.timedelta(seconds=writer.duration())
    return [record.state.value, f"{min(points)}pts-{max(points)}pts",
            f"duration: {duration}",
            f"start: {_local_time(writer.start_time, 'not started')}",
            f"end: {_local_time(writer.end_time, 'not finished')}"]
