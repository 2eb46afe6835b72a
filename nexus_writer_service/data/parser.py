"""Scan stream parsing without I/O: stream entries in, events out.

A scan's walk reads its stream page after page (lists of entries as the server sends
them, ``(ID, [field, value, field, value, ...])``). Everything about those pages that
is not reading them lives here, so that it is tested without a server by feeding it
the entries a publisher encodes (:mod:`.events`):

* what each entry means (its :class:`~.events.EntryKind`), and the events it gives:
  NEW_NODE before any NEW_DATA of the node, PREPARED_SCAN, NEW_DATA, END_SCAN last;
* the merge policy of a merging walk: which blocks are merged, when they are given
  out (a byte limit, a pause in the stream, any entry that is not data), and from
  which position a resumed walk loses nothing (:attr:`ScanStreamParser.safe_position`);
* how many entries the next read should ask for (:class:`PageSizer`).

The Redis reader (:mod:`.reader`) is a thin loop around it: read a page, feed it,
acknowledge, check the publisher's lease when nothing comes. Not thread-safe: one
parser per walk, used by the thread that iterates the walk.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Iterator

from ..errors import MalformedEventError
from .blocks import BlockMerger, DataDecoder, fields_dict
from .events import EntryKind, EventData, EventType, NodeType, decode_entry
from .nodes import LimaNode, Node, ScansNode, make_node
from .source import Event

__all__ = [
    "Event",
    "RawEntry",
    "PageSizer",
    "ScanStreamParser",
    "page_count",
    "data_page_count",
]

#: A stream entry as the server sends it: its ID and ``[field, value, field, value, ...]``.
RawEntry = tuple[bytes, list[bytes]]

#: Most entries asked for in one read.
BATCH = 1000
#: Entries of a scan stream read after a page that held no data entry (or first):
#: the channel declarations that open a scan are small, the data after them may
#: be a thousand times larger, so the size of the first is no guide to the second.
PROBE_BATCH = 16
#: Bytes a read asks for (entries per read adapt to the size of the last ones), so
#: that large entries are handled while the next ones are read, in bounded memory.
PAGE_BYTES = 8 << 20
#: Bytes of merged blocks given out at once, so that a consumer starts on a large
#: page before all of it is decoded; with many channels, up to MERGE_CHANNEL_BYTES
#: per channel (at most MERGE_MOST_BYTES), so that each block handed over is worth
#: its handling.
MERGE_BYTES = 2 << 20
#: Seconds between reads of a stream written to all the time, when merging: blocks
#: come merged by the few hundred entries, not one by one, for a delay much shorter
#: than a writer's ``flush_period``.
MERGE_READ_INTERVAL = 0.005
MERGE_CHANNEL_BYTES = 64 << 10
#: Most bytes of merged blocks held at once: with many channels, blocks of a channel
#: are merged over several pages (while more entries wait) up to MERGE_CHANNEL_BYTES.
MERGE_MOST_BYTES = 4 * PAGE_BYTES

_DATA = EntryKind.DATA.value


def page_count(page: list[RawEntry]) -> int:
    """Entries to ask for next so that a page holds about :data:`PAGE_BYTES`."""
    # b"".join(fields) would copy the page; lengths of its values alone are enough
    values = itertools.chain.from_iterable(fields[1::2] for _, fields in page)
    size = sum(map(len, values))
    return max(1, min(BATCH, PAGE_BYTES * len(page) // max(size, 1)))


def data_page_count(page: list[RawEntry]) -> int:
    """Like :func:`page_count` for a scan stream, from the size of its data entries
    alone: :data:`PROBE_BATCH` after a page without any."""
    size = entries = 0
    for _, fields in page:
        if fields[1:2] == [_DATA] and fields[0] == b"t":
            entries += 1
            size += sum(map(len, fields[1::2]))
    if not entries:
        return PROBE_BATCH
    return max(1, min(BATCH, PAGE_BYTES * entries // max(size, 1)))


class PageSizer:
    """How many entries the next read of a scan stream asks for
    (:func:`data_page_count`), and whether the last page was full: more entries
    were waiting."""

    def __init__(self) -> None:
        self.asked = PROBE_BATCH
        self.full = False

    def __call__(self, page: list[RawEntry]) -> int:
        self.full = len(page) >= self.asked
        self.asked = data_page_count(page)
        return self.asked


class ScanStreamParser:
    """The events of one walk of one scan stream, page by page.

    ``scan``: the scan node events refer to (PREPARED_SCAN, END_SCAN) and nodes are
    declared in. ``nodes``: the nodes known before the walk, by index (the walk adds
    the ones declared as it goes). ``position``: where the walk starts; from the
    stream's start ("0-0") every channel starts at point 0, after a position a
    channel's first block may start anywhere. ``include``/``exclude``: node types
    (values of :class:`~.events.NodeType`) whose events are given.

    With ``merge_blocks``, the blocks of one channel read together come as one
    NEW_DATA event (see :class:`~.blocks.BlockMerger` for the positions they carry);
    with ``hold_over`` too, merged blocks may be held from one page to the next while
    more entries wait (a full page) and are given out by :meth:`idle` when a read
    finds nothing. A walk that acknowledges every page read does not hold over:
    what is held would be acknowledged without having been given out.
    """

    def __init__(self, scan: Any, nodes: dict[int, Node], position: str, *,
                 include: set[str] | None = None, exclude: Iterable[str] = (),
                 merge_blocks: bool = False, hold_over: bool = False,
                 what: str = "") -> None:
        self.scan = scan
        self.by_index = nodes
        self.position = position
        self.what = what or f"{getattr(scan, 'key', scan)}:events"
        self.include = include
        self.exclude = set(exclude)
        self.sizer = PageSizer()
        self.decoder = DataDecoder(nodes, 0 if position == "0-0" else None)
        self.merger = BlockMerger(position, MERGE_BYTES, MERGE_CHANNEL_BYTES,
                                  MERGE_MOST_BYTES) if merge_blocks else None
        self.hold_over = merge_blocks and hold_over
        self.want_data = self.wanted(NodeType.CHANNEL)
        #: END_SCAN was given: nothing after it belongs to the scan
        self.ended = False

    @property
    def read_interval(self) -> float:
        """Seconds between reads once caught up with the stream
        (:data:`MERGE_READ_INTERVAL` when merging)."""
        return MERGE_READ_INTERVAL if self.merger is not None else 0.0

    @property
    def safe_position(self) -> str:
        """Resuming after this position loses nothing the walk has not given out
        (it may give again points already given, at the same indices)."""
        return self.merger.safe if self.merger is not None else self.position

    def wanted(self, node_type: NodeType) -> bool:
        include = self.include
        return (include is None or node_type.value in include) and (
            node_type.value not in self.exclude)

    def idle(self) -> list[Event]:
        """A read found nothing new: what is held is given out."""
        return self.merger.flush() if self.merger is not None else []

    def close(self) -> list[Event]:
        """The walk stops before the scan ended: what is held is given out."""
        return self.idle()

    def feed(self, page: list[RawEntry]) -> Iterator[Event]:
        """The events of ``page`` (entries following the ones fed before), given as
        they are decoded. Entries merged into a run are let go from ``page`` as soon
        as the merger holds their values. Stops after END_SCAN (:attr:`ended`).

        :raises MalformedEventError: an entry that does not follow the data model,
            named by stream key and ID, after the events held before it are given
        """
        merger = self.merger
        decoder = self.decoder
        want_data = self.want_data
        # runs of entries alike are checked and merged together; the others (and a
        # run with any doubt) one by one
        run_from = 0 if merger is not None and want_data else len(page)
        i = 0
        while i < len(page):
            if merger is not None and i >= run_from:
                merged, run_from = decoder.merge_run(page, i, merger, merger.limit)
                if merged:
                    # let go of the merged entries (the merger holds their values)
                    gone: Iterable[Any] = itertools.repeat(None, merged)
                    page[i:i + merged] = gone
                    i += merged
                    self.position = merger.last
                    if merger.nbytes >= merger.limit:
                        yield from merger.flush()
                    continue
            entry_id, flat = page[i]
            i += 1
            position = self.position = entry_id.decode()
            try:
                found = decoder.blocks(flat, decode=merger is None)
            except MalformedEventError as exc:
                if merger is not None:
                    yield from merger.flush()
                raise MalformedEventError(f"{self.what} entry {position}: {exc}") from None
            if found is not None:
                if not want_data:
                    continue
                blocks, nbytes = found
                if merger is not None:
                    merger.add(blocks, nbytes, position)
                    if merger.nbytes >= merger.limit:
                        yield from merger.flush()
                    continue
                for channel, first, data in blocks:
                    yield EventType.NEW_DATA, channel, EventData(position, first, data)
                continue
            if merger is not None:
                yield from merger.flush()
                merger.passed(position)
            event = self._other(flat, position)
            if event is not None:
                yield event
                if self.ended:
                    return
        if merger is not None and not (self.hold_over and self.sizer.full
                                       and merger.nbytes < merger.limit):
            yield from merger.flush()

    def _other(self, flat: list[bytes], position: str) -> Event | None:
        """The event of an entry that is not data (``None`` if not wanted)."""
        entry = decode_entry(fields_dict(flat), f"{self.what} entry {position}")
        kind = entry.kind
        if kind is EntryKind.NODE:
            assert entry.node is not None
            by_index = self.by_index
            declared = by_index.get(entry.node.index) or make_node(self.scan, entry.node)
            by_index[declared.index] = declared
            if self.wanted(declared.type):
                return EventType.NEW_NODE, declared, EventData(position)
            return None
        if kind is EntryKind.LIMA:
            assert entry.lima is not None
            name, progress = entry.lima
            lima = next((n for n in self.by_index.values() if n.name == name), None)
            if not isinstance(lima, LimaNode):
                raise MalformedEventError(
                    f"{self.what} entry {position}: progress for undeclared lima {name!r}")
            if self.wanted(NodeType.LIMA):
                return EventType.NEW_DATA, lima, EventData(position, 0, progress)
            return None
        if kind is EntryKind.SCANS:
            assert entry.scan is not None
            name, reference = entry.scan
            scans = next((n for n in self.by_index.values() if n.name == name), None)
            if not isinstance(scans, ScansNode):
                raise MalformedEventError(
                    f"{self.what} entry {position}: scan {reference.key} referenced by "
                    f"{name!r}, which is not a declared scans node")
            if self.wanted(NodeType.SCANS):
                return EventType.NEW_DATA, scans, EventData(position, 0, [reference])
            return None
        if kind is EntryKind.PREPARED:
            return EventType.PREPARED_SCAN, self.scan, EventData(position)
        if kind is EntryKind.INFO:
            return EventType.INFO_UPDATE, self.scan, EventData(position, info=entry.info)
        # END (a data entry never comes here: DataDecoder.blocks answers for those)
        assert entry.end is not None
        reason, message = entry.end
        self.ended = True
        return EventType.END_SCAN, self.scan, EventData(position, reason=reason,
                                                        message=message)
