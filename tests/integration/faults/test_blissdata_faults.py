"""Faults around a blissdata scan: its publisher (BLISS) killed, Redis restarted.

The verdict is always the file against what blissdata holds, read back with
blissdata's own reader (:func:`tests.blissdata_support.published`): every point in
Redis is in the file, once, bit-exact, and the file says how the scan ended.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import pytest
from blissdata.redis_engine.store import DataStore

from nexus_writer_service.data.blissdata_source import BlissdataSession
from nexus_writer_service.embedded import EmbeddedRedis, free_port
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import NexusSessionWriter, SubscriberState
from tests.blissdata_support import (
    ASCAN_CHANNELS,
    BlissScan,
    ascan_data,
    blocks,
    published,
    reference_scan_info,
)
from tests.integration.faults.conftest import cli_writer
from tests.nxcheck import nxcheck_errors
from tests.writer_support import wait_scans_done, wait_until

ROOT = Path(__file__).resolve().parents[3]
DIODE = "/3.1/instrument/diode/data"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read(filename: Path, path: str) -> Any:
    """A dataset's value, read without locking (None while it cannot be read)."""
    try:
        with h5py.File(filename, "r", locking=False) as h5:
            return h5[path][()]
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        return None


def _points(filename: Path) -> int:
    value = _read(filename, DIODE)
    return -1 if value is None else len(value)


def assert_file_holds(filename: Path, held: dict[str, np.ndarray], status: str,
                      reason: str) -> None:
    """The file is what blissdata holds, ended as said, and valid."""
    with h5py.File(filename, "r") as h5:
        entry = h5["3.1"]
        assert _text(entry["writer/status"][()]) == status
        assert _text(entry["writer/end_reason"][()]) == reason
        found: dict[str, h5py.Dataset] = {}

        def visit(_: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and "channel" in obj.attrs:
                found.setdefault(_text(obj.attrs["channel"]), obj)

        entry["instrument"].visititems(visit)
        assert set(found) == set(ASCAN_CHANNELS) == set(held)
        for name, values in held.items():
            assert found[name].dtype == values.dtype, name
            np.testing.assert_array_equal(found[name][()], values, err_msg=name)
    errors = nxcheck_errors(str(filename), ignore_entry_names=True)
    if len({len(values) for values in held.values()}) == 1:
        assert errors == []
    else:
        # a publisher that died while it sent leaves streams of different lengths
        # (blissdata sends each stream on its own): the file holds each as it is, and
        # the only complaint can be that a plot's axis and signal differ in length
        assert all("inconsistent with the signal shape" in e for e in errors), \
            errors


def _publisher(url: str, filename: Path, processes: list[subprocess.Popen[Any]]
               ) -> tuple[subprocess.Popen[Any], str]:
    """BLISS publishing a scan of 5000 points in a process of its own (see
    :func:`tests.blissdata_support.main`), and the key of its scan."""
    publisher = subprocess.Popen(
        [sys.executable, "-m", "tests.blissdata_support", url, str(filename), "demo", "5000",
         "10"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    processes.append(publisher)
    assert publisher.stdout is not None
    line = publisher.stdout.readline()
    assert line.startswith("sent "), f"the publisher did not start: {line!r}"
    return publisher, line.split()[1]


@pytest.mark.slow
def test_publisher_killed_mid_scan_ends_publisher_lost_with_all_it_published(
        blissdata_url: str, tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    filename = tmp_path / "data" / "killed.h5"
    writer = NexusSessionWriter(BlissdataSession("demo", blissdata_url, idle_timeout=3.0),
                                options=SaveOptions(allowed_roots=(str(tmp_path),)),
                                poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    try:
        publisher, key = _publisher(blissdata_url, filename, processes)
        wait_until(lambda: _points(filename) >= 100, 30, "points in the file")
        publisher.kill()  # BLISS dies while it sends: the scan is never closed
        publisher.wait(10)
        (record,) = wait_scans_done(writer, 1, timeout=60)
        assert record.state is SubscriberState.OFF, record.writer.state_reason
        assert record.writer.end_reason == "PUBLISHER_LOST"
    finally:
        writer.stop(wait=True, timeout=60)
    scan = DataStore(blissdata_url).load_scan(key)
    assert scan.state.name in ("STARTED", "PREPARED")  # never stopped nor closed
    held = published(blissdata_url, key)
    assert 100 <= len(held["simulation_diode_sampling_controller:diode"]) <= 5000
    assert_file_holds(filename, held, "SUCCEEDED", "PUBLISHER_LOST")  # as for ours


@pytest.fixture
def own_blissdata(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A server of the test's own with blissdata's modules, on a fixed port so that it
    restarts on the same URL, with an append-only file (``appendfsync always``)."""
    server = EmbeddedRedis(port=free_port(), workdir=tmp_path / "redis", blissdata=True,
                           config={"appendonly": "yes", "appendfsync": "always"})
    server.start()
    try:
        DataStore(server.url + "/0", init_db=True)
        yield server
    finally:
        server.cleanup()


@pytest.mark.slow
def test_writer_resumes_after_redis_restarts_mid_scan(
        own_blissdata: EmbeddedRedis, tmp_path: Path,
        processes: list[subprocess.Popen[Any]]) -> None:
    """blissdata's publisher does not survive a Redis restart (its stream sinks keep
    one connection, which dies): the scan is never closed. The writer runs again,
    resumes it from its acknowledgements, ends it PUBLISHER_LOST after the idle timeout
    with all that Redis kept, and writes the next scan."""
    url = own_blissdata.url + "/0"
    root = tmp_path / "data"
    filename = root / "restart.h5"
    log = tmp_path / "writer.log"
    writer = subprocess.Popen(cli_writer("demo", url, root, log, "--data-source", "blissdata",
                                         "--blissdata-idle-timeout", "3"))
    processes.append(writer)
    wait_until(lambda: log.exists() and "writing session" in log.read_text(), 30,
               "the writer started")
    publisher, key = _publisher(url, filename, processes)
    wait_until(lambda: _points(filename) >= 100, 30, "points in the file")
    own_blissdata.stop()
    # the writer fails, or its lease lapses first: it stops, and takes the session again
    wait_until(lambda: any(words in log.read_text() for words in (
        "the session writer failed", "could not be renewed")), 30, "the failure logged")
    own_blissdata.start()
    wait_until(lambda: log.read_text().count("writing scan 3_ascan") >= 2, 60,
               "the writer running again, the scan resumed")
    publisher.kill()
    publisher.wait(10)
    next_file = root / "next.h5"
    data = ascan_data(50)
    scan = BlissScan(url, reference_scan_info(str(next_file), npoints=50), number=4)
    scan.prepare_and_start()
    for part in blocks(data, 10):
        scan.send(part)
    scan.end()
    wait_until(lambda: _text(_read(filename, "/3.1/writer/end_reason") or b"")
               == "PUBLISHER_LOST", 60, "the first scan ended")
    wait_until(lambda: _text(_read(next_file, "/4.1/writer/status") or b"") == "SUCCEEDED",
               60, "the next scan written")
    assert writer.poll() is None, f"the writer exited: {log.read_text()[-2000:]}"
    held = published(url, key)
    assert len(held["simulation_diode_sampling_controller:diode"]) >= 100
    assert_file_holds(filename, held, "SUCCEEDED", "PUBLISHER_LOST")
    with h5py.File(next_file, "r") as h5:
        np.testing.assert_array_equal(h5["4.1/instrument/diode/data"][()],
                                      data["simulation_diode_sampling_controller:diode"])
