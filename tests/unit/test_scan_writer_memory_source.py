"""NexusScanWriter over a second scan source, held in memory: real HDF5 files written
without any Redis server, through the scan-source protocol alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.data.events import EndReason, EventType
from nexus_writer_service.data.memory import MemoryScan, MemorySession
from nexus_writer_service.errors import DataLostError
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import (
    NexusScanWriter,
    NexusSessionWriter,
    SubscriberState,
    WriterStatus,
)
from tests.writer_support import wait_until

TIME = "timer:elapsed_time"
DIODE = "diode:diode1"
MCA = "mca:spectrum_det0"


def scan_info(filename: Path, npoints: int) -> dict[str, Any]:
    return {"title": "memory", "npoints": npoints, "filename": str(filename),
            "acquisition_chain": {"timer": {"master": {"scalars": [TIME]},
                                            "scalars": [DIODE], "spectra": [MCA]}}}


def channel_data(filename: Path, entry: str, channel: str) -> Any:
    found: list[Any] = []

    def visit(_: str, obj: Any) -> None:
        name = obj.attrs.get("channel", b"") if isinstance(obj, h5py.Dataset) else b""
        if (name.decode() if isinstance(name, bytes) else name) == channel:
            found.append(obj[()])

    with h5py.File(filename, "r", locking=False) as h5:
        h5[f"{entry}/instrument"].visititems(visit)
    assert len(found) == 1, channel
    return found[0]


def status(filename: Path, entry: str) -> str:
    with h5py.File(filename, "r", locking=False) as h5:
        value = h5[f"{entry}/writer/status"][()]
    return value.decode() if isinstance(value, bytes) else str(value)


def publish(scan: MemoryScan, npoints: int, block: int = 5) -> dict[str, Any]:
    scan.add_channel(TIME, "f8", subscan="timer")
    scan.add_channel(DIODE, "i4", subscan="timer")
    scan.add_channel(MCA, "u2", (8,), subscan="timer")
    scan.prepare()
    sent: dict[str, Any] = {TIME: np.arange(npoints) * 0.1, DIODE: np.arange(npoints) - 3,
                            MCA: np.arange(npoints * 8, dtype="u2").reshape(npoints, 8)}
    for first in range(0, npoints, block):
        scan.send({name: values[first:first + block] for name, values in sent.items()})
    return sent


def options(tmp_path: Path) -> SaveOptions:
    return SaveOptions(allowed_roots=(str(tmp_path),), flush_period=0.05)


def test_a_scan_of_the_memory_source_is_written_bit_exact(tmp_path: Path) -> None:
    session = MemorySession("memory")
    filename = tmp_path / "scan.h5"
    scan = session.create_scan(scan_info(filename, 20), name="loopscan", number=1)
    writer = NexusScanWriter(scan, options(tmp_path), reader_name="writer",
                             poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    sent = publish(scan, 20)
    scan.end(EndReason.SUCCESS)
    writer.join(timeout=30)
    assert writer.state is SubscriberState.OFF, writer.state_reason
    assert writer.status is WriterStatus.SUCCEEDED and writer.end_reason == "SUCCESS"
    assert writer.entries == ["1.1"] and writer.progress == (20, 20)
    for name, values in sent.items():
        np.testing.assert_array_equal(channel_data(filename, "1.1", name), values)
    assert status(filename, "1.1") == "SUCCEEDED"
    assert scan.acknowledged("writer") == scan.current_position()


def test_a_scan_whose_publisher_is_gone_ends_publisher_lost_with_its_points(
        tmp_path: Path) -> None:
    filename = tmp_path / "lost.h5"
    scan = MemorySession("memory").create_scan(scan_info(filename, 10), number=2)
    sent = publish(scan, 6, block=3)
    scan.lose_publisher()
    writer = NexusScanWriter(scan, options(tmp_path), poll_interval=0.05)
    writer.start()
    writer.join(timeout=30)
    assert writer.state is SubscriberState.OFF, writer.state_reason
    assert writer.end_reason == "PUBLISHER_LOST"
    np.testing.assert_array_equal(channel_data(filename, "2.1", DIODE), sent[DIODE])


def test_a_writer_stopped_mid_scan_completes_the_file_after_its_acknowledgement(
        tmp_path: Path) -> None:
    """What the source let go after the writer acknowledged it is not needed again:
    a new writer resumes after the acknowledgement, through the protocol alone."""
    filename = tmp_path / "resumed.h5"
    scan = MemorySession("memory").create_scan(scan_info(filename, 20), number=3)
    sent = publish(scan, 10)
    first = NexusScanWriter(scan, options(tmp_path), reader_name="writer",
                            poll_interval=0.05)
    first.start()
    wait_until(lambda: scan.acknowledged("writer") == scan.current_position(), 30,
               "the first writer acknowledges every point")
    first.stop(wait=True, timeout=30)
    assert first.status is WriterStatus.RUNNING
    scan.trim(scan.acknowledged("writer") or "0-0")
    with pytest.raises(DataLostError):
        next(scan.walk_events(from_position="0-0"))
    more = {name: values + 1 for name, values in sent.items()}
    for start in range(0, 10, 5):
        scan.send({name: values[start:start + 5] for name, values in more.items()})
    scan.end()
    second = NexusScanWriter(scan, options(tmp_path), reader_name="writer",
                             poll_interval=0.05)
    second.start()
    second.join(timeout=30)
    assert second.state is SubscriberState.OFF, second.state_reason
    assert second.resumed and second.status is WriterStatus.SUCCEEDED
    for name in sent:
        np.testing.assert_array_equal(channel_data(filename, "3.1", name),
                                      np.concatenate([sent[name], more[name]]))


def test_the_session_writer_writes_every_scan_of_a_memory_session(tmp_path: Path) -> None:
    session = MemorySession("memory")
    writer = NexusSessionWriter(session, options=options(tmp_path), poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    try:
        sent = []
        for number in (1, 2):
            scan = session.create_scan(scan_info(tmp_path / f"s{number}.h5", 10),
                                       number=number)
            sent.append(publish(scan, 10))
            scan.end()
        wait_until(lambda: len(writer.scans()) == 2
                   and all(r.writer.done() for r in writer.scans()), 30, "both scans written")
        records = writer.scans()
        assert [r.state for r in records] == [SubscriberState.OFF] * 2, [
            r.as_dict() for r in records]
    finally:
        writer.stop(wait=True, timeout=30)
    for number, values in zip((1, 2), sent):
        np.testing.assert_array_equal(
            channel_data(tmp_path / f"s{number}.h5", f"{number}.1", MCA), values[MCA])


def test_memory_walks_give_the_event_model_from_a_resumable_position() -> None:
    scan = MemorySession("memory").create_scan({"title": "t"})
    scan.add_channel("x", "f8")
    scan.send({"x": [1.0, 2.0]})
    scan.send({"x": [3.0]})
    scan.end(EndReason.ABORTED, "user")
    events = list(scan.walk_events())
    assert [e for e, _, _ in events] == [EventType.NEW_NODE, EventType.NEW_NODE,
                                         EventType.NEW_DATA, EventType.NEW_DATA,
                                         EventType.END_SCAN]
    assert events[-1][2].reason is EndReason.ABORTED and events[-1][2].message == "user"
    after = list(scan.walk_events(from_position=events[2][2].position))
    assert after[0][2].first_index == 2 and after[0][2].data.tolist() == [3.0]


def test_info_updates_reach_the_file_through_any_source(tmp_path: Path) -> None:
    """The writers take INFO_UPDATE from the source protocol, whatever the source."""
    filename = tmp_path / "updated.h5"
    scan = MemorySession("memory").create_scan(scan_info(filename, 4), number=3)
    writer = NexusScanWriter(scan, options(tmp_path), poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    publish(scan, 4)
    scan.update_info({"end_time": "2026-12-07T10:00:00+00:00", "comments": []})
    scan.end(EndReason.SUCCESS)
    writer.join(timeout=30)
    assert writer.state is SubscriberState.OFF, writer.state_reason
    assert writer.scan_info["end_time"] == "2026-12-07T10:00:00+00:00"
    with h5py.File(filename, "r") as h5:
        assert h5["3.1/end_time"][()] == b"2026-12-07T10:00:00+00:00"
