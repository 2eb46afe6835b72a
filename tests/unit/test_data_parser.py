"""The scan stream parser fed with the entries a publisher encodes, without Redis:
the publisher's own encoding functions make the fields, a counter makes the IDs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from nexus_writer_service.data import codec, parser
from nexus_writer_service.data.events import (
    EndReason,
    EntryKind,
    EventType,
    LimaProgress,
    NodeType,
    ScanReference,
    encode_data,
    encode_end,
    encode_info,
    encode_lima,
    encode_node,
    encode_prepared,
    encode_scan_reference,
    merge_info,
)
from nexus_writer_service.data.nodes import ChannelNode, LimaNode, Node, ScansNode
from nexus_writer_service.data.parser import PageSizer, RawEntry, ScanStreamParser
from nexus_writer_service.errors import MalformedEventError

SCAN = SimpleNamespace(key="nws:s:scan:1")
LIMA_INFO = {"directory": "/tmp", "prefix": "img_", "suffix": ".h5", "file_format": "hdf5",
             "frames_per_file": 10, "first_file_number": 0, "subscan": "timer"}


class Stream:
    """Entries as a publisher encodes them, with IDs as a server gives them."""

    def __init__(self) -> None:
        self.entries: list[RawEntry] = []
        self.nindex = 0

    def add(self, fields: dict[bytes, bytes]) -> str:
        entry_id = b"1-%d" % len(self.entries)
        self.entries.append((entry_id, [item for pair in fields.items() for item in pair]))
        return entry_id.decode()

    def declare(self, name: str, node_type: NodeType, info: dict[str, Any]) -> int:
        index = self.nindex
        self.add(encode_node(name, node_type, index, codec.jsonable(info)))
        self.nindex += 1
        return index

    def channel(self, name: str, dtype: str, shape: tuple[int, ...] = ()) -> int:
        return self.declare(name, NodeType.CHANNEL, {
            "dtype": codec.dtype_to_text(np.dtype(dtype)), "shape": list(shape),
            "subscan": "timer"})

    def send(self, first: int, **blocks: tuple[int, Any]) -> str:
        raw_blocks: list[Any] = []
        for index, data in blocks.values():
            if isinstance(data, list):
                raw, lengths, _ = codec.ragged_to_bytes(data, np.dtype("<f4"), "t")
                raw_blocks.append((index, first, raw, lengths))
            else:
                raw_blocks.append((index, first, np.ascontiguousarray(data).tobytes(), None))
        return self.add(encode_data(raw_blocks))


def _id(position: str) -> tuple[int, int]:
    ms, _, seq = position.partition("-")
    return int(ms), int(seq)


def scan_stream(npoints: int = 12, block: int = 3) -> Stream:
    stream = Stream()
    stream.declare("timer", NodeType.SUBSCAN, {"index": 1})
    x = stream.channel("x", "<f8")
    mca = stream.channel("mca", "<u4", (4,))
    ragged = stream.channel("r", "<f4", (-1,))
    stream.add(encode_prepared())
    for first in range(0, npoints, block):
        stream.send(first, x=(x, np.arange(first, first + block, dtype="<f8")),
                    mca=(mca, np.full((block, 4), first, dtype="<u4")),
                    r=(ragged, [np.arange(i % 3 + 1, dtype="<f4") for i in range(block)]))
    stream.add(encode_end(EndReason.SUCCESS, "done"))
    return stream


def parse(stream: Stream, page_size: int = 1000, position: str = "0-0",
          nodes: dict[int, Node] | None = None, **options: Any
          ) -> tuple[list[Any], ScanStreamParser]:
    """``nodes``: the nodes declared before ``position`` (a reader gets them from
    the source, as a resumed walk does)."""
    walk = ScanStreamParser(SCAN, dict(nodes or {}), position, **options)
    events: list[Any] = []
    after = [(entry_id, flat) for entry_id, flat in stream.entries
             if _id(entry_id.decode()) > _id(position)]
    for at in range(0, len(after), page_size):
        events.extend(walk.feed([(entry_id, list(flat))
                                 for entry_id, flat in after[at:at + page_size]]))
        if walk.ended:
            break
        events.extend(walk.idle())
    return events, walk


def points(events: list[Any]) -> dict[str, list[Any]]:
    got: dict[str, list[Any]] = {}
    for event, node, data in events:
        if event is EventType.NEW_DATA and isinstance(node, ChannelNode):
            assert data.first_index == len(got.get(node.name, []))
            got.setdefault(node.name, []).extend(
                [p.tolist() for p in data.data] if isinstance(data.data, list)
                else np.asarray(data.data).tolist())
    return got


def test_entry_kinds_are_an_enum_of_the_wire_values():
    assert {kind.value for kind in EntryKind} == {b"node", b"prep", b"data", b"lima",
                                                  b"scans", b"info", b"end"}
    assert EntryKind(encode_prepared()[b"t"]) is EntryKind.PREPARED


@pytest.mark.parametrize("merge_blocks", [False, True])
@pytest.mark.parametrize("page_size", [1, 4, 1000])
def test_publisher_entries_give_nodes_first_then_data_then_the_end(merge_blocks, page_size):
    events, walk = parse(scan_stream(), page_size, merge_blocks=merge_blocks)
    kinds = [event for event, _, _ in events]
    assert kinds[:4] == [EventType.NEW_NODE] * 4
    assert kinds[4] is EventType.PREPARED_SCAN and kinds[-1] is EventType.END_SCAN
    assert set(kinds[5:-1]) == {EventType.NEW_DATA}
    assert events[-1][2].reason is EndReason.SUCCESS and events[-1][2].message == "done"
    assert walk.ended and walk.safe_position == events[-1][2].position
    got = points(events)
    assert got["x"] == list(range(12))
    assert got["mca"] == [[first] * 4 for first in range(0, 12, 3) for _ in range(3)]
    assert got["r"] == [list(range(i % 3 + 1)) for _ in range(4) for i in range(3)]


def test_merging_gives_one_event_per_channel_of_a_page():
    events, _ = parse(scan_stream(), 1000, merge_blocks=True)
    data = [(node.name, d.first_index, len(d.data)) for e, node, d in events
            if e is EventType.NEW_DATA]
    assert sorted(data) == [("mca", 0, 12), ("r", 0, 12), ("x", 0, 12)]


def test_resuming_from_any_event_never_skips_a_point():
    stream = scan_stream(30, 3)
    events, _ = parse(stream, 7, merge_blocks=True, hold_over=True)
    declared = {node.index: node for e, node, _ in events if e is EventType.NEW_NODE}
    for at, (_, _, data) in enumerate(events):
        resumed, _ = parse(stream, 7, position=data.position, nodes=declared,
                           merge_blocks=True)
        given = {node.name: d.last_index for e, node, d in events[:at + 1]
                 if e is EventType.NEW_DATA}
        first = {}
        for e, node, d in resumed:
            if e is EventType.NEW_DATA:
                first.setdefault(node.name, d.first_index)
        for name in ("x", "mca", "r"):
            assert first.get(name, 30) <= given.get(name, 0)


def test_held_over_blocks_come_out_when_the_stream_pauses():
    stream = scan_stream(30, 3)
    entries = stream.entries[:-1]  # still running
    walk = ScanStreamParser(SCAN, {}, "0-0", merge_blocks=True, hold_over=True)
    walk.sizer.full = True  # the page was full: more entries wait
    events = list(walk.feed(list(entries)))
    held = [e for e in events if e[0] is EventType.NEW_DATA]
    assert not held and walk.merger is not None and walk.merger.nbytes
    flushed = walk.idle()
    assert sorted(node.name for _, node, _ in flushed) == ["mca", "r", "x"]
    assert walk.safe_position == entries[-1][0].decode()


def test_filters_leave_out_the_events_of_other_node_types():
    stream = scan_stream()
    stream.declare("cam", NodeType.LIMA, LIMA_INFO)
    stream.entries.insert(-1, stream.entries.pop())  # declared before the end
    events, _ = parse(stream, exclude={"channel"})
    assert {node.type for e, node, _ in events if e is EventType.NEW_NODE} == {
        NodeType.SUBSCAN, NodeType.LIMA}
    assert not [e for e in events if e[0] is EventType.NEW_DATA]
    events, _ = parse(stream, include={"lima"})
    assert [node.name for e, node, _ in events if e is EventType.NEW_NODE] == ["cam"]


def test_lima_progress_is_new_data_of_the_lima_node():
    stream = Stream()
    stream.declare("timer", NodeType.SUBSCAN, {})
    stream.declare("cam", NodeType.LIMA, LIMA_INFO)
    stream.add(encode_lima("cam", LimaProgress(4, 3)))
    stream.add(encode_end(EndReason.ABORTED))
    events, _ = parse(stream)
    (_, node, data), = [e for e in events if e[0] is EventType.NEW_DATA]
    assert isinstance(node, LimaNode) and data.data == LimaProgress(4, 3)


@pytest.mark.parametrize("merge_blocks", [False, True])
def test_old_encoding_of_fixed_size_points_is_refused_naming_the_entry(merge_blocks):
    stream = scan_stream(6, 3)
    end = stream.entries.pop()
    position = stream.add({b"t": b"data", b"d1": np.zeros(3).tobytes(), b"f1": b"6"})
    stream.entries.append(end)
    with pytest.raises(MalformedEventError) as info:
        parse(stream, merge_blocks=merge_blocks)
    text = str(info.value)
    assert f"nws:s:scan:1:events entry {position}:" in text
    assert "channel 'x'" in text and "older publishers" in text


def test_events_held_before_a_malformed_entry_are_given_first():
    stream = scan_stream(6, 3)
    stream.entries.insert(-1, (b"1-99", [b"t", b"bogus"]))
    walk = ScanStreamParser(SCAN, {}, "0-0", merge_blocks=True)
    given = []
    with pytest.raises(MalformedEventError, match="entry 1-99: unknown entry kind b'bogus'"):
        for event in walk.feed(list(stream.entries)):
            given.append(event)
    assert sorted(points(given)) == ["mca", "r", "x"]


def test_undeclared_channel_and_gaps_name_the_entry():
    stream = scan_stream(6, 3)
    end = stream.entries.pop()
    position = stream.add(encode_data([(1, 9, np.zeros(2).tobytes(), None)]))
    stream.entries.append(end)
    with pytest.raises(MalformedEventError, match=f"entry {position}: channel 'x' block "
                       "starts at point 9, expected 6 .gap."):
        parse(stream)


def test_page_sizer_probes_after_declarations_and_sizes_data_pages():
    stream = scan_stream(3000, 100)
    sizer = PageSizer()
    assert sizer.asked == parser.PROBE_BATCH
    assert sizer(stream.entries[:5]) == parser.PROBE_BATCH  # declarations only
    data = stream.entries[5:25]
    entry_bytes = sum(map(len, data[0][1][1::2]))
    assert sizer(data) == min(parser.BATCH, parser.PAGE_BYTES // entry_bytes)
    assert sizer.full is True


@pytest.mark.parametrize("merge_blocks", [False, True])
def test_an_info_update_comes_in_its_place_between_the_data(merge_blocks):
    stream = Stream()
    x = stream.channel("x", "<f8")
    stream.add(encode_prepared())
    stream.send(0, x=(x, np.arange(3, dtype="<f8")))
    stream.add(encode_info({"positioners": {"positioners_end": {"samy": 2.5}},
                            "end_time": "2026-12-07T09:07:41+00:00"}))
    stream.send(3, x=(x, np.arange(3, 6, dtype="<f8")))
    stream.add(encode_end(EndReason.SUCCESS, "done"))
    events, walk = parse(stream, merge_blocks=merge_blocks)
    kinds = [event for event, _, _ in events if event is not EventType.NEW_NODE]
    update = kinds.index(EventType.INFO_UPDATE)
    assert kinds[:update] == [EventType.PREPARED_SCAN, EventType.NEW_DATA]
    assert kinds[update + 1:] == [EventType.NEW_DATA, EventType.END_SCAN]
    info = next(data.info for event, _, data in events if event is EventType.INFO_UPDATE)
    assert info == {"positioners": {"positioners_end": {"samy": 2.5}},
                    "end_time": "2026-12-07T09:07:41+00:00"}
    assert points(events) == {"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}


def test_an_info_update_that_is_no_object_is_refused_naming_the_entry():
    stream = Stream()
    stream.add({b"t": b"info", b"i": b"[1, 2]"})
    with pytest.raises(MalformedEventError, match="info update is not a JSON object"):
        parse(stream)


def test_merge_info_merges_objects_key_by_key_and_replaces_the_rest():
    info = {"positioners": {"positioners_start": {"a": 1}}, "comments": [1], "title": "t"}
    merged = merge_info(info, {"positioners": {"positioners_end": {"a": 2}},
                               "comments": [2], "end_time": "now"})
    assert merged == {"positioners": {"positioners_start": {"a": 1},
                                      "positioners_end": {"a": 2}},
                      "comments": [2], "title": "t", "end_time": "now"}
    assert info == {"positioners": {"positioners_start": {"a": 1}}, "comments": [1],
                    "title": "t"}, "the info merged into is left as it was"


@pytest.mark.parametrize("merge_blocks", [False, True])
def test_sequence_gives_the_scans_it_groups_in_order(merge_blocks):
    stream = Stream()
    stream.declare("GroupingMaster", NodeType.SUBSCAN, {"index": 1})
    stream.declare("SUBSCANS", NodeType.SCANS, {"subscan": "GroupingMaster"})
    x = stream.channel("x", "<f8")
    stream.add(encode_prepared())
    stream.add(encode_scan_reference("SUBSCANS", "nws:s:scan:2", 2))
    stream.send(0, x=(x, np.arange(2, dtype="<f8")))
    stream.add(encode_scan_reference("SUBSCANS", "nws:s:scan:3", None))
    stream.add(encode_end(EndReason.SUCCESS))
    events, _ = parse(stream, merge_blocks=merge_blocks)
    references = [(node, data.data) for event, node, data in events
                  if event is EventType.NEW_DATA and not isinstance(node, ChannelNode)]
    assert all(isinstance(node, ScansNode) and node.subscan == "GroupingMaster"
               for node, _ in references)
    assert [refs for _, refs in references] == [[ScanReference("nws:s:scan:2", 2)],
                                                [ScanReference("nws:s:scan:3", None)]]
    assert points(events) == {"x": [0.0, 1.0]}


def test_scan_reference_of_an_undeclared_scans_node_is_refused():
    stream = Stream()
    stream.declare("timer", NodeType.SUBSCAN, {"index": 1})
    stream.add(encode_scan_reference("SUBSCANS", "nws:s:scan:2", 2))
    with pytest.raises(MalformedEventError, match="not a declared scans node"):
        parse(stream)
