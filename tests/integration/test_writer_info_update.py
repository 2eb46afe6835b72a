"""scan_info completed during the scan (BLISS adds ``devices`` and ``channels`` at
PREPARED, ``positioners_end``, ``end_time``, ``end_reason`` and ``comments`` at its end):
the file shows the final scan_info, with the publisher's end time and end positions."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from nexus_writer_service.data import EventType, Publisher, get_scan_node, get_session_node
from nexus_writer_service.errors import ScanStateError
from nexus_writer_service.subscribers import SubscriberState
from tests.integration.faults.conftest import (
    assert_fault,
    fast_options,
    loopscan_info,
    loopscan_points,
)
from tests.nxcheck import nxcheck_errors
from nexus_writer_service.simulation import SimulationOptions, simulate
from tests.writer_support import session_writer, wait_scans_done, wait_until

_END = "2026-12-07T09:07:41.252407+00:00"


def _info(filename: Path) -> dict:
    info = loopscan_info(filename, 10)
    info["positioners"] = {
        "positioners_start": {"samy": 1.5, "samz": -2.0},
        "positioners_dial_start": {"samy": 1.5, "samz": -2.0},
        "positioners_units": {"samy": "mm", "samz": "mm"}}
    return info


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_final_scan_info_reaches_the_file(redis_url: str, tmp_path: Path) -> None:
    filename = tmp_path / "updated.h5"
    ending = {
        "positioners": {"positioners_end": {"samy": 2.5, "samz": -1.0},
                        "positioners_dial_end": {"samy": 2.5, "samz": -1.0}},
        "end_time": _END, "end_reason": "SUCCESS",
        "comments": [{"date": _END, "message": "sample looked fine"}],
        "not_known_to_the_writer": {"kept": True},
    }
    with session_writer(redis_url, "updates", fast_options()) as writer:
        with Publisher("updates", redis_url) as publisher:
            scan = publisher.create_scan(_info(filename), name="loopscan", number=1)
            scan.add_channel("timer:elapsed_time", "float64", subscan="timer", unit="s")
            scan.add_channel("diode:diode1", "float64", subscan="timer")
            scan.prepare()
            scan.update_info({"devices": {"diode": {"channels": ["diode:diode1"]}}})
            scan.send(loopscan_points(1, 0, 10))
            scan.update_info(ending)
            scan.end()
            with pytest.raises(ScanStateError, match="info update after the end"):
                scan.update_info({"comments": []})
        (record,) = wait_scans_done(writer, 1)
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r") as h5:
        entry = h5["1.1"]
        assert _text(entry["end_time"][()]) == _END
        positioners = entry["instrument"]
        assert positioners["positioners_end/samy"][()] == 2.5
        assert positioners["positioners_dial_end/samz"][()] == -1.0
        assert positioners["positioners_start/samy"][()] == 1.5
        stored = json.loads(_text(entry["writer/scan_info"][()]))
    assert stored["comments"] == ending["comments"]
    assert stored["positioners"]["positioners_start"] == {"samy": 1.5, "samz": -2.0}
    assert stored["positioners"]["positioners_end"] == {"samy": 2.5, "samz": -1.0}
    assert stored["devices"] == {"diode": {"channels": ["diode:diode1"]}}
    assert stored["not_known_to_the_writer"] == {"kept": True}
    assert nxcheck_errors(str(filename), ignore_entry_names=True) == []


def test_malformed_known_key_faults_the_scan_naming_it(redis_url: str,
                                                       tmp_path: Path) -> None:
    filename = tmp_path / "malformed.h5"
    with session_writer(redis_url, "badupdate", fast_options()) as writer:
        with Publisher("badupdate", redis_url) as publisher:
            scan = publisher.create_scan(_info(filename), name="loopscan", number=1)
            scan.add_channel("timer:elapsed_time", "float64", subscan="timer", unit="s")
            scan.prepare()
            scan.send({"timer:elapsed_time": [0.0, 0.1]})
            scan.update_info({"end_time": 1765098461})
            scan.end()
        (record,) = wait_scans_done(writer, 1)
        assert writer.state is SubscriberState.ON
    assert_fault(record, "'end_time'", "is a int, not a str", "malformed scan_info")


def test_static_positioners_get_the_end_positions_published_at_the_end(
        redis_url: str, tmp_path: Path) -> None:
    """With multivalue_positioners a motor that is not scanned is ``[start, end]``; the
    end arrives only with the update at the end of the scan, after the field was
    written with the start position alone."""
    filename = tmp_path / "multivalue.h5"
    options = fast_options(multivalue_positioners=True)
    ending = {"positioners": {"positioners_end": {"samy": 2.5, "samz": -1.0},
                              "positioners_dial_end": {"samy": 2.5, "samz": -1.0}},
              "end_time": _END, "end_reason": "SUCCESS"}
    with session_writer(redis_url, "multivalue", options) as writer:
        with Publisher("multivalue", redis_url) as publisher:
            scan = publisher.create_scan(_info(filename), name="loopscan", number=1)
            scan.add_channel("timer:elapsed_time", "float64", subscan="timer", unit="s")
            scan.prepare()
            scan.send({"timer:elapsed_time": [0.0, 0.1]})
            # the file is made, with the start positions alone, before the end comes
            wait_until(lambda: [r.writer.points for r in writer.scans()]
                       == [{"timer:elapsed_time": 2}], what="the points in the writer")
            scan.update_info(ending)
            scan.end()
        (record,) = wait_scans_done(writer, 1)
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r") as h5:
        instrument = h5["1.1/instrument"]
        assert instrument["positioners/samz"][()].tolist() == [-2.0, -1.0]
        assert instrument["positioners/samy"][()].tolist() == [1.5, 2.5]
        assert _text(instrument["positioners/samy"].attrs["units"]) == "mm"
        assert instrument["positioners_end/samz"][()] == -1.0
        assert _text(h5["1.1/end_time"][()]) == _END
    assert nxcheck_errors(str(filename), ignore_entry_names=True) == []


def test_simulated_scans_publish_the_end_keys_at_the_end_as_bliss_does(
        redis_url: str, redis_client: object, tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    options = fast_options(multivalue_positioners=True, allowed_roots=[root])
    # a reader that never acknowledges keeps every event of the scan in Redis
    get_session_node("simend", client=redis_client).register_reader("test")
    with session_writer(redis_url, "simend", options) as writer:
        (published,) = simulate(SimulationOptions(
            session="simend", redis_url=redis_url, root=root, scans=("a2scan",),
            npoints=5))
        (record,) = wait_scans_done(writer, 1)
    assert record.state is SubscriberState.OFF, record.as_dict()
    node = get_scan_node(published.key, client=redis_client)
    events = [(event, event_data) for event, _, event_data in node.walk_events(timeout=10)]
    updates = [data.info for event, data in events if event is EventType.INFO_UPDATE]
    kinds = [event for event, _ in events]
    # channels when prepared, the end keys just before the end
    assert set(updates[0]) == {"channels"}
    assert kinds.index(EventType.INFO_UPDATE) < kinds.index(EventType.PREPARED_SCAN)
    assert set(updates[-1]) == {"positioners", "end_time", "end_reason"}
    assert kinds[-2:] == [EventType.INFO_UPDATE, EventType.END_SCAN]
    final = node.info
    end = final["positioners"]["positioners_end"]
    start = final["positioners"]["positioners_start"]
    with h5py.File(published.filename, "r") as h5:
        entry = h5[f"{published.number}.1"]
        assert _text(entry["end_time"][()]) == final["end_time"]
        stored = json.loads(_text(entry["writer/scan_info"][()]))
        assert stored["end_reason"] == "SUCCESS"
        positioners = entry["instrument/positioners"]
        for motor in ("samx", "srot"):  # not scanned: [start, end]
            assert positioners[motor][()].tolist() == [start[motor], end[motor]]
        for motor, value in end.items():
            assert entry[f"instrument/positioners_end/{motor}"][()] == value
    assert nxcheck_errors(published.filename, ignore_entry_names=True) == []


def test_a_channel_declared_where_metadata_was_written_takes_its_place_and_keeps_it(
        redis_url: str, tmp_path: Path) -> None:
    """Metadata written at the path of a channel declared later is put beside the
    channel's data (``<name>_metadata``); the scan goes on, nothing is lost."""
    filename = tmp_path / "late.h5"
    info = _info(filename)
    info["scan_meta_categories"] = ["instrument"]
    info["instrument"] = {"late": {"data": "what the late counter counts", "gain": 3},
                          "late2": "a text about late2"}
    with session_writer(redis_url, "late", fast_options()) as writer:
        with Publisher("late", redis_url) as publisher:
            scan = publisher.create_scan(info, name="loopscan", number=1)
            scan.add_channel("timer:elapsed_time", "float64", subscan="timer", unit="s")
            scan.prepare()
            scan.send({"timer:elapsed_time": [0.0, 0.1]})
            wait_until(lambda: [r.writer.points for r in writer.scans()]
                       == [{"timer:elapsed_time": 2}], what="the points in the writer")
            scan.add_channel("ctrl:late", "float64", subscan="timer")
            scan.add_channel("ctrl:late2", "float64", subscan="timer")
            scan.send({"ctrl:late": [1.0, 2.0], "ctrl:late2": [3.0, 4.0]})
            scan.end()
        (record,) = wait_scans_done(writer, 1)
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r") as h5:
        instrument = h5["1.1/instrument"]
        late = instrument["late"]
        assert _text(late.attrs["NX_class"]) == "NXdetector"
        assert late["data"][()].tolist() == [1.0, 2.0]
        assert _text(late["data_metadata"][()]) == "what the late counter counts"
        assert late["gain"][()] == 3
        assert instrument["late2/data"][()].tolist() == [3.0, 4.0]
        assert _text(instrument["late2_metadata"][()]) == "a text about late2"
    assert nxcheck_errors(str(filename), ignore_entry_names=True) == []


def test_units_published_when_the_scan_is_prepared_reach_the_channels(
        redis_url: str, tmp_path: Path) -> None:
    """BLISS completes ``channels`` (with the units) at PREPARED, after the channels
    were declared, and a channel's points may already be in the file then."""
    filename = tmp_path / "units.h5"
    with session_writer(redis_url, "units", fast_options()) as writer:
        with Publisher("units", redis_url) as publisher:
            scan = publisher.create_scan(_info(filename), name="loopscan", number=1)
            scan.add_channel("timer:elapsed_time", "float64", subscan="timer")
            scan.add_channel("diode:diode1", "float64", subscan="timer")
            scan.send({"timer:elapsed_time": [0.0, 0.1], "diode:diode1": [5.0, 6.0]})
            wait_until(lambda: [r.writer.points for r in writer.scans()]
                       == [{"timer:elapsed_time": 2, "diode:diode1": 2}],
                       what="the points in the writer")
            scan.update_info({"channels": {"timer:elapsed_time": {"unit": "s"},
                                           "diode:diode1": {"unit": "counts"}}})
            scan.prepare()
            scan.end()
        (record,) = wait_scans_done(writer, 1)
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r") as h5:
        assert _text(h5["1.1/instrument/diode1/data"].attrs["units"]) == "counts"
        assert _text(h5["1.1/measurement/diode1"].attrs["units"]) == "counts"
        assert _text(h5["1.1/instrument/elapsed_time/value"].attrs["units"]) == "s"
        assert h5["1.1/instrument/diode1/data"][()].tolist() == [5.0, 6.0]
    assert nxcheck_errors(str(filename), ignore_entry_names=True) == []
