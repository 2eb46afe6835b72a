"""What a planned NeXus layout is made of (pure): the description of a scan the
planner reads, and the items of the tree it plans (groups, fields, growing datasets,
lima image stacks, grid views, soft links and attributes), per entry.

:mod:`.layout` plans them, :mod:`.nexus` materialises them with h5py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from ..data.codec import jsonable

__all__ = [
    "NodeSpec",
    "ChildScan",
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
    "jsonable",
    "safe_name",
]

_SAFE = re.compile(r"[^A-Za-z0-9_.]")


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
class ChildScan:
    """A scan that a sequence groups, as the planner needs it: where its entries are
    (``filename``, ``number``, ``subscans``: how many entries), or, with ``problem``,
    why they cannot be linked (``number`` may then be unknown: ``None``)."""

    key: str
    number: int | None
    filename: str = ""
    subscans: int = 1
    problem: str = ""


@dataclass(frozen=True)
class ScanDescription:
    """What the planner knows of a scan: Redis key, name, number, scan_info, nodes,
    the publisher's unique id of the scan (keys are reused if Redis loses its data),
    and for a sequence the scans it groups so far."""

    key: str
    name: str
    number: int
    scan_info: Mapping[str, Any]
    nodes: tuple[NodeSpec, ...] = ()
    uid: str = ""
    children: tuple[ChildScan, ...] = ()


@dataclass(frozen=True)
class GroupPlan:
    """A group with ``attrs``, which are set again whenever the layout is re-planned
    (plot signals and axes change as channels are declared). ``member_attrs``:
    attributes of the objects the group holds, by member name, set (again) once its
    members exist, on the objects themselves (through links: on their targets)."""

    path: str
    nx_class: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    member_attrs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


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
    #: its compression scheme (see :mod:`.chunking`)
    compression: str = "none"


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
    compression: str = "none"


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
    #: the compression scheme of copied frames
    compression: str = "none"

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
    """A soft link at ``path`` to ``target`` (absolute path in the same file), or with
    ``filename`` an external link to ``target`` in that file."""

    path: str
    target: str
    filename: str = ""


PlanItem = Union[GroupPlan, FieldPlan, StreamPlan, StackPlan, ImagesPlan, GridPlan, LinkPlan]


@dataclass
class EntryPlan:
    """One NXentry: everything under ``/<name>`` in creation order."""

    name: str
    subscan: str
    items: list[PlanItem] = field(default_factory=list)
    default: str | None = None
    notes: list[str] = field(default_factory=list)
    #: scan metadata put beside one of the writer's items (see :mod:`.metadata`)
    metadata_notes: list[str] = field(default_factory=list)

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
