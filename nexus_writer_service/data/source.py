"""The scan-source protocol: what the writers read scans through (no I/O here).

A writer needs four things of wherever scans come from, and nothing else:

* a **session walk**: the scans of a session as they start and end
  (:meth:`SessionSource.walk_on_new_events`), and the ones still known
  (:meth:`SessionSource.scan_keys`), to resume them;
* a **scan walk**: the events of one scan from a resumable position
  (:meth:`ScanSource.walk_events`);
* **acknowledgement** of what is in the file, so the source may let it go and a
  restarted writer knows where it stopped (:meth:`ScanSource.acknowledge`);
* **liveness** of the publisher: a walk ends a scan whose publisher is gone with
  END_SCAN (``PUBLISHER_LOST``) rather than wait for it forever
  (:meth:`ScanSource.publisher_alive`).

Everything a walk yields is the event model of :mod:`.events`:
``(event_type, node, event_data)`` with NEW_NODE before any NEW_DATA of its node,
PREPARED_SCAN, NEW_DATA (channel blocks as numpy arrays, lima progress),
INFO_UPDATE (keys of the scan_info the publisher completed), and END_SCAN last,
with its reason. Nodes are those of :mod:`.nodes`. Our Redis streams
(:mod:`.reader`) are one source, :mod:`.memory` another; the writers
(:mod:`nexus_writer_service.subscribers`) never know which.

Walks are blocking generators: they run in a native thread, honour ``stop`` within
``poll_interval`` and raise :class:`~nexus_writer_service.errors.DataLostError` when
what follows ``from_position`` is no longer available.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

from .events import EventData, EventType
from .nodes import Node

__all__ = ["Event", "StopHandle", "ScanSource", "SessionSource"]

#: One event as a walk yields it: ``(event_type, node, event_data)``.
Event = tuple[EventType, Any, EventData]


class StopHandle(Protocol):
    """What tells a blocking walk or read to stop: anything with ``is_set()``, such
    as a ``threading.Event``."""

    def is_set(self) -> bool: ...


class ScanSource(Protocol):
    """One scan: its description, its nodes and the walk of its events."""

    @property
    def key(self) -> str:
        """Unique within the source while the scan is known (it may be reused after
        the source lost its data: :attr:`uid` tells scans apart)."""

    @property
    def name(self) -> str: ...

    @property
    def number(self) -> int: ...

    @property
    def uid(self) -> str:
        """A unique id of the scan ("" when the source has none)."""

    @property
    def info(self) -> dict[str, Any]:
        """The ``scan_info`` dict the publisher gave."""

    @property
    def info_bytes(self) -> int:
        """About how many bytes of JSON the scan_info takes, known (where the source
        allows) without decoding it: a writer refuses a hostile one by its size."""

    def nodes(self) -> dict[str, Node]:
        """Every node declared so far, by name, in declaration order."""

    def walk_events(self, *, stop: StopHandle | None = None, poll_interval: float = 0.25,
                    from_position: str | None = None, merge_blocks: bool = False
                    ) -> Iterator[Event]:
        """The scan's events from its beginning, or after ``from_position`` (the
        ``position`` of an event given before), ending after END_SCAN.

        With ``merge_blocks``, blocks of a channel read together may come as one
        NEW_DATA event; resuming from an event's position may then give points
        again (same indices), never skip one.

        :raises DataLostError: entries after ``from_position`` are gone"""

    def current_position(self) -> str:
        """The position of the last event the scan has so far."""

    def entries_after(self, position: str) -> tuple[int, int]:
        """``(entries, data entries)`` the scan holds after ``position`` (its end):
        what a publisher that went on after the end published, which no walk gives."""

    def acknowledge(self, reader: str, position: str) -> None:
        """``reader`` holds everything up to ``position``: the source may let it go."""

    def acknowledged(self, reader: str) -> str | None:
        """The position ``reader`` acknowledged last, ``None`` if it never did."""

    def publisher_alive(self) -> bool:
        """Whether the scan's publisher still shows signs of life."""


class SessionSource(Protocol):
    """A session: the scans that start and end in it."""

    @property
    def name(self) -> str: ...

    def current_position(self) -> str:
        """The position of the session's last event so far."""

    def scan(self, key: str) -> ScanSource:
        """The scan ``key`` of this session."""

    def scan_keys(self) -> list[tuple[str, bool]]:
        """Every scan the session still lists, oldest first: ``(key, ended)``."""

    def register_reader(self, reader: str) -> None:
        """Scans created from now on keep their data until ``reader`` acknowledges it."""

    def walk_on_new_events(self, *, from_position: str | None = None,
                           stop: StopHandle | None = None, poll_interval: float = 0.25
                           ) -> Iterator[Event]:
        """NEW_NODE (the scan) when a scan starts, END_SCAN when it ends, after
        ``from_position`` (else from the session's current position)."""
