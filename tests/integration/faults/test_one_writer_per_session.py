"""One writer per session: the session lease, and a standby that takes over.

Two command-line writers for one session, as an operator might start them by mistake
(or as a standby host runs one): the second refuses to start, naming the holder; a
standby waits and, when the holder is SIGKILLed mid-scan, completes its scan.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from nexus_writer_service.data import EndReason, Publisher, connect
from nexus_writer_service.data.session_lease import SessionLease
from nexus_writer_service.errors import SessionTakenError
from tests.integration.faults.conftest import (
    TIME,
    cli_writer,
    file_status,
    assert_nothing_lost,
    loopscan_points,
    published_points,
    register_audit,
    start_loopscan,
)
from tests.writer_support import wait_until


def test_second_lease_is_refused_naming_the_holder_until_released(redis_url: str) -> None:
    client = connect(redis_url)
    first = SessionLease(client, "leased", name="first writer", ttl=1.0)
    second = SessionLease(client, "leased", name="second writer", ttl=1.0)
    try:
        first.acquire()
        assert first.valid and first.lost_reason == ""
        with pytest.raises(SessionTakenError) as info:
            second.acquire()
        message = str(info.value)
        assert "first writer" in message and "pid" in message and "since" in message
        assert not second.valid
        holder = second.holder()
        assert holder is not None and holder.name == "first writer"
        time.sleep(1.5)  # longer than the lease: the renewals keep it
        assert first.valid
        first.release()
        assert not first.valid and second.holder() is None
        second.acquire()
        assert second.valid
    finally:
        first.release()
        second.release()
        client.close()


@pytest.mark.parametrize("how, words", [
    ("taken", "held by another writer"),
    ("expired", "expired before it was renewed"),
])
def test_a_lease_taken_away_is_lost_with_the_reason(redis_url: str, how: str,
                                                    words: str) -> None:
    client = connect(redis_url)
    lease = SessionLease(client, f"lost{how}", ttl=0.6)
    try:
        lease.acquire()
        if how == "taken":
            client.hset(lease.key, "token", "somebody else")
        else:
            client.delete(lease.key)
        wait_until(lambda: not lease.valid, 5, "the lease lost")
        assert words in lease.lost_reason
    finally:
        lease.release()
        client.close()


def test_a_lease_not_renewed_lapses_before_it_expires_on_the_server(redis_url: str) -> None:
    client = connect(redis_url)
    lease = SessionLease(client, "lapsed", ttl=0.9)
    try:
        lease.acquire()
        lease._stop.set()  # the renewals stop, as in a process cut off from Redis
        wait_until(lambda: not lease.valid, 5, "the lease lapsed")
        assert client.exists(lease.key), "it lapsed only after the server dropped it"
        assert "could not be renewed" in lease.lost_reason
    finally:
        lease.release()
        client.close()


@pytest.mark.slow
def test_second_cli_writer_refuses_to_start_naming_the_first(
        redis_url: str, tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    session = "twice"
    first = subprocess.Popen(cli_writer(session, redis_url, tmp_path, tmp_path / "first.log"))
    processes.append(first)
    client = connect(redis_url)
    wait_until(lambda: client.exists(f"nws:{session}:writer"), 30, "the first writer started")
    second = subprocess.run(cli_writer(session, redis_url, tmp_path, tmp_path / "second.log"),
                            capture_output=True, text=True, timeout=60, check=False)
    client.close()
    assert second.returncode == 1, second.stderr
    assert f"pid {first.pid}" in second.stderr and "one writer per session" in second.stderr
    assert "standby" in second.stderr
    assert first.poll() is None, "the first writer was disturbed"


@pytest.mark.slow
def test_standby_takes_over_when_the_writer_is_killed_and_completes_its_scan(
        redis_url: str, tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    session = "standby"
    root = tmp_path / "data"
    filename = root / "standby.h5"
    standby_log = tmp_path / "standby.log"
    register_audit(redis_url, session)
    holder = subprocess.Popen(cli_writer(session, redis_url, root, tmp_path / "holder.log"))
    processes.append(holder)
    client = connect(redis_url)
    wait_until(lambda: client.exists(f"nws:{session}:writer"), 30, "the holder started")
    standby = subprocess.Popen(cli_writer(session, redis_url, root, standby_log, "--standby"))
    processes.append(standby)
    wait_until(lambda: standby_log.exists() and "waiting for the session" in
               standby_log.read_text(), 30, "the standby waiting")
    with Publisher(session, redis_url, lease=60, retention=60) as publisher:
        scan = start_loopscan(publisher, filename, 1, 200)
        scan.send(loopscan_points(1, 0, 60))
        wait_until(lambda: filename.exists() and "RUNNING" in file_status(filename), 30,
                   "the holder writing")
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        killed = time.time()
        for first in range(60, 200, 35):
            scan.send(loopscan_points(1, first, min(35, 200 - first)))
        scan.end()
        key = scan.key
    wait_until(lambda: "SUCCEEDED" in file_status(filename), 60, "the standby completed the file")
    assert standby.poll() is None
    took_over = _logged_at(standby_log.read_text(), "took over session")
    client.close()
    print(f"takeover: {took_over - killed:.2f} s after the SIGKILL")
    published, reason = published_points(redis_url, key)
    assert reason is EndReason.SUCCESS and len(published[TIME]) == 200
    assert_nothing_lost(filename, key, published, "SUCCEEDED", "SUCCESS")


def _logged_at(text: str, words: str) -> float:
    for line in text.splitlines():
        if words in line:
            stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
            assert stamp, line
            seconds = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S"))
            return seconds + int(stamp.group(2)) / 1000
    raise AssertionError(f"{words!r} not logged")
