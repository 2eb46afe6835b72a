"""Resources of a long-running writer: 500 short scans back to back, then 20 scans at
once, through ONE session writer in this process (real Redis, real files).

After a warm-up of 20 scans, the threads, live greenlets, open file descriptors and
resident memory of the process are measured; after the run they must be back within
a small bound of that. Finished scans are purged (``purge``, as the Tango device does
every second), so no record of them accumulates either.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import NamedTuple

import pytest

from nexus_writer_service.data import Publisher
from nexus_writer_service.subscribers import NexusSessionWriter
from tests.integration.faults.conftest import (
    assert_nothing_lost,
    assert_record,
    fast_options,
    file_points,
    loopscan_points,
    publish_loopscan,
    resources,
    writer_note,
)
from tests.writer_support import session_writer, wait_until

SESSION = "leaks"
WARM_UP = 20
BACK_TO_BACK = 500
AT_ONCE = 20
BATCH = 20
NPOINTS = 3
#: Allowed growth over the warmed-up process. Threads: none (every scan's reader thread
#: is joined when its scan ends). Greenlets: none kept either; 2 of slack for the hub's
#: own bookkeeping. Descriptors other than sockets: 5 (every scan file is closed).
#: Sockets: the Redis connection pool keeps one connection per scan read at the same
#: time, for reuse, so it may grow up to the most scans read at once (AT_ONCE), never
#: with the number of scans. Memory: 30 MB for allocator and HDF5 caches; a leak of one
#: scan's state (its file, layout, buffers) would grow it far beyond that over 500 scans.
BOUNDS = {"threads": 0, "greenlets": 2, "files": 5, "sockets": AT_ONCE + 5,
          "rss_kib": 30 * 1024}


class Published(NamedTuple):
    key: str
    filename: Path
    number: int


def _settled(writer: NexusSessionWriter, published: list[Published]) -> dict[str, int]:
    """Wait until every scan of ``published`` is written, purge them, measure."""
    keys = {scan.key for scan in published}

    def written() -> bool:
        records = {record.key: record for record in writer.scans()}
        return keys <= set(records) and all(records[k].writer.done() for k in keys)

    wait_until(written, 60, f"{len(keys)} scans written")
    for record in writer.scans():
        assert_record(record, "OFF", "SUCCEEDED", "finished")
    purged = writer.purge(0)
    assert len(purged) == len(keys) and writer.scans() == [], purged
    gc.collect()
    return resources()


def _publish_batch(publisher: Publisher, root: Path, first: int) -> list[Published]:
    batch = []
    for number in range(first, first + BATCH):
        filename = root / f"scan{number}.h5"
        scan = publish_loopscan(publisher, filename, number, NPOINTS)
        batch.append(Published(scan.key, filename, number))
    return batch


def _publish_at_once(redis_url: str, root: Path, first: int) -> list[Published]:
    """``AT_ONCE`` publishers in threads of their own, each with a scan in 3 blocks."""
    start = threading.Barrier(AT_ONCE)
    published: list[Published] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def publish(number: int) -> None:
        try:
            with Publisher(SESSION, redis_url, lease=5, retention=30) as publisher:
                start.wait(30)
                filename = root / f"scan{number}.h5"
                scan = publish_loopscan(publisher, filename, number, NPOINTS, block=1)
                with lock:
                    published.append(Published(scan.key, filename, number))
        except BaseException as exc:  # reported by the test below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=publish, args=(first + i,), name=f"publisher-{i}")
               for i in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    wait_until(lambda: not any(t.is_alive() for t in threads), 60, "publishers done")
    for thread in threads:
        thread.join(10)
    assert errors == [], errors
    return published


@pytest.mark.slow
def test_500_scans_back_to_back_and_20_at_once_leak_nothing(
        redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    published: list[Published] = []
    with session_writer(redis_url, SESSION, fast_options(), poll_interval=0.05) as writer:
        with Publisher(SESSION, redis_url, lease=5, retention=30) as publisher:
            batch = _publish_batch(publisher, root, 1)
            baseline = _settled(writer, batch)
            published += batch
            while len(published) < WARM_UP + BACK_TO_BACK:
                batch = _publish_batch(publisher, root, len(published) + 1)
                after_run = _settled(writer, batch)
                published += batch
        batch = _publish_at_once(redis_url, root, len(published) + 1)
        after_burst = _settled(writer, batch)
        published += batch
    print(f"\nresources after warm-up {baseline}, after {BACK_TO_BACK} scans {after_run}, "
          f"after {AT_ONCE} at once {after_burst}")
    for measured in (baseline, after_run, after_burst):
        measured["files"] = measured["fds"] - measured["sockets"]
    for name, bound in BOUNDS.items():
        for after in (after_run, after_burst):
            assert after[name] - baseline[name] <= bound, (name, baseline, after)

    # nothing lost: every point of every scan, exactly once; nxcheck on a sample
    # (first, last, and one of those written at once: 540 runs would take minutes)
    assert len({scan.key for scan in published}) == WARM_UP + BACK_TO_BACK + AT_ONCE
    checked = {published[0].number, published[-1].number, published[-AT_ONCE].number}
    for scan in published:
        sent = loopscan_points(scan.number, 0, NPOINTS)
        if scan.number in checked:
            assert_nothing_lost(scan.filename, scan.key, sent, "SUCCEEDED", "SUCCESS")
            continue
        written = file_points(scan.filename, scan.key)
        assert sorted(written) == sorted(sent), scan
        for name, values in sent.items():
            assert written[name].tolist() == values.tolist(), (scan, name)
        note = writer_note(scan.filename, scan.key)
        assert (note["status"], note["end_reason"]) == ("SUCCEEDED", "SUCCESS"), note
