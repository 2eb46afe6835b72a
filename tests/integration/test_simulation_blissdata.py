"""The simulator publishing through blissdata 2.x (as BLISS 2.x does), written by our
writer from blissdata: bit-exact against the simulator's truth, valid NeXus."""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pytest
from blissdata.redis_engine.store import DataStore

from nexus_writer_service.cli import simulate as simulate_cli
from nexus_writer_service.data.blissdata_source import BlissdataSession
from nexus_writer_service.errors import ConfigurationError
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.simulation import SimulationOptions, read_truth, simulate
from nexus_writer_service.subscribers import NexusSessionWriter, SubscriberState
from tests.blissdata_support import published
from tests.integration.test_writer_files import check_against_truth
from tests.nxcheck import nxcheck_errors
from tests.writer_support import wait_scans_done


def _write(url: str, session: str, root: str, save: dict | None = None, **options):
    """Publish with blissdata while a writer of the session's blissdata scans runs."""
    truth = f"{root}-truth.h5"
    save_options = SaveOptions.from_mapping(dict(save or {}, allowed_roots=[root]))
    writer = NexusSessionWriter(BlissdataSession(session, url), options=save_options,
                                poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    try:
        scans = simulate(SimulationOptions(session=session, redis_url=url, root=root,
                                           truth=truth, data_source="blissdata", **options))
        records = wait_scans_done(writer, len(scans))
    finally:
        writer.stop(wait=True, timeout=60)
    return scans, records, truth


@pytest.mark.parametrize("lima_format", ["hdf5", "edf"])
def test_simulated_scans_published_with_blissdata_are_written_bit_exact(
        blissdata_url, tmp_path, lima_format):
    root = str(tmp_path / "data")
    scans, records, truth = _write(blissdata_url, "bd", root, block_size=5, npoints=13,
                                   scans=("ascan", "amesh", "mca", "lima", "two_top_masters",
                                          "many_channels", "failed"),
                                   # more streams than redis-py's default connection pool
                                   nchannels=120,
                                   lima_format=lima_format,
                                   # EDF frames as an external dataset (not references)
                                   save={"enable_external_nonhdf5": lima_format == "edf"})
    assert [s.kind for s in scans] == ["ascan", "amesh", "mca", "lima", "two_top_masters",
                                       "many_channels", "failed"]
    assert all(s.key.startswith("esrf:scan:") for s in scans)
    assert [r.state for r in records] == [SubscriberState.OFF] * len(scans), [
        r.as_dict() for r in records]
    assert [r.writer.end_reason for r in records] == ["SUCCESS"] * 6 + ["FAILED"]
    assert check_against_truth(truth) == len(scans)
    for scan in scans:
        assert nxcheck_errors(scan.filename, ignore_entry_names=True) == [], scan.kind
    lima = read_truth(truth)[scans[3].key].limas
    assert lima and all(v.last_image_saved >= 0 for v in lima.values())


def test_other_simulated_scan_types_and_lima_acquisitions_published_with_blissdata(
        blissdata_url, tmp_path):
    """The scan types the test above leaves out, and a lima detector saving several
    acquisitions per scan (4 frames each, 3 per file, from file 2)."""
    root = str(tmp_path / "data")
    kinds = ("ct", "a2scan", "timescan", "loopscan", "long", "lima")
    scans, records, truth = _write(blissdata_url, "bd2", root, block_size=4, npoints=11,
                                   scans=kinds, lima_frames_per_acquisition=4,
                                   lima_frames_per_file=3, lima_first_file_number=2)
    assert [s.kind for s in scans] == list(kinds)
    assert [r.state for r in records] == [SubscriberState.OFF] * len(scans), [
        r.as_dict() for r in records]
    assert [r.writer.end_reason for r in records] == ["SUCCESS"] * 2 + ["ABORTED"] + \
        ["SUCCESS"] * 3
    assert check_against_truth(truth) == len(scans)
    for scan in scans:
        assert nxcheck_errors(scan.filename, ignore_entry_names=True) == [], scan.kind
    (lima,) = read_truth(truth)[scans[-1].key].limas.values()
    numbers = [ref[0][-7:-3] for ref in lima.references]  # ..._<number:04d>.h5
    assert numbers == ["0002"] * 3 + ["0003"] + ["0004"] * 3 + ["0005"] + ["0006"] * 3
    assert sorted(scans[-1].lima_files) == sorted(set(ref[0] for ref in lima.references))


def test_blissdata_scan_document_is_what_bliss_publishes(blissdata_url, tmp_path):
    root = str(tmp_path / "data")
    truth = str(tmp_path / "truth.h5")
    (scan,) = simulate(SimulationOptions(session="doc", redis_url=blissdata_url, root=root,
                                         truth=truth, data_source="blissdata",
                                         scans=("lima",), npoints=7, block_size=3))
    loaded = DataStore(blissdata_url).load_scan(scan.key)
    assert (loaded.name, loaded.number, loaded.session) == ("loopscan", scan.number, "doc")
    assert loaded.path == scan.filename
    assert loaded.info["end_reason"] == "SUCCESS" and loaded.info["end_time"]
    expected = read_truth(truth)[scan.key]
    assert loaded.info == expected.scan_info  # completed at PREPARED and at the end
    values = published(blissdata_url, scan.key)
    for name, data in expected.channels.items():
        assert values[name].dtype == data.dtype, name
        np.testing.assert_array_equal(values[name], data, err_msg=name)
    (lima_name,) = expected.limas
    info = loaded.streams[lima_name].info
    saving = info["lima_info"]
    assert saving["file_path"].endswith("%04d.h5")
    assert saving["frame_per_file"] >= 1 and saving["file_format"] == "HDF5"
    json.dumps(info)  # a JSON document, as blissdata stores it


def test_a_redis_without_the_modules_is_refused_with_the_remedy(redis_url, tmp_path):
    with pytest.raises(ConfigurationError, match="redis --blissdata"):
        simulate(SimulationOptions(session="nomod", redis_url=redis_url,
                                   root=str(tmp_path), data_source="blissdata",
                                   scans=("ct",)))


def test_cli_publishes_with_blissdata(blissdata_url, tmp_path, capsys):
    code = simulate_cli.main(["--redis-url", blissdata_url, "--session", "cli",
                              "--scan", "ct", "--data-source", "blissdata",
                              "--root", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "esrf:scan:" in out and "SUCCESS" in out


def test_cli_publishes_lima_acquisitions(blissdata_url, tmp_path, capsys):
    truth = str(tmp_path / "truth.h5")
    code = simulate_cli.main(["--redis-url", blissdata_url, "--session", "cli",
                              "--scan", "lima", "--npoints", "5", "--data-source", "blissdata",
                              "--root", str(tmp_path), "--truth", truth,
                              "--lima-frames-per-acquisition", "2",
                              "--lima-frames-per-file", "1", "--lima-first-file-number", "3"])
    assert code == 0, capsys.readouterr().err
    (scan,) = read_truth(truth).values()
    (lima,) = scan.limas.values()
    assert [ref[0][-7:-3] for ref in lima.references] == ["0003", "0004", "0005", "0006",
                                                          "0007"]
    assert lima.info["frames_per_acquisition"] == 2


def test_cli_rejects_an_unknown_data_source(capsys):
    assert simulate_cli.main(["--redis-url", "redis://127.0.0.1:1", "--data-source",
                              "nonsense"]) == 2
    assert "--data-source" in capsys.readouterr().err


def test_h5_files_name_the_blissdata_scan(blissdata_url, tmp_path):
    root = str(tmp_path / "data")
    scans, _, _ = _write(blissdata_url, "named", root, scans=("ct",))
    with h5py.File(scans[0].filename, "r") as h5:
        (entry,) = h5.values()
        assert entry.attrs["scan_key"] in (scans[0].key, scans[0].key.encode())


def test_sequence_published_with_blissdata_names_its_scans_and_all_succeed(
        blissdata_url, tmp_path):
    root = str(tmp_path / "data")
    scans, records, truth = _write(blissdata_url, "seq", root, scans=("sequence",),
                                   npoints=4)
    assert [s.kind for s in scans] == ["ascan", "loopscan", "sequence"]
    store = DataStore(blissdata_url)
    for scan in scans:
        assert store.load_scan(scan.key).info["end_reason"] == "SUCCESS", scan.kind
    assert [r.writer.end_reason for r in records] == ["SUCCESS"] * 3
    assert len({s.filename for s in scans}) == 1  # the sequence's file holds its scans
    assert check_against_truth(truth) == 2
    assert nxcheck_errors(scans[0].filename, ignore_entry_names=True) == []


def test_without_blissdata_installed_the_error_names_the_extra(monkeypatch, tmp_path):
    # what an installation without the extra meets: the import fails
    monkeypatch.setitem(sys.modules, "blissdata.redis_engine.store", None)
    with pytest.raises(ConfigurationError, match=r"nexus-writer-service\[blissdata\]"):
        simulate(SimulationOptions(session="noextra", redis_url="redis://127.0.0.1:1/0",
                                   root=str(tmp_path), data_source="blissdata",
                                   scans=("ct",)))
