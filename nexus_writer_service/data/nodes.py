"""Node objects a reader hands out: scan, subscan, channel, lima and scans nodes (no
I/O here).

Nodes are immutable descriptions built from what the publisher declared; they are
safe to share between threads and greenlets. The I/O lives in :mod:`.reader`.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, NamedTuple

import numpy as np

from ..errors import MalformedEventError
from . import codec
from .events import NodeDeclaration, NodeType

__all__ = ["Node", "SubscanNode", "ChannelNode", "LimaNode", "ScansNode", "ImageReference",
           "make_node"]


class Node:
    """A declared node of a scan: ``name``, ``type``, ``info`` and its ``scan``."""

    type: NodeType = NodeType.SUBSCAN

    def __init__(self, scan: Any, declaration: NodeDeclaration):
        self.scan = scan
        self.name = declaration.name
        self.index = declaration.index
        self.info: dict[str, Any] = declaration.info

    @property
    def subscan(self) -> str:
        """Name of the subscan (top master) this node belongs to."""
        return str(self.info.get("subscan", self.name))

    @property
    def db_name(self) -> str:
        return f"{self.scan.key}:{self.name}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} of {self.scan!r}>"


class SubscanNode(Node):
    """One top master of the acquisition chain (one NXentry in a file)."""

    type = NodeType.SUBSCAN


class ChannelNode(Node):
    """Numeric data stored in Redis: ``dtype`` and per-point ``shape``.

    ``shape`` is ``()`` for scalars, ``(n,)`` for spectra, any fixed nD shape, or
    ``(-1,)`` for variable-length 1D points.
    """

    type = NodeType.CHANNEL

    def __init__(self, scan: Any, declaration: NodeDeclaration):
        super().__init__(scan, declaration)
        what = f"channel {self.name!r} of {scan.key}"
        self.dtype: np.dtype[Any] = codec.dtype_from_text(self.info.get("dtype"), what)
        try:
            self.shape: tuple[int, ...] = codec.check_point_shape(self.info.get("shape"), what)
        except ValueError as exc:
            raise MalformedEventError(str(exc)) from None
        self.unit: str | None = self.info.get("unit")
        self._point_size = self.dtype.itemsize * math.prod(self.shape)
        if self._point_size == 0 and not self.variable_length:
            raise MalformedEventError(f"{what}: points of zero size cannot be stored")

    def decode(self, raw: bytes, raw_lengths: bytes | None = None) -> Any:
        """The points of one block: an array (first axis: points) or, for a
        variable-length channel, a list of 1D arrays."""
        if self.variable_length:
            if raw_lengths is None:
                raise MalformedEventError(
                    f"channel {self.name!r}: variable-length block without point lengths")
            return codec.ragged_from_bytes(raw, raw_lengths, self.dtype, f"channel {self.name!r}")
        self.count_points(raw)
        data = np.frombuffer(raw, dtype=self.dtype)
        return data.reshape((-1,) + self.shape) if self.shape else data

    def count_points(self, raw: bytes) -> int:
        """The number of fixed-size points in ``raw``, checked without decoding."""
        count, rest = divmod(len(raw), self._point_size)
        if rest:
            raise MalformedEventError(
                f"channel {self.name!r}: {len(raw)} bytes is not a whole number of "
                f"{self._point_size}-byte points")
        return count

    @property
    def variable_length(self) -> bool:
        return self.shape == (-1,)

    @property
    def point_size(self) -> int:
        """Bytes per point (0 for variable-length points)."""
        return 0 if self.variable_length else self._point_size


class ImageReference(NamedTuple):
    """Where one frame of a lima detector is saved."""

    filename: str
    file_format: str
    path_in_file: str | None
    index_in_file: int


#: A printf conversion of a file template: ``%%`` (a percent sign) or an integer.
_PRINTF = re.compile(r"%(%|0?\d*[diu])")


class LimaNode(Node):
    """A 2D detector that saves its own files; Redis only holds the saving parameters.

    ``image_reference(i)`` computes where frame ``i`` is, from ``directory``,
    ``prefix``, ``suffix``, ``frames_per_file`` and ``first_file_number``.

    Two optional parameters describe the naming blissdata (BLISS 2.x) expresses:
    ``file_template``, a path with one printf integer conversion (``%04d``) that
    replaces ``directory/prefix<number:04d>suffix``, and ``frames_per_acquisition``:
    a scan of several acquisitions, each starting a new file (each acquisition takes
    ``ceil(frames_per_acquisition / frames_per_file)`` file numbers).
    """

    type = NodeType.LIMA

    def __init__(self, scan: Any, declaration: NodeDeclaration):
        super().__init__(scan, declaration)
        what = f"lima node {self.name!r} of {scan.key}"
        try:
            self.directory = str(self.info["directory"])
            self.prefix = str(self.info["prefix"])
            self.suffix = str(self.info["suffix"])
            self.file_format = str(self.info["file_format"])
            self.frames_per_file = int(self.info["frames_per_file"])
            self.first_file_number = int(self.info["first_file_number"])
            self.path_in_file = str(self.info.get("path_in_file") or "")
            self.file_template = str(self.info.get("file_template") or "")
            self.frames_per_acquisition = int(self.info.get("frames_per_acquisition") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEventError(f"{what}: invalid saving parameters ({exc!r})") from None
        if self.frames_per_file < 1:
            raise MalformedEventError(f"{what}: frames_per_file must be >= 1")
        if self.frames_per_acquisition < 0:
            raise MalformedEventError(f"{what}: frames_per_acquisition must be >= 0")
        if self.file_template:
            _check_template(self.file_template, what)
        self.dtype = codec.dtype_from_text(self.info.get("dtype", "<u2"), what)
        self.shape = tuple(int(d) for d in self.info.get("shape") or ())

    def filename(self, file_number: int) -> str:
        if self.file_template:
            return self.file_template % file_number
        return os.path.join(self.directory, f"{self.prefix}{file_number:04d}{self.suffix}")

    def image_reference(self, frame: int) -> ImageReference:
        if frame < 0:
            raise IndexError(f"frame index must be >= 0, got {frame}")
        acquisition, in_acquisition = 0, frame
        if self.frames_per_acquisition:
            acquisition, in_acquisition = divmod(frame, self.frames_per_acquisition)
        file_in_acquisition, index = divmod(in_acquisition, self.frames_per_file)
        files_per_acquisition = -(-self.frames_per_acquisition // self.frames_per_file)
        file_number = (self.first_file_number + acquisition * files_per_acquisition
                       + file_in_acquisition)
        path = self.path_in_file if self.file_format == "hdf5" else None
        return ImageReference(self.filename(file_number), self.file_format, path, index)

    def image_references(self, start: int, stop: int) -> list[ImageReference]:
        return [self.image_reference(i) for i in range(start, stop)]


class ScansNode(Node):
    """The scans a sequence groups (BLISS: a scan group, whose ``SUBSCANS`` channel
    names each scan it runs): its data are :class:`~.events.ScanReference` s, one per
    scan, in the order the sequence added them."""

    type = NodeType.SCANS


def _check_template(template: str, what: str) -> None:
    """``template`` names its files in one directory with one integer conversion."""
    directory, name = os.path.split(template)
    conversions = [match.group(1) for match in _PRINTF.finditer(name)]
    if "%" in directory or sum(c != "%" for c in conversions) != 1 \
            or name.count("%") != sum(1 + (c == "%") for c in conversions):
        raise MalformedEventError(
            f"{what}: file template {template!r} must have one integer conversion "
            "(such as %04d) in its file name, and none in its directory")


_NODE_CLASSES: dict[NodeType, type[Node]] = {
    NodeType.SUBSCAN: SubscanNode,
    NodeType.CHANNEL: ChannelNode,
    NodeType.LIMA: LimaNode,
    NodeType.SCANS: ScansNode,
}


def make_node(scan: Any, declaration: NodeDeclaration) -> Node:
    try:
        cls = _NODE_CLASSES[declaration.type]
    except KeyError:
        raise MalformedEventError(
            f"{scan.key}: node {declaration.name!r} has type {declaration.type.value!r}, "
            "which cannot appear inside a scan"
        ) from None
    return cls(scan, declaration)
