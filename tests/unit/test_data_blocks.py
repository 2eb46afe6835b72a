"""Data entries as a reader gets them (flat field lists): checked, decoded and merged
without Redis. Every entry must give the same blocks and errors whether it takes the
known-layout way or the general one."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from nexus_writer_service.data import blocks, codec, events
from nexus_writer_service.data.blocks import BlockMerger, DataDecoder, fields_dict
from nexus_writer_service.data.events import EventType, NodeDeclaration, NodeType
from nexus_writer_service.data.nodes import ChannelNode, Node, SubscanNode
from nexus_writer_service.errors import MalformedEventError

SCAN = SimpleNamespace(key="nws:s:scan:1")


def channel(index: int, dtype: str = "<f8", shape: tuple[int, ...] = ()) -> ChannelNode:
    info = {"dtype": codec.dtype_to_text(np.dtype(dtype)), "shape": list(shape)}
    return ChannelNode(SCAN, NodeDeclaration(f"ch{index}", NodeType.CHANNEL, index, info))


def nodes() -> dict[int, Node]:
    timer = NodeDeclaration("timer", NodeType.SUBSCAN, 0, {})
    found: dict[int, Node] = {0: SubscanNode(SCAN, timer)}
    found.update({1: channel(1), 2: channel(2, "<i4", (3,)), 3: channel(3, "<f4", (-1,))})
    return found


def entry(first: int, npoints: int = 2) -> list[bytes]:
    """A data entry as the publisher sends it (:func:`events.encode_data`): channels 1
    and 2 packed in p/k/f, channel 3 (variable-length points) in d3/f3/l3."""
    ragged, lengths, _ = codec.ragged_to_bytes(
        [np.arange(first % 3 + 1, dtype="<f4") for _ in range(npoints)], np.dtype("<f4"), "t")
    return flat_fields(events.encode_data([
        (1, first, np.arange(first, first + npoints, dtype="<f8").tobytes(), None),
        (2, first, np.ones((npoints, 3), dtype="<i4").tobytes(), None),
        (3, first, ragged, lengths)]))


def flat_fields(fields: dict[bytes, bytes]) -> list[bytes]:
    """``fields`` as the flat list a reader gets: ``[field, value, ...]``."""
    return [item for pair in fields.items() for item in pair]


def old_entry(first: int, npoints: int = 2) -> list[bytes]:
    """A data entry as older publishers sent it: fixed-size points in d<x>/f<x>."""
    return [b"t", b"data",
            b"d1", np.arange(first, first + npoints, dtype="<f8").tobytes(), b"f1", b"%d" % first,
            b"d2", np.ones((npoints, 3), dtype="<i4").tobytes(), b"f2", b"%d" % first]


def changed(flat: list[bytes], **values: bytes | None) -> list[bytes]:
    """``flat`` with each field named set to its value (removed for ``None``)."""
    fields = fields_dict(flat)
    for key, value in values.items():
        if value is None:
            del fields[key.encode()]
        else:
            fields[key.encode()] = value
    return flat_fields(fields)


def plain(data: object) -> object:
    """Raw bytes as they are, decoded points as lists (comparable with ``==``)."""
    if isinstance(data, list):
        return [point.tolist() for point in data]
    return data if isinstance(data, bytes) else np.asarray(data).tolist()


def both_ways(entries: list[list[bytes]], decode: bool, first_point: int | None = 0,
              extra: dict[int, Node] | None = None) -> list:
    """Outcome of every entry, once by ``blocks`` and once by ``general`` alone."""
    outcomes = []
    for way in ("blocks", "general"):
        decoder = DataDecoder({**nodes(), **(extra or {})}, first_point)
        seen: list[Any] = []
        for flat in entries:
            try:
                if way == "blocks":
                    found = decoder.blocks(flat, decode)
                    blocks = found[0] if found is not None else None
                else:
                    fields = fields_dict(flat)
                    blocks = decoder.general(fields, decode) \
                        if fields.get(b"t") == b"data" else None
            except MalformedEventError as exc:
                seen.append(("error", str(exc)))
                break
            seen.append(None if blocks is None else [
                (node.name, first, plain(data)) for node, first, data in blocks])
        outcomes.append(seen)
    return outcomes


@pytest.mark.parametrize("decode", [False, True])
def test_known_layout_gives_the_blocks_of_the_general_way(decode):
    entries = [entry(0), entry(2), entry(4, 5), entry(9, 1)]
    fast, general = both_ways(entries, decode)
    assert fast == general
    assert [first for _, first, _ in fast[2]] == [4, 4, 4]


def test_raw_blocks_are_counted_for_merging():
    decoder = DataDecoder(nodes(), 0)
    found = decoder.blocks(entry(0, 4), decode=False)
    assert found is not None
    blocks, nbytes = found
    assert nbytes == 4 * 8 + 4 * 12
    assert isinstance(blocks[0][2], bytes) and isinstance(blocks[2][2], list)
    assert decoder.expected == {1: 4, 2: 4, 3: 4}


@pytest.mark.parametrize("decode", [False, True])
@pytest.mark.parametrize("change, message", [
    (dict(f=b"3,2"), "channel 'ch1' block starts at point 3, expected 2 (gap)"),
    (dict(f=b"2,1"), "channel 'ch2' block starts at point 1, expected 2"),
    (dict(f3=b"two"), "has no valid first index"),
    (dict(f3=b"-1"), "negative first index -1"),
    (dict(k=b"1:9,2:31"), "9 bytes is not a whole number of 8-byte points"),
    (dict(k=b"1:16,2:5", p=b"\0" * 21), "5 bytes is not a whole number of 12-byte points"),
    (dict(l3=b"\x01" * 8), "point lengths add up to"),
    (dict(k=b"9:16,2:24"), "undeclared channel #9"),
    (dict(k=b"0:16,2:24"), "undeclared channel #0"),
    (dict(d3=None, d7=b"\0" * 4), "field b'd7' has no valid first index b'f7'"),
])
def test_bad_entry_gives_the_error_of_the_general_way(decode, change, message):
    bad = changed(entry(2), **change)
    fast, general = both_ways([entry(0), bad, entry(4)], decode)
    assert fast == general
    kind, text = fast[-1]
    assert kind == "error" and message in text


@pytest.mark.parametrize("decode", [False, True])
@pytest.mark.parametrize("bad", [
    old_entry(2),
    entry(2) + [b"d4", b"\0" * 8, b"f4", b"2"],
    changed(entry(2), k=b"1:16", p=b"\0" * 16, d2=b"\1" * 24, f2=b"2", l2=b"\0" * 8),
])
def test_fixed_size_points_in_fields_of_their_own_are_refused_naming_the_old_encoding(
        decode, bad):
    found = {4: channel(4)}
    fast, general = both_ways([entry(0), bad], decode, extra=found)
    assert fast == general
    kind, text = fast[-1]
    assert kind == "error" and "per-channel encoding of older publishers" in text
    assert "'p', 'k' and 'f'" in text


@pytest.mark.parametrize("first", [b"+2", b" 2", b"2 ", b"0_2", b"02"])
def test_first_index_that_int_reads_is_accepted_as_before(first):
    odd = changed(entry(2), f=first, f3=first)
    fast, general = both_ways([entry(0), odd, entry(4)], decode=False)
    assert fast == general and len(fast) == 3 and fast[1][0][1] == 2


def test_unusual_field_lists_go_the_general_way():
    doubled = entry(2) + [b"f3", b"2"]          # a field twice: its last value counts
    reordered = entry(4)
    reordered[2:] = reordered[-2:] + reordered[2:-2]   # the last field first
    extra = entry(6) + [b"zz", b"ignored"]
    truncated = entry(8)[:-1]                   # odd length: the last field has no value
    fast, general = both_ways([entry(0), doubled, reordered, extra, truncated], False)
    assert fast == general and len(fast) == 5


def test_entry_without_a_first_index_is_refused():
    bad = changed(entry(0), f3=None)
    fast, general = both_ways([bad], False)
    assert fast == general and "no valid first index" in fast[0][1]


def test_after_a_position_the_first_block_may_start_anywhere():
    fast, general = both_ways([entry(7), entry(9)], False, first_point=None)
    assert fast == general and fast[0][0][1] == 7
    fast, general = both_ways([entry(7)], False, first_point=0)
    assert fast == general and "expected 0 (gap)" in fast[0][1]


def test_other_entries_are_not_data():
    decoder = DataDecoder(nodes(), 0)
    assert decoder.blocks([b"t", b"prep"], decode=False) is None
    assert decoder.blocks([b"t", b"node", b"n", b"x", b"y", b"channel"], decode=True) is None
    same_fields = entry(0)
    same_fields[1] = b"lima"
    assert decoder.blocks(entry(0), decode=False) is not None
    assert decoder.blocks(same_fields, decode=False) is None
    assert decoder.blocks([], decode=False) is None


def test_merger_joins_blocks_per_channel_and_never_skips_on_resume():
    decoder = DataDecoder(nodes(), 0)
    merger = BlockMerger("0-0")
    for i, first in enumerate((0, 2, 4)):
        found = decoder.blocks(entry(first), decode=False)
        assert found is not None
        merger.add(*found, f"1-{i}")
    assert merger.nbytes == 3 * (2 * 8 + 2 * 12)
    events = list(merger.flush())
    assert [(e, n.name, d.first_index, d.position) for e, n, d in events] == [
        (EventType.NEW_DATA, "ch1", 0, "0-0"), (EventType.NEW_DATA, "ch2", 0, "0-0"),
        (EventType.NEW_DATA, "ch3", 0, "1-2")]
    assert events[0][2].data.tolist() == list(range(6))
    assert events[1][2].data.shape == (6, 3) and len(events[2][2].data) == 6
    assert merger.pending == {} and merger.nbytes == 0 and merger.safe == "1-2"
    merger.passed("1-3")
    assert merger.safe == merger.last == "1-3"


def test_a_flush_merges_every_channel_before_giving_out_any_event():
    """The reader merges a page's channels in one go (then the consumer gets them all
    at once), and lets each channel's blocks go once merged."""
    decoder = DataDecoder(nodes(), 0)
    merger = BlockMerger("0-0")
    for i, first in enumerate((0, 2)):
        found = decoder.blocks(entry(first), decode=False)
        assert found is not None
        merger.add(*found, f"1-{i}")
    held = {index: parts for index, (_, _, parts) in merger.pending.items()}
    events = merger.flush()
    assert isinstance(events, list) and len(events) == 3
    assert [plain(d.data) for _, _, d in events][0] == [0.0, 1.0, 2.0, 3.0]
    for parts in held.values():  # held by this test only
        assert gc.get_referrers(parts) == [held]
    assert merger.flush() == []


def merged_walk(page: list[list[Any]], runs: bool, limit: int,
                first_point: int | None = 0) -> list[Any]:
    """What the reader's merging loop gives for ``page``: events, then the error."""
    decoder = DataDecoder(nodes(), first_point)
    merger = BlockMerger("0-0")
    out: list[Any] = []

    def flush() -> None:
        out.extend((node.name, d.first_index, plain(d.data), d.position)
                   for _, node, d in merger.flush())

    i, run_from = 0, 0 if runs else len(page)
    while i < len(page):
        if i >= run_from:
            merged, run_from = decoder.merge_run(page, i, merger, limit)
            if merged:
                i += merged
                if merger.nbytes >= limit:
                    flush()
                continue
        entry_id, flat = page[i]
        i += 1
        try:
            found = decoder.blocks(flat, decode=False)
        except MalformedEventError as exc:
            flush()
            return out + [("error", entry_id, str(exc))]
        if found is None:
            flush()
            merger.passed(entry_id.decode())
            out.append(("other", entry_id))
            continue
        merger.add(*found, entry_id.decode())
        if merger.nbytes >= limit:
            flush()
    flush()
    return out + [("expected", decoder.expected)]


def fixed_entry(first: int, npoints: int = 2) -> list[bytes]:
    """A data entry of the fixed-size channels only (the ones merged in runs)."""
    return packed_entry(first, npoints, ragged=False)


def fixed_page(sizes: list[int]) -> list[list[Any]]:
    page, first = [], 0
    for i, n in enumerate(sizes):
        page.append([b"1-%d" % i, fixed_entry(first, n)])
        first += n
    return page


@pytest.mark.parametrize("limit", [1, 200, 700, 10**9])
def test_runs_merge_as_entries_one_by_one(limit):
    page = fixed_page([2, 3, 1, 4] * 10)
    page.insert(17, [b"1-x", [b"t", b"prep"]])
    by_runs = merged_walk(page, True, limit)
    assert by_runs == merged_walk(page, False, limit)
    assert by_runs[-1] == ("expected", {1: 100, 2: 100})


@pytest.mark.parametrize("at", [0, 5, 20, 39])
@pytest.mark.parametrize("change", [
    dict(f=b"7"), dict(f=b"-1"), dict(f=b"x"), dict(f=b"+%d"), dict(f=b"99999999999999999999999"),
    dict(f=b"%d,0"), dict(k=b"1:7,2:24", p=b"\0" * 31), dict(k=b"1:16,2:13", p=b"\0" * 29),
    dict(k=b"9:16,2:24"), dict(f=None),
])
def test_runs_with_a_bad_entry_give_what_entries_one_by_one_give(at, change):
    page = fixed_page([2, 3, 1, 4] * 10)
    here = int(fields_dict(page[at][1])[b"f"])
    page[at][1] = changed(page[at][1], **{key: value if value is None or b"%d" not in value
                                          else value % here for key, value in change.items()})
    by_runs = merged_walk(page, True, 300)
    assert by_runs == merged_walk(page, False, 300)


@pytest.mark.parametrize("make_page", [lambda sizes: fixed_page(sizes),
                                       lambda sizes: packed_page(sizes)])
def test_runs_after_a_position_start_where_the_stream_is(make_page):
    page = make_page([2] * 12)[3:]
    assert merged_walk(page, True, 10**9, None) == merged_walk(page, False, 10**9, None)
    assert merged_walk(page, True, 10**9, None)[0][1] == 6
    assert merged_walk(page, True, 10**9, 0)[-1][0] == "error"


@pytest.mark.parametrize("first_point", [0, None])
@pytest.mark.parametrize("shift", [0, 2, 7])
def test_runs_of_channels_at_different_first_indices_merge_as_entries_one_by_one(
        first_point, shift):
    """Channels of one entry need not start at the same index (a walk from a position,
    channels at different rates): each channel's own first index is checked."""
    page = fixed_page([2, 3, 1, 4] * 10)
    for item in page:
        first = int(fields_dict(item[1])[b"f"])
        item[1] = changed(item[1], f=b"%d,%d" % (first, first + shift))
    by_runs = merged_walk(page, True, 10**9, first_point)
    assert by_runs == merged_walk(page, False, 10**9, first_point)
    if first_point is None or not shift:
        assert by_runs[-1] == ("expected", {1: 100, 2: 100 + shift})
    else:
        assert by_runs[-1][0] == "error"


def test_entries_with_variable_length_points_are_not_merged_in_runs():
    decoder = DataDecoder(nodes(), 0)
    page = [[b"1-%d" % i, entry(2 * i)] for i in range(20)]
    assert decoder.merge_run(page, 0, BlockMerger("0-0"), 10**9) == (0, 1)


def test_entries_alike_are_merged_in_one_run_up_to_the_byte_limit():
    decoder = DataDecoder(nodes(), 0)
    merger = BlockMerger("0-0")
    page = fixed_page([2] * 30)
    entry_bytes = 2 * 8 + 2 * 12
    assert decoder.merge_run(page, 0, merger, 10 * entry_bytes) == (10, 10)
    assert merger.nbytes == 10 * entry_bytes and merger.last == "1-9"
    assert decoder.merge_run(page, 10, merger, 10**9) == (20, 30)
    assert decoder.expected == {1: 60, 2: 60}
    events = list(merger.flush())
    assert [(n.name, d.first_index, len(d.data)) for _, n, d in events] == [
        ("ch1", 0, 60), ("ch2", 0, 60)]


@pytest.mark.parametrize("sizes", [[20] + [1] * 60, [1] + [20] * 30, [1, 30] * 20])
@pytest.mark.parametrize("limit", [300, 1000, 5000])
def test_runs_of_entries_of_changing_sizes_merge_as_entries_one_by_one(sizes, limit):
    """Only the entries that may fit under the limit are split into columns, judged
    by the first one's size: a wrong guess merges fewer at once, never other blocks."""
    page = fixed_page(sizes)
    by_runs = merged_walk(page, True, limit)
    assert by_runs == merged_walk(page, False, limit)
    assert by_runs[-1] == ("expected", {1: sum(sizes), 2: sum(sizes)})


def test_merger_limit_grows_with_the_channels_held_up_to_a_ceiling():
    merger = BlockMerger("0-0", 1000, 300, 2000)
    assert merger.limit == 1000
    decoder = DataDecoder(nodes(), 0)
    found = decoder.blocks(fixed_entry(0), decode=False)
    merger.add(*found, "1-0")  # two channels held: 600 < 1000
    assert merger.limit == 1000
    many = BlockMerger("0-0", 1000, 300, 2000)
    many.pending = {i: [None, 0, []] for i in range(5)}
    assert many.limit == 1500
    many.pending = {i: [None, 0, []] for i in range(50)}
    assert many.limit == 2000


# -- packed entries (p, k, f), as a publisher sends them ------------------------------


def packed_entry(first: int | list[int], npoints: int = 2, ragged: bool = True
                 ) -> list[bytes]:
    """A data entry as :func:`events.encode_data` makes it: channels 1 and 2 packed,
    channel 3 (variable-length points) in its own fields; ``first``: one index, or
    one per channel."""
    firsts = first if isinstance(first, list) else [first] * 3
    blocks: list[Any] = [
        (1, firsts[0], np.arange(firsts[0], firsts[0] + npoints, dtype="<f8").tobytes(), None),
        (2, firsts[1], np.ones((npoints, 3), dtype="<i4").tobytes(), None)]
    if ragged:
        raw, lengths, _ = codec.ragged_to_bytes(
            [np.arange(2, dtype="<f4") for _ in range(npoints)], np.dtype("<f4"), "t")
        blocks.append((3, firsts[2], raw, lengths))
    flat: list[bytes] = []
    for key, value in events.encode_data(blocks).items():
        flat += [key, value]
    return flat


def test_encode_data_packs_fixed_size_blocks_and_gives_them_back():
    blocks = [(4, 7, b"a" * 16, None), (1, 7, b"", None), (2, 9, b"xyz", b"\1" * 8),
              (9, 3, b"b" * 8, None)]
    fields = events.encode_data(blocks)
    assert fields[b"k"] == b"4:16,1:0,9:8" and fields[b"p"] == b"a" * 16 + b"b" * 8
    assert fields[b"f"] == b"7,7,3" and fields[b"d2"] == b"xyz" and fields[b"f2"] == b"9"
    assert sorted(events.iter_data_blocks(fields)) == sorted(blocks)
    same = events.encode_data([(1, 5, b"x" * 8, None), (2, 5, b"y" * 8, None)])
    assert same[b"f"] == b"5" and set(same) == {b"t", b"p", b"k", b"f"}


@pytest.mark.parametrize("decode", [False, True])
def test_packed_entries_give_the_blocks_of_the_general_way(decode):
    entries = [packed_entry(0), packed_entry(2), packed_entry(4, 5), packed_entry(9, 1),
               entry(10), packed_entry(12, 0), packed_entry(12)]
    fast, general = both_ways(entries, decode)
    assert fast == general
    assert [(name, first) for name, first, _ in fast[2]] == [("ch1", 4), ("ch2", 4), ("ch3", 4)]
    assert fast[-1][0][2] == (np.arange(12, 14, dtype="<f8").tolist() if decode else
                              np.arange(12, 14, dtype="<f8").tobytes())


def test_packed_entries_with_a_first_index_per_block():
    fast, general = both_ways([packed_entry([0, 0, 0]), packed_entry([2, 2, 2], 3),
                               packed_entry([5, 5, 5])], False)
    assert fast == general and fast[1][0][1] == 2
    fast, general = both_ways([packed_entry([7, 3, 0])], False, first_point=None)
    assert fast == general and [first for _, first, _ in fast[0]] == [7, 3, 0]


def replace(flat: list[bytes], key: bytes, value: bytes | None) -> list[bytes]:
    """``flat`` with field ``key`` set to ``value`` (removed for ``None``)."""
    fields = fields_dict(flat)
    if value is None:
        del fields[key]
    else:
        fields[key] = value
    return [item for pair in fields.items() for item in pair]


@pytest.mark.parametrize("decode", [False, True])
@pytest.mark.parametrize("key, value, message", [
    (b"k", b"1:16,2", "are not <channel>:<bytes> separated by commas"),
    (b"k", b"1:x,2:24", "are not <channel>:<bytes> separated by commas"),
    (b"k", b"1:16,1:24", "name a channel twice"),
    (b"k", b"1:-16,2:56", "give a negative number"),
    (b"k", b"1:24,2:16", "16 bytes is not a whole number of 12-byte points"),
    (b"k", b"1:16,2:20", "add up to 36 bytes, field 'p' holds 40"),
    (b"k", b"1:16,7:24", "undeclared channel #7"),
    (b"k", b"1:16,3:24", "variable-length block without point lengths"),
    (b"p", b"\0" * 39, "add up to 40 bytes, field 'p' holds 39"),
    (b"f", b"3", "channel 'ch1' block starts at point 3, expected 2 (gap)"),
    (b"f", b"2,0", "channel 'ch2' block starts at point 0, expected 2 (duplicate)"),
    (b"f", b"2,2,2", "3 first indices for 2 blocks"),
    (b"f", b"two", "no valid first index 'f'"),
    (b"f", b"2,", "no valid first index 'f'"),
    (b"f", b"-1", "negative first index -1 for packed channel #1"),
    (b"p", None, "need all of the fields 'p', 'k' and 'f'"),
    (b"k", None, "need all of the fields 'p', 'k' and 'f'"),
    (b"d1", b"\0" * 8, "channel #1 is both packed and given in b'd1'"),
])
def test_bad_packed_entry_gives_the_error_of_the_general_way(decode, key, value, message):
    bad = replace(packed_entry(2), key, value)
    if key == b"d1":
        bad += [b"f1", b"2"]
    fast, general = both_ways([packed_entry(0), bad, packed_entry(4)], decode)
    assert fast == general
    kind, text = fast[-1]
    assert kind == "error" and message in text


def swapped_entry(first: int) -> list[bytes]:
    """Two points of channels 1 and 2, packed in the other order (another layout)."""
    return flat_fields(events.encode_data([
        (2, first, np.ones((2, 3), dtype="<i4").tobytes(), None),
        (1, first, np.arange(first, first + 2, dtype="<f8").tobytes(), None)]))


def packed_page(sizes: list[int]) -> list[list[Any]]:
    """Entries of packed fixed-size blocks only (the ones merged in runs)."""
    page, first = [], 0
    for i, n in enumerate(sizes):
        flat = packed_entry(first, n, ragged=False)
        page.append([b"1-%d" % i, flat])
        first += n
    return page


@pytest.mark.parametrize("limit", [1, 200, 700, 10**9])
@pytest.mark.parametrize("rows_bytes", [0, 10**9])
def test_runs_of_packed_entries_merge_as_entries_one_by_one(limit, rows_bytes, monkeypatch):
    """Whether a run is put together in the merger's rows or kept as views of each
    entry's bytes, and whatever the flushes, the events are those of one by one."""
    monkeypatch.setattr(blocks, "ROWS_BYTES", rows_bytes)
    page = packed_page([2, 3, 1, 4] * 4 + [2] * 20 + [2, 3, 1, 4] * 4)
    page.insert(17, [b"1-x", [b"t", b"prep"]])
    page.insert(30, [b"1-y", swapped_entry(int(fields_dict(page[29][1])[b"f"]) + 2)])
    for i in range(31, len(page)):  # the entry of every channel above moved them on by 2
        flat = page[i][1]
        at = flat.index(b"f") + 1
        flat[at] = b"%d" % (int(flat[at]) + 2)
    by_runs = merged_walk(page, True, limit)
    assert by_runs == merged_walk(page, False, limit)
    assert by_runs[-1][0] == "expected" and by_runs[-1][1] == {1: 122, 2: 122}


@pytest.mark.parametrize("at", [0, 5, 20, 39])
@pytest.mark.parametrize("key, value", [
    (b"f", b"7"), (b"f", b"-1"), (b"f", b"x"), (b"f", b"0,0"), (b"f", b"+%d"),
    (b"f", b"99999999999999999999999"), (b"p", b"\0" * 7), (b"k", b"1:8,2:12"),
    (b"k", b"2:24,1:16"), (b"k", b"9:16,2:24"), (b"t", b"lima"),
])
def test_runs_of_packed_entries_with_a_bad_one_give_what_one_by_one_gives(at, key, value):
    page = packed_page([2] * 40)
    flat = page[at][1]
    here = int(fields_dict(flat)[b"f"])
    page[at][1] = replace(flat, key, value % here if b"%d" in value else value)
    by_runs = merged_walk(page, True, 300)
    assert by_runs == merged_walk(page, False, 300)


@pytest.mark.parametrize("rows_bytes", [0, 10**9])
def test_merged_points_of_packed_runs_are_read_only_copies(rows_bytes, monkeypatch):
    monkeypatch.setattr(blocks, "ROWS_BYTES", rows_bytes)
    decoder = DataDecoder(nodes(), 0)
    merger = BlockMerger("0-0")
    page = packed_page([2] * 20)
    assert decoder.merge_run(page, 0, merger, 10**9) == (20, 20)
    found = {node.name: d.data for _, node, d in merger.flush()}
    assert found["ch1"].tolist() == list(range(40)) and found["ch2"].shape == (40, 3)
    assert not found["ch1"].flags.writeable and not found["ch2"].flags.writeable
