"""NeXus application definitions the classic writer adds to an entry (pure): APPxrf.

The beamline asks for them as the classic writer's configuration does, through the
technique it publishes in ``scan_info["nexuswriter"]["technique"]["applications"]``:
``{name: {"class": "APPxrf", "I0": "iodet", "It": "idet", "mca": ["mca1:det0"]}}``.
Each APPxrf application is the NXsubentry ``<name>`` of the entry, with
``definition`` ``APPxrf``, ``start_time``, and links to the scan's data:

* ``i0`` and ``it``: the counters named ``I0`` and ``It`` (the beam monitor and the
  transmission);
* ``mca``, ``elapsed_time`` and ``live_time``: the spectra of the MCA detectors named
  in ``mca`` (every MCA detector when it names none), their real time and their live
  time (``energy_livetime``, else ``livetime``, else ``trigger_livetime``). With
  several detectors: ``mca00``, ``elapsed_time_mca00``, ``live_time_mca00``... With
  ``stack_mcas``, the detectors of one controller are one stacked dataset, linked as
  one ``mca``.

A name refers to a channel as in the classic writer: its parts (split at ``:`` and
``.``), compared from the last, each end with the name's part (``iodet`` names
``simulation_diode_controller:iodet``, ``mca1:det0`` every channel of detector 0 of
``mca1``). A name that matches no channel declared so far links nothing.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from ..errors import MalformedInfoError
from .placement import Placed
from .plan import EntryPlan, FieldPlan, GroupPlan, LinkPlan, safe_name
from .scan_info import nexuswriter

__all__ = ["APPXRF", "plan_applications", "xrf_applications", "matching_name"]

#: The application definition name the classic writer gives its XRF NXsubentry.
APPXRF = "APPxrf"
_PARTS = re.compile(r"[.:]")
_MCA_DETECTOR = re.compile(r"^(?P<ctrl>[^:]+):(?P<quantity>[A-Za-z_]+?)_det(?P<n>\d+)$")
#: Fields of an MCA detector for the live time, in order of preference.
_LIVE_TIME = ("energy_livetime", "livetime", "trigger_livetime")


def _malformed(key: str, value: Any, expected: str) -> MalformedInfoError:
    return MalformedInfoError(
        f"scan_info 'nexuswriter/technique/{key}' is {value!r:.200} "
        f"({type(value).__name__}), not {expected}: the acquisition program sent a "
        "malformed scan_info")


def xrf_applications(info: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``[(name, definition)]`` of the APPxrf applications the scan asks for.

    :raises MalformedInfoError: the technique or its applications are not mappings"""
    technique = nexuswriter(info, "technique")
    if technique is None:
        return []
    if not isinstance(technique, Mapping):
        raise MalformedInfoError(
            f"scan_info 'nexuswriter/technique' is {technique!r:.200}, not a mapping: the "
            "acquisition program sent a malformed scan_info")
    applications = technique.get("applications")
    if applications is None:
        return []
    if not isinstance(applications, Mapping):
        raise _malformed("applications", applications, "a mapping of name to definition")
    found = []
    for name, definition in applications.items():
        if not isinstance(definition, Mapping):
            raise _malformed(f"applications/{name}", definition, "a mapping")
        if str(definition.get("class", "")).lower() != APPXRF.lower():
            continue
        for key in ("I0", "It"):
            if not isinstance(definition.get(key, ""), str):
                raise _malformed(f"applications/{name}/{key}", definition[key],
                                 "a channel name")
        mca = definition.get("mca", [])
        if not isinstance(mca, list) or not all(isinstance(m, str) for m in mca):
            raise _malformed(f"applications/{name}/mca", mca, "a list of channel names")
        found.append((str(name), definition))
    return found


def matching_name(name: str, channel: str) -> bool:
    """Whether the configured ``name`` refers to ``channel`` (see the module)."""
    names = _PARTS.split(name)
    parts = _PARTS.split(channel)
    return len(names) <= len(parts) and all(
        part.endswith(wanted) for part, wanted in zip(parts[::-1], names[::-1]))


def _channels(p: Placed) -> tuple[str, ...]:
    return p.members or (p.node.name,)


def _counter(name: str, placed: Sequence[Placed], paths: Mapping[str, str]) -> str | None:
    if not name:
        return None
    for p in placed:
        if not p.members and not p.node.shape and p.node.type == "channel" \
                and matching_name(name, p.node.name):
            return paths[p.node.name]
    return None


def _mca_detectors(placed: Sequence[Placed], paths: Mapping[str, str],
                   names: Sequence[str]) -> list[dict[str, str]]:
    """Per MCA detector (or stack of detectors), its fields' paths by field name, in
    the order of their device groups."""
    devices: dict[str, dict[str, str]] = {}
    chosen: set[str] = set()
    for p in placed:
        channels = _channels(p)
        if p.node.type != "channel" or not all(_MCA_DETECTOR.match(c) for c in channels):
            continue
        devices.setdefault(p.device, {})[p.leaf] = paths[p.node.name]
        if not names or any(matching_name(n, c) for n in names for c in channels):
            chosen.add(p.device)
    return [fields for device, fields in sorted(devices.items())
            if device in chosen and "data" in fields]


def plan_applications(entry: EntryPlan, info: Mapping[str, Any], placed: Sequence[Placed],
                      paths: Mapping[str, str]) -> None:
    """Add to ``entry`` the APPxrf applications the scan asks for (see the module)."""
    for name, definition in xrf_applications(info):
        sub = f"/{entry.name}/{safe_name(name)}"
        if any(item.path == sub or item.path.startswith(sub + "/") for item in entry.items):
            raise MalformedInfoError(
                f"scan_info 'nexuswriter/technique/applications' names an application "
                f"{name!r}, the name of the writer's own {sub}: give it another name")
        entry.add(GroupPlan(sub, "NXsubentry"))
        entry.add(FieldPlan(f"{sub}/definition", APPXRF))
        if info.get("start_time"):
            entry.add(FieldPlan(f"{sub}/start_time", str(info["start_time"])))
        for key, link in (("I0", "i0"), ("It", "it")):
            target = _counter(str(definition.get(key) or ""), placed, paths)
            if target is not None:
                entry.add(LinkPlan(f"{sub}/{link}", target))
        detectors = _mca_detectors(placed, paths, definition.get("mca") or [])
        several = len(detectors) > 1
        for index, fields in enumerate(detectors):
            suffix = f"_mca{index:02d}" if several else ""
            entry.add(LinkPlan(f"{sub}/mca{index:02d}" if several else f"{sub}/mca",
                               fields["data"]))
            if "real_time" in fields:
                entry.add(LinkPlan(f"{sub}/elapsed_time{suffix}", fields["real_time"]))
            live = next((fields[leaf] for leaf in _LIVE_TIME if leaf in fields), None)
            if live is not None:
                entry.add(LinkPlan(f"{sub}/live_time{suffix}", live))
