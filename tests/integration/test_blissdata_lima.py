"""Lima detectors published by blissdata (BLISS 2.x): their frames are referenced in
the scan file from the saving parameters and progress of their streams, as for our
own source, with the real blissdata package on both sides."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import h5py
import numpy as np
import pytest
from blissdata.redis_engine.store import DataStore

from nexus_writer_service.data.blissdata_source import BlissdataSession
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import NexusSessionWriter, SubscriberState
from tests.blissdata_support import (
    BlissScan,
    ascan_data,
    lima_definition,
    publish,
    reference_scan_info,
)
from tests.nxcheck import nxcheck_errors
from tests.writer_support import wait_scans_done, wait_until

LIMA = "cam:image"
SHAPE = (6, 5)
DATA_PATH = "/entry_0000/measurement/data"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _lima_dataset(entry: h5py.Group) -> h5py.Dataset:
    found = [obj for obj in entry["instrument"].values() if isinstance(obj, h5py.Group)
             and isinstance(obj.get("data"), h5py.Dataset) and obj["data"].ndim == 3]
    assert len(found) == 1, list(entry["instrument"])
    return found[0]["data"]


#: A reader in another process (HDF5 refuses a second opening of a file that its own
#: process writes): the sum of each frame the scan file shows.
_READER = """
import sys, h5py
with h5py.File(sys.argv[1], "r", locking=False) as h5:
    for obj in h5["3.1/instrument"].values():
        data = obj.get("data") if isinstance(obj, h5py.Group) else None
        if isinstance(data, h5py.Dataset) and data.ndim == 3:
            print(*(int(frame.sum()) for frame in data[()]))
"""


def _shown(filename: str) -> list[int]:
    """The sum of each frame the scan file shows now, as a reader during the scan
    sees it ([] when it cannot be read yet)."""
    done = subprocess.run([sys.executable, "-c", _READER, filename], capture_output=True,
                          text=True, timeout=60)
    return [int(n) for n in done.stdout.split()] if done.returncode == 0 else []


class _Frames:
    """What the detector saves: each file written whole once its last frame is saved,
    at the place blissdata's own references say (``LimaStream.get_references``)."""

    def __init__(self, url: str, scan: BlissScan, nframes: int) -> None:
        reader = DataStore(url).load_scan(scan.key)
        self.references = [reader.streams[LIMA].get_references(i) for i in range(nframes)]
        self.frames = np.random.default_rng(1).integers(0, 60000, (nframes,) + SHAPE,
                                                        dtype=np.uint16)
        self.saved = 0

    def save_upto(self, count: int) -> int:
        """Save the files complete with the first ``count`` frames; the last frame in
        a saved file (-1 if none), as lima's ``last_index_saved``."""
        files: dict[str, list[int]] = {}
        for frame, ref in enumerate(self.references):
            files.setdefault(ref.file_path, []).append(frame)
        for path, frames in files.items():
            if frames[-1] < count and frames[-1] >= self.saved:
                with h5py.File(path, "w") as h5:
                    h5[DATA_PATH] = self.frames[frames[0]:frames[-1] + 1]
                self.saved = frames[-1] + 1
        return self.saved - 1


@pytest.mark.parametrize("per_acquisition, offset", [(12, 2), (4, 0)],
                         ids=["one-acquisition", "three-acquisitions"])
def test_lima_hdf5_frames_are_a_virtual_dataset_readable_during_the_scan(
        blissdata_url, tmp_path, per_acquisition, offset):
    nframes = 12
    filename = str(tmp_path / "sample" / "scan.h5")
    (tmp_path / "lima").mkdir()
    template = str(tmp_path / "lima" / "cam_%04d.h5")
    info = reference_scan_info(filename, npoints=nframes)
    info["acquisition_chain"]["axis"]["images"] = [LIMA]
    lima = lima_definition(LIMA, template, frames_per_file=3, file_offset=offset,
                           frames_per_acquisition=per_acquisition, shape=SHAPE)
    data = ascan_data(nframes)
    options = SaveOptions(allowed_roots=(str(tmp_path),), lima_refresh_period=0.1)
    writer = NexusSessionWriter(BlissdataSession("demo", blissdata_url), options=options,
                                poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    try:
        scan = BlissScan(blissdata_url, info, limas=[lima])
        scan.prepare_and_start()
        frames = _Frames(blissdata_url, scan, nframes)
        for point in range(nframes):
            scan.send({name: values[point:point + 1] for name, values in data.items()})
            scan.lima_status(LIMA, point, frames.save_upto(point + 1))
            if point == 6:  # what is saved is in the file while the scan runs
                saved = frames.saved
                sums = [int(frame.sum()) for frame in frames.frames[:saved]]
                wait_until(lambda: _shown(filename)[:saved] == sums, 30,
                           "the saved frames shown during the scan")
        scan.end()
        (record,) = wait_scans_done(writer, 1)
        assert record.state is SubscriberState.OFF, record.writer.state_reason
        assert record.writer.end_reason == "SUCCESS"
    finally:
        writer.stop(wait=True, timeout=60)
    with h5py.File(filename, "r") as h5:
        dataset = _lima_dataset(h5["3.1"])
        assert dataset.is_virtual and dataset.shape == (nframes,) + SHAPE
        assert dataset.dtype == np.uint16
        np.testing.assert_array_equal(dataset[()], frames.frames)
        sources = {os.path.normpath(os.path.join(os.path.dirname(filename), source.file_name))
                   for source in dataset.virtual_sources()}  # relative to the scan file
        assert sources == {ref.file_path for ref in frames.references}
        assert {source.dset_name for source in dataset.virtual_sources()} == {DATA_PATH}
    names = sorted(ref.file_path for ref in frames.references)
    assert names[0].endswith(f"cam_{offset:04d}.h5")
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


@pytest.mark.parametrize("change, named", [
    ({"file_offset": -1}, "file_offset"),
    ({"file_path": "cam.h5"}, "file template"),
    ({"file_path": "/etc/cam_%04d.h5"}, "allowed"),
], ids=["negative-file-offset", "no-conversion", "outside-the-roots"])
def test_malformed_lima_stream_faults_only_its_scan(blissdata_url, tmp_path, change, named):
    template = change.get("file_path", str(tmp_path / "lima" / "cam_%04d.h5"))
    lima = lima_definition(LIMA, template, frames_per_acquisition=3,
                           frames_per_file=3, file_offset=change.get("file_offset", 0))
    options = SaveOptions(allowed_roots=(str(tmp_path),))
    writer = NexusSessionWriter(BlissdataSession("demo", blissdata_url), options=options,
                                poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    try:
        bad = BlissScan(blissdata_url, reference_scan_info(str(tmp_path / "bad.h5"), npoints=3),
                        limas=[lima], number=1)
        bad.prepare_and_start()
        bad.send(ascan_data(3))
        bad.end()
        good = str(tmp_path / "good.h5")
        publish(blissdata_url, reference_scan_info(good, npoints=3), ascan_data(3), number=2)
        records = wait_scans_done(writer, 2)
        assert [r.state for r in records] == [SubscriberState.FAULT, SubscriberState.OFF]
        assert named in records[0].writer.state_reason
        assert repr(LIMA) in records[0].writer.state_reason
        assert writer.state is SubscriberState.ON
    finally:
        writer.stop(wait=True, timeout=60)


@pytest.mark.slow
def test_lima_across_a_writer_restart(blissdata_url, tmp_path, processes):
    """The writer killed mid-scan and started again: it resumes from its
    acknowledgements and the file references every frame saved, once."""
    import signal

    nframes = 12
    filename = str(tmp_path / "sample" / "scan.h5")
    (tmp_path / "lima").mkdir()
    info = reference_scan_info(filename, npoints=nframes)
    info["acquisition_chain"]["axis"]["images"] = [LIMA]
    lima = lima_definition(LIMA, str(tmp_path / "lima" / "cam_%04d.h5"), frames_per_file=2,
                           frames_per_acquisition=nframes, shape=SHAPE)
    log = tmp_path / "writer.log"
    command = [sys.executable, "-m", "nexus_writer_service.cli.session_writer", "demo",
               "--redis-url", blissdata_url, "--allowed-roots", str(tmp_path),
               "--data-source", "blissdata", "--flush-period", "0.05",
               "--lima-refresh-period", "0.1", "--logfile", str(log), "--nologstdout"]
    first = subprocess.Popen(command)
    processes.append(first)
    wait_until(lambda: log.exists() and "writing session" in log.read_text(), 30,
               "the writer started")
    data = ascan_data(nframes)
    scan = BlissScan(blissdata_url, info, limas=[lima])
    scan.prepare_and_start()
    frames = _Frames(blissdata_url, scan, nframes)

    def point(index: int) -> None:
        scan.send({name: values[index:index + 1] for name, values in data.items()})
        scan.lima_status(LIMA, index, frames.save_upto(index + 1))

    for index in range(6):
        point(index)
    sums = [int(frame.sum()) for frame in frames.frames]
    wait_until(lambda: _shown(filename)[:6] == sums[:6], 30, "6 frames in the file")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    for index in range(6, 9):  # while no writer runs
        point(index)
    second = subprocess.Popen(command)
    processes.append(second)
    wait_until(lambda: _shown(filename)[:8] == sums[:8], 30, "the frames saved meanwhile")
    for index in range(9, nframes):
        point(index)
    scan.end()
    wait_until(lambda: _status(filename) == "SUCCEEDED", 30, "the file completed")
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    with h5py.File(filename, "r") as h5:
        assert "resumed" in _text(h5["3.1/writer/resumed"][()])
        dataset = _lima_dataset(h5["3.1"])
        assert dataset.is_virtual and dataset.shape == (nframes,) + SHAPE
        np.testing.assert_array_equal(dataset[()], frames.frames)
        np.testing.assert_array_equal(h5["3.1/instrument/diode/data"][()],
                                      data["simulation_diode_sampling_controller:diode"])
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


def _status(filename: str) -> str:
    try:
        with h5py.File(filename, "r", locking=False) as h5:
            return _text(h5["3.1/writer/status"][()])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        return ""


LIMA_OPTIONS = [
    ("EDF", {}, "references"),
    ("EDF", {"enable_external_nonhdf5": True}, "external"),
    ("EDF", {"copy_non_external": True}, "copy"),
    ("HDF5", {"disable_external_hdf5": True}, "references"),
    ("HDF5", {"disable_external_hdf5": True, "copy_non_external": True}, "copy"),
]


@pytest.mark.parametrize("file_format, values, storage", LIMA_OPTIONS,
                         ids=[f"{f}-{'+'.join(v) or 'default'}" for f, v, _ in LIMA_OPTIONS])
def test_lima_frames_are_referenced_as_the_options_say(blissdata_url, tmp_path, file_format,
                                                       values, storage):
    """EDF and HDF5 lima files named by blissdata's lima streams: external EDF frames,
    copies or references, as the save options say (as for our own source)."""
    from nexus_writer_service.simulation.lima import write_edf_frames

    nframes = 6
    suffix = "edf" if file_format == "EDF" else "h5"
    filename = str(tmp_path / "sample" / "scan.h5")
    (tmp_path / "lima").mkdir()
    info = reference_scan_info(filename, npoints=nframes)
    info["acquisition_chain"]["axis"]["images"] = [LIMA]
    lima = lima_definition(LIMA, str(tmp_path / "lima" / f"cam_%04d.{suffix}"),
                           frames_per_file=4, frames_per_acquisition=nframes, shape=SHAPE,
                           file_format=file_format,
                           data_path="" if file_format == "EDF" else DATA_PATH)
    data = ascan_data(nframes)
    options = SaveOptions(allowed_roots=(str(tmp_path),), lima_refresh_period=0.1, **values)
    writer = NexusSessionWriter(BlissdataSession("demo", blissdata_url), options=options,
                                poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    try:
        scan = BlissScan(blissdata_url, info, limas=[lima])
        scan.prepare_and_start()
        reader = DataStore(blissdata_url).load_scan(scan.key)
        references = [reader.streams[LIMA].get_references(i) for i in range(nframes)]
        frames = np.random.default_rng(2).integers(0, 60000, (nframes,) + SHAPE,
                                                   dtype=np.uint16)
        files: dict[str, list[int]] = {}
        for index, ref in enumerate(references):
            files.setdefault(ref.file_path, []).append(index)
        for path, indices in files.items():  # the detector saves each file whole
            if file_format == "EDF":
                write_edf_frames(path, 0, frames[indices[0]:indices[-1] + 1])
            else:
                with h5py.File(path, "w") as h5:
                    h5[DATA_PATH] = frames[indices[0]:indices[-1] + 1]
        scan.send(data)
        scan.lima_status(LIMA, nframes - 1, nframes - 1)
        scan.end()
        (record,) = wait_scans_done(writer, 1)
        assert record.state is SubscriberState.OFF, record.writer.state_reason
    finally:
        writer.stop(wait=True, timeout=60)
    assert len(files) == 2
    with h5py.File(filename, "r") as h5:
        dataset = h5["3.1/instrument/cam/data"]
        if storage == "references":
            uris = [_text(uri) for uri in dataset[()]]
            assert len(uris) == nframes
            named = {os.path.normpath(os.path.join(os.path.dirname(filename),
                                                   uri.split("::")[0])) for uri in uris}
            assert named == set(files)
        else:
            assert dataset.shape == (nframes,) + SHAPE and dataset.dtype == np.uint16
            external = dataset.external or []
            assert bool(external) is (storage == "external")
            if external:
                assert {_text(name) for name, _, _ in external} == set(files)
            np.testing.assert_array_equal(dataset[()], frames)
    assert nxcheck_errors(filename, ignore_entry_names=True) == []
