"""``nexus-writer-demo``: publishes simulated scans into an embedded Redis and reads them back."""

from __future__ import annotations

from nexus_writer_service.cli import demo


def test_demo_reads_back_what_it_published(capsys, tmp_path):
    assert demo.main(["--scan", "ascan", "--scan", "timescan", "--scan", "lima",
                      "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    read_back, written = out.split("read back from Redis", 1)[1].split("written by the NeXus")
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


def test_demo_against_a_given_redis(capsys, redis_url, tmp_path):
    assert demo.main(["--redis-url", redis_url, "--scan", "ct", "--root", str(tmp_path)]) == 0
    assert "embedded Redis" not in capsys.readouterr().out


def test_demo_reports_an_unknown_scan(capsys, tmp_path):
    assert demo.main(["--scan", "nonsense", "--root", str(tmp_path)]) != 0
    assert "nonsense" in capsys.readouterr().err
