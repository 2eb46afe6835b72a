"""The ``stack_mcas`` save option: the detectors of one MCA controller share one
NXdetector whose datasets have one column per detector, bit-exact against the
simulator's ground truth, valid NeXus, resumable; controllers that cannot be
stacked keep one NXdetector per detector and the writer says why."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.data import Publisher
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.simulation import SimulationOptions, read_truth, simulate
from nexus_writer_service.subscribers import SubscriberState
from tests.nxcheck import nxcheck_errors
from tests.writer_support import session_writer, wait_scans_done, wait_until

QUANTITIES = ("icr", "ocr", "livetime", "realtime", "deadtime")
#: the NXdetector field of each quantity: NeXus's name where it has one
FIELDS = {"realtime": "real_time"}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _options(root: str, **kwargs: Any) -> SaveOptions:
    return SaveOptions(stack_mcas=True, allowed_roots=(root,), flush_period=0.05, **kwargs)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_stacked_mcas_are_bit_exact_per_detector_and_valid(
        redis_url: str, tmp_path: Any, compression: str) -> None:
    root = str(tmp_path / "data")
    truth = str(tmp_path / "truth.h5")
    options = _options(root, compression=compression, chunk_bytes=1 << 16)
    with session_writer(redis_url, "stack", options) as writer:
        published = simulate(SimulationOptions(
            session="stack", redis_url=redis_url, root=root, truth=truth, scans=("mca",),
            mca_detectors=3, npoints=23, block_size=7))
        records = wait_scans_done(writer, 1)
    assert records[0].state is SubscriberState.OFF, records[0].as_dict()
    scan = next(iter(read_truth(truth).values()))
    entry = f"/{published[0].number}.1"
    with h5py.File(published[0].filename, "r") as h5:
        instrument = h5[f"{entry}/instrument"]
        assert _text(instrument["mca1"].attrs["NX_class"]) == "NXdetector"
        assert not [name for name in instrument if name.startswith("mca1_det")]
        data = instrument["mca1/data"]
        assert data.shape == (23, 3, 4096) and data.dtype == np.uint32
        assert [_text(c) for c in data.attrs["channels"]] == [
            f"mca1:spectrum_det{det}" for det in range(3)]
        np.testing.assert_array_equal(data.attrs["detector_points"], [23, 23, 23])
        for det in range(3):
            np.testing.assert_array_equal(data[:, det],
                                          scan.channels[f"mca1:spectrum_det{det}"])
            for quantity in QUANTITIES:
                dataset = instrument[f"mca1/{FIELDS.get(quantity, quantity)}"]
                assert dataset.shape == (23, 3)
                values = scan.channels[f"mca1:{quantity}_det{det}"]
                assert dataset.dtype == values.dtype
                np.testing.assert_array_equal(dataset[:, det], values)
        assert _text(instrument["mca1/icr"].attrs["units"]) == "1/s"
        # the other channels are written as without stacking
        np.testing.assert_array_equal(instrument["diode1/data"][()],
                                      scan.channels["diode:diode1"])
        measurement = h5[f"{entry}/measurement"]
        link = measurement.get("spectrum", getlink=True)
        assert link.path == f"{entry}/instrument/mca1/data"
        assert measurement.get("icr", getlink=True).path == f"{entry}/instrument/mca1/icr"
        plot = h5[f"{entry}/plot1D"]
        assert _text(plot.attrs["signal"]) == "spectrum"
        assert plot["spectrum"].shape == (23, 3, 4096)
        assert len(plot.attrs["axes"]) == 3
        assert "mca_stacking" not in h5[f"{entry}/notes"]
    assert nxcheck_errors(published[0].filename, ignore_entry_names=True) == []


def _declare_mcas(scan: Any) -> None:
    # mca1: two detectors of different spectrum lengths; mca2: a single detector;
    # mca3: two detectors of different dtypes
    scan.add_channel("mca1:spectrum_det0", "uint32", (100,))
    scan.add_channel("mca1:spectrum_det1", "uint32", (200,))
    scan.add_channel("mca2:spectrum_det0", "uint32", (50,))
    scan.add_channel("mca2:icr_det0", "float64")
    scan.add_channel("mca3:spectrum_det0", "uint32", (64,))
    scan.add_channel("mca3:spectrum_det1", "uint16", (64,))


def test_controllers_that_cannot_be_stacked_keep_one_detector_per_group(
        redis_url: str, tmp_path: Any, caplog: Any) -> None:
    root = str(tmp_path / "data")
    filename = str(tmp_path / "data" / "fallback.h5")
    rng = np.random.default_rng(1)
    sent = {"mca1:spectrum_det0": rng.integers(0, 1000, (10, 100)).astype("uint32"),
            "mca1:spectrum_det1": rng.integers(0, 1000, (10, 200)).astype("uint32"),
            "mca2:spectrum_det0": rng.integers(0, 1000, (10, 50)).astype("uint32"),
            "mca2:icr_det0": rng.uniform(0, 1e4, 10),
            "mca3:spectrum_det0": rng.integers(0, 1000, (10, 64)).astype("uint32"),
            "mca3:spectrum_det1": rng.integers(0, 1000, (10, 64)).astype("uint16")}
    caplog.set_level(logging.WARNING)
    with session_writer(redis_url, "fallback", _options(root)) as writer:
        with Publisher("fallback", redis_url) as publisher:
            scan = publisher.create_scan({"title": "fallback", "filename": filename,
                                          "npoints": 10}, name="loopscan", number=1)
            _declare_mcas(scan)
            scan.prepare()
            scan.send(sent)
            scan.end()
        record = wait_scans_done(writer, 1)[0]
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r") as h5:
        instrument = h5["/1.1/instrument"]
        assert not {"mca1", "mca2", "mca3"} & set(instrument)
        for name, values in sent.items():
            ctrl, field = name.split(":")
            quantity, det = field.rsplit("_", 1)
            leaf = "data" if quantity == "spectrum" else FIELDS.get(quantity, quantity)
            np.testing.assert_array_equal(instrument[f"{ctrl}_{det}/{leaf}"][()], values)
        notes = _text(h5["/1.1/notes/mca_stacking"][()])
    assert "MCA mca1: detectors not stacked (mca1:spectrum_det1 has points of shape" in notes
    assert "MCA mca2: detectors not stacked (a single detector)" in notes
    assert "MCA mca3: detectors not stacked (mca3:spectrum_det1 is uint16" in notes
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "MCA mca1: detectors not stacked" in logged, logged
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


def _spectra(det: int, start: int, stop: int) -> np.ndarray[Any, Any]:
    base = np.arange(start, stop, dtype=np.uint32)[:, None] * 1000 + det
    return base + np.arange(32, dtype=np.uint32)[None, :] * 10


def _send(scan: Any, det: int, start: int, stop: int) -> None:
    scan.send({f"mca1:spectrum_det{det}": _spectra(det, start, stop),
               f"mca1:icr_det{det}": np.arange(start, stop, dtype=np.float64) + det / 10})


def test_stacked_mcas_resume_with_detectors_at_different_points(
        redis_url: str, tmp_path: Any) -> None:
    """The writer stops while its detectors are at 150, 100 and 50 points: the file says
    so per detector, and a new writer completes it from Redis, nothing doubled."""
    root = str(tmp_path / "data")
    filename = str(tmp_path / "data" / "resume.h5")
    options = _options(root, chunk_bytes=1024)
    stopped_at = (150, 100, 50)
    with Publisher("resume", redis_url) as publisher:
        with session_writer(redis_url, "resume", options) as writer:
            scan = publisher.create_scan({"title": "resume", "filename": filename,
                                          "npoints": 200}, name="loopscan", number=1)
            for det in range(3):
                scan.add_channel(f"mca1:spectrum_det{det}", "uint32", (32,))
                scan.add_channel(f"mca1:icr_det{det}", "float64")
            scan.prepare()
            for det, stop in enumerate(stopped_at):
                for start in range(0, stop, 25):
                    _send(scan, det, start, start + 25)
            wait_until(lambda: bool(writer.scans()) and all(
                writer.scans()[0].writer.points.get(f"mca1:icr_det{det}") == stop
                for det, stop in enumerate(stopped_at)), 20, "first points received")
        with h5py.File(filename, "r") as h5:
            data = h5["/1.1/instrument/mca1/data"]
            np.testing.assert_array_equal(data.attrs["detector_points"], stopped_at)
            np.testing.assert_array_equal(h5["/1.1/instrument/mca1/icr"].attrs[
                "detector_points"], stopped_at)
            assert data.shape[0] == 150
            assert _text(h5["/1.1/writer/status"][()]) == "RUNNING"
        for det, start in enumerate(stopped_at):
            for first in range(start, 200, 25):
                _send(scan, det, first, first + 25)
        scan.end()
        with session_writer(redis_url, "resume", options) as writer:
            record = wait_scans_done(writer, 1)[0]
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r") as h5:
        data = h5["/1.1/instrument/mca1/data"]
        icr = h5["/1.1/instrument/mca1/icr"]
        assert data.shape == (200, 3, 32) and icr.shape == (200, 3)
        np.testing.assert_array_equal(data.attrs["detector_points"], [200] * 3)
        np.testing.assert_array_equal(icr.attrs["detector_points"], [200] * 3)
        for det in range(3):
            np.testing.assert_array_equal(data[:, det], _spectra(det, 0, 200))
            np.testing.assert_array_equal(icr[:, det], np.arange(200.0) + det / 10)
        assert "resumed" in _text(h5["/1.1/writer/resumed"][()])
        assert _text(h5["/1.1/writer/status"][()]) == "SUCCEEDED"
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


_WRITER = """
import sys
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import NexusSessionWriter
options = SaveOptions(stack_mcas=True, allowed_roots=(sys.argv[3],), flush_period=0.05,
                      chunk_bytes=1024)
writer = NexusSessionWriter(sys.argv[1], sys.argv[2], options=options)
writer.start(wait=True, timeout=10)
writer.join()
"""


def _detector_points(filename: str) -> list[int]:
    try:
        with h5py.File(filename, "r", locking=False) as h5:
            return [int(n) for n in h5["/1.1/instrument/mca1/data"].attrs["detector_points"]]
    except (OSError, KeyError):
        return []


@pytest.mark.slow
def test_stacked_mcas_complete_after_the_writer_is_killed_mid_scan(
        redis_url: str, tmp_path: Any, processes: list[Any]) -> None:
    root = str(tmp_path / "data")
    filename = str(tmp_path / "data" / "killed.h5")
    stopped_at = [150, 100, 50]
    first = subprocess.Popen([sys.executable, "-c", _WRITER, "killed", redis_url, root])
    processes.append(first)
    with Publisher("killed", redis_url) as publisher:
        deadline = time.monotonic() + 20
        while b"nexus_writer" not in publisher._client.smembers("nws:killed:readers"):
            assert time.monotonic() < deadline, "the writer did not register"
            time.sleep(0.05)
        scan = publisher.create_scan({"title": "killed", "filename": filename,
                                      "npoints": 200}, name="loopscan", number=1)
        for det in range(3):
            scan.add_channel(f"mca1:spectrum_det{det}", "uint32", (32,))
            scan.add_channel(f"mca1:icr_det{det}", "float64")
        scan.prepare()
        for det, stop in enumerate(stopped_at):
            for start in range(0, stop, 25):
                _send(scan, det, start, start + 25)
        deadline = time.monotonic() + 20
        while _detector_points(filename) != stopped_at:
            assert time.monotonic() < deadline, _detector_points(filename)
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        for det, start in enumerate(stopped_at):
            for index in range(start, 200, 25):
                _send(scan, det, index, index + 25)
        scan.end()
    with session_writer(redis_url, "killed", _options(root, chunk_bytes=1024)) as writer:
        record = wait_scans_done(writer, 1)[0]
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r") as h5:
        data = h5["/1.1/instrument/mca1/data"]
        icr = h5["/1.1/instrument/mca1/icr"]
        assert data.shape == (200, 3, 32) and icr.shape == (200, 3)
        np.testing.assert_array_equal(data.attrs["detector_points"], [200] * 3)
        for det in range(3):
            np.testing.assert_array_equal(data[:, det], _spectra(det, 0, 200))
            np.testing.assert_array_equal(icr[:, det], np.arange(200.0) + det / 10)
        assert _text(h5["/1.1/writer/status"][()]) == "SUCCEEDED"
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


def test_detector_declared_after_points_came_faults_the_scan_with_a_reason(
        redis_url: str, tmp_path: Any) -> None:
    """Points of mca1 detector 0 are in their own dataset when detector 1 is declared:
    moving them to a stacked dataset would lose them, so the scan stops, saying why."""
    root = str(tmp_path / "data")
    filename = str(tmp_path / "data" / "late.h5")
    with session_writer(redis_url, "late", _options(root)) as writer:
        with Publisher("late", redis_url) as publisher:
            scan = publisher.create_scan({"title": "late", "filename": filename,
                                          "npoints": 20}, name="loopscan", number=1)
            scan.add_channel("mca1:spectrum_det0", "uint32", (32,))
            scan.prepare()
            scan.send({"mca1:spectrum_det0": _spectra(0, 0, 10)})
            wait_until(lambda: bool(writer.scans()) and writer.scans()[0].writer.points.get(
                "mca1:spectrum_det0") == 10, 20, "first points received")
            scan.add_channel("mca1:spectrum_det1", "uint32", (32,))
            scan.send({"mca1:spectrum_det1": _spectra(1, 0, 10)})
            scan.end()
        record = wait_scans_done(writer, 1)[0]
    assert record.state is SubscriberState.FAULT
    assert "write this scan without stack_mcas" in str(record.as_dict()), record.as_dict()
    with h5py.File(filename, "r") as h5:
        np.testing.assert_array_equal(h5["/1.1/instrument/mca1_det0/data"][()],
                                      _spectra(0, 0, 10))
        assert _text(h5["/1.1/writer/status"][()]) == "FAILED"
    assert nxcheck_errors(filename, ignore_entry_names=True) == []
