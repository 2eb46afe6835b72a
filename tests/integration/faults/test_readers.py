"""Other processes reading the scan file, as the reader contract (docs/file-layout.rst)
says they may (or may not): real reader subprocesses with h5py, the real simulator publishing,
a real session writer in the test's main thread.

The contract's case of a process that holds the file with locking in ``"r"`` mode
before the scan starts is pinned by
``tests/integration/test_writer_faults.py::test_file_locked_by_another_process_faults_naming_its_pid``;
here the holder uses ``"a"`` mode, which the contract names too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
from h5py import h5o

from nexus_writer_service.data import EndReason, Publisher
from nexus_writer_service.io import masterfiles
from nexus_writer_service.io.scan_info import master_link_name
from nexus_writer_service.simulation.info import master_filenames, scan_filename
from nexus_writer_service.subscribers import NexusSessionWriter, ScanRecord
from tests.integration.faults.conftest import (
    TIME,
    assert_nothing_lost,
    assert_record,
    fast_options,
    file_points,
    published_points,
    publish_loopscan,
    register_audit,
    run_session_scans,
    simulate_command,
)
from tests.writer_support import session_writer, wait_scans_done, wait_until

_HOLD = """
import sys, h5py
f = h5py.File(sys.argv[1], sys.argv[2])
print("holding", flush=True)
sys.stdin.read()
f.close()
"""


def test_file_held_in_append_mode_faults_naming_the_pid_and_is_untouched(
        redis_url: str, tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    filename = tmp_path / "held.h5"
    session = "held"
    register_audit(redis_url, session)
    options = fast_options(lock_retry_time=0.5)
    with session_writer(redis_url, session, options, poll_interval=0.05) as writer:
        with Publisher(session, redis_url, lease=5, retention=60) as publisher:
            publish_loopscan(publisher, filename, 1, 20, block=5)
            wait_until(lambda: filename.exists(), 10, "the file written")
            first = wait_scans_done(writer, 1)[0]
            holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(filename), "a"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            processes.append(holder)
            assert holder.stdout is not None and holder.stdout.readline() == b"holding\n"
            before = filename.read_bytes()  # the holder has marked it open for writing
            publish_loopscan(publisher, filename, 2, 20, block=5)
            refused = wait_scans_done(writer, 2)[1]
            assert filename.read_bytes() == before, "the refused scan modified the file"
            assert holder.stdin is not None
            holder.stdin.close()
            assert holder.wait(30) == 0
            publish_loopscan(publisher, filename, 3, 20, block=5)
            third = wait_scans_done(writer, 3)[2]
    assert_record(refused, "FAULT", "STARTING", "FileLockedError", str(filename),
                  f"pid {holder.pid}", "locking=False")
    with h5py.File(filename, "r") as h5:
        assert sorted(h5) == ["1.1", "3.1"], "no entry of the refused scan"
    for record in (first, third):
        published, _ = published_points(redis_url, record.key)
        assert_nothing_lost(filename, record.key, published, "SUCCEEDED", "SUCCESS")


_APPEND = """
import sys, h5py
try:
    h5py.File(sys.argv[1], "a")
except OSError as exc:
    print("refused:", exc)
else:
    print("opened")
"""


def _simulated_scan(redis_url: str, session: str, root: Path, npoints: int, *args: str
                    ) -> list[str]:
    return simulate_command(redis_url, session, root, "--scan", "loopscan", "--npoints",
                            str(npoints), "--count-time", "0.01", "--lease", "5", *args)


def _check_simulated(redis_url: str, record: ScanRecord, npoints: int) -> None:
    published, reason = published_points(redis_url, record.key)
    assert reason is EndReason.SUCCESS
    assert {len(values) for values in published.values()} == {npoints}
    assert_record(record, "OFF", "SUCCEEDED", "finished")
    assert_nothing_lost(record.writer.filename, record.key, published, "SUCCEEDED", "SUCCESS")


def _running(writer: NexusSessionWriter) -> bool:
    records = writer.scans()
    return bool(records) and records[0].writer.status.value == "RUNNING" \
        and records[0].writer.progress[0] > 0


def test_reader_opening_in_append_mode_is_refused_and_the_writer_carries_on(
        redis_url: str, tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    session = "appender"
    root = tmp_path / "data"
    npoints = 300
    register_audit(redis_url, session)
    with session_writer(redis_url, session, fast_options(allowed_roots=(str(root),)),
                        poll_interval=0.05) as writer:
        publisher = subprocess.Popen(_simulated_scan(redis_url, session, root, npoints))
        processes.append(publisher)
        wait_until(lambda: _running(writer), 60, "the scan written")
        filename = writer.scans()[0].writer.filename
        appender = subprocess.Popen([sys.executable, "-c", _APPEND, filename],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes.append(appender)
        wait_until(lambda: appender.poll() is not None, 60, "the appender tried")
        assert _running(writer), "the scan ended before the reader tried: use more points"
        wait_until(lambda: publisher.poll() is not None, 60, "the simulated scan published")
        assert publisher.returncode == 0
        record = wait_scans_done(writer, 1)[0]
    output, errors = appender.communicate(timeout=10)
    assert appender.returncode == 0, errors
    assert output.startswith("refused:"), output + errors
    _check_simulated(redis_url, record, npoints)


#: What h5py raises for an HDF5 error (its translation table, and RuntimeError for the
#: rest): the errors a reader without locking may meet while the writer updates the
#: file's metadata (the reader contract, docs/file-layout.rst). NotImplementedError is a
#: RuntimeError, FileNotFoundError an OSError.
READER_ERRORS = {"FileNotFoundError", "OSError", "KeyError", "ValueError", "TypeError",
                 "RuntimeError", "NotImplementedError"}

#: Reads the file without locking until the writer says it is done; prints one JSON
#: line per attempt: the points of the elapsed time seen and the last of them, or the
#: error the contract allows. Any other error ends it with a traceback, a crash with
#: the Python stack where HDF5 crashed.
_POLL = """
import faulthandler, json, sys, time, h5py
faulthandler.enable()
path, entry, channel = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.monotonic() + 90
def elapsed(h5):
    for name, obj in h5[entry]["instrument"].items():
        if not isinstance(obj, h5py.Group):
            continue  # a field of the instrument (its name), or an object gone meanwhile
        for item in obj.values():
            if item is not None and item.attrs.get("channel") == channel:
                return item
    raise KeyError(channel)
while time.monotonic() < deadline:
    try:
        with h5py.File(path, "r", locking=False) as h5:
            # the status first: the writer flushes every point before it writes
            # SUCCEEDED, so data read after it is complete (read before, it may be
            # older than the status)
            status = h5[entry]["writer/status"][()].decode()
            data = elapsed(h5)[()]
        print(json.dumps({"n": len(data), "last": float(data[-1]) if len(data) else None,
                          "status": status}), flush=True)
        if status in ("SUCCEEDED", "FAILED"):
            break
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        print(json.dumps({"error": type(exc).__name__}), flush=True)
    time.sleep(0.02)
"""


def _start_reader(path: str, entry: str, out: Path, processes: list[subprocess.Popen[Any]]
                  ) -> subprocess.Popen[bytes]:
    """A ``_POLL`` reader of ``entry`` of ``path``; what it sees goes to the file ``out``
    (a pipe nobody reads while the scan runs could fill up and stop it)."""
    with open(out, "wb") as output:
        reader = subprocess.Popen([sys.executable, "-c", _POLL, path, entry, TIME],
                                  stdout=output, stderr=subprocess.PIPE)
    processes.append(reader)
    return reader


def _reader_output(reader: subprocess.Popen[bytes], out: Path) -> list[dict[str, Any]]:
    """What ``reader`` saw; it must have ended by itself, without a crash."""
    _, errors = reader.communicate(timeout=30)
    assert reader.returncode == 0, (
        f"the reader failed (exit {reader.returncode}"
        + (f", {signal.Signals(-reader.returncode).name}" if reader.returncode < 0 else "")
        + f"): {errors.decode(errors='replace')}")
    return [json.loads(line) for line in out.read_text().splitlines()]


def _check_seen(seen: list[dict[str, Any]], final: Any, npoints: int) -> None:
    """A reader saw the scan grow, never backwards, with the values the file ends with,
    and met only the errors the contract names."""
    assert seen[0] == {"error": "FileNotFoundError"}, "the reader started before the scan"
    assert seen[-1]["n"] == npoints and seen[-1]["status"] == "SUCCEEDED", seen[-1]
    reads = [s for s in seen if "n" in s]
    growing = {s["n"] for s in reads if 0 < s["n"] < npoints}
    assert len(growing) >= 3, f"the reader saw no growing data: {seen}"
    counts = [s["n"] for s in reads]
    assert counts == sorted(counts), "points seen by the reader went backwards"
    for s in reads:
        if s["n"]:
            assert s["last"] == final[s["n"] - 1], ("the reader saw a wrong value", s)
    assert {s["error"] for s in seen if "error" in s} <= READER_ERRORS


def test_reader_without_locking_throughout_the_scan_sees_it_grow_and_harms_nothing(
        redis_url: str, tmp_path: Path, processes: list[subprocess.Popen[Any]]) -> None:
    """One reader opens the scan file, another the dataset collection's master file and
    follows its external link into the scan file: both see the scan grow, meet only
    the errors the contract names, and never crash (HDF5 1.10's file format, whose
    metadata carries checksums, see ``nexus_writer_service.io.files``)."""
    session = "poller"
    root = tmp_path / "data"
    npoints = 300
    filename = scan_filename(str(root), session, 1)
    master = master_filenames(str(root), session)["dataset_collection"]
    register_audit(redis_url, session)
    with session_writer(redis_url, session, fast_options(allowed_roots=(str(root),)),
                        poll_interval=0.05) as writer:
        link = master_link_name("dataset_collection", filename, "1.1")
        outputs = [tmp_path / "scan_file_reader.jsonl", tmp_path / "master_file_reader.jsonl"]
        readers = [_start_reader(filename, "1.1", outputs[0], processes),
                   _start_reader(master, link, outputs[1], processes)]
        publisher = subprocess.Popen(_simulated_scan(redis_url, session, root, npoints,
                                                     "--master-files"))
        processes.append(publisher)
        # the writer runs in this thread: wait letting its hub run
        wait_until(lambda: publisher.poll() is not None, 60, "the simulated scan published")
        assert publisher.returncode == 0
        record = wait_scans_done(writer, 1)[0]
        wait_until(lambda: all(reader.poll() is not None for reader in readers), 60,
                   "the readers saw the end")
    assert record.writer.filename == filename
    _check_simulated(redis_url, record, npoints)
    final = file_points(filename, record.key)[TIME]
    for reader, output in zip(readers, outputs):
        _check_seen(_reader_output(reader, output), final, npoints)


#: The object header message a symbol table group (HDF5 1.6's format) has (H5O_STAB_ID).
_SYMBOL_TABLE_MESSAGE = 0x11


def _format_problems(path: Path) -> list[str]:
    """What in ``path`` is in a format whose metadata carries no checksum, or would
    make HDF5 refuse readers while the file is open for writing."""
    with open(path, "rb") as raw:
        superblock = raw.read(9)[8]
    problems = [] if superblock == 2 else [f"superblock version {superblock}"]
    with h5py.File(path, "r") as h5:
        objects = {"/": h5}
        h5.visititems(lambda name, obj: objects.setdefault(name, obj))
        for name, obj in objects.items():
            header = h5o.get_info(obj.id).hdr
            if header.version != 2:
                problems.append(f"{name}: object header version {header.version}")
            if isinstance(obj, h5py.Group) and name != "/" and \
                    header.mesg.present & (1 << _SYMBOL_TABLE_MESSAGE):
                problems.append(f"{name}: a symbol table group")
    return problems


def test_scan_and_master_files_have_checksummed_metadata_that_readers_may_open(
        redis_url: str, tmp_path: Path) -> None:
    """The format that keeps readers without locking from crashing: HDF5 1.10's
    objects (checksums on every object header, group and chunk index), HDF5 1.8's
    superblock (HDF5 1.10's makes HDF5 refuse readers while the writer has the file)."""
    filename = tmp_path / "format.h5"
    master = tmp_path / "master.h5"
    record, = run_session_scans(redis_url, "format", fast_options(),
                                lambda publisher: publish_loopscan(publisher, filename, 1, 30))
    assert record.writer.status.value == "SUCCEEDED", record.as_dict()
    masterfiles.link_entries(str(master), str(filename), ["1.1"], [str(tmp_path)])
    assert _format_problems(filename) == []
    assert _format_problems(master) == []
