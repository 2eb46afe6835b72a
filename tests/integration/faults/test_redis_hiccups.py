"""Redis hiccups: the writer's connections are dropped while Redis stays up.

The command-line writer runs as a child process, as operators run it; its connections
are named ``nexus_writer_service:<pid>`` so that the test (and an operator reading
``CLIENT LIST``) can tell them apart and drop exactly them with ``CLIENT KILL``.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from nexus_writer_service.data import EndReason, Publisher
from nexus_writer_service.embedded import EmbeddedRedis
from tests.integration.faults.conftest import (
    TIME,
    connections_of,
    file_status,
    assert_nothing_lost,
    loopscan_points,
    published_points,
    register_audit,
    start_cli_writer,
    start_loopscan,
)
from tests.writer_support import wait_until


def _drop_connections_of(client: redis.Redis, pid: int) -> int:
    dropped = 0
    for connection in connections_of(client, pid):
        dropped += int(client.client_kill_filter(_id=connection["id"]))
    return dropped


@contextlib.contextmanager
def _scan_of_200_points(url: str, session: str, filename: Path, writer: subprocess.Popen[Any],
                        log: Path, lease: float) -> Iterator[None]:
    """A loopscan of 200 points, published while the block runs: it runs once the first
    40 are in the file; then the other 160 are sent and the scan ends. The file must hold
    them all, as Redis does, and the writer run on."""
    with Publisher(session, url, lease=lease, retention=60) as publisher:
        scan = start_loopscan(publisher, filename, 1, 200)
        scan.send(loopscan_points(1, 0, 40))
        wait_until(lambda: file_status(filename) == "RUNNING 40", 30, "40 points in the file")
        yield
        for first in range(40, 200, 40):
            scan.send(loopscan_points(1, first, 40))
        scan.end()
        key = scan.key
    wait_until(lambda: file_status(filename) == "SUCCEEDED 200", 60, "the file completed")
    assert writer.poll() is None, f"the writer exited: {log.read_text()[-2000:]}"
    published, reason = published_points(url, key)
    assert reason is EndReason.SUCCESS and len(published[TIME]) == 200
    assert_nothing_lost(filename, key, published, "SUCCEEDED", "SUCCESS")


@pytest.mark.slow
def test_cli_writer_rides_out_its_connections_being_dropped(
        redis_url: str, tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    session = "hiccup"
    filename = tmp_path / "data" / "hiccup.h5"
    register_audit(redis_url, session)
    writer, log = start_cli_writer(processes, session, redis_url, tmp_path)
    client = redis.Redis.from_url(redis_url)
    with _scan_of_200_points(redis_url, session, filename, writer, log, lease=30):
        for _ in range(2):  # the drop, and the drop of the connections made again
            assert _drop_connections_of(client, writer.pid) >= 1
            wait_until(lambda: len(connections_of(client, writer.pid)) >= 1, 30,
                       "writer connected again")
    client.close()


@pytest.mark.slow
def test_cli_writer_restarts_after_redis_restarts_and_completes_the_scan(
        own_redis: EmbeddedRedis, tmp_path: Path,
        processes: list[subprocess.Popen[Any]]) -> None:
    session = "restart"
    url = own_redis.url + "/0"
    filename = tmp_path / "data" / "restart.h5"
    register_audit(url, session)
    writer, log = start_cli_writer(processes, session, url, tmp_path)

    # the writer fails, or (under load) its lease lapses first: it stops, and writes
    # the session again once it holds the lease again
    def failed() -> bool:
        text = log.read_text()
        return "the session writer failed" in text or "could not be renewed" in text

    def running_again() -> bool:
        text = log.read_text()
        return "runs again" in text or text.count("writing session") >= 2

    with _scan_of_200_points(url, session, filename, writer, log, lease=60):
        own_redis.stop()
        wait_until(failed, 30, "the failure logged")
        time.sleep(1.0)  # an outage longer than a dropped connection's retries
        own_redis.start()
        wait_until(running_again, 30, "the writer running again")
    assert failed() and running_again(), log.read_text()[-3000:]


def test_cli_writer_gives_up_after_the_time_it_was_given(
        own_redis: EmbeddedRedis, tmp_path: Path,
        processes: list[subprocess.Popen[Any]]) -> None:
    writer, _ = start_cli_writer(processes, "giveup", own_redis.url + "/0", tmp_path,
                                 "--give-up-after", "1.5", stderr=subprocess.PIPE, text=True)
    own_redis.stop()
    started = time.monotonic()
    _, errors = writer.communicate(timeout=60)
    assert writer.returncode == 1
    assert time.monotonic() - started < 30
    assert "unreachable" in errors and "gave up after" in errors, errors
    assert "--give-up-after" in errors
