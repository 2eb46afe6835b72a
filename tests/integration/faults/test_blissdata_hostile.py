"""Hostile blissdata scan documents and streams, as a broken or malicious publisher
writes them, against the real server with its modules and the real blissdata
package: only that scan goes FAULT, with a reason naming the key or the stream; the
session goes on, and another scan is written meanwhile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import redis

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
from tests.writer_support import wait_until

DIODE = "simulation_diode_sampling_controller:diode"


def _writer(url: str, root: Path) -> NexusSessionWriter:
    writer = NexusSessionWriter(BlissdataSession("demo", url),
                                options=SaveOptions(allowed_roots=(str(root),)),
                                poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    return writer


def _faulted(writer: NexusSessionWriter, key: str) -> str:
    """The reason of the FAULT of the scan ``key`` (waited for)."""
    def found() -> Any:
        return next((r for r in writer.scans() if r.key == key), None)

    wait_until(lambda: found() is not None and found().writer.done(), 30,
               f"scan {key} ended")
    record = found()
    assert record.state is SubscriberState.FAULT, record.as_dict()
    return str(record.writer.state_reason)


def _good_scan_meanwhile(url: str, writer: NexusSessionWriter, root: Path) -> None:
    """Another scan of the session, published and written while the hostile one is
    there: the session and its writer go on."""
    good = root / "good.h5"
    publish(url, reference_scan_info(str(good), npoints=5), ascan_data(5), number=2)
    wait_until(lambda: any(r.name == "2_ascan" and r.writer.done() for r in writer.scans()),
               30, "the good scan written")
    (record,) = [r for r in writer.scans() if r.name == "2_ascan"]
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    assert record.writer.end_reason == "SUCCESS"
    assert writer.state is SubscriberState.ON
    assert nxcheck_errors(str(good), ignore_entry_names=True) == []


def _set_info(**changes: Any) -> Callable[[BlissScan], None]:
    def change(scan: BlissScan) -> None:
        for key, value in changes.items():
            scan.scan.info[key] = value
    return change


#: scan_info keys of the wrong type, as the publisher puts them at PREPARED: the
#: words the reason must hold
INFO_CASES = {
    "chain-not-an-object": (_set_info(acquisition_chain="axis"), ["'acquisition_chain'",
                                                                  "'axis'"]),
    "chain-entry-not-an-object": (_set_info(acquisition_chain={"axis": [1]}),
                                  ["'acquisition_chain/axis'", "not an object"]),
    "chain-channels-not-a-list": (
        _set_info(acquisition_chain={"axis": {"scalars": "axis:samy"}}),
        ["'acquisition_chain/axis/scalars'", "list of channel names"]),
    "channels-not-an-object": (_set_info(channels=["axis:samy"]), ["'channels'"]),
    "filename-not-a-text": (_set_info(filename=5), ["'filename'", "a file name"]),
    "npoints-not-an-integer": (_set_info(npoints="ten"), ["npoints"]),
}


@pytest.mark.parametrize("case", list(INFO_CASES))
def test_scan_info_of_wrong_types_faults_only_its_scan(
        blissdata_url: str, tmp_path: Path, case: str) -> None:
    change, words = INFO_CASES[case]
    writer = _writer(blissdata_url, tmp_path)
    try:
        bad = BlissScan(blissdata_url, reference_scan_info(str(tmp_path / "bad.h5"),
                                                           npoints=5), number=1)
        change(bad)
        bad.prepare_and_start()
        bad.send(ascan_data(5))
        reason = _faulted(writer, bad.key)
        for word in words:
            assert word in reason, reason
        _good_scan_meanwhile(blissdata_url, writer, tmp_path)
        bad.end()
    finally:
        writer.stop(wait=True, timeout=60)
    assert not (tmp_path / "bad.h5").exists() or case == "npoints-not-an-integer"


def _json_set(url: str, key: str, path: str, value: Any) -> None:
    client = redis.Redis.from_url(url)
    try:
        if value is _DELETE:
            client.execute_command("JSON.DEL", key, path)
        else:
            client.execute_command("JSON.SET", key, path, json.dumps(value))
    finally:
        client.close()


_DELETE = object()
#: the scan document changed once the scan started (a path in it, its new value),
#: and the words the reason must hold
DOCUMENT_CASES = {
    "number-not-an-integer": ("$.id.number", "one", ["number"]),
    "name-not-a-text": ("$.id.name", 5, ["name"]),
    "info-not-an-object": ("$.info", [1, 2], ["info"]),
    "streams-missing": ("$.data_streams", _DELETE, ["data_streams"]),
    "stream-encoding-missing": (f'$.data_streams["{DIODE}"].encoding', None,
                                [repr(DIODE), "encoding"]),
    "stream-encoding-unknown": (f'$.data_streams["{DIODE}"].encoding.type', "bogus",
                                [repr(DIODE), "'bogus'"]),
    "stream-dtype-unknown": (f'$.data_streams["{DIODE}"].encoding.dtype_str', "nonsense",
                             [repr(DIODE), "dtype_str"]),
    "stream-dtype-not-numeric": (f'$.data_streams["{DIODE}"].encoding.dtype_str', "<U4",
                                 [repr(DIODE), "dtype_str"]),
    "stream-shape-not-sizes": (f'$.data_streams["{DIODE}"].encoding.shape', "x",
                               [repr(DIODE), "shape"]),
}


@pytest.mark.parametrize("case", list(DOCUMENT_CASES))
def test_hostile_scan_document_faults_only_its_scan(blissdata_url: str, tmp_path: Path,
                                                    case: str) -> None:
    """The document of a running scan changed behind blissdata's back (a missing
    stream list, a stream of an encoding blissdata cannot read, identity fields of the
    wrong type); a writer started then faults that scan only."""
    path, value, words = DOCUMENT_CASES[case]
    bad = BlissScan(blissdata_url, reference_scan_info(str(tmp_path / "bad.h5"), npoints=5),
                    number=1)
    bad.prepare_and_start()
    bad.send(ascan_data(3))
    _json_set(blissdata_url, bad.key, path, value)
    writer = _writer(blissdata_url, tmp_path)
    try:
        reason = _faulted(writer, bad.key)
        assert bad.key in reason, reason
        for word in words:
            assert word in reason, reason
        _good_scan_meanwhile(blissdata_url, writer, tmp_path)
    finally:
        writer.stop(wait=True, timeout=60)
    assert not (tmp_path / "bad.h5").exists()


def test_lima_template_outside_the_roots_names_path_roots_and_remedy(
        blissdata_url: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    template = "/etc/nws-cam/cam_%04d.h5"
    lima = lima_definition("cam:image", template, frames_per_file=3,
                           frames_per_acquisition=3, file_offset=2)
    info = reference_scan_info(str(root / "bad.h5"), npoints=3)
    info["acquisition_chain"]["axis"]["images"] = ["cam:image"]
    writer = _writer(blissdata_url, root)
    try:
        bad = BlissScan(blissdata_url, info, limas=[lima], number=1)
        bad.prepare_and_start()
        bad.send(ascan_data(3))
        reason = _faulted(writer, bad.key)
        for word in ("'cam:image'", "'/etc/nws-cam/cam_0002.h5'", repr(template),
                     f"outside the allowed roots {str(root)!r}",
                     "add its directory to allowed_roots",
                     "set the detector's saving directory"):
            assert word in reason, reason
        _good_scan_meanwhile(blissdata_url, writer, root)
        bad.end()
    finally:
        writer.stop(wait=True, timeout=60)
