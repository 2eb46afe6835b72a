"""``nexus-writer-demo``: publishes simulated scans into an embedded Redis and reads them back."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import h5py
import pytest

from nexus_writer_service.cli import demo
from tango_devices import demo as tango_demo
from tests.nxcheck import nxcheck_errors
from tests.writer_support import process_alive


def test_demo_reads_back_what_it_published(capsys, tmp_path):
    assert demo.main(["--scan", "ascan", "--scan", "timescan", "--scan", "lima",
                      "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    read_back, written = out.split("read back from Redis", 1)[1].split("written by the NeXus")
    written, masters = written.split("master files")
    read_back = read_back.strip().splitlines()[2:]
    assert len(read_back) == 3
    ascan, timescan, lima = (line.split() for line in read_back)
    assert ascan[:6] == ["1", "ascan", "6", "11", "0", "SUCCESS"]
    assert timescan[5] == "ABORTED"
    assert lima[4] == "25" and lima[5] == "SUCCESS"
    assert list(tmp_path.rglob("*.h5"))
    files = [line.split() for line in written.strip().splitlines()[2:]]
    assert [f[:3] for f in files] == [["1_ascan", "OFF", "SUCCEEDED"],
                                      ["2_timescan", "OFF", "SUCCEEDED"],
                                      ["3_loopscan", "OFF", "SUCCEEDED"]]
    assert all(f[4].startswith(str(tmp_path)) for f in files)
    # the scans as BLISS's master files show them, named <dataset file>_<entry>
    levels = dict(line.split() for line in masters.strip().splitlines()[1:])
    assert set(levels) == {"dataset_collection", "proposal"}
    with h5py.File(levels["proposal"], "r") as h5:
        assert sorted(h5) == ["demo_1_1.1", "demo_2_2.1", "demo_3_3.1"]
        assert h5["demo_1_1.1/title"][()] == b"ascan samy 0 1 10 0.1"


def test_demo_against_a_given_redis(capsys, redis_url, tmp_path):
    assert demo.main(["--redis-url", redis_url, "--scan", "ct", "--root", str(tmp_path)]) == 0
    assert "embedded Redis" not in capsys.readouterr().out


def test_demo_reports_an_unknown_scan(capsys, tmp_path):
    assert demo.main(["--scan", "nonsense", "--root", str(tmp_path)]) != 0
    assert "nonsense" in capsys.readouterr().err


# -- the Tango demo: embedded Redis + sqlite Tango DB + the real NexusWriterService --

def _rows(out: str) -> list[list[str]]:
    table = out.split("\nscan ", 1)[1].split("\n\n", 1)[0]
    return [line.split() for line in table.strip().splitlines()[1:]]


@pytest.mark.slow
def test_tango_demo_writes_valid_files_through_the_device(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("TANGO_HOST", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    code = tango_demo.main(["--scan", "ascan", "--scan", "lima", "--scan", "failed",
                            "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "(embedded, pid" in out and "(embedded sqlite, pid" in out
    assert "registered id00/bliss_nxwriter/demo in NexusWriterService/demo" in out
    assert "written " in out  # progress as the device reports it
    rows = _rows(out)
    assert [r[:6] for r in rows] == [
        ["1_ascan", "ascan", "SUCCESS", "OFF", "11/11", "valid"],
        ["2_loopscan", "lima", "SUCCESS", "OFF", "25/25", "valid"],
        ["3_ascan", "failed", "FAILED", "OFF", "5/11", "valid"],
    ]
    (run,) = tmp_path.iterdir()
    files = sorted(p.name for p in run.rglob("demo_*.h5"))
    assert files == ["demo_1.h5", "demo_2.h5", "demo_3.h5"]
    with h5py.File(run / "demo" / "demo_1.h5", "r") as f:
        assert f["1.1/measurement"]
    assert (run / "nexus-writer.log").read_text().count("writing scan") == 3


@pytest.mark.slow
def test_tango_demo_with_blissdata_writes_valid_files_from_blissdata_scans(
        capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("TANGO_HOST", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    code = tango_demo.main(["--data-source", "blissdata", "--scan", "ascan", "--scan", "lima",
                            "--scan", "sequence", "--count-time", "0.01",
                            "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "(embedded with the RedisJSON and RediSearch modules, pid" in out
    assert [r[:6] for r in _rows(out)] == [
        ["1_ascan", "ascan", "SUCCESS", "OFF", "11/11", "valid"],
        ["2_loopscan", "lima", "SUCCESS", "OFF", "25/25", "valid"],
        ["3_sequence", "sequence", "SUCCESS", "OFF", "0/?", "valid"],
        ["4_ascan", "ascan", "SUCCESS", "OFF", "11/11", "valid"],
        ["5_loopscan", "loopscan", "SUCCESS", "OFF", "10/10", "valid"],
    ]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, sigint_ignored", [
    (signal.SIGINT, 0, False),
    (signal.SIGTERM, 0, False),
    (signal.SIGTERM, 0, True),  # started from a script that ignores SIGINT
    (signal.SIGKILL, -signal.SIGKILL, False),  # nothing cleans up: the kernel does
], ids=["SIGINT", "SIGTERM", "SIGTERM-sigint-ignored", "SIGKILL"])
def test_tango_demo_keep_running_stops_everything_it_started(
        tmp_path, sig: int, code: int, sigint_ignored: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TANGO_HOST", "REDIS_URL")}
    demo_process = subprocess.Popen(
        [sys.executable, "-m", "tango_devices.demo", "--scan", "ct", "--keep-running",
         "--root", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None)
    lines: list[str] = []
    try:
        assert demo_process.stdout is not None
        for line in demo_process.stdout:
            lines.append(line)
            if "keeps running" in line:
                break
        out = "".join(lines)
        assert "keeps running" in out, out
        pids = [int(p) for p in re.findall(r"pid (\d+)", out)]
        assert len(pids) == 3, out
        assert all(process_alive(pid) for pid in pids)
        demo_process.send_signal(sig)
        assert demo_process.wait(60) == code
        deadline = time.monotonic() + 30
        while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(process_alive(pid) for pid in pids)
    finally:
        if demo_process.poll() is None:
            demo_process.kill()
            demo_process.wait(10)
        assert demo_process.stdout is not None
        demo_process.stdout.close()


def test_tango_demo_rejects_an_unknown_scan_type(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        tango_demo.main(["--scan", "nonsense", "--root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "nonsense" in capsys.readouterr().err


def test_demo_with_blissdata_writes_valid_files_from_blissdata_scans(capsys, tmp_path):
    assert demo.main(["--data-source", "blissdata", "--scan", "ascan", "--scan", "mca",
                      "--scan", "lima", "--scan", "sequence", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "with the RedisJSON and RediSearch modules" in out
    assert "read back from Redis" not in out  # our own reader has nothing to read
    published, written = out.split("written by the NeXus writer from blissdata scans")
    assert published.count("esrf:scan:") == 6  # 3 scans, a sequence and its 2 scans
    table, masters = written.strip().split("\n\n", 1)
    assert masters.startswith("master files")
    rows = [line.split() for line in table.splitlines()[2:]]
    assert [r[:3] for r in rows] == [
        ["1_ascan", "OFF", "SUCCEEDED"], ["2_ascan", "OFF", "SUCCEEDED"],
        ["3_loopscan", "OFF", "SUCCEEDED"], ["4_sequence", "OFF", "SUCCEEDED"],
        ["5_ascan", "OFF", "SUCCEEDED"], ["6_loopscan", "OFF", "SUCCEEDED"]]
    files = sorted({r[4].split("::")[0] for r in rows})
    assert len(files) == 4 and all(f.startswith(str(tmp_path)) for f in files)
    for filename in files:
        assert nxcheck_errors(filename, ignore_entry_names=True) == [], filename
