"""Every lima file naming the simulator can publish (and blissdata can express):
printf templates, file offsets, several frames per file, several acquisitions per
scan (each starting a new file), HDF5 and EDF. The simulator saves the frames where
blissdata's own ``LimaClient`` says they are; the writer references them as the save
options say (virtual dataset, external EDF frames, copies), bit-exact against what
was published, and readable while the scan runs."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import h5py
import numpy as np
import pytest

from nexus_writer_service.data import Publisher
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.simulation import (
    LimaSpec,
    PublishedScan,
    ScanParameters,
    ScanPlan,
    build_scan,
    publish_plan,
)
from nexus_writer_service.subscribers import NexusSessionWriter, SubscriberState
from tests.nxcheck import nxcheck_errors
from tests.writer_support import wait_scans_done, wait_until

LIMA = "lima_simulator:image"
NPOINTS = 13
BLOCK = 2
#: the scan is held when it asks for its points from here on, until the file shows
#: every frame saved before (in the second acquisition where there are several)
CHECKPOINT = 8


@dataclasses.dataclass(frozen=True)
class Naming:
    file_format: str
    frames_per_file: int
    frames_per_acquisition: int
    first_file_number: int
    #: a printf template of the file number, in the detector's directory (None: the
    #: simulator's ``<prefix><number:04d><suffix>``)
    template: str | None
    save: dict[str, bool]
    storage: str  # "virtual", "external" or "copy"


NAMINGS = {
    "hdf5-one-acquisition": Naming("hdf5", 4, 0, 0, None, {}, "virtual"),
    "hdf5-acquisitions-and-offset": Naming("hdf5", 2, 5, 7, None, {}, "virtual"),
    "hdf5-printf-template": Naming("hdf5", 3, 4, 1, "run%%2_cam_%05d.h5", {}, "virtual"),
    "hdf5-acquisitions-copied": Naming(
        "hdf5", 2, 5, 0, None, {"disable_external_hdf5": True, "copy_non_external": True},
        "copy"),
    "edf-acquisitions-external": Naming("edf", 2, 5, 3, None,
                                        {"enable_external_nonhdf5": True}, "external"),
    "edf-printf-template-copied": Naming("edf", 3, 4, 0, "cam-%d.edf",
                                         {"copy_non_external": True}, "copy"),
}
CASES = [(source, name) for name in NAMINGS for source in ("blissdata", "nws")
         if source == "blissdata" or name in ("hdf5-acquisitions-and-offset",
                                              "edf-printf-template-copied")]


def _digests(frames: Any) -> list[str]:
    return [hashlib.sha1(np.ascontiguousarray(frame).tobytes()).hexdigest()
            for frame in frames]


#: A reader in another process (HDF5 refuses a second opening of a file that its own
#: process writes): a digest of each frame of the 3D datasets the scan file shows.
_READER = """
import hashlib, sys, h5py, numpy
with h5py.File(sys.argv[1], "r", locking=False) as h5:
    for entry in h5.values():
        for obj in entry["instrument"].values():
            data = obj.get("data") if isinstance(obj, h5py.Group) else None
            if isinstance(data, h5py.Dataset) and data.ndim == 3:
                for frame in data[()]:
                    print(hashlib.sha1(numpy.ascontiguousarray(frame).tobytes()).hexdigest())
"""


def _shown(filename: str) -> list[str]:
    """What a reader of the scan file sees now ([] while it cannot read it)."""
    done = subprocess.run([sys.executable, "-c", _READER, filename], capture_output=True,
                          text=True, timeout=60)
    return done.stdout.split() if done.returncode == 0 else []


def _plan(root: str, naming: Naming) -> ScanPlan:
    params = ScanParameters(session="limas", number=1, root=root, npoints=NPOINTS,
                            lima_format=naming.file_format,
                            lima_frames_per_file=naming.frames_per_file,
                            lima_frames_per_acquisition=naming.frames_per_acquisition,
                            lima_first_file_number=naming.first_file_number)
    plan = build_scan("lima", params)
    if naming.template:
        (lima,) = plan.limas
        plan.limas = [dataclasses.replace(
            lima, file_template=os.path.join(lima.directory, naming.template))]
    return plan


class _HeldScan:
    """``plan`` whose points are recorded as they are published, and held once at
    :data:`CHECKPOINT` until the scan file shows every frame saved before."""

    def __init__(self, plan: ScanPlan) -> None:
        self.plan = plan
        self.frames: list[np.ndarray] = []
        self.seen_during_scan = False
        self._source = plan.source
        plan.source = self._next

    def _next(self, start: int, stop: int) -> Any:
        if start == CHECKPOINT:
            expected = _digests(np.concatenate(self.frames))
            deadline = time.monotonic() + 60
            while _shown(self.plan.filename)[:len(expected)] != expected:
                assert time.monotonic() < deadline, "the saved frames are not shown"
                time.sleep(0.05)
            self.seen_during_scan = True
        block = self._source(start, stop)
        self.frames.append(block.frames[LIMA])
        return block


@pytest.fixture
def publishing(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A function publishing a plan through ``source`` with a writer of the session
    running: it returns the scan published, the writer's record and the URL."""

    def run(source: str, plan: ScanPlan, save: SaveOptions) -> tuple[PublishedScan, Any, str]:
        url = request.getfixturevalue("blissdata_url" if source == "blissdata"
                                      else "redis_url")
        if source == "blissdata":
            from nexus_writer_service.data.blissdata_source import BlissdataSession
            from nexus_writer_service.simulation.blissdata_publish import BlissdataPublisher

            writer = NexusSessionWriter(BlissdataSession("limas", url), options=save,
                                        poll_interval=0.05)
            publisher: Any = BlissdataPublisher("limas", url)
        else:
            writer = NexusSessionWriter("limas", url, options=save, poll_interval=0.05)
            publisher = Publisher("limas", url)
        published: list[PublishedScan] = []
        failed: list[BaseException] = []

        def publish() -> None:
            try:
                with publisher:
                    published.append(publish_plan(publisher, plan, block_size=BLOCK))
            except BaseException as exc:  # reported by the test
                failed.append(exc)

        thread = threading.Thread(target=publish)
        writer.start(wait=True, timeout=10)
        try:
            thread.start()
            wait_until(lambda: not thread.is_alive(), 90, "the scan published")
            assert not failed, failed
            (record,) = wait_scans_done(writer, 1)
        finally:
            thread.join(60)
            writer.stop(wait=True, timeout=60)
        return published[0], record, url

    yield run


def _blissdata_references(url: str, key: str, count: int) -> list[tuple[str, Any, int]]:
    """Where blissdata's own reader (``LimaStream.get_references``) puts each frame."""
    from blissdata.redis_engine.store import DataStore

    stream = DataStore(url).load_scan(key).streams[LIMA]
    return [(ref.file_path, ref.data_path, ref.index)
            for ref in stream.get_references(slice(0, count))]


def _lima_dataset(h5: h5py.File) -> h5py.Dataset:
    (entry,) = h5.values()
    return entry["instrument/lima_simulator/data"]


@pytest.mark.parametrize("source, naming", CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_lima_frames_of_every_naming_are_referenced_bit_exact(publishing, tmp_path, source,
                                                              naming):
    naming = NAMINGS[naming]
    root = str(tmp_path / "data")
    plan = _plan(root, naming)
    spec: LimaSpec = plan.limas[0]
    held = _HeldScan(plan)
    save = SaveOptions.from_mapping(dict(naming.save, allowed_roots=[root],
                                         lima_refresh_period=0.1))
    scan, record, url = publishing(source, plan, save)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    assert record.writer.end_reason == "SUCCESS"
    assert held.seen_during_scan
    frames = np.concatenate(held.frames)
    assert len(frames) == NPOINTS
    references = [spec.image_reference(i) for i in range(NPOINTS)]
    if source == "blissdata":  # saved where blissdata's reader looks for them
        assert _blissdata_references(url, scan.key, NPOINTS) == references
    files = sorted({ref[0] for ref in references})
    assert set(scan.lima_files) == set(files)
    assert all(os.path.exists(name) for name in files)
    with h5py.File(scan.filename, "r") as h5:
        dataset = _lima_dataset(h5)
        assert dataset.shape == frames.shape and dataset.dtype == frames.dtype
        np.testing.assert_array_equal(dataset[()], frames)
        here = os.path.dirname(scan.filename)
        if naming.storage == "virtual":
            assert dataset.is_virtual
            # (HDF5 reads "%%" in a source name as one "%")
            sources = {os.path.normpath(os.path.join(here, vs.file_name.replace("%%", "%")))
                       for vs in dataset.virtual_sources()}
            assert sources == set(files)
        elif naming.storage == "external":
            assert {os.path.normpath(os.path.join(here, _text(name)))
                    for name, _, _ in dataset.external or []} == set(files)
        else:
            assert not dataset.is_virtual and not dataset.external
    assert _shown(scan.filename) == _digests(frames)  # another process reads them
    assert nxcheck_errors(scan.filename, ignore_entry_names=True) == []


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
