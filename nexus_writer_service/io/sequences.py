"""The entry of a sequence: links to the entries of the scans it groups (pure).

A sequence (BLISS: a scan group) is a scan whose ``SUBSCANS`` channel names the
scans it runs. Its first entry gets the NXcollection ``scans``, with one soft link
per entry of each of those scans, named as that entry (``3.1``), to the entry of
that name at the root of this file. An entry saved in another file is linked there
as the classic writer does: an external link at the root of this file, named as the
entry, to the entry in its file (relative to this file), unless this file has an
entry of that name. (An external link inside ``scans`` would be simpler, but
nexusformat 2.1 cannot read an external link below the root to a group that holds
soft links: it recurses for ever.) A scan that cannot be linked (it is not in Redis,
it is not saved, it is written by another writer) gets, in ``scans``, a text field
that says why.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from .plan import ChildScan, EntryPlan, FieldPlan, GroupPlan, LinkPlan, safe_name

__all__ = ["is_sequence", "plan_sequence", "SCANS_GROUP"]

#: The group of a sequence's entry that links the scans it groups.
SCANS_GROUP = "scans"


def is_sequence(scan_info: Mapping[str, Any], children: tuple[ChildScan, ...]) -> bool:
    """Whether the scan is a sequence: BLISS marks them ``is_scan_sequence``."""
    return bool(children) or scan_info.get("is_scan_sequence") is True


def plan_sequence(entry: EntryPlan, filename: str, children: tuple[ChildScan, ...],
                  entry_name: Any) -> None:
    """Add to ``entry`` (of a sequence saved in ``filename``) the links to ``children``;
    ``entry_name(number, index)`` names an entry as the writer does."""
    group = f"/{entry.name}/{SCANS_GROUP}"
    entry.add(GroupPlan(group, "NXcollection"))
    here = os.path.dirname(os.path.abspath(filename)) if filename else ""
    taken: set[str] = set()
    for child in children:
        if child.problem:
            name = (entry_name(child.number, 1) if child.number is not None
                    else safe_name(child.key))
            if name in taken:
                continue
            taken.add(name)
            entry.add(FieldPlan(f"{group}/{name}", f"not linked: {child.problem}",
                                {"scan_key": child.key}))
            continue
        assert child.number is not None
        same = os.path.abspath(child.filename) == os.path.abspath(filename)
        external = "" if same else os.path.relpath(os.path.abspath(child.filename), here)
        for index in range(1, max(child.subscans, 1) + 1):
            name = entry_name(child.number, index)
            if name in taken:
                continue
            taken.add(name)
            if external and name != entry.name:
                entry.add(LinkPlan(f"/{name}", f"/{name}", external))
            entry.add(LinkPlan(f"{group}/{name}", f"/{name}"))
