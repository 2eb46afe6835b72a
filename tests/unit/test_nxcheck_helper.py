"""The nxcheck test helper: parses the validator's output and counts its errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.nxcheck import NxcheckError, nxcheck_errors, nxcheck_report


def _write_minimal_nexus(path, entry_name):
    with h5py.File(path, "w") as root:
        root.attrs["NX_class"] = "NXroot"
        entry = root.create_group(entry_name)
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "counts"
        data["counts"] = np.arange(5.0)
    return str(path)


def test_valid_minimal_file_has_no_errors(tmp_path):
    path = _write_minimal_nexus(tmp_path / "valid.h5", "entry")
    assert nxcheck_errors(path) == []
    assert "Total number of errors: 0" in nxcheck_report(path)


def test_bliss_entry_name_is_one_error_unless_ignored(tmp_path):
    path = _write_minimal_nexus(tmp_path / "bliss.h5", "1.1")
    assert nxcheck_errors(path) == ['"1.1" is an invalid name']
    assert nxcheck_errors(path, ignore_entry_names=True) == []
    report = nxcheck_report(path)
    assert "\x1b" not in report
    assert "NXentry: /1.1" in report


def test_unreadable_file_fails_with_the_output(tmp_path):
    path = tmp_path / "not_hdf5.h5"
    path.write_text("not an HDF5 file\n")
    with pytest.raises(NxcheckError, match="Total number of errors"):
        nxcheck_errors(str(path))
