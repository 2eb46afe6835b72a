"""What a scan may declare before its file is planned: the limits of the save
options (channels, scan_info and dataset sizes: hostile or broken publishers are
refused, naming the limit and the value, before anything big is allocated), what an
HDF5 dataset of this writer can hold, and lima files inside the allowed roots."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ..data.nodes import ChannelNode, LimaNode
from ..data.source import ScanSource
from ..errors import NexusWriterError
from ..io import checks
from ..io.options import SaveOptions

__all__ = ["check_info_size", "check_limits", "check_storable", "check_lima_files"]

#: numpy kinds a channel's dataset can hold: numbers, bool, bytes and opaque bytes.
_STORABLE_KINDS = "biufcSV"
#: An HDF5 chunk holds less than 4 GiB, and a chunk holds at least one point.
_MAX_POINT_BYTES = 2**32 - 1


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str))


def _point_values(shape: tuple[int, ...]) -> int:
    """Values in a point of ``shape`` (a dimension of unknown size, 0 or -1, as 1)."""
    return math.prod(max(dim, 1) for dim in shape)


def check_info_size(scan: ScanSource, options: SaveOptions) -> None:
    """Refuse a scan whose scan_info is over ``max_info_bytes`` by its size as stored,
    before it is decoded (a hostile one would take several times its size in memory)."""
    info_bytes = scan.info_bytes
    if info_bytes > options.max_info_bytes:
        raise NexusWriterError(
            f"scan {scan.key}: its scan_info takes {info_bytes} bytes of JSON, over the "
            f"limit max_info_bytes={options.max_info_bytes}; no file written. Publish large "
            "data as channels, or raise max_info_bytes if the scan is real")


def check_limits(node: "ChannelNode | LimaNode", count: int, npoints: int,
                 options: SaveOptions) -> None:
    """Refuse a scan over the limits of ``options`` (hostile or broken publishers),
    naming the limit and the value, before anything big is planned or allocated."""
    what = f"scan {node.scan.key}"
    if count > options.max_channels:
        raise NexusWriterError(
            f"{what} declares more than {options.max_channels} channels and lima detectors "
            f"({node.name!r} is number {count}): over the limit max_channels; raise it if "
            "the scan is real")
    info_bytes = _json_bytes(node.info)
    if info_bytes > options.max_info_bytes:
        raise NexusWriterError(
            f"{what}: the info of {node.name!r} takes {info_bytes} bytes of JSON, over the "
            f"limit max_info_bytes={options.max_info_bytes}")
    if isinstance(node, ChannelNode):
        total = node.dtype.itemsize * _point_values(node.shape) * max(npoints, 1)
        if total > options.max_dataset_bytes:
            raise NexusWriterError(
                f"{what}: channel {node.name!r} would take {total} bytes ({max(npoints, 1)} "
                f"points of shape {node.shape} and dtype {node.dtype}), over the limit "
                f"max_dataset_bytes={options.max_dataset_bytes}")


def check_storable(channel: ChannelNode) -> None:
    """Refuse, naming the channel, a declaration no HDF5 dataset of this writer can hold."""
    dtype = channel.dtype
    what = f"channel {channel.name!r} of scan {channel.scan.key}"
    if dtype.kind not in _STORABLE_KINDS or dtype.fields is not None or dtype.subdtype:
        raise NexusWriterError(
            f"{what}: dtype {dtype} cannot be written to HDF5 by this writer; publish "
            "numbers, bool or bytes, one channel per field")
    values = _point_values(channel.shape)
    if dtype.itemsize * values > _MAX_POINT_BYTES:
        raise NexusWriterError(
            f"{what}: points of shape {channel.shape} and dtype {dtype} take "
            f"{dtype.itemsize * values} bytes, more than one HDF5 chunk can hold (4 GiB)")


def check_lima_files(lima: LimaNode, roots: tuple[str, ...]) -> None:
    """The files a lima detector saves must be inside the allowed roots, like the scan
    file: the scan file refers to them, and readers of the scan file open them."""
    what = f"lima {lima.name!r} of scan {lima.scan.key}"
    for part, value in (("prefix", lima.prefix), ("suffix", lima.suffix)):
        if os.sep in value or (os.altsep and os.altsep in value):
            raise NexusWriterError(
                f"{what}: file name {part} {value!r} holds a path separator; put "
                "directories in 'directory'")
    template = f" (file template {lima.file_template!r})" if lima.file_template else ""
    checks.check_path_allowed(lima.filename(lima.first_file_number), roots,
                              f"{what}: saved file",
                              remedy=f"set the detector's saving directory{template} "
                                     "inside them")
