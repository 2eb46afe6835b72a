"""The classic NexusWriter contract, as BLISS and Tango tools call it.

* The interface (attributes, commands, device properties; names and Tango types) is
  compared with the classic device's, written down below as data (bliss 1.11.4's
  ``nexus_writer_service/tango/servers/NexusWriter.py`` and blisswriter 2.0's).
* BLISS 2.4's call sequence (:mod:`.bliss_client`) is driven against the real server,
  registered in the sqlite Tango database and found the way BLISS finds it.
"""

from __future__ import annotations

import datetime
import re
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
import tango
from tango import AttrDataFormat, AttrWriteType, CmdArgType, DevState
from tango.server import device_property

from nexus_writer_service.simulation import SimulationOptions, simulate
from tango_devices.nexus_writer import NexusWriter
from tango_devices.process import ServerProcess, device_proxy
from tests.integration.tango.bliss_client import BlissWriterClient
from tests.integration.tango.device_support import (
    file_points,
    file_status,
    wait_for,
    writer_device,
)

_STRINGS = (CmdArgType.DevString, AttrDataFormat.SPECTRUM, AttrWriteType.READ)
_LOG_LEVELS = ("NOTSET", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_PROFILING = ("OFF", "CPU30", "CPU50", "CPU100", "WALL30", "WALL50", "WALL100",
              "MEM30", "MEM50", "MEM100")

#: The classic attributes: (type, format, access, enum labels).
CLASSIC_ATTRIBUTES: dict[str, tuple[Any, ...]] = {
    "State": (CmdArgType.DevState, AttrDataFormat.SCALAR, AttrWriteType.READ),
    "Status": (CmdArgType.DevString, AttrDataFormat.SCALAR, AttrWriteType.READ),
    "resource_profiling": (CmdArgType.DevEnum, AttrDataFormat.SCALAR,
                           AttrWriteType.READ_WRITE, _PROFILING),
    "writer_log_level": (CmdArgType.DevEnum, AttrDataFormat.SCALAR,
                         AttrWriteType.READ_WRITE, _LOG_LEVELS),
    "tango_log_level": (CmdArgType.DevEnum, AttrDataFormat.SCALAR,
                        AttrWriteType.READ_WRITE, _LOG_LEVELS),
    "scan_states": (CmdArgType.DevState, AttrDataFormat.SPECTRUM, AttrWriteType.READ),
    "scan_uris": _STRINGS,  # BLISS <= 1.11
    "scan_urls": _STRINGS,  # blisswriter 2.0
    "scan_names": _STRINGS,
    "scan_start": _STRINGS,
    "scan_end": _STRINGS,
    "scan_info": _STRINGS,
    "scan_duration": _STRINGS,
    "scan_progress": _STRINGS,
    "scan_states_info": _STRINGS,
}

#: Our deliberate extras: richer data under names of their own.
EXTRA_ATTRIBUTES: dict[str, tuple[Any, ...]] = {
    # scan_info as JSON, everything the writer knows about each scan
    "scan_info_json": _STRINGS,
    # scan_duration in seconds
    "scan_duration_seconds": (CmdArgType.DevDouble, AttrDataFormat.SPECTRUM,
                              AttrWriteType.READ),
    # points written per second, and what is read from Redis and not written yet
    "throughput": (CmdArgType.DevDouble, AttrDataFormat.SCALAR, AttrWriteType.READ),
    "backlog_events": (CmdArgType.DevLong64, AttrDataFormat.SCALAR, AttrWriteType.READ),
    "backlog_size": (CmdArgType.DevDouble, AttrDataFormat.SCALAR, AttrWriteType.READ),
    # the save options in use, as JSON
    "save_options": (CmdArgType.DevString, AttrDataFormat.SCALAR, AttrWriteType.READ),
}

_VOID, _STR = CmdArgType.DevVoid, CmdArgType.DevString
_BOOL, _STRS = CmdArgType.DevBoolean, CmdArgType.DevVarStringArray

#: The classic commands: (argument type, result type).
CLASSIC_COMMANDS = {
    "Init": (_VOID, _VOID), "State": (_VOID, CmdArgType.DevState), "Status": (_VOID, _STR),
    "scan_state": (_STR, CmdArgType.DevState),
    "scan_uri": (_STR, _STRS),  # BLISS <= 1.11
    "scan_url": (_STR, _STRS),  # blisswriter 2.0
    "scan_has_write_permissions": (_STR, _BOOL), "scan_exists": (_STR, _BOOL),
    "stop_scan": (_STR, _VOID), "kill_scan": (_STR, _VOID),  # kill_scan: BLISS <= 1.11
    "stop": (_VOID, _VOID), "start": (_VOID, _VOID),
    "scan_state_reason": (_STR, _STR), "makedirs": (_STR, _VOID),
    "purge_scans": (_VOID, _VOID), "scan_has_required_disk_space": (_STR, _BOOL),
    "scan_disk_space_error": (_STR, _STR), "scan_disk_space_warning": (_STR, _STR),
}

#: Our deliberate extra commands (none).
EXTRA_COMMANDS: dict[str, tuple[Any, Any]] = {}

#: The classic device properties and their types.
CLASSIC_PROPERTIES = {
    "session": CmdArgType.DevString, "keepshape": CmdArgType.DevBoolean,
    "multivalue_positioners": CmdArgType.DevBoolean,
    "enable_external_nonhdf5": CmdArgType.DevBoolean,
    "disable_external_hdf5": CmdArgType.DevBoolean,
    "copy_non_external": CmdArgType.DevBoolean, "noconfig": CmdArgType.DevBoolean,
    "stackmca": CmdArgType.DevBoolean,  # BLISS <= 1.11
    "required_disk_space": CmdArgType.DevDouble,
    "recommended_disk_space": CmdArgType.DevDouble,
}


def _attribute_interface(info: tango.AttributeInfoEx) -> tuple[Any, ...]:
    found = (info.data_type, info.data_format, info.writable)
    if info.data_type == CmdArgType.DevEnum:
        found += (tuple(info.enum_labels),)
    return found


def test_interface_is_the_classic_nexuswriter_plus_listed_extras(redis_url: str) -> None:
    with writer_device(session="parity", redis_url=redis_url) as proxy:
        attributes = {info.name: _attribute_interface(info)
                      for info in proxy.attribute_list_query_ex()}
        commands = {info.cmd_name: (info.in_type, info.out_type)
                    for info in proxy.command_list_query()}
    assert attributes == {**CLASSIC_ATTRIBUTES, **EXTRA_ATTRIBUTES}
    assert commands == {**CLASSIC_COMMANDS, **EXTRA_COMMANDS}
    declared = {name: value.dtype for name, value in vars(NexusWriter).items()
                if isinstance(value, device_property)}
    assert {name: declared.get(name) for name in CLASSIC_PROPERTIES} == CLASSIC_PROPERTIES


def test_classic_values_have_the_classic_types_before_any_scan(redis_url: str) -> None:
    with writer_device(session="types", redis_url=redis_url) as proxy:
        assert proxy.scan_state("1_nosuchscan") == DevState.UNKNOWN
        assert "'1_nosuchscan'" in proxy.scan_state_reason("1_nosuchscan")
        assert proxy.scan_exists("1_nosuchscan") is False
        for command in ("scan_url", "scan_uri", "scan_has_write_permissions",
                        "scan_has_required_disk_space", "scan_disk_space_error"):
            with pytest.raises(tango.DevFailed, match="1_nosuchscan"):
                proxy.command_inout(command, "1_nosuchscan")
        assert proxy.purge_scans() is None
        assert proxy.resource_profiling == 0 and proxy.resource_profiling.name == "OFF"
        for name in ("writer_log_level", "tango_log_level"):
            for label in ("DEBUG", "ERROR", "INFO"):
                proxy.write_attribute(name, _LOG_LEVELS.index(label))
                assert getattr(proxy, name).name == label
            proxy.write_attribute(name, 3)
            assert getattr(proxy, name).name == "WARN"
            with pytest.raises(tango.DevFailed):
                proxy.write_attribute(name, 9)


# -- BLISS 2.4's calls, against the real server ---------------------------------------


def _publish(writer: Any, scan: str = "long", npoints: int = 40, count_time: float = 0.02,
             root: Path | None = None) -> tuple[threading.Thread, list[Any]]:
    """Publish one scan in a thread (the acquisition); returns it and its results."""
    options = SimulationOptions(session=writer.session, redis_url=writer.redis_url,
                                root=str(root or writer.root), scans=(scan,),
                                npoints=npoints, count_time=count_time)
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.extend(simulate(options)),
                              name=f"publish-{writer.session}")
    thread.start()
    return thread, results


@pytest.fixture
def bliss(tango_db: tango.Database) -> Callable[[str], BlissWriterClient]:
    return lambda session: BlissWriterClient(session, tango_db)


@pytest.mark.slow
def test_bliss_writes_a_scan_and_sees_every_state_as_a_devstate(
        register_writer: Callable[..., Any], start_server: Callable[..., ServerProcess],
        bliss: Callable[[str], BlissWriterClient]) -> None:
    writer = register_writer()
    start_server(writer.instance, writer.device)
    client = bliss(writer.session)
    thread, published = _publish(writer, npoints=100)
    try:
        client.prepare("1_loopscan", str(writer.root / writer.session))
        client.check()
        assert client.proxy.scan_state("1_loopscan") in (DevState.ON, DevState.OFF)
        assert "Nexus writer scan '1_loopscan' in " in client.str_scan_state()
    finally:
        thread.join(60)
    client.finalize()
    assert client.warnings == []
    scan = published[0]
    proxy = client.proxy
    wait_for(lambda: proxy.scan_state("1_loopscan") == DevState.OFF, 30)
    assert proxy.scan_states == (DevState.OFF,)
    assert proxy.scan_has_required_disk_space("1_loopscan") is True
    assert set(file_points(scan.filename).values()) == {100}
    assert file_status(scan.filename) == "SUCCEEDED"
    assert list(proxy.scan_url("1_loopscan")) == list(proxy.scan_uri("1_loopscan"))
    assert proxy.scan_urls == proxy.scan_uris == (f"{scan.filename}::/1.1",)
    (duration,) = proxy.scan_duration
    assert re.fullmatch(r"1_loopscan: \d+:\d\d:\d\d(\.\d+)?", duration), duration
    (info,) = proxy.scan_info
    assert re.fullmatch(r"1_loopscan: OFF 100pts-100pts duration: \S+ start: \S+ \S+ "
                        r"end: \S+ \S+", info), info
    end = info.split("end: ")[1]
    assert datetime.datetime.strptime(end, "%Y-%m-%d %H:%M:%S")


@pytest.mark.slow
def test_bliss_fails_the_scan_whose_writer_is_in_fault_with_the_reason(
        register_writer: Callable[..., Any], start_server: Callable[..., ServerProcess],
        bliss: Callable[[str], BlissWriterClient]) -> None:
    writer = register_writer()
    directory = writer.root / writer.session
    directory.mkdir(parents=True)
    filename = directory / f"{writer.session}_1.h5"
    filename.write_text("not an HDF5 file\n")
    start_server(writer.instance, writer.device)
    client = bliss(writer.session)
    thread, _ = _publish(writer, npoints=20)
    try:
        client.prepare("1_loopscan", str(directory))
        wait_for(lambda: client.proxy.scan_state("1_loopscan") == DevState.FAULT, 30)
        with pytest.raises(RuntimeError, match="Nexus writer is in FAULT state") as info:
            client.check()
    finally:
        thread.join(60)
    assert str(filename) in str(info.value) and "not a valid HDF5 file" in str(info.value)
    with pytest.raises(RuntimeError, match="not a valid HDF5 file"):
        client.finalize()
    assert "in FAULT state" in client.str_scan_state()
    assert client.proxy.scan_states == (DevState.FAULT,)
    assert filename.read_text() == "not an HDF5 file\n"


@pytest.mark.slow
def test_bliss_gives_up_on_a_scan_never_published_after_10_s(
        writer: Any, server: ServerProcess, bliss: Callable[[str], BlissWriterClient]) -> None:
    client = bliss(writer.session)
    with pytest.raises(RuntimeError,
                       match="did not receive scan '1_loopscan' after 10s"):
        client.prepare("1_loopscan", str(writer.root / writer.session))
    assert client.proxy.scan_state("1_loopscan") == DevState.UNKNOWN
    assert "in UNKNOWN state" in client.str_scan_state()


def test_bliss_refuses_to_scan_while_the_writer_is_off(
        writer: Any, server: ServerProcess, bliss: Callable[[str], BlissWriterClient]) -> None:
    client = bliss(writer.session)
    client.proxy.stop()
    with pytest.raises(RuntimeError, match=r"Nexus writer service is in OFF state \(.*"
                       r"run start\)\. Call the Nexus writer 'start' method"):
        client.prepare("1_loopscan", str(writer.root / writer.session))
    client.proxy.start()
    assert client.proxy.state() == DevState.ON


@pytest.mark.slow
def test_bliss_stops_on_a_disk_space_error_and_warns_on_low_space(
        register_writer: Callable[..., Any], start_server: Callable[..., ServerProcess],
        bliss: Callable[[str], BlissWriterClient]) -> None:
    huge = 2.0**40  # MiB
    full = register_writer(required_disk_space=huge, recommended_disk_space=0)
    low = register_writer(instance=full.instance, required_disk_space=0,
                          recommended_disk_space=huge)
    start_server(full.instance, full.device, low.device)
    for writer in (full, low):
        client = bliss(writer.session)
        thread, published = _publish(writer, npoints=20)
        try:
            if writer is full:
                with pytest.raises(RuntimeError, match="MiB required") as info:
                    client.prepare("1_loopscan", str(writer.root / writer.session))
                assert "required_disk_space" in str(info.value)
                assert client.proxy.scan_has_required_disk_space("1_loopscan") is False
                continue
            client.prepare("1_loopscan", str(writer.root / writer.session))
            client.check()
        finally:
            thread.join(60)
        client.finalize()
        assert client.warnings and "MiB recommended" in client.warnings[0], client.warnings
        wait_for(lambda: client.proxy.scan_state("1_loopscan") == DevState.OFF, 30)
        assert set(file_points(published[0].filename).values()) == {20}


@pytest.mark.slow
def test_resource_profiling_logs_the_top_functions_of_the_scans_written(
        writer: Any, start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    process = start_server(writer.instance, writer.device, args=("--log", "info"))
    proxy = device_proxy(process.tango_host, writer.device)
    for choice, words in (("CPU30", "cpu time, top 30 functions"),
                          ("MEM30", "memory allocated at the peak")):
        proxy.resource_profiling = _PROFILING.index(choice)
        assert proxy.resource_profiling.name == choice
        before = len(proxy.scan_names or ())
        thread, _ = _publish(writer, npoints=50, count_time=0.005)
        thread.join(60)
        wait_for(lambda: len(proxy.scan_names or ()) == before + 1
                 and proxy.state() == DevState.ON, 30)
        wait_for(lambda: words in process.output.read_text(), 10)
    proxy.resource_profiling = 0
    text = process.output.read_text()
    assert "resource profiling CPU30 of the scans just written" in text
    assert "scan_writer.py" in text.split("resource profiling MEM30")[0], text[-3000:]
