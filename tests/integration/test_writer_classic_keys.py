"""Keys of the classic writer that BLISS still publishes, shaped as in the reference
scan_info of BLISS 2.4: ``nexuswriter.devices`` (device naming and types),
``writer_options.separate_scan_files`` with ``images_path`` (one file per scan), and
``nexuswriter.masterfiles``. Files checked with h5py, nxcheck and silx."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from silx.io import nxdata

from nexus_writer_service.subscribers import SubscriberState
from tests.blissdata_support import ascan_data
from tests.integration.faults.conftest import assert_fault
from tests.integration.test_writer_bliss_keys import NPOINTS, reference_info, write_ascan
from tests.nxcheck import nxcheck_errors
from tests.silx_views import silx_view

DIODE = "simulation_diode_sampling_controller:diode"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_devices_name_and_type_the_detectors_as_bliss_describes_them(
        redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    info, ending = reference_info(tmp_path)
    devices = info["nexuswriter"]["devices"]
    assert devices["mca1:spectrum_det0"]["device_type"] == "mca"  # as BLISS publishes it
    devices[DIODE] = {"device_type": "samplingcounter", "device_name": "diode_ctrl",
                      "data_name": "counts",
                      "device_info": {"type": "samplingcounter", "mode": "MEAN"},
                      "a_key_of_a_later_bliss": 1}
    devices["timer:epoch"] = {"device_type": "positioner"}
    # BLISS describes every channel of the MCA: its detector gets the info once
    devices["mca1:icr_det0"] = devices["mca1:spectrum_det0"]
    caplog.set_level(logging.DEBUG, logger="nexus_writer_service")
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    data = ascan_data(NPOINTS)
    with h5py.File(info["filename"], "r") as h5:
        instrument = h5["3.1/instrument"]
        # the device_info of the MCA is written into its NXdetector, as classic does
        mca = instrument["mca1_det0"]
        assert _text(mca.attrs["NX_class"]) == "NXdetector"
        assert _text(mca["type"][()]) == "mca"
        assert "type_metadata" not in mca
        np.testing.assert_array_equal(mca["data"][()], data["mca1:spectrum_det0"])
        # a device BLISS names itself: its group, its field, its info
        diode = instrument["diode_ctrl"]
        assert _text(diode.attrs["NX_class"]) == "NXdetector"
        np.testing.assert_array_equal(diode["counts"][()], data[DIODE])
        assert _text(diode["mode"][()]) == "MEAN"
        assert _text(diode["type"][()]) == "samplingcounter"
        assert "diode" not in instrument
        np.testing.assert_array_equal(h5["3.1/measurement/diode"][()], data[DIODE])
        # a positioner by its type
        epoch = instrument["epoch"]
        assert _text(epoch.attrs["NX_class"]) == "NXpositioner"
        np.testing.assert_array_equal(epoch["value"][()], data["timer:epoch"])
        plot = h5["3.1/plotselect"]
        assert silx_view(plot) == "curve"
        np.testing.assert_array_equal(nxdata.NXdata(plot).signal[()], data[DIODE])
    assert "a_key_of_a_later_bliss not used by the writer" in caplog.text
    # BLISS's keys the writer does not read stay in writer/scan_info, said at debug level
    unused = [r.getMessage() for r in caplog.records
              if "scan_info keys not used by the writer" in r.getMessage()]
    assert len(unused) == 1 and "publisher_version" in unused[0], unused
    assert "filename" not in unused[0].split(": ", 2)[-1].split(", ")
    assert nxcheck_errors(info["filename"], ignore_entry_names=True) == []


@pytest.mark.parametrize("key, value, named", [
    ("devices", ["mca1:spectrum_det0"], "'nexuswriter/devices'"),
    ("mca1:spectrum_det0", "mca", "'nexuswriter/devices/mca1:spectrum_det0'"),
    ("device_info", "mca", "'nexuswriter/devices/mca1:spectrum_det0/device_info'"),
    ("device_type", 3, "'nexuswriter/devices/mca1:spectrum_det0/device_type'"),
])
def test_malformed_devices_fault_the_scan_naming_the_key(
        redis_url: str, tmp_path: Path, key: str, value: Any, named: str) -> None:
    info, ending = reference_info(tmp_path)
    section = info["nexuswriter"]
    if key == "devices":
        section["devices"] = value
    elif key in section["devices"]:
        section["devices"][key] = value
    else:
        section["devices"]["mca1:spectrum_det0"][key] = value
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert_fault(record, named, "malformed scan_info")
    assert not Path(info["filename"]).exists()


def test_separate_scan_files_put_each_scan_in_its_own_file_linked_from_the_dataset(
        redis_url: str, tmp_path: Path) -> None:
    """As the classic writer: ``bliss_master.h5`` in the scan's directory, the part of
    ``images_path`` before its template; the dataset file links ``3.1`` to it, the
    collection and proposal files ``<dataset>_3.1``."""
    info, ending = reference_info(tmp_path)
    info["writer_options"]["separate_scan_files"] = True
    dataset = Path(info["filename"])
    assert info["images_path"] == str(dataset.parent / "scan0003" / "{img_acq_device}_")
    scan_file = dataset.parent / "scan0003" / "bliss_master.h5"
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    assert record.writer.filename == str(scan_file)
    assert record.writer.urls == [f"{scan_file}::/3.1"]
    data = ascan_data(NPOINTS)
    with h5py.File(scan_file, "r") as h5:
        np.testing.assert_array_equal(h5["3.1/measurement/diode"][()], data[DIODE])
    with h5py.File(dataset, "r") as h5:
        assert list(h5) == ["3.1"]
        link = h5.get("3.1", getlink=True)
        assert (link.filename, link.path) == ("scan0003/bliss_master.h5", "/3.1")
        np.testing.assert_array_equal(h5["3.1/measurement/diode"][()], data[DIODE])
        assert silx_view(h5["3.1/plotselect"]) == "curve"
    masters = info["nexuswriter"]["masterfiles"]
    for level in ("dataset_collection", "proposal"):
        with h5py.File(masters[level], "r") as h5:
            assert list(h5) == ["sample1_0001_3.1"]
            target = h5.get("sample1_0001_3.1", getlink=True)
            assert Path(masters[level]).parent.joinpath(target.filename).resolve() \
                == scan_file.resolve()
            np.testing.assert_array_equal(h5["sample1_0001_3.1/measurement/diode"][()],
                                          data[DIODE])
    assert nxcheck_errors(str(scan_file), ignore_entry_names=True) == []
    assert nxcheck_errors(str(dataset), ignore_entry_names=True) == []


def test_without_separate_scan_files_the_scan_is_in_the_dataset_file(
        redis_url: str, tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    assert info["writer_options"]["separate_scan_files"] is None  # as BLISS publishes it
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    assert record.writer.filename == info["filename"]
    assert not any(Path(info["filename"]).parent.rglob("bliss_master.h5"))
    with h5py.File(info["nexuswriter"]["masterfiles"]["proposal"], "r") as h5:
        assert list(h5) == ["sample1_0001_3.1"]


@pytest.mark.parametrize("key, value, named", [
    ("images_path", 3, "'images_path'"),
    ("writer_options", "separate", "'writer_options'"),
    ("separate_scan_files", "yes", "'writer_options/separate_scan_files'"),
])
def test_malformed_separate_scan_file_keys_fault_the_scan_naming_the_key(
        redis_url: str, tmp_path: Path, key: str, value: Any, named: str) -> None:
    info, ending = reference_info(tmp_path)
    info["writer_options"]["separate_scan_files"] = True
    if key == "separate_scan_files":
        info["writer_options"][key] = value
    else:
        info[key] = value
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert_fault(record, named, "malformed scan_info")
    assert not any(tmp_path.rglob("*.h5"))
