"""End to end: the real ``NexusWriterService`` process, registered in the sqlite Tango DB.

Each test registers its own devices, starts the server as a child process
(stopped by PID at teardown), publishes simulated scans into Redis and checks
the files (nxcheck, h5py) and what the device says over Tango.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Optional

import h5py
import pytest
import tango

from nexus_writer_service.embedded import free_port
from tango_devices.process import device_proxy
from tests.nxcheck import nxcheck_errors

_SERVER = [sys.executable, "-m", "tango_devices.server"]


def _points(path: str, entry: Optional[str] = None) -> int:
    """Points of ``diode1`` in the file's (only, or named) entry."""
    with h5py.File(path, "r", locking=False) as h5:
        entry = entry or _only(list(h5))
        return int(h5[f"{entry}/measurement/diode1"].shape[0])


def _only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def _end_reason(path: str) -> str:
    with h5py.File(path, "r", locking=False) as h5:
        return h5[f"{_only(list(h5))}/writer/end_reason"][()].decode()


def _scans_done(proxy: tango.DeviceProxy, count: int) -> Callable[[], Any]:
    def done() -> Any:
        states = [str(state) for state in proxy.scan_states or ()]
        return len(states) == count and all(s == "OFF" for s in states) and states
    return done


def _run(args: list[str], env: dict[str, str], timeout: float = 30.0
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_SERVER + args, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_registered_server_writes_a_scan_and_reports_it(writer, proxy, scans, poll):
    assert proxy.state() == tango.DevState.ON
    assert proxy.scan_states is None or list(proxy.scan_states) == []
    scans.start(writer, npoints=300, count_time=0.003)
    poll(lambda: proxy.state() == tango.DevState.RUNNING, 20, "device RUNNING")
    (scan,) = scans.join()
    poll(_scans_done(proxy, 1), 30, "scan written")
    assert proxy.state() == tango.DevState.ON
    assert list(proxy.scan_progress) == ["300/300"]
    assert list(proxy.scan_urls) == [f"{scan.filename}::/1.1"]
    assert json.loads(_only(list(proxy.scan_info_json)))["end_reason"] == "SUCCESS"
    assert _points(scan.filename) == 300
    assert _end_reason(scan.filename) == "SUCCESS"
    assert nxcheck_errors(scan.filename, ignore_entry_names=True) == []


def test_init_rereads_save_options_and_session(writer, proxy, tango_db, scans, poll, names):
    tango_db.put_device_property(writer.device, {"strict_names": "true",
                                                 "compression": "gzip"})
    proxy.Init()
    poll(lambda: proxy.state() == tango.DevState.ON, 30, "device ON after Init")
    options = json.loads(proxy.save_options)
    assert options["strict_names"] is True and options["compression"] == "gzip"
    scans.start(writer, npoints=10)
    (scan,) = scans.join()
    poll(_scans_done(proxy, 1), 30, "scan with strict names written")
    with h5py.File(scan.filename, "r", locking=False) as h5:
        (entry,) = list(h5)
        assert entry.startswith("entry_"), entry
        assert h5[f"{entry}/measurement/diode1"].compression == "gzip"
    assert nxcheck_errors(scan.filename) == []

    other = names("s")
    tango_db.put_device_property(writer.device, {"session": other})
    proxy.Init()
    poll(lambda: proxy.state() == tango.DevState.ON, 30, "device ON after the new session")
    assert f"session {other!r}" in proxy.status()
    scans.start(writer, session=other, npoints=10)
    (_, moved) = scans.join()
    poll(_scans_done(proxy, 1), 30, "scan of the new session written")
    (url,) = proxy.scan_urls
    assert url.startswith(f"{moved.filename}::/entry_"), url
    assert f"/{other}/" in moved.filename and _points(moved.filename) == 10


def _start_and_wait_100_points(proxy: tango.DeviceProxy, writer: Any, scans: Any, poll: Any,
                               total: int) -> int:
    """Start a ``total``-point scan at 100 points/s; return the points seen written."""
    scans.start(writer, npoints=total, count_time=0.01)

    def progress() -> int:
        done = [int(p.split("/")[0]) for p in proxy.scan_progress or ()]
        return done[0] if done and done[0] >= 100 else 0
    return int(poll(progress, 30, "100 points written"))


@pytest.mark.slow
def test_sigkill_mid_scan_then_restart_completes_the_file_from_redis(
        writer, server, start_server, scans, poll):
    """A crashed server (SIGKILL: no clean-up at all) restarted by its supervisor."""
    proxy = device_proxy(server.tango_host, writer.device)
    total = 600
    _start_and_wait_100_points(proxy, writer, scans, poll, total)
    assert server.stop(sig=signal.SIGKILL) == -signal.SIGKILL
    with pytest.raises(tango.DevFailed):
        proxy.state()  # clients see the server gone

    restarted = start_server(writer.instance, writer.device)
    proxy = device_proxy(restarted.tango_host, writer.device)
    (scan,) = scans.join()
    filename = str(writer.root / writer.session / f"{writer.session}_1.h5")
    assert scan.filename == filename
    poll(_scans_done(proxy, 1), 30, "resumed scan written")
    info = json.loads(_only(list(proxy.scan_info_json)))
    assert info["resumed"] and info["points"] == total, info
    assert _points(filename) == total
    with h5py.File(filename, "r", locking=False) as h5:
        entry = h5[_only(list(h5))]
        assert entry["writer/status"][()].decode() == "SUCCEEDED"
        index = entry["measurement"]
        lengths = {name: index[name].shape[0] for name in index
                   if isinstance(index[name], h5py.Dataset)}
    assert set(lengths.values()) == {total}, lengths
    assert _end_reason(filename) == "SUCCESS"
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


@pytest.mark.slow
def test_sigterm_mid_scan_keeps_a_valid_file_and_restart_completes_it(
        writer, server, start_server, scans, poll):
    proxy = device_proxy(server.tango_host, writer.device)
    total = 600
    seen = _start_and_wait_100_points(proxy, writer, scans, poll, total)
    started = time.monotonic()
    status = server.stop(timeout=20)
    stopped_in = time.monotonic() - started
    assert status == 0, server.tail()
    assert stopped_in < 10, f"stopping took {stopped_in:.1f} s"
    assert "Traceback" not in server.tail(20000), server.tail()

    filename = str(writer.root / writer.session / f"{writer.session}_1.h5")
    partial = _points(filename)
    assert seen <= partial < total
    assert nxcheck_errors(filename, ignore_entry_names=True) == []

    restarted = start_server(writer.instance, writer.device)
    proxy = device_proxy(restarted.tango_host, writer.device)
    (scan,) = scans.join()
    assert scan.filename == filename
    poll(_scans_done(proxy, 1), 30, "resumed scan written")
    info = json.loads(_only(list(proxy.scan_info_json)))
    assert info["resumed"] and info["points"] == total, info
    assert _points(filename) == total
    assert _end_reason(filename) == "SUCCESS"
    assert nxcheck_errors(filename, ignore_entry_names=True) == []


def test_unregistered_instance_exits_1_saying_how_to_register(tango_host, names):
    instance = names("unregistered")
    result = _run([instance], dict(os.environ, TANGO_HOST=tango_host))
    assert result.returncode == 1, result
    assert f"NexusWriterService/{instance}" in result.stderr
    assert f"RegisterNexusWriter <session> --instance {instance}" in result.stderr


def test_unreachable_database_exits_1_naming_tango_host():
    host = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = _run(["anything"], dict(os.environ, TANGO_HOST=host), timeout=20)
    assert result.returncode == 1, result
    assert f"TANGO_HOST={host}" in result.stderr
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("args", [[], ["inst", "--log", "loud"], ["inst", "--filesize", "big"],
                                  ["inst", "--log_tango"]],
                         ids=["no-instance", "bad-level", "bad-filesize", "missing-value"])
def test_invalid_arguments_exit_2(args):
    result = _run(args, dict(os.environ, TANGO_HOST="127.0.0.1:1"))
    assert result.returncode == 2, result
    assert "NexusWriterService: error:" in result.stderr


def test_logfile_is_rotated_and_nologstdout_keeps_stderr_quiet(
        writer, start_server, scans, poll, tmp_path):
    logfile = tmp_path / "logs" / "writer.log"
    logfile.parent.mkdir()
    server = start_server(writer.instance, writer.device, args=(
        "--log=debug", f"--logfile={logfile}", "--filesize", "0.0003", "--filebackups", "2",
        "--nologstdout"))
    proxy = device_proxy(server.tango_host, writer.device)
    scans.start(writer, npoints=20)
    scans.join()
    poll(_scans_done(proxy, 1), 30, "scan written")
    assert server.stop() == 0
    files = sorted(p.name for p in logfile.parent.iterdir())
    assert files == ["writer.log", "writer.log.1", "writer.log.2"]
    for path in logfile.parent.iterdir():
        text = path.read_text()
        assert len(text) <= 300 or text.count("\n") == 1, text
    everything = "".join(p.read_text() for p in logfile.parent.iterdir())
    assert "stopped" in logfile.read_text()
    assert "tango_devices" in everything
    output = server.output.read_text()
    assert " INFO nexus_writer_service" not in output and " INFO tango_devices" not in output
    assert " DEBUG " not in output


def test_two_devices_in_one_server_write_their_own_sessions(
        register_writer, start_server, scans, poll, names):
    instance = names("pair")
    first = register_writer(instance=instance)
    second = register_writer(instance=instance)
    server = start_server(instance, first.device, second.device)
    proxies = [device_proxy(server.tango_host, w.device) for w in (first, second)]
    scans.start(first, npoints=40, count_time=0.002)
    scans.start(second, npoints=60, count_time=0.002)
    published = {scan.filename: scan for scan in scans.join()}
    for writer, proxy, npoints in zip((first, second), proxies, (40, 60)):
        poll(_scans_done(proxy, 1), 30, f"scan of {writer.session}")
        (url,) = proxy.scan_urls
        filename = url.split("::")[0]
        assert filename in published and f"/{writer.session}/" in filename
        assert _points(filename) == npoints
        assert f"session {writer.session!r}" in proxy.status()


def test_tango_arguments_are_passed_through(writer, start_server, tango_db):
    port = free_port()
    server = start_server(writer.instance, writer.device, args=(
        "--log_tango=debug", "-ORBendPoint", f"giop:tcp:127.0.0.1:{port}"))
    # the exported IOR's IIOP profile: host string then the port (CDR, little endian here)
    ior = bytes.fromhex(tango_db.import_device(writer.device).ior[len("IOR:"):])
    assert b"127.0.0.1\x00" + port.to_bytes(2, "little") in ior
    proxy = device_proxy(server.tango_host, writer.device)
    assert proxy.state() == tango.DevState.ON
    assert proxy.tango_log_level.name == "DEBUG"  # --log_tango became Tango's -v5
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    assert server.stop() == 0


def test_sigterm_of_an_idle_server_exits_0(writer, server):
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGTERM)
    assert server.process.wait(20) == 0
    assert "stopped on request" in server.tail()  # delete_device stopped the writer
    assert f"NexusWriterService/{writer.instance} stopped" in server.tail()


def test_kill_through_the_admin_device_stops_cleanly(writer, server):
    """What Tango Starter / Astor do to stop a server: the admin device's Kill command."""
    admin = device_proxy(server.tango_host, f"dserver/NexusWriterService/{writer.instance}")
    admin.command_inout("Kill")
    assert server.process is not None
    assert server.process.wait(30) == 0, server.tail()
    assert "stopped on request" in server.tail()  # delete_device stopped the writer
    assert f"NexusWriterService/{writer.instance} stopped" in server.tail()
