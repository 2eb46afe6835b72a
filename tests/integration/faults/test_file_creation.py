"""How scan files and master files come into existence, and what a refused scan leaves.

* a new file has exactly ``file_mode`` from the first instant its name is visible
  (a separate process polls ``os.stat`` on the names while they are created);
* a file that appears while the writer creates it is opened, never replaced;
* a scan refused before anything is written (a malformed name, an entry of another
  program) leaves no file behind, and an existing file byte-identical;
* a symbolic link swapped between the path check and the open (a directory on the
  way now leads outside the allowed roots) is caught on the file really opened: the
  scan goes FAULT naming the path and the roots, nothing outside is created or changed.

Real files, real h5py, a real Redis and the real session writer; the swaps are done
by wrapping the writer's open function so that they happen just before the real open.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import h5py
import numpy as np
import pytest
import redis

from nexus_writer_service.data import Publisher
from nexus_writer_service.errors import FileLockedError, NexusWriterError, PathNotAllowedError
from nexus_writer_service.io import files, masterfiles
from nexus_writer_service.io.files import open_or_create
from nexus_writer_service.io.nexus import NexusFile
from nexus_writer_service.subscribers import ScanRecord, SubscriberState
from tests.integration.faults.conftest import (
    assert_fault, fast_options, publish_loopscan, run_session_scans, text)
from tests.integration.faults.test_hostile_scans import RawScan

SESSION = "creation"

#: Polls ``os.stat`` on argv[2] names ``scan<i>.h5`` of directory argv[1] in a tight
#: loop, and writes the mode each had the first time it was seen (JSON) to argv[3].
POLLER = r"""
import json, os, stat, sys, time
directory, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pending = [os.path.join(directory, f"scan{i}.h5") for i in range(count)]
first = {}
print("ready", flush=True)
deadline = time.monotonic() + 60
while pending and time.monotonic() < deadline:
    for path in pending[:4]:
        try:
            first[path] = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            pass
    pending = [path for path in pending if path not in first]
with open(out, "w") as stream:
    json.dump(first, stream)
"""


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def run_scans(redis_url: str, save: Any, *publishers: Callable[[Publisher], Any]
              ) -> list[ScanRecord]:
    """A session writer writes what each of ``publishers`` publishes, in turn."""
    return run_session_scans(redis_url, SESSION, save, *publishers)


def assert_written(record: ScanRecord, filename: Path, entry: str) -> None:
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r", locking=False) as h5:
        assert text(h5[f"{entry}/writer/status"][()]) == "SUCCEEDED"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


# -- file mode from the first instant --------------------------------------------------


@pytest.mark.parametrize("file_mode", [0o600, 0o666], ids=["600", "666"])
def test_new_files_have_exactly_file_mode_from_the_first_instant_they_are_visible(
        tmp_path: Path, processes: list[subprocess.Popen[Any]], file_mode: int) -> None:
    """With umask 022 a file created by open() first has 644: neither 600 nor 666."""
    directory = tmp_path / "files"
    directory.mkdir()
    count = 60
    seen = tmp_path / "seen.json"
    poller = subprocess.Popen([sys.executable, "-c", POLLER, str(directory), str(count),
                               str(seen)], stdout=subprocess.PIPE)
    processes.append(poller)
    assert poller.stdout is not None and poller.stdout.readline().strip() == b"ready"
    options = fast_options(file_mode=file_mode)
    with umask(0o022):
        for index in range(count):
            path = directory / f"scan{index}.h5"
            if index % 2:
                NexusFile(str(path), options).close()
            else:
                masterfiles.link_entries(str(path), str(tmp_path / "scan.h5"), ["1.1"], (),
                                         1.0, file_mode)
    assert poller.wait(60) == 0
    first = json.loads(seen.read_text())
    assert len(first) == count, f"the poller saw {len(first)} of {count} files"
    wrong = {name: oct(mode) for name, mode in first.items() if mode != file_mode}
    assert wrong == {}, f"files first visible with another mode than {oct(file_mode)}"
    assert sorted(os.listdir(directory)) == sorted(f"scan{i}.h5" for i in range(count)), \
        "temporary files left behind"
    for index in range(count):
        assert stat.S_IMODE((directory / f"scan{index}.h5").stat().st_mode) == file_mode


@pytest.fixture
def vfat_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB vfat image mounted on a directory of ``tmp_path`` (root and dosfstools
    needed), unmounted at the end. vfat refuses most ``chmod`` calls (EPERM)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a vfat image needs root")
    mkfs = shutil.which("mkfs.vfat") or shutil.which("mkfs.fat")
    if mkfs is None:
        pytest.skip("mkfs.vfat (dosfstools) is not installed")
    image, mount_point = tmp_path / "vfat.img", tmp_path / "vfat"
    image.write_bytes(b"\0" * (2 << 20))
    mount_point.mkdir()
    subprocess.run([mkfs, str(image)], check=True, capture_output=True)
    mounted = subprocess.run(["mount", "-o", "loop,fmask=0022,dmask=0022", "-t", "vfat",
                              str(image), str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a vfat image here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        unmounted = subprocess.run(["umount", str(mount_point)], capture_output=True,
                                   text=True)
        assert unmounted.returncode == 0, unmounted.stderr


def test_file_mode_the_file_system_refuses_is_a_clear_error_and_leaves_no_file(
        vfat_disk: Path) -> None:
    path = vfat_disk / "scan.h5"
    with pytest.raises(PathNotAllowedError) as info:
        NexusFile(str(path), fast_options(file_mode=0o640))
    message = str(info.value)
    assert str(path) in message and "0o640 (file_mode)" in message, message
    assert "set file_mode" in message and "not created" in message, message
    assert os.listdir(vfat_disk) == []


def test_file_appearing_while_it_is_created_is_opened_never_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program creates the file between the writer's "not there" and its link."""
    path = tmp_path / "scan.h5"
    real_new_file = files._new_file

    def other_program_first(*args: Any) -> Any:
        with h5py.File(path, "w") as h5:
            h5["other/data"] = np.arange(10.0)
        os.chmod(path, 0o640)
        return real_new_file(*args)

    monkeypatch.setattr(files, "_new_file", other_program_first)
    file, created = open_or_create(str(path), 1.0, file_mode=0o600)
    file.close()
    assert created is None
    with h5py.File(path, "r") as h5:
        np.testing.assert_array_equal(h5["other/data"][()], np.arange(10.0))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640, "an existing file keeps its mode"
    assert os.listdir(tmp_path) == ["scan.h5"], "temporary file left behind"


# -- nothing left by a scan refused before it writes ------------------------------------


def test_scan_refused_before_writing_leaves_no_file_and_existing_files_identical(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    new = tmp_path / "new" / "scan.h5"
    existing = tmp_path / "existing.h5"
    with h5py.File(existing, "w") as h5:
        h5["other/data"] = np.arange(5.0)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["4.1/measurement/diode"] = np.arange(5.0)  # no scan_key: another program's
    before = {existing: existing.read_bytes(), foreign: foreign.read_bytes()}

    def malformed_name(filename: Path, number: int) -> Callable[[Publisher], Any]:
        def publish(publisher: Publisher) -> None:
            info = {"title": "bad name", "npoints": 1, "filename": str(filename)}
            RawScan(redis_client, SESSION, number, info, meta={"name": b"\xffbad"}).end()
        return publish

    records = run_scans(
        redis_url, fast_options(),
        malformed_name(new, 1), malformed_name(existing, 2),
        lambda pub: publish_loopscan(pub, foreign, 4, 3),
        lambda pub: publish_loopscan(pub, tmp_path / "ok.h5", 5, 3))
    for record in records[:2]:
        assert_fault(record, record.key, "name of scan", "not UTF-8")
    assert_fault(records[2], "'4.1'", "another program", "left untouched")
    assert_written(records[3], tmp_path / "ok.h5", "5.1")
    assert not new.exists(), "an empty file was left behind"
    assert os.listdir(new.parent) == []
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path} was modified"


# -- symbolic link swapped between the check and the open -------------------------------


def swap_directory_before_open(monkeypatch: pytest.MonkeyPatch, directory: Path,
                               outside: Path) -> list[str]:
    """Just before the writer's first real open: ``directory`` becomes a symbolic link
    to ``outside`` (the real directory is kept aside). Returns the paths opened."""
    real_open = files._open_existing
    opened: list[str] = []

    def swapping_open(path: str) -> h5py.File:
        if not opened:
            directory.rename(directory.with_name(directory.name + ".real"))
            directory.symlink_to(outside, target_is_directory=True)
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(files, "_open_existing", swapping_open)
    return opened


@pytest.mark.parametrize("exists", [True, False], ids=["existing-file", "new-file"])
def test_directory_swapped_for_a_link_outside_after_the_check_faults_untouched(
        redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        exists: bool) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    (root / "sample").mkdir(parents=True)
    outside.mkdir()
    if exists:
        with h5py.File(outside / "scan.h5", "w") as h5:
            h5["other/data"] = np.arange(5.0)
    before = snapshot(outside)
    filename = root / "sample" / "scan.h5"
    opened = swap_directory_before_open(monkeypatch, root / "sample", outside)
    bad, good = run_scans(redis_url, fast_options(allowed_roots=(str(root),)),
                          lambda pub: publish_loopscan(pub, filename, 1, 3),
                          lambda pub: publish_loopscan(pub, root / "ok" / "scan.h5", 2, 3))
    assert opened and opened[0] == str(filename)
    opened_outside = f"resolves to {str(outside / 'scan.h5')!r}" if exists else \
        f"would be created in {str(outside)!r}"
    assert_fault(bad, "PathNotAllowedError", str(filename), opened_outside,
                 "outside the allowed roots", repr(str(root)), "symbolic link")
    assert bad.writer.urls == []
    assert snapshot(outside) == before, "a file outside the roots was created or changed"
    assert_written(good, root / "ok" / "scan.h5", "2.1")


def test_master_file_directory_swapped_after_the_check_is_refused_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    (root / "collection").mkdir(parents=True)
    outside.mkdir()
    with h5py.File(outside / "master.h5", "w") as h5:
        h5["other/data"] = np.arange(5.0)
    before = snapshot(outside)
    swap_directory_before_open(monkeypatch, root / "collection", outside)
    with pytest.raises(PathNotAllowedError) as info:
        masterfiles.link_entries(str(root / "collection" / "master.h5"),
                                 str(root / "scan.h5"), ["1.1"], (str(root),), 0.5)
    assert "master file" in str(info.value) and repr(str(root)) in str(info.value)
    assert str(outside / "master.h5") in str(info.value)
    assert snapshot(outside) == before


# -- a file this process holds open ------------------------------------------------------


def test_file_held_open_here_without_locking_is_waited_for_like_a_lock(
        tmp_path: Path) -> None:
    """HDF5 refuses to open a file again with other locking flags (an OSError without
    errno, told apart from a file that is not HDF5 without reading the message): the
    writer waits for it as for another process's lock, and opens it once released."""
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as h5:
        h5["data"] = np.arange(3.0)
    holder = h5py.File(path, "r+", locking=False)
    try:
        started = time.monotonic()
        with pytest.raises(FileLockedError, match="locked"):
            open_or_create(str(path), 0.3)
        assert time.monotonic() - started >= 0.3, "not retried"
    finally:
        holder.close()
    file, created = open_or_create(str(path), 0.3)
    file.close()
    assert created is None

    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("not HDF5")
    started = time.monotonic()
    with pytest.raises(NexusWriterError, match="not a valid HDF5 file") as info:
        open_or_create(str(not_hdf5), 5.0)
    assert not isinstance(info.value, FileLockedError)
    assert time.monotonic() - started < 5.0, "retried as if locked"
