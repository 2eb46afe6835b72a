"""Lima frames in the scan file for every combination of enable_external_nonhdf5,
copy_non_external and disable_external_hdf5, with EDF and HDF5 Lima files: bit-exact
against the simulator's truth, valid NeXus, readable while the scan runs, and a
missing or corrupt frame file makes only its own scan FAULT."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.data import Publisher
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.io.edf import EdfFileIndex, edf_header, read_edf_data
from nexus_writer_service.simulation import (
    PublishedScan,
    SimulationOptions,
    TruthLima,
    read_truth,
    simulate,
)
from nexus_writer_service.simulation.info import scan_filename
from nexus_writer_service.simulation.lima import write_edf_frames
from nexus_writer_service.subscribers import SubscriberState
from tests.nxcheck import nxcheck_errors
from tests.writer_support import frame_checksums, session_writer, text, wait_scans_done, wait_until

LIMA = "lima_simulator:image"
NPOINTS = 23
SHAPE = (64, 80)


def _frame_at(uri: str, directory: str) -> np.ndarray:
    """The frame a reference ``<file>::<path>[<index>]`` points at (EDF: empty path)."""
    location, _, index = uri.rpartition("[")
    filename, _, path = location.partition("::")
    filename = os.path.join(directory, filename)
    number = int(index.rstrip("]"))
    if path:
        with h5py.File(filename, "r", locking=False) as h5:
            return h5[path][number]
    edf = EdfFileIndex(filename)
    return read_edf_data(filename, edf.update()[number])


def _simulate_lima(redis_url: str, tmp_path: Any, session: str, lima_format: str,
                   options: SaveOptions, **kwargs: Any) -> tuple[str, TruthLima, Any]:
    """Publish one simulated lima scan with the writer running; the scan's file, the
    truth of its detector and the writer's record. The publisher is another thread:
    the writer's listener runs in this thread's hub."""
    root = str(tmp_path / "data")
    options = SaveOptions.from_mapping(dict(options.as_dict(), allowed_roots=[root]))
    truth = str(tmp_path / f"truth-{session}.h5")
    published: list[PublishedScan] = []
    publisher = threading.Thread(target=lambda: published.extend(simulate(SimulationOptions(
        session=session, redis_url=redis_url, root=root, truth=truth, scans=("lima",),
        npoints=NPOINTS, block_size=7, lima_format=lima_format, **kwargs))))
    with session_writer(redis_url, session, options) as writer:
        publisher.start()
        try:
            wait_until(lambda: not publisher.is_alive(), 60, "simulated scan published")
        finally:
            publisher.join(60)
        (record,) = wait_scans_done(writer, 1)
    (scan,) = published
    return scan.filename, read_truth(truth)[scan.key].limas[LIMA], record


EXPECTED = [
    ("edf", {}, "references"),
    ("edf", {"enable_external_nonhdf5": True}, "external"),
    ("edf", {"copy_non_external": True}, "copy"),
    ("edf", {"enable_external_nonhdf5": True, "copy_non_external": True}, "external"),
    ("hdf5", {}, "virtual"),
    ("hdf5", {"enable_external_nonhdf5": True, "copy_non_external": True}, "virtual"),
    ("hdf5", {"disable_external_hdf5": True}, "references"),
    ("hdf5", {"disable_external_hdf5": True, "copy_non_external": True}, "copy"),
    ("hdf5", {"disable_external_hdf5": True, "enable_external_nonhdf5": True}, "references"),
]


@pytest.mark.slow
@pytest.mark.parametrize("lima_format, values, storage", EXPECTED,
                         ids=[f"{f}-{'+'.join(v) or 'default'}" for f, v, _ in EXPECTED])
def test_lima_frames_are_written_as_the_options_say_and_bit_exact(
        redis_url: str, tmp_path: Any, lima_format: str, values: dict[str, Any],
        storage: str) -> None:
    filename, lima, record = _simulate_lima(redis_url, tmp_path, "limaopts", lima_format,
                                            SaveOptions(**values))
    assert record.state is SubscriberState.OFF, record.as_dict()
    assert lima.info["file_format"] == lima_format
    assert len(lima.checksums) == NPOINTS
    with h5py.File(filename, "r", locking=False) as h5:
        entry = h5["1.1"]
        assert text(entry["writer/status"][()]) == "SUCCEEDED"
        dataset = entry["instrument/lima_simulator/data"]
        assert "not_linked" not in dataset.attrs
        if storage == "references":
            directory = os.path.dirname(filename)
            uris = [text(u) for u in dataset[()]]
            assert len(uris) == NPOINTS
            frames = np.stack([_frame_at(uri, directory) for uri in uris])
            assert "plot2D" not in entry
        else:
            assert dataset.shape == (NPOINTS,) + SHAPE and dataset.dtype == np.uint16
            assert dataset.is_virtual is (storage == "virtual")
            external = dataset.external or []
            if storage == "external":
                assert len(external) == NPOINTS
                assert all(os.path.isabs(text(name)) for name, _, _ in external)
                assert {text(name) for name, _, _ in external} == {ref[0] for ref in
                                                                   lima.references}
            else:
                assert not external
            if storage == "copy":
                assert dataset.chunks == (1,) + SHAPE
            frames = dataset[()]
            np.testing.assert_array_equal(entry["measurement/lima_simulator"][()], frames)
            np.testing.assert_array_equal(entry["plot2D/lima_simulator"][()], frames)
    np.testing.assert_array_equal(frame_checksums(frames), lima.checksums)
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


_POLL = """
import sys, time, zlib
import h5py
filename, path, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
n = -1
deadline = time.monotonic() + 60
while n < total and time.monotonic() < deadline:
    try:
        with h5py.File(filename, "r", locking=False) as h5:
            frames = h5[path][()]
            n = len(frames)
            crcs = [zlib.crc32(f.tobytes()) for f in frames]
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        n, crcs = -1, []
    print(n, *crcs, flush=True)
    time.sleep(0.05)
"""


@pytest.mark.slow
@pytest.mark.parametrize("values", [{"enable_external_nonhdf5": True},
                                    {"copy_non_external": True}],
                         ids=["external", "copy"])
def test_edf_frames_are_readable_in_the_scan_file_while_the_scan_runs(
        redis_url: str, tmp_path: Any, processes: list[Any], values: dict[str, Any]) -> None:
    """The reader is another process (HDF5 refuses a second open in the writer's)."""
    root = tmp_path / "data"
    filename = scan_filename(str(root), "live", 1)
    reader = subprocess.Popen(
        [sys.executable, "-c", _POLL, filename, "/1.1/instrument/lima_simulator/data",
         str(NPOINTS)], stdout=subprocess.PIPE, text=True)
    processes.append(reader)
    assert reader.stdout is not None
    # the scan starts once the reader polls (starting Python and h5py takes seconds
    # under load: long enough to miss the scan)
    assert reader.stdout.readline() == "ready\n"
    filename_seen, lima, record = _simulate_lima(
        redis_url, tmp_path, "live", "edf",
        SaveOptions(lima_refresh_period=0.1, flush_period=0.05, **values), count_time=0.1)
    assert filename_seen == filename
    assert record.state is SubscriberState.OFF, record.as_dict()
    output, _ = reader.communicate(timeout=90)
    lines = [[int(x) for x in line.split()] for line in output.splitlines()]
    counts = [line[0] for line in lines]
    assert len({n for n in counts if 0 < n < NPOINTS}) >= 3, counts
    assert counts[-1] == NPOINTS
    for line in lines:
        if line[0] > 0:
            np.testing.assert_array_equal(np.array(line[1:], dtype=np.uint32),
                                          lima.checksums[:line[0]])


def _publish_edf_scan(redis_url: str, session: str, root: Any, number: int,
                      damage: str) -> tuple[str, str]:
    """A 15-frame EDF lima scan whose second file is as ``damage`` says (``none``,
    ``missing``, ``corrupt``, ``big_endian``: valid, but not linkable); returns the
    scan file and that second frame file."""
    directory = str(root / f"scan{number}")
    frames = np.arange(15 * 4 * 6, dtype=np.uint16).reshape(15, 4, 6)
    with Publisher(session, redis_url) as publisher:
        scan = publisher.create_scan({
            "title": "loopscan 15 0.1", "npoints": 15,
            "filename": str(root / f"scan{number}.h5"),
            "acquisition_chain": {"timer": {"images": ["cam:image"]}}},
            name="loopscan", number=number)
        scan.add_lima("cam:image", directory=directory, prefix="cam_", suffix=".edf",
                      file_format="edf", frames_per_file=10, dtype="uint16", shape=(4, 6),
                      subscan="timer")
        scan.prepare()
        os.makedirs(directory)
        first, second = (os.path.join(directory, f"cam_{n:04d}.edf") for n in (0, 1))
        write_edf_frames(first, 0, frames[:10])
        if damage == "big_endian":
            with open(second, "wb") as file:
                for image, frame in enumerate(frames[10:].astype(">u2"), 1):
                    header = edf_header(image, frame)
                    file.write(header.replace(b"LowByteFirst ", b"HighByteFirst"))
                    file.write(frame.tobytes())
        elif damage != "missing":
            write_edf_frames(second, 0, frames[10:])
        if damage == "corrupt":
            with open(second, "r+b") as file:
                file.write(b"garbage")
        scan.update_lima("cam:image", 14, 14)
        scan.end()
    return str(root / f"scan{number}.h5"), second


@pytest.mark.parametrize("values", [{"enable_external_nonhdf5": True},
                                    {"copy_non_external": True}],
                         ids=["external", "copy"])
@pytest.mark.parametrize("damage, what", [("corrupt", "must begin with"),
                                          ("missing", "No such file")])
def test_missing_or_corrupt_edf_file_faults_its_scan_only(
        redis_url: str, tmp_path: Any, values: dict[str, Any], damage: str,
        what: str) -> None:
    root = tmp_path / "data"
    options = SaveOptions(allowed_roots=(str(root),), lima_refresh_period=0.1, **values)
    with session_writer(redis_url, "damaged", options) as writer:
        bad, frame_file = _publish_edf_scan(redis_url, "damaged", root, 1, damage)
        wait_until(lambda: len(writer.scans()) == 1 and writer.scans()[0].writer.done(),
                   30, "the damaged scan ended")
        good, _ = _publish_edf_scan(redis_url, "damaged", root, 2, "none")
        records = wait_scans_done(writer, 2)
    damaged, fine = records
    assert damaged.state is SubscriberState.FAULT, damaged.as_dict()
    reason = damaged.writer.state_reason
    assert frame_file in reason and what in reason, reason
    assert fine.state is SubscriberState.OFF, fine.as_dict()
    with h5py.File(bad, "r", locking=False) as h5:
        assert text(h5["1.1/writer/status"][()]) == "FAILED"
        assert frame_file in text(h5["1.1/writer/message"][()])
        assert h5["1.1/instrument/cam/data"].shape == (10, 4, 6)
    with h5py.File(good, "r", locking=False) as h5:
        assert text(h5["2.1/writer/status"][()]) == "SUCCEEDED"
        frames = h5["2.1/instrument/cam/data"][()]
    np.testing.assert_array_equal(frames, np.arange(15 * 4 * 6).reshape(15, 4, 6))
    assert nxcheck_errors(good, ignore_entry_names=True) == []


@pytest.mark.parametrize("values, storage", [
    ({"enable_external_nonhdf5": True}, "references"),
    ({"enable_external_nonhdf5": True, "copy_non_external": True}, "copy"),
], ids=["references", "copy"])
def test_edf_frames_that_cannot_be_linked_are_copied_or_referenced(
        redis_url: str, tmp_path: Any, values: dict[str, Any], storage: str) -> None:
    """Big-endian frames of a detector declared little-endian cannot be external
    storage: the scan falls back to copies (converted) or to references."""
    root = tmp_path / "data"
    options = SaveOptions.from_mapping(dict(values, allowed_roots=[str(root)]))
    with session_writer(redis_url, "unlinkable", options) as writer:
        filename, frame_file = _publish_edf_scan(redis_url, "unlinkable", root, 1,
                                                 "big_endian")
        (record,) = wait_scans_done(writer, 1)
    assert record.state is SubscriberState.OFF, record.as_dict()
    expected = np.arange(15 * 4 * 6, dtype=np.uint16).reshape(15, 4, 6)
    with h5py.File(filename, "r", locking=False) as h5:
        dataset = h5["1.1/instrument/cam/data"]
        reason = text(dataset.attrs["not_linked"])
        assert frame_file in reason and ">u2" in reason, reason
        if storage == "copy":
            assert dataset.dtype == np.dtype("<u2") and not dataset.external
            np.testing.assert_array_equal(dataset[()], expected)
            np.testing.assert_array_equal(h5["1.1/measurement/cam"][()], expected)
        else:
            uris = [text(u) for u in dataset[()]]
            assert uris[10] == "scan1/cam_0001.edf::[0]"
            frames = [_frame_at(uri, str(root)) for uri in uris]
            np.testing.assert_array_equal(np.stack(frames).astype("<u2"), expected)
    assert nxcheck_errors(filename, ignore_entry_names=True) == []
