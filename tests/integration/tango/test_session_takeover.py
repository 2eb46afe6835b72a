"""One writer per session, as operators deploy it with Tango.

* A device whose session is written by another writer (here the command-line writer)
  is STANDBY with the ``standby`` property, else FAULT naming the holder; BLISS
  refuses to scan until it is ON.
* The standby deployment: the same server instance on a second host, run by Starter
  or supervisor. Tango refuses a second running instance; once the first dies, the
  second starts, takes the session's lease and completes the scan the first was
  writing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import tango
from tango import DevState

from nexus_writer_service.data import Publisher, connect
from tango_devices.process import ServerProcess, device_proxy
from tests.integration.tango.bliss_client import BlissWriterClient
from tests.integration.tango.device_support import file_points, file_status


def _cli_writer(session: str, redis_url: str, root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "nexus_writer_service.cli.session_writer",
                             session, "--redis-url", redis_url, "--allowed-roots", str(root),
                             "--log", "warning"])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize("standby", [True, False], ids=["standby", "no-standby"])
def test_device_of_a_session_written_elsewhere_waits_or_refuses(
        register_writer: Callable[..., Any], start_server: Callable[..., ServerProcess],
        tango_db: tango.Database, poll: Callable[..., Any], standby: bool) -> None:
    writer = register_writer(standby=standby)
    other = _cli_writer(writer.session, writer.redis_url, writer.root)
    client = connect(writer.redis_url)
    try:
        poll(lambda: client.exists(f"nws:{writer.session}:writer"), 30, "the CLI writer")
        process = start_server(writer.instance, writer.device)
        proxy = device_proxy(process.tango_host, writer.device)
        if standby:
            assert proxy.state() == DevState.STANDBY, proxy.status()
        else:
            poll(lambda: proxy.state() == DevState.FAULT, 30, "FAULT after one lease time")
        status = proxy.status()
        assert f"pid {other.pid}" in status and "one writer per session" in status, status
        with pytest.raises(RuntimeError, match=r"Nexus writer service is in FAULT state"
                           if not standby else "Nexus writer is not ON or RUNNING"):
            bliss = BlissWriterClient(writer.session, tango_db)
            bliss._retry(bliss._is_writer_on, "Nexus writer is not ON or RUNNING",
                         timeout=1, raise_on_timeout=True)
        _stop(other)
        if not standby:
            proxy.start()
        poll(lambda: proxy.state() == DevState.ON, 30, "ON once the session is free")
        with Publisher(writer.session, writer.redis_url) as publisher:
            scan = publisher.create_scan(
                {"title": "ct", "npoints": 1, "filename": str(writer.root / "ct.h5"),
                 "acquisition_chain": {"timer": {"master": {"scalars": ["t:t"]}}}},
                name="ct", number=1)
            scan.add_channel("t:t", "float64", subscan="timer")
            scan.prepare()
            scan.send({"t:t": [1.0]})
            scan.end()
        poll(lambda: proxy.scan_states == (DevState.OFF,), 30, "the scan written")
        assert file_status(str(writer.root / "ct.h5")) == "SUCCEEDED"
    finally:
        _stop(other)
        client.close()


@pytest.mark.slow
def test_second_server_of_the_same_instance_takes_over_when_the_first_dies(
        writer: Any, start_server: Callable[..., ServerProcess], scans: Any,
        poll: Callable[..., Any]) -> None:
    first = start_server(writer.instance, writer.device)
    proxy = device_proxy(first.tango_host, writer.device)
    second = start_server(writer.instance)
    assert second.process is not None
    assert second.process.wait(60) != 0, "Tango let a second instance run"
    assert "already running" in second.tail(), second.tail()
    assert proxy.state() == DevState.ON, "the first server was disturbed"

    scans.start(writer, npoints=400, count_time=0.01)
    poll(lambda: list(proxy.scan_progress or ()) and
         int(proxy.scan_progress[0].split("/")[0]) > 20, 30, "the first writing")
    killed = time.monotonic()
    first.stop(sig=9)
    third = start_server(writer.instance, writer.device)  # what Starter/supervisor do
    proxy = device_proxy(third.tango_host, writer.device)
    poll(lambda: proxy.state() in (DevState.ON, DevState.RUNNING), 30, "the standby writing")
    took_over = time.monotonic() - killed
    (scan,) = scans.join(60)
    poll(lambda: proxy.scan_states == (DevState.OFF,), 60, "the scan completed")
    print(f"takeover: {took_over:.2f} s from the SIGKILL to the device writing")
    assert set(file_points(scan.filename).values()) == {400}
    assert file_status(scan.filename) == "SUCCEEDED"
