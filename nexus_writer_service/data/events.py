"""The scan event model: what a stream entry means, without any I/O.

A scan is one Redis stream of entries. Each entry is a small dict of byte fields;
``t`` says which kind it is:

========  ==============================================================
``node``  a node is declared: ``n`` name, ``y`` node type, ``x`` index, ``i`` JSON
``prep``  the scan is prepared
``data``  one block per channel: ``d<x>`` raw bytes, ``f<x>`` first point index,
          ``l<x>`` int64 point lengths (variable-length 1D channels only)
``lima``  lima progress: ``n`` name, ``a`` last image acquired, ``s`` last saved
``end``   the scan ended: ``r`` reason, ``m`` message
========  ==============================================================

The session stream holds ``new`` (``k`` scan key, ``n`` name, ``#`` number) and
``end`` (``k``, ``r``) entries. This module turns Python values into such dicts and
dicts read back into typed records; the publisher and reader are thin shells on it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np

from ..errors import MalformedEventError
from . import codec

__all__ = [
    "EventType",
    "EndReason",
    "NodeType",
    "EventData",
    "LimaProgress",
    "NodeDeclaration",
    "DataBlock",
    "Entry",
    "encode_node",
    "encode_prepared",
    "encode_end",
    "encode_lima",
    "decode_entry",
    "iter_data_blocks",
    "decode_block",
    "encode_session_new",
    "encode_session_end",
    "decode_session_entry",
]

Fields = Mapping[bytes, bytes]


class EventType(enum.Enum):
    NEW_NODE = "NEW_NODE"
    NEW_DATA = "NEW_DATA"
    PREPARED_SCAN = "PREPARED_SCAN"
    END_SCAN = "END_SCAN"


class EndReason(str, enum.Enum):
    SUCCESS = "SUCCESS"
    ABORTED = "ABORTED"
    FAILED = "FAILED"
    PUBLISHER_LOST = "PUBLISHER_LOST"


class NodeType(str, enum.Enum):
    SESSION = "session"
    SCAN = "scan"
    SUBSCAN = "subscan"
    CHANNEL = "channel"
    LIMA = "lima"


class LimaProgress(NamedTuple):
    last_image_acquired: int
    last_image_saved: int


@dataclass(frozen=True, slots=True)
class EventData:
    """What comes with an event.

    ``position`` is the stream ID of the entry: pass it back as ``from_position`` to
    resume after it. For NEW_DATA of a channel, ``data`` is a numpy array whose first
    axis is the point index starting at ``first_index`` (a list of 1D arrays for
    variable-length channels); for a lima node it is a :class:`LimaProgress`.
    For END_SCAN, ``reason`` and ``message`` say why the scan ended.
    """

    position: str
    first_index: int = 0
    data: Any = None
    reason: EndReason | None = None
    message: str = ""

    @property
    def npoints(self) -> int:
        if self.data is None or isinstance(self.data, LimaProgress):
            return 0
        return len(self.data)

    @property
    def last_index(self) -> int:
        """Index after the last point of this block."""
        return self.first_index + self.npoints


@dataclass(frozen=True, slots=True)
class NodeDeclaration:
    name: str
    type: NodeType
    index: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataBlock:
    """Undecoded blocks of one entry: ``{index: (first_index, raw, raw_lengths)}``."""

    blocks: dict[int, tuple[int, bytes, bytes | None]]


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded scan stream entry; exactly one of the optional parts is set."""

    kind: str
    node: NodeDeclaration | None = None
    data: DataBlock | None = None
    lima: tuple[str, LimaProgress] | None = None
    end: tuple[EndReason, str] | None = None


def _text(fields: Fields, key: bytes, what: str) -> str:
    try:
        return fields[key].decode()
    except KeyError:
        raise MalformedEventError(f"{what}: field {key.decode()!r} is missing") from None
    except UnicodeDecodeError:
        raise MalformedEventError(f"{what}: field {key.decode()!r} is not UTF-8") from None


def _int(fields: Fields, key: bytes, what: str) -> int:
    text = _text(fields, key, what)
    try:
        return int(text)
    except ValueError:
        raise MalformedEventError(f"{what}: field {key.decode()!r}={text!r} is not an integer") \
            from None


def encode_node(name: str, node_type: NodeType, index: int, info: Mapping[str, Any]) -> dict:
    try:
        raw_name = name.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"node name {name!r} is not valid Unicode ({exc.reason}): "
                         "use UTF-8 text") from None
    return {b"t": b"node", b"n": raw_name, b"y": node_type.value.encode(),
            b"x": str(index).encode(), b"i": codec.to_json(info)}


def encode_prepared() -> dict:
    return {b"t": b"prep"}


def encode_end(reason: EndReason, message: str = "") -> dict:
    return {b"t": b"end", b"r": EndReason(reason).value.encode(), b"m": message.encode()}


def encode_lima(name: str, progress: LimaProgress) -> dict:
    return {b"t": b"lima", b"n": name.encode(),
            b"a": str(int(progress.last_image_acquired)).encode(),
            b"s": str(int(progress.last_image_saved)).encode()}


def iter_data_blocks(fields: Fields) -> Iterator[tuple[int, int, bytes, bytes | None]]:
    """``(channel index, first point index, raw bytes, raw point lengths)`` of a data entry."""
    for key, raw in fields.items():
        if key[:1] != b"d":
            continue
        suffix = key[1:]
        try:
            index = int(suffix)
            first = int(fields[b"f" + suffix])
        except (ValueError, KeyError):
            raise MalformedEventError(
                f"data field {key!r} has no valid first index {b'f' + suffix!r}") from None
        if first < 0:
            raise MalformedEventError(f"negative first index {first} for {key!r}")
        yield index, first, raw, fields.get(b"l" + suffix)


def _decode_data(fields: Fields, what: str) -> DataBlock:
    try:
        return DataBlock({i: (f, r, n) for i, f, r, n in iter_data_blocks(fields)})
    except MalformedEventError as exc:
        raise MalformedEventError(f"{what}: {exc}") from None


def decode_entry(fields: Fields, what: str) -> Entry:
    """Decode one scan stream entry; ``what`` names the key and entry ID in errors."""
    kind = fields.get(b"t")
    if kind == b"data":
        return Entry("data", data=_decode_data(fields, what))
    if kind == b"node":
        type_text = _text(fields, b"y", what)
        try:
            node_type = NodeType(type_text)
        except ValueError:
            raise MalformedEventError(f"{what}: unknown node type {type_text!r}") from None
        info = codec.from_json(fields.get(b"i", b"{}"), f"{what} node info")
        if not isinstance(info, dict):
            raise MalformedEventError(f"{what}: node info is not a JSON object")
        decl = NodeDeclaration(_text(fields, b"n", what), node_type, _int(fields, b"x", what), info)
        return Entry("node", node=decl)
    if kind == b"lima":
        progress = LimaProgress(_int(fields, b"a", what), _int(fields, b"s", what))
        return Entry("lima", lima=(_text(fields, b"n", what), progress))
    if kind == b"prep":
        return Entry("prep")
    if kind == b"end":
        reason_text = _text(fields, b"r", what)
        try:
            reason = EndReason(reason_text)
        except ValueError:
            raise MalformedEventError(f"{what}: unknown end reason {reason_text!r}") from None
        return Entry("end", end=(reason, fields.get(b"m", b"").decode(errors="replace")))
    raise MalformedEventError(f"{what}: unknown entry kind {kind!r}")


def decode_block(
    dtype: np.dtype[Any], shape: tuple[int, ...], raw: bytes, raw_lengths: bytes | None,
    what: str,
) -> Any:
    """The points of one channel block: an array, or a list of arrays if variable-length."""
    if shape == (-1,):
        if raw_lengths is None:
            raise MalformedEventError(f"{what}: variable-length block without point lengths")
        return codec.ragged_from_bytes(raw, raw_lengths, dtype, what)
    return codec.array_from_bytes(raw, dtype, shape, what)


def encode_session_new(scan_key: str, name: str, number: int) -> dict:
    return {b"t": b"new", b"k": scan_key.encode(), b"n": name.encode(),
            b"#": str(number).encode()}


def encode_session_end(scan_key: str, reason: EndReason) -> dict:
    return {b"t": b"end", b"k": scan_key.encode(), b"r": EndReason(reason).value.encode()}


def decode_session_entry(fields: Fields, what: str) -> tuple[str, str, EndReason | None]:
    """``(kind, scan_key, reason)`` of a session stream entry."""
    kind = fields.get(b"t")
    key = _text(fields, b"k", what)
    if kind == b"new":
        return "new", key, None
    if kind == b"end":
        try:
            return "end", key, EndReason(_text(fields, b"r", what))
        except ValueError:
            raise MalformedEventError(f"{what}: unknown end reason") from None
    raise MalformedEventError(f"{what}: unknown session entry kind {kind!r}")
