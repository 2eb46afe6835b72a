"""The NexusWriter device writing scans that blissdata publishes, called as BLISS 2.4
calls it (:mod:`.bliss_client`): the real server, registered in the Tango database
with ``data_source`` blissdata, the scans published with the real blissdata package."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest
import tango
from tango import DevState

from tango_devices.process import ServerProcess
from tango_devices.register import register_nexus_writer
from tests.blissdata_support import (
    ASCAN_CHANNELS,
    BlissScan,
    ascan_data,
    blocks,
    reference_scan_info,
)
from tests.integration.tango.bliss_client import BlissWriterClient
from tests.integration.tango.device_support import file_status, wait_for
from tests.nxcheck import nxcheck_errors


def _register(db: tango.Database, names: Callable[[str], str], url: str, root: Path
              ) -> tuple[str, str, str]:
    session, instance = names("bd"), names("i")
    done = register_nexus_writer(session, member=session, instance=instance, redis_url=url,
                                 data_source="blissdata", database=db,
                                 options={"allowed_roots": [str(root)]})
    return session, instance, done.device


def _datasets(filename: str) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    with h5py.File(filename, "r", locking=False) as h5:
        def visit(_: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and "channel" in obj.attrs:
                channel = obj.attrs["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                found.setdefault(channel, obj[()])
        h5["3.1/instrument"].visititems(visit)
    return found


@pytest.mark.slow
def test_bliss_writes_a_blissdata_scan_through_the_device(
        tango_db: tango.Database, names: Callable[[str], str], blissdata_url: str,
        start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    session, instance, device = _register(tango_db, names, blissdata_url, tmp_path)
    start_server(instance, device)
    client = BlissWriterClient(session, tango_db)
    proxy = client.proxy
    assert proxy.state() == DevState.ON
    assert "blissdata" in proxy.status()
    filename = tmp_path / session / f"{session}_0001.h5"
    data = ascan_data(60)
    # BLISS creates the scan in blissdata, then asks its writer (before preparing it)
    info = reference_scan_info(str(filename), session=session, npoints=60)
    scan = BlissScan(blissdata_url, info, session=session)
    client.prepare("3_ascan", str(filename.parent))
    assert proxy.scan_exists("3_ascan") is True
    assert proxy.scan_has_write_permissions("3_ascan") is True
    scan.prepare_and_start()
    for index, part in enumerate(blocks(data, 10)):
        scan.send(part)
        if index == 2:  # BLISS's check on master events, while the scan runs
            client.check()
            assert proxy.scan_state("3_ascan") in (DevState.ON, DevState.RUNNING)
    scan.end()
    client.finalize()
    assert client.warnings == []
    wait_for(lambda: proxy.scan_state("3_ascan") == DevState.OFF, 30, "the scan written")
    assert proxy.scan_states == (DevState.OFF,)
    assert "Nexus writer scan '3_ascan' in OFF state" in client.str_scan_state()
    assert proxy.scan_urls == (f"{filename}::/3.1",)
    (info,) = proxy.scan_info
    assert info.startswith("3_ascan: OFF 60pts-60pts"), info
    assert file_status(str(filename)) == "SUCCEEDED"
    written = _datasets(str(filename))
    assert set(written) == set(ASCAN_CHANNELS)
    for name, values in data.items():
        np.testing.assert_array_equal(written[name], values, err_msg=name)
    assert nxcheck_errors(str(filename), ignore_entry_names=True) == []


@pytest.mark.slow
def test_bliss_fails_a_blissdata_scan_whose_writer_is_in_fault_with_the_reason(
        tango_db: tango.Database, names: Callable[[str], str], blissdata_url: str,
        start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    session, instance, device = _register(tango_db, names, blissdata_url, tmp_path)
    filename = tmp_path / session / f"{session}_0001.h5"
    filename.parent.mkdir(parents=True)
    filename.write_text("not an HDF5 file\n")
    start_server(instance, device)
    client = BlissWriterClient(session, tango_db)
    info = reference_scan_info(str(filename), session=session, npoints=5)
    scan = BlissScan(blissdata_url, info, session=session)
    client.prepare("3_ascan", str(filename.parent))
    scan.prepare_and_start()
    scan.send(ascan_data(5))
    wait_for(lambda: client.proxy.scan_state("3_ascan") == DevState.FAULT, 30,
             "the scan in FAULT")
    with pytest.raises(RuntimeError, match="Nexus writer is in FAULT state") as info:
        client.check()
    assert str(filename) in str(info.value) and "not a valid HDF5 file" in str(info.value)
    scan.end()
    with pytest.raises(RuntimeError, match="not a valid HDF5 file"):
        client.finalize()
    assert "in FAULT state" in client.str_scan_state()
    assert client.proxy.scan_states == (DevState.FAULT,)
    assert client.proxy.state() in (DevState.ON, DevState.RUNNING)  # the session goes on
    assert filename.read_text() == "not an HDF5 file\n"
