"""The external saving example against a real Redis: its files equal the simulator's truth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.data import EndReason, Publisher
from nexus_writer_service.examples.external_saving import hdf5_name, save_session
from nexus_writer_service.simulation import SimulationOptions, TruthScan, read_truth, simulate

SCANS = ("ascan", "mca", "lima", "timescan")
NPOINTS = 12
MODULE = "nexus_writer_service.examples.external_saving"


def publish(redis_url: str, tmp_path: Path, session: str, scans: tuple[str, ...]
            ) -> dict[str, TruthScan]:
    truth = tmp_path / f"truth-{session}.h5"
    simulate(SimulationOptions(session=session, scans=scans, redis_url=redis_url,
                               npoints=NPOINTS, root=str(tmp_path / "sim"), truth=str(truth)))
    return read_truth(truth)


def assert_file_equals_truth(path: str, truth: TruthScan) -> None:
    with h5py.File(path, "r") as h5:
        assert h5.attrs["scan_key"] == truth.key
        assert h5.attrs["scan_number"] == truth.number
        assert h5.attrs["end_reason"] == truth.end_reason.value
        assert h5.attrs["end_message"] == truth.end_message
        assert set(h5["channels"]) == {hdf5_name(name) for name in truth.channels}
        for name, expected in truth.channels.items():
            dataset = h5["channels"][hdf5_name(name)]
            assert dataset.attrs["name"] == name
            assert dataset.attrs["unit"] == (truth.channel_info[name]["unit"] or "")
            got = dataset[()]
            assert got.dtype == expected.dtype, name
            assert np.array_equal(got, expected), name
        assert set(h5["lima"]) == {hdf5_name(name) for name in truth.limas}
        for name, lima in truth.limas.items():
            group = h5["lima"][hdf5_name(name)]
            filenames = [f.decode() for f in group["filename"][()]]
            references = [(f, group.attrs["path_in_file"], int(i))
                          for f, i in zip(filenames, group["index_in_file"][()])]
            assert references == lima.references
            assert len(references) == lima.last_image_saved + 1 > 0


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def test_every_saved_scan_equals_the_published_truth(redis_url, tmp_path):
    output = tmp_path / "out"
    stop = threading.Event()
    notified: list[str] = []
    result: dict[str, Any] = {}

    def listen() -> None:
        try:
            result["files"] = save_session("demo", str(output), redis_url, stop=stop,
                                           from_next=False, max_scans=len(SCANS),
                                           on_scan_saved=notified.append, poll_interval=0.05)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=listen, name="external-saving")
    thread.start()
    try:
        truth = publish(redis_url, tmp_path, "demo", SCANS)
        thread.join(timeout=20)
        assert not thread.is_alive(), "save_session did not return after max_scans"
    finally:
        stop.set()
        thread.join(timeout=5)
    assert "error" not in result, result.get("error")
    assert [scan.kind for scan in truth.values()] == list(SCANS)
    expected = [str(output / f"demo_{scan.number}.h5") for scan in truth.values()]
    assert result["files"] == notified == expected
    for path, scan in zip(expected, truth.values()):
        assert_file_equals_truth(path, scan)
    with h5py.File(expected[SCANS.index("timescan")], "r") as h5:
        assert h5.attrs["end_reason"] == EndReason.ABORTED.value


def test_variable_length_channel_is_saved_as_hdf5_vlen(redis_url, tmp_path):
    points = [np.arange(n, dtype="<f4") for n in (3, 0, 5, 5)]
    with Publisher("vlen", redis_url, lease=2.0) as publisher:
        with publisher.create_scan({"title": "ragged"}) as scan:
            scan.add_channel("fluo:peaks", "<f4", (-1,), unit="keV")
            scan.add_channel("cam:roi", ">u2", (2, 3))
            scan.send({"fluo:peaks": points[:2], "cam:roi": np.zeros((2, 2, 3), ">u2")})
            scan.send({"fluo:peaks": points[2:], "cam:roi": np.ones((2, 2, 3), ">u2")})
            scan.end()
    (path,) = save_session("vlen", str(tmp_path), redis_url, from_next=False, max_scans=1,
                           timeout=5, poll_interval=0.05)
    with h5py.File(path, "r") as h5:
        peaks = h5["channels/fluo_peaks"]
        assert h5py.check_vlen_dtype(peaks.dtype) == np.dtype("<f4")
        assert peaks.attrs["unit"] == "keV"
        assert all(np.array_equal(got, sent) for got, sent in zip(peaks[()], points))
        assert len(peaks) == len(points)
        roi = h5["channels/cam_roi"][()]
        assert roi.dtype == np.dtype(">u2") and roi.shape == (4, 2, 3)
        assert h5.attrs["end_reason"] == "SUCCESS"


def test_stop_set_before_any_scan_returns_no_file(redis_url, tmp_path):
    stop = threading.Event()
    stop.set()
    assert save_session("idle", str(tmp_path), redis_url, stop=stop, poll_interval=0.05) == []


def start_cli(redis_url: str, tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    stderr = tmp_path / "cli.err"
    with open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", MODULE, "cli", str(tmp_path / "out"),
             "--redis-url", redis_url, *args],
            stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return process, stderr


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=5)


def test_command_line_saves_the_next_scan_and_exits(redis_url, tmp_path):
    process, stderr = start_cli(redis_url, tmp_path, "--max-scans", "1")
    try:
        wait_for(lambda: "listening" in stderr.read_text(), 15, "the command listening")
        (truth,) = publish(redis_url, tmp_path, "cli", ("ascan",)).values()
        out, _ = process.communicate(timeout=15)
        assert process.returncode == 0, stderr.read_text()
    finally:
        stop_process(process)
    path = tmp_path / "out" / f"cli_{truth.number}.h5"
    assert out.split() == [str(path)]
    assert_file_equals_truth(str(path), truth)


def test_command_line_ctrl_c_exits_cleanly(redis_url, tmp_path):
    process, stderr = start_cli(redis_url, tmp_path)
    try:
        wait_for(lambda: "listening" in stderr.read_text(), 15, "the command listening")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
        assert process.returncode == 130
        assert "Traceback" not in stderr.read_text()
    finally:
        stop_process(process)


@pytest.mark.parametrize("args", [["--max-scans", "0"], []])
def test_command_line_rejects_bad_arguments(args):
    process = subprocess.run([sys.executable, "-m", MODULE, *args], capture_output=True,
                             text=True, timeout=30)
    assert process.returncode == 2
    assert "usage" in process.stderr
