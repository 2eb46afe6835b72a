"""The simulator against a real Redis: what it publishes reads back equal to its truth file."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import pytest
import redis

from nexus_writer_service.cli.simulate import main
from nexus_writer_service.data import (
    EndReason,
    EventType,
    LimaProgress,
    get_scan_node,
    get_session_node,
)
from nexus_writer_service.errors import EventTimeout
from nexus_writer_service.simulation import (
    PublishedScan,
    SimulationOptions,
    TruthScan,
    read_truth,
    scan_names,
    simulate,
)

SMALL = 12


@dataclass
class ReadBack:
    """A scan as a reader sees it through ``walk_events``."""

    info: dict[str, Any]
    nodes: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, list[np.ndarray]] = field(default_factory=dict)
    lima: dict[str, list[LimaProgress]] = field(default_factory=dict)
    events: list[tuple[EventType, str]] = field(default_factory=list)
    end_reason: EndReason | None = None
    end_message: str = ""

    def data(self, name: str) -> np.ndarray:
        node = self.nodes[name]
        chunks = self.channels.get(name) or [np.empty((0,) + node.shape, dtype=node.dtype)]
        return np.concatenate(chunks)


def read_back(client: redis.Redis, key: str) -> ReadBack:
    scan_node = get_scan_node(key, client=client)
    result = ReadBack(info=scan_node.info)
    for event, node, event_data in scan_node.walk_events(timeout=10):
        result.events.append((event, node.name))
        if event is EventType.NEW_NODE:
            result.nodes[node.name] = node
        elif event is EventType.NEW_DATA and node.type.value == "channel":
            chunks = result.channels.setdefault(node.name, [])
            assert event_data.first_index == sum(len(c) for c in chunks)
            chunks.append(event_data.data)
        elif event is EventType.NEW_DATA and node.type.value == "lima":
            result.lima.setdefault(node.name, []).append(event_data.data)
        elif event is EventType.END_SCAN:
            result.end_reason, result.end_message = event_data.reason, event_data.message
    return result


def assert_equal_to_truth(back: ReadBack, truth: TruthScan) -> None:
    assert back.info == truth.scan_info
    assert back.end_reason is truth.end_reason
    assert back.end_message == truth.end_message
    subscans = set(truth.scan_info["acquisition_chain"])
    assert set(back.nodes) == subscans | set(truth.channels) | set(truth.limas)
    for name, expected in truth.channels.items():
        node = back.nodes[name]
        assert node.subscan == truth.channel_info[name]["subscan"]
        assert node.unit == truth.channel_info[name]["unit"]
        got = back.data(name)
        assert got.dtype == expected.dtype, name
        assert got.shape == expected.shape, name
        assert np.array_equal(got, expected), name
        if name in back.channels:
            first_data = back.events.index((EventType.NEW_DATA, name))
            assert back.events.index((EventType.NEW_NODE, name)) < first_data
    for name, lima in truth.limas.items():
        node = back.nodes[name]
        last = back.lima[name][-1]
        assert last == LimaProgress(lima.last_image_acquired, lima.last_image_saved)
        assert lima.last_image_saved + 1 == len(lima.references)
        for frame, (filename, path, index) in enumerate(lima.references):
            assert node.image_reference(frame) == (filename, lima.info["file_format"], path,
                                                   index)
    assert back.events[-1][0] is EventType.END_SCAN


def run(redis_url: str, tmp_path, **kwargs: Any) -> tuple[list[PublishedScan], dict]:
    truth = str(tmp_path / f"truth-{kwargs.get('session', 'demo')}.h5")
    options = SimulationOptions(redis_url=redis_url, root=str(tmp_path / "data"),
                                truth=truth, **kwargs)
    published = simulate(options)
    return published, read_truth(truth)


def test_every_scan_type_reads_back_bit_exact_equal_to_its_truth(
    redis_url, redis_client, tmp_path
):
    published, truth = run(redis_url, tmp_path, npoints=SMALL, nchannels=110)
    assert [scan.kind for scan in published] == list(scan_names())
    assert list(truth) == [scan.key for scan in published]
    for scan in published:
        expected = truth[scan.key]
        assert expected.kind == scan.kind and expected.npoints == scan.npoints
        assert_equal_to_truth(read_back(redis_client, scan.key), expected)


@pytest.mark.slow
def test_million_point_scan_reads_back_without_loss(redis_url, redis_client, tmp_path):
    published, truth = run(redis_url, tmp_path, scans=("long",), block_size=1000)
    (scan,) = published
    assert scan.npoints == 1_000_000 and scan.end_reason is EndReason.SUCCESS
    expected = truth[scan.key]
    back = read_back(redis_client, scan.key)
    for name in expected.channels:
        assert len(back.channels[name]) == 1000
    assert_equal_to_truth(back, expected)


def test_same_seed_gives_same_data_and_another_seed_other_data(redis_url, tmp_path):
    kwargs: dict[str, Any] = dict(npoints=SMALL, nchannels=12, seed=7)
    first, truth1 = run(redis_url, tmp_path, session="first", **kwargs)
    _, truth2 = run(redis_url, tmp_path, session="second", **kwargs)
    kwargs["seed"] = 8
    _, truth3 = run(redis_url, tmp_path, session="third", **kwargs)
    for scan1, scan2, scan3 in zip(truth1.values(), truth2.values(), truth3.values()):
        assert scan1.kind == scan2.kind == scan3.kind
        assert scan1.channels.keys() == scan2.channels.keys() == scan3.channels.keys()
        for name, data in scan1.channels.items():
            assert np.array_equal(data, scan2.channels[name]), (scan1.kind, name)
        for name, lima in scan1.limas.items():
            assert np.array_equal(lima.checksums, scan2.limas[name].checksums)
        assert any(not np.array_equal(data, scan3.channels[name])
                   for name, data in scan1.channels.items()), scan1.kind
    assert len(first) == len(scan_names())


def test_repeated_scans_get_new_numbers_and_new_data(redis_url, tmp_path):
    published, truth = run(redis_url, tmp_path, scans=("ascan",), repeat=3)
    assert [scan.number for scan in published] == [1, 2, 3]
    diodes = [truth[scan.key].channels["diode:diode1"] for scan in published]
    assert not np.array_equal(diodes[0], diodes[1])
    filenames = {truth[scan.key].scan_info["filename"] for scan in published}
    assert len(filenames) == 3


def test_timescan_ends_aborted_and_failed_scan_ends_failed(redis_url, redis_client, tmp_path):
    published, _ = run(redis_url, tmp_path, scans=("timescan", "failed", "ascan"), npoints=10)
    ends = {}
    session = get_session_node("demo", client=redis_client)
    with pytest.raises(EventTimeout):
        for event, node, event_data in session.walk_events(timeout=0.5, poll_interval=0.05):
            if event is EventType.END_SCAN:
                ends[node.key] = event_data.reason
    timescan, failed, ascan = published
    assert ends == {timescan.key: EndReason.ABORTED, failed.key: EndReason.FAILED,
                    ascan.key: EndReason.SUCCESS}
    assert timescan.npoints == 10 and failed.npoints == 5
    back = read_back(redis_client, failed.key)
    assert back.end_reason is EndReason.FAILED
    assert "did not answer" in back.end_message
    assert len(back.data("diode:diode1")) == 5
    assert back.info["npoints"] == 10
    assert read_back(redis_client, timescan.key).info["npoints"] == 0


def test_lima_files_hold_the_frames_at_their_image_references(
    redis_url, redis_client, tmp_path
):
    published, truth = run(redis_url, tmp_path, scans=("lima",), npoints=23)
    (scan,) = published
    expected = truth[scan.key]
    lima = expected.limas["lima_simulator:image"]
    node = read_back(redis_client, scan.key).nodes["lima_simulator:image"]
    assert len(lima.references) == 23
    files = sorted({ref[0] for ref in lima.references})
    assert files == list(scan.lima_files)
    assert [os.path.basename(f) for f in files] == [
        "lima_simulator_0000.h5", "lima_simulator_0001.h5", "lima_simulator_0002.h5"]
    roi = expected.channels["lima_simulator:roi_counters:roi1_sum"]
    for frame in range(23):
        filename, file_format, path, index = node.image_reference(frame)
        assert filename.startswith(str(tmp_path / "data"))
        with h5py.File(filename, "r") as h5:
            dataset = h5[path]
            assert dataset.shape[1:] == (64, 80) and dataset.dtype == np.uint16
            assert dataset.shape[0] == (10 if frame < 20 else 3)
            image = dataset[index]
        assert zlib.crc32(image.tobytes()) == lima.checksums[frame]
        assert image[24:40, 30:50].sum(dtype=np.float64) == roi[frame]


def test_amesh_scan_info_lets_a_writer_reshape_the_grid(redis_url, redis_client, tmp_path):
    published, _ = run(redis_url, tmp_path, scans=("amesh",), npoints=20)
    back = read_back(redis_client, published[0].key)
    info = back.info
    n1, n2 = info["npoints1"], info["npoints2"]
    assert (n1, n2) == (4, 5) and info["npoints"] == n1 * n2 == published[0].npoints
    assert info["data_dim"] == 2 and info["title"] == "amesh samy 0 1 3 samz 0 0.5 4 0.1"
    fast = back.data("axis:samy").reshape(n2, n1)
    slow = back.data("axis:samz").reshape(n2, n1)
    assert np.allclose(fast, np.linspace(info["start"][0], info["stop"][0], n1)[None, :])
    assert np.allclose(slow, np.linspace(info["start"][1], info["stop"][1], n2)[:, None])
    assert info["channels"]["axis:samy"]["axis_points"] == n1


def test_two_top_masters_give_two_subscans_of_their_own_lengths(
    redis_url, redis_client, tmp_path
):
    published, _ = run(redis_url, tmp_path, scans=("two_top_masters",), npoints=7)
    back = read_back(redis_client, published[0].key)
    assert list(back.info["acquisition_chain"]) == ["axis", "timer2"]
    assert [n for n, node in back.nodes.items() if node.type.value == "subscan"] == [
        "axis", "timer2"]
    assert back.nodes["fast_monitor:mon"].subscan == "timer2"
    assert len(back.data("axis:samy")) == 7 and len(back.data("fast_monitor:mon")) == 14


def test_mca_scan_publishes_4096_channel_uint32_spectra_and_statistics(
    redis_url, redis_client, tmp_path
):
    published, _ = run(redis_url, tmp_path, scans=("mca",), npoints=5)
    back = read_back(redis_client, published[0].key)
    spectra = back.data("mca1:spectrum_det0")
    assert spectra.shape == (5, 4096) and spectra.dtype == np.uint32
    live, real = back.data("mca1:livetime_det0"), back.data("mca1:realtime_det0")
    assert np.all(live < real)
    assert np.allclose(back.data("mca1:ocr_det0") * real, spectra.sum(axis=1))
    assert np.allclose(back.data("mca1:icr_det0") * live, spectra.sum(axis=1))
    assert back.info["acquisition_chain"]["axis"]["spectra"] == ["mca1:spectrum_det0"]


def test_many_channels_scan_declares_nchannels_counters(redis_url, redis_client, tmp_path):
    published, _ = run(redis_url, tmp_path, scans=("many_channels",), nchannels=150, npoints=3)
    back = read_back(redis_client, published[0].key)
    counters = [name for name in back.nodes if name.startswith("sim:")]
    assert len(counters) == 150
    assert {back.nodes[name].dtype.name for name in counters} >= {"float32", "uint16", "int64"}


def test_scan_info_looks_like_bliss(redis_url, redis_client, tmp_path):
    published, _ = run(redis_url, tmp_path, scans=("ascan", "a2scan"), npoints=11,
                       session="id00")
    ascan = read_back(redis_client, published[0].key).info
    a2scan = read_back(redis_client, published[1].key).info
    assert ascan["title"] == "ascan samy 0 1 10 0.1" and ascan["type"] == "ascan"
    assert a2scan["title"] == "a2scan samy 0 1 samz -0.5 0.5 10 0.1"
    assert ascan["filename"] == str(tmp_path / "data" / "id00" / "id00_1.h5")
    assert ascan["scan_nb"] == 1 and ascan["npoints"] == 11 and ascan["count_time"] == 0.1
    chain = ascan["acquisition_chain"]["axis"]
    assert chain["master"]["scalars"] == ["axis:samy"]
    assert "diode:diode1" in chain["scalars"]
    positioners = ascan["positioners"]
    assert positioners["positioners_end"]["samy"] == 1.0
    assert positioners["positioners_units"]["samy"] == "mm"
    assert ascan["sample"]["name"] and ascan["plots"][0]["kind"] == "curve-plot"
    assert datetime.datetime.fromisoformat(ascan["start_time"]).tzinfo is not None


def test_count_time_paces_publishing(redis_url, tmp_path):
    published, _ = run(redis_url, tmp_path, scans=("loopscan",), npoints=6, count_time=0.05)
    assert published[0].duration >= 0.3
    assert published[0].end_reason is EndReason.SUCCESS


def test_stop_event_aborts_the_running_scan_and_publishes_no_more(
    redis_url, redis_client, tmp_path
):
    stop = threading.Event()
    results: list[PublishedScan] = []
    options = SimulationOptions(redis_url=redis_url, root=str(tmp_path), npoints=1000,
                                count_time=0.01, scans=("loopscan", "ascan"))
    worker = threading.Thread(target=lambda: results.extend(simulate(options, stop=stop)))
    worker.start()
    try:
        session = get_session_node("demo", client=redis_client)
        for event, node, _ in session.walk_events(timeout=10, poll_interval=0.05):
            if event is EventType.NEW_NODE:
                break
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    (scan,) = results
    assert scan.end_reason is EndReason.ABORTED and scan.npoints < 1000
    assert read_back(redis_client, scan.key).end_reason is EndReason.ABORTED


def test_cli_in_process_prints_one_line_per_scan(redis_url, redis_client, tmp_path, capsys):
    truth = tmp_path / "truth.h5"
    code = main(["--redis-url", redis_url, "--session", "cli", "--scan", "ct", "--scan",
                 "timescan", "--npoints", "4", "--root", str(tmp_path), "--truth", str(truth),
                 "--seed", "3", "--log", "info", "--reconnect-timeout", "2.5"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:3] == ["ct", "#1", "nws:cli:scan:1"]
    assert "4 points" in lines[1] and "ABORTED" in lines[1]
    scans = read_truth(truth)
    assert [scan.kind for scan in scans.values()] == ["ct", "timescan"]
    for key, expected in scans.items():
        assert_equal_to_truth(read_back(redis_client, key), expected)


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nexus_writer_service.cli.simulate", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def _env_without_redis_url() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "REDIS_URL"}


def test_cli_as_subprocess_takes_the_url_from_the_environment(redis_url, tmp_path):
    env = dict(_env_without_redis_url(), REDIS_URL=redis_url)
    result = _run_cli("--scan", "ascan", "--scan", "lima", "--npoints", "3", "--root",
                      str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ascan", "lima"]
    assert (tmp_path / "demo" / "scan0002" / "lima_simulator_0000.h5").exists()


def test_cli_unknown_scan_name_fails_with_a_clear_message(redis_url):
    result = _run_cli("--redis-url", redis_url, "--scan", "nope")
    assert result.returncode == 2
    assert "unknown scan 'nope'" in result.stderr and "ascan" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_cli_without_redis_url_fails_with_a_clear_message(tmp_path):
    result = _run_cli("--scan", "ct", "--root", str(tmp_path), env=_env_without_redis_url())
    assert result.returncode == 2
    assert result.stderr.startswith("nexus-writer-simulate: error: no Redis URL: pass --redis-url")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_with_unreachable_redis_fails_with_a_clear_message(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code_and_err = _run_cli("--redis-url", f"redis://127.0.0.1:{port}/0", "--scan", "ct",
                            "--root", str(tmp_path))
    assert code_and_err.returncode == 1
    assert "Redis is unreachable" in code_and_err.stderr
    assert len(code_and_err.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--npoints", "0"], "--npoints: must be >= 1"),
    (["--count-time", "-1"], "--count-time: must be a finite number >= 0"),
    (["--count-time", "inf"], "--count-time: must be a finite number >= 0"),
    (["--seed", "-3"], "--seed: must be >= 0"),
    (["--nchannels", "many"], "--nchannels: 'many' is not an integer"),
    (["--log", "loud"], "--log: invalid choice"),
    (["--session", "bad name"], "invalid session name 'bad name'"),
    (["--lease", "0.1"], "lease must be > 0.2"),
    (["--reconnect-timeout", "-1"], "reconnect_timeout must be finite and >= 0 seconds"),
])
def test_cli_bad_arguments_exit_non_zero_in_process(
    redis_url, tmp_path, capsys, args, message
):
    code = main(["--redis-url", redis_url, "--root", str(tmp_path), "--scan", "ct", *args])
    assert code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""
