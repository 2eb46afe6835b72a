"""Scan sequences as BLISS 2.x publishes them with blissdata (its ``scan_sequence``
stream plugin): written with the same layout as the sequences of our own streams."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from nexus_writer_service.data.blissdata_source import BlissdataSession
from nexus_writer_service.data.events import EventType
from nexus_writer_service.data.nodes import ScansNode
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import NexusSessionWriter, SubscriberState
from tests.blissdata_support import (
    BlissScan,
    BlissSequence,
    ascan_data,
    blocks,
    publish,
    reference_scan_info,
)
from tests.nxcheck import nxcheck_errors
from tests.writer_support import assert_sequence_links, wait_scans_done, wait_until


def test_sequence_links_the_scans_it_runs(blissdata_url: str, tmp_path: Path) -> None:
    main = str(tmp_path / "sample" / "sample_0001.h5")
    other = str(tmp_path / "other" / "other_0001.h5")
    writer = NexusSessionWriter(BlissdataSession("demo", blissdata_url),
                                options=SaveOptions(allowed_roots=(str(tmp_path),)),
                                poll_interval=0.05)
    writer.start(wait=True, timeout=10)
    try:
        sequence = BlissSequence(blissdata_url, main, number=1)
        first = publish(blissdata_url, reference_scan_info(main, npoints=5), ascan_data(5),
                        number=2)  # written before the sequence names it
        wait_until(lambda: len(writer.scans()) == 2 and writer.scans()[1].writer.done(), 30,
                   "the first scan written")
        sequence.add(first.key, 2)
        second = BlissScan(blissdata_url, reference_scan_info(other, npoints=6), number=3)
        second.prepare_and_start()
        sequence.add(second.key, 3)  # another file, still running
        for part in blocks(ascan_data(6, seed=1), 4):
            second.send(part)
        second.end()
        sequence.add("esrf:scan:01JXXXXXXXXXXXXXXXXXXXXXXX", 99)  # no such scan
        sequence.end()
        records = wait_scans_done(writer, 3)
    finally:
        writer.stop(wait=True, timeout=60)
    assert [r.state for r in records] == [SubscriberState.OFF] * 3, \
        [r.as_dict() for r in records]
    assert records[0].name == "1_sequence"
    with h5py.File(main, "r") as h5:
        assert_sequence_links(h5, {"2.1": first.key, "3.1": second.key},
                              ("3.1", "../other/other_0001.h5"), "99.1")
        np.testing.assert_array_equal(h5["1.1/scans/3.1/instrument/diode/data"][()],
                                      ascan_data(6, seed=1)[
                                          "simulation_diode_sampling_controller:diode"])
        assert "SUBSCANS" not in h5["1.1/measurement"]
    assert nxcheck_errors(main, ignore_entry_names=True) == []
    assert nxcheck_errors(other, ignore_entry_names=True) == []


def test_sequence_walk_gives_the_scans_it_groups(blissdata_url: str, tmp_path: Path) -> None:
    sequence = BlissSequence(blissdata_url, str(tmp_path / "seq.h5"), number=7)
    child = publish(blissdata_url, reference_scan_info(str(tmp_path / "c.h5"), npoints=2),
                    ascan_data(2), number=8)
    sequence.add(child.key, 8)
    sequence.add({"not": "a key"}, 9)  # type: ignore[arg-type]
    sequence.end()
    source = BlissdataSession("demo", blissdata_url).scan(sequence.key)
    events = list(source.walk_events(poll_interval=0.05))
    scans = [node for kind, node, _ in events
             if kind is EventType.NEW_NODE and isinstance(node, ScansNode)]
    assert [node.name for node in scans] == ["GroupingMaster:SUBSCANS"]
    references = [ref for kind, node, data in events
                  if kind is EventType.NEW_DATA and isinstance(node, ScansNode)
                  for ref in data.data]
    assert [(ref.key, ref.number, ref.problem) for ref in references][0] == (
        child.key, 8, "")
    assert references[0].info is not None and references[0].info["filename"].endswith("c.h5")
    assert references[1].number == 9 and "names no scan key" in references[1].problem
    assert events[-1][0] is EventType.END_SCAN
