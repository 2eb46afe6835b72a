"""The scan event model: what a stream entry means, without any I/O.

A scan is one Redis stream of entries. Each entry is a small dict of byte fields;
``t`` says which kind it is:

========  ==============================================================
``node``  a node is declared: ``n`` name, ``y`` node type, ``x`` index, ``i`` JSON
``prep``  the scan is prepared
``data``  one block per channel, of fixed-size points packed together: ``p`` their
          raw bytes one block after the other, ``k`` whose blocks as
          ``<x>:<bytes>`` comma separated, ``f`` their first point index (one number
          when they all start there, else one per block in ``k``'s order);
          and/or, for variable-length 1D channels (never packed), one block per
          field set: ``d<x>`` raw bytes, ``f<x>`` first point index, ``l<x>`` int64
          point lengths. Older publishers sent fixed-size points that way too; such
          an entry is refused with an error naming it and the encoding.
``lima``  lima progress: ``n`` name, ``a`` last image acquired, ``s`` last saved
``scans`` a scan of a sequence: ``n`` the name of the sequence's scans node, ``k``
          the key of the scan it groups, ``#`` that scan's number (when known)
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
    "EntryKind",
    "SessionEntryKind",
    "EndReason",
    "NodeType",
    "EventData",
    "LimaProgress",
    "ScanReference",
    "NodeDeclaration",
    "DataBlock",
    "Entry",
    "encode_node",
    "encode_prepared",
    "encode_info",
    "merge_info",
    "encode_end",
    "end_on_exit",
    "encode_lima",
    "encode_scan_reference",
    "encode_data",
    "packing",
    "decode_entry",
    "iter_data_blocks",
    "iter_wire_blocks",
    "WireBlock",
    "entry_kind",
    "old_encoding",
    "decode_block",
    "encode_session_new",
    "encode_session_end",
    "decode_session_entry",
]

Fields = Mapping[bytes, bytes]
#: ``(channel index, first point index, raw bytes, raw point lengths or None)``
RawBlock = tuple[int, int, bytes, "bytes | None"]


class EventType(enum.Enum):
    NEW_NODE = "NEW_NODE"
    NEW_DATA = "NEW_DATA"
    PREPARED_SCAN = "PREPARED_SCAN"
    INFO_UPDATE = "INFO_UPDATE"
    END_SCAN = "END_SCAN"


class EntryKind(enum.Enum):
    """What a scan stream entry is: the value of its ``t`` field."""

    NODE = b"node"
    PREPARED = b"prep"
    DATA = b"data"
    LIMA = b"lima"
    SCANS = b"scans"
    INFO = b"info"
    END = b"end"


class SessionEntryKind(enum.Enum):
    """What a session stream entry says: the value of its ``t`` field."""

    NEW = b"new"
    END = b"end"


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
    #: the scans a sequence (a scan group) groups, one reference per data point
    SCANS = "scans"


class LimaProgress(NamedTuple):
    last_image_acquired: int
    last_image_saved: int


class ScanReference(NamedTuple):
    """A scan that a sequence groups, as a walk gives it (NEW_DATA of a scans node).

    ``key``: the scan's key in its source; ``number``: its number (``None`` when
    unknown). A walk looks the scan up: ``info`` is its scan_info then, or ``None``
    with ``problem`` saying why it could not be found (never created, expired, a
    document that cannot be read)."""

    key: str
    number: int | None = None
    info: dict[str, Any] | None = None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class EventData:
    """What comes with an event.

    ``position`` is the stream ID of the entry: pass it back as ``from_position`` to
    resume after it. For NEW_DATA of a channel, ``data`` is a numpy array whose first
    axis is the point index starting at ``first_index`` (a list of 1D arrays for
    variable-length channels); for a lima node it is a :class:`LimaProgress`; for a
    scans node (a sequence) a list of :class:`ScanReference`.
    For END_SCAN, ``reason`` and ``message`` say why the scan ended. For INFO_UPDATE,
    ``info`` holds the keys of the scan_info that changed (see :func:`merge_info`).
    """

    position: str
    first_index: int = 0
    data: Any = None
    reason: EndReason | None = None
    message: str = ""
    info: dict[str, Any] | None = None

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

    kind: EntryKind
    node: NodeDeclaration | None = None
    data: DataBlock | None = None
    lima: tuple[str, LimaProgress] | None = None
    #: a scans entry: ``(node name, reference)``
    scan: tuple[str, ScanReference] | None = None
    end: tuple[EndReason, str] | None = None
    info: dict[str, Any] | None = None


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
    return {b"t": EntryKind.PREPARED.value}


def encode_end(reason: EndReason, message: str = "") -> dict:
    return {b"t": b"end", b"r": EndReason(reason).value.encode(), b"m": message.encode()}


def end_on_exit(exc_type: type[BaseException] | None, exc: BaseException | None
                ) -> tuple[EndReason, str]:
    """How a publisher's ``with`` block ends a scan still open: SUCCESS, ABORTED when
    interrupted by the user, else FAILED naming the exception."""
    if exc_type is None:
        return EndReason.SUCCESS, ""
    if issubclass(exc_type, KeyboardInterrupt):
        return EndReason.ABORTED, "interrupted by the user"
    return EndReason.FAILED, f"{exc_type.__name__}: {exc}"


def encode_info(changes: Mapping[str, Any]) -> dict:
    """An info update: the keys of the scan_info that changed (JSON)."""
    return {b"t": EntryKind.INFO.value, b"i": codec.to_json(changes)}


def merge_info(info: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` updated with ``changes``, as BLISS completes a scan_info: a key whose
    old and new values are both objects is merged key by key, any other is replaced.
    ``info`` itself is left as it was."""
    merged = dict(info)
    for key, value in changes.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            merged[key] = merge_info(old, value)
        else:
            merged[key] = value
    return merged


def encode_lima(name: str, progress: LimaProgress) -> dict:
    return {b"t": b"lima", b"n": name.encode(),
            b"a": str(int(progress.last_image_acquired)).encode(),
            b"s": str(int(progress.last_image_saved)).encode()}


def encode_scan_reference(name: str, key: str, number: int | None) -> dict:
    """A scan that the sequence's scans node ``name`` groups."""
    fields = {b"t": EntryKind.SCANS.value, b"n": name.encode(), b"k": key.encode()}
    if number is not None:
        fields[b"#"] = str(int(number)).encode()
    return fields


def encode_data(blocks: list[RawBlock]) -> dict[bytes, bytes]:
    """The fields of a data entry: the blocks without point lengths packed together
    (``p``, ``k``, ``f``), the others one field set each (``d<x>``, ``f<x>``, ``l<x>``).

    A scan's entries then nearly always carry the same few fields, whatever the
    number of channels: a reader parses a handful of values per entry rather than
    two per channel, and takes a run of entries apart in one go."""
    fields: dict[bytes, bytes] = {b"t": b"data"}
    which: list[bytes] = []
    firsts: list[int] = []
    packed: list[bytes] = []
    for index, first, raw, lengths in blocks:
        if lengths is None:
            which.append(b"%d:%d" % (index, len(raw)))
            firsts.append(first)
            packed.append(raw)
            continue
        suffix = b"%d" % index
        fields[b"d" + suffix] = raw
        fields[b"f" + suffix] = b"%d" % first
        fields[b"l" + suffix] = lengths
    if packed:
        fields[b"p"] = packed[0] if len(packed) == 1 else b"".join(packed)
        fields[b"k"] = b",".join(which)
        fields[b"f"] = b"%d" % firsts[0] if firsts.count(firsts[0]) == len(firsts) \
            else b",".join(b"%d" % first for first in firsts)
    return fields


def packing(which: bytes) -> list[tuple[int, int]]:
    """``[(channel index, bytes), ...]`` of a packed entry's ``k`` field.

    :raises MalformedEventError: not such a list, or a channel named twice"""
    try:
        items = [item.split(b":") for item in which.split(b",")]
        found = [(int(index), int(size)) for index, size in items]
    except ValueError:
        raise MalformedEventError(
            f"packed blocks {which[:80]!r} are not <channel>:<bytes> separated by commas"
        ) from None
    if any(index < 0 or size < 0 for index, size in found):
        raise MalformedEventError(f"packed blocks {which[:80]!r} give a negative number")
    if len({index for index, _ in found}) != len(found):
        raise MalformedEventError(f"packed blocks {which[:80]!r} name a channel twice")
    return found


def _packed_blocks(fields: Fields) -> Iterator[RawBlock]:
    raw, which, first_text = fields.get(b"p"), fields.get(b"k"), fields.get(b"f")
    if raw is None or which is None or first_text is None:
        raise MalformedEventError(
            "packed blocks need all of the fields 'p', 'k' and 'f' (some are missing)")
    blocks = packing(which)
    try:
        firsts = [int(text) for text in first_text.split(b",")]
    except ValueError:
        raise MalformedEventError(
            f"packed blocks have no valid first index 'f' ({first_text[:80]!r})") from None
    if len(firsts) == 1:
        firsts *= len(blocks)
    elif len(firsts) != len(blocks):
        raise MalformedEventError(
            f"packed blocks: {len(firsts)} first indices for {len(blocks)} blocks")
    total = sum(size for _, size in blocks)
    if total != len(raw):
        raise MalformedEventError(
            f"packed blocks add up to {total} bytes, field 'p' holds {len(raw)}")
    at = 0
    for (index, size), first in zip(blocks, firsts):
        if first < 0:
            raise MalformedEventError(f"negative first index {first} for packed channel #{index}")
        yield index, first, raw[at:at + size], None
        at += size


class WireBlock(NamedTuple):
    """One channel block of a data entry as it travels, not checked against the
    channel's declaration: ``packed`` tells whether it came in ``p``/``k``/``f``
    (fixed-size points) or in its own fields ``d<x>``/``f<x>``/``l<x>``."""

    channel: int
    first: int
    raw: bytes
    lengths: bytes | None
    packed: bool


def iter_wire_blocks(fields: Fields) -> Iterator[WireBlock]:
    """The blocks of a data entry, packed ones first, each as a :class:`WireBlock`."""
    packed: set[int] = set()
    if b"p" in fields or b"k" in fields:
        for index, first, raw, lengths in _packed_blocks(fields):
            packed.add(index)
            yield WireBlock(index, first, raw, lengths, True)
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
        if index in packed:
            raise MalformedEventError(f"channel #{index} is both packed and given in {key!r}")
        yield WireBlock(index, first, raw, fields.get(b"l" + suffix), False)


def iter_data_blocks(fields: Fields) -> Iterator[RawBlock]:
    """``(channel index, first point index, raw bytes, raw point lengths)`` of a data entry."""
    for index, first, raw, lengths, _ in iter_wire_blocks(fields):
        yield index, first, raw, lengths


def old_encoding(name: str, index: int) -> str:
    """Why a block of fixed-size points given in its own fields is refused."""
    return (f"channel {name!r} has fixed-size points, but they come in the fields d{index}/"
            f"f{index}, the per-channel encoding of older publishers, which is no longer "
            "read: publish with this version (fixed-size points travel packed, in the "
            "fields 'p', 'k' and 'f')")


def _decode_data(fields: Fields, what: str) -> DataBlock:
    try:
        return DataBlock({i: (f, r, n) for i, f, r, n in iter_data_blocks(fields)})
    except MalformedEventError as exc:
        raise MalformedEventError(f"{what}: {exc}") from None


def entry_kind(fields: Fields, what: str) -> EntryKind:
    """The kind of a scan stream entry; ``what`` names the entry in the error."""
    kind = fields.get(b"t")
    try:
        return EntryKind(kind)
    except ValueError:
        raise MalformedEventError(f"{what}: unknown entry kind {kind!r}") from None


def decode_entry(fields: Fields, what: str) -> Entry:
    """Decode one scan stream entry; ``what`` names the key and entry ID in errors."""
    kind = entry_kind(fields, what)
    if kind is EntryKind.DATA:
        return Entry(kind, data=_decode_data(fields, what))
    if kind is EntryKind.NODE:
        type_text = _text(fields, b"y", what)
        try:
            node_type = NodeType(type_text)
        except ValueError:
            raise MalformedEventError(f"{what}: unknown node type {type_text!r}") from None
        info = codec.from_json(fields.get(b"i", b"{}"), f"{what} node info")
        if not isinstance(info, dict):
            raise MalformedEventError(f"{what}: node info is not a JSON object")
        decl = NodeDeclaration(_text(fields, b"n", what), node_type, _int(fields, b"x", what), info)
        return Entry(kind, node=decl)
    if kind is EntryKind.LIMA:
        progress = LimaProgress(_int(fields, b"a", what), _int(fields, b"s", what))
        return Entry(kind, lima=(_text(fields, b"n", what), progress))
    if kind is EntryKind.PREPARED:
        return Entry(kind)
    if kind is EntryKind.SCANS:
        number = _int(fields, b"#", what) if b"#" in fields else None
        reference = ScanReference(_text(fields, b"k", what), number)
        return Entry(kind, scan=(_text(fields, b"n", what), reference))
    if kind is EntryKind.INFO:
        changes = codec.from_json(fields.get(b"i", b"{}"), f"{what} info update")
        if not isinstance(changes, dict):
            raise MalformedEventError(f"{what}: an info update is not a JSON object")
        return Entry(kind, info=changes)
    reason_text = _text(fields, b"r", what)
    try:
        reason = EndReason(reason_text)
    except ValueError:
        raise MalformedEventError(f"{what}: unknown end reason {reason_text!r}") from None
    return Entry(kind, end=(reason, fields.get(b"m", b"").decode(errors="replace")))


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


def decode_session_entry(fields: Fields, what: str
                         ) -> tuple[SessionEntryKind, str, EndReason | None]:
    """``(kind, scan_key, reason)`` of a session stream entry."""
    raw_kind = fields.get(b"t")
    key = _text(fields, b"k", what)
    try:
        kind = SessionEntryKind(raw_kind)
    except ValueError:
        raise MalformedEventError(f"{what}: unknown session entry kind {raw_kind!r}") from None
    if kind is SessionEntryKind.NEW:
        return kind, key, None
    try:
        return kind, key, EndReason(_text(fields, b"r", what))
    except ValueError:
        raise MalformedEventError(f"{what}: unknown end reason") from None
