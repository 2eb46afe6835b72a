"""A scan source held in memory: scans published and read in one process, no server.

A second implementation of :mod:`.source` next to our Redis streams, small enough to
read at once. It serves tests of the writers that need no Redis (a scan written to
a real file from events published here) and programs that produce scans and
write them in the same process. Data is kept as given (numpy arrays, decoded); the
walks give the same event model as any source.

Thread-safety: every method may be called from any thread; walks block the calling
thread (as all walks do) on a condition variable, and honour ``stop`` within
``poll_interval``. Positions are ``"0-<n>"``: the n-th event of the scan or session.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from ..errors import DataLostError, ScanStateError
from . import codec
from .events import (
    EndReason,
    EventData,
    EventType,
    LimaProgress,
    NodeDeclaration,
    NodeType,
    merge_info,
)
from .keys import check_name
from .nodes import ChannelNode, LimaNode, Node, make_node
from .source import Event, ScanSource, SessionSource, StopHandle

__all__ = ["MemorySession", "MemoryScan"]


def _index(position: str | None) -> int:
    """How many events come before the one after ``position``."""
    if not position:
        return 0
    ms, _, seq = position.partition("-")
    try:
        if int(ms) == 0 and int(seq) >= 0:
            return int(seq)
    except ValueError:
        pass
    raise ValueError(f"invalid position {position!r}: expected '0-<n>'")


class _Log:
    """Events appended by one side, walked by the others."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        #: events before this index were let go (:meth:`MemoryScan.trim`)
        self.first = 0
        self.changed = threading.Condition()

    def append(self, event_type: EventType, node: Any, **data: Any) -> str:
        with self.changed:
            position = f"0-{self.first + len(self.events) + 1}"
            self.events.append((event_type, node, EventData(position, **data)))
            self.changed.notify_all()
            return position

    @property
    def end(self) -> str:
        return f"0-{self.first + len(self.events)}"

    def walk(self, after: int, stop: StopHandle | None, poll_interval: float,
             on_idle: Any = None) -> Iterator[Event]:
        """Events after the first ``after`` ones, forever (until ``stop``)."""
        while stop is None or not stop.is_set():
            with self.changed:
                if after < self.first:
                    raise DataLostError(
                        f"events after position 0-{after} were let go (oldest kept: "
                        f"0-{self.first + 1})")
                new = self.events[after - self.first:]
                if not new:
                    self.changed.wait(poll_interval)
                    new = self.events[after - self.first:]
            if not new:
                if on_idle is not None:
                    on_idle()
                continue
            after += len(new)
            yield from new


class MemoryScan:
    """One scan: published with :meth:`add_channel`, :meth:`send`, :meth:`end`...
    (as :class:`~.publisher.ScanPublisher`), read as a :class:`~.source.ScanSource`."""

    def __init__(self, key: str, info: Mapping[str, Any], name: str, number: int,
                 session: "MemorySession | None" = None) -> None:
        self._key = key
        self._info = codec.jsonable(info)
        self._name = name
        self._number = number
        self._uid = uuid.uuid4().hex
        self._session = session
        self._log = _Log()
        self._nodes: dict[str, Node] = {}
        self._points: dict[str, int] = {}
        self._acks: dict[str, str] = {}
        self._alive = True
        self.ended = False
        chain = self._info.get("acquisition_chain") or {}
        self.subscans = list(chain) or ["main"]
        for subscan in self.subscans:
            self._declare(subscan, NodeType.SUBSCAN, {"index": len(self._nodes) + 1})

    # -- the scan as a source reads it ------------------------------------------

    @property
    def key(self) -> str:
        return self._key

    @property
    def name(self) -> str:
        return self._name

    @property
    def number(self) -> int:
        return self._number

    @property
    def uid(self) -> str:
        return self._uid

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._info)

    @property
    def info_bytes(self) -> int:
        return len(codec.to_json(self._info))

    def nodes(self) -> dict[str, Node]:
        with self._log.changed:
            return dict(self._nodes)

    def walk_events(self, *, stop: StopHandle | None = None, poll_interval: float = 0.25,
                    from_position: str | None = None, merge_blocks: bool = False
                    ) -> Iterator[Event]:
        """The scan's events after ``from_position`` (each block as it was sent:
        ``merge_blocks`` changes nothing here), ending after END_SCAN."""
        after = _index(from_position)
        for event in self._log.walk(after, stop, poll_interval, self._check_publisher):
            yield event
            if event[0] is EventType.END_SCAN:
                return

    def current_position(self) -> str:
        with self._log.changed:
            return self._log.end

    def entries_after(self, position: str) -> tuple[int, int]:
        """Always none: this source refuses anything after the end."""
        _index(position)
        return 0, 0

    def acknowledge(self, reader: str, position: str) -> None:
        _index(position)
        with self._log.changed:
            self._acks[reader] = position

    def acknowledged(self, reader: str) -> str | None:
        with self._log.changed:
            return self._acks.get(reader)

    def publisher_alive(self) -> bool:
        return self._alive

    def _check_publisher(self) -> None:
        if not self._alive and not self.ended:
            self._finish(EndReason.PUBLISHER_LOST, "the publisher is gone")

    # -- publishing ---------------------------------------------------------------

    def _declare(self, name: str, node_type: NodeType, info: dict[str, Any]) -> Node:
        self._check_running()
        if name in self._nodes:
            raise ValueError(f"node {name!r} is already declared in scan {self._name!r}")
        node = make_node(self, NodeDeclaration(name, node_type, len(self._nodes),
                                               codec.jsonable(info)))
        with self._log.changed:
            self._nodes[name] = node
        self._log.append(EventType.NEW_NODE, node)
        return node

    def _subscan(self, subscan: str | None) -> str:
        if subscan is None:
            return self.subscans[0]
        if subscan not in self.subscans:
            raise ValueError(f"unknown subscan {subscan!r}; scan has {self.subscans}")
        return subscan

    def add_channel(self, name: str, dtype: Any, shape: Sequence[int] = (), *,
                    subscan: str | None = None, unit: str | None = None,
                    info: Mapping[str, Any] | None = None) -> None:
        """Declare a channel whose points have ``dtype`` and ``shape`` (``(-1,)``:
        variable-length 1D points)."""
        node_info = dict(info or {})
        node_info.update(dtype=codec.dtype_to_text(dtype),
                         shape=list(codec.check_point_shape(shape, f"channel {name!r}")),
                         subscan=self._subscan(subscan))
        if unit is not None:
            node_info["unit"] = str(unit)
        self._declare(name, NodeType.CHANNEL, node_info)
        self._points[name] = 0

    def add_lima(self, name: str, *, subscan: str | None = None, **saving: Any) -> None:
        """Declare a 2D detector saving its own files (the saving parameters of
        :meth:`~.publisher.ScanPublisher.add_lima`)."""
        self._declare(name, NodeType.LIMA, dict(saving, subscan=self._subscan(subscan)))

    def prepare(self) -> None:
        self._check_running()
        self._log.append(EventType.PREPARED_SCAN, self)

    def send(self, blocks: Mapping[str, Any]) -> None:
        """One block of new points per named channel; indices follow on per channel."""
        self._check_running()
        for name, data in blocks.items():
            node = self._nodes.get(name)
            if not isinstance(node, ChannelNode):
                raise ValueError(f"channel {name!r} is not declared in scan {self._name!r}")
            what = f"channel {name!r} of scan {self._name!r}"
            if node.variable_length:
                raw, lengths, _ = codec.ragged_to_bytes(data, node.dtype, what)
            else:
                raw, _ = codec.array_to_bytes(data, node.dtype, node.shape, what)
                lengths = None
            points = node.decode(raw, lengths)
            first = self._points[name]
            self._points[name] = first + len(points)
            self._log.append(EventType.NEW_DATA, node, first_index=first, data=points)

    def update_info(self, changes: Mapping[str, Any]) -> None:
        """Complete the scan_info (see :meth:`~.publisher.ScanPublisher.update_info`)."""
        self._check_running()
        changes = codec.jsonable(changes)
        self._info = merge_info(self._info, changes)
        self._log.append(EventType.INFO_UPDATE, self, info=changes)

    def update_lima(self, name: str, last_image_acquired: int, last_image_saved: int) -> None:
        self._check_running()
        node = self._nodes.get(name)
        if not isinstance(node, LimaNode):
            raise ValueError(f"lima node {name!r} is not declared in scan {self._name!r}")
        progress = LimaProgress(int(last_image_acquired), int(last_image_saved))
        self._log.append(EventType.NEW_DATA, node, data=progress)

    def end(self, reason: EndReason | str = EndReason.SUCCESS, message: str = "") -> bool:
        """End the scan; False if it had already ended."""
        if self.ended:
            return False
        self._finish(EndReason(reason), message)
        return True

    def lose_publisher(self) -> None:
        """The publisher is gone without ending the scan: walks end it with
        ``PUBLISHER_LOST`` when nothing more comes."""
        self._alive = False

    def trim(self, position: str) -> None:
        """Let go of the events up to ``position``: a walk from before raises
        :class:`~nexus_writer_service.errors.DataLostError`."""
        upto = _index(position)
        log = self._log
        with log.changed:
            drop = max(0, min(upto - log.first, len(log.events)))
            del log.events[:drop]
            log.first += drop

    def _finish(self, reason: EndReason, message: str) -> None:
        with self._log.changed:
            if self.ended:
                return
            self.ended = True
            self._log.append(EventType.END_SCAN, self, reason=reason, message=message)
        if self._session is not None:
            self._session._ended(self, reason)

    def _check_running(self) -> None:
        if self.ended:
            raise ScanStateError(f"scan {self._name!r} ({self._key}) has already ended")

    def __repr__(self) -> str:
        return f"<MemoryScan {self._key}>"


class MemorySession:
    """A session whose scans are :class:`MemoryScan`, read as a
    :class:`~.source.SessionSource`."""

    def __init__(self, name: str) -> None:
        self._name = check_name(name)
        self._log = _Log()
        self._scans: dict[str, MemoryScan] = {}
        self._counter = itertools.count(1)

    @property
    def name(self) -> str:
        return self._name

    def create_scan(self, scan_info: Mapping[str, Any], name: str | None = None,
                    number: int | None = None) -> MemoryScan:
        """A new scan, announced to the session's walks."""
        scan_id = next(self._counter)
        number = int(scan_info.get("scan_nb", scan_id)) if number is None else number
        name = str(name or scan_info.get("name") or f"scan{number}")
        scan = MemoryScan(f"memory:{self._name}:scan:{scan_id}", scan_info, name, number, self)
        with self._log.changed:
            self._scans[scan.key] = scan
        self._log.append(EventType.NEW_NODE, scan)
        return scan

    def _ended(self, scan: MemoryScan, reason: EndReason) -> None:
        self._log.append(EventType.END_SCAN, scan, reason=reason)

    def current_position(self) -> str:
        with self._log.changed:
            return self._log.end

    def scan(self, key: str) -> MemoryScan:
        with self._log.changed:
            try:
                return self._scans[key]
            except KeyError:
                raise ValueError(f"scan {key} does not belong to session {self._name!r}") \
                    from None

    def scan_keys(self) -> list[tuple[str, bool]]:
        with self._log.changed:
            return [(key, scan.ended) for key, scan in self._scans.items()]

    def register_reader(self, reader: str) -> None:
        """Nothing to do: memory scans keep their events until :meth:`MemoryScan.trim`."""

    def walk_on_new_events(self, *, from_position: str | None = None,
                           stop: StopHandle | None = None, poll_interval: float = 0.25
                           ) -> Iterator[Event]:
        after = _index(self.current_position() if from_position is None else from_position)
        return self._log.walk(after, stop, poll_interval)

    def __repr__(self) -> str:
        return f"<MemorySession {self._name!r}>"


if TYPE_CHECKING:  # both implement the protocol (checked by mypy)
    _session: SessionSource = MemorySession("session")
    _scan: ScanSource = _session.scan("key")
    _memory_scan: ScanSource = MemoryScan("key", {}, "name", 1)
