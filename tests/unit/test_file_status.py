"""The writer status table of a scan file: exactly the changes a scan writer makes,
one lookup per change, one clear error per refusal, final statuses never left."""

from __future__ import annotations

import itertools

import pytest

from nexus_writer_service.errors import (
    NexusWriterError,
    ScanStateError,
    WriterStatusError,
)
from nexus_writer_service.subscribers import (
    STATUS_TRANSITIONS,
    WriterStatus,
    check_status_transition,
)

S = WriterStatus
LEGAL = {
    (S.STARTING, S.RUNNING),    # prepared, or stopped before that
    (S.STARTING, S.SUCCEEDED),  # ended without a PREPARED_SCAN seen
    (S.STARTING, S.FAILED),     # fault or kill before the scan was prepared
    (S.RUNNING, S.RUNNING),     # stopped (resumable), or prepared again
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
}


def test_table_covers_every_status() -> None:
    assert set(STATUS_TRANSITIONS) == set(WriterStatus)


@pytest.mark.parametrize("current,new", sorted(LEGAL, key=str))
def test_legal_changes_pass_and_give_the_new_status(current: S, new: S) -> None:
    assert check_status_transition(current, new) is new


@pytest.mark.parametrize(
    "current,new", [pair for pair in itertools.product(S, S) if pair not in LEGAL])
def test_illegal_change_names_both_statuses_and_who(current: S, new: S) -> None:
    with pytest.raises(WriterStatusError) as info:
        check_status_transition(current, new, "NexusScanWriter(7_ascan)")
    message = str(info.value)
    assert f"{current.value} -> {new.value}" in message
    assert "NexusScanWriter(7_ascan)" in message
    assert isinstance(info.value, ScanStateError)
    assert isinstance(info.value, NexusWriterError) and isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("final", [S.SUCCEEDED, S.FAILED])
def test_a_final_status_is_never_left(final: S) -> None:
    assert final.final
    assert STATUS_TRANSITIONS[final] == frozenset()
    for new in S:
        with pytest.raises(WriterStatusError, match="final"):
            check_status_transition(final, new)


def test_the_statuses_before_the_end_are_not_final() -> None:
    assert not S.STARTING.final and not S.RUNNING.final


def test_a_new_writer_never_goes_back_to_starting() -> None:
    assert all(S.STARTING not in targets for targets in STATUS_TRANSITIONS.values())


def test_status_values_are_what_the_file_says() -> None:
    assert [s.value for s in S] == ["STARTING", "RUNNING", "SUCCEEDED", "FAILED"]
    assert S("RUNNING") is S.RUNNING and S.RUNNING == "RUNNING"
