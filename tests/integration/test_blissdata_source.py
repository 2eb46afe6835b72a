"""The blissdata 2.x source: scans BLISS 2.x publishes with blissdata, written by our
writers, with the real blissdata package on both sides and a server with its modules."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.data.blissdata_source import BlissdataSession
from nexus_writer_service.data.events import EndReason, EventType
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import NexusSessionWriter, SubscriberState
from tests.blissdata_support import (
    ASCAN_CHANNELS,
    END_TIME,
    BlissScan,
    ascan_data,
    blocks,
    publish,
    reference_scan_info,
)
from tests.nxcheck import nxcheck_errors
from tests.writer_support import wait_scans_done, wait_until


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _channel_datasets(entry: h5py.Group) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and "channel" in obj.attrs:
            found.setdefault(_text(obj.attrs["channel"]), obj)

    entry["instrument"].visititems(visit)
    return found


class _Writer:
    """A NexusSessionWriter of a blissdata session, started in the test's thread."""

    def __init__(self, url: str, session: str, root: str, **source: Any) -> None:
        self.writer = NexusSessionWriter(BlissdataSession(session, url, **source),
                                         options=SaveOptions(allowed_roots=(root,)),
                                         poll_interval=0.05)

    def __enter__(self) -> NexusSessionWriter:
        self.writer.start(wait=True, timeout=10)
        return self.writer

    def __exit__(self, *exc: Any) -> None:
        self.writer.stop(wait=True, timeout=60)


def test_0d_and_mca_scan_is_written_bit_exact_and_valid(blissdata_url, tmp_path):
    filename = str(tmp_path / "sample1" / "sample1_0001.h5")
    info = reference_scan_info(filename, npoints=50)
    data = ascan_data(50)
    with _Writer(blissdata_url, "demo", str(tmp_path)) as writer:
        publish(blissdata_url, info, data, block=7)
        (record,) = wait_scans_done(writer, 1)
        assert record.name == "3_ascan"
        assert record.state is SubscriberState.OFF, record.writer.state_reason
        assert record.writer.end_reason == "SUCCESS"
    with h5py.File(filename, "r") as h5:
        entry = h5["3.1"]
        assert _text(entry["writer/status"][()]) == "SUCCEEDED"
        assert _text(entry["title"][()]) == info["title"]
        datasets = _channel_datasets(entry)
        assert set(datasets) == set(ASCAN_CHANNELS)
        for name, values in data.items():
            assert datasets[name].dtype == values.dtype, name
            np.testing.assert_array_equal(datasets[name][()], values, err_msg=name)
        assert entry["instrument/samy/value"].attrs.get("units") in (None, "mm", b"mm")
        # completed at CLOSED: BLISS's end time and end positions reach the file
        assert _text(entry["end_time"][()]) == END_TIME
        start = entry["instrument/positioners_start"]
        end = entry["instrument/positioners_end"]
        assert set(end) == set(start) and len(end) > 0
        for motor in end:
            assert end[motor][()] == start[motor][()] + 0.5, motor
        stored = json.loads(_text(entry["writer/scan_info"][()]))
        assert stored["end_time"] == END_TIME and stored["end_reason"] == "SUCCESS"
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


def test_scan_walk_gives_the_event_model_with_point_indices(blissdata_url, tmp_path):
    info = reference_scan_info(str(tmp_path / "scan.h5"), npoints=20)
    channels = {"axis:samy": (np.float64, ()), "mca1:spectrum_det0": (np.int32, (4,))}
    data = {"axis:samy": np.arange(20.0), "mca1:spectrum_det0":
            np.arange(80, dtype=np.int32).reshape(20, 4)}
    scan = BlissScan(blissdata_url, info, channels=channels)
    source = BlissdataSession("demo", blissdata_url).scan(scan.key)
    assert (source.name, source.number) == ("ascan", 3)
    assert source.info["filename"] == info["filename"]
    scan.prepare_and_start()
    for part in blocks(data, 6):
        scan.send(part)
    scan.end("USER_ABORT")
    events = list(source.walk_events(poll_interval=0.05))
    kinds = [event[0] for event in events]
    assert kinds[:3] == [EventType.NEW_NODE] * 3  # the top master, then two channels
    assert kinds[3] is EventType.PREPARED_SCAN and kinds[-1] is EventType.END_SCAN
    assert events[-1][2].reason is EndReason.ABORTED
    got: dict[str, list[np.ndarray]] = {}
    for kind, node, event in events:
        if kind is EventType.NEW_DATA:
            assert event.first_index == sum(len(b) for b in got.get(node.name, []))
            got.setdefault(node.name, []).append(event.data)
    for name, values in data.items():
        np.testing.assert_array_equal(np.concatenate(got[name]), values)
    assert events[-1][2].position == source.current_position()
    # a walk from a position gives what follows it, and nothing again
    first = next(e[2] for e in events if e[0] is EventType.NEW_DATA)
    rest = [e for e in source.walk_events(from_position=first.position, poll_interval=0.05)
            if e[0] is EventType.NEW_DATA]
    assert sum(e[2].npoints for e in rest) == 20 + 20 - first.npoints


@pytest.mark.parametrize("session, changes", [
    ("other", {}), ("demo", {"save": False}), ("demo", {"data_writer": "hdf5"}),
])
def test_scans_not_for_this_writer_are_not_written(blissdata_url, tmp_path, session, changes):
    skipped = str(tmp_path / "skipped.h5")
    written = str(tmp_path / "written.h5")
    with _Writer(blissdata_url, "demo", str(tmp_path)) as writer:
        info = dict(reference_scan_info(skipped, session=session, npoints=5), **changes)
        publish(blissdata_url, info, ascan_data(5), session=session, number=1)
        publish(blissdata_url, reference_scan_info(written, npoints=5), ascan_data(5),
                number=2)
        (record,) = wait_scans_done(writer, 1)
        assert record.name == "2_ascan"
    assert not (tmp_path / "skipped.h5").exists()


@pytest.mark.parametrize("reason, ours", [
    ("SUCCESS", "SUCCESS"), ("FAILURE", "FAILED"), ("USER_ABORT", "ABORTED"),
    ("DELETION", "ABORTED"),
])
def test_end_reasons_are_mapped(blissdata_url, tmp_path, reason, ours):
    filename = str(tmp_path / "scan.h5")
    with _Writer(blissdata_url, "demo", str(tmp_path)) as writer:
        scan = BlissScan(blissdata_url, reference_scan_info(filename, npoints=4))
        scan.prepare_and_start()
        scan.send(ascan_data(4))
        if reason == "DELETION":  # while the writer writes it
            wait_until(lambda: writer.scans() and writer.scans()[0].writer.status.value
                       == "RUNNING", 10, "the scan being written")
            scan.store.delete_scan(scan.key, force=True)
        else:
            scan.end(reason)
        (record,) = wait_scans_done(writer, 1)
        assert record.writer.end_reason == ours
    with h5py.File(filename, "r") as h5:
        assert _text(h5["3.1/writer/end_reason"][()]) == ours
        assert len(h5["3.1/instrument/samy/value"]) == 4


def test_abandoned_scan_ends_publisher_lost_after_the_idle_timeout(blissdata_url, tmp_path):
    filename = str(tmp_path / "scan.h5")
    data = ascan_data(30)
    with _Writer(blissdata_url, "demo", str(tmp_path), idle_timeout=1.0) as writer:
        scan = BlissScan(blissdata_url, reference_scan_info(filename, npoints=30))
        scan.prepare_and_start()
        for part in blocks(data, 10):  # then the publisher dies: the scan is never closed
            scan.send(part)
        last_sent = time.monotonic()
        (record,) = wait_scans_done(writer, 1, timeout=30)
        silent = time.monotonic() - last_sent
        assert record.state is SubscriberState.OFF, record.writer.state_reason
        assert record.writer.end_reason == "PUBLISHER_LOST"
        assert "no data came for 1 s" in record.writer.end_message
        assert silent >= 1.0
    with h5py.File(filename, "r") as h5:
        entry = h5["3.1"]
        assert _text(entry["writer/end_reason"][()]) == "PUBLISHER_LOST"
        assert "never closed" in _text(entry["writer/message"][()])
        datasets = _channel_datasets(entry)
        for name, values in data.items():
            np.testing.assert_array_equal(datasets[name][()], values, err_msg=name)
    assert nxcheck_errors(filename, ignore_entry_names=True) == []
    # the verdict is kept: a writer started later lists the scan as ended, and finished
    session = BlissdataSession("demo", blissdata_url, idle_timeout=1.0)
    assert session.scan_keys() == [(scan.key, True)]
    source = session.scan(scan.key)
    assert source.acknowledged("nexus_writer") == source.current_position()


def test_scan_pausing_less_than_the_idle_timeout_is_written_completely(
        blissdata_url, tmp_path):
    filename = str(tmp_path / "scan.h5")
    data = ascan_data(40)
    with _Writer(blissdata_url, "demo", str(tmp_path), idle_timeout=1.5) as writer:
        scan = BlissScan(blissdata_url, reference_scan_info(filename, npoints=40))
        time.sleep(1.0)  # a long preparation
        scan.scan.prepare()
        time.sleep(1.0)
        scan.scan.start()
        for part in blocks(data, 10):
            time.sleep(1.0)  # a count, a sleep between points: shorter than the timeout
            scan.send(part)
        time.sleep(1.0)
        scan.scan.stop()
        time.sleep(1.0)  # BLISS closes once its end-of-scan work is done
        scan.scan.info["end_reason"] = "SUCCESS"
        scan.scan.close()
        (record,) = wait_scans_done(writer, 1, timeout=30)
        assert record.writer.end_reason == "SUCCESS", record.writer.end_message
    with h5py.File(filename, "r") as h5:
        datasets = _channel_datasets(h5["3.1"])
        for name, values in data.items():
            np.testing.assert_array_equal(datasets[name][()], values, err_msg=name)


def test_scan_never_prepared_ends_publisher_lost(blissdata_url, tmp_path):
    filename = str(tmp_path / "scan.h5")
    with _Writer(blissdata_url, "demo", str(tmp_path), idle_timeout=1.0) as writer:
        BlissScan(blissdata_url, reference_scan_info(filename, npoints=3))  # then dies
        (record,) = wait_scans_done(writer, 1, timeout=30)
        assert record.writer.end_reason == "PUBLISHER_LOST"
    with h5py.File(filename, "r") as h5:
        assert _text(h5["3.1/writer/end_reason"][()]) == "PUBLISHER_LOST"
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


def test_idle_timeout_must_be_a_positive_number():
    from nexus_writer_service.errors import ConfigurationError

    for wrong in (0, -1.0, float("inf"), "10", True):
        with pytest.raises(ConfigurationError, match="idle_timeout"):
            BlissdataSession("demo", "redis://localhost:1", idle_timeout=wrong)


def test_scan_is_known_from_created(blissdata_url, tmp_path):
    filename = str(tmp_path / "scan.h5")
    with _Writer(blissdata_url, "demo", str(tmp_path)) as writer:
        scan = BlissScan(blissdata_url, reference_scan_info(filename, npoints=3))
        wait_until(lambda: [r.name for r in writer.scans()] == ["3_ascan"], 10,
                   "the scan listed at CREATED")
        assert writer.scan("3_ascan").key == scan.key
        scan.prepare_and_start()
        scan.send(ascan_data(3))
        scan.end()
        wait_scans_done(writer, 1)


def _length(path: str, dataset: str) -> int:
    try:
        with h5py.File(path, "r", locking=False) as h5:
            return int(h5[dataset].shape[0])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        return -1


def _status(path: str) -> str:
    try:
        with h5py.File(path, "r", locking=False) as h5:
            return _text(h5["/3.1/writer/status"][()])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        return ""


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.slow
def test_writer_killed_mid_scan_completes_the_file_when_started_again(
        blissdata_url, tmp_path, processes):
    filename = str(tmp_path / "resume" / "scan.h5")
    log = tmp_path / "writer.log"
    command = [sys.executable, "-m", "nexus_writer_service.cli.session_writer", "demo",
               "--redis-url", blissdata_url, "--allowed-roots", str(tmp_path),
               "--flush-period", "0.05", "--logfile", str(log), "--nologstdout"]
    first = subprocess.Popen(command)  # --data-source auto: blissdata, from the Redis
    processes.append(first)
    _wait_for(lambda: log.exists() and "data source blissdata" in log.read_text()
              and "writing session" in log.read_text(), 30, "the writer did not start")
    data = ascan_data(400)
    scan = BlissScan(blissdata_url, reference_scan_info(filename, npoints=400))
    scan.prepare_and_start()
    parts = list(blocks(data, 10))
    for part in parts[:20]:
        scan.send(part)
    dataset = "/3.1/instrument/diode/data"
    _wait_for(lambda: _length(filename, dataset) >= 200, 30, "the first writer wrote nothing")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    for part in parts[20:]:
        scan.send(part)
    scan.end()
    second = subprocess.Popen(command + ["--data-source", "blissdata"])
    processes.append(second)
    _wait_for(lambda: _status(filename) == "SUCCEEDED", 30,
              f"not completed: {_status(filename)!r}")
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    with h5py.File(filename, "r") as h5:
        datasets = _channel_datasets(h5["3.1"])
        for name, values in data.items():
            np.testing.assert_array_equal(datasets[name][()], values, err_msg=name)
        assert "resumed" in _text(h5["/3.1/writer/resumed"][()])
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


def test_hostile_scan_document_faults_only_its_scan(blissdata_url, tmp_path):
    import redis

    bad = BlissScan(blissdata_url, reference_scan_info(str(tmp_path / "bad.h5")), number=1)
    client = redis.Redis.from_url(blissdata_url)
    try:
        client.execute_command("JSON.SET", bad.key, "$.id.number", '"one"')
    finally:
        client.close()
    good = str(tmp_path / "good.h5")
    with _Writer(blissdata_url, "demo", str(tmp_path)) as writer:
        wait_until(lambda: any(r.state is SubscriberState.FAULT for r in writer.scans()), 10,
                   "the hostile scan in FAULT")
        (record,) = writer.scans()
        assert bad.key in record.writer.state_reason
        publish(blissdata_url, reference_scan_info(good, npoints=5), ascan_data(5), number=2)
        records = wait_scans_done(writer, 2)
        assert [r.state for r in records] == [SubscriberState.FAULT, SubscriberState.OFF]
        assert writer.state is SubscriberState.ON
    assert not (tmp_path / "bad.h5").exists()
    assert nxcheck_errors(good, ignore_entry_names=True) == []


def test_auto_chooses_the_source_from_what_redis_holds(blissdata_url, redis_url):
    from nexus_writer_service.data import Publisher
    from nexus_writer_service.data.opener import open_session
    from nexus_writer_service.errors import ConfigurationError

    assert open_session("demo", blissdata_url).data_source == "blissdata"
    assert open_session("demo", redis_url).data_source == "nws"  # nothing there yet
    assert open_session("demo", blissdata_url, "nws").data_source == "nws"
    with Publisher("demo", blissdata_url) as publisher:  # our streams of that session
        publisher.create_scan({"filename": "x.h5"}, name="loopscan", number=1).end()
    assert open_session("demo", blissdata_url).data_source == "nws"
    assert open_session("other", blissdata_url).data_source == "blissdata"
    with pytest.raises(ConfigurationError, match="blissdata"):
        open_session("demo", blissdata_url, "bliss")


def test_scan_history_is_read_in_batches_as_blissdata_reads_it(
        blissdata_url, tmp_path, monkeypatch):
    from blissdata.exceptions import NoScanAvailable
    from blissdata.redis_engine.store import DataStore

    from nexus_writer_service.data import blissdata_source

    monkeypatch.setattr(blissdata_source, "HISTORY_BATCH", 4)  # several batches
    store = DataStore(blissdata_url)
    created = []
    for number in range(1, 15):
        session = "other" if number % 3 == 0 else "demo"
        info = reference_scan_info(str(tmp_path / f"{number}.h5"), session=session)
        if number == 5:
            info["save"] = False
        scan = store.create_scan({"name": "ascan", "number": number, "data_policy":
                                  "no_policy", "session": session, "path": info["filename"]},
                                 info=info)
        if number % 2:  # BLISS closed it
            scan.prepare()
            scan.start()
            scan.stop()
            scan.info["end_reason"] = "SUCCESS"
            scan.close()
        created.append(scan.key)
    store.delete_scan(created[3], force=True)  # being deleted: blissdata skips it
    # what blissdata's own reader lists, one scan at a time
    expected = []
    since = "0-0"
    while True:
        try:
            since, key = store.get_next_scan(since=since, block=False)
        except NoScanAvailable:
            break
        scan = store.load_scan(key)
        if scan.session == "demo" and scan.info.get("save"):
            expected.append((key, scan.state.name == "CLOSED"))
    assert created[3] not in [key for key, _ in expected]
    assert len(expected) == 8 and any(ended for _, ended in expected) \
        and not all(ended for _, ended in expected)
    assert BlissdataSession("demo", blissdata_url).scan_keys() == expected


def test_closed_scans_are_forgotten_and_not_written_again(blissdata_url, tmp_path):
    source = BlissdataSession("demo", blissdata_url)
    writer = NexusSessionWriter(source, options=SaveOptions(allowed_roots=(str(tmp_path),)),
                                poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    try:
        files = [str(tmp_path / f"scan{n}.h5") for n in (1, 2, 3)]
        for number, filename in enumerate(files, 1):
            publish(blissdata_url, reference_scan_info(filename, npoints=5), ascan_data(5),
                    number=number)
        publish(blissdata_url, reference_scan_info(str(tmp_path / "other.h5"),
                                                   session="other", npoints=5),
                ascan_data(5), session="other", number=4)
        records = wait_scans_done(writer, 3)
        assert [r.writer.end_reason for r in records] == ["SUCCESS"] * 3
        # the session source keeps nothing of the scans closed, written or skipped
        wait_until(lambda: not source._running, 10, "the closed scans forgotten")
        written = {name: (tmp_path / name).stat().st_mtime_ns for name in
                   ("scan1.h5", "scan2.h5", "scan3.h5")}
        # started again: the scans are listed again, and none is written twice
        writer.stop(wait=True, timeout=60)
        writer.start(wait=True, timeout=10)
        publish(blissdata_url, reference_scan_info(str(tmp_path / "scan5.h5"), npoints=5),
                ascan_data(5), number=5)
        wait_until(lambda: (tmp_path / "scan5.h5").exists() and len(writer.scans()) == 4
                   and all(r.writer.done() for r in writer.scans()), 30, "scan 5 written")
        assert sorted(r.name for r in writer.scans()) == [
            "1_ascan", "2_ascan", "3_ascan", "5_ascan"]
    finally:
        writer.stop(wait=True, timeout=60)
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in written} == written
    for number, filename in enumerate(files, 1):
        with h5py.File(filename, "r") as h5:
            assert _text(h5[f"{number}.1/writer/status"][()]) == "SUCCEEDED"
            assert "resumed" not in h5[f"{number}.1/writer"]
    assert not (tmp_path / "other.h5").exists()


def test_streams_created_after_prepared_are_written(blissdata_url, tmp_path):
    """blissdata lets a publisher create streams after PREPARED (they enter the scan
    document at the next state change): they are written, and a walk resumed from a
    position that predates them reads them from their start."""
    from blissdata.streams.default import Stream

    filename = str(tmp_path / "late.h5")
    info = reference_scan_info(filename, npoints=30)
    channels = {"axis:samy": (np.float64, ())}
    data = {"axis:samy": np.arange(30.0), "late:early": np.arange(30, dtype=np.int32),
            "late:diode": np.arange(30.0) * 2}
    with _Writer(blissdata_url, "demo", str(tmp_path)) as writer:
        scan = BlissScan(blissdata_url, info, channels=channels)
        scan.scan.prepare()
        early = scan.scan.create_stream(Stream.make_definition("late:early", np.int32, ()))
        scan.scan.start()  # "late:early" is in the document from here
        scan.send({"axis:samy": data["axis:samy"][:10]})
        early.send(data["late:early"][:10])
        wait_until(lambda: writer.scans() and writer.scans()[0].writer.status.value
                   == "RUNNING", 10, "the scan being written")
        late = scan.scan.create_stream(Stream.make_definition("late:diode", np.float64, ()))
        for start in (0, 10, 20):  # "late:diode" enters the document at STOPPED
            late.send(data["late:diode"][start:start + 10])
        scan.send({"axis:samy": data["axis:samy"][10:]})
        early.send(data["late:early"][10:])
        scan.end()
        (record,) = wait_scans_done(writer, 1)
        assert record.state is SubscriberState.OFF, record.writer.state_reason
    with h5py.File(filename, "r") as h5:
        datasets = _channel_datasets(h5["3.1"])
        assert set(datasets) == set(data)
        for name, values in data.items():
            np.testing.assert_array_equal(datasets[name][()], values, err_msg=name)
    assert nxcheck_errors(filename, ignore_entry_names=True) == []
    # a position written before the late streams came: they are read from 0
    source = BlissdataSession("demo", blissdata_url).scan(scan.key)
    assert source.current_position().count(",") == 2  # three streams
    events = list(source.walk_events(from_position="2:10", poll_interval=0.05))
    got: dict[str, int] = {}
    for kind, node, event in events:
        if kind is EventType.NEW_DATA:
            got[node.name] = got.get(node.name, 0) + event.npoints
    assert got == {"axis:samy": 20, "late:diode": 30, "late:early": 30}


def _trim(url: str, key: str, upto: int) -> None:
    """What blissdata's memory tracker does when Redis runs short of memory: the points
    of every stream of the scan before ``upto`` are removed (``XTRIM MINID``)."""
    import redis
    from blissdata.redis_engine.store import DataStore

    scan = DataStore(url).load_scan(key)
    client = redis.Redis.from_url(url)
    try:
        for stream in scan.streams.values():
            client.xtrim(stream.key, minid=upto, approximate=False)
    finally:
        client.close()


def test_walk_over_trimmed_points_raises_data_lost_naming_them(blissdata_url, tmp_path):
    from nexus_writer_service.errors import DataLostError

    channels = {"axis:samy": (np.float64, ()), "diode:diode": (np.int32, ())}
    data = {"axis:samy": np.arange(30.0), "diode:diode": np.arange(30, dtype=np.int32)}
    scan = publish(blissdata_url, reference_scan_info(str(tmp_path / "s.h5"), npoints=30),
                   data, block=10, channels=channels)
    _trim(blissdata_url, scan.key, 10)
    source = BlissdataSession("demo", blissdata_url).scan(scan.key)
    with pytest.raises(DataLostError) as lost:
        next(source.walk_events(poll_interval=0.05))
    message = str(lost.value)
    assert scan.key in message and "points 0..9 of stream 'axis:samy'" in message
    assert "points 0..9 of stream 'diode:diode'" in message
    with pytest.raises(DataLostError, match=r"points 4\.\.9 of stream 'axis:samy'"):
        next(source.walk_events(from_position="2:4,12", poll_interval=0.05))
    rest = [e for e in source.walk_events(from_position="2:10,12", poll_interval=0.05)
            if e[0] is EventType.NEW_DATA]
    assert {n: sum(e[2].npoints for e in rest if e[1].name == n) for n in data} == {
        "axis:samy": 20, "diode:diode": 18}


@pytest.mark.parametrize("trimmed, complete", [(20, True), (30, False)],
                         ids=["written-points-trimmed", "unwritten-points-trimmed"])
def test_writer_started_again_after_trimming_resumes_from_its_acknowledgement(
        blissdata_url, tmp_path, trimmed, complete):
    filename = str(tmp_path / "scan.h5")
    data = ascan_data(60)
    parts = list(blocks(data, 10))
    scan = BlissScan(blissdata_url, reference_scan_info(filename, npoints=60))
    writer = _Writer(blissdata_url, "demo", str(tmp_path))
    with writer:
        scan.prepare_and_start()
        for part in parts[:2]:
            scan.send(part)
        source = BlissdataSession("demo", blissdata_url).scan(scan.key)
        wait_until(lambda: (source.acknowledged("nexus_writer") or "").endswith(
            ",".join(["20"] * len(ASCAN_CHANNELS))), 10, "20 points acknowledged")
        (first,) = writer.writer.scans()
    for part in parts[2:]:  # while no writer runs
        scan.send(part)
    scan.end()
    _trim(blissdata_url, scan.key, trimmed)  # Redis short of memory
    with writer:
        wait_until(lambda: [r for r in writer.writer.scans()
                            if r.writer is not first.writer and r.writer.done()], 30,
                   "the scan resumed and finished")
        (record,) = writer.writer.scans()
        if complete:
            assert record.state is SubscriberState.OFF, record.writer.state_reason
        else:
            assert record.state is SubscriberState.FAULT
            reason = record.writer.state_reason
            assert "points 20..29 of stream" in reason and "no longer in Redis" in reason
    with h5py.File(filename, "r") as h5:
        datasets = _channel_datasets(h5["3.1"])
        for name, values in data.items():
            if complete:
                np.testing.assert_array_equal(datasets[name][()], values, err_msg=name)
            else:  # what was written is kept, and nothing after the gap
                np.testing.assert_array_equal(datasets[name][:20], values[:20], err_msg=name)
                assert len(datasets[name]) == 20, name


def test_a_fast_detectors_chunk_left_for_the_next_flush_is_never_acknowledged(
        blissdata_url, tmp_path, monkeypatch):
    """A 4096-channel MCA at about 1 kHz fills a chunk (64 spectra) faster than the
    flush period: flushes leave its chunk begun for the next one (see Stream.flush).
    Throughout the scan, every point the writer has acknowledged is in the file, as a
    reader in another process sees it (the acknowledgement read first, then the file),
    and the file is complete at the end."""
    from nexus_writer_service.io.streams import Stream

    left: list[Any] = []
    flush = Stream.flush

    def counted(self: Stream, *args: Any, **kwargs: Any) -> None:
        flush(self, *args, **kwargs)
        if self.unflushed is not None:
            left.append(self.unflushed)

    monkeypatch.setattr(Stream, "flush", counted)  # counts, changes nothing
    filename = str(tmp_path / "fast" / "fast_0001.h5")
    channels = {"axis:samy": (np.float64, ()), "mca1:spectrum_det0": (np.uint32, (4096,))}
    npoints = 1600
    rng = np.random.default_rng(3)
    data = {"axis:samy": np.arange(npoints, dtype=np.float64),
            "mca1:spectrum_det0": rng.poisson(20, (npoints, 4096)).astype(np.uint32)}
    scan = BlissScan(blissdata_url, reference_scan_info(filename, npoints=npoints),
                     channels=channels)

    def send() -> None:
        scan.prepare_and_start()
        started = time.monotonic()
        for i, part in enumerate(blocks(data, 10)):
            time.sleep(max(0.0, started + i * 0.01 - time.monotonic()))
            scan.send(part)
        scan.end()

    reader = subprocess.Popen([sys.executable, "-c", _ACK_THEN_FILE, blissdata_url,
                               scan.key, filename], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline() == "ready\n"
        with _Writer(blissdata_url, "demo", str(tmp_path)) as writer:
            publisher = threading.Thread(target=send)
            publisher.start()
            (record,) = wait_scans_done(writer, 1)
            publisher.join()
            assert record.state is SubscriberState.OFF, record.writer.state_reason
        out, _ = reader.communicate(timeout=60)
    finally:
        reader.kill()
    samples = [json.loads(line) for line in out.splitlines()]
    assert samples and samples[-1][2] == "SUCCEEDED"
    during = [(acked, lengths) for acked, lengths, _ in samples if any(acked.values())]
    assert len(during) >= 5, samples
    for acked, lengths in during:
        for name, count in acked.items():
            assert lengths.get(name, 0) >= count, (name, acked, lengths)
    assert left, "no flush left a chunk begun"
    with h5py.File(filename, "r") as h5:
        datasets = _channel_datasets(h5["3.1"])
        for name, values in data.items():
            np.testing.assert_array_equal(datasets[name][()], values, err_msg=name)
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


#: A reader in another process: ``[acknowledged points, points in the file, status]``
#: per line, each stream's acknowledgement read before the file, until SUCCEEDED.
_ACK_THEN_FILE = """
import json, sys, time
import h5py, redis
url, key, path = sys.argv[1:]
client = redis.Redis.from_url(url)
client.ping()
print("ready", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.01)
    acks = client.hgetall(f"nws-blissdata:{key}:acks")
    order = [n.decode() for n in client.lrange(f"nws-blissdata:{key}:streams", 0, -1)]
    counts = next(iter(acks.values())).decode().partition(":")[2] if acks else ""
    acked = {n: int(c) for n, c in zip(order, counts.split(",")) if c}
    lengths = {}
    try:
        with h5py.File(path, "r", locking=False) as h5:
            status = h5["/3.1/writer/status"][()].decode()
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and "channel" in obj.attrs:
                    channel = obj.attrs["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    lengths.setdefault(channel, int(obj.shape[0]))
            h5["/3.1/instrument"].visititems(visit)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):
        continue  # the reader contract: try again
    print(json.dumps([acked, lengths, status]), flush=True)
    if status == "SUCCEEDED":
        break
"""
