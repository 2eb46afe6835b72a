"""The data entries of a scan stream as a reader gets them, checked and merged (no I/O).

A reader gets each stream entry as the flat list the server sends, ``[field, value,
field, value, ...]`` (see :mod:`.events` for the fields). The data entries of one
scan nearly always carry the same fields in the same order, one block per channel,
so what that list of fields means (which channel each value belongs to, where its
first point index is) is worked out once per field list, as a :class:`_Layout`, and
each entry is then only checked: whole points, point continuity. An entry that does
not fit (a field given twice, an undeclared channel, a gap, a bad number) goes the
general way, through a dict of its fields, which names the channel and the problem
in its error. Both ways give the same blocks and the same errors. A merging reader
goes further: consecutive entries of packed blocks of one layout are checked
together (:meth:`DataDecoder.merge_run`), and at any doubt one by one again.

Fixed-size points travel packed (``p``, ``k``, ``f``); only variable-length points
have fields of their own. A block of fixed-size points in fields of its own (how
older publishers sent them) is refused by the general way, naming the encoding.

Not thread-safe: one :class:`DataDecoder` and one :class:`BlockMerger` per walk.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ..errors import MalformedEventError
from .events import EventData, EventType, iter_wire_blocks, old_encoding, packing
from .nodes import ChannelNode, Node

__all__ = ["Block", "DataDecoder", "BlockMerger", "fields_dict"]

#: ``(channel, first point index, data)``: ``data`` is raw bytes of fixed-size
#: points (not decoded yet) or the decoded points.
Block = tuple[ChannelNode, int, Any]
#: Field lists remembered per walk; a stream whose entries keep changing their fields
#: (never the case for a publisher's) starts again from an empty memory.
MAX_LAYOUTS = 64
#: Fewest consecutive entries of one layout checked together (:meth:`DataDecoder.merge_run`).
MIN_RUN = 8
#: Most bytes a merger keeps for putting runs of packed entries together
#: (:meth:`BlockMerger.rows`); a merger that holds more takes runs apart as views.
ROWS_BYTES = 4 << 20


def fields_dict(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """``{field: value}`` of an entry given as ``[field, value, ...]`` (the last
    value of a field given twice, as redis-py's own conversion)."""
    it = iter(flat)
    return dict(zip(it, it))


def _getter(positions: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``flat -> tuple of flat[p] for p in positions`` (a tuple even for one or none;
    positions may be slices)."""
    if len(positions) > 1:
        return itemgetter(*positions)
    return lambda flat: tuple(flat[at] for at in positions)


class _ChannelSlot(NamedTuple):
    """Where one channel's block is in an entry's flat list (positions of values)."""

    node: ChannelNode
    channel: int
    data_at: int
    #: -1 for a packed block (its first index is in the entry's ``f``, at ``column``)
    first_at: int
    lengths_at: int | None
    #: bytes per point; 0 for variable-length points
    point_size: int
    #: a packed block: where its bytes are in ``p`` (``data_at``), and which of the
    #: first indices in ``f`` is its own when ``f`` gives one per block
    begin: int = -1
    end: int = -1
    column: int = -1


class _Layout(NamedTuple):
    keys: list[bytes]
    kind_at: int
    slots: tuple[_ChannelSlot, ...]
    #: the channel index of each slot
    channels: tuple[int, ...]
    #: packed blocks: where ``k``, ``p`` and ``f`` are, the ``k`` this layout is for,
    #: the size of ``p``; -1 and ``b""`` without packed blocks
    which_at: int = -1
    packed_at: int = -1
    packed_first_at: int = -1
    which: bytes = b""
    packed_bytes: int = 0
    npacked: int = 0
    #: ``memoryview of p -> (each packed block, a view)``
    packed_values: Callable[[Any], tuple[Any, ...]] = tuple
    #: every block is packed (only such runs are merged, by :meth:`DataDecoder.merge_run`)
    packed_only: bool = False


class DataDecoder:
    """Turns data entries into checked channel blocks, point continuity included.

    ``by_index`` maps node indices to the nodes declared so far (the walk adds to
    it as NEW_NODE entries come); ``first_point`` is the index every channel starts
    at (0 from the stream's start), ``None`` when the walk starts after a position,
    where a channel's first block may start anywhere.
    """

    def __init__(self, by_index: dict[int, Node], first_point: int | None) -> None:
        self.by_index = by_index
        self.first_point = first_point
        #: index after the last point seen, per channel index
        self.expected: dict[int, int] = {}
        self._layouts: dict[tuple[bytes, ...], _Layout] = {}
        self._last: _Layout | None = None

    def blocks(self, flat: Sequence[bytes], decode: bool
               ) -> tuple[list[Block], int] | None:
        """The channel blocks of the entry ``flat`` and their bytes still raw, or
        ``None`` if it is not a data entry.

        Without ``decode``, blocks of fixed-size points stay raw bytes (checked, and
        counted in the second item); variable-length points are always decoded.
        Raises :class:`MalformedEventError` naming the channel (not the entry)."""
        layout = self._layout(flat)
        if layout is not None and flat[layout.kind_at] == b"data":
            found = self._checked(flat, layout, decode)
            if found is not None:
                return found
        fields = fields_dict(flat)
        if fields.get(b"t") != b"data":
            return None
        blocks = self.general(fields, decode)
        nbytes = sum(len(data) for _, _, data in blocks if isinstance(data, bytes))
        return blocks, nbytes

    def _layout(self, flat: Sequence[bytes]) -> _Layout | None:
        if len(flat) % 2:
            return None
        keys = flat[0::2]
        last = self._last
        if last is not None and keys == last.keys and (
                last.which_at < 0 or flat[last.which_at] == last.which):
            return last
        # packed blocks: the layout is also that of the ``k`` value
        known = tuple(keys) + ((flat[2 * keys.index(b"k") + 1],) if b"k" in keys else ())
        layout = self._layouts.get(known)
        if layout is None:
            layout = self._compile(list(keys), flat)
            if layout is None:
                return None
            if len(self._layouts) >= MAX_LAYOUTS:
                self._layouts.clear()
            self._layouts[known] = layout
        self._last = layout
        return layout

    def _compile(self, keys: list[bytes], flat: Sequence[bytes]) -> _Layout | None:
        """The layout of an entry with fields ``keys`` (and the ``k`` of ``flat``);
        ``None`` when an entry with these fields cannot be valid data, or names a
        field or a channel twice."""
        at = {key: 2 * i + 1 for i, key in enumerate(keys)}
        if len(at) != len(keys) or b"t" not in at:
            return None
        slots: list[_ChannelSlot] = []
        seen: set[int] = set()  # b"d1" and b"d01" name the same channel
        which_at, packed_at, packed_first_at = (at.get(b"k", -1), at.get(b"p", -1),
                                                at.get(b"f", -1))
        which = b""
        begin = 0
        if which_at >= 0 or packed_at >= 0:
            if min(which_at, packed_at, packed_first_at) < 0:
                return None
            which = flat[which_at]
            try:
                blocks = packing(which)
            except MalformedEventError:
                return None
            for column, (index, size) in enumerate(blocks):
                node = self.by_index.get(index)
                if not isinstance(node, ChannelNode) or node.variable_length \
                        or size % node.point_size:
                    return None
                seen.add(index)
                slots.append(_ChannelSlot(node, index, packed_at, -1, None, node.point_size,
                                          begin, begin + size, column))
                begin += size
        packed_only = bool(slots)
        for key in keys:
            if key[:1] != b"d":
                continue
            suffix = key[1:]
            try:
                index = int(suffix)
            except ValueError:
                return None
            node = self.by_index.get(index)
            first_at = at.get(b"f" + suffix)
            # fields of its own: variable-length points only (else the general way
            # names the old encoding)
            if first_at is None or not isinstance(node, ChannelNode) or index in seen \
                    or not node.variable_length:
                return None
            seen.add(index)
            packed_only = False
            slots.append(_ChannelSlot(node, index, at[key], first_at, at.get(b"l" + suffix), 0))
        return _Layout(keys, at[b"t"], tuple(slots), tuple(slot.channel for slot in slots),
                       which_at, packed_at, packed_first_at, which, begin,
                       sum(slot.begin >= 0 for slot in slots),
                       _getter([slice(slot.begin, slot.end) for slot in slots
                                if slot.begin >= 0]),
                       packed_only)

    def _checked(self, flat: Sequence[bytes], layout: _Layout, decode: bool
                 ) -> tuple[list[Block], int] | None:
        """The blocks of a data entry of a known layout, or ``None`` at the first
        doubt (nothing is recorded then: the general way redoes the entry)."""
        expected = self.expected
        first_point = self.first_point
        blocks: list[Block] = []
        ends: list[int] = []
        nbytes = 0
        packed_firsts: list[int] = []
        if layout.which_at >= 0:
            if len(flat[layout.packed_at]) != layout.packed_bytes:
                return None
            text = flat[layout.packed_first_at]
            try:
                packed_firsts = [int(first) for first in text.split(b",")] if b"," in text \
                    else [int(text)] * layout.npacked
            except ValueError:
                return None
            if len(packed_firsts) != layout.npacked:
                return None
        for node, index, data_at, first_at, lengths_at, point_size, begin, end, column \
                in layout.slots:
            if begin >= 0:
                raw = flat[data_at][begin:end]
                first = packed_firsts[column]
            else:
                raw = flat[data_at]
                try:
                    first = int(flat[first_at])
                except ValueError:
                    return None
            if first != expected.get(index, first if first_point is None else first_point) \
                    or first < 0:
                return None
            data: Any = raw
            if point_size:
                count, rest = divmod(len(raw), point_size)
                if rest:
                    return None
                if decode:
                    data = node.decode(raw)
                else:
                    nbytes += len(raw)
            else:
                try:
                    data = node.decode(raw, None if lengths_at is None else flat[lengths_at])
                except MalformedEventError:
                    return None
                count = len(data)
            blocks.append((node, first, data))
            ends.append(first + count)
        expected.update(zip(layout.channels, ends))
        return blocks, nbytes

    def merge_run(self, page: Sequence[Sequence[Any]], start: int, merger: "BlockMerger",
                  limit: int) -> tuple[int, int]:
        """Check the data entries ``page[start:]`` that share the layout of the first
        one together, and hand their raw blocks to ``merger``.

        ``page`` holds ``(ID, flat fields)`` pairs. Stops after the entry that brings
        ``merger.nbytes`` to ``limit`` (as adding entries one by one would, so the
        merger is flushed at the same points). Returns ``(entries merged, end)``:
        when nothing was merged (not data, variable-length points, a short run or
        any doubt), the entries up to ``end`` are to be handled one by one, which
        gives the same blocks or names the problem."""
        flat = page[start][1]
        layout = self._layout(flat)
        if layout is None or not layout.packed_only or flat[layout.kind_at] != b"data":
            return 0, start + 1
        return self._merge_packed(page, start, merger, limit, layout)

    def _merge_packed(self, page: Sequence[Sequence[Any]], start: int, merger: "BlockMerger",
                      limit: int, layout: _Layout) -> tuple[int, int]:
        """:meth:`merge_run` for entries of packed blocks only, as a publisher sends.

        Entries of one ``k`` have ``p`` of one size, and their blocks all start at
        the index in ``f``: the run is checked from those alone. It is handed over
        as the columns of its rows put together by :meth:`BlockMerger.rows` or,
        when the merger holds too much for that, as views of each entry's ``p``."""
        flat = page[start][1]
        keys, kind_at, size = layout.keys, layout.kind_at, len(flat)
        which_at, which = layout.which_at, layout.which
        packed_at, entry_bytes = layout.packed_at, layout.packed_bytes
        if len(flat[packed_at]) != entry_bytes:
            return 0, start + 1
        last = len(page)
        if entry_bytes:
            # up to the entry that brings the merger to ``limit``, as one by one
            last = min(last, start + max(MIN_RUN, -(-(limit - merger.nbytes) // entry_bytes)))
        end = start + 1
        while end < last:
            other = page[end][1]
            if len(other) != size or other[kind_at] != b"data" or other[which_at] != which \
                    or len(other[packed_at]) != entry_bytes or other[0::2] != keys:
                break
            end += 1
        if end - start < MIN_RUN:
            return 0, end
        if entry_bytes:
            end = start + min(end - start, max(1, -(-(limit - merger.nbytes) // entry_bytes)))
        flats = [entry[1] for entry in page[start:end]]
        first_at = layout.packed_first_at
        try:  # one first index for every block of an entry (else one by one)
            given = [int(entry[first_at]) for entry in flats]
        except ValueError:
            return 0, end
        first = given[0]
        points = [(slot.end - slot.begin) // slot.point_size for slot in layout.slots]
        start_at = first if self.first_point is None else self.first_point
        expected = self.expected
        if first < 0 or any(expected.get(channel, start_at) != first
                            for channel in layout.channels):
            return 0, end
        count = len(flats)
        if count > 1:
            # a run of entries whose blocks all share their first index advances every
            # channel by the same number of points
            step = points[0]
            if points.count(step) != len(points) or given != list(
                    range(first, first + count * step, step) if step else [first] * count):
                return 0, end
        expected.update((channel, first + count * n) for channel, n in
                        zip(layout.channels, points))
        packed = [entry[packed_at] for entry in flats]
        rows = merger.rows(packed, entry_bytes, len(layout.slots))
        if rows is not None:
            columns = [[rows[:, slot.begin:slot.end]] for slot in layout.slots]
        else:  # each block a view of its entry's p, picked out in one call per entry
            views: Any = map(memoryview, packed)
            columns = list(map(list, zip(*map(layout.packed_values, views))))
        merger.add_columns([(slot.node, first, column)
                            for slot, column in zip(layout.slots, columns)],
                           count * entry_bytes, page[end - 1][0].decode(),
                           columns_of_rows=rows is not None)
        return count, end

    def general(self, fields: dict[bytes, bytes], decode: bool) -> list[Block]:
        """The blocks of the data entry ``fields``, checking point continuity and
        that fixed-size points come packed.

        Without ``decode``, blocks of fixed-size points stay raw bytes (checked)."""
        out = []
        by_index = self.by_index
        expected = self.expected
        for index, first, raw, lengths, packed in iter_wire_blocks(fields):
            node = by_index.get(index)
            if not isinstance(node, ChannelNode):
                raise MalformedEventError(f"data for undeclared channel #{index}")
            if not packed and not node.variable_length:
                raise MalformedEventError(old_encoding(node.name, index))
            start = expected.get(index, first if self.first_point is None else self.first_point)
            if first != start:
                raise MalformedEventError(
                    f"channel {node.name!r} block starts at point {first}, expected {start} "
                    f"({'gap' if first > start else 'duplicate'})")
            if decode or node.variable_length:
                data = node.decode(raw, lengths)
                expected[index] = first + len(data)
            else:
                data = raw
                expected[index] = first + node.count_points(raw)
            out.append((node, first, data))
        return out


def _joined(parts: list[Any]) -> np.ndarray[Any, Any]:
    """The bytes of ``parts`` (bytes or views of bytes, or 2D ``uint8`` arrays read
    row by row) one after the other, in one new read-only array."""
    sizes = [part.size if isinstance(part, np.ndarray) else len(part) for part in parts]
    # (a flush holds rows of packed runs, or views of their entries: seldom both,
    # then few parts)
    out = np.empty(sum(sizes), dtype=np.uint8)
    at = 0
    for part, size in zip(parts, sizes):
        if isinstance(part, np.ndarray):
            out[at:at + size].reshape(part.shape)[...] = part
        else:
            out[at:at + size] = np.frombuffer(part, dtype=np.uint8)
        at += size
    out.flags.writeable = False
    return out


class BlockMerger:
    """Merges the blocks of each channel read in one page into one NEW_DATA event.

    Channels come out in the order they first appear. Every event but the last of
    a flush carries the position before the flush's first entry, so resuming from
    any event's position never skips a point (it may give some again, at the same
    indices).
    """

    def __init__(self, position: str, merge_bytes: int = 2 << 20, channel_bytes: int = 0,
                 most_bytes: int = 0) -> None:
        self.safe = position
        self.last = position
        #: ``{channel index: [node, first point index, parts]}``
        self.pending: dict[int, list[Any]] = {}
        #: channels of which some blocks are columns of packed runs (2D byte arrays)
        self._columns: set[int] = set()
        #: where runs of packed entries are put together (reused from one flush to
        #: the next), how much of it is in use, and how much the last flush wanted
        self._arena = np.empty(0, dtype=np.uint8)
        self._arena_view = self._arena.data
        self._arena_used = 0
        self._arena_wanted = 0
        self.nbytes = 0
        self._bytes = (merge_bytes, channel_bytes, max(most_bytes, merge_bytes))

    @property
    def limit(self) -> int:
        """Bytes held at which to flush: ``merge_bytes``, or ``channel_bytes`` per
        channel held when that is more, at most ``most_bytes``."""
        merge_bytes, channel_bytes, most_bytes = self._bytes
        return max(merge_bytes, min(most_bytes, channel_bytes * len(self.pending)))

    def add(self, blocks: list[Block], nbytes: int, position: str) -> None:
        """``blocks``: raw bytes of fixed-size points (``nbytes`` of them, decoded
        once, when merged) or decoded variable-length points."""
        pending = self.pending
        for node, first, data in blocks:
            held = pending.get(node.index)
            if held is None:
                pending[node.index] = [node, first, [data]]
            else:
                held[2].append(data)
        self.nbytes += nbytes
        self.last = position

    def add_columns(self, columns: list[tuple[ChannelNode, int, list[Any]]], nbytes: int,
                    position: str, columns_of_rows: bool = False) -> None:
        """Like :meth:`add` for several entries at once: per channel, its raw blocks
        in point order (the lists are kept); with ``columns_of_rows``, each a 2D
        ``uint8`` array, a row per entry."""
        pending = self.pending
        if columns_of_rows:
            self._columns.update(node.index for node, _, _ in columns)
        for node, first, parts in columns:
            held = pending.get(node.index)
            if held is None:
                pending[node.index] = [node, first, parts]
            else:
                held[2].extend(parts)
        self.nbytes += nbytes
        self.last = position

    def rows(self, parts: list[bytes], size: int, channels: int) -> np.ndarray[Any, Any] | None:
        """``parts`` (each ``size`` bytes long, blocks of ``channels`` channels) as the
        rows of a 2D ``uint8`` array, valid until the next :meth:`flush`; ``None``
        when a flush may hold more than :data:`ROWS_BYTES`.

        The rows are copied into memory the merger keeps from one flush to the next:
        memory used for the first time costs more than the copy (a page fault per
        page), and then the received entries can go at once. Until that memory is
        large enough for what a flush holds, a run that does not fit in what is
        left gets new memory, once. Past ROWS_BYTES, memory kept would seldom be
        used again (few flushes per scan): the caller keeps the entries instead."""
        count, used = len(parts), self._arena_used
        need = used + count * size
        merge_bytes, channel_bytes, most_bytes = self._bytes
        limit = max(merge_bytes, min(most_bytes, channel_bytes * max(channels,
                                                                     len(self.pending))))
        if need > ROWS_BYTES or limit + size > ROWS_BYTES:
            return None
        if need > len(self._arena):
            self._arena_wanted = max(self._arena_wanted, need)
            if used:
                return np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(count, size)
            self._arena = np.empty(self._arena_wanted, dtype=np.uint8)
            self._arena_view = self._arena.data
        view = self._arena_view
        at = used
        for part in parts:
            view[at:at + size] = part
            at += size
        self._arena_used = at
        return self._arena[used:at].reshape(count, size)

    def passed(self, position: str) -> None:
        """An entry that is not data was handled: resuming after it is safe."""
        self.safe = self.last = position

    def flush(self) -> list[tuple[EventType, ChannelNode, EventData]]:
        """One NEW_DATA event per channel held, all merged before any is given out.

        Merging is a copy per channel. Done in one go, it keeps the reader thread
        busy for a short while and then hands the consumer every event at once;
        merged one by one between the consumer's events, the two threads interleave
        at every event, which costs both of them CPU time in a scan of many
        channels (the interpreter lock changes hands). Each channel's blocks are
        let go as soon as they are merged, so the merged copies and the blocks add
        up to what was held, plus one channel; runs of packed entries stay where
        :meth:`rows` put them, for the next runs."""
        pending, self.pending = self.pending, {}
        columns, self._columns = self._columns, set()
        self.nbytes = 0
        self._arena_used = 0  # (every row is copied out below)
        count = len(pending)
        events: list[tuple[EventType, ChannelNode, EventData]] = []
        for i, index in enumerate(list(pending)):
            node, first, parts = pending.pop(index)
            if index in columns:
                data = node.decode(_joined(parts))
            elif isinstance(parts[0], list):  # variable-length points: lists of 1D arrays
                data = [point for part in parts for point in part]
            else:  # bytes, or views of bytes
                data = node.decode(parts[0] if len(parts) == 1 else b"".join(parts))
            del parts
            position = self.last if i == count - 1 else self.safe
            events.append((EventType.NEW_DATA, node, EventData(position, first, data)))
        self.safe = self.last
        return events
