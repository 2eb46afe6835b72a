"""The writer status of a scan file and the table of allowed changes.

Every entry of a scan file has a ``writer/status`` field; a scan writer moves it
through ``STARTING -> RUNNING -> SUCCEEDED | FAILED``. Pure: no thread, hub or I/O.
One lookup decides whether a change is allowed, and a refused change raises one
error that names both statuses.

The table holds exactly the changes a scan writer makes:

* STARTING: a new writer, the file just opened (a resumed file says STARTING again,
  whatever an earlier writer left there). To RUNNING when the scan is prepared, or
  when the writer is stopped before that; to SUCCEEDED when the scan ends without a
  PREPARED_SCAN event seen (a writer that resumed after the stream was trimmed, a
  publisher that does not prepare); to FAILED on a fault or a kill.
* RUNNING: to RUNNING again when the writer is stopped, on request or by a fault
  whose cause is outside the scan (Redis unreachable, disk full: the file stays
  resumable, the message says so), or the scan is prepared once more; to SUCCEEDED
  or FAILED.
* SUCCEEDED and FAILED are final: a writer never writes to its file again once it
  says so, and a writer started again refuses such a file
  (:class:`~nexus_writer_service.errors.FileFinishedError`) and passes its scan over.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import FrozenSet, Mapping

from ..errors import WriterStatusError

__all__ = ["WriterStatus", "STATUS_TRANSITIONS", "check_status_transition"]


class WriterStatus(str, enum.Enum):
    """What the file's ``writer/status`` says."""

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def final(self) -> bool:
        """The scan writer is done with the file: no change leads anywhere from here."""
        return not STATUS_TRANSITIONS[self]


_S = WriterStatus
#: Allowed changes: ``STATUS_TRANSITIONS[current]`` is the set of statuses reachable
#: from it.
STATUS_TRANSITIONS: Mapping[WriterStatus, FrozenSet[WriterStatus]] = MappingProxyType({
    _S.STARTING: frozenset({_S.RUNNING, _S.SUCCEEDED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.RUNNING, _S.SUCCEEDED, _S.FAILED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
})


def check_status_transition(current: WriterStatus, new: WriterStatus,
                            who: str = "scan writer") -> WriterStatus:
    """Return ``new`` when ``current -> new`` is in :data:`STATUS_TRANSITIONS`.

    :raises WriterStatusError: the change is not allowed; the message names ``who``
        and both statuses, and which statuses ``current`` may go to
    """
    allowed = STATUS_TRANSITIONS[current]
    if new not in allowed:
        targets = ", ".join(sorted(status.value for status in allowed)) or (
            "nothing: it is final")
        raise WriterStatusError(
            f"{who}: illegal file status change {current.value} -> {new.value} "
            f"(from {current.value} it can only go to {targets})")
    return new
