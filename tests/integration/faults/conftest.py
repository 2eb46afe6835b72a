"""Shared helpers of the fault-injection tests: real processes, real Redis, real files.

Every fault test ends with the same verdict, "nothing lost": every point that was
published is in the file exactly once (same values, same count), the file passes
``nxcheck`` and its ``writer`` group says how the scan ended. What was published is
read back from Redis with the public reader API, through an *audit* reader that is
registered before the scan starts and never acknowledges anything, so the
publisher keeps the whole stream for it.

Helpers are plain functions (imported by the test modules of this directory);
the only fixture is ``processes``, which stops every child process a test starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import h5py
import numpy as np
import pytest
import redis

from nexus_writer_service.data import (
    EndReason,
    EventType,
    NodeType,
    Publisher,
    ScanPublisher,
    connect,
    get_scan_node,
    get_session_node,
)
from nexus_writer_service.embedded import EmbeddedRedis, free_port
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import ScanRecord, SubscriberState
from tests.nxcheck import nxcheck_errors
from tests.writer_support import session_writer, text, wait_scans_done, wait_until

#: The reader name under which the tests keep a scan's whole stream in Redis.
AUDIT_READER = "fault_audit"
TIME = "timer:elapsed_time"
DIODE = "diode:diode1"
#: Fast options (no disk-space thresholds: they are tested on purpose where needed).
FAST: dict[str, Any] = dict(flush_period=0.05, required_disk_space=0,
                            recommended_disk_space=0)
SIMULATE = str(Path(sys.executable).with_name("nexus-writer-simulate"))

Points = dict[str, np.ndarray]


def fast_options(**kwargs: Any) -> SaveOptions:
    return SaveOptions(**dict(FAST, **kwargs))


# -- processes -----------------------------------------------------------------------


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: only this child process is touched."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    process.wait(timeout)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """Child processes started by a test; each is stopped by its PID at the end."""
    started: list[subprocess.Popen[Any]] = []
    try:
        yield started
    finally:
        for process in started:
            stop_process(process)


# -- writing -------------------------------------------------------------------------


def run_session_scans(redis_url: str, session: str, save: Any,
                      *publishers: Callable[[Any], Any]) -> list[ScanRecord]:
    """A session writer of ``session`` writes what each of ``publishers`` (called with
    a :class:`Publisher`) publishes, in turn; it must stay ON throughout."""
    with session_writer(redis_url, session, save, poll_interval=0.05) as writer:
        with Publisher(session, redis_url, lease=2.0, retention=60) as publisher:
            for count, publish_one in enumerate(publishers, 1):
                publish_one(publisher)
                records = wait_scans_done(writer, count)
            assert writer.state is SubscriberState.ON, writer.state_reason
    return records


def assert_fault(record: ScanRecord, *words: str) -> str:
    """``record`` ended FAULT with a reason holding each of ``words``."""
    assert record.state is SubscriberState.FAULT, record.as_dict()
    reason = record.writer.state_reason
    for word in words:
        assert word in reason, (word, reason)
    return reason


# -- publishing ----------------------------------------------------------------------


def register_audit(redis_url: str, session: str) -> None:
    """Keep the whole stream of every scan created from now on (see module doc)."""
    node = get_session_node(session, redis_url)
    try:
        node.register_reader(AUDIT_READER)
    finally:
        node.connection.close()


def loopscan_info(filename: Any, npoints: int) -> dict[str, Any]:
    return {
        "title": f"loopscan {npoints} 0.1", "npoints": npoints, "filename": str(filename),
        "acquisition_chain": {"timer": {"master": {"scalars": [TIME]},
                                        "scalars": [DIODE]}},
    }


def start_loopscan(publisher: Publisher, filename: Any, number: int,
                   npoints: int) -> ScanPublisher:
    """Create, declare and prepare a loopscan with a timer and a diode."""
    scan = publisher.create_scan(loopscan_info(filename, npoints), name="loopscan",
                                 number=number)
    scan.add_channel(TIME, "float64", subscan="timer", unit="s")
    scan.add_channel(DIODE, "float64", subscan="timer")
    scan.prepare()
    return scan


def loopscan_points(number: int, first: int, count: int) -> Points:
    """Points ``[first, first + count)`` of loopscan ``number`` (distinct per scan)."""
    index = np.arange(first, first + count)
    return {TIME: index * 0.1 + number, DIODE: index.astype(np.float64) ** 2 + number}


def publish_loopscan(publisher: Publisher, filename: Any, number: int, npoints: int,
                     block: int = 0, end: bool = True) -> ScanPublisher:
    """A whole loopscan, sent in blocks of ``block`` points (all at once by default)."""
    scan = start_loopscan(publisher, filename, number, npoints)
    block = block or npoints
    for first in range(0, npoints, block):
        scan.send(loopscan_points(number, first, min(block, npoints - first)))
    if end:
        scan.end()
    return scan


# -- what was published, what was written --------------------------------------------


def published_points(redis_url: str, scan_key: str, timeout: float = 30.0
                     ) -> tuple[Points, EndReason | None]:
    """Every point of every channel of an ended scan, as Redis holds it, and its end
    reason (the scan must have ended, or its publisher died: the walk ends there)."""
    client = connect(redis_url)
    node = get_scan_node(scan_key, client=client)
    blocks: dict[str, list[tuple[int, np.ndarray]]] = {}
    reason = None
    try:
        for event, channel, data in node.walk_events(timeout=timeout, poll_interval=0.05):
            if event is EventType.NEW_NODE and channel.type is NodeType.CHANNEL:
                blocks.setdefault(channel.name, [])
            elif event is EventType.NEW_DATA:
                blocks.setdefault(channel.name, []).append((data.first_index, data.data))
            elif event is EventType.END_SCAN:
                reason = data.reason
    finally:
        client.close()
    points = {}
    for name, parts in blocks.items():
        expected = 0
        for first, values in parts:
            assert first == expected, f"{name}: Redis block at {first}, expected {expected}"
            expected += len(values)
        points[name] = (np.concatenate([values for _, values in parts]) if parts
                        else np.empty((0,)))
    return points, reason


def entries_of(h5: h5py.File, scan_key: str) -> list[h5py.Group]:
    return [group for group in h5.values() if isinstance(group, h5py.Group)
            and text(group.attrs.get("scan_key", "")) == scan_key]


def file_points(filename: Any, scan_key: str) -> Points:
    """Every channel dataset the file holds for scan ``scan_key`` (one per channel)."""
    found: Points = {}
    with h5py.File(filename, "r", locking=False) as h5:
        for entry in entries_of(h5, scan_key):
            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset) and "channel" in obj.attrs:
                    channel = text(obj.attrs["channel"])
                    assert channel not in found, f"channel {channel} written twice"
                    found[channel] = obj[()]
            entry.visititems(visit)
    return found


def writer_note(filename: Any, scan_key: str) -> dict[str, str | None]:
    """``status``, ``end_reason`` and ``message`` of the writer group of every entry of
    the scan (they must agree)."""
    notes = []
    with h5py.File(filename, "r", locking=False) as h5:
        for entry in entries_of(h5, scan_key):
            writer = entry["writer"]
            notes.append({field: text(writer[field][()]) if field in writer else None
                          for field in ("status", "end_reason", "message")})
    assert notes, f"{filename} has no entry of scan {scan_key}"
    assert all(note == notes[0] for note in notes), notes
    return notes[0]


def assert_nothing_lost(filename: Any, scan_key: str, published: Mapping[str, np.ndarray],
                        status: str, end_reason: str | None) -> dict[str, str | None]:
    """Every published point is in the file exactly once, with its value; the file is
    valid NeXus; its writer group says ``status`` and ``end_reason``. Returns the note."""
    written = file_points(filename, scan_key)
    assert sorted(written) == sorted(published), (sorted(written), sorted(published))
    for name, values in published.items():
        assert len(written[name]) == len(values), (name, len(written[name]), len(values))
        np.testing.assert_array_equal(written[name], values, err_msg=name)
    errors = nxcheck_errors(str(filename), ignore_entry_names=True)
    assert errors == [], errors
    note = writer_note(filename, scan_key)
    assert note["status"] == status, note
    assert note["end_reason"] == end_reason, note
    return note


def assert_record(record: ScanRecord, state: str, status: str, *words: str) -> str:
    """The scan writer finished in ``state`` with ``status``; its reason holds ``words``."""
    snapshot = record.as_dict()
    assert snapshot["state"] == state, snapshot
    assert snapshot["status"] == status, snapshot
    reason = str(snapshot["state_reason"])
    for word in words:
        assert word in reason, (word, reason)
    return reason


# -- resources of this process -------------------------------------------------------


def live_greenlets() -> int:
    """Greenlets that run or wait in this process (hubs excluded)."""
    import gc

    import greenlet
    from gevent.hub import Hub

    return sum(1 for obj in gc.get_objects()
               if isinstance(obj, greenlet.greenlet) and not isinstance(obj, Hub)
               and obj and not obj.dead and obj.parent is not None)


def resources() -> dict[str, int]:
    """Threads, live greenlets, open file descriptors (all of them, and how many are
    sockets) and resident memory (KiB) of this process."""
    rss = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:  # the descriptor listdir itself used, closed since
            continue
    return {"threads": threading.active_count(), "greenlets": live_greenlets(),
            "fds": len(fds), "sockets": sockets, "rss_kib": rss}


def simulate_command(redis_url: str, session: str, root: Any, *args: str) -> list[str]:
    return [SIMULATE, "--redis-url", redis_url, "--session", session, "--root", str(root),
            *args]


# -- a Redis of the test's own, and the command-line writer -----------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of the test's own, on a fixed port so it restarts on the same URL,
    with an append-only file (``appendfsync always``: nothing acknowledged is lost)."""
    server = EmbeddedRedis(port=free_port(), workdir=tmp_path / "redis", config={
        "appendonly": "yes", "appendfsync": "always"})
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def cli_writer(session: str, redis_url: str, root: Path, log: Path, *extra: str) -> list[str]:
    """The command line of ``NexusSessionWriter`` writing ``session`` under ``root``,
    logging at INFO to ``log`` only."""
    return [sys.executable, "-m", "nexus_writer_service.cli.session_writer", session,
            "--redis-url", redis_url, "--allowed-roots", str(root), "--flush-period", "0.05",
            "--log", "info", "--logfile", str(log), "--nologstdout", *extra]


def connections_of(client: redis.Redis, pid: int) -> list[dict[str, Any]]:
    """The Redis connections of the writer process ``pid`` (the writer names them
    ``nexus_writer_service:<pid>``)."""
    return [c for c in client.client_list() if c.get("name") == f"nexus_writer_service:{pid}"]


def start_cli_writer(processes: list[subprocess.Popen[Any]], session: str, redis_url: str,
                     tmp_path: Path, *extra: str, **popen: Any
                     ) -> tuple[subprocess.Popen[Any], Path]:
    """The command-line writer of ``session`` (:func:`cli_writer`) saving under
    ``tmp_path/data`` and logging to ``tmp_path/writer.log``, started as a child process
    that ``processes`` stops at the end of the test (``popen``: more ``Popen`` keywords);
    returned with its log once it is connected to Redis."""
    log = tmp_path / "writer.log"
    writer = subprocess.Popen(cli_writer(session, redis_url, tmp_path / "data", log, *extra),
                              **popen)
    processes.append(writer)
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: len(connections_of(client, writer.pid)) >= 1, 30,
                   "writer connected")
    finally:
        client.close()
    return writer, log


def file_status(filename: Path) -> str:
    """``"<writer status> <points of the elapsed time>"`` of entry 1.1, read without
    locking ("" while the file cannot be read: the reader contract)."""
    try:
        with h5py.File(filename, "r", locking=False) as h5:
            status = text(h5["1.1/writer/status"][()])
            points = h5["1.1/measurement/elapsed_time"].shape[0]
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):
        return ""
    return f"{status} {points}"
