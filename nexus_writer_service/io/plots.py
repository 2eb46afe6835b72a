"""The NXdata plot groups of an entry (pure): ``plot0D``, ``plot1D`` and ``plot2D`` by
data dimension, their signals and axes, and the entry's default plot, from
``scan_info["plots"]`` and the grid shape of the scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from . import scan_info as scan_info_keys
from .options import SaveOptions
from .placement import Placed, lima_storage
from .plan import EntryPlan, GridPlan, GroupPlan, LinkPlan

__all__ = ["plan_plots"]


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


def _scatter_axes(members: Sequence[Placed], axes: Sequence[str], names: Mapping[str, str]
                  ) -> dict[str, dict[str, Any]]:
    """The axes of a scatter plot (signal and axes 1D of the same length, fast axis
    first), as the ``axes`` attribute of each signal (``"samy:samz"``).

    silx shows an NXdata group as a scatter when its 1D signal has two axes of its
    length, but NeXus wants the group's ``@axes`` to have as many names as the signal
    has dimensions (one): ``nxcheck`` calls two an error. The signal's own ``@axes``
    (the form NeXus had before the group's) is read by silx when the group has none,
    and ``nxcheck`` only notes the missing group attribute, so the axes go there.
    """
    if not axes:
        return {}
    value = ":".join(axes)
    return {names[p.node.name]: {"axes": value} for p in members}


def plan_plots(entry: EntryPlan, scan_info: Mapping[str, Any], placed: Sequence[Placed],
               names: Mapping[str, str], paths: Mapping[str, str], options: SaveOptions) -> None:
    """Add the plot groups of ``placed`` to ``entry`` and choose its default plot.

    ``names``: each node's link name, ``paths``: its dataset. A grid scan (amesh) is
    shown as a grid with ``keepshape`` (virtual datasets in the grid's shape), else as
    a scatter of its counters against its two motors, as is a scan whose first plot is
    a scatter plot; any other scan shows its counters against its first axis.
    """
    preferred, preferred_axes, kind = _plot_preferences(scan_info)
    rank = {name: i for i, name in enumerate(preferred)}
    by_dim: dict[int, list[Placed]] = {}
    for p in placed:
        if p.positioner or p.node.variable_length or (p.members and p.leaf != "data"):
            continue
        by_dim.setdefault(_dim(p), []).append(p)
    axes: list[Placed] = []
    for p in [p for name in preferred_axes for p in placed
              if p.node.name == name and not p.node.shape] + [p for p in placed if p.positioner]:
        if p not in axes:
            axes.append(p)
    grid = _grid_shape(scan_info) if options.keepshape else None
    scatter = grid is None and (_grid_shape(scan_info) is not None or kind == "scatter-plot")
    created = {}
    for dim, members in sorted(by_dim.items()):
        if dim == 2 and all(p.node.type == "lima"
                            and lima_storage(p.node, options) == "references"
                            for p in members):
            continue
        members = sorted(members, key=lambda p: min(rank.get(n, len(rank))
                                                    for n in (p.node.name,) + p.members))
        layout = _PlotLayout(axes, grid, scatter, names, paths)
        _plot_group(entry, f"plot{dim}D", dim, members, layout)
        created[dim] = f"plot{dim}D"
    wanted = {"image-plot": 2, "mca-plot": 1}.get(kind or "", 0)
    entry.default = created.get(wanted) or next(iter(created.values()), None)
    selected = _selected(scan_info, by_dim)
    if selected:
        layout = _PlotLayout(axes, grid, scatter, names, paths)
        _plot_group(entry, "plotselect", _dim(selected[0]), selected, layout)
        entry.default = "plotselect"


def _dim(placed: Placed) -> int:
    if placed.node.type == "lima":
        return 2
    return min(len(placed.node.shape) - bool(placed.members), 2)


def _selected(scan_info: Mapping[str, Any], by_dim: Mapping[int, Sequence[Placed]]
              ) -> list[Placed]:
    """The channels the user selected for display in BLISS
    (``display_extra.plotselect``) that are declared and can be plotted, in the
    order selected; those of another dimension than the first are left out."""
    plottable = {name: p for members in by_dim.values() for p in members
                 for name in (p.node.name,) + p.members}
    selected: list[Placed] = []
    for name in scan_info_keys.plotselect(scan_info):
        p = plottable.get(name)
        if p is not None and p not in selected and (
                not selected or _dim(p) == _dim(selected[0])):
            selected.append(p)
    return selected


#: Most signals a plot group lists in ``@auxiliary_signals`` besides its signal (all
#: of them are linked in the group): 16 bytes each in the file, and an HDF5 attribute
#: must fit in a 64 KiB object header message.
MAX_AUXILIARY_SIGNALS = 1000


@dataclass(frozen=True)
class _PlotLayout:
    """What every plot group of an entry shares: the candidate axes, the grid shape
    (``keepshape``) or scatter view of a grid scan, link names and dataset paths."""

    axes: Sequence[Placed]
    grid: tuple[int, int] | None
    scatter: bool
    names: Mapping[str, str]
    paths: Mapping[str, str]


def _plot_group(entry: EntryPlan, name: str, dim: int, members: Sequence[Placed],
                layout: _PlotLayout) -> None:
    """The NXdata group ``name`` of ``members`` (signal first), their axes and links."""
    names, grid, scatter, axes = layout.names, layout.grid, layout.scatter, layout.axes
    plot = f"/{entry.name}/{name}"
    attrs: dict[str, Any] = {"signal": names[members[0].node.name]}
    if len(members) > 1:
        # the first ones only: an attribute must fit in a 64 KiB object header message
        attrs["auxiliary_signals"] = [names[p.node.name]
                                      for p in members[1:MAX_AUXILIARY_SIGNALS + 1]]
    if dim == 1:
        attrs["interpretation"] = "spectrum"
    elif dim == 2:
        attrs["interpretation"] = "image"
    plot_axes = list(axes[:2] if (dim == 0 and (grid or scatter)) else axes[:1] if dim == 0
                     else [])
    member_attrs = {}
    if scatter and dim == 0:
        member_attrs = _scatter_axes(members, [names[p.node.name] for p in plot_axes], names)
    elif grid and dim == 0:
        attrs["axes"] = [names[p.node.name] for p in reversed(plot_axes)] or ["."]
        for p in plot_axes:
            attrs[f"{names[p.node.name]}_indices"] = [0, 1]
    elif plot_axes:
        attrs["axes"] = [names[p.node.name] for p in plot_axes]
    elif dim:
        attrs["axes"] = ["."] * (len(members[0].node.shape) + 1 if members[0].members
                                 else dim + 1)
    entry.add(GroupPlan(plot, "NXdata", attrs, member_attrs))
    # every candidate axis is linked, so a later declaration only changes @axes
    extra_axes = [p for p in axes if p not in members] if dim == 0 else []
    for p in list(members) + extra_axes:
        target = layout.paths[p.node.name]
        if grid and dim == 0:
            dtype = np.dtype(p.node.dtype).str
            entry.add(GridPlan(f"{plot}/{names[p.node.name]}", target, dtype, grid,
                               {"channel": p.node.name}))
        else:
            entry.add(LinkPlan(f"{plot}/{names[p.node.name]}", target))
