"""A disk that fills up during a scan: a real 4 MiB tmpfs mounted for the test (root
only), a real session writer, a real Redis.

The full disk stops only the scan written there, with a reason that says so and what
to do; the file keeps what was written and can be read; a scan written elsewhere at
the same time is complete; once space is freed, a new scan on that disk is written and
the stopped scan is completed from Redis by a restarted writer.

The writer stops a scan *before* its points would fill the disk (HDF5 cannot close a
file cleanly after a failed write); a disk that is full before the scan starts is met
by HDF5 itself, and is reported the same way. A disk filled by another program right
after that check is met by HDF5 mid-write: the file, which HDF5 cannot close then,
stays open in the writer's process until space is freed and a writer started again
in that process completes and closes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import pytest

from nexus_writer_service.data import Publisher, ScanPublisher
from nexus_writer_service.io.nexus import NexusFile
from nexus_writer_service.io.parking import ParkedFiles
from tests.integration.faults.conftest import (
    TIME,
    assert_nothing_lost,
    assert_record,
    fast_options,
    file_points,
    loopscan_info,
    loopscan_points,
    start_loopscan,
    writer_note,
)
from tests.writer_support import session_writer, wait_scans_done, wait_until

SESSION = "diskfull"
SPECTRUM = "mca:spectrum"
#: 1024 float64 channels: 8 KiB per point.
CHANNELS = 1024
DISK_MIB = 4
FILLER_MIB = 2
#: Chunks of 8 spectra: the file grows by 64 KiB, not by the default chunk size.
OPTIONS = fast_options(chunk_bytes=1 << 16)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted on a directory of ``tmp_path``, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (mount -t tmpfs)")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        unmounted = subprocess.run(["umount", str(mount_point)], capture_output=True,
                                   text=True)
        if unmounted.returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)
            raise AssertionError(f"{mount_point} still busy (a file left open?): "
                                 f"{unmounted.stderr.strip()}")


def spectra(number: int, first: int, count: int) -> dict[str, np.ndarray]:
    index = np.arange(first, first + count, dtype=np.float64)
    return {TIME: index * 0.1 + number,
            SPECTRUM: index[:, None] * 1000 + np.arange(CHANNELS) + number}


def start_mca_scan(publisher: Publisher, filename: Path, number: int,
                   npoints: int) -> ScanPublisher:
    info = loopscan_info(filename, npoints)
    info["acquisition_chain"]["timer"]["spectra"] = [SPECTRUM]
    scan = publisher.create_scan(info, name="mcascan", number=number)
    scan.add_channel(TIME, "float64", subscan="timer", unit="s")
    scan.add_channel(SPECTRUM, "float64", shape=(CHANNELS,), subscan="timer")
    scan.prepare()
    return scan


def publish_mca_scan(publisher: Publisher, filename: Path, number: int, npoints: int,
                     block: int = 10) -> dict[str, np.ndarray]:
    scan = start_mca_scan(publisher, filename, number, npoints)
    for first in range(0, npoints, block):
        scan.send(spectra(number, first, min(block, npoints - first)))
    scan.end()
    return spectra(number, 0, npoints)


def test_disk_full_faults_that_scan_only_and_it_completes_once_space_is_freed(
        redis_url: str, tmp_path: Path, small_disk: Path) -> None:
    filler = small_disk / "filler.bin"
    filler.write_bytes(b"\0" * (FILLER_MIB << 20))
    full_file = small_disk / "full.h5"
    other_file = tmp_path / "other" / "other.h5"
    after_file = small_disk / "after.h5"
    npoints = 250  # 2 MiB of spectra: more than the disk has left
    with session_writer(redis_url, SESSION, OPTIONS, poll_interval=0.05) as writer:
        with Publisher(SESSION, redis_url, lease=3, retention=120) as publisher:
            full = start_mca_scan(publisher, full_file, 1, npoints)
            other = start_loopscan(publisher, other_file, 2, npoints)
            for first in range(0, npoints, 10):
                full.send(spectra(1, first, 10))
                other.send(loopscan_points(2, first, 10))
                # at the pace of an acquisition: the writer keeps up (or has stopped)
                wait_until(lambda: bool(writer.scans()) and (
                    writer.scans()[0].writer.done()
                    or writer.scans()[0].writer.progress[0] >= first + 10), 30,
                    f"point {first + 10} received")
            full.end()
            other.end()
            records = wait_scans_done(writer, 2, timeout=60)
            # a full disk is transient: the file stays resumable (RUNNING), not final
            assert_record(records[0], "FAULT", "RUNNING", "DiskSpaceError", "disk full",
                          str(full_file), "free disk space", "start the writer again")
            assert_record(records[1], "OFF", "SUCCEEDED", "finished")

            filler.unlink()
            after = publish_mca_scan(publisher, after_file, 3, 20)
            third = wait_scans_done(writer, 3, timeout=60)[2]
        assert_record(third, "OFF", "SUCCEEDED", "finished")

    # what was written before the disk filled up is readable, and is what was sent
    sent = spectra(1, 0, npoints)
    with h5py.File(full_file, "r") as h5:
        assert h5.attrs["NX_class"] == "NXroot"
    partial = file_points(full_file, records[0].key)
    written = len(partial[SPECTRUM])
    assert 0 < written < npoints, written
    for name, values in partial.items():
        np.testing.assert_array_equal(values, sent[name][:len(values)], err_msg=name)
    note = writer_note(full_file, records[0].key)
    assert note["status"] == "RUNNING" and "disk full" in str(note["message"]), note
    assert "start it again to complete the file" in str(note["message"]), note

    assert_nothing_lost(other_file, records[1].key, loopscan_points(2, 0, npoints),
                        "SUCCEEDED", "SUCCESS")
    assert_nothing_lost(after_file, third.key, after, "SUCCEEDED", "SUCCESS")

    # the remedy the reason gives: space freed, the writer started again completes it
    with session_writer(redis_url, SESSION, OPTIONS, poll_interval=0.05) as writer:
        wait_until(lambda: bool(writer.scans()) and writer.scans()[0].writer.done(), 60,
                   "the stopped scan completed")
        resumed = writer.scans()
    assert [r.key for r in resumed] == [records[0].key], [r.as_dict() for r in resumed]
    assert_record(resumed[0], "OFF", "SUCCEEDED", "finished")
    assert resumed[0].as_dict()["resumed"]
    assert_nothing_lost(full_file, records[0].key, sent, "SUCCEEDED", "SUCCESS")


def test_disk_already_full_faults_with_the_reason_and_the_writer_goes_on(
        redis_url: str, tmp_path: Path, small_disk: Path) -> None:
    """No free-space threshold set and not one byte free: HDF5 itself meets the full
    disk. Only that scan goes FAULT, saying so; the next one (elsewhere) is written."""
    with open(small_disk / "filler.bin", "wb", buffering=0) as filler:
        with pytest.raises(OSError, match="No space left on device"):
            while True:
                filler.write(b"\0" * 4096)
    full_file = small_disk / "full.h5"
    next_file = tmp_path / "next.h5"
    with session_writer(redis_url, SESSION, OPTIONS, poll_interval=0.05) as writer:
        with Publisher(SESSION, redis_url, lease=3, retention=120) as publisher:
            publish_mca_scan(publisher, full_file, 1, 20)
            refused = wait_scans_done(writer, 1, timeout=60)[0]
            after = publish_mca_scan(publisher, next_file, 2, 20)
            second = wait_scans_done(writer, 2, timeout=60)[1]
    assert_record(refused, "FAULT", "STARTING", "DiskSpaceError", "no space left on device",
                  str(full_file), "free disk space")
    assert not full_file.exists(), "the file that could not be created is left behind"
    assert_record(second, "OFF", "SUCCEEDED", "finished")
    assert_nothing_lost(next_file, second.key, after, "SUCCEEDED", "SUCCESS")


def fill_up(filler: Path) -> None:
    """Write ``filler`` until the disk has not one byte left."""
    with open(filler, "wb", buffering=0) as stream:
        for block in (1 << 16, 4096, 1):
            try:
                while True:
                    stream.write(b"\0" * block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc


def fds_on(path: Path) -> list[str]:
    """File descriptors of this process open on ``path``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(fd)
    return found


def test_disk_filled_from_outside_mid_write_releases_the_file_once_space_is_freed(
        redis_url: str, small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The free-space check passes, then another program fills the disk before the
    points are written: HDF5 itself meets the full disk. The scan goes FAULT saying
    so; the file cannot be closed then and stays open in this process; once space is
    freed, a writer started again in the same process (given the files its
    predecessor parked, as the Tango device does across Init) completes it and closes
    it (the small disk unmounts: nothing holds it)."""
    filename = small_disk / "scan.h5"
    filler = small_disk / "filler.bin"
    npoints = 60
    real_check = NexusFile._check_disk_space

    def check_then_fill(self: NexusFile, channel: str, first: int, data: Any) -> None:
        real_check(self, channel, first, data)
        if first + len(data) > 20 and not filler.exists():
            fill_up(filler)

    monkeypatch.setattr(NexusFile, "_check_disk_space", check_then_fill)
    parked = ParkedFiles()
    with session_writer(redis_url, SESSION, OPTIONS, poll_interval=0.05,
                        parked=parked) as writer:
        with Publisher(SESSION, redis_url, lease=3, retention=120) as publisher:
            publish_mca_scan(publisher, filename, 1, npoints)
            record = wait_scans_done(writer, 1, timeout=60)[0]
    assert filler.exists(), "the disk was never filled"
    assert_record(record, "FAULT", "RUNNING", "DiskSpaceError", "no space left on device",
                  str(filename), "free disk space", "start the writer again")
    assert fds_on(filename), "the file HDF5 could not close is expected to stay open"
    assert str(filename) in parked, "the file HDF5 could not close is not parked"

    filler.unlink()
    monkeypatch.undo()
    with session_writer(redis_url, SESSION, OPTIONS, poll_interval=0.05,
                        parked=parked) as writer:
        wait_until(lambda: bool(writer.scans()) and writer.scans()[0].writer.done(), 60,
                   "the stopped scan completed")
        resumed = writer.scans()
    assert [r.key for r in resumed] == [record.key], [r.as_dict() for r in resumed]
    assert_record(resumed[0], "OFF", "SUCCEEDED", "finished")
    assert fds_on(filename) == [], "the file is still open in this process"
    assert len(parked) == 0, "the file is still parked"
    assert_nothing_lost(filename, record.key, spectra(1, 0, npoints), "SUCCEEDED", "SUCCESS")


#: 32 channels whose first chunks (256 KiB each, padded to whole chunks at the first
#: flush) take 8 MiB: twice the disk, before a tenth of their points are sent.
_WIDE = [f"diode:d{index}" for index in range(32)]


def test_writer_never_fills_the_disk_itself_with_chunks_it_allocates(
        redis_url: str, tmp_path: Path, small_disk: Path) -> None:
    """Nothing else writes there and no free space is required: the writer still stops
    the scan before HDF5 meets a full disk, counting the whole chunks it will allocate
    and the points it holds, so that the file closes cleanly with its message."""
    filename = small_disk / "wide.h5"
    npoints = 40_000
    options = fast_options(chunk_bytes=1 << 18)
    with session_writer(redis_url, SESSION, options, poll_interval=0.05) as writer:
        with Publisher(SESSION, redis_url, lease=3, retention=120) as publisher:
            info = loopscan_info(filename, npoints)
            info["acquisition_chain"]["timer"]["scalars"] = _WIDE
            scan = publisher.create_scan(info, name="wide", number=1)
            scan.add_channel(TIME, "float64", subscan="timer", unit="s")
            for name in _WIDE:
                scan.add_channel(name, "float64", subscan="timer")
            scan.prepare()
            for first in range(0, npoints, 2000):
                index = np.arange(first, first + 2000, dtype=np.float64)
                scan.send({TIME: index, **{name: index + n for n, name in enumerate(_WIDE)}})
            scan.end()
            (record,) = wait_scans_done(writer, 1, timeout=60)
    assert_record(record, "FAULT", "RUNNING", "DiskSpaceError", "disk full", str(filename))
    note = writer_note(filename, record.key)
    assert note["status"] == "RUNNING" and "disk full" in str(note["message"]), note
    with h5py.File(filename, "r") as h5:
        assert h5.attrs["NX_class"] == "NXroot"
