"""Where the walk of a blissdata scan is, and what it tells: positions (the state
reached and the points given per stream), the clock that takes a silent scan's
publisher as lost, BLISS's end reasons onto ours, and the errors and times blissdata
is given.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from ..errors import MalformedEventError
from .events import EndReason

__all__ = ["END_REASONS", "START", "Progress", "Silence", "duration", "end_reason",
           "unreadable", "wait_time", "with_socket_timeout"]

#: The position before anything (our own streams' first id, as every source's).
START = "0-0"
#: BLISS's end reasons, onto ours: ``(reason, message)``.
END_REASONS: dict[str, tuple[EndReason, str]] = {
    "SUCCESS": (EndReason.SUCCESS, ""),
    "FAILURE": (EndReason.FAILED, ""),
    "USER_ABORT": (EndReason.ABORTED, "aborted by the user"),
    "DELETION": (EndReason.ABORTED, "the scan was deleted from Redis before it ended"),
}


def unreadable(key: str, exc: BaseException, streams: Sequence[str] = ()
               ) -> MalformedEventError:
    """The error for a document of ``key`` that blissdata refuses (``exc``), naming the
    keys its model says are wrong and the ``streams`` whose encoding is (blissdata's
    own message names neither)."""
    cause = exc.__cause__
    errors = getattr(cause, "errors", None)
    details = ""
    if callable(errors):
        try:
            found = [f"{'.'.join(str(part) for part in error.get('loc', ()))}: "
                     f"{error.get('msg', '')}" for error in errors()]
        except (TypeError, ValueError, AttributeError):
            found = []
        details = f": {'; '.join(found)}" if found else ""
    named = f"; {'; '.join(streams)}" if streams else ""
    return MalformedEventError(f"scan {key}: blissdata cannot read its document "
                               f"({exc}{details}){named}")


def wait_time(seconds: float) -> float:
    """A blocking time for blissdata, which reads 0 as "for ever"."""
    return max(float(seconds), 0.001)


def with_socket_timeout(url: str, seconds: float = 30.0) -> str:
    """``url`` whose connections give up on a server silent for ``seconds`` (blissdata's
    own blocking reads are much shorter), unless it says otherwise."""
    if "socket_timeout=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}socket_timeout={seconds:g}"


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: ``"0.5 s"``, ``"90 s"``, ``"10 min"``."""
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def end_reason(info: Mapping[str, Any], key: str) -> tuple[EndReason, str]:
    raw = info.get("end_reason")
    if raw is None:
        return EndReason.FAILED, "the scan was closed without an end reason"
    try:
        return END_REASONS[str(raw)]
    except KeyError:
        return EndReason.FAILED, f"unknown end reason {raw!r} in the scan_info of {key}"


class Silence:
    """The clock of a walk that takes the publisher of a silent scan as lost: it
    restarts at every point given and every state change. ``lost``: the verdict is
    already in (another walk gave it, with ``message``): it expires at once."""

    def __init__(self, timeout: float, message: str | None) -> None:
        self.timeout = timeout
        self.message = message
        self._since = time.monotonic()

    def restart(self) -> None:
        self._since = time.monotonic()

    def expired(self) -> bool:
        return self.message is not None or time.monotonic() - self._since >= self.timeout


class Progress:
    """How far a walk is: the scan state reached and the points given per stream."""

    def __init__(self, state: int = -1, counts: Sequence[int] = ()) -> None:
        self.state = state
        self.counts = list(counts)

    @classmethod
    def parse(cls, position: str | None, nstreams: int | None = None) -> "Progress":
        if not position or position == START:
            return cls()
        state, sep, counts = position.partition(":")
        try:
            progress = cls(int(state), [int(n) for n in counts.split(",") if n])
        except ValueError:
            progress = cls(-2)
        valid = sep and progress.state >= 0 and all(n >= 0 for n in progress.counts)
        if not valid or (nstreams is not None and progress.counts
                         and len(progress.counts) != nstreams):
            raise ValueError(f"invalid position {position!r}: expected '<state>:<n1>,<n2>,...' "
                             f"with one count per stream ({nstreams})")
        return progress

    def text(self) -> str:
        return f"{max(self.state, 0)}:{','.join(map(str, self.counts))}"
