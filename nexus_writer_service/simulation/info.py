"""``scan_info`` dicts shaped like the ones BLISS publishes (pure, no I/O).

The keys a NeXus writer relies on: ``name``, ``type``, ``title``, ``npoints``
(``npoints1``/``npoints2`` and per-motor ``start``/``stop`` for a mesh),
``count_time``, ``data_dim``, ``acquisition_chain`` (per top master: ``master``
and the ``scalars``/``spectra``/``images`` channel names), ``channels`` (per
channel: ``dim``, ``unit``, ``display_name``), ``positioners`` (start/end, dial
and units), ``filename`` (where the writer puts the file), ``sample``,
``plots``, ``start_time`` (ISO 8601) and ``scan_nb``; ``data_writer``, and scan
metadata as BLISS publishes it: ``scan_meta_categories`` with the ``instrument`` and
``technique`` trees (silx ``dicttonx`` conventions) and ``nexuswriter``
(``instrument_info``, ``masterfiles``, and ``devices`` for the MCA).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .plan import ChannelSpec, LimaSpec

__all__ = [
    "Motor",
    "SESSION_MOTORS",
    "scan_filename",
    "master_filenames",
    "format_number",
    "ascan_title",
    "mesh_title",
    "acquisition_chain",
    "channels_info",
    "positioners_info",
    "curve_plot",
    "scatter_plot",
    "image_plot",
    "make_scan_info",
]


@dataclass(frozen=True)
class Motor:
    """A positioner of the session: user position = dial position + ``offset``."""

    name: str
    unit: str
    offset: float = 0.0


SESSION_MOTORS: tuple[Motor, ...] = (
    Motor("samx", "mm", 0.25),
    Motor("samy", "mm", -0.1),
    Motor("samz", "mm", 0.0),
    Motor("srot", "deg", 90.0),
    Motor("energy", "keV", 0.0),
)


def scan_filename(root: str, session: str, number: int) -> str:
    """Where a writer saves scan ``number``: ``<root>/<session>/<session>_<number>.h5``."""
    return os.path.join(os.path.abspath(root), session, f"{session}_{number}.h5")


def master_filenames(root: str, session: str) -> dict[str, str]:
    """``nexuswriter.masterfiles`` as BLISS fills it under the ESRF data policy: the
    dataset collection file beside the session's scan files, the proposal file at
    ``root``."""
    root = os.path.abspath(root)
    return {"dataset_collection": os.path.join(root, session, f"ih0000_{session}.h5"),
            "proposal": os.path.join(root, "ih0000_sim00.h5")}


def format_number(value: float) -> str:
    """A position or time as a user types it in a scan command (``1``, ``0.1``, ``-0.5``)."""
    return f"{value:g}"


def ascan_title(scan_type: str, motors: Sequence[tuple[str, float, float]], intervals: int,
                count_time: float) -> str:
    """``"ascan samy 0 1 10 0.1"`` / ``"a2scan samy 0 1 samz -1 1 10 0.1"``."""
    parts = [scan_type]
    for name, start, stop in motors:
        parts += [name, format_number(start), format_number(stop)]
    parts += [str(intervals), format_number(count_time)]
    return " ".join(parts)


def mesh_title(fast: tuple[str, float, float, int], slow: tuple[str, float, float, int],
               count_time: float) -> str:
    """``"amesh samy 0 1 10 samz 0 0.5 5 0.1"`` (intervals per motor, fast motor first)."""
    parts = ["amesh"]
    for name, start, stop, intervals in (fast, slow):
        parts += [name, format_number(start), format_number(stop), str(intervals)]
    parts.append(format_number(count_time))
    return " ".join(parts)


def acquisition_chain(
    top_master: str, master: Iterable[ChannelSpec], channels: Iterable[ChannelSpec],
    limas: Iterable[LimaSpec] = (),
) -> dict[str, dict[str, Any]]:
    """One top master of ``scan_info["acquisition_chain"]``.

    ``master`` are the channels of the master itself (motor positions, elapsed
    time); ``channels`` the detectors it triggers, sorted into scalars and spectra
    by dimension; ``limas`` the image detectors.
    """

    def by_dim(specs: Iterable[ChannelSpec]) -> dict[str, list[str]]:
        sorted_names: dict[str, list[str]] = {"scalars": [], "spectra": [], "images": []}
        for spec in specs:
            key = ("scalars", "spectra", "images")[min(spec.dim, 2)]
            sorted_names[key].append(spec.name)
        return sorted_names

    entry: dict[str, Any] = {"master": by_dim(master)}
    entry.update(by_dim(channels))
    entry["images"].extend(lima.name for lima in limas)
    return {top_master: entry}


def channels_info(channels: Iterable[ChannelSpec], limas: Iterable[LimaSpec] = ()
                  ) -> dict[str, dict[str, Any]]:
    """``scan_info["channels"]``: display name, dimension and unit of every channel."""
    info: dict[str, dict[str, Any]] = {}
    for spec in channels:
        entry: dict[str, Any] = {"display_name": spec.short_name, "dim": spec.dim}
        if spec.unit is not None:
            entry["unit"] = spec.unit
        info[spec.name] = entry
    for lima in limas:
        info[lima.name] = {"display_name": lima.name.split(":")[0], "dim": 2}
    return info


def positioners_info(start: Mapping[str, float], end: Mapping[str, float],
                     motors: Sequence[Motor] = SESSION_MOTORS) -> dict[str, dict[str, Any]]:
    """``scan_info["positioners"]``: user and dial positions at start and end, units."""
    offsets = {m.name: m.offset for m in motors}
    return {
        "positioners_start": {k: float(v) for k, v in start.items()},
        "positioners_end": {k: float(v) for k, v in end.items()},
        "positioners_dial_start": {k: float(v) - offsets.get(k, 0.0) for k, v in start.items()},
        "positioners_dial_end": {k: float(v) - offsets.get(k, 0.0) for k, v in end.items()},
        "positioners_units": {m.name: m.unit for m in motors if m.name in start},
    }


def curve_plot(x: str, ys: Sequence[str]) -> dict[str, Any]:
    return {"kind": "curve-plot", "items": [{"kind": "curve", "x": x, "y": y} for y in ys]}


def scatter_plot(x: str, y: str, value: str) -> dict[str, Any]:
    return {"kind": "scatter-plot",
            "items": [{"kind": "scatter", "x": x, "y": y, "value": value}]}


def image_plot(image: str) -> dict[str, Any]:
    return {"kind": "image-plot", "items": [{"kind": "image", "image": image}]}


def make_scan_info(
    *, name: str, scan_type: str, title: str, number: int, session: str, filename: str,
    npoints: int, count_time: float, chain: Mapping[str, Any],
    channels: Mapping[str, Any], positioners: Mapping[str, Any], plots: Sequence[Any],
    start_time: str, data_dim: int = 1, extra: Mapping[str, Any] | None = None,
    masterfiles: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A complete ``scan_info`` dict; ``extra`` adds or overrides keys; ``masterfiles``:
    ``nexuswriter.masterfiles`` (see :func:`master_filenames`)."""
    info: dict[str, Any] = {
        "name": name,
        "type": scan_type,
        "title": title,
        "scan_nb": int(number),
        "session_name": session,
        "user_name": "opid00",
        "npoints": int(npoints),
        "count_time": float(count_time),
        "data_dim": int(data_dim),
        "filename": filename,
        "save": True,
        "data_writer": "nexus",
        "start_time": start_time,
        "acquisition_chain": dict(chain),
        "channels": dict(channels),
        "positioners": dict(positioners),
        "plots": list(plots),
        "sample": {"name": "FeCu_foil_01", "description": "iron/copper foil, 10 um"},
        "proposal": {"name": "ih0000", "title": "simulated experiment"},
        "scan_meta_categories": ["positioners", "nexuswriter", "instrument", "technique"],
        "nexuswriter": {
            "instrument_info": {"name": "ESRF-SIM00", "name@short_name": "sim00"},
            "masterfiles": dict(masterfiles or {}),
        },
        "instrument": {
            "@NX_class": "NXinstrument",
            "source": {"@NX_class": "NXsource", "name": "simulated storage ring",
                       "type": "Synchrotron X-ray Source", "probe": "x-ray"},
            "monochromator": {"@NX_class": "NXmonochromator", "energy": 7.112,
                              "energy@units": "keV"},
        },
        "technique": {
            "@NX_class": "NXcollection",
            "name": "XAS",
            "edge": "Fe K",
            ">energy": "../instrument/monochromator/energy",
        },
    }
    selected = [item["y"] for plot in plots[:1] if plot.get("kind") == "curve-plot"
                for item in plot.get("items", ()) if "y" in item]
    if selected:
        # what the user selected for display (BLISS's plotselect): the curves shown
        info["display_extra"] = {"plotselect": selected}
    if extra:
        info.update(extra)
    return info
