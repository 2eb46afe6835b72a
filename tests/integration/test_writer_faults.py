"""The NeXus writers when things go wrong: bad paths, foreign or locked files, no disk
space, odd data, scans that end badly, and writers stopped or killed mid-scan.

Every test runs a real session writer (in the test's main thread) against a real
Redis server and real files under ``tmp_path``, and checks what it names: the scan
writer's state and reason, the file's content read back with h5py, and that the
other scans of the session are not affected.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np
import pytest

from nexus_writer_service.data import EndReason, Publisher, get_scan_node
from nexus_writer_service.data.events import encode_data
from nexus_writer_service.errors import ScanStateError
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import (
    NexusScanWriter,
    ScanRecord,
    SubscriberState,
    WriterStatus,
)
from tests.nxcheck import nxcheck_errors
from tests.writer_support import session_writer, wait_scans_done, wait_until

SESSION = "faults"
TIME = "timer:elapsed_time"
DIODE = "diode:diode1"
#: Where the writer puts the two channels of :func:`publish_scan` in entry ``1.1``.
TIME_PATH = "instrument/elapsed_time/value"
DIODE_PATH = "instrument/diode1/data"
#: Fast options for tests (no disk-space thresholds: tmp_path may be on a small disk).
FAST = dict(flush_period=0.05, required_disk_space=0, recommended_disk_space=0)


def fast_options(**kwargs: Any) -> SaveOptions:
    return SaveOptions(**dict(FAST, **kwargs))


def make_info(filename: Any, npoints: int, scalars: Sequence[str] = (DIODE,),
              **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "title": f"loopscan {npoints} 0.1", "npoints": npoints,
        "acquisition_chain": {"timer": {"master": {"scalars": [TIME]},
                                        "scalars": list(scalars)}},
    }
    if filename is not None:
        info["filename"] = str(filename)
    info.update(extra)
    return info


def publish_scan(publisher: Publisher, filename: Any, number: int, npoints: int = 10,
                 blocks: Sequence[int] | None = None, end: bool = True,
                 info: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """A loopscan with a timer and a diode; ``blocks``: points per send (all by default)."""
    scan = publisher.create_scan(info if info is not None else make_info(filename, npoints),
                                 name="loopscan", number=number)
    scan.add_channel(TIME, "float64", subscan="timer", unit="s")
    scan.add_channel(DIODE, "float64", subscan="timer")
    scan.prepare()
    sent = {TIME: np.arange(npoints) * 0.1 + number,
            DIODE: np.arange(npoints, dtype=np.float64) ** 2 + number}
    start = 0
    for size in blocks if blocks is not None else [npoints]:
        scan.send({name: data[start:start + size] for name, data in sent.items()})
        start += size
    if end:
        scan.end()
    return scan, sent


@pytest.fixture
def publisher(redis_url: str) -> Iterator[Publisher]:
    pub = Publisher(SESSION, redis_url, lease=2.0, retention=60)
    try:
        yield pub
    finally:
        pub.close()


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_entry(filename: Any, entry: str = "1.1") -> dict[str, Any]:
    """Status fields and the two channels of one entry."""
    with h5py.File(filename, "r", locking=False) as h5:
        group = h5[entry]
        writer = group["writer"]
        return {
            "status": text(writer["status"][()]),
            "message": text(writer["message"][()]) if "message" in writer else None,
            "end_reason": (text(writer["end_reason"][()]) if "end_reason" in writer
                           else None),
            "end_time": text(group["end_time"][()]) if "end_time" in group else None,
            "scan_key": text(group.attrs["scan_key"]),
            TIME: group[TIME_PATH][()] if TIME_PATH in group else None,
            DIODE: group[DIODE_PATH][()] if DIODE_PATH in group else None,
        }


def assert_written(record: ScanRecord, filename: Any, sent: Mapping[str, np.ndarray],
                   end_reason: str = "SUCCESS", entry: str = "1.1") -> dict[str, Any]:
    """The scan writer finished OFF and the file holds ``sent`` with status SUCCEEDED."""
    assert record.state is SubscriberState.OFF, record.as_dict()
    assert record.writer.status.value == "SUCCEEDED", record.as_dict()
    content = read_entry(filename, entry)
    assert content["status"] == "SUCCEEDED", content
    assert content["end_reason"] == end_reason, content
    assert content["end_time"], content
    assert content["scan_key"] == record.key
    for name, values in sent.items():
        np.testing.assert_array_equal(content[name], values, err_msg=name)
    return content


def assert_valid(filename: Any, strict: bool = False) -> None:
    errors = nxcheck_errors(str(filename), ignore_entry_names=not strict)
    assert errors == [], errors


def assert_fault(record: ScanRecord, *words: str) -> str:
    """The scan writer finished FAULT and its reason holds every one of ``words``."""
    assert record.state is SubscriberState.FAULT, record.as_dict()
    reason = record.as_dict()["state_reason"]
    for word in words:
        assert word in reason, (word, reason)
    return reason


def run_one(redis_url: str, options: SaveOptions, publish: Any) -> ScanRecord:
    """Start a session writer, ``publish(publisher)``, return the record of the one scan."""
    with session_writer(redis_url, SESSION, options, poll_interval=0.05) as writer:
        with Publisher(SESSION, redis_url, lease=2.0, retention=60) as publisher:
            publish(publisher)
            return wait_scans_done(writer, 1, timeout=30)[0]


# -- where the file may go ------------------------------------------------------------


def test_file_outside_allowed_roots_faults_and_the_next_scan_is_written(
        redis_url: str, tmp_path: Any, publisher: Publisher) -> None:
    root = tmp_path / "data"
    outside = tmp_path / "elsewhere" / "scan.h5"
    inside = root / "sample" / "scan.h5"
    options = fast_options(allowed_roots=(str(root),))
    with session_writer(redis_url, SESSION, options, poll_interval=0.05) as writer:
        publish_scan(publisher, outside, 1)
        bad = wait_scans_done(writer, 1)[0]
        _, sent = publish_scan(publisher, inside, 2)
        records = wait_scans_done(writer, 2)
    assert records[0] is bad
    reason = assert_fault(bad, str(outside), "allowed_roots", str(root))
    assert "outside the allowed roots" in reason
    assert bad.writer.status.value != "SUCCEEDED"
    assert not outside.exists() and not outside.parent.exists()
    assert_written(records[1], inside, sent, entry="2.1")
    assert_valid(inside)


def test_symlink_inside_root_to_outside_faults(
        redis_url: str, tmp_path: Any) -> None:
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    filename = root / "link" / "sub" / "scan.h5"
    options = fast_options(allowed_roots=(str(root),))
    record = run_one(redis_url, options, lambda pub: publish_scan(pub, filename, 1))
    assert_fault(record, str(filename), "resolves to", str(outside), "allowed_roots")
    assert os.listdir(outside) == []


@pytest.mark.parametrize("filename, words", [
    ("relative/scan.h5", ("must be an absolute path", "relative/scan.h5")),
    (None, ("no 'filename'", "scan_info")),
    ("/tmp/nul\0scan.h5", ("NUL byte", "scan_info['filename'] of nws:", "valid file name")),
], ids=["relative", "missing", "nul-byte"])
def test_relative_or_missing_filename_faults(
        redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        filename: str | None, words: Sequence[str]) -> None:
    monkeypatch.chdir(tmp_path)
    info = make_info(filename, 5)
    record = run_one(redis_url, fast_options(),
                     lambda pub: publish_scan(pub, None, 1, 5, info=info))
    assert_fault(record, *words)
    assert os.listdir(tmp_path) == []


# -- files that are not ours ----------------------------------------------------------


def test_foreign_entry_of_the_same_name_faults_and_the_file_is_untouched(
        redis_url: str, tmp_path: Any) -> None:
    filename = tmp_path / "scan.h5"
    with h5py.File(filename, "w") as h5:
        entry = h5.create_group("1.1")
        entry.attrs["scan_key"] = "nws:other:scan:9"
        entry["measurement/diode"] = np.arange(5.0)
    before = filename.read_bytes()
    record = run_one(redis_url, fast_options(),
                     lambda pub: publish_scan(pub, filename, 1))
    assert_fault(record, "'1.1'", "nws:other:scan:9", record.key, "left untouched")
    assert filename.read_bytes() == before


def test_entry_of_a_scan_of_another_session_is_not_overwritten(
        redis_url: str, tmp_path: Any) -> None:
    filename = tmp_path / "shared.h5"
    sent_a: dict[str, np.ndarray] = {}
    record_a = run_one(redis_url, fast_options(),
                       lambda pub: sent_a.update(publish_scan(pub, filename, 1)[1]))
    assert_written(record_a, filename, sent_a)
    before = filename.read_bytes()
    with session_writer(redis_url, "other", fast_options(), poll_interval=0.05) as writer:
        with Publisher("other", redis_url, lease=2.0, retention=60) as pub:
            publish_scan(pub, filename, 1)
            record_b = wait_scans_done(writer, 1)[0]
    assert_fault(record_b, "'1.1'", record_a.key, record_b.key)
    assert record_b.as_dict()["urls"] == []
    assert filename.read_bytes() == before
    assert_written(record_a, filename, sent_a)
    assert_valid(filename)


def test_file_that_is_not_hdf5_faults_and_is_untouched(
        redis_url: str, tmp_path: Any) -> None:
    filename = tmp_path / "scan.h5"
    filename.write_text("not an HDF5 file\n" * 100)
    before = filename.read_bytes()
    record = run_one(redis_url, fast_options(),
                     lambda pub: publish_scan(pub, filename, 1))
    assert_fault(record, str(filename), "not a valid HDF5 file")
    assert filename.read_bytes() == before


def test_file_locked_by_another_process_faults_naming_its_pid(
        redis_url: str, tmp_path: Any) -> None:
    filename = tmp_path / "locked.h5"
    with h5py.File(filename, "w"):
        pass
    before = filename.read_bytes()
    code = ("import h5py, sys; f = h5py.File(sys.argv[1], 'r'); print('ok', flush=True); "
            "sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", code, str(filename)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == b"ok"
            record = run_one(redis_url, fast_options(lock_retry_time=0.5),
                             lambda pub: publish_scan(pub, filename, 1))
            assert_fault(record, "FileLockedError", str(filename), f"pid {holder.pid}",
                         "locking=False")
        finally:
            holder.terminate()
            holder.wait(10)
    assert filename.read_bytes() == before


# -- disk space -----------------------------------------------------------------------


def test_required_disk_space_missing_faults_without_a_file(
        redis_url: str, tmp_path: Any) -> None:
    filename = tmp_path / "data" / "scan.h5"
    options = fast_options(required_disk_space=1e12)
    record = run_one(redis_url, options, lambda pub: publish_scan(pub, filename, 1))
    assert_fault(record, "DiskSpaceError", "required_disk_space", str(filename))
    assert not filename.exists()


def test_recommended_disk_space_missing_warns_and_writes(
        redis_url: str, tmp_path: Any) -> None:
    filename = tmp_path / "scan.h5"
    options = fast_options(recommended_disk_space=1e12)
    sent: dict[str, np.ndarray] = {}
    record = run_one(redis_url, options,
                     lambda pub: sent.update(publish_scan(pub, filename, 1)[1]))
    assert_written(record, filename, sent)
    warning = record.as_dict()["warning"]
    assert warning and "recommended_disk_space" in warning, warning
    assert_valid(filename)


# -- data -----------------------------------------------------------------------------


def test_variable_length_channels_are_padded_with_their_lengths(
        redis_url: str, tmp_path: Any) -> None:
    filename = tmp_path / "vlen.h5"
    points = {
        "mca:vfloat": [np.array([1.5, 2.5, 3.5]), np.arange(5.0) - 7, np.array([9.0])],
        "mca:vint": [np.array([1, 2, 3], "int32"), np.arange(5, dtype="int32") - 7,
                     np.array([9], "int32")],
    }

    def publish(pub: Publisher) -> None:
        info = make_info(filename, 3, scalars=())
        scan = pub.create_scan(info, name="vlen", number=1)
        scan.add_channel(TIME, "float64", subscan="timer")
        scan.add_channel("mca:vfloat", "float64", shape=(-1,), subscan="timer")
        scan.add_channel("mca:vint", "int32", shape=(-1,), subscan="timer")
        scan.prepare()
        for i in range(3):
            scan.send({TIME: [i * 0.1],
                       "mca:vfloat": [points["mca:vfloat"][i]],
                       "mca:vint": [points["mca:vint"][i]]})
        scan.end()

    record = run_one(redis_url, fast_options(), publish)
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r") as h5:
        assert text(h5["1.1/writer/status"][()]) == "SUCCEEDED"
        for name, fill in (("vfloat", np.nan), ("vint", 0)):
            dataset = h5[f"1.1/instrument/{name}/data"]
            lengths = h5[f"1.1/instrument/{name}/data_lengths"][()]
            assert dataset.shape == (3, 5), name
            np.testing.assert_array_equal(lengths, [3, 5, 1])
            expected = np.full((3, 5), fill, dtype=dataset.dtype)
            for row, point in enumerate(points[f"mca:{name}"]):
                expected[row, :len(point)] = point
            np.testing.assert_array_equal(dataset[()], expected, err_msg=name)
        assert h5["1.1/instrument/vint/data"].dtype == np.int32
    assert_valid(filename)


@pytest.mark.parametrize("compression", ["gzip", "bitshuffle-lz4"])
def test_compressed_data_reads_back_equal(
        redis_url: str, tmp_path: Any, compression: str) -> None:
    import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)

    filename = tmp_path / f"{compression}.h5"
    sent: dict[str, np.ndarray] = {}
    record = run_one(
        redis_url, fast_options(compression=compression, chunk_bytes=256),
        lambda pub: sent.update(publish_scan(pub, filename, 1, 100, blocks=[33, 33, 34])[1]))
    assert_written(record, filename, sent)
    with h5py.File(filename, "r") as h5:
        for path in (TIME_PATH, DIODE_PATH):
            dataset = h5[f"1.1/{path}"]
            if compression == "gzip":
                assert dataset.compression == "gzip", path
            else:
                assert "32008" in {str(k) for k in dataset._filters}, dataset._filters
    assert_valid(filename)


# -- how scans end --------------------------------------------------------------------


@pytest.mark.parametrize("npoints, blocks", [(10, [3, 2, 2]), (20, [3, 6, 4])],
                         ids=["7-of-10", "13-of-20"])
def test_aborted_scan_keeps_every_point_sent(
        redis_url: str, tmp_path: Any, npoints: int, blocks: list[int]) -> None:
    filename = tmp_path / "aborted.h5"
    sent: dict[str, np.ndarray] = {}
    nsent = sum(blocks)

    def publish(pub: Publisher) -> None:
        scan, data = publish_scan(pub, filename, 1, npoints, blocks=blocks, end=False)
        scan.end(EndReason.ABORTED, "stopped by user")
        sent.update({name: values[:nsent] for name, values in data.items()})

    # chunks of 8 points: blocks end inside chunks, and 13 points cross a chunk boundary
    record = run_one(redis_url, fast_options(chunk_bytes=64), publish)
    content = assert_written(record, filename, sent, end_reason="ABORTED")
    assert "stopped by user" in content["message"]
    assert record.as_dict()["end_reason"] == "ABORTED"
    assert record.as_dict()["points"] == nsent
    with h5py.File(filename, "r") as h5:
        assert h5["1.1/" + DIODE_PATH].chunks == (8,)
    assert_valid(filename)


def test_publisher_lost_ends_the_scan_with_every_point_sent(
        redis_url: str, tmp_path: Any) -> None:
    filename = tmp_path / "lost.h5"
    with session_writer(redis_url, SESSION, fast_options(), poll_interval=0.05) as writer:
        publisher = Publisher(SESSION, redis_url, lease=0.5, retention=60)
        try:
            _, sent = publish_scan(publisher, filename, 1, 20, blocks=[6, 6, 6], end=False)
            sent = {name: values[:18] for name, values in sent.items()}
            wait_until(lambda: writer.scans() and writer.scans()[0].writer.progress[0] == 18,
                       10, "18 points received")
        finally:
            publisher.close(end_running=None)
        lost_at = time.monotonic()
        record = wait_scans_done(writer, 1, timeout=10)[0]
        # lease 0.5 s: the scan is ended within a few seconds of the publisher's death
        assert time.monotonic() - lost_at < 5
    assert record.as_dict()["end_reason"] == "PUBLISHER_LOST"
    content = assert_written(record, filename, sent, end_reason="PUBLISHER_LOST")
    assert "lease" in content["message"]
    assert_valid(filename)


def test_stop_scan_leaves_a_resumable_file_and_kill_scan_a_failed_one(
        redis_url: str, tmp_path: Any, publisher: Publisher) -> None:
    stopped = tmp_path / "stopped.h5"
    killed = tmp_path / "killed.h5"
    other = tmp_path / "other.h5"
    with session_writer(redis_url, SESSION, fast_options(), poll_interval=0.05) as writer:
        scan1, sent1 = publish_scan(publisher, stopped, 1, 20, blocks=[5], end=False)
        scan2, sent2 = publish_scan(publisher, killed, 2, 20, blocks=[5], end=False)
        wait_until(lambda: len(writer.scans()) == 2
                   and all(r.writer.progress[0] == 5 for r in writer.scans()),
                   10, "5 points of both scans received")
        writer.stop_scan("1_loopscan", timeout=10)
        writer.kill_scan("2_loopscan", timeout=10)
        first, second = writer.scans()
        assert first.state is SubscriberState.OFF, first.as_dict()
        assert second.state is SubscriberState.FAULT, second.as_dict()
        scan1.end()
        scan2.end()
        _, sent3 = publish_scan(publisher, other, 3)
        third = wait_scans_done(writer, 3)[2]
    assert first.as_dict()["status"] == "RUNNING"
    assert "stopped on request" in first.writer.state_reason
    content = read_entry(stopped)
    assert content["status"] == "RUNNING"
    assert "start it again" in content["message"]
    assert content["end_reason"] is None and content["end_time"] is None
    for name, values in sent1.items():
        np.testing.assert_array_equal(content[name], values[:5])

    assert second.as_dict()["status"] == "FAILED"
    assert "killed" in second.writer.state_reason
    content = read_entry(killed, "2.1")
    assert content["status"] == "FAILED", content
    assert "killed" in content["message"]
    assert content["end_reason"] is None
    for name, values in sent2.items():
        np.testing.assert_array_equal(content[name], values[:5])

    assert_written(third, other, sent3, entry="3.1")
    assert_valid(other)

    # started again: the stopped scan's file is completed, the killed one's (final) is
    # never written again, and its scan is passed over (acknowledged: not resumed again)
    before = killed.read_bytes()
    with session_writer(redis_url, SESSION, fast_options(), poll_interval=0.05) as writer:
        resumed = {r.name: r for r in wait_scans_done(writer, 2)}
        assert writer.node.scan(scan2.key).acknowledged("nexus_writer") == \
            writer.node.scan(scan2.key).current_position()
    assert sorted(resumed) == ["1_loopscan", "2_loopscan"], sorted(resumed)
    assert_written(resumed["1_loopscan"], stopped, {k: v[:5] for k, v in sent1.items()})
    passed = resumed["2_loopscan"]
    assert passed.state is SubscriberState.OFF, passed.as_dict()
    assert passed.as_dict()["status"] == "FAILED"
    for words in ("not written again", "finished by an earlier writer",
                  "writer/status FAILED", "killed"):
        assert words in passed.writer.state_reason, (words, passed.writer.state_reason)
    assert killed.read_bytes() == before


# -- validity -------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["bliss-names", "strict-names"])
def test_written_files_pass_nxcheck(redis_url: str, tmp_path: Any, strict: bool) -> None:
    root = tmp_path / "data"
    options = fast_options(strict_names=strict, allowed_roots=(str(root),),
                           compression="gzip")
    files = [root / "plain.h5", root / "aborted.h5", root / "vlen.h5"]
    with session_writer(redis_url, SESSION, options, poll_interval=0.05) as writer:
        with Publisher(SESSION, redis_url, lease=2.0, retention=60) as pub:
            publish_scan(pub, files[0], 1, 10, blocks=[4, 6])
            scan, _ = publish_scan(pub, files[1], 2, 10, blocks=[3], end=False)
            scan.end(EndReason.ABORTED, "stopped by user")
            scan = pub.create_scan(make_info(files[2], 2, scalars=()), name="vlen", number=3)
            scan.add_channel(TIME, "float64", subscan="timer")
            scan.add_channel("mca:spectrum", "float32", shape=(-1,), subscan="timer")
            scan.prepare()
            scan.send({TIME: [0.0, 0.1], "mca:spectrum": [np.ones(4), np.ones(2)]})
            scan.end()
            records = wait_scans_done(writer, 3)
    assert [r.state for r in records] == [SubscriberState.OFF] * 3, [
        r.as_dict() for r in records]
    for number, filename in enumerate(files, 1):
        entry = f"entry_{number}_1" if strict else f"{number}.1"
        with h5py.File(filename, "r") as h5:
            assert list(h5) == [entry]
        assert_valid(filename, strict=strict)


# -- limits for hostile scale ---------------------------------------------------------


def _four_channels(filename: Any) -> Any:
    def publish(publisher: Publisher) -> None:
        names = (DIODE, "diode:two", "diode:three")
        scan = publisher.create_scan(make_info(filename, 2, scalars=names),
                                     name="loopscan", number=1)
        scan.add_channel(TIME, "float64", subscan="timer")
        for name in names:
            scan.add_channel(name, "float64", subscan="timer")
        scan.prepare()
        scan.end()
    return publish


@pytest.mark.parametrize("options, publish, words, file_left", [
    ({"max_channels": 3}, lambda filename: _four_channels(filename),
     ("more than 3 channels", "number 4", "max_channels"), True),
    ({"max_info_bytes": 2000},
     lambda filename: lambda pub: publish_scan(pub, filename, 1, 5, info=make_info(
         filename, 5, comment="x" * 5000)),
     ("scan_info takes", "max_info_bytes=2000", "no file written"), False),
    ({"max_dataset_bytes": 1000},
     lambda filename: lambda pub: publish_scan(pub, filename, 1, 200),
     ("would take 1600 bytes", "200 points", "max_dataset_bytes=1000"), True),
], ids=["channels", "scan_info", "dataset"])
def test_a_scan_over_a_limit_faults_naming_it_and_the_next_is_written(
        redis_url: str, tmp_path: Any, options: dict[str, Any], publish: Any,
        words: Sequence[str], file_left: bool) -> None:
    over, good = tmp_path / "over.h5", tmp_path / "good.h5"
    with session_writer(redis_url, SESSION, fast_options(**options),
                        poll_interval=0.05) as writer:
        with Publisher(SESSION, redis_url, lease=2.0, retention=60) as publisher:
            publish(over)(publisher)
            (record,) = wait_scans_done(writer, 1, timeout=30)
            _, sent = publish_scan(publisher, good, 2, 3)
            records = wait_scans_done(writer, 2, timeout=30)
        assert writer.state is SubscriberState.ON
    assert_fault(record, *words)
    assert over.exists() is file_left
    assert records[1].state is SubscriberState.OFF
    with h5py.File(good, "r") as h5:
        assert h5["2.1/writer/status"][()] == b"SUCCEEDED"


def test_a_scan_info_over_the_limit_is_refused_by_its_size_without_being_decoded(
        redis_url: str, tmp_path: Any) -> None:
    """A hostile scan_info (here 50 kB that are not even JSON) is refused by the size
    Redis gives, never read: the reason names the size and the limit, not the JSON."""
    over, good = tmp_path / "over.h5", tmp_path / "good.h5"
    with Publisher(SESSION, redis_url, lease=2.0, retention=60) as publisher:
        scan, _ = publish_scan(publisher, over, 1, 3, end=False)
        publisher._client.hset(scan.key, "scan_info", b"{" + b"x" * 50_000)
        with session_writer(redis_url, SESSION, fast_options(max_info_bytes=20_000),
                            poll_interval=0.05) as writer:
            (record,) = wait_scans_done(writer, 1, timeout=30)
            scan.end()
            _, sent = publish_scan(publisher, good, 2, 3)
            records = wait_scans_done(writer, 2, timeout=30)
    assert_fault(record, "scan_info takes 50001 bytes", "max_info_bytes=20000",
                 "no file written", "raise max_info_bytes")
    assert record.writer.scan_info == {}
    assert not over.exists()
    assert records[1].state is SubscriberState.OFF
    with h5py.File(good, "r") as h5:
        assert h5["2.1/writer/status"][()] == b"SUCCEEDED"


def test_data_published_after_the_end_is_reported_in_the_file_and_the_log(
        redis_url: str, tmp_path: Any, caplog: Any) -> None:
    """A second publisher (or a buggy one writing raw entries) goes on after END_SCAN:
    the file holds the scan as ended, and says how much came after, as the log does."""
    filename = tmp_path / "after.h5"
    with Publisher(SESSION, redis_url, lease=2.0, retention=60) as publisher:
        scan, sent = publish_scan(publisher, filename, 1, 3)
        with pytest.raises(ScanStateError, match="already ended"):
            scan.send({DIODE: [1.0]})  # our publisher refuses, naming the end
        for first in (3, 4):  # channel 2 (the diode): subscan 0, timer 1
            publisher._client.xadd(scan.keys.events, encode_data(
                [(2, first, np.array([9.0]).tobytes(), None)]))
        publisher._client.xadd(scan.keys.events, {b"t": b"prep"})
    caplog.set_level("WARNING", logger="nexus_writer_service.subscribers.scan_writer")
    writer = NexusScanWriter(get_scan_node(scan.key, redis_url), fast_options(),
                             poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    writer.join(timeout=30)
    words = "3 entries (2 of them data) were published after the end of the scan"
    assert writer.state is SubscriberState.OFF, writer.state_reason
    assert writer.status is WriterStatus.SUCCEEDED
    assert words in (writer.warning or "")
    assert any(words in r.getMessage() and scan.key in r.getMessage() for r in caplog.records)
    with h5py.File(filename, "r") as h5:
        assert words in h5["1.1/writer/after_end"][()].decode()
        np.testing.assert_array_equal(h5[f"1.1/{DIODE_PATH}"][()], sent[DIODE])
        assert h5["1.1/writer/status"][()] == b"SUCCEEDED"
    assert_valid(filename)
