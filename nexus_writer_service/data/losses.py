"""Which sent blocks a publisher must send again or report lost, and how to name
them (pure: no I/O).

A publisher does not wait for the reply to each data entry it sends (see
:class:`~nexus_writer_service.data._fast_redis.StreamWriter`). When the connection
drops, the entries whose reply had not come are of two kinds: those Redis stored
(the reply was lost with the connection) and those it never got. Sending the first
kind again would store their points twice, which a reader refuses as a
"duplicate" block and the scan's file then fails; not sending the second kind
leaves a gap. Redis runs the commands of one connection in order and appends them
to its append-only file in that order, so the stored ones of a scan are always the
first ones: the last data entry of the scan's stream tells how many. Entries are
recognised by their blocks' channels, first point indices and sizes, which the
publisher assigns without repeating them.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple, Sequence

__all__ = ["SentEntry", "PointRange", "signature", "stored_count", "lost_ranges",
           "describe"]


class SentEntry(NamedTuple):
    """One data entry sent and not yet answered: the scan it belongs to (the
    publisher's object for it), its blocks (each ``(channel index, first point index,
    raw bytes, ...)``) and their numbers of points."""

    scan: Any
    blocks: Sequence[Sequence[Any]]
    npoints: Sequence[int]


class PointRange(NamedTuple):
    """Points ``first`` up to (not including) ``stop`` of ``channel``."""

    channel: str
    first: int
    stop: int

    def __str__(self) -> str:
        last = self.stop - 1
        points = f"point {self.first}" if last == self.first else \
            f"points {self.first}-{last}"
        return f"{self.channel!r} {points}"


def signature(blocks: Iterable[Sequence[Any]]) -> tuple[tuple[int, int, int], ...]:
    """What identifies a data entry among a scan's: its blocks' ``(channel index,
    first point index, size of the raw bytes)``, in channel order (from blocks
    ``(channel index, first point index, raw bytes, ...)``)."""
    return tuple(sorted((block[0], block[1], len(block[2])) for block in blocks))


def stored_count(sent: Sequence[SentEntry],
                 last_stored: tuple[tuple[int, int, int], ...] | None) -> int:
    """How many of a scan's unanswered entries ``sent`` (in the order sent) Redis
    stored, given the :func:`signature` of the last data entry of its stream
    (``None`` when it has none).

    The last one ``sent`` with that signature and all before it are stored. When
    none has it, the last stored entry is older than all of them (answered before
    the connection dropped): none is stored. Blocks without a point may share a
    signature; taking the last such one only ever skips sending again an entry
    without points."""
    if last_stored is None:
        return 0
    for at in range(len(sent) - 1, -1, -1):
        if signature(sent[at].blocks) == last_stored:
            return at + 1
    return 0


def lost_ranges(sent: Iterable[SentEntry], names: Mapping[int, str]) -> list[PointRange]:
    """The point ranges of the entries ``sent``, per channel (named from ``names``,
    ``#<index>`` if unknown), adjacent ranges joined; channels in the order first met."""
    ranges: dict[int, list[list[int]]] = {}
    for entry in sent:
        for (index, first, *_), npoints in zip(entry.blocks, entry.npoints):
            if npoints <= 0:
                continue
            spans = ranges.setdefault(index, [])
            if spans and spans[-1][1] == first:
                spans[-1][1] = first + npoints
            else:
                spans.append([first, first + npoints])
    return [PointRange(names.get(index, f"#{index}"), first, stop)
            for index, spans in ranges.items() for first, stop in spans]


def describe(ranges: Sequence[PointRange], most: int = 20) -> str:
    """``"'a' points 40-59, 'b' points 40-59"``: at most ``most`` ranges, then how
    many more."""
    shown = ", ".join(str(r) for r in ranges[:most])
    if len(ranges) > most:
        shown += f" and {len(ranges) - most} more ranges"
    return shown or "no point"
