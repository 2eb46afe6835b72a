"""Where each channel and lima node of a scan goes in its entry (pure): the device
group and field of every node in ``instrument``, the MCA channels ``stack_mcas``
stacks, the short unique names of the links in ``measurement`` and the plots, and how
a lima detector's frames are shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from .options import SaveOptions
from .plan import NodeSpec, safe_name
from .scan_info import Device

__all__ = [
    "Placed",
    "MCAStacks",
    "RESERVED",
    "MCA_FIELDS",
    "mca_field",
    "place_all",
    "mca_stacks",
    "stack_devices",
    "place_stacks",
    "link_names",
    "lima_storage",
    "lima_virtual",
]

_MCA = re.compile(r"^(?P<ctrl>[^:]+):(?P<quantity>[A-Za-z]+(?:_[A-Za-z]+)*)_det(?P<n>\d+)$")
#: The NXdetector field of an MCA quantity, where NeXus has a name for it (the others
#: keep the quantity's name: ``icr``, ``ocr``, ``livetime``, ``deadtime``...).
MCA_FIELDS = {"realtime": "real_time"}
#: Names the planner itself uses inside ``instrument``.
RESERVED = frozenset({"positioners", "positioners_start", "positioners_end",
                      "positioners_dial_start", "positioners_dial_end", "source", "name"})


@dataclass(frozen=True)
class Placed:
    node: NodeSpec
    device: str
    nx_class: str
    leaf: str
    positioner: bool
    #: the channels stacked in this dataset, in column order (``stack_mcas``)
    members: tuple[str, ...] = ()


def _place(node: NodeSpec, masters: set[str], described: Device | None = None
           ) -> tuple[str, str, str, bool]:
    device, nx_class, leaf, positioner = _place_by_name(node, masters, described)
    if described is not None:
        # what BLISS names itself wins
        device = safe_name(described.device_name) if described.device_name else device
        leaf = safe_name(described.data_name) if described.data_name else leaf
    return device, nx_class, leaf, positioner


def _place_by_name(node: NodeSpec, masters: set[str], described: Device | None
                   ) -> tuple[str, str, str, bool]:
    """The classic writer's naming, from the channel's name and, when BLISS gives it
    (``nexuswriter.devices``), its device type."""
    parts = node.name.split(":")
    kind = described.device_type if described is not None else ""
    if node.type == "lima":
        return safe_name(parts[0]), "NXdetector", "data", False
    if (node.name in masters or kind in _POSITIONER_TYPES) and not node.shape:
        return safe_name(node.short_name), "NXpositioner", "value", True
    mca = _MCA.match(node.name)
    if mca:
        leaf = mca_field(mca["quantity"], node.shape)
        return safe_name(f"{mca['ctrl']}_det{mca['n']}"), "NXdetector", leaf, False
    if kind == "mca" and len(parts) == 2:
        # a channel of the whole controller (xmap1:roi1): its "sum" detector
        return safe_name(f"{parts[0]}_sum"), "NXdetector", safe_name(parts[1]), False
    if kind == "lima" and len(parts) == 3:
        return _lima_counter(parts)
    device = f"{parts[0]}_{parts[-1]}" if len(parts) > 2 else node.short_name
    return safe_name(device), "NXdetector", "data", False


#: device types of ``nexuswriter.devices`` whose scalar channels are positioners
_POSITIONER_TYPES = ("positioner", "positionergroup")


def _lima_counter(parts: list[str]) -> tuple[str, str, str, bool]:
    """A counter of a lima detector, as the classic writer groups them:
    ``frelon1:roi_counters:roi1_sum`` -> ``frelon1_roi1/sum``,
    ``frelon1:roi_profiles:roi2`` -> ``frelon1_roi2/data``,
    ``frelon1:bpm:fwhm_x`` -> ``frelon1_bpm/fwhm_x``."""
    ctrl, kind, name = parts
    if kind == "roi_counters" and "_" in name:
        roi, quantity = name.rsplit("_", 1)
        return safe_name(f"{ctrl}_{roi}"), "NXdetector", safe_name(quantity), False
    if kind == "roi_profiles":
        return safe_name(f"{ctrl}_{name}"), "NXdetector", "data", False
    return safe_name(f"{ctrl}_{kind}"), "NXdetector", safe_name(name), False


def mca_field(quantity: str, shape: Sequence[int]) -> str:
    """The NXdetector field of an MCA channel: ``data`` for the spectrum, the NeXus
    name of the quantity if it has one, else the quantity."""
    return "data" if shape else safe_name(MCA_FIELDS.get(quantity, quantity))


def place_all(nodes: Sequence[NodeSpec], masters: set[str],
              reserved: frozenset[str] = RESERVED,
              described: Mapping[str, Device] | None = None) -> list[Placed]:
    """Device group and field of every node, unique within the entry; ``described``:
    the devices BLISS describes (``nexuswriter.devices``), by channel name."""
    taken: dict[tuple[str, str], str] = {}
    device_class: dict[str, str] = {}
    placed = []
    described = described or {}
    for node in nodes:
        device, nx_class, leaf, positioner = _place(node, masters, described.get(node.name))
        if ((device, leaf) in taken or device in reserved
                or device_class.get(device, nx_class) != nx_class):
            device = safe_name(node.name)
            while (device, leaf) in taken:
                device += "_"
        taken[(device, leaf)] = node.name
        device_class[device] = nx_class
        placed.append(Placed(node, device, nx_class, leaf, positioner))
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
        leaf = mca_field(match["quantity"], node.shape)
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


def stack_devices(stacks: MCAStacks) -> dict[str, str]:
    """The NXdetector group of every stacked controller, clear of the planner's names."""
    devices: dict[str, str] = {}
    for ctrl in stacks:
        device = safe_name(ctrl)
        while device in RESERVED or device in devices.values():
            device += "_"
        devices[ctrl] = device
    return devices


def place_stacks(stacks: MCAStacks, devices: Mapping[str, str]) -> list[Placed]:
    """One placed pseudo-node ``<ctrl>:<quantity>`` per stacked dataset."""
    placed = []
    for ctrl, fields in stacks.items():
        for leaf, members in fields.items():
            first = members[0]
            match = _MCA.match(first.name)
            quantity = match["quantity"] if match else leaf
            node = NodeSpec(f"{ctrl}:{quantity}", "channel", first.subscan, first.dtype,
                            (len(members),) + tuple(first.shape), first.unit)
            placed.append(Placed(node, devices[ctrl], "NXdetector", leaf, False,
                                 tuple(m.name for m in members)))
    return placed


def link_names(placed: Sequence[Placed], short: bool) -> dict[str, str]:
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
