"""The NeXus writers against the simulator's ground truth: bit-exact, valid, readable
while the scan runs, resumable after the writer is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.data import Publisher
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.simulation import SimulationOptions, read_truth, simulate
from nexus_writer_service.simulation.scans import SCAN_TYPES
from nexus_writer_service.subscribers import SubscriberState
from tests.nxcheck import nxcheck_errors
from tests.writer_support import session_writer, wait_scans_done, wait_until

ALL_SCANS = tuple(name for name in SCAN_TYPES if name != "long")


def _datasets_by_channel(entry: h5py.Group) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and "channel" in obj.attrs:
            channel = obj.attrs["channel"]
            found.setdefault(channel.decode() if isinstance(channel, bytes) else channel, obj)

    entry["instrument"].visititems(visit)
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries_of(h5: h5py.File, key: str) -> list[h5py.Group]:
    return [g for g in h5.values() if isinstance(g, h5py.Group)
            and _text(g.attrs.get("scan_key", "")) == key]


def check_against_truth(truth_path: str, npoints_min: int = 1) -> int:
    """Every value of every truth scan equals the file's; returns the number of scans."""
    truth = read_truth(truth_path)
    for key, scan in truth.items():
        filename = scan.scan_info["filename"]
        with h5py.File(filename, "r", locking=False) as h5:
            entries = _entries_of(h5, key)
            assert entries, f"{filename} has no entry of {key}"
            datasets: dict[str, h5py.Dataset] = {}
            for entry in entries:
                datasets.update(_datasets_by_channel(entry))
                assert _text(entry["writer/status"][()]) == "SUCCEEDED", key
                assert scan.end_reason is not None
                assert _text(entry["writer/end_reason"][()]) == scan.end_reason.value
                assert _text(entry["end_time"][()])
            for name, values in scan.channels.items():
                dataset = datasets[name]
                assert dataset.dtype == values.dtype, (key, name)
                np.testing.assert_array_equal(dataset[()], values, err_msg=f"{key} {name}")
            for name, lima in scan.limas.items():
                frames = datasets[name][()]
                assert len(frames) == lima.last_image_saved + 1
                checksums = [zlib.crc32(np.ascontiguousarray(f).tobytes()) for f in frames]
                np.testing.assert_array_equal(np.array(checksums, dtype=np.uint32),
                                              lima.checksums)
    return len(truth)


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    SaveOptions(),
    SaveOptions(strict_names=True, keepshape=True, compression="gzip", chunk_bytes=4096,
                multivalue_positioners=True),
], ids=["default", "strict-keepshape-gzip"])
def test_every_simulated_scan_is_written_bit_exact_and_valid(
        redis_url: str, tmp_path: Any, options: SaveOptions) -> None:
    root = str(tmp_path / "data")
    options = SaveOptions.from_mapping(dict(options.as_dict(), allowed_roots=[root]))
    truth = str(tmp_path / "truth.h5")
    with session_writer(redis_url, "bitexact", options) as writer:
        published = simulate(SimulationOptions(
            session="bitexact", redis_url=redis_url, root=root, truth=truth,
            scans=ALL_SCANS, block_size=7, npoints=23))
        records = wait_scans_done(writer, len(published))
        assert [r.state for r in records] == [SubscriberState.OFF] * len(published), [
            r.as_dict() for r in records]
    assert check_against_truth(truth) == len(published)
    for scan in published:
        errors = nxcheck_errors(scan.filename, ignore_entry_names=not options.strict_names)
        assert errors == [], (scan.kind, errors)


def _publish_slowly(redis_url: str, session: str, filename: str, npoints: int,
                    period: float, started: threading.Event) -> None:
    info = {"title": "loopscan", "filename": filename, "npoints": npoints,
            "acquisition_chain": {"timer": {"master": {"scalars": ["timer:elapsed_time"]},
                                            "scalars": ["diode:diode1"]}}}
    with Publisher(session, redis_url) as publisher:
        scan = publisher.create_scan(info, name="loopscan", number=1)
        scan.add_channel("timer:elapsed_time", "float64", subscan="timer", unit="s")
        scan.add_channel("diode:diode1", "float64", subscan="timer")
        scan.prepare()
        started.set()
        for i in range(npoints):
            scan.send({"timer:elapsed_time": np.array([i * period]),
                       "diode:diode1": np.array([float(i)])})
            time.sleep(period)
        scan.end()


def _length(path: str, dataset: str) -> int:
    try:
        with h5py.File(path, "r", locking=False) as h5:
            return int(h5[dataset].shape[0])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        return -1


_POLL = """
import sys, time, h5py
path, name, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 60
n = -1
while n < total and time.monotonic() < deadline:
    try:
        with h5py.File(path, "r", locking=False) as h5:
            n = int(h5[name].shape[0])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        n = -1
    print(n, flush=True)
    time.sleep(0.02)
"""


@pytest.mark.slow
def test_reader_without_locking_sees_points_while_the_scan_runs(
        redis_url: str, tmp_path: Any, processes: list[Any]) -> None:
    """HDF5 refuses a second open of a file in the writing process, so the reader is
    another process, as it is on a beamline."""
    filename = str(tmp_path / "live" / "live.h5")
    dataset = "/1.1/instrument/diode1/data"
    started = threading.Event()
    publisher = threading.Thread(target=_publish_slowly,
                                 args=(redis_url, "live", filename, 150, 0.01, started))
    with session_writer(redis_url, "live", SaveOptions(flush_period=0.05)) as writer:
        reader = subprocess.Popen([sys.executable, "-c", _POLL, filename, dataset, "150"],
                                  stdout=subprocess.PIPE, text=True)
        processes.append(reader)
        publisher.start()
        try:
            wait_until(lambda: not publisher.is_alive(), 30, "publisher done")
        finally:
            publisher.join(30)
        record = wait_scans_done(writer, 1)[0]
        output, _ = reader.communicate(timeout=60)
    assert record.state is SubscriberState.OFF, record.as_dict()
    lengths = [int(line) for line in output.split()]
    growing = [n for n in lengths if 0 < n < 150]
    assert len(set(growing)) >= 3, f"the reader saw no growing data: {lengths}"
    seen = [n for n in lengths if n >= 0]
    assert seen == sorted(seen), lengths
    assert lengths[-1] == 150
    with h5py.File(filename, "r") as h5:
        np.testing.assert_array_equal(h5[dataset][()], np.arange(150.0))


def _writer_command(session: str, redis_url: str, root: str, log: str) -> list[str]:
    return [sys.executable, "-m", "nexus_writer_service.cli.session_writer", session,
            "--redis-url", redis_url, "--allowed-roots", root, "--flush-period", "0.05",
            "--logfile", log, "--nologstdout"]


@pytest.mark.slow
@pytest.mark.parametrize("trim", [False, True], ids=["kept", "trimmed"])
def test_writer_killed_mid_scan_completes_the_file_when_started_again(
        redis_url: str, tmp_path: Any, processes: list[Any], trim: bool) -> None:
    root = str(tmp_path)
    filename = str(tmp_path / "resume" / "scan.h5")
    dataset = "/1.1/instrument/diode1/data"
    info = {"title": "loopscan", "filename": filename, "npoints": 400,
            "acquisition_chain": {"timer": {"master": {"scalars": ["timer:elapsed_time"]},
                                            "scalars": ["diode:diode1"]}}}
    command = _writer_command("resume", redis_url, root, str(tmp_path / "writer.log"))
    first = subprocess.Popen(command)
    processes.append(first)
    with Publisher("resume", redis_url) as publisher:
        deadline = time.monotonic() + 20
        while b"nexus_writer" not in publisher._client.smembers("nws:resume:readers"):
            assert time.monotonic() < deadline, "the writer did not register"
            time.sleep(0.05)
        scan = publisher.create_scan(info, name="loopscan", number=1)
        scan.add_channel("timer:elapsed_time", "float64", subscan="timer", unit="s")
        scan.add_channel("diode:diode1", "float64", subscan="timer")
        scan.prepare()
        for i in range(0, 200, 10):
            scan.send({"timer:elapsed_time": np.arange(i, i + 10) * 0.1,
                       "diode:diode1": np.arange(i, i + 10, dtype=np.float64)})
        deadline = time.monotonic() + 20
        while _length(filename, dataset) < 200:
            assert time.monotonic() < deadline, "the first writer wrote nothing"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        for i in range(200, 400, 10):
            scan.send({"timer:elapsed_time": np.arange(i, i + 10) * 0.1,
                       "diode:diode1": np.arange(i, i + 10, dtype=np.float64)})
        if trim:
            publisher.trim([scan])
            assert publisher._client.xlen(scan.keys.events) < 43
        scan.end()
    second = subprocess.Popen(command)
    processes.append(second)

    def status() -> str:
        try:
            with h5py.File(filename, "r", locking=False) as h5:
                return _text(h5["/1.1/writer/status"][()])
        except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
            return ""

    deadline = time.monotonic() + 30
    while status() != "SUCCEEDED":
        assert time.monotonic() < deadline, f"not completed: {status()}"
        time.sleep(0.1)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    with h5py.File(filename, "r") as h5:
        np.testing.assert_array_equal(h5[dataset][()], np.arange(400, dtype=np.float64))
        np.testing.assert_array_equal(h5["/1.1/instrument/elapsed_time/value"][()],
                                      np.arange(400) * 0.1)
        assert "resumed" in _text(h5["/1.1/writer/resumed"][()])
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


_LOCKED_OPEN = """
import sys, h5py
try:
    h5py.File(sys.argv[1], "r")
except OSError as exc:
    print("refused:", exc)
else:
    print("opened")
"""


@pytest.mark.slow
def test_reader_with_locking_is_refused_and_the_writer_carries_on(
        redis_url: str, tmp_path: Any) -> None:
    filename = str(tmp_path / "locked" / "scan.h5")
    started = threading.Event()
    publisher = threading.Thread(target=_publish_slowly,
                                 args=(redis_url, "locked", filename, 100, 0.01, started))
    with session_writer(redis_url, "locked") as writer:
        publisher.start()
        try:
            wait_until(lambda: bool(writer.scans()) and writer.scans()[0].writer.filename
                       and writer.scans()[0].writer.status.value == "RUNNING",
                       10, "scan running")
            result = subprocess.run([sys.executable, "-c", _LOCKED_OPEN, filename],
                                    capture_output=True, text=True, timeout=60)
            wait_until(lambda: not publisher.is_alive(), 30, "publisher done")
        finally:
            publisher.join(30)
        record = wait_scans_done(writer, 1)[0]
    assert result.stdout.startswith("refused:"), result.stdout + result.stderr
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r") as h5:
        np.testing.assert_array_equal(h5["/1.1/instrument/diode1/data"][()], np.arange(100.0))


def _publish_quick(redis_url: str, session: str, number: int, info: dict[str, Any]) -> None:
    with Publisher(session, redis_url) as publisher:
        scan = publisher.create_scan(dict(info, npoints=5), name="loopscan", number=number)
        scan.add_channel("diode:diode1", "float64", subscan="timer")
        scan.prepare()
        scan.send({"diode:diode1": np.arange(5.0) + number})
        scan.end()


def test_master_files_link_every_entry_with_relative_paths(
        redis_url: str, tmp_path: Any) -> None:
    root = tmp_path / "data"
    collection = str(root / "sample1" / "sample1.h5")
    proposal = str(root / "ih0000.h5")
    outside = str(tmp_path / "elsewhere.h5")
    chain = {"timer": {"scalars": ["diode:diode1"]}}
    options = SaveOptions(allowed_roots=(str(root),))
    with session_writer(redis_url, "masters", options) as writer:
        for number in (1, 2):
            masters = {"dataset_collection": collection, "proposal": proposal}
            if number == 2:
                masters["beamline"] = outside
            _publish_quick(redis_url, "masters", number, {
                "title": f"scan {number}", "acquisition_chain": chain,
                "filename": str(root / "sample1" / f"scan{number}" / "scan.h5"),
                "masterfiles": masters})
        records = wait_scans_done(writer, 2)
    assert [r.state for r in records] == [SubscriberState.OFF] * 2
    assert records[0].writer.warning is None
    assert "outside the allowed roots" in (records[1].writer.warning or "")
    assert not os.path.exists(outside)
    moved = tmp_path / "moved"
    root.rename(moved)
    for master in (collection, proposal):
        path = master.replace(str(root), str(moved))
        with h5py.File(path, "r") as h5:
            # named as the classic writer names them: <dataset file stem>_<entry>
            assert list(h5) == ["scan_1.1", "scan_2.1"]
            link = h5.get("scan_2.1", getlink=True)
            assert isinstance(link, h5py.ExternalLink) and not os.path.isabs(link.filename)
            assert link.path == "/2.1"
            np.testing.assert_array_equal(h5["scan_2.1/instrument/diode1/data"][()],
                                          np.arange(5.0) + 2)


def test_scans_of_two_datasets_with_the_same_numbers_never_clash_in_master_files(
        redis_url: str, tmp_path: Any) -> None:
    """BLISS names the master files in ``nexuswriter.masterfiles``; each dataset
    numbers its scans from 1, so the collection and the proposal file name the links
    ``<dataset file stem>_<entry>``, as the classic writer does. A master file that an
    earlier version linked by entry name alone keeps its links."""
    root = tmp_path / "RAW_DATA"
    collection = str(root / "sample1" / "ih0000_sample1.h5")
    proposal = str(root / "ih0000_id00.h5")
    chain = {"timer": {"scalars": ["diode:diode1"]}}
    old = root / "sample1" / "sample1_0000" / "sample1_0000.h5"
    old.parent.mkdir(parents=True)
    with h5py.File(old, "w") as h5:
        h5.create_group("1.1")
    with h5py.File(collection, "w") as h5:
        h5["1.1"] = h5py.ExternalLink("sample1_0000/sample1_0000.h5", "/1.1")
    options = SaveOptions(allowed_roots=(str(root),))
    datasets = ("sample1_0001", "sample1_0002")
    with session_writer(redis_url, "twosets", options) as writer:
        for count, dataset in enumerate(datasets):
            for number in (1, 2):
                _publish_quick(redis_url, "twosets", number, {
                    "title": f"{dataset} scan {number}", "acquisition_chain": chain,
                    "scan_nb": number,
                    "filename": str(root / "sample1" / dataset / f"{dataset}.h5"),
                    "nexuswriter": {"masterfiles": {"dataset_collection": collection,
                                                    "proposal": proposal}}})
        records = wait_scans_done(writer, 4)
    assert [r.state for r in records] == [SubscriberState.OFF] * 4, [
        r.as_dict() for r in records]
    assert [r.writer.warning for r in records] == [None] * 4
    expected = [f"{dataset}_{n}.1" for dataset in datasets for n in (1, 2)]
    with h5py.File(proposal, "r") as h5:
        assert sorted(h5) == expected
    with h5py.File(collection, "r") as h5:
        assert sorted(h5) == ["1.1"] + expected
        assert "1.1" in h5 and h5.get("1.1", getlink=True).filename.startswith("sample1_0000")
        for dataset in datasets:
            for number in (1, 2):
                link = h5.get(f"{dataset}_{number}.1", getlink=True)
                assert (link.filename, link.path) == (f"{dataset}/{dataset}.h5",
                                                      f"/{number}.1")
                assert _text(h5[f"{dataset}_{number}.1/title"][()]) == \
                    f"{dataset} scan {number}"


def test_malformed_master_files_fault_the_scan_naming_the_key(
        redis_url: str, tmp_path: Any) -> None:
    filename = tmp_path / "scan.h5"
    with session_writer(redis_url, "badmasters", SaveOptions()) as writer:
        _publish_quick(redis_url, "badmasters", 1, {
            "title": "scan", "filename": str(filename),
            "acquisition_chain": {"timer": {"scalars": ["diode:diode1"]}},
            "nexuswriter": {"masterfiles": ["/data/collection.h5"]}})
        (record,) = wait_scans_done(writer, 1)
    assert record.state is SubscriberState.FAULT
    assert "'nexuswriter/masterfiles'" in record.writer.state_reason
    assert "mapping of level names to file paths" in record.writer.state_reason
    assert not filename.exists()


def test_the_reader_of_a_scan_reads_nothing_while_the_writer_builds_or_flushes(
        redis_url: str, tmp_path: Any, monkeypatch: Any) -> None:
    """Creating the groups and datasets of many channels, and flushing the points
    held for each, are many short HDF5 calls, each costing several times more while
    the reader thread runs Python code: the scan writer pauses its reader meanwhile."""
    from nexus_writer_service.io.nexus import NexusFile

    seen: dict[str, list[bool]] = {"materialise": [], "flush": []}
    writers: list[Any] = []
    closing: list[bool] = []

    def watch(name: str) -> None:
        method = getattr(NexusFile, name)

        def watched(self: NexusFile, *args: Any, **kwargs: Any) -> Any:
            if name == "close":  # its own last flush finds nothing left to write
                closing.append(True)
            elif not closing:
                seen[name].extend(record.writer._run.reading_allowed.is_set()
                                  for writer in writers for record in writer.scans())
            return method(self, *args, **kwargs)
        monkeypatch.setattr(NexusFile, name, watched)

    for name in ("materialise", "flush", "close"):
        watch(name)
    options = SaveOptions(allowed_roots=(str(tmp_path),), flush_period=0.02)
    filename = str(tmp_path / "tree.h5")
    with session_writer(redis_url, "tree", options) as writer:
        writers.append(writer)
        with Publisher("tree", redis_url) as publisher:
            scan = publisher.create_scan({"title": "tree", "filename": filename},
                                         name="loopscan", number=1)
            names = [f"det{i}:counter" for i in range(50)]
            for name in names:
                scan.add_channel(name, "float64")
            scan.prepare()
            for start in range(0, 100, 10):
                scan.send({name: np.arange(start, start + 10.0) for name in names})
                time.sleep(0.03)  # flushes while the scan runs
            scan.add_channel("late:counter", "float64")  # a second tree change
            scan.send({"late:counter": np.arange(5.0)})
            scan.end()
        record = wait_scans_done(writer, 1)[0]
    assert record.writer.state is SubscriberState.OFF, record.as_dict()
    assert len(seen["materialise"]) >= 2 and not any(seen["materialise"]), seen
    assert len(seen["flush"]) >= 2 and not any(seen["flush"]), seen
    with h5py.File(filename, "r") as h5:
        instrument = h5["/1.1/instrument"]
        for name in ("counter", "det1_counter", "det49_counter"):
            np.testing.assert_array_equal(instrument[name]["data"][()], np.arange(100.0))
        np.testing.assert_array_equal(instrument["late_counter/data"][()], np.arange(5.0))
