"""The ``NexusWriter`` device served by a real child process (``DeviceTestContext``).

Each test starts the device with its own properties, publishes simulated scans into
the test's Redis database and checks what the device says over Tango (attributes,
commands, change events), what it announces through ``channels``, and the files.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import tango
from tango import DevState

import channels
from nexus_writer_service.embedded import EmbeddedRedis, free_port
from tests.integration.tango.device_support import (
    DEVICE,
    PublishedScans,
    dev_error,
    file_points,
    file_status,
    wait_for,
    writer_device,
)
from tests.nxcheck import nxcheck_errors

#: Commands on one scan that refuse a scan the device does not know (scan_state and
#: scan_state_reason answer UNKNOWN and why instead, as BLISS expects).
_NAME_COMMANDS = ("scan_url", "scan_uri", "scan_has_write_permissions",
                  "scan_has_required_disk_space", "scan_disk_space_error",
                  "scan_disk_space_warning", "stop_scan", "kill_scan")
_ATTRIBUTES = ("scan_names", "scan_states", "scan_states_info", "scan_urls", "scan_uris",
               "scan_start", "scan_end", "scan_duration", "scan_duration_seconds",
               "scan_progress", "scan_info", "scan_info_json", "throughput",
               "backlog_events", "backlog_size", "save_options", "writer_log_level",
               "tango_log_level", "resource_profiling")
_LOG_LEVELS = ("NOTSET", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def _read_all(proxy: tango.DeviceProxy) -> dict[str, Any]:
    """Every attribute, each read on its own; asserts each answer comes quickly."""
    values = {}
    for name in _ATTRIBUTES:
        started = time.monotonic()
        values[name] = proxy.read_attribute(name).value
        assert time.monotonic() - started < 1.0, f"reading {name} took too long"
    return values


def _scan_state(proxy: tango.DeviceProxy, name: str, *states: str) -> str:
    state = str(proxy.scan_state(name))
    return state if state in states else ""


def _points_written(proxy: tango.DeviceProxy, index: int = 0) -> int:
    return int(proxy.scan_progress[index].split("/")[0])


def _valid_file(filename: str) -> None:
    assert nxcheck_errors(filename, ignore_entry_names=True) == [], filename


@pytest.mark.slow
def test_every_attribute_and_command_answers_while_a_scan_runs_and_after(
        redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    with writer_device(session="live", redis_url=redis_url,
                       allowed_roots=[str(root)]) as proxy:
        assert proxy.State() == DevState.ON, proxy.Status()
        with PublishedScans(redis_url, "live", str(root), "long", npoints=300,
                            count_time=0.01) as publishing:
            wait_for(lambda: proxy.State() == DevState.RUNNING, 10, "RUNNING")
            wait_for(lambda: _points_written(proxy) > 0, 10, "first points written")
            wait_for(lambda: proxy.throughput > 0, 10, "a throughput")
            running = _read_all(proxy)
            name = running["scan_names"][0]
            assert name == "1_loopscan"
            assert name in proxy.Status()
            filename = str(root / "live" / "live_1.h5")
            assert running["scan_names"] == (name,)
            assert running["scan_states"] == (DevState.ON,)
            assert running["scan_states_info"][0]
            assert running["scan_urls"] == running["scan_uris"] == (f"{filename}::/1.1",)
            datetime.datetime.fromisoformat(running["scan_start"][0])
            assert running["scan_end"] == ("",)
            assert running["scan_duration_seconds"][0] > 0
            assert running["scan_duration"][0].startswith(f"{name}: 0:00:")
            done, expected = running["scan_progress"][0].split("/")
            assert 0 < int(done) < 300 and expected == "300", running["scan_progress"]
            assert running["scan_info"][0].startswith(f"{name}: ON ")
            info = json.loads(running["scan_info_json"][0])
            assert (info["name"], info["state"], info["filename"], info["npoints"]) == (
                name, "ON", filename, 300)
            assert running["throughput"] > 0
            assert running["backlog_events"] >= 0 and running["backlog_size"] >= 0
            assert json.loads(running["save_options"])["allowed_roots"] == [str(root)]
            assert running["writer_log_level"] in range(len(_LOG_LEVELS))
            assert running["tango_log_level"] in range(len(_LOG_LEVELS))
            assert running["resource_profiling"] == 0

            assert proxy.scan_state(name) == DevState.ON
            assert proxy.scan_state_reason(name) == running["scan_states_info"][0]
            assert list(proxy.scan_url(name)) == [f"{filename}::/1.1"]
            assert proxy.scan_exists(name) is True
            assert proxy.scan_has_write_permissions(name) is True
            assert proxy.scan_disk_space_error(name) == ""
            assert isinstance(proxy.scan_disk_space_warning(name), str)
            proxy.purge_scans()
            assert proxy.scan_names == (name,), "a running scan must not be purged"
            assert proxy.makedirs(str(root / "live" / "more")) is None
            assert (root / "live" / "more").is_dir()
            proxy.start()  # already listening: nothing to do
            error = dev_error(proxy.stop)
            assert error.reason == "NexusWriter_ScansRunning" and name in error.desc
            assert proxy.State() == DevState.RUNNING

            for command in _NAME_COMMANDS:
                error = dev_error(proxy.command_inout, command, "9_nosuchscan")
                assert "'9_nosuchscan'" in error.desc, (command, error.desc)
                assert error.reason == "NexusWriter_ScanStateError", (command, error.reason)
            assert proxy.scan_exists("9_nosuchscan") is False
            assert proxy.scan_state("9_nosuchscan") == DevState.UNKNOWN
            assert "'9_nosuchscan'" in proxy.scan_state_reason("9_nosuchscan")
            assert proxy.scan_state(name) == DevState.ON, "the scan was disturbed"

            published = publishing.join()
        assert [scan.npoints for scan in published] == [300]
        wait_for(lambda: proxy.State() == DevState.ON, 10, "ON after the scan")
        after = _read_all(proxy)
        assert after["scan_names"] == (name,)
        assert after["scan_states"] == (DevState.OFF,)
        assert after["scan_progress"] == ("300/300",)
        datetime.datetime.fromisoformat(after["scan_end"][0])
        assert after["scan_duration_seconds"][0] >= running["scan_duration_seconds"][0]
        assert after["backlog_events"] == 0 and after["backlog_size"] == 0
        info = json.loads(after["scan_info_json"][0])
        assert (info["state"], info["points"], info["end_reason"]) == ("OFF", 300, "SUCCESS")
        assert proxy.scan_state(name) == DevState.OFF
        assert proxy.scan_exists(name) is True
        assert proxy.scan_has_write_permissions(name) is True
        assert proxy.scan_disk_space_error(name) == ""
        assert isinstance(proxy.scan_disk_space_warning(name), str)
        assert list(proxy.scan_url(name)) == [f"{filename}::/1.1"]
        assert proxy.scan_state_reason(name) == after["scan_states_info"][0]
        proxy.stop_scan(name)  # finished already: nothing to do
        proxy.kill_scan(name)
        assert proxy.scan_state(name) == DevState.OFF
        assert set(file_points(filename).values()) == {300}
        assert file_status(filename) == "SUCCEEDED"
        _valid_file(filename)
        assert proxy.purge_scans() is None
        assert proxy.scan_names == () and proxy.scan_exists(name) is False

        proxy.stop()
        assert proxy.State() == DevState.OFF
        assert "run start" in proxy.Status()
        proxy.start()
        assert proxy.State() == DevState.ON, proxy.Status()
        with PublishedScans(redis_url, "live", str(root), "ct") as publishing:
            second = publishing.join()[0]
        wait_for(lambda: proxy.scan_states == (DevState.OFF,), 10,
                 "the scan after start written")
        assert proxy.scan_names == ("2_ct",)
        assert set(file_points(second.filename).values()) == {second.npoints}
        _valid_file(second.filename)
        proxy.stop()
        proxy.start()
        assert proxy.State() == DevState.ON, proxy.Status()
        assert proxy.scan_names == ("2_ct",), "scans stay listed across stop/start"
        assert proxy.scan_states == (DevState.OFF,)


@pytest.mark.slow
def test_stop_scan_and_kill_scan_leave_valid_files_with_the_points_so_far(
        redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    with writer_device(session="halt", redis_url=redis_url, allowed_roots=[str(root)],
                       flush_period=0.05) as proxy:
        outcomes = {}
        for number, command, expected, status in ((1, "stop_scan", "OFF", "RUNNING"),
                                                  (2, "kill_scan", "FAULT", "FAILED")):
            with PublishedScans(redis_url, "halt", str(root), "long", npoints=1000,
                                count_time=0.01) as publishing:
                name = f"{number}_loopscan"
                wait_for(lambda: proxy.scan_exists(name), 10, f"{name} known")
                wait_for(lambda: _points_written(proxy, number - 1) >= 20, 10, "20 points")
                proxy.command_inout(command, name)
                state = wait_for(lambda: _scan_state(proxy, name, "OFF", "FAULT"), 10,
                                 f"{name} stopped")
                assert state == expected, proxy.scan_state_reason(name)
                points = json.loads(proxy.scan_info_json[number - 1])["points"]
                assert publishing.running, "the scan ended before the command"
            outcomes[name] = (proxy.scan_state_reason(name), points)
            filename = str(root / "halt" / f"halt_{number}.h5")
            assert 20 <= points < 1000
            assert set(file_points(filename).values()) == {points}, outcomes
            assert file_status(filename) == status, "stop_scan: resumable; kill_scan: failed"
            _valid_file(filename)
        assert proxy.State() == DevState.ON
        assert "2_loopscan" in proxy.Status() and "FAULT" in proxy.Status()


def _unreachable_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize("properties, words, start_reason", [
    ({"session": "", "redis_url": "redis://127.0.0.1:1/0"},
     ["property 'session' is empty"], "NexusWriter_Configuration"),
    ({"session": "s", "redis_url": "redis://127.0.0.1:1/0", "compression": "zip"},
     ["compression", "'zip'", "gzip"], "NexusWriter_Configuration"),
    ({"session": "s", "redis_url": "redis://127.0.0.1:1/0", "chunk_bytes": 1},
     ["chunk_bytes", "got 1", "run Init"], "NexusWriter_Configuration"),
    ({"session": "s", "redis_url": "redis://127.0.0.1:1/0", "chunk_split": -4},
     ["chunk_split", "got -4", "between 1 and", "run Init"], "NexusWriter_Configuration"),
    ({"session": "s", "redis_url": "redis://127.0.0.1:1/0", "compression_limit_nbytes": -2},
     ["compression_limit_nbytes", "got -2", "-1 (as each scan says)", "run Init"],
     "NexusWriter_Configuration"),
    ({"session": "s", "redis_url": "redis://127.0.0.1:1/0", "chunk_bytes": 4096,
      "chunk_nbytes": 8192},
     ["chunk_bytes (4096)", "chunk_nbytes (8192)", "set only one"],
     "NexusWriter_Configuration"),
    ({"session": "s", "redis_url": _unreachable_redis},
     ["cannot start the writer", "unreachable", "Connection refused"],
     "NexusWriter_StartFailed"),
], ids=["empty-session", "compression", "chunk_bytes", "chunk_split",
        "compression_limit_nbytes", "chunk_nbytes-twice", "redis-closed-port"])
def test_configuration_faults_put_the_device_in_fault_with_the_reason(
        properties: dict[str, Any], words: list[str], start_reason: str) -> None:
    properties = {key: value() if callable(value) else value
                  for key, value in properties.items()}
    started = time.monotonic()
    with writer_device(**properties) as proxy:
        assert time.monotonic() - started < 15, "the device took too long to start"
        started = time.monotonic()
        assert proxy.State() == DevState.FAULT
        status = proxy.Status()
        assert all(word in status for word in words), status
        error = dev_error(proxy.start)
        assert time.monotonic() - started < 2.0, "the device did not answer quickly"
        assert error.reason == start_reason and words[0] in error.desc, error.desc
        assert proxy.scan_names == () and proxy.scan_exists("1_ct") is False
        assert proxy.scan_state("1_ct") == DevState.UNKNOWN
        assert "'1_ct'" in dev_error(proxy.scan_url, "1_ct").desc
        assert proxy.State() == DevState.FAULT


@pytest.mark.slow
def test_scan_outside_the_allowed_roots_faults_alone(redis_url: str, tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    with writer_device(session="roots", redis_url=redis_url,
                       allowed_roots=[str(root)]) as proxy:
        with PublishedScans(redis_url, "roots", str(elsewhere), "ct") as publishing:
            outside = publishing.join()[0]
        wait_for(lambda: _scan_state(proxy, "1_ct", "OFF", "FAULT"), 10, "1_ct finished")
        assert proxy.scan_state("1_ct") == DevState.FAULT
        reason = proxy.scan_state_reason("1_ct")
        assert str(elsewhere) in reason and "allowed" in reason, reason
        assert proxy.State() == DevState.ON
        assert "1_ct" in proxy.Status() and "FAULT" in proxy.Status()
        assert not os.path.exists(outside.filename)

        with PublishedScans(redis_url, "roots", str(root), "ascan", npoints=200,
                            count_time=0.005) as publishing:
            wait_for(lambda: proxy.State() == DevState.RUNNING, 10, "RUNNING")
            assert "1_ct" in proxy.Status(), "the faulty scan is no longer reported"
            inside = publishing.join()[0]
        wait_for(lambda: _scan_state(proxy, "2_ascan", "OFF", "FAULT"), 10, "2_ascan done")
        assert proxy.scan_states == (DevState.FAULT, DevState.OFF)
        assert proxy.State() == DevState.ON
        assert set(file_points(inside.filename).values()) == {200}
        _valid_file(inside.filename)


class _Collector:
    """Values of the change events of one attribute (callback of ``subscribe_event``)."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def push_event(self, event: tango.EventData) -> None:
        with self._lock:
            if event.err:
                self.errors.append(str(event.errors[0].desc))
            else:
                self.values.append(event.attr_value.value)

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.values)


def _states(value: Any) -> list[DevState]:
    """The states of a scan_states change event: pytango gives the values of a
    DevState spectrum in an event as numbers (None when empty)."""
    return [] if value is None else [DevState.values[int(state)] for state in value]


@pytest.mark.slow
def test_state_and_scan_states_are_pushed_as_change_events(
        redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    with writer_device(session="events", redis_url=redis_url,
                       allowed_roots=[str(root)]) as proxy:
        state, scan_states = _Collector(), _Collector()
        subscriptions = [
            proxy.subscribe_event("State", tango.EventType.CHANGE_EVENT, state),
            proxy.subscribe_event("scan_states", tango.EventType.CHANGE_EVENT, scan_states),
        ]
        try:
            wait_for(lambda: state.snapshot() and scan_states.snapshot(), 10,
                     "the first events")
            assert state.snapshot() == [DevState.ON]
            assert _states(scan_states.snapshot()[0]) == []
            with PublishedScans(redis_url, "events", str(root), "long", npoints=50,
                                count_time=0.02) as publishing:
                publishing.join()
            wait_for(lambda: state.snapshot()[-1:] == [DevState.ON]
                     and DevState.RUNNING in state.snapshot(), 10, "RUNNING then ON")
            wait_for(lambda: _states(scan_states.snapshot()[-1]) == [DevState.OFF], 10,
                     "scan_states ending with OFF")
        finally:
            for subscription in subscriptions:
                proxy.unsubscribe_event(subscription)
        assert state.errors == [] and scan_states.errors == []
        assert state.snapshot() == [DevState.ON, DevState.RUNNING, DevState.ON]
        seen = [_states(value) for value in scan_states.snapshot()]
        assert seen[0] == [] and seen[-1] == [DevState.OFF] and [DevState.ON] in seen, seen
        assert proxy.get_attribute_poll_period("State") == 0
        assert proxy.get_attribute_poll_period("scan_states") == 0


@pytest.mark.slow
def test_state_and_scans_are_announced_through_channels(
        redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    states: list[Any] = []
    events: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_state(value: Any) -> None:
        with lock:
            states.append(value)

    def on_events(block: list[Any]) -> None:
        with lock:
            events.extend(block)

    def seen() -> tuple[list[Any], list[dict[str, Any]]]:
        with lock:
            return list(states), list(events)

    with writer_device(session="news", redis_url=redis_url,
                       allowed_roots=[str(root)]) as proxy:
        cache = channels.Channel(f"{DEVICE}:state", redis_url=redis_url)
        scans = channels.EventChannel(f"{DEVICE}:scans", redis_url=redis_url)
        try:
            wait_for(lambda: (cache.value or {}).get("state") == "ON", 10, "state ON")
            assert cache.value["running"] is False
            assert "news" in cache.value["status"]
            cache.register_callback(on_state)
            scans.register_callback(on_events)
            with PublishedScans(redis_url, "news", str(root), "long", npoints=50,
                                count_time=0.02) as publishing:
                published = publishing.join()[0]
            wait_for(lambda: len(seen()[1]) >= 2, 10, "scan_started and scan_finished")
            wait_for(lambda: seen()[0] and seen()[0][-1]["state"] == "ON", 10,
                     "state ON again")
            assert proxy.State() == DevState.ON
        finally:
            cache.close()
            scans.close()
    values, posted = seen()
    assert [value["state"] for value in values] == ["RUNNING", "ON"], values
    assert [value["running"] for value in values] == [True, False]
    url = f"{published.filename}::/1.1"
    started, finished = posted
    assert started == {"event": "scan_started", "scan": "1_loopscan", "session": "news",
                       "urls": [url]}
    assert finished["event"] == "scan_finished" and finished["scan"] == "1_loopscan"
    assert (finished["urls"], finished["state"], finished["end_reason"],
            finished["points"], finished["session"]) == ([url], "OFF", "SUCCESS", 50, "news")
    assert isinstance(finished["reason"], str)


def test_makedirs_only_under_the_allowed_roots_and_log_levels_round_trip(
        redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    with writer_device(session="misc", redis_url=redis_url,
                       allowed_roots=[str(root)]) as proxy:
        assert proxy.State() == DevState.ON, proxy.Status()
        target = root / "proposal" / "sample"
        assert proxy.makedirs(str(target)) is None
        assert target.is_dir()
        error = dev_error(proxy.makedirs, "relative/dir")
        assert "absolute" in error.desc and "'relative/dir'" in error.desc, error.desc
        assert not (Path.cwd() / "relative").exists()
        outside = tmp_path / "outside"
        error = dev_error(proxy.makedirs, str(outside))
        assert str(outside) in error.desc and "allowed" in error.desc, error.desc
        assert not outside.exists()

        for name in ("writer_log_level", "tango_log_level"):
            for level in ("DEBUG", "ERROR", "NOTSET", "FATAL", "INFO"):
                proxy.write_attribute(name, _LOG_LEVELS.index(level))
                if name == "writer_log_level" and level == "NOTSET":
                    level = "WARN"  # the effective level: that of the root logger
                assert getattr(proxy, name).name == level, (name, level)
            error = dev_error(proxy.write_attribute, name, len(_LOG_LEVELS))
            assert error.reason == "API_WAttrOutsideLimit", error.desc
            assert getattr(proxy, name).name == "INFO"


def test_lima_save_option_properties_are_options_not_warnings(redis_url: str) -> None:
    with writer_device(session="limaopts", redis_url=redis_url, copy_non_external=True,
                       enable_external_nonhdf5=True) as proxy:
        assert proxy.State() == DevState.ON
        status = proxy.Status()
        assert "not supported" not in status, status
        options = json.loads(proxy.save_options)
        assert options["copy_non_external"] is True
        assert options["enable_external_nonhdf5"] is True


@pytest.mark.slow
def test_device_restarts_its_writer_when_redis_comes_back(tmp_path: Path) -> None:
    """Redis stopped and started again (append-only file kept): FAULT with the reason,
    then ON again by itself within a few retry periods; the next scan is written."""
    root = tmp_path / "data"
    redis_server = EmbeddedRedis(port=free_port(), workdir=tmp_path / "redis", config={
        "appendonly": "yes", "appendfsync": "always"})
    redis_server.start()
    try:
        url = redis_server.url + "/0"
        with writer_device(session="outage", redis_url=url,
                           allowed_roots=[str(root)]) as proxy:
            assert proxy.State() == DevState.ON, proxy.Status()
            with PublishedScans(url, "outage", str(root), "ct") as publishing:
                first = publishing.join()[0]
            wait_for(lambda: proxy.scan_states == (DevState.OFF,), 10, "first scan written")

            redis_server.stop()
            wait_for(lambda: proxy.State() == DevState.FAULT, 20, "FAULT once Redis is gone")
            status = proxy.Status()
            assert "unreachable" in status, status
            assert re.search(r"(restarting it|retrying) every", status), status
            assert proxy.scan_names == ("1_ct",), "scans stay listed during the outage"

            redis_server.start()
            wait_for(lambda: proxy.State() == DevState.ON, 30, "ON again after Redis is back")
            with PublishedScans(url, "outage", str(root), "ascan") as publishing:
                second = publishing.join()[0]
            wait_for(lambda: proxy.scan_states == (DevState.OFF, DevState.OFF), 20,
                     "second scan written")
            assert proxy.scan_names == ("1_ct", "2_ascan")
            for scan in (first, second):
                assert set(file_points(scan.filename).values()) == {scan.npoints}
                _valid_file(scan.filename)
    finally:
        redis_server.cleanup()
