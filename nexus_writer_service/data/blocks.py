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
goes further: consecutive entries of one layout are checked together, a column per
channel (:meth:`DataDecoder.merge_run`), and at any doubt one by one again.

Not thread-safe: one :class:`DataDecoder` and one :class:`BlockMerger` per walk.
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ..errors import MalformedEventError
from .events import EventData, EventType, iter_data_blocks
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


def fields_dict(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """``{field: value}`` of an entry given as ``[field, value, ...]`` (the last
    value of a field given twice, as redis-py's own conversion)."""
    it = iter(flat)
    return dict(zip(it, it))


def _getter(positions: list[int]) -> Callable[[Sequence[bytes]], tuple[bytes, ...]]:
    """``flat -> tuple of flat[p] for p in positions`` (a tuple even for one or none)."""
    if len(positions) > 1:
        return itemgetter(*positions)
    return lambda flat: tuple(flat[at] for at in positions)


class _ChannelSlot(NamedTuple):
    """Where one channel's block is in an entry's flat list (positions of values)."""

    node: ChannelNode
    channel: int
    data_at: int
    first_at: int
    lengths_at: int | None
    #: bytes per point; 0 for variable-length points
    point_size: int


class _Layout(NamedTuple):
    keys: list[bytes]
    kind_at: int
    slots: tuple[_ChannelSlot, ...]
    #: the channel index of each slot
    channels: tuple[int, ...]
    #: bytes per point of each slot, as a column; ``None`` if a channel has
    #: variable-length points or there is no channel
    point_sizes: Any
    #: ``flat -> (value of each slot)`` and ``flat -> (first index of each slot)``
    data_values: Callable[[Sequence[bytes]], tuple[bytes, ...]]
    first_values: Callable[[Sequence[bytes]], tuple[bytes, ...]]


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
        if last is not None and keys == last.keys:
            return last
        layout = self._layouts.get(tuple(keys))
        if layout is None:
            layout = self._compile(list(keys))
            if layout is None:
                return None
            if len(self._layouts) >= MAX_LAYOUTS:
                self._layouts.clear()
            self._layouts[tuple(keys)] = layout
        self._last = layout
        return layout

    def _compile(self, keys: list[bytes]) -> _Layout | None:
        """The layout of an entry with fields ``keys``; ``None`` when an entry with
        these fields cannot be valid data, or names a field twice."""
        at = {key: 2 * i + 1 for i, key in enumerate(keys)}
        if len(at) != len(keys) or b"t" not in at:
            return None
        slots: list[_ChannelSlot] = []
        seen: set[int] = set()  # b"d1" and b"d01" name the same channel
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
            if first_at is None or not isinstance(node, ChannelNode) or index in seen:
                return None
            seen.add(index)
            size = 0 if node.variable_length else node.point_size
            slots.append(_ChannelSlot(node, index, at[key], first_at, at.get(b"l" + suffix),
                                      size))
        sizes = [slot.point_size for slot in slots]
        point_sizes = np.array(sizes, dtype=np.int64)[:, None] if sizes and all(sizes) \
            else None
        return _Layout(keys, at[b"t"], tuple(slots), tuple(slot.channel for slot in slots),
                       point_sizes, _getter([slot.data_at for slot in slots]),
                       _getter([slot.first_at for slot in slots]))

    def _checked(self, flat: Sequence[bytes], layout: _Layout, decode: bool
                 ) -> tuple[list[Block], int] | None:
        """The blocks of a data entry of a known layout, or ``None`` at the first
        doubt (nothing is recorded then: the general way redoes the entry)."""
        expected = self.expected
        first_point = self.first_point
        blocks: list[Block] = []
        ends: list[int] = []
        nbytes = 0
        for node, index, data_at, first_at, lengths_at, point_size in layout.slots:
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
        if layout is None or layout.point_sizes is None or flat[layout.kind_at] != b"data":
            return 0, start + 1
        # only the entries that may fit under ``limit`` are looked at (the size of the
        # first one tells about how many): the rest of a long run of large entries
        # comes with the next call
        first_bytes = sum(map(len, layout.data_values(flat)))
        last = len(page)
        if first_bytes:
            room = max(0, limit - merger.nbytes)
            last = min(last, start + max(MIN_RUN, 2 * (room // first_bytes) + 2))
        keys, kind_at, size = layout.keys, layout.kind_at, len(flat)
        end = start + 1
        while end < last:
            other = page[end][1]
            if len(other) != size or other[kind_at] != b"data" or other[0::2] != keys:
                break
            end += 1
        if end - start < MIN_RUN:
            return 0, end
        flats = list(map(itemgetter(1), page[start:end]))
        # one row per entry: the values of every slot, picked out in one call each
        values = list(map(layout.data_values, flats))
        nslots = len(layout.slots)
        lengths = np.fromiter(map(len, chain.from_iterable(values)), dtype=np.int64,
                              count=len(values) * nslots).reshape(len(values), nslots).T
        total = np.cumsum(lengths.sum(axis=0)) + merger.nbytes
        count = min(len(flats), int(np.searchsorted(total, limit)) + 1)
        if count < len(flats):
            end = start + count
            flats, values, lengths = flats[:count], values[:count], lengths[:, :count]
        points, rest = np.divmod(lengths, layout.point_sizes)
        if rest.any():
            return 0, end
        try:
            given = self._first_indices(layout, flats, nslots)
        except (ValueError, OverflowError):
            return 0, end
        expected = self.expected
        if self.first_point is None:
            begins = [expected.get(channel, first)
                      for channel, first in zip(layout.channels, given[:, 0].tolist())]
        else:
            begins = [expected.get(channel, self.first_point) for channel in layout.channels]
        # all >= 0 first, so that differences cannot overflow
        if min(begins) < 0 or given.min() < 0 or not np.array_equal(given[:, 0], begins) or (
                count > 1 and not np.array_equal(np.diff(given, axis=1), points[:, :-1])):
            return 0, end
        expected.update(zip(layout.channels, (np.array(begins, dtype=np.int64)
                                              + points.sum(axis=1)).tolist()))
        merger.add_columns([(slot.node, first, list(column)) for slot, first, column
                            in zip(layout.slots, begins, zip(*values))],
                           int(lengths.sum()), page[end - 1][0].decode())
        return count, end

    @staticmethod
    def _first_indices(layout: _Layout, flats: list[Sequence[bytes]], nslots: int) -> Any:
        """The first point index of each slot (row) in each entry (column) of ``flats``.

        A publisher gives every channel of an entry the same first index: then one
        number per entry is parsed (the same text in every slot), not one per block.
        :raises ValueError: a first index is not a number"""
        firsts = list(map(layout.first_values, flats))
        if all(len(set(row)) == 1 for row in firsts):
            column = np.array([int(row[0]) for row in firsts], dtype=np.int64)
            return np.broadcast_to(column, (nslots, len(firsts)))
        return np.array(list(map(int, chain.from_iterable(firsts))),
                        dtype=np.int64).reshape(len(firsts), nslots).T

    def general(self, fields: dict[bytes, bytes], decode: bool) -> list[Block]:
        """The blocks of the data entry ``fields``, checking point continuity.

        Without ``decode``, blocks of fixed-size points stay raw bytes (checked)."""
        out = []
        by_index = self.by_index
        expected = self.expected
        for index, first, raw, lengths in iter_data_blocks(fields):
            node = by_index.get(index)
            if not isinstance(node, ChannelNode):
                raise MalformedEventError(f"data for undeclared channel #{index}")
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

    def add_columns(self, columns: list[tuple[ChannelNode, int, list[bytes]]], nbytes: int,
                    position: str) -> None:
        """Like :meth:`add` for several entries at once: per channel, its raw blocks
        in point order (the lists are kept)."""
        pending = self.pending
        for node, first, parts in columns:
            held = pending.get(node.index)
            if held is None:
                pending[node.index] = [node, first, parts]
            else:
                held[2].extend(parts)
        self.nbytes += nbytes
        self.last = position

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
        up to what was held, plus one channel."""
        pending, self.pending = self.pending, {}
        self.nbytes = 0
        count = len(pending)
        events: list[tuple[EventType, ChannelNode, EventData]] = []
        for i, index in enumerate(list(pending)):
            node, first, parts = pending.pop(index)
            if isinstance(parts[0], bytes):
                data = node.decode(parts[0] if len(parts) == 1 else b"".join(parts))
            else:  # variable-length points: lists of 1D arrays
                data = [point for part in parts for point in part]
            del parts
            position = self.last if i == count - 1 else self.safe
            events.append((EventType.NEW_DATA, node, EventData(position, first, data)))
        self.safe = self.last
        return events
