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
  one chosen from ``scan_info["plots"]``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

from ..data.codec import jsonable
from .options import SaveOptions

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
    "entry_name",
    "plan_scan",
    "chunk_rows",
    "mca_stacks",
]

_SAFE = re.compile(r"[^A-Za-z0-9_.]")
_MCA = re.compile(r"^(?P<ctrl>[^:]+):(?P<quantity>[A-Za-z]+(?:_[A-Za-z]+)*)_det(?P<n>\d+)$")
_MAX_CHUNK_ROWS = 1 << 16
#: Names the planner itself uses inside ``instrument``.
_RESERVED = frozenset({"positioners", "positioners_start", "positioners_end",
                       "positioners_dial_start", "positioners_dial_end", "source", "name"})


@dataclass(frozen=True)
class NodeSpec:
    """A declared channel or lima node, as the planner needs it."""

    name: str
    type: str  # "channel" or "lima"
    subscan: str
    dtype: str
    shape: tuple[int, ...] = ()
    unit: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(":", 1)[-1]

    @property
    def variable_length(self) -> bool:
        return self.type == "channel" and tuple(self.shape) == (-1,)


@dataclass(frozen=True)
class ScanDescription:
    """What the planner knows of a scan: Redis key, name, number, scan_info, nodes,
    and the publisher's unique id of the scan (keys are reused if Redis loses its data)."""

    key: str
    name: str
    number: int
    scan_info: Mapping[str, Any]
    nodes: tuple[NodeSpec, ...] = ()
    uid: str = ""


@dataclass(frozen=True)
class GroupPlan:
    path: str
    nx_class: str
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldPlan:
    """A dataset written once with ``value`` (text, number, list)."""

    path: str
    value: Any
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamPlan:
    """A dataset growing along its first axis with the points of ``channel``.

    Variable-length points are padded with ``fill`` to the longest point so far;
    their true lengths go to ``lengths_path``.
    """

    path: str
    channel: str
    dtype: str
    point_shape: tuple[int, ...]
    chunk_rows: int
    fill: Any = 0
    lengths_path: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StackPlan:
    """A dataset of shape ``(points, len(channels)) + point_shape`` growing along its
    first axis: column ``i`` holds the points of ``channels[i]`` (the detectors of one
    MCA controller, in detector order). Each column is written independently; the
    dataset's ``detector_points`` attribute counts the points of each column."""

    path: str
    channels: tuple[str, ...]
    dtype: str
    point_shape: tuple[int, ...]
    chunk_rows: int
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImagesPlan:
    """The frames of a lima detector, as ``storage`` says (see :func:`lima_storage`):
    a virtual dataset over its own HDF5 files (``virtual``, then ``virtual`` is true),
    an external-storage dataset over its EDF files (``external``), a copy of the
    frames (``copy``) or the list of where each frame is (``references``).
    ``fallback``: the storage used instead of ``external`` for frames that cannot be
    linked (compressed EDF, another dtype or shape)."""

    path: str
    lima: str
    dtype: str
    frame_shape: tuple[int, ...]
    virtual: bool
    attrs: Mapping[str, Any] = field(default_factory=dict)
    storage: str = ""
    fallback: str = "references"

    def __post_init__(self) -> None:
        if not self.storage:
            object.__setattr__(self, "storage", "virtual" if self.virtual else "references")


@dataclass(frozen=True)
class GridPlan:
    """A virtual dataset showing the 1D dataset at ``source`` as a ``shape`` grid."""

    path: str
    source: str
    dtype: str
    shape: tuple[int, int]
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LinkPlan:
    """A soft link at ``path`` to ``target`` (absolute path in the same file)."""

    path: str
    target: str


PlanItem = Union[GroupPlan, FieldPlan, StreamPlan, StackPlan, ImagesPlan, GridPlan, LinkPlan]


@dataclass
class EntryPlan:
    """One NXentry: everything under ``/<name>`` in creation order."""

    name: str
    subscan: str
    items: list[PlanItem] = field(default_factory=list)
    default: str | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, item: PlanItem) -> None:
        self.items.append(item)


@dataclass
class ScanLayout:
    """The whole plan of one scan: root attributes and its entries."""

    root_attrs: dict[str, Any]
    entries: list[EntryPlan]
    streams: dict[str, StreamPlan]
    images: dict[str, ImagesPlan]
    #: the stacked dataset of every channel written into one (``stack_mcas``)
    stacks: dict[str, StackPlan] = field(default_factory=dict)
    #: what the writer should tell the user about the layout (MCAs not stacked...)
    notes: list[str] = field(default_factory=list)


def safe_name(name: str) -> str:
    """A name HDF5 and NeXus accept: anything but letters, digits, ``_`` and ``.`` -> ``_``."""
    return _SAFE.sub("_", name) or "_"


def entry_name(number: int, index: int, strict: bool) -> str:
    """``"12.1"`` (BLISS) or ``"entry_12_1"`` (valid NeXus) for subscan ``index`` (1-based)."""
    return f"entry_{number}_{index}" if strict else f"{number}.{index}"


def chunk_rows(point_bytes: int, chunk_bytes: int, expected_points: int) -> int:
    """Points per chunk: about ``chunk_bytes``, no more than the points expected."""
    rows = max(1, chunk_bytes // max(1, point_bytes))
    if expected_points > 0:
        rows = min(rows, expected_points)
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


@dataclass(frozen=True)
class _Placed:
    node: NodeSpec
    device: str
    nx_class: str
    leaf: str
    positioner: bool
    #: the channels stacked in this dataset, in column order (``stack_mcas``)
    members: tuple[str, ...] = ()


def _place(node: NodeSpec, masters: set[str]) -> tuple[str, str, str, bool]:
    parts = node.name.split(":")
    if node.type == "lima":
        return safe_name(parts[0]), "NXdetector", "data", False
    if node.name in masters and not node.shape:
        return safe_name(node.short_name), "NXpositioner", "value", True
    mca = _MCA.match(node.name)
    if mca:
        leaf = "data" if node.shape else mca["quantity"]
        return safe_name(f"{mca['ctrl']}_det{mca['n']}"), "NXdetector", safe_name(leaf), False
    device = f"{parts[0]}_{parts[-1]}" if len(parts) > 2 else node.short_name
    return safe_name(device), "NXdetector", "data", False


def _place_all(nodes: Sequence[NodeSpec], masters: set[str],
               reserved: frozenset[str] = _RESERVED) -> list[_Placed]:
    """Device group and field of every node, unique within the entry."""
    taken: dict[tuple[str, str], str] = {}
    device_class: dict[str, str] = {}
    placed = []
    for node in nodes:
        device, nx_class, leaf, positioner = _place(node, masters)
        if ((device, leaf) in taken or device in reserved
                or device_class.get(device, nx_class) != nx_class):
            device = safe_name(node.name)
            while (device, leaf) in taken:
                device += "_"
        taken[(device, leaf)] = node.name
        device_class[device] = nx_class
        placed.append(_Placed(node, device, nx_class, leaf, positioner))
    return placed


MCAStacks = dict[str, dict[str, tuple[NodeSpec, ...]]]


def mca_stacks(nodes: Sequence[NodeSpec], masters: Iterable[str] = ()
               ) -> tuple[MCAStacks, list[str]]:
    """Which MCA channels ``stack_mcas`` stacks, and why the others are not (pure).

    Returns ``({controller: {field: nodes in detector order}}, notes)``. The MCA
    channels ``<ctrl>:<quantity>_det<n>`` of one controller are stacked when the
    controller has at least two detectors publishing the same quantities with the
    same dtype and the same fixed point shape; the fields are in the order the first
    detector declared them. Any other controller keeps one NXdetector per detector,
    and a note says why.
    """
    masters = set(masters)
    by_ctrl: dict[str, dict[int, dict[str, NodeSpec]]] = {}
    clashes: set[str] = set()
    for node in nodes:
        match = _MCA.match(node.name)
        if (node.type != "channel" or match is None
                or (node.name in masters and not node.shape)):
            continue
        leaf = safe_name("data" if node.shape else match["quantity"])
        fields = by_ctrl.setdefault(match["ctrl"], {}).setdefault(int(match["n"]), {})
        if leaf in fields:
            clashes.add(match["ctrl"])
        fields.setdefault(leaf, node)
    stacks: MCAStacks = {}
    notes = []
    for ctrl, detectors in by_ctrl.items():
        reason = _not_stackable(detectors, ctrl in clashes)
        if reason:
            notes.append(f"MCA {ctrl}: detectors not stacked ({reason}); "
                         "one NXdetector per detector")
            continue
        order = sorted(detectors)
        stacks[ctrl] = {leaf: tuple(detectors[n][leaf] for n in order)
                        for leaf in detectors[order[0]]}
    return stacks, notes


def _not_stackable(detectors: Mapping[int, Mapping[str, NodeSpec]], clash: bool) -> str:
    """Why the detectors of one controller cannot share datasets ("" if they can)."""
    if len(detectors) < 2:
        return "a single detector"
    if clash:
        return "two channels of one detector go to the same field"
    first = min(detectors)
    reference = detectors[first]
    for n, fields in sorted(detectors.items()):
        if set(fields) != set(reference):
            return f"detector {n} does not publish the same quantities as detector {first}"
        for leaf, node in fields.items():
            other = reference[leaf]
            if node.variable_length:
                return f"{node.name} has variable-length points"
            if np.dtype(node.dtype) != np.dtype(other.dtype):
                return (f"{node.name} is {np.dtype(node.dtype)}, "
                        f"{other.name} is {np.dtype(other.dtype)}")
            if tuple(node.shape) != tuple(other.shape):
                return (f"{node.name} has points of shape {tuple(node.shape)}, "
                        f"{other.name} of shape {tuple(other.shape)}")
    return ""


def _stack_devices(stacks: MCAStacks) -> dict[str, str]:
    """The NXdetector group of every stacked controller, clear of the planner's names."""
    devices: dict[str, str] = {}
    for ctrl in stacks:
        device = safe_name(ctrl)
        while device in _RESERVED or device in devices.values():
            device += "_"
        devices[ctrl] = device
    return devices


def _place_stacks(stacks: MCAStacks, devices: Mapping[str, str]) -> list[_Placed]:
    """One placed pseudo-node ``<ctrl>:<quantity>`` per stacked dataset."""
    placed = []
    for ctrl, fields in stacks.items():
        for leaf, members in fields.items():
            first = members[0]
            match = _MCA.match(first.name)
            quantity = match["quantity"] if match else leaf
            node = NodeSpec(f"{ctrl}:{quantity}", "channel", first.subscan, first.dtype,
                            (len(members),) + tuple(first.shape), first.unit)
            placed.append(_Placed(node, devices[ctrl], "NXdetector", leaf, False,
                                  tuple(m.name for m in members)))
    return placed


def _link_names(placed: Sequence[_Placed], short: bool) -> dict[str, str]:
    """A short unique name per node for ``measurement`` and the plots.

    A node's name depends only on the nodes before it, so that declaring more
    nodes never renames a link already written (first come, first served).
    """
    names: dict[str, str] = {}
    used: set[str] = set()
    for p in placed:
        parts = p.node.name.split(":")
        options = [safe_name(p.node.name)]
        if short:
            first = p.device if p.node.type == "lima" else p.node.short_name
            options = [safe_name(first), safe_name(f"{parts[0]}_{parts[-1]}")] + options
        choice = next((o for o in options if o not in used), options[-1])
        while choice in used:
            choice += "_"
        used.add(choice)
        names[p.node.name] = choice
    return names


def _point_bytes(node: NodeSpec) -> int:
    shape = [d for d in node.shape if d > 0] or [1]
    return int(np.dtype(node.dtype).itemsize * math.prod(shape))


def _stream(node: NodeSpec, path: str, options: SaveOptions, expected: int) -> StreamPlan:
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
    rows = chunk_rows(_point_bytes(node), options.chunk_bytes, expected)
    shape = (0,) if node.variable_length else tuple(node.shape)
    return StreamPlan(path, node.name, dtype.str, shape, rows, fill, lengths, attrs)


def _stack_plan(p: _Placed, path: str, options: SaveOptions, expected: int) -> StackPlan:
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
    rows = chunk_rows(point_bytes, options.chunk_bytes, expected)
    return StackPlan(path, p.members, np.dtype(node.dtype).str, point_shape, rows, attrs)


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


def _positioners(entry: EntryPlan, scan_info: Mapping[str, Any], placed: Sequence[_Placed],
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


def _plot_preferences(scan_info: Mapping[str, Any]) -> tuple[list[str], list[str], str | None]:
    """Preferred signals, axes and default plot kind from ``scan_info["plots"]``."""
    signals: list[str] = []
    axes: list[str] = []
    kind = None
    plots = scan_info.get("plots")
    for plot in plots if isinstance(plots, list) else []:
        if not isinstance(plot, Mapping):
            continue
        kind = kind or str(plot.get("kind", ""))
        for item in plot.get("items") or []:
            if not isinstance(item, Mapping):
                continue
            for key in ("y", "value", "image", "mca"):
                if isinstance(item.get(key), str):
                    signals.append(item[key])
            for key in ("x", "y") if item.get("kind") == "scatter" else ("x",):
                if isinstance(item.get(key), str):
                    axes.append(item[key])
    return signals, axes, kind


def _grid_shape(scan_info: Mapping[str, Any]) -> tuple[int, int] | None:
    try:
        n1, n2 = int(scan_info.get("npoints1", 0)), int(scan_info.get("npoints2", 0))
    except (TypeError, ValueError):
        return None
    return (n2, n1) if n1 > 0 and n2 > 0 and int(scan_info.get("data_dim", 1)) == 2 else None


def _plots(entry: EntryPlan, scan_info: Mapping[str, Any], placed: Sequence[_Placed],
           names: Mapping[str, str], paths: Mapping[str, str], options: SaveOptions) -> None:
    preferred, preferred_axes, kind = _plot_preferences(scan_info)
    rank = {name: i for i, name in enumerate(preferred)}
    by_dim: dict[int, list[_Placed]] = {}
    for p in placed:
        if p.positioner or p.node.variable_length or (p.members and p.leaf != "data"):
            continue
        dim = 2 if p.node.type == "lima" else min(len(p.node.shape) - bool(p.members), 2)
        by_dim.setdefault(dim, []).append(p)
    axes: list[_Placed] = []
    for p in [p for name in preferred_axes for p in placed
              if p.node.name == name and not p.node.shape] + [p for p in placed if p.positioner]:
        if p not in axes:
            axes.append(p)
    grid = _grid_shape(scan_info) if options.keepshape else None
    created = {}
    for dim, members in sorted(by_dim.items()):
        if dim == 2 and all(p.node.type == "lima"
                            and lima_storage(p.node, options) == "references"
                            for p in members):
            continue
        members = sorted(members, key=lambda p: min(rank.get(n, len(rank))
                                                    for n in (p.node.name,) + p.members))
        plot = f"/{entry.name}/plot{dim}D"
        signal = names[members[0].node.name]
        attrs: dict[str, Any] = {"signal": signal}
        if len(members) > 1:
            attrs["auxiliary_signals"] = [names[p.node.name] for p in members[1:]]
        if dim == 1:
            attrs["interpretation"] = "spectrum"
        elif dim == 2:
            attrs["interpretation"] = "image"
        plot_axes = axes[:2] if (dim == 0 and grid) else axes[:1] if dim == 0 else []
        if grid and dim == 0:
            attrs["axes"] = [names[p.node.name] for p in reversed(plot_axes)] or ["."]
            for p in plot_axes:
                attrs[f"{names[p.node.name]}_indices"] = [0, 1]
        elif plot_axes:
            attrs["axes"] = [names[p.node.name] for p in plot_axes]
        elif dim:
            attrs["axes"] = ["."] * (len(members[0].node.shape) + 1 if members[0].members
                                     else dim + 1)
        entry.add(GroupPlan(plot, "NXdata", attrs))
        # every candidate axis is linked, so a later declaration only changes @axes
        extra_axes = [p for p in axes if p not in members] if dim == 0 else []
        for p in members + extra_axes:
            target = paths[p.node.name]
            if grid and dim == 0:
                dtype = np.dtype(p.node.dtype).str
                entry.add(GridPlan(f"{plot}/{names[p.node.name]}", target, dtype, grid,
                                   {"channel": p.node.name}))
            else:
                entry.add(LinkPlan(f"{plot}/{names[p.node.name]}", target))
        created[dim] = f"plot{dim}D"
    wanted = {"image-plot": 2, "mca-plot": 1}.get(kind or "", 0)
    entry.default = created.get(wanted) or next(iter(created.values()), None)


def lima_virtual(node: NodeSpec, options: SaveOptions) -> bool:
    """Whether a lima detector's frames are shown through a virtual dataset: only
    frames saved in HDF5 files, unless ``disable_external_hdf5``."""
    return lima_storage(node, options) == "virtual"


def lima_storage(node: NodeSpec, options: SaveOptions) -> str:
    """How a lima detector's frames appear in the scan file:

    * ``virtual``: frames saved in HDF5 files, unless ``disable_external_hdf5``;
    * ``external``: frames saved in EDF files with ``enable_external_nonhdf5``;
    * ``copy``: any other frames with ``copy_non_external``;
    * ``references``: otherwise, the list of where each frame is.
    """
    file_format = str(node.info.get("file_format", "hdf5")).lower()
    if file_format in ("hdf5", "h5"):
        if not options.disable_external_hdf5:
            return "virtual"
    elif file_format == "edf" and options.enable_external_nonhdf5:
        return "external"
    return "copy" if options.copy_non_external else "references"


def _entry(description: ScanDescription, options: SaveOptions, subscan: str, index: int,
           expected: int) -> tuple[EntryPlan, dict[str, StreamPlan], dict[str, ImagesPlan]]:
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
    inst_info = info.get("instrument")
    if isinstance(inst_info, Mapping):
        if inst_info.get("name"):
            entry.add(FieldPlan(f"{instrument}/name", str(inst_info["name"])))
        if inst_info.get("source"):
            entry.add(GroupPlan(f"{instrument}/source", "NXsource"))
            entry.add(FieldPlan(f"{instrument}/source/name", str(inst_info["source"])))
    nodes = [n for n in description.nodes if n.subscan == subscan]
    masters = _masters(info, subscan)
    stacks, entry.notes = mca_stacks(nodes, masters) if options.stack_mcas else ({}, [])
    stacked = {n.name for fields in stacks.values() for group in fields.values()
               for n in group}
    devices = _stack_devices(stacks)
    placed = _place_all([n for n in nodes if n.name not in stacked], masters,
                        _RESERVED | frozenset(devices.values()))
    placed += _place_stacks(stacks, devices)
    names = _link_names(placed, options.short_names)
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
            entry.add(_stack_plan(p, path, options, expected))
        elif p.node.type == "lima":
            storage = lima_storage(p.node, options)
            plan = ImagesPlan(path, p.node.name, np.dtype(p.node.dtype).str,
                              tuple(p.node.shape), storage == "virtual",
                              {"channel": p.node.name, "interpretation": "image"}, storage,
                              "copy" if options.copy_non_external else "references")
            images[p.node.name] = plan
            entry.add(plan)
        else:
            stream = streams[p.node.name] = _stream(p.node, path, options, expected)
            entry.add(stream)
    _positioners(entry, info, placed, options)
    entry.add(GroupPlan(f"{root}/measurement", "NXcollection"))
    for p in placed:
        entry.add(LinkPlan(f"{root}/measurement/{names[p.node.name]}", paths[p.node.name]))
    _plots(entry, info, placed, names, paths, options)
    sample = info.get("sample")
    if isinstance(sample, Mapping):
        entry.add(GroupPlan(f"{root}/sample", "NXsample"))
        for item in _text_fields(f"{root}/sample", sample):
            entry.add(item)
    entry.add(GroupPlan(f"{root}/notes", "NXnote"))
    if entry.notes:
        entry.add(FieldPlan(f"{root}/notes/mca_stacking", "\n".join(entry.notes)))
    comments = info.get("comments")
    if isinstance(comments, list):
        for i, comment in enumerate(comments, 1):
            entry.add(FieldPlan(f"{root}/notes/note_{i:02d}", str(comment)))
    entry.add(GroupPlan(f"{root}/writer", "NXnote"))
    entry.add(FieldPlan(f"{root}/writer/scan_key", description.key))
    entry.add(FieldPlan(f"{root}/writer/scan_info", json.dumps(jsonable(info)),
                        {"type": "application/json"}))
    entry.add(FieldPlan(f"{root}/writer/options", json.dumps(options.as_dict()),
                        {"type": "application/json"}))
    return entry, streams, images


def plan_scan(description: ScanDescription, options: SaveOptions,
              creator: str = "nexus_writer_service") -> ScanLayout:
    """The layout of ``description`` (see the module docstring). Pure and deterministic."""
    expected = _expected_points(description.scan_info)
    entries: list[EntryPlan] = []
    streams: dict[str, StreamPlan] = {}
    images: dict[str, ImagesPlan] = {}
    stacks: dict[str, StackPlan] = {}
    for index, subscan in enumerate(_subscans(description), 1):
        entry, entry_streams, entry_images = _entry(description, options, subscan, index,
                                                    expected)
        entries.append(entry)
        streams.update(entry_streams)
        images.update(entry_images)
        for item in entry.items:
            if isinstance(item, StackPlan):
                stacks.update(dict.fromkeys(item.channels, item))
    root_attrs = {"NX_class": "NXroot", "creator": creator,
                  "default": entries[0].name if entries else ""}
    notes = [f"{entry.name}: {note}" for entry in entries for note in entry.notes]
    return ScanLayout(root_attrs, entries, streams, images, stacks, notes)
