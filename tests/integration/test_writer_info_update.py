"""scan_info completed during the scan (BLISS adds ``devices`` and ``channels`` at
PREPARED, ``positioners_end``, ``end_time``, ``end_reason`` and ``comments`` at its end):
the file shows the final scan_info, with the publisher's end time and end positions."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from nexus_writer_service.data import Publisher
from nexus_writer_service.errors import ScanStateError
from nexus_writer_service.subscribers import SubscriberState
from tests.integration.faults.conftest import (
    assert_fault,
    fast_options,
    loopscan_info,
    loopscan_points,
)
from tests.nxcheck import nxcheck_errors
from tests.writer_support import session_writer, wait_scans_done

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
