"""Lima frames copied into the scan file (``copy_non_external``) or linked as external
storage (``enable_external_nonhdf5``) are resumable: a writer stopped mid-scan and a new
one started leave every frame exactly once, bit-exact against the simulator's truth.
The simulator (the Lima detector) is another process, as Lima is: HDF5 refuses to
open a file for writing in a process that has it open for reading."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.io import SaveOptions
from nexus_writer_service.simulation import read_truth
from nexus_writer_service.simulation.info import scan_filename
from nexus_writer_service.subscribers import SubscriberState
from tests.nxcheck import nxcheck_errors
from tests.writer_support import frame_checksums, session_writer, text, wait_scans_done, wait_until

LIMA = "lima_simulator:image"
DATA = "/1.1/instrument/lima_simulator/data"
NPOINTS = 40
SHAPE = (64, 80)


_SIMULATE = """
import sys
from nexus_writer_service.simulation import SimulationOptions, simulate
session, redis_url, root, truth, lima_format, npoints = sys.argv[1:]
simulate(SimulationOptions(session=session, redis_url=redis_url, root=root, truth=truth,
                           scans=("lima",), npoints=int(npoints), block_size=4,
                           count_time=0.1, lima_format=lima_format))
"""


CASES = [
    ("edf", {"copy_non_external": True}, "copy"),
    ("hdf5", {"disable_external_hdf5": True, "copy_non_external": True}, "copy"),
    ("edf", {"enable_external_nonhdf5": True}, "external"),
]


@pytest.mark.parametrize("lima_format, values, storage", CASES,
                         ids=[f"{f}-{'+'.join(v)}" for f, v, _ in CASES])
def test_lima_frames_are_complete_once_and_bit_exact_after_a_resume(
        redis_url: str, tmp_path: Any, processes: list[Any], lima_format: str,
        values: dict[str, Any], storage: str) -> None:
    session = f"limaresume{lima_format}"
    root = str(tmp_path / "data")
    truth = str(tmp_path / "truth.h5")
    options = SaveOptions(allowed_roots=(root,), lima_refresh_period=0.1,
                          flush_period=0.05, **values)
    filename = scan_filename(root, session, 1)
    with session_writer(redis_url, session, options) as writer:
        publisher = subprocess.Popen([sys.executable, "-c", _SIMULATE, session, redis_url,
                                      root, truth, lima_format, str(NPOINTS)])
        processes.append(publisher)
        wait_until(lambda: bool(writer.scans())
                   and writer.scans()[0].writer.frames.get(LIMA, 0) >= 8,
                   20, "first frames saved")
    assert publisher.poll() is None, "the scan ended before the writer was stopped"
    assert writer.scans()[0].writer.filename == filename
    with h5py.File(filename, "r", locking=False) as h5:
        assert text(h5["/1.1/writer/status"][()]) == "RUNNING"
        before = frame_checksums(h5[DATA][()])
    assert 0 < len(before) < NPOINTS, len(before)
    with session_writer(redis_url, session, options) as writer:
        wait_until(lambda: publisher.poll() is not None, 30, "simulated scan published")
        assert publisher.returncode == 0
        (record,) = wait_scans_done(writer, 1)
    assert record.state is SubscriberState.OFF, record.as_dict()
    assert record.writer.frames == {LIMA: NPOINTS}
    (scan,) = read_truth(truth).values()
    lima = scan.limas[LIMA]
    assert lima.info["file_format"] == lima_format and len(lima.checksums) == NPOINTS
    with h5py.File(filename, "r", locking=False) as h5:
        entry = h5["1.1"]
        assert text(entry["writer/status"][()]) == "SUCCEEDED"
        assert "resumed" in text(entry["writer/resumed"][()])
        dataset = entry[DATA]
        assert "not_linked" not in dataset.attrs
        assert dataset.shape == (NPOINTS,) + SHAPE and not dataset.is_virtual
        external = dataset.external or []
        if storage == "external":
            assert len(external) == NPOINTS
            assert {text(name) for name, _, _ in external} == {
                ref[0] for ref in lima.references}
        else:
            assert not external and dataset.chunks == (1,) + SHAPE
        frames = dataset[()]
        np.testing.assert_array_equal(entry["measurement/lima_simulator"][()], frames)
    np.testing.assert_array_equal(before, lima.checksums[:len(before)])
    np.testing.assert_array_equal(frame_checksums(frames), lima.checksums)
    assert nxcheck_errors(filename, ignore_entry_names=True) == []
