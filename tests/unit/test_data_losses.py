"""Which unanswered entries a publisher sends again, and how lost points are named."""

from __future__ import annotations

from nexus_writer_service.data.losses import (
    PointRange,
    SentEntry,
    describe,
    lost_ranges,
    signature,
    stored_count,
)


def _entry(first: int, npoints: int = 10, empty_second: bool = False) -> SentEntry:
    second = 0 if empty_second else npoints
    return SentEntry("scan", [(1, first, bytes(8 * npoints), None),
                              (2, first, bytes(8 * second), None)], [npoints, second])


SENT = [_entry(40), _entry(50), _entry(60)]


def test_entries_up_to_the_last_stored_one_are_stored_and_the_others_not() -> None:
    assert stored_count(SENT, signature(SENT[1].blocks)) == 2
    assert stored_count(SENT, signature(reversed(SENT[2].blocks))) == 3


def test_a_last_stored_entry_older_than_every_unanswered_one_means_none_is_stored() -> None:
    assert stored_count(SENT, signature(_entry(30).blocks)) == 0
    assert stored_count(SENT, None) == 0


def test_an_entry_is_told_from_one_at_the_same_points_by_its_size() -> None:
    sent = [_entry(40, empty_second=True), _entry(40, npoints=5)]
    assert stored_count(sent, signature([(1, 40, b""), (2, 40, b"")])) == 0
    assert stored_count(sent, signature(sent[0].blocks)) == 1


def test_lost_ranges_are_joined_per_channel_and_named() -> None:
    ranges = lost_ranges(SENT[1:] + [_entry(80)], {1: "timer", 2: "diode"})
    assert ranges == [PointRange("timer", 50, 70), PointRange("timer", 80, 90),
                      PointRange("diode", 50, 70), PointRange("diode", 80, 90)]
    assert describe(ranges[:2]) == "'timer' points 50-69, 'timer' points 80-89"
    assert describe([PointRange("a", 3, 4)]) == "'a' point 3"
    assert describe(ranges, most=1).endswith("and 3 more ranges")
    assert lost_ranges([_entry(40, empty_second=True)], {}) == [PointRange("#1", 40, 50)]
