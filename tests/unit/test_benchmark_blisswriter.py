"""The comparison with ESRF's blisswriter 3.0 (``tests.benchmarks.bench_blisswriter``):
the mapping it publishes, how it finds blisswriter, how it checks files and combines
runs (no writer is run here)."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from tests.benchmarks import bench_blisswriter as bench


def test_the_published_h5maps_are_valid_and_map_every_channel(tmp_path):
    from blissdata.h5map import Dataset, Group, SoftLink, Stream

    from tests.blissdata_support import END_TIME

    path = str(tmp_path / "scan.h5")
    info = bench.bench_scan_info(path, "demo", 100)
    assert set(info["channels"]) == set(bench.CHANNELS)
    bench.check_h5maps(info["h5maps"])
    (mapped,) = info["h5maps"]
    assert mapped == path
    root = Group.model_validate(info["h5maps"][path])
    entry = root.children[f"{bench.NUMBER}.1"]
    streams = {}
    for name, child in entry.children["instrument"].children.items():
        data = child.children["data"]
        assert isinstance(data, Dataset) and isinstance(data.value, Stream)
        streams[data.value.stream] = name
    assert streams == bench.CHANNELS
    for name in bench.CHANNELS.values():
        link = entry.children["measurement"].children[name]
        assert isinstance(link, SoftLink)
        assert link.target_path == f"/{bench.NUMBER}.1/instrument/{name}/data"
    assert "end_time" not in entry.children
    closed = Group.model_validate(bench.h5maps(info, end_time=END_TIME)[path])
    end_time = closed.children[f"{bench.NUMBER}.1"].children["end_time"]
    assert end_time.value.decode().item() == END_TIME.encode()


def test_a_missing_blisswriter_is_named_with_the_remedy(tmp_path, monkeypatch):
    monkeypatch.delenv("BLISSWRITER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    command, why = bench.find_blisswriter(None)
    assert command is None
    assert "blisswriter 3.0 not found" in why and "pip install blisswriter==3.0.0" in why
    command, why = bench.find_blisswriter(str(tmp_path / "nowhere"))
    assert command is None and "nowhere" in why and "--blisswriter" in why
    monkeypatch.setenv("BLISSWRITER", str(tmp_path / "elsewhere"))
    command, why = bench.find_blisswriter(None)
    assert command is None and "elsewhere" in why


def test_a_blisswriter_of_another_version_is_refused(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "blisswriter").write_text("#!/bin/sh\n")
    (bin_dir / "python").write_text("#!/bin/sh\necho 2.0.0\n")
    for name in ("blisswriter", "python"):
        os.chmod(bin_dir / name, 0o755)
    command, why = bench.find_blisswriter(str(bin_dir / "blisswriter"))
    assert command is None and "'2.0.0'" in why
    (bin_dir / "python").write_text("#!/bin/sh\necho 3.0.0\n")
    assert bench.find_blisswriter(str(bin_dir / "blisswriter")) == (
        str(bin_dir / "blisswriter"), "3.0.0")


def _theirs_file(path, data, drop=0):
    entry = f"{bench.NUMBER}.1"
    with h5py.File(path, "w") as h5:
        for channel, name in bench.CHANNELS.items():
            h5[f"{entry}/instrument/{name}/data"] = data[channel][:len(data[channel]) - drop]
            h5[f"{entry}/measurement/{name}"] = h5py.SoftLink(
                f"/{entry}/instrument/{name}/data")


def _ours_file(path, data, status="SUCCEEDED"):
    entry = f"{bench.NUMBER}.1"
    with h5py.File(path, "w") as h5:
        h5[f"{entry}/writer/status"] = status
        for i, (channel, values) in enumerate(data.items()):
            h5[f"{entry}/instrument/dev{i}/value"] = values
            h5[f"{entry}/instrument/dev{i}/value"].attrs["channel"] = channel


def test_a_figure_counts_only_with_every_point_in_the_file(tmp_path):
    data = bench.bench_data(50)
    complete, short = str(tmp_path / "complete.h5"), str(tmp_path / "short.h5")
    _theirs_file(complete, data)
    _theirs_file(short, data, drop=1)
    assert bench.check_file(complete, data, ours=False) == ""
    assert "49 points, not the 50 published" in bench.check_file(short, data, ours=False)
    changed = {name: values + (name == "timer:epoch") for name, values in data.items()}
    assert "timer:epoch" in bench.check_file(complete, changed, ours=False)
    assert "cannot read" in bench.check_file(str(tmp_path / "none.h5"), data, ours=False)
    ours = str(tmp_path / "ours.h5")
    _ours_file(ours, data)
    assert bench.check_file(ours, data, ours=True) == ""
    _ours_file(ours, data, status="FAILED")
    assert bench.check_file(ours, data, ours=True) == "writer/status FAILED"


def test_ratios_pair_the_runs_of_one_repetition_where_both_files_were_complete():
    ours = [bench.Run("ours", "e2e", 100, wall=1.0, tail=0.1, cpu=2.0),
            bench.Run("ours", "e2e", 100, wall=1.0, tail=0.1, cpu=2.0, outcome="short"),
            bench.Run("ours", "e2e", 100, wall=3.0, tail=0.3, cpu=1.0)]
    theirs = [bench.Run("blisswriter", "e2e", 100, wall=2.0, tail=0.4, cpu=4.0)] * 3
    assert bench.ratios(ours, theirs, "wall") == [0.5, 1.5]
    assert bench.ratios(ours, theirs, "tail") == [pytest.approx(0.25), pytest.approx(0.75)]
    assert bench.spread([3.0, 1.0, 2.0]) == "2.00 (1.00-3.00)"
    assert bench.spread([]) == "-" and bench.spread([1.5]) == "1.50"


def test_the_table_shows_medians_spread_and_each_ratio(capsys):
    results = bench.Results([
        bench.Run("ours", "e2e", 100, wall=1.0, tail=0.1, cpu=1.0),
        bench.Run("blisswriter", "e2e", 100, wall=4.0, tail=1.0, cpu=2.0),
        bench.Run("ours", "e2e", 100, wall=2.0, tail=0.2, cpu=1.0),
        bench.Run("blisswriter", "e2e", 100, wall=4.0, tail=0.5, cpu=4.0),
    ])
    bench.table(results, 100, "title")
    out = capsys.readouterr().out
    assert "end to end, blocks of 100: ours" in out and "1.50 (1.00-2.00)" in out
    assert "0.25, 0.50" in out  # time
    assert "0.10, 0.40" in out  # tail
    assert "0.50, 0.25" in out  # CPU
    assert "drain" not in out.split("time:")[0]
    assert np.isnan(bench.Run("ours", "drain", 1).wall)
