"""Scan sequences (BLISS: scan groups): the sequence's entry links the entries of the
scans it groups, saved in the same file or in others, whether they are written before,
during or after the sequence; a scan that cannot be found is said so in the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nexus_writer_service.data import Publisher, ScanPublisher
from nexus_writer_service.subscribers import SubscriberState
from tests.integration.faults.conftest import (
    fast_options,
    loopscan_points,
    publish_loopscan,
    start_loopscan,
)
from silx.io import nxdata

from tests.nxcheck import nxcheck_errors
from tests.silx_views import silx_view
from tests.writer_support import (
    assert_sequence_links,
    session_writer,
    text,
    wait_scans_done,
    wait_until,
)


def _silx_shows(entry: h5py.Group) -> str:
    """The view silx opens the default plot of ``entry`` with (no reference to the
    file is kept: the file an external link opened is closed with it)."""
    default = nxdata.get_default(entry)
    assert default is not None and default.is_valid, entry.name
    return silx_view(default.group)


def sequence_info(filename: Path) -> dict[str, Any]:
    """A sequence's scan_info as BLISS makes it (``is_scan_sequence``, one top master)."""
    return {"title": "sequence_of_scans", "type": "sequence", "is_scan_sequence": True,
            "filename": str(filename), "npoints": 0,
            "acquisition_chain": {"GroupingMaster": {"master": {"scalars": []},
                                                     "scalars": []}}}


def start_sequence(publisher: Publisher, filename: Path, number: int) -> ScanPublisher:
    group = publisher.create_scan(sequence_info(filename), name="sequence", number=number)
    group.add_scans(subscan="GroupingMaster")
    group.prepare()
    return group


def test_sequence_links_scans_written_before_during_and_after_it(
        redis_url: str, tmp_path: Path) -> None:
    main = tmp_path / "dataset.h5"
    other = tmp_path / "other" / "other.h5"
    with session_writer(redis_url, "seq", fast_options()) as writer:
        with Publisher("seq", redis_url) as publisher:
            group = start_sequence(publisher, main, 1)
            before = publish_loopscan(publisher, main, 2, 5)  # written before it is named
            wait_until(lambda: len(writer.scans()) == 2 and writer.scans()[1].writer.done(),
                       30, "the first scan written")
            group.add_scan_reference(before)
            during = start_loopscan(publisher, other, 3, 4)  # another file, still running
            group.add_scan_reference(during)
            during.send(loopscan_points(3, 0, 4))
            during.end()
            after = start_loopscan(publisher, main, 4, 6)  # ends after the sequence
            group.add_scan_reference(after)
            group.add_scan_reference("nws:seq:scan:999", 99)  # no such scan
            group.end()
            wait_until(lambda: writer.scan("1_sequence") is not None
                       and writer.scan("1_sequence").writer.done(), 30, "the sequence written")
            assert not writer.scan("4_loopscan").writer.done()  # written after it
            after.send(loopscan_points(4, 0, 6))
            after.end()
        records = wait_scans_done(writer, 4)
    assert [r.state for r in records] == [SubscriberState.OFF] * 4, \
        [r.as_dict() for r in records]
    with h5py.File(main, "r") as h5:
        assert_sequence_links(h5, {"2.1": before.key, "3.1": during.key, "4.1": after.key},
                              ("3.1", "other/other.h5"), "99.1")
        scans = h5["1.1/scans"]
        np.testing.assert_array_equal(scans["3.1/measurement/diode1"][()],
                                      loopscan_points(3, 0, 4)["diode:diode1"])
        # silx shows the plot of a scan of the sequence through the links, in its file
        # or in another one
        assert [_silx_shows(scans[name]) for name in ("2.1", "3.1")] == ["curve"] * 2
        assert "nws:seq:scan:999" in text(scans["99.1"][()])
        assert text(scans["99.1"].attrs["scan_key"]) == "nws:seq:scan:999"
    assert nxcheck_errors(str(main), ignore_entry_names=True) == []
    assert nxcheck_errors(str(other), ignore_entry_names=True) == []


def test_sequence_names_scans_it_cannot_link_and_goes_on(redis_url: str,
                                                         tmp_path: Path) -> None:
    main = tmp_path / "dataset.h5"
    with session_writer(redis_url, "seq2", fast_options()) as writer:
        with Publisher("seq2", redis_url) as publisher:
            group = start_sequence(publisher, main, 1)
            unsaved = publisher.create_scan(dict(sequence_info(main), save=False,
                                                 is_scan_sequence=False),
                                            name="ct", number=2)
            group.add_scan_reference(unsaved)
            group.add_scan_reference("not-a-scan-key")
            group.add_scan_reference(group)  # a loop in the file, were it linked
            group.add_scan_reference(publish_loopscan(publisher, main, 3, 3))
            unsaved.end()
            group.end()
        records = wait_scans_done(writer, 2)  # the unsaved scan is not written
    assert records[0].state is SubscriberState.OFF, records[0].as_dict()
    with h5py.File(main, "r") as h5:
        scans = h5["1.1/scans"]
        assert "not saved" in text(scans["2.1"][()])
        assert "not the key of a scan" in text(scans["not_a_scan_key"][()])
        assert isinstance(scans.get("3.1", getlink=True), h5py.SoftLink)
        assert "names itself" in text(scans["1.1"][()])
        assert text(h5["1.1/writer/status"][()]) == "SUCCEEDED"
    assert nxcheck_errors(str(main), ignore_entry_names=True) == []


def test_simulated_sequence_is_written_in_one_file(redis_url: str, tmp_path: Path) -> None:
    from nexus_writer_service.simulation import SimulationOptions, simulate

    root = str(tmp_path / "data")
    with session_writer(redis_url, "simseq", fast_options(allowed_roots=(root,))) as writer:
        published = simulate(SimulationOptions(session="simseq", redis_url=redis_url,
                                               root=root, scans=("sequence",), npoints=4))
        records = wait_scans_done(writer, 3)
    assert [(p.kind, p.number) for p in published] == [("ascan", 2), ("loopscan", 3),
                                                       ("sequence", 1)]
    assert {p.filename for p in published} == {published[-1].filename}
    assert [r.state for r in records] == [SubscriberState.OFF] * 3
    with h5py.File(published[-1].filename, "r") as h5:
        assert sorted(h5) == ["1.1", "2.1", "3.1"]
        scans = h5["1.1/scans"]
        assert sorted(scans) == ["2.1", "3.1"]
        assert text(scans["3.1/title"][()]).startswith("loopscan")
    assert nxcheck_errors(published[-1].filename, ignore_entry_names=True) == []


def test_sequence_resumed_by_a_new_writer_keeps_its_links(redis_url: str,
                                                          tmp_path: Path) -> None:
    main = tmp_path / "dataset.h5"
    with Publisher("seq3", redis_url) as publisher:
        with session_writer(redis_url, "seq3", fast_options()) as writer:
            group = start_sequence(publisher, main, 1)
            group.add_scan_reference(publish_loopscan(publisher, main, 2, 3))
            wait_until(lambda: len(writer.scans()) == 2 and writer.scans()[1].writer.done(),
                       30, "scan 2 written")
        # the writer stopped while the sequence runs; another one completes it
        group.add_scan_reference(publish_loopscan(publisher, main, 3, 3))
        group.end()
        with session_writer(redis_url, "seq3", fast_options()) as writer:
            records = wait_scans_done(writer, 2)
    assert {r.name: r.state for r in records}["1_sequence"] is SubscriberState.OFF
    with h5py.File(main, "r") as h5:
        assert sorted(h5["1.1/scans"]) == ["2.1", "3.1"]
        assert text(h5["1.1/scans/3.1/title"][()]).startswith("loopscan")
        assert text(h5["1.1/writer/status"][()]) == "SUCCEEDED"
    assert nxcheck_errors(str(main), ignore_entry_names=True) == []
