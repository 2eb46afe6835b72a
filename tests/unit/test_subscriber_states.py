"""The subscriber transition table: one lookup per change, one clear error per refusal."""

from __future__ import annotations

import itertools

import pytest

from nexus_writer_service.errors import NexusWriterError, SubscriberStateError
from nexus_writer_service.subscribers import TRANSITIONS, SubscriberState, check_transition

S = SubscriberState
LEGAL = {(S.INIT, S.ON), (S.ON, S.OFF), (S.ON, S.FAULT), (S.OFF, S.ON), (S.FAULT, S.ON)}


def test_table_covers_every_state():
    assert set(TRANSITIONS) == set(SubscriberState)


@pytest.mark.parametrize("current,new", sorted(LEGAL, key=str))
def test_legal_transitions_pass(current, new):
    check_transition(current, new)


@pytest.mark.parametrize(
    "current,new",
    [pair for pair in itertools.product(S, S) if pair not in LEGAL],
)
def test_illegal_transition_names_both_states(current, new):
    with pytest.raises(SubscriberStateError) as info:
        check_transition(current, new, "writer-7")
    message = str(info.value)
    assert f"{current.value} -> {new.value}" in message
    assert "writer-7" in message
    assert isinstance(info.value, NexusWriterError) and isinstance(info.value, RuntimeError)


def test_fault_is_sticky_until_a_new_start():
    assert TRANSITIONS[S.FAULT] == {S.ON}
    with pytest.raises(SubscriberStateError, match="FAULT -> OFF"):
        check_transition(S.FAULT, S.OFF)
