"""Redis memory is bounded by the writers' backlog, not by the retention time.

Data every registered writer has acknowledged (written to its file) is trimmed when the
last of them acknowledges it: during the scan, and right after its end, however short
the scan. A registered reader that lags keeps what it has not acknowledged.
"""

from __future__ import annotations

from pathlib import Path

from nexus_writer_service.data import Publisher, connect, get_session_node
from tests.integration.faults.conftest import (
    fast_options,
    loopscan_points,
    start_loopscan,
)
from tests.writer_support import session_writer, wait_scans_done, wait_until

_POINTS = 20_000
_BLOCK = 500


def _stream_bytes(client: object, key: str) -> int:
    return int(client.memory_usage(key) or 0)  # type: ignore[attr-defined]


def test_written_data_leaves_redis_during_the_scan_and_at_its_end(
        redis_url: str, tmp_path: Path) -> None:
    session = "trimmed"
    client = connect(redis_url)
    with session_writer(redis_url, session, fast_options()) as writer:
        with Publisher(session, redis_url, retention=3600) as publisher:
            scan = start_loopscan(publisher, tmp_path / "trimmed.h5", 1, 2 * _POINTS)
            events = scan.keys.events
            for first in range(0, _POINTS, _BLOCK):
                scan.send(loopscan_points(1, first, _BLOCK))
            wait_until(lambda: bool(writer.scans())
                       and writer.scans()[0].writer.progress[0] == _POINTS, 30,
                       "the first half written")
            # two data blocks of 8 bytes per point and channel were sent
            sent = 2 * 8 * _POINTS
            wait_until(lambda: client.xlen(events) < 10, 10, "trimmed during the scan")
            assert _stream_bytes(client, events) < 0.05 * sent
            for first in range(_POINTS, 2 * _POINTS, _BLOCK):
                scan.send(loopscan_points(1, first, _BLOCK))
            scan.end()
        (record,) = wait_scans_done(writer, 1)
    assert record.writer.progress[0] == 2 * _POINTS
    assert client.xlen(events) <= 1, "more than the end entry stayed after the scan"
    assert _stream_bytes(client, events) < 0.01 * 2 * sent
    assert client.ttl(scan.keys.info) > 0, "the scan's metadata follows the retention"
    client.close()


def test_a_registered_reader_that_lags_keeps_what_it_has_not_read(
        redis_url: str, tmp_path: Path) -> None:
    session = "lagging"
    node = get_session_node(session, redis_url)
    node.register_reader("slow_reader")
    client = connect(redis_url)
    try:
        with session_writer(redis_url, session, fast_options()) as writer:
            with Publisher(session, redis_url, retention=3600) as publisher:
                scan = start_loopscan(publisher, tmp_path / "lagging.h5", 1, 4000)
                for first in range(0, 4000, _BLOCK):
                    scan.send(loopscan_points(1, first, _BLOCK))
                scan.end()
            wait_scans_done(writer, 1)
        blocks = 4000 // _BLOCK
        assert client.xlen(scan.keys.events) >= blocks, "trimmed what a reader had not read"
    finally:
        node.unregister_reader("slow_reader")
        node.connection.close()
        client.close()
