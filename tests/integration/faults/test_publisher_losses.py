"""The publisher loses nothing it accepted without naming it.

Its connections are dropped, or Redis is killed and restarted (append-only file,
``appendfsync always``), while it publishes as fast as it can: every point
:meth:`ScanPublisher.send` accepted is in Redis exactly once, or named (channel and
point range) to the caller and in the scan's end message. What a scan's end says in
Redis and in the file is what happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import redis

from nexus_writer_service.data import EndReason, Publisher, ScanPublisher
from nexus_writer_service.embedded import EmbeddedRedis, free_port
from nexus_writer_service.errors import PointsLostError, ScanStateError
from tests.integration.faults.conftest import (
    DIODE,
    TIME,
    loopscan_points,
    published_points,
    register_audit,
    start_cli_writer,
    start_loopscan,
    writer_note,
)
from tests.writer_support import wait_until

BLOCK = 10
NPOINTS = 200_000


def _publish_while(scan: ScanPublisher, fault: Callable[[], None],
                   release: threading.Event) -> dict[str, np.ndarray]:
    """Send NPOINTS in blocks of BLOCK while ``fault`` runs in a thread started at
    the first block; what was sent. The thread then waits for ``release``: a server
    it started dies with it (the embedded servers die with the thread that started
    them)."""
    def inject() -> None:
        fault()
        release.wait(120)

    injector = threading.Thread(target=inject, name="fault")
    sent: dict[str, list[np.ndarray]] = {TIME: [], DIODE: []}
    for first in range(0, NPOINTS, BLOCK):
        points = loopscan_points(1, first, BLOCK)
        scan.send(points)
        for name, values in points.items():
            sent[name].append(values)
        if first == 0:
            injector.start()
    return {name: np.concatenate(parts) for name, parts in sent.items()}


def _when_sent(scan: ScanPublisher, npoints: int) -> None:
    deadline = time.monotonic() + 60
    while scan.npoints(TIME) < npoints:
        assert time.monotonic() < deadline, "publishing stalled"
        time.sleep(0.001)


def _publish_through(url: str, session: str, fault: Callable[[ScanPublisher], None],
                     release: threading.Event) -> tuple[str, dict[str, np.ndarray]]:
    """A loopscan of NPOINTS published while ``fault(scan)`` runs (see
    :func:`_publish_while`); it ends, its publisher naming no point lost: its key, and
    what was sent."""
    with Publisher(session, url, lease=30, retention=60) as publisher:
        scan = start_loopscan(publisher, "unused.h5", 1, NPOINTS)
        sent = _publish_while(scan, lambda: fault(scan), release)
        assert scan.end() is True
        assert scan.lost == []
        return scan.key, sent


def _assert_in_redis_once(url: str, key: str, sent: dict[str, np.ndarray]) -> None:
    published, reason = published_points(url, key)
    assert reason is EndReason.SUCCESS
    for name, values in sent.items():
        assert len(published[name]) == len(values), (name, len(published[name]), len(values))
        np.testing.assert_array_equal(published[name], values, err_msg=name)


def test_connections_killed_during_fast_publishing_lose_nothing(redis_url: str) -> None:
    session = "pubkill"
    register_audit(redis_url, session)
    admin = redis.Redis.from_url(redis_url)
    killed = []

    def kill_every_client(scan: ScanPublisher) -> None:
        for npoints in (20_000, 80_000, 140_000):
            _when_sent(scan, npoints)
            killed.append(admin.client_kill_filter(_type="normal", skipme=True))

    release = threading.Event()
    release.set()
    key, sent = _publish_through(redis_url, session, kill_every_client, release)
    wait_until(lambda: len(killed) == 3, 30, "every kill done")
    admin.close()
    assert len(killed) == 3 and all(killed), killed
    _assert_in_redis_once(redis_url, key, sent)


def _kill_and_restart(server: EmbeddedRedis, outage: float) -> None:
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    time.sleep(outage)
    server.stop()
    server.start()


@pytest.mark.slow
@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_redis_killed_and_restarted_during_fast_publishing_loses_nothing(
        tmp_path: Path, appendfsync: str) -> None:
    """SIGKILL of Redis: what Redis answered was written to its append-only file
    before the answer (the fsync policy matters for a crash of the machine, not of
    the process), and what it did not answer is sent again."""
    session = "pubrestart"
    server = EmbeddedRedis(port=free_port(), workdir=tmp_path / "redis", config={
        "appendonly": "yes", "appendfsync": appendfsync})
    server.start()
    url = server.url + "/0"
    register_audit(url, session)

    def kill_redis(scan: ScanPublisher) -> None:
        _when_sent(scan, 50_000)
        _kill_and_restart(server, 0.5)

    release = threading.Event()
    try:
        key, sent = _publish_through(url, session, kill_redis, release)
        _assert_in_redis_once(url, key, sent)
    finally:
        release.set()
        server.cleanup()


def _file_ended(filename: Path, key: str) -> dict[str, str | None]:
    def ended() -> bool:
        try:
            # (a writer that lost Redis leaves the file resumable, then completes it)
            return writer_note(filename, key)["end_reason"] is not None
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, AssertionError):
            return False  # the reader contract (docs/file-layout.rst), or not ended yet
    wait_until(ended, 60, "the file finished")
    return writer_note(filename, key)


@contextlib.contextmanager
def _outage_after_40_points(own_redis: EmbeddedRedis, tmp_path: Path,
                            processes: list[subprocess.Popen[Any]], session: str,
                            words: str, **options: Any) -> Iterator[ScanPublisher]:
    """A loopscan of 100 points written by the command-line writer, published with
    ``options`` (:class:`Publisher` keywords); Redis stops once 40 points are sent,
    and the block goes on from there. Then the scan must have ended FAILED in Redis
    with those 40 points, and in the file, whose end message holds ``words``."""
    url = own_redis.url + "/0"
    filename = tmp_path / "data" / f"{session}.h5"
    register_audit(url, session)
    start_cli_writer(processes, session, url, tmp_path)
    with Publisher(session, url, retention=60, **options) as publisher:
        scan = start_loopscan(publisher, filename, 1, 100)
        client = redis.Redis.from_url(url)
        try:
            entries = client.xlen(scan.keys.events)
            scan.send(loopscan_points(1, 0, 40))
            # the entry is on its way when send returns: stored once Redis holds it
            wait_until(lambda: client.xlen(scan.keys.events) > entries, 10,
                       "the first 40 points stored")
        finally:
            client.close()
        own_redis.stop()
        yield scan
    published, reason = published_points(url, scan.key)
    assert reason is EndReason.FAILED and len(published[TIME]) == 40
    note = _file_ended(filename, scan.key)
    assert note["end_reason"] == "FAILED", note
    assert words in str(note["message"]), note


@pytest.mark.slow
def test_points_sent_while_redis_stays_down_are_named_to_the_caller_and_in_the_file(
        own_redis: EmbeddedRedis, tmp_path: Path,
        processes: list[subprocess.Popen[Any]]) -> None:
    with _outage_after_40_points(own_redis, tmp_path, processes, "publost",
                                 "'timer:elapsed_time' points 40-59",
                                 lease=30, reconnect_timeout=0.5) as scan:
        started = time.monotonic()
        with pytest.raises(PointsLostError) as lost:
            scan.send(loopscan_points(1, 40, 20))
        assert time.monotonic() - started < 5
        assert sorted(lost.value.lost) == [(DIODE, 40, 60), (TIME, 40, 60)]
        assert "'timer:elapsed_time' points 40-59" in str(lost.value)
        with pytest.raises(PointsLostError):  # a gap cannot be sent over
            scan.send(loopscan_points(1, 60, 20))
        own_redis.start()
        assert scan.end() is True


@pytest.mark.slow
def test_a_scan_whose_lease_ran_out_during_an_outage_is_ended_by_its_publisher(
        own_redis: EmbeddedRedis, tmp_path: Path,
        processes: list[subprocess.Popen[Any]]) -> None:
    with _outage_after_40_points(own_redis, tmp_path, processes, "publease",
                                 "Redis could not be reached", lease=1.5) as scan:
        time.sleep(3.0)
        own_redis.start()
        wait_until(lambda: scan.ended, 30, "the publisher ended the scan")
        with pytest.raises(ScanStateError, match="could not be reached"):
            scan.send(loopscan_points(1, 40, 20))
