"""The states of a :class:`~.subscriber.Subscriber` and the table of allowed changes.

Pure: no thread, hub or I/O. One lookup decides whether a change is allowed, and a
refused change raises one error that names both states.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import FrozenSet, Mapping

from ..errors import SubscriberStateError

__all__ = ["SubscriberState", "SubscriberMode", "TRANSITIONS", "check_transition"]


class SubscriberState(enum.Enum):
    """Life cycle of a subscriber.

    INIT: created, never started. ON: listening and/or processing. OFF: finished
    normally (event stream ended, or stopped on request). FAULT: finished on an
    error or a kill; it stays FAULT until the subscriber is started again.
    """

    INIT = "INIT"
    ON = "ON"
    OFF = "OFF"
    FAULT = "FAULT"


class SubscriberMode(enum.Enum):
    """Where the listener and the consumer of a subscriber run.

    SEQUENTIAL: one greenlet in the start thread listens and consumes.
    CONCURRENT: a listener and a consumer greenlet in the start thread.
    PARALLEL: a listener greenlet in the start thread, the consumer in a worker thread.
    """

    SEQUENTIAL = "sequential"
    CONCURRENT = "concurrent"
    PARALLEL = "parallel"


#: Allowed changes: ``TRANSITIONS[current]`` is the set of states reachable from it.
TRANSITIONS: Mapping[SubscriberState, FrozenSet[SubscriberState]] = MappingProxyType({
    SubscriberState.INIT: frozenset({SubscriberState.ON}),
    SubscriberState.ON: frozenset({SubscriberState.OFF, SubscriberState.FAULT}),
    SubscriberState.OFF: frozenset({SubscriberState.ON}),
    SubscriberState.FAULT: frozenset({SubscriberState.ON}),
})


def check_transition(
    current: SubscriberState, new: SubscriberState, who: str = "subscriber"
) -> None:
    """Raise unless ``current -> new`` is in :data:`TRANSITIONS`.

    :raises SubscriberStateError: the change is not allowed; the message names
        ``who`` and both states, and which states ``current`` may go to
    """
    allowed = TRANSITIONS[current]
    if new not in allowed:
        targets = ", ".join(sorted(state.value for state in allowed)) or "nothing"
        raise SubscriberStateError(
            f"{who}: illegal transition {current.value} -> {new.value} "
            f"(from {current.value} it can only go to {targets})"
        )
