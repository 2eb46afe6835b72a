"""The keys BLISS puts in a scan's scan_info, where BLISS users find them in the file.

Every scan here is published through our own Redis streams with the scan_info of the
reference ascan of BLISS 2.4 (tests/data/bliss_scan_info.json: a diode, an MCA, ESRF
data policy), its paths moved under the test's directory; the file is checked with
h5py, nxcheck and silx.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
from silx.io import nxdata
from silx.io.dictdump import nxtodict

from nexus_writer_service.data import Publisher, ScanPublisher, connect, get_scan_node
from nexus_writer_service.subscribers import ScanRecord, SubscriberState
from tests.blissdata_support import ASCAN_CHANNELS, REFERENCE_SCAN_INFO, ascan_data
from tests.integration.faults.conftest import assert_fault, fast_options
from tests.nxcheck import nxcheck_errors
from tests.silx_views import silx_view
from tests.writer_support import session_writer, wait_scans_done

NPOINTS = 10
#: The keys BLISS adds to the scan_info when the scan ends.
AT_END = ("end_time", "end_reason", "comments")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def reference_info(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reference scan_info with its files under ``root``: (what BLISS publishes
    when the scan starts, what it adds when the scan ends)."""
    info = json.loads(REFERENCE_SCAN_INFO.read_text())
    original = str(Path(info["filename"]).parents[2])
    moved = json.loads(json.dumps(info).replace(original, str(root)))
    moved["npoints"] = NPOINTS
    moved["acquisition_chain"]["axis"]["images"] = []
    moved["channels"].pop("pilatus:image")
    del moved["devices"]["140005:pilatus"]
    moved["devices"]["140002:timer"]["triggered_devices"].remove("140005:pilatus")
    positioners = moved["positioners"]
    ending: dict[str, Any] = {key: moved.pop(key) for key in AT_END}
    ending["positioners"] = {key: positioners.pop(key)
                             for key in ("positioners_end", "positioners_dial_end")}
    return moved, ending


def publish_ascan(publisher: Publisher, info: Mapping[str, Any],
                  ending: Mapping[str, Any]) -> ScanPublisher:
    """The reference ascan (without its lima detector), published as BLISS does: the
    scan_info completed at its end."""
    scan = publisher.create_scan(copy.deepcopy(dict(info)), name="ascan",
                                 number=int(info["scan_nb"]))
    units = {name: channel.get("unit") for name, channel in info["channels"].items()}
    for name, (dtype, shape) in ASCAN_CHANNELS.items():
        scan.add_channel(name, dtype, shape=shape, subscan="axis", unit=units.get(name))
    scan.prepare()
    scan.send(ascan_data(NPOINTS))
    scan.update_info(dict(ending))
    scan.end()
    return scan


def write_ascan(redis_url: str, root: Path, info: Mapping[str, Any],
                ending: Mapping[str, Any], session: str = "demo"
                ) -> tuple[ScanRecord, str]:
    """The scan written by a session writer; its record and Redis key."""
    with session_writer(redis_url, session, fast_options(allowed_roots=(str(root),)),
                        poll_interval=0.05) as writer:
        with Publisher(session, redis_url) as publisher:
            scan = publish_ascan(publisher, info, ending)
            (record,) = wait_scans_done(writer, 1)
        assert writer.state is SubscriberState.ON, writer.state_reason
    return record, scan.key


def test_scan_for_another_writer_is_listed_as_skipped_and_acknowledged(
        redis_url: str, tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    info["data_writer"] = "hdf5"
    record, key = write_ascan(redis_url, tmp_path, info, ending)
    assert record.state is SubscriberState.OFF, record.as_dict()
    reason = record.writer.state_reason
    assert "skipped" in reason and "data_writer='hdf5'" in reason, reason
    assert record.as_dict()["filename"] == ""
    assert not Path(info["filename"]).exists()
    assert not any(tmp_path.rglob("*.h5"))
    client = connect(redis_url)
    try:
        node = get_scan_node(key, client=client)
        assert node.acknowledged("nexus_writer") == node.current_position()
    finally:
        client.close()


def test_scan_for_nexus_is_written(redis_url: str, tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    assert "skipped" not in record.writer.state_reason
    with h5py.File(info["filename"], "r") as h5:
        np.testing.assert_array_equal(
            h5["3.1/measurement/diode"][()],
            ascan_data(NPOINTS)["simulation_diode_sampling_controller:diode"])
    assert nxcheck_errors(info["filename"], ignore_entry_names=True) == []


def test_malformed_data_writer_faults_the_scan_naming_the_key(redis_url: str,
                                                              tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    info["data_writer"] = ["nexus"]
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert_fault(record, "'data_writer'", "malformed scan_info")


def test_comments_are_nxnotes_with_date_and_message(redis_url: str, tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    ending["comments"] = ending["comments"] + [
        {"date": "2026-12-07T09:07:42+00:00", "message": "beam lost at the end"}]
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    with h5py.File(info["filename"], "r") as h5:
        notes = h5["3.1/notes"]
        assert _text(notes.attrs["NX_class"]) == "NXnote"
        assert sorted(notes) == ["note_01", "note_02"]
        for note, comment in zip((notes["note_01"], notes["note_02"]), ending["comments"]):
            assert _text(note.attrs["NX_class"]) == "NXnote"
            assert _text(note["data"][()]) == comment["message"]
            assert _text(note["date"][()]) == comment["date"]
            assert _text(note["type"][()]) == "text/plain"
    assert nxcheck_errors(info["filename"], ignore_entry_names=True) == []


def test_malformed_comment_faults_the_scan_naming_it(redis_url: str, tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    ending["comments"] = [{"date": "2026-12-07T09:07:42+00:00", "text": "no message"}]
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert_fault(record, "'comments[0]'", "malformed scan_info")


#: Scan metadata as beamlines fill BLISS's scan_meta_categories, with the conventions
#: of silx's dicttonx: "@attr", "name@attr", ">link".
INSTRUMENT = {
    "@NX_class": "NXinstrument",
    "primary_slit": {"@NX_class": "NXaperture", "x_gap": 0.25, "x_gap@units": "mm",
                     "y_gap": 0.5, "y_gap@units": "mm"},
    "monochromator": {"@NX_class": "NXmonochromator", "energy": 7.112,
                      "energy@units": "keV"},
    # metadata of a detector: merged into the writer's NXdetector of its channels
    "mca1_det0": {"preset_mode": "REALTIME"},
}
TECHNIQUE = {
    "@NX_class": "NXcollection",
    "@description": "Fe K-edge absorption",
    "edge": "Fe K",
    "detectors": ["diode", "mca1"],
    "xas": {"@NX_class": "NXcollection", "e0": 7.112, "e0@units": "keV"},
    ">energy": "../instrument/monochromator/energy",
    ">slit": "/3.1/instrument/primary_slit",
}


def test_metadata_categories_are_trees_with_dicttonx_conventions(redis_url: str,
                                                                 tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    info["instrument"] = copy.deepcopy(INSTRUMENT)
    info["technique"] = copy.deepcopy(TECHNIQUE)
    info["scan_meta_categories"].append("proposal_notes")
    info["proposal_notes"] = "collected for the test"
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    with h5py.File(info["filename"], "r") as h5:
        entry = h5["3.1"]
        instrument = entry["instrument"]
        assert _text(instrument.attrs["NX_class"]) == "NXinstrument"
        # nexuswriter.instrument_info
        assert _text(instrument["name"][()]) == "ESRF-ID00"
        assert _text(instrument["name"].attrs["short_name"]) == "id00"
        slit = instrument["primary_slit"]
        assert _text(slit.attrs["NX_class"]) == "NXaperture"
        assert slit["x_gap"][()] == 0.25 and _text(slit["x_gap"].attrs["units"]) == "mm"
        assert instrument["monochromator/energy"][()] == 7.112
        # the writer's own groups keep their class, and get the metadata
        mca = instrument["mca1_det0"]
        assert _text(mca.attrs["NX_class"]) == "NXdetector"
        assert _text(mca["preset_mode"][()]) == "REALTIME"
        assert mca["data"].shape == (NPOINTS, 128)
        technique = entry["technique"]
        assert _text(technique.attrs["NX_class"]) == "NXcollection"
        assert _text(technique.attrs["description"]) == "Fe K-edge absorption"
        assert _text(technique["edge"][()]) == "Fe K"
        assert [_text(v) for v in technique["detectors"][()]] == ["diode", "mca1"]
        assert technique["xas/e0"][()] == 7.112
        assert _text(technique["xas/e0"].attrs["units"]) == "keV"
        energy = technique.get("energy", getlink=True)
        assert isinstance(energy, h5py.SoftLink)
        assert energy.path == "/3.1/instrument/monochromator/energy"
        assert technique["energy"][()] == 7.112
        assert technique["slit/y_gap"][()] == 0.5
        assert _text(entry["proposal_notes"][()]) == "collected for the test"
    # silx reads the tree back as it was published
    tree = nxtodict(info["filename"], path="/3.1/technique", dereference_links=False)
    assert tree["@description"] == "Fe K-edge absorption"
    assert tree["xas"]["e0@units"] == "keV"
    assert tree[">energy"] == "/3.1/instrument/monochromator/energy"
    assert nxcheck_errors(info["filename"], ignore_entry_names=True) == []


def test_malformed_metadata_faults_the_scan_naming_where(
        redis_url: str, tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    info["technique"] = {"xas": {"e0": 7.112, "e0@units": {"unit": "keV"}}}
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert_fault(record, "'technique/xas/e0@units'", "malformed scan_info")
    assert not Path(info["filename"]).exists()


def test_malformed_categories_fault_the_scan_naming_the_key(
        redis_url: str, tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    info["scan_meta_categories"] = "instrument"
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert_fault(record, "'scan_meta_categories'", "malformed scan_info")


def test_plotselect_is_the_default_nxdata_group(redis_url: str, tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    diode = "simulation_diode_sampling_controller:diode"
    assert info["display_extra"]["plotselect"] == [diode]
    info["display_extra"]["plotselect"] += ["mca1:icr_det0", "mca1:spectrum_det0",
                                            "not:declared"]
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    data = ascan_data(NPOINTS)
    with h5py.File(info["filename"], "r") as h5:
        entry = h5["3.1"]
        assert _text(entry.attrs["default"]) == "plotselect"
        plot = entry["plotselect"]
        assert _text(plot.attrs["NX_class"]) == "NXdata"
        # the 1D spectrum and the undeclared channel cannot share the curve
        assert _text(plot.attrs["signal"]) == "diode"
        assert [_text(v) for v in plot.attrs["auxiliary_signals"]] == ["icr_det0"]
        nxd = nxdata.NXdata(plot)
        assert nxd.is_valid and nxd.is_curve
        assert nxd.axes_dataset_names == ["samy"]
        np.testing.assert_array_equal(nxd.signal[()], data[diode])
        np.testing.assert_array_equal(nxd.axes[0][()], data["axis:samy"])
        assert "plot0D" in entry and "plot1D" in entry
        assert silx_view(plot) == "curve"
    assert nxcheck_errors(info["filename"], ignore_entry_names=True) == []


def test_malformed_plotselect_faults_the_scan_naming_the_key(
        redis_url: str, tmp_path: Path) -> None:
    info, ending = reference_info(tmp_path)
    info["display_extra"]["plotselect"] = "diode"
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert_fault(record, "'display_extra/plotselect'", "malformed scan_info")
