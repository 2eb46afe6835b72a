"""Processes dying under the writer: the publisher killed with SIGKILL mid-scan, and
the Redis server stopped mid-scan and started again, empty or with its data.

The session writer runs in the test's main thread (as in the Tango device); the
publisher is the real ``nexus-writer-simulate`` process or a ``Publisher`` of this
process; Redis is a real server of its own where it has to be stopped. Every test
ends with the "nothing lost" verdict of :func:`conftest.assert_nothing_lost`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from nexus_writer_service.data import EndReason, Publisher
from nexus_writer_service.embedded import EmbeddedRedis
from nexus_writer_service.subscribers import NexusSessionWriter, SubscriberState
from tests.integration.faults.conftest import (
    assert_nothing_lost,
    assert_record,
    fast_options,
    loopscan_points,
    published_points,
    publish_loopscan,
    register_audit,
    simulate_command,
    start_loopscan,
)
from tests.writer_support import session_writer, wait_scans_done, wait_until

LEASE = 1.0
#: A dead publisher's scan must end within a few leases; 10 leases leave a 5x margin
#: over the expected lease + polling time, on a loaded machine.
LOST_WITHIN = 10 * LEASE


def test_publisher_sigkilled_mid_scan_ends_publisher_lost_with_every_point(
        redis_url: str, tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    session = "sigkill"
    root = tmp_path / "data"
    register_audit(redis_url, session)
    options = fast_options(allowed_roots=(str(root),))
    with session_writer(redis_url, session, options, poll_interval=0.05) as writer:
        publisher = subprocess.Popen(simulate_command(
            redis_url, session, root, "--scan", "loopscan", "--npoints", "100000",
            "--count-time", "0.01", "--lease", str(LEASE)))
        processes.append(publisher)
        wait_until(lambda: bool(writer.scans()) and writer.scans()[0].writer.progress[0] >= 30,
                   60, "30 points of the simulated scan written")
        publisher.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: publisher.poll() is not None, 10, "the publisher dead")
        record = wait_scans_done(writer, 1, timeout=60)[0]
        ended_after = time.monotonic() - killed_at
    assert ended_after < LOST_WITHIN, f"scan ended {ended_after:.1f} s after the kill"
    published, reason = published_points(redis_url, record.key)
    assert reason is EndReason.PUBLISHER_LOST
    npoints = {len(values) for values in published.values()}
    assert len(npoints) == 1 and 30 <= npoints.pop() < 100000, npoints
    assert_record(record, "OFF", "SUCCEEDED", "finished")
    assert record.as_dict()["end_reason"] == "PUBLISHER_LOST"
    note = assert_nothing_lost(record.writer.filename, record.key, published,
                               "SUCCEEDED", "PUBLISHER_LOST")
    assert "lease" in str(note["message"]), note


def _restart_after_outage(writer: NexusSessionWriter) -> None:
    """What the Tango device does every few seconds: start the failed writer again."""
    wait_until(lambda: writer.state is SubscriberState.FAULT, 30, "session writer FAULT")
    assert "unreachable" in writer.state_reason, writer.state_reason
    deadline = time.monotonic() + 30
    while True:
        writer.start(wait=True, timeout=10)
        if writer.state is SubscriberState.ON:
            return
        assert time.monotonic() < deadline, writer.state_reason
        wait_until(writer.done, 10, "failed start finished")
        time.sleep(0.5)


def test_redis_restarted_empty_fails_the_running_scan_and_writes_the_next(
        own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    """Redis comes back without its data: the scan that was running goes FAULT, its
    file keeps what it had and stays resumable (RUNNING), with a reason naming Redis;
    a new scan that gets the same Redis key (the scan counter restarted) and the same
    entry of the same file does not overwrite it; the next scan is written."""
    session = "outage"
    url = own_redis.url + "/0"
    lost_file = tmp_path / "data" / "lost.h5"
    next_file = tmp_path / "data" / "next.h5"
    with session_writer(url, session, fast_options(), poll_interval=0.05) as writer:
        with Publisher(session, url, lease=30, retention=60) as publisher:
            scan = start_loopscan(publisher, lost_file, 1, 100)
            sent = loopscan_points(1, 0, 40)
            scan.send(sent)
            wait_until(lambda: bool(writer.scans())
                       and writer.scans()[0].writer.progress[0] == 40, 30, "40 points")
            lost = writer.scans()[0]
            own_redis.stop()
            shutil.rmtree(own_redis.workdir / "appendonlydir")
            wait_until(lost.writer.done, 30, "the running scan finished")
            own_redis.start()
            _restart_after_outage(writer)
            register_audit(url, session)
            same_key = publish_loopscan(publisher, lost_file, 1, 10)
            wait_scans_done(writer, 2)
            after = publish_loopscan(publisher, next_file, 2, 20, block=7)
        records = wait_scans_done(writer, 3)
    assert same_key.key == lost.key, "the restarted Redis gave the key to the new scan"
    assert records[0] is lost
    # the writer cannot tell an outage from a loss: the file stays resumable (RUNNING)
    assert_record(lost, "FAULT", "RUNNING", "RedisUnavailableError", "Redis is unreachable",
                  "check that the server runs")
    note = assert_nothing_lost(lost_file, lost.key, sent, "RUNNING", None)
    assert "Redis is unreachable" in str(note["message"]), note
    assert_record(records[1], "FAULT", "STARTING", "earlier scan with the same key",
                  "left untouched")
    published, _ = published_points(url, after.key)
    assert_record(records[2], "OFF", "SUCCEEDED", "finished")
    assert_nothing_lost(next_file, after.key, published, "SUCCEEDED", "SUCCESS")


def test_redis_restarted_with_its_data_completes_the_running_scan(
        own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    """Redis comes back with its append-only file: the session writer, started again,
    resumes the scan and completes the file; the publisher carries on publishing."""
    session = "outage"
    url = own_redis.url + "/0"
    filename = tmp_path / "data" / "kept.h5"
    register_audit(url, session)
    with session_writer(url, session, fast_options(), poll_interval=0.05) as writer:
        with Publisher(session, url, lease=30, retention=60) as publisher:
            scan = start_loopscan(publisher, filename, 1, 100)
            scan.send(loopscan_points(1, 0, 40))
            wait_until(lambda: bool(writer.scans())
                       and writer.scans()[0].writer.progress[0] == 40, 30, "40 points")
            first = writer.scans()[0]
            own_redis.stop()
            wait_until(first.writer.done, 30, "the scan writer finished")
            own_redis.start()
            _restart_after_outage(writer)
            for start in range(40, 100, 20):
                scan.send(loopscan_points(1, start, 20))
            scan.end()
        wait_until(lambda: writer.scans()[0] is not first and writer.scans()[0].writer.done(),
                   60, "the resumed scan written")
        record = writer.scans()[0]
    assert_record(first, "FAULT", "RUNNING", "Redis is unreachable")
    assert record.key == first.key and record.as_dict()["resumed"]
    assert_record(record, "OFF", "SUCCEEDED", "finished")
    published, reason = published_points(url, record.key)
    assert reason is EndReason.SUCCESS
    assert {len(values) for values in published.values()} == {100}
    assert_nothing_lost(filename, record.key, published, "SUCCEEDED", "SUCCESS")
