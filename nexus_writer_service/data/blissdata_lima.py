"""blissdata's lima streams as our lima nodes and progress (pure: no I/O here).

BLISS 2.x publishes a lima detector as a JSON stream (blissdata's ``lima`` plugin,
``LimaStream.make_definition``). Its info holds the frame ``dtype`` and ``shape`` and
``lima_info``: ``protocol_version`` (1), and, when the frames are saved,
``file_path`` (a printf template of the file number), ``data_path`` (the dataset in
HDF5 files), ``file_format``, ``file_offset`` (the first file number),
``frame_per_file`` and ``frame_per_acquisition`` (a scan may run several
acquisitions, each starting a new file). Each event of the stream is a status,
``{"last_index": ..., "last_index_saved": ...}``: only the last one counts.

Here they become what our own source gives for a lima detector: the saving
parameters of a :class:`~.nodes.LimaNode` (so that the writer references the frames
as it does for our source: a virtual dataset over HDF5 files, external EDF files, or
copies) and :class:`~.events.LimaProgress` events. Frame locations are computed the
way blissdata's ``LimaClient`` computes its image references; the images are never
read here.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from ..errors import MalformedEventError
from . import codec
from .events import LimaProgress

__all__ = ["LIMA_PLUGIN", "LIMA_PROTOCOL", "is_lima_info", "lima_node_info", "lima_progress"]

#: The plugin blissdata names lima 1 streams with (``lima_v1`` in older documents).
LIMA_PLUGIN = "lima"
#: The version of blissdata's lima JSON protocol read here.
LIMA_PROTOCOL = 1
#: The saving keys of ``lima_info`` (all present when the frames are saved).
_SAVING = ("file_path", "data_path", "file_format", "file_offset", "frame_per_file")


def is_lima_info(info: Mapping[str, Any]) -> bool:
    """Whether a stream's info describes a lima 1 detector (lima2 is another plugin)."""
    plugin = info.get("plugin")
    if plugin is None:
        return info.get("format") == "lima_v1"
    return bool(plugin == LIMA_PLUGIN)


def _file_format(raw: Any, what: str) -> str:
    """Lima's file format (``HDF5``, ``HDF5BS``, ``EDF``, ``CBF``...) as our lima nodes
    name it: every HDF5 variant is ``hdf5`` (the frames are HDF5 datasets, whatever
    their compression), the others in lower case."""
    if not isinstance(raw, str) or not raw:
        raise MalformedEventError(f"{what}: file_format {raw!r} is not a text")
    text = raw.lower()
    return "hdf5" if text.startswith("hdf5") or text in ("h5", "nexus") else text


def _count(lima_info: Mapping[str, Any], key: str, what: str, minimum: int) -> int:
    value = lima_info.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MalformedEventError(f"{what}: lima_info {key} {value!r} is not an integer "
                                  f">= {minimum}")
    return value


def lima_node_info(info: Mapping[str, Any], subscan: str, what: str
                   ) -> dict[str, Any] | None:
    """The info of our :class:`~.nodes.LimaNode` for a lima stream whose info is
    ``info``, in ``subscan``; None when its frames are not saved (nothing to reference).

    :raises MalformedEventError: ``info`` is not what blissdata's lima plugin writes
        (``what`` names the stream)"""
    lima_info = info.get("lima_info")
    if not isinstance(lima_info, dict):
        raise MalformedEventError(f"{what}: its lima_info is not a JSON object")
    protocol = lima_info.get("protocol_version")
    if protocol != LIMA_PROTOCOL:
        raise MalformedEventError(f"{what}: lima protocol version {protocol!r}, only "
                                  f"{LIMA_PROTOCOL} is read")
    if "file_path" not in lima_info:
        return None
    missing = [key for key in _SAVING if key not in lima_info]
    if missing:
        raise MalformedEventError(f"{what}: lima_info lacks {', '.join(missing)}")
    template, data_path = lima_info["file_path"], lima_info["data_path"]
    if not isinstance(template, str) or not template:
        raise MalformedEventError(f"{what}: lima_info file_path {template!r} is not a text")
    if data_path is not None and not isinstance(data_path, str):
        raise MalformedEventError(f"{what}: lima_info data_path {data_path!r} is not a text")
    try:
        dtype = codec.dtype_to_text(codec.dtype_from_text(info.get("dtype"), what))
    except (TypeError, ValueError) as exc:
        raise MalformedEventError(f"{what}: dtype {info.get('dtype')!r} ({exc})") from None
    shape = info.get("shape")
    if not isinstance(shape, (list, tuple)) or not shape or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise MalformedEventError(f"{what}: frame shape {shape!r} is not a list of sizes > 0")
    return {
        "directory": os.path.dirname(template),
        "prefix": "",
        "suffix": "",
        "file_template": template,
        "file_format": _file_format(lima_info["file_format"], what),
        "path_in_file": data_path or "",
        "first_file_number": _count(lima_info, "file_offset", what, 0),
        "frames_per_file": _count(lima_info, "frame_per_file", what, 1),
        "frames_per_acquisition": _count(lima_info, "frame_per_acquisition", what, 0),
        "dtype": dtype,
        "shape": list(shape),
        "subscan": subscan,
    }


def lima_progress(statuses: Sequence[Any], what: object) -> LimaProgress:
    """The progress that the last of ``statuses`` (events of a lima stream) says.

    :raises MalformedEventError: it is not a ``{"last_index", "last_index_saved"}``
        object of integers"""
    status = statuses[-1]
    if not isinstance(status, dict):
        raise MalformedEventError(f"{what}: status {status!r} is not a JSON object")
    values = []
    for key in ("last_index", "last_index_saved"):
        value = status.get(key, -1)
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise MalformedEventError(f"{what}: status {key} {value!r} is not a frame index")
        values.append(value)
    return LimaProgress(values[0], values[1])
