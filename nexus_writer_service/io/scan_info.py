"""What the writer reads from the keys BLISS puts in a scan's ``scan_info`` (pure).

Each function reads one key, as BLISS publishes it, and gives what the writer needs.
A key that is absent gives the default; a key that is there with another shape raises
:class:`~nexus_writer_service.errors.MalformedInfoError` naming the key, so that the
scan goes FAULT with a reason the acquisition program's author can act on.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any, Mapping, NamedTuple

from ..errors import MalformedInfoError

__all__ = ["WRITTEN_BY", "Comment", "Device", "categories", "comments", "devices",
           "instrument_info", "master_files", "master_link_name", "plotselect", "scan_file",
           "skip_reason", "unknown_keys"]

logger = logging.getLogger(__name__)

#: Categories of scan metadata the writer puts elsewhere than in a tree of their name.
_PLACED_ELSEWHERE = ("positioners", "nexuswriter")

#: The ``data_writer`` of the scans this writer writes.
WRITTEN_BY = "nexus"


def _malformed(key: str, value: Any, expected: str) -> MalformedInfoError:
    return MalformedInfoError(
        f"scan_info {key!r} is {value!r} ({type(value).__name__}), not {expected}: the "
        "acquisition program sent a malformed scan_info")


def skip_reason(info: Mapping[str, Any]) -> str:
    """Why the scan is not to be written by this writer ("" when it is).

    BLISS names the writer that saves a scan in ``data_writer``: only ``"nexus"``
    scans are ours. A scan without the key (published by other programs than BLISS)
    is written.
    """
    data_writer = info.get("data_writer")
    if data_writer is None or data_writer == WRITTEN_BY:
        return ""
    if not isinstance(data_writer, str):
        raise _malformed("data_writer", data_writer, "a writer name")
    return (f"skipped: scan_info data_writer={data_writer!r}, not {WRITTEN_BY!r}; "
            "no file written")


class Comment(NamedTuple):
    """A comment a user put on a scan (BLISS's ``scan.add_comment``)."""

    date: str
    message: str


def comments(info: Mapping[str, Any]) -> list[Comment]:
    """``scan_info["comments"]``: ``[{"date": ISO 8601, "message": text}]`` as BLISS 2.x
    gives it; a bare text (no date) and BLISS 1.x's ``{"timestamp": epoch, "message"}``
    are read too."""
    value = info.get("comments")
    if value is None:
        return []
    if not isinstance(value, list):
        raise _malformed("comments", value, "a list of {date, message}")
    found = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            found.append(Comment("", item))
            continue
        key = f"comments[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("message"), str):
            raise _malformed(key, item, "a {date, message} with a text message")
        date = item.get("date")
        timestamp = item.get("timestamp")
        if date is None and isinstance(timestamp, (int, float)) \
                and not isinstance(timestamp, bool):
            date = datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat()
        if not isinstance(date, (str, type(None))):
            raise _malformed(key, item, "a {date, message} with an ISO 8601 date")
        found.append(Comment(date or "", item["message"]))
    return found


def categories(info: Mapping[str, Any]) -> list[str]:
    """The keys of the scan_info that are trees of scan metadata, each written as the
    entry's group of that name: ``scan_meta_categories`` (BLISS), but ``positioners``
    and ``nexuswriter``, which the writer places itself; and ``instrument`` in any
    case, merged into the entry's NXinstrument."""
    value = info.get("scan_meta_categories")
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _malformed("scan_meta_categories", value, "a list of scan_info keys")
    found = [name for name in value if name not in _PLACED_ELSEWHERE]
    if "instrument" not in found and isinstance(info.get("instrument"), Mapping):
        found.append("instrument")
    return list(dict.fromkeys(found))


def nexuswriter(info: Mapping[str, Any], key: str) -> Any:
    """``scan_info["nexuswriter"][key]`` (None when absent)."""
    section = info.get("nexuswriter")
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise _malformed("nexuswriter", section, "a mapping")
    return section.get(key)


def instrument_info(info: Mapping[str, Any]) -> Mapping[str, Any]:
    """``nexuswriter.instrument_info``: a tree written into the entry's NXinstrument
    (``{"name": "ESRF-ID00", "name@short_name": "id00"}``)."""
    value = nexuswriter(info, "instrument_info")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _malformed("nexuswriter/instrument_info", value, "a mapping")
    return value


def plotselect(info: Mapping[str, Any]) -> list[str]:
    """``display_extra.plotselect``: the channels the user selected for display in
    BLISS (``plotselect(diode)``), which the writer shows in the NXdata group
    ``plotselect`` (BLISS 1.x: ``_display_extra``)."""
    key = "display_extra" if "display_extra" in info else "_display_extra"
    extra = info.get(key)
    if extra is None:
        return []
    if not isinstance(extra, Mapping):
        raise _malformed(key, extra, "a mapping")
    selected = extra.get("plotselect")
    if selected is None:
        return []
    if not isinstance(selected, list) or not all(isinstance(v, str) for v in selected):
        raise _malformed(f"{key}/plotselect", selected, "a list of channel names")
    return selected


def _text_mapping(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _malformed(key, value, "a mapping of level names to file paths")
    return dict(value)


def master_files(info: Mapping[str, Any]) -> dict[str, str]:
    """``{level: path}`` of the master files the scan's entries are linked into:
    ``nexuswriter.masterfiles`` (where BLISS puts them: ``dataset_collection``,
    ``proposal``, and ``dataset`` with separate scan files), and ``masterfiles`` (an
    older place, which ``nexuswriter`` overrides level by level). A scan written to a
    file of its own (:func:`scan_file`) is linked into its dataset file in any case,
    at the level ``dataset``."""
    found: dict[str, str] = {}
    own = info.get("masterfiles")
    if own is not None:
        found.update(_text_mapping("masterfiles", own))
    bliss = nexuswriter(info, "masterfiles")
    if bliss is not None:
        found.update(_text_mapping("nexuswriter/masterfiles", bliss))
    dataset = info.get("filename")
    if isinstance(dataset, str) and dataset and scan_file(info) != dataset:
        found.setdefault("dataset", dataset)
    return found


def master_link_name(level: str, dataset_file: str, entry: str) -> str:
    """The name of the link to ``entry`` in a master file, as the classic writer names
    it: the entry's own name (``N.M``) in the dataset file (level ``dataset``),
    ``<dataset file stem>_<N.M>`` in the others, so that the scans of two datasets
    never take each other's names in a collection or proposal file."""
    if level == "dataset":
        return entry
    stem = os.path.splitext(os.path.basename(dataset_file))[0]
    return f"{stem}_{entry}"


def writer_options(info: Mapping[str, Any]) -> Mapping[str, Any]:
    """``writer_options``: options BLISS gives the writer with each scan."""
    value = info.get("writer_options")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _malformed("writer_options", value, "a mapping")
    return value


def images_path(info: Mapping[str, Any]) -> str:
    """``images_path``: where BLISS has lima save the scan's images (a template such as
    ``.../sample1_0001/scan0003/{img_acq_device}_``; "" when absent)."""
    value = info.get("images_path")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _malformed("images_path", value, "a path")
    return value


#: The name of a scan file of its own, as the classic writer names it.
SCAN_FILE_NAME = "bliss_master"


def scan_file(info: Mapping[str, Any]) -> str:
    """The file the scan's entries are written to: ``filename`` (the dataset file),
    or with ``writer_options.separate_scan_files`` a file of the scan's own, as the
    classic writer places it: ``bliss_master.h5`` in the scan's directory, the part
    of ``images_path`` below the dataset file's directory that holds no ``{}``
    template (``.../sample1_0001/scan0003/bliss_master.h5``). Without an
    ``images_path`` below the dataset's directory, the dataset file."""
    filename = info.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise _malformed("filename", filename, "a file name")
    if not filename:
        return ""
    separate = writer_options(info).get("separate_scan_files")
    if separate is None or separate is False:
        return filename
    if not isinstance(separate, bool):
        raise _malformed("writer_options/separate_scan_files", separate, "true or false")
    images = images_path(info)
    if not images:
        return filename
    directory, base = os.path.split(filename)
    parts = []
    for part in os.path.relpath(images, directory).split(os.sep):
        if "{" in part:
            break
        if part == "..":
            return filename  # not below the dataset: the scan stays in the dataset file
        if part and part != ".":
            parts.append(part)
    if not parts:
        return filename
    return os.path.join(directory, *parts, SCAN_FILE_NAME + os.path.splitext(base)[1])


class Device(NamedTuple):
    """How BLISS describes the device of a channel in ``nexuswriter.devices``:
    ``device_type`` (``mca``, ``lima``, ``positioner``, ``samplingcounter``...),
    ``device_name`` and ``data_name`` (the group and the field the classic writer
    puts the channel in; "" to let the writer choose), and ``device_info`` (a tree
    written into the device's group, such as ``{"type": "mca"}``)."""

    device_type: str = ""
    device_name: str = ""
    data_name: str = ""
    device_info: Mapping[str, Any] = {}


#: The keys of a ``nexuswriter.devices`` entry the writer reads.
_DEVICE_KEYS = frozenset(Device._fields)


def devices(info: Mapping[str, Any]) -> dict[str, Device]:
    """``nexuswriter.devices``: per channel name, its :class:`Device`. Keys of an entry
    the writer does not know are ignored (logged at debug level)."""
    value = nexuswriter(info, "devices")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _malformed("nexuswriter/devices", value, "a mapping of channel names")
    found = {}
    for channel, entry in value.items():
        key = f"nexuswriter/devices/{channel}"
        if not isinstance(entry, Mapping):
            raise _malformed(key, entry, "a mapping (device_type, device_info...)")
        fields: dict[str, Any] = {}
        for name in ("device_type", "device_name", "data_name"):
            text = entry.get(name)
            if text is None:
                continue
            if not isinstance(text, str):
                raise _malformed(f"{key}/{name}", text, "a text")
            fields[name] = text
        device_info = entry.get("device_info")
        if device_info is not None:
            if not isinstance(device_info, Mapping):
                raise _malformed(f"{key}/device_info", device_info, "a mapping")
            fields["device_info"] = device_info
        unknown = sorted(set(map(str, entry)) - _DEVICE_KEYS)
        if unknown:
            logger.debug("scan_info %r: %s not used by the writer", key, ", ".join(unknown))
        found[str(channel)] = Device(**fields)
    return found


#: The scan_info keys the writer reads (the others are kept in ``writer/scan_info``).
KNOWN_KEYS = frozenset({
    "name", "type", "title", "npoints", "npoints1", "npoints2", "count_time", "data_dim",
    "acquisition_chain", "channels", "devices", "positioners", "filename", "sample",
    "proposal", "plots", "start_time", "end_time", "end_reason", "scan_nb", "data_writer",
    "scan_meta_categories", "nexuswriter", "instrument", "technique", "comments",
    "display_extra", "_display_extra", "writer_options", "images_path", "masterfiles",
})


def unknown_keys(info: Mapping[str, Any]) -> list[str]:
    """The keys of a scan_info the writer neither reads nor writes as scan metadata
    (:func:`categories`): kept in ``writer/scan_info`` only."""
    try:
        metadata = set(categories(info))
    except MalformedInfoError:
        metadata = set()
    return sorted(str(key) for key in info if key not in KNOWN_KEYS and key not in metadata)
