"""What a running scan adds to its file besides points: the scans a sequence
groups (:class:`~..data.events.ScanReference`), and the scan_info updates the
publisher sends (new end positions, comments, units...).

:class:`ScanUpdates` is the part of :class:`~.scan_writer.NexusScanWriter` that
takes them in; it runs where that class's consumer runs (the worker thread) and
shares its state. Both make the file change at the next materialisation.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ..data.events import ScanReference, merge_info
from ..errors import MalformedEventError, NexusWriterError
from ..io.plan import ChildScan
from ..io.scan_info import skip_reason

__all__ = ["ScanUpdates"]

logger = logging.getLogger(__name__)


class ScanUpdates:
    """The methods of :class:`~.scan_writer.NexusScanWriter` for sequences and
    scan_info updates."""

    name: str
    #: the scan_info as the publisher has completed it so far (INFO_UPDATE events)
    scan_info: dict[str, Any]
    #: a sequence: the scans it groups so far, by key
    _children: dict[str, ChildScan]
    _dirty: bool

    # the writer's: Subscriber.node and NexusScanWriter._materialise
    node: Any
    _materialise: Callable[[], None]

    def _add_children(self, references: list[ScanReference]) -> None:
        """A sequence groups more scans: its entry links them at once."""
        added = False
        for reference in references:
            if reference.key == self.node.key:
                child = ChildScan(reference.key, reference.number,
                                  problem="the sequence names itself")
            else:
                child = _child_scan(reference)
            if self._children.get(reference.key) != child:
                self._children[reference.key] = child
                added = True
                if child.problem:
                    logger.warning("%s: scan %s of the sequence is not linked: %s",
                                   self.name, reference.key, child.problem)
        if added:
            self._materialise()

    def _update_info(self, changes: dict[str, Any]) -> None:
        """Merge a scan_info update; the file shows it at the next materialisation
        (new groups, such as ``positioners_end``) and at the end (``end_time``, the
        scan_info kept in ``writer/scan_info``)."""
        for key, value in changes.items():
            kind = _INFO_UPDATE_KINDS.get(key)
            if kind is None:
                logger.debug("%s: scan_info update of %r, not used by the writer", self.name,
                             key)
            elif not isinstance(value, kind):
                raise NexusWriterError(
                    f"scan {self.node.key}: the scan_info update of {key!r} is a "
                    f"{type(value).__name__}, not a {kind.__name__}: the acquisition "
                    "program sent a malformed scan_info")
        self.scan_info = merge_info(self.scan_info, changes)
        self._dirty = True


#: The scan_info keys BLISS completes during a scan that the writer uses, and their kind:
#: an update of one with another kind faults the scan, naming the key.
_INFO_UPDATE_KINDS: dict[str, type] = {
    "positioners": dict, "end_time": str, "end_reason": str, "comments": list,
    "devices": dict, "channels": dict, "plots": list, "display_extra": dict,
}


def _child_scan(reference: ScanReference) -> ChildScan:
    """Where the entries of a scan of a sequence are, or why they cannot be linked."""
    if reference.problem or reference.info is None:
        return ChildScan(reference.key, reference.number,
                         problem=reference.problem or "the scan could not be found")
    info = reference.info
    number = reference.number if reference.number is not None else info.get("scan_nb")
    filename = info.get("filename")
    chain = info.get("acquisition_chain")
    subscans = len(chain) if isinstance(chain, dict) and chain else 1
    try:
        problem = skip_reason(info)
    except MalformedEventError as exc:
        problem = str(exc)
    if info.get("save") is False:
        problem = "the scan is not saved (scan_info save is false)"
    elif not isinstance(filename, str) or not filename:
        problem = problem or "the scan has no 'filename' in its scan_info"
    if isinstance(number, bool) or not isinstance(number, int):
        return ChildScan(reference.key, None, problem=problem or f"its number {number!r} is "
                         "not an integer")
    return ChildScan(reference.key, number, filename if isinstance(filename, str) else "",
                     subscans, problem)
