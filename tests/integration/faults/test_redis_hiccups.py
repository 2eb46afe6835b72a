"""Redis hiccups: the writer's connections are dropped while Redis stays up.

The command-line writer runs as a child process, as operators run it; its connections
are named ``nexus_writer_service:<pid>`` so that the test (and an operator reading
``CLIENT LIST``) can tell them apart and drop exactly them with ``CLIENT KILL``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from nexus_writer_service.data import EndReason, Publisher
from nexus_writer_service.embedded import EmbeddedRedis
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


def _connections_of(client: redis.Redis, pid: int) -> list[dict[str, Any]]:
    return [c for c in client.client_list() if c.get("name") == f"nexus_writer_service:{pid}"]


def _drop_connections_of(client: redis.Redis, pid: int) -> int:
    dropped = 0
    for connection in _connections_of(client, pid):
        dropped += int(client.client_kill_filter(_id=connection["id"]))
    return dropped


@pytest.mark.slow
def test_cli_writer_rides_out_its_connections_being_dropped(
        redis_url: str, tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    session = "hiccup"
    root = tmp_path / "data"
    filename = root / "hiccup.h5"
    log = tmp_path / "writer.log"
    client = redis.Redis.from_url(redis_url)
    register_audit(redis_url, session)
    writer = subprocess.Popen(cli_writer(session, redis_url, root, log))
    processes.append(writer)
    wait_until(lambda: len(_connections_of(client, writer.pid)) >= 1, 30, "writer connected")
    with Publisher(session, redis_url, lease=30, retention=60) as publisher:
        scan = start_loopscan(publisher, filename, 1, 200)
        scan.send(loopscan_points(1, 0, 40))
        wait_until(lambda: file_status(filename) == "RUNNING 40", 30, "40 points in the file")
        for _ in range(2):  # the drop, and the drop of the connections made again
            assert _drop_connections_of(client, writer.pid) >= 1
            wait_until(lambda: len(_connections_of(client, writer.pid)) >= 1, 30,
                       "writer connected again")
        for first in range(40, 200, 40):
            scan.send(loopscan_points(1, first, 40))
        scan.end()
        key = scan.key
    wait_until(lambda: file_status(filename) == "SUCCEEDED 200", 60, "the file completed")
    assert writer.poll() is None, f"the writer exited: {log.read_text()[-2000:]}"
    published, reason = published_points(redis_url, key)
    assert reason is EndReason.SUCCESS and len(published[TIME]) == 200
    assert_nothing_lost(filename, key, published, "SUCCEEDED", "SUCCESS")
    client.close()


@pytest.mark.slow
def test_cli_writer_restarts_after_redis_restarts_and_completes_the_scan(
        own_redis: EmbeddedRedis, tmp_path: Path,
        processes: list[subprocess.Popen[Any]]) -> None:
    session = "restart"
    url = own_redis.url + "/0"
    root = tmp_path / "data"
    filename = root / "restart.h5"
    log = tmp_path / "writer.log"
    register_audit(url, session)
    writer = subprocess.Popen(cli_writer(session, url, root, log))
    processes.append(writer)
    client = redis.Redis.from_url(url)
    wait_until(lambda: len(_connections_of(client, writer.pid)) >= 1, 30, "writer connected")
    client.close()
    with Publisher(session, url, lease=60, retention=60) as publisher:
        scan = start_loopscan(publisher, filename, 1, 200)
        scan.send(loopscan_points(1, 0, 40))
        wait_until(lambda: file_status(filename) == "RUNNING 40", 30, "40 points in the file")
        own_redis.stop()
        wait_until(lambda: "the session writer failed" in log.read_text(), 30,
                   "the failure logged")
        time.sleep(1.0)  # an outage longer than a dropped connection's retries
        own_redis.start()
        wait_until(lambda: "runs again" in log.read_text(), 30, "the writer running again")
        for first in range(40, 200, 40):
            scan.send(loopscan_points(1, first, 40))
        scan.end()
        key = scan.key
    wait_until(lambda: file_status(filename) == "SUCCEEDED 200", 60, "the file completed")
    assert writer.poll() is None, f"the writer exited: {log.read_text()[-2000:]}"
    text = log.read_text()
    assert "the session writer failed" in text and "runs again" in text, text[-3000:]
    published, reason = published_points(url, key)
    assert reason is EndReason.SUCCESS and len(published[TIME]) == 200
    assert_nothing_lost(filename, key, published, "SUCCEEDED", "SUCCESS")


def test_cli_writer_gives_up_after_the_time_it_was_given(
        own_redis: EmbeddedRedis, tmp_path: Path,
        processes: list[subprocess.Popen[Any]]) -> None:
    url = own_redis.url + "/0"
    log = tmp_path / "writer.log"
    writer = subprocess.Popen(cli_writer("giveup", url, tmp_path, log, "--give-up-after", "1.5"),
                              stderr=subprocess.PIPE, text=True)
    processes.append(writer)
    client = redis.Redis.from_url(url)
    wait_until(lambda: len(_connections_of(client, writer.pid)) >= 1, 30, "writer connected")
    client.close()
    own_redis.stop()
    started = time.monotonic()
    _, errors = writer.communicate(timeout=60)
    assert writer.returncode == 1
    assert time.monotonic() - started < 30
    assert "unreachable" in errors and "gave up after" in errors, errors
    assert "--give-up-after" in errors
