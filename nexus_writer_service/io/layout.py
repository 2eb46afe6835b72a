"""The NeXus layout of a scan file, planned without touching a file (pure).

:func:`plan_scan` turns a :class:`ScanDescription` (the ``scan_info`` dict and the
nodes declared so far) and the :class:`~.options.SaveOptions` into a
:class:`ScanLayout`: per subscan one entry, as an ordered list of groups, fixed
fields, growing datasets fed by channels (:class:`StreamPlan`), lima image stacks,
grid views and soft links. :mod:`.nexus` materialises a layout with h5py.

Planning again with more nodes gives a layout whose items are a superset of the
previous one with the same paths, so a writer can re-plan whenever a node is
declared and create only what is new. Naming, in the words of BLISS users:

* entry ``"<scan number>.<subscan index>"`` (``entry_<number>_<index>`` with
  ``strict_names``);
* ``instrument/<device>/<field>``: a master channel is an NXpositioner with
  ``value`` (``axis:samy`` -> ``samy/value``); an MCA channel
  ``<ctrl>:<quantity>_det<n>`` goes to the NXdetector ``<ctrl>_det<n>``
  (``data`` for the spectrum, ``icr``, ``ocr``, ``livetime``... beside it), or with
  ``stack_mcas`` the NXdetector ``<ctrl>`` whose datasets have one column per
  detector (:func:`mca_stacks` says when a controller can be stacked); a lima
  detector is the NXdetector ``<ctrl>`` with ``data``; any other channel is the
  NXdetector named after its last name part, with ``data``;
* ``measurement/<short unique name>`` links to every dataset; ``plot0D``,
  ``plot1D``, ``plot2D`` NXdata groups by data dimension, the entry's ``default``
  one chosen from ``scan_info["plots"]``;
* APPxrf NXsubentry groups when the scan asks for them (see :mod:`.applications`);
* a sequence's first entry links the entries of the scans it groups in ``scans``
  (see :mod:`.sequences`).

The items of a layout are in :mod:`.plan`, where each node goes in :mod:`.placement`,
the plot groups in :mod:`.plots`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import scan_info as scan_info_keys
from .applications import plan_applications
from .chunking import UNKNOWN_POINTS, ChunkOptions
from .chunking import resolve as chunk_options
from .metadata import tree_items
from .options import SaveOptions
from .placement import (
    RESERVED,
    MCAStacks,
    Placed,
    lima_storage,
    lima_virtual,
    link_names,
    mca_stacks,
    place_all,
    place_stacks,
    stack_devices,
)
from .plan import (
    EntryPlan,
    FieldPlan,
    GridPlan,
    GroupPlan,
    ImagesPlan,
    LinkPlan,
    NodeSpec,
    PlanItem,
    ScanDescription,
    ScanLayout,
    StackPlan,
    StreamPlan,
    jsonable,
    safe_name,
)
from .plots import plan_plots
from .sequences import is_sequence, plan_sequence

__all__ = [
    "NodeSpec",
    "ScanDescription",
    "GroupPlan",
    "FieldPlan",
    "StreamPlan",
    "StackPlan",
    "ImagesPlan",
    "GridPlan",
    "LinkPlan",
    "EntryPlan",
    "ScanLayout",
    "PlanItem",
    "MCAStacks",
    "entry_name",
    "plan_scan",
    "chunk_rows",
    "jsonable",
    "safe_name",
    "mca_stacks",
    "lima_storage",
    "lima_virtual",
]

_MAX_CHUNK_ROWS = 1 << 16


def entry_name(number: int, index: int, strict: bool) -> str:
    """``"12.1"`` (BLISS) or ``"entry_12_1"`` (valid NeXus) for subscan ``index`` (1-based)."""
    return f"entry_{number}_{index}" if strict else f"{number}.{index}"


def chunk_rows(point_bytes: int, chunk_bytes: int, expected_points: int,
               split: int = 1) -> int:
    """Points per chunk: about ``chunk_bytes``, no more than the points expected
    divided by ``split`` (rounded up)."""
    rows = max(1, chunk_bytes // max(1, point_bytes))
    if expected_points > 0:
        rows = min(rows, -(-expected_points // max(1, split)))
    else:
        rows = min(rows, 4096)
    return int(max(1, min(rows, _MAX_CHUNK_ROWS)))


def _expected_points(scan_info: Mapping[str, Any]) -> int:
    try:
        n1, n2 = int(scan_info.get("npoints1", 0)), int(scan_info.get("npoints2", 0))
        npoints = int(scan_info.get("npoints", 0) or 0)
    except (TypeError, ValueError):
        return 0
    return max(npoints, n1 * n2, 0)


def _subscans(description: ScanDescription) -> list[str]:
    chain = description.scan_info.get("acquisition_chain")
    names = [str(k) for k in chain] if isinstance(chain, Mapping) else []
    for node in description.nodes:
        if node.subscan not in names:
            names.append(node.subscan)
    return names or ["main"]


def _masters(scan_info: Mapping[str, Any], subscan: str) -> set[str]:
    chain = scan_info.get("acquisition_chain")
    entry = chain.get(subscan) if isinstance(chain, Mapping) else None
    master = entry.get("master") if isinstance(entry, Mapping) else None
    names: set[str] = set()
    if isinstance(master, Mapping):
        for value in master.values():
            if isinstance(value, (list, tuple)):
                names.update(str(v) for v in value)
    return names


def _point_bytes(node: NodeSpec) -> int:
    shape = [d for d in node.shape if d > 0] or [1]
    return int(np.dtype(node.dtype).itemsize * math.prod(shape))


def _expected_bytes(point_shape: Sequence[int], dtype: Any, expected: int) -> int:
    """What the scan is expected to write into a dataset, as the classic writer counts
    it to decide on compression: unknown dimensions count UNKNOWN_POINTS."""
    values = math.prod(d if d > 0 else UNKNOWN_POINTS for d in point_shape)
    return (expected if expected > 0 else UNKNOWN_POINTS) * values * np.dtype(dtype).itemsize


def _stream(node: NodeSpec, path: str, chunking: ChunkOptions, expected: int) -> StreamPlan:
    dtype = np.dtype(node.dtype)
    attrs: dict[str, Any] = {"channel": node.name}
    if node.unit:
        attrs["units"] = node.unit
    if len(node.shape) == 1:
        attrs["interpretation"] = "spectrum"
    elif len(node.shape) >= 2:
        attrs["interpretation"] = "image"
    lengths = None
    fill: Any = 0
    if node.variable_length:
        fill = math.nan if dtype.kind == "f" else 0
        lengths = path + "_lengths"
        attrs["lengths"] = lengths.rsplit("/", 1)[-1]
        attrs["fill_value"] = "NaN" if dtype.kind == "f" else "0"
    rows = chunk_rows(_point_bytes(node), chunking.chunk_nbytes, expected, chunking.chunk_split)
    shape = (0,) if node.variable_length else tuple(node.shape)
    scheme = chunking.scheme_for(_expected_bytes(node.shape, dtype, expected))
    return StreamPlan(path, node.name, dtype.str, shape, rows, fill, lengths, attrs, scheme)


def _stack_plan(p: Placed, path: str, chunking: ChunkOptions, expected: int) -> StackPlan:
    """Chunks hold one detector's points, so each column is written on its own."""
    node = p.node
    point_shape = tuple(node.shape[1:])
    attrs: dict[str, Any] = {"channels": list(p.members),
                             "detectors": [m.rsplit("_", 1)[-1] for m in p.members]}
    if node.unit:
        attrs["units"] = node.unit
    if point_shape:
        attrs["interpretation"] = "spectrum" if len(point_shape) == 1 else "image"
    point_bytes = _point_bytes(NodeSpec(node.name, node.type, node.subscan, node.dtype,
                                        point_shape))
    rows = chunk_rows(point_bytes, chunking.chunk_nbytes, expected, chunking.chunk_split)
    scheme = chunking.scheme_for(_expected_bytes((len(p.members),) + point_shape, node.dtype,
                                                 expected))
    return StackPlan(path, p.members, np.dtype(node.dtype).str, point_shape, rows, attrs,
                     scheme)


def _text_fields(base: str, values: Mapping[str, Any], skip: Iterable[str] = ()
                 ) -> list[FieldPlan]:
    fields = []
    for key, value in values.items():
        if key in skip or value is None:
            continue
        if isinstance(value, (Mapping, list, tuple)):
            value = json.dumps(jsonable(value))
        fields.append(FieldPlan(f"{base}/{safe_name(str(key))}", value))
    return fields


def _positioners(entry: EntryPlan, scan_info: Mapping[str, Any], placed: Sequence[Placed],
                 options: SaveOptions) -> None:
    info = scan_info.get("positioners")
    if not isinstance(info, Mapping):
        return
    base = f"/{entry.name}/instrument"
    units = info.get("positioners_units") or {}
    moving: dict[str, str] = {}
    for p in placed:
        if p.positioner:
            moving.setdefault(p.node.short_name, f"{base}/{p.device}/{p.leaf}")
    declared = {p.node.name for p in placed}
    pending = {name.rsplit(":", 1)[-1] for name in _masters(scan_info, entry.subscan)
               if name not in declared}
    start = info.get("positioners_start") or {}
    end = info.get("positioners_end") or {}
    entry.add(GroupPlan(f"{base}/positioners", "NXcollection"))
    for motor, value in start.items():
        path = f"{base}/positioners/{safe_name(motor)}"
        if motor in moving:
            entry.add(LinkPlan(path, moving[motor]))
            continue
        if motor in pending:
            continue
        if options.multivalue_positioners and motor in end:
            value = [value, end[motor]]
        entry.add(FieldPlan(path, value, _units(units, motor)))
    for group in ("positioners_start", "positioners_end", "positioners_dial_start",
                  "positioners_dial_end"):
        values = info.get(group)
        if not isinstance(values, Mapping):
            continue
        entry.add(GroupPlan(f"{base}/{group}", "NXcollection"))
        for motor, value in values.items():
            entry.add(FieldPlan(f"{base}/{group}/{safe_name(motor)}", value,
                                _units(units, motor)))


def _units(units: Any, motor: str) -> dict[str, Any]:
    unit = units.get(motor) if isinstance(units, Mapping) else None
    return {"units": unit} if unit else {}


def _published_unit(node: NodeSpec, channels: Any) -> NodeSpec:
    """``node`` with the unit ``scan_info["channels"]`` publishes for it (as BLISS does)
    when the node itself was declared without one."""
    if node.unit or not isinstance(channels, Mapping):
        return node
    published = channels.get(node.name)
    unit = published.get("unit") if isinstance(published, Mapping) else None
    return dataclasses.replace(node, unit=unit) if isinstance(unit, str) and unit else node


def _notes(entry: EntryPlan, scan_info: Mapping[str, Any]) -> None:
    """``notes``: what the writer tells about the layout (``mca_stacking``), and the
    users' comments on the scan, one NXnote each (``note_01``...) as BLISS writes
    them."""
    notes = f"/{entry.name}/notes"
    entry.add(GroupPlan(notes, "NXnote"))
    if entry.notes:
        entry.add(FieldPlan(f"{notes}/mca_stacking", "\n".join(entry.notes)))
    for index, comment in enumerate(scan_info_keys.comments(scan_info), 1):
        note = f"{notes}/note_{index:02d}"
        entry.add(GroupPlan(note, "NXnote"))
        entry.add(FieldPlan(f"{note}/data", comment.message))
        entry.add(FieldPlan(f"{note}/type", "text/plain"))
        if comment.date:
            entry.add(FieldPlan(f"{note}/date", comment.date))


def _entry(description: ScanDescription, options: SaveOptions, subscan: str, index: int,
           expected: int, chunking: ChunkOptions
           ) -> tuple[EntryPlan, dict[str, StreamPlan], dict[str, ImagesPlan]]:
    info = description.scan_info
    name = entry_name(description.number, index, options.strict_names)
    entry = EntryPlan(name, subscan)
    root = f"/{name}"
    identity = {"scan_key": description.key, "subscan": subscan}
    if description.uid:
        identity["scan_uid"] = description.uid
    entry.add(GroupPlan(root, "NXentry", identity))
    entry.add(FieldPlan(f"{root}/title", str(info.get("title", description.name))))
    entry.add(FieldPlan(f"{root}/start_time", str(info.get("start_time", ""))))
    proposal = info.get("proposal")
    if isinstance(proposal, Mapping) and proposal.get("name"):
        entry.add(FieldPlan(f"{root}/experiment_identifier", str(proposal["name"])))
    instrument = f"{root}/instrument"
    entry.add(GroupPlan(instrument, "NXinstrument"))
    nodes = [_published_unit(n, info.get("channels")) for n in description.nodes
             if n.subscan == subscan]
    masters = _masters(info, subscan)
    stacks, entry.notes = mca_stacks(nodes, masters) if options.stack_mcas else ({}, [])
    stacked = {n.name for fields in stacks.values() for group in fields.values()
               for n in group}
    devices = stack_devices(stacks)
    described = scan_info_keys.devices(info)
    placed = place_all([n for n in nodes if n.name not in stacked], masters,
                       RESERVED | frozenset(devices.values()), described)
    placed += place_stacks(stacks, devices)
    names = link_names(placed, options.short_names)
    streams: dict[str, StreamPlan] = {}
    images: dict[str, ImagesPlan] = {}
    paths: dict[str, str] = {}
    groups: set[str] = set()
    for p in placed:
        group = f"{instrument}/{p.device}"
        if p.device not in groups:
            groups.add(p.device)
            entry.add(GroupPlan(group, p.nx_class))
        path = paths[p.node.name] = f"{group}/{p.leaf}"
        if p.members:
            entry.add(_stack_plan(p, path, chunking, expected))
        elif p.node.type == "lima":
            storage = lima_storage(p.node, options)
            plan = ImagesPlan(path, p.node.name, np.dtype(p.node.dtype).str,
                              tuple(p.node.shape), storage == "virtual",
                              {"channel": p.node.name, "interpretation": "image"}, storage,
                              "copy" if options.copy_non_external else "references",
                              chunking.scheme_for(_expected_bytes(p.node.shape, p.node.dtype,
                                                                  expected)))
            images[p.node.name] = plan
            entry.add(plan)
        else:
            stream = streams[p.node.name] = _stream(p.node, path, chunking, expected)
            entry.add(stream)
    _device_info(entry, instrument, placed, described)
    _positioners(entry, info, placed, options)
    entry.add(GroupPlan(f"{root}/measurement", "NXcollection"))
    for p in placed:
        entry.add(LinkPlan(f"{root}/measurement/{names[p.node.name]}", paths[p.node.name]))
    plan_plots(entry, info, placed, names, paths, options)
    plan_applications(entry, info, placed, paths)
    if index == 1 and is_sequence(info, description.children):
        plan_sequence(entry, str(info.get("filename") or ""), description.children,
                      lambda number, i: entry_name(number, i, options.strict_names))
    sample = info.get("sample")
    if isinstance(sample, Mapping):
        entry.add(GroupPlan(f"{root}/sample", "NXsample"))
        for item in _text_fields(f"{root}/sample", sample):
            entry.add(item)
    _notes(entry, info)
    entry.add(GroupPlan(f"{root}/writer", "NXcollection"))
    entry.add(FieldPlan(f"{root}/writer/scan_key", description.key))
    entry.add(FieldPlan(f"{root}/writer/scan_info", json.dumps(jsonable(info)),
                        {"type": "application/json"}))
    entry.add(FieldPlan(f"{root}/writer/options", json.dumps(options.as_dict()),
                        {"type": "application/json"}))
    entry.add(FieldPlan(f"{root}/writer/chunk_options", json.dumps(chunking.as_dict()),
                        {"type": "application/json"}))
    _metadata(entry, info)
    return entry, streams, images


def _device_info(entry: EntryPlan, instrument: str, placed: Sequence[Placed],
                 described: Mapping[str, scan_info_keys.Device]) -> None:
    """The ``device_info`` BLISS gives a channel's device (``nexuswriter.devices``),
    written into the device's group as the classic writer does (``type``...), never
    over what the writer plans itself. The channels of one device describe it alike:
    the first one that does is written."""
    planned: dict[str, PlanItem] = {item.path: item for item in entry.items}
    done: set[str] = set()
    for p in placed:
        for name in p.members or (p.node.name,):
            device = described.get(name)
            if device is None or not device.device_info or p.device in done:
                continue
            done.add(p.device)
            where = f"nexuswriter/devices/{name}/device_info"
            for item in tree_items(f"{instrument}/{p.device}", device.device_info, where,
                                   planned, entry.metadata_notes):
                entry.add(item)
                planned[item.path] = item


def _metadata(entry: EntryPlan, scan_info: Mapping[str, Any]) -> None:
    """The trees of scan metadata (:func:`~.scan_info.categories`), after everything
    the writer plans itself, which they never replace (see :mod:`.metadata`)."""
    planned: dict[str, PlanItem] = {item.path: item for item in entry.items}
    root = f"/{entry.name}"
    trees = [(f"{root}/instrument", scan_info_keys.instrument_info(scan_info),
              "nexuswriter/instrument_info")]
    for category in scan_info_keys.categories(scan_info):
        value = scan_info.get(category)
        path = f"{root}/{safe_name(category)}"
        if isinstance(value, Mapping):
            trees.append((path, value, category))
        elif value is not None:
            if path in planned:
                moved = path + "_metadata"
                while moved in planned:
                    moved += "_"
                entry.metadata_notes.append(
                    f"scan_info {category!r} is at {moved}: the writer has {path}")
                path = moved
            entry.add(FieldPlan(path, value))
            planned[path] = entry.items[-1]
    for path, tree, where in trees:
        if not [key for key in tree if "@" not in key and key != "NX_class"]:
            continue  # BLISS publishes empty categories: {"@NX_class": ...}
        for item in tree_items(path, tree, where, planned, entry.metadata_notes):
            entry.add(item)
            planned[item.path] = item


def plan_scan(description: ScanDescription, options: SaveOptions,
              creator: str = "nexus_writer_service") -> ScanLayout:
    """The layout of ``description`` (see the module docstring). Pure and deterministic."""
    expected = _expected_points(description.scan_info)
    chunking = chunk_options(description.scan_info, options)
    entries: list[EntryPlan] = []
    streams: dict[str, StreamPlan] = {}
    images: dict[str, ImagesPlan] = {}
    stacks: dict[str, StackPlan] = {}
    for index, subscan in enumerate(_subscans(description), 1):
        entry, entry_streams, entry_images = _entry(description, options, subscan, index,
                                                    expected, chunking)
        entries.append(entry)
        streams.update(entry_streams)
        images.update(entry_images)
        for item in entry.items:
            if isinstance(item, StackPlan):
                stacks.update(dict.fromkeys(item.channels, item))
    root_attrs = {"NX_class": "NXroot", "creator": creator,
                  "default": entries[0].name if entries else ""}
    notes = [f"{entry.name}: {note}" for entry in entries
             for note in entry.notes + entry.metadata_notes]
    return ScanLayout(root_attrs, entries, streams, images, stacks, notes)
