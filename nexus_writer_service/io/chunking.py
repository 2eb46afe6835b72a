"""How a scan's datasets are chunked and compressed (pure: no I/O, no h5py).

BLISS says it per scan in ``scan_info["writer_options"]["chunk_options"]`` (keys
``chunk_nbytes``, ``chunk_split``, ``compression_limit_nbytes``,
``compression_scheme``); the operator says it per session with the save options
``chunk_bytes``, ``chunk_split``, ``compression_limit_nbytes`` and
``compression``. :func:`resolve` decides, key by key:

1. a key the scan gives (not null) wins;
2. else the session option, when the operator set it;
3. else, for a BLISS scan (one that carries ``writer_options``), the classic
   writer's default: ``gzip-byteshuffle`` for every dataset above 1 MB, chunks of
   about 1 MiB, split in 4 along the scan;
4. else this writer's own default: no compression, chunks of about 1 MiB.

A dataset is compressed when the bytes the scan is expected to give it
(points expected, or 512 when unknown, times the point's bytes) exceed
``compression_limit_nbytes``, as the classic writer does.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..errors import MalformedInfoError
from .options import (
    MAX_CHUNK_BYTES,
    MAX_CHUNK_SPLIT,
    MAX_COMPRESSION_LIMIT,
    SCHEMES,
    SaveOptions,
    scheme_name,
)

__all__ = ["ChunkOptions", "CLASSIC", "DEFAULT_CHUNK_BYTES", "SCHEMES", "resolve",
           "scan_chunk_options"]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 1 << 20
#: Points the classic writer assumes for a scan that does not say how many it has.
UNKNOWN_POINTS = 512
_KEYS = ("chunk_nbytes", "chunk_split", "compression_limit_nbytes", "compression_scheme")


@dataclass(frozen=True)
class ChunkOptions:
    """The chunking and compression of one scan's datasets.

    ``chunk_split``: a chunk holds at most ``1 / chunk_split`` of the points expected
    (1: no such limit). Chunks always span whole points: the point's own dimensions
    are never split (points are written whole, as they come)."""

    chunk_nbytes: int = DEFAULT_CHUNK_BYTES
    chunk_split: int = 1
    compression_limit_nbytes: int = 0
    compression_scheme: str = "none"

    def scheme_for(self, expected_bytes: int) -> str:
        """The compression of a dataset expected to take ``expected_bytes``."""
        if expected_bytes > self.compression_limit_nbytes:
            return self.compression_scheme
        return "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The classic writer's defaults, which BLISS users get when chunk_options is empty.
CLASSIC = ChunkOptions(DEFAULT_CHUNK_BYTES, 4, 1 << 20, "gzip-byteshuffle")


def _malformed(key: str, value: Any, expected: str) -> MalformedInfoError:
    return MalformedInfoError(
        f"scan_info 'writer_options/chunk_options/{key}' is {value!r} "
        f"({type(value).__name__}), not {expected}: the acquisition program sent a "
        "malformed scan_info")


def _integer(key: str, value: Any, lowest: int, highest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise _malformed(key, value, f"an integer from {lowest} to {highest}")
    return value


def scan_chunk_options(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The chunk options the scan gives (null keys left out); None when the scan has
    no ``writer_options`` (not a BLISS scan). Unknown keys are ignored.

    :raises MalformedInfoError: a known key of the wrong type or out of range, or an
        unknown compression scheme; the message names the key
    """
    writer_options = info.get("writer_options")
    if writer_options is None:
        return None
    if not isinstance(writer_options, Mapping):
        raise MalformedInfoError(
            f"scan_info 'writer_options' is {writer_options!r}, not a mapping: the "
            "acquisition program sent a malformed scan_info")
    given = writer_options.get("chunk_options")
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise MalformedInfoError(
            f"scan_info 'writer_options/chunk_options' is {given!r}, not a mapping: the "
            "acquisition program sent a malformed scan_info")
    found: dict[str, Any] = {}
    for key, value in given.items():
        if key not in _KEYS:
            logger.debug("scan_info writer_options/chunk_options/%s ignored (unknown)", key)
        elif value is None:
            continue
        elif key == "compression_scheme":
            name = scheme_name(value) if isinstance(value, str) else None
            if name is None:
                raise _malformed(key, value, "one of " + ", ".join(SCHEMES))
            found[key] = name
        elif key == "chunk_nbytes":
            found[key] = _integer(key, value, 1, MAX_CHUNK_BYTES)
        elif key == "chunk_split":
            found[key] = _integer(key, value, 1, MAX_CHUNK_SPLIT)
        else:
            found[key] = _integer(key, value, 0, MAX_COMPRESSION_LIMIT)
    return found


def resolve(info: Mapping[str, Any], options: SaveOptions) -> ChunkOptions:
    """The chunk options of the scan of ``info`` (see the module docstring).

    :raises MalformedInfoError: see :func:`scan_chunk_options`
    """
    given = scan_chunk_options(info)
    base = ChunkOptions() if given is None else CLASSIC
    session: dict[str, Any] = {}
    if options.chunk_bytes:
        session["chunk_nbytes"] = options.chunk_bytes
    if options.chunk_split:
        session["chunk_split"] = options.chunk_split
    if options.compression_limit_nbytes >= 0:
        session["compression_limit_nbytes"] = options.compression_limit_nbytes
    if options.compression:
        session["compression_scheme"] = options.compression
    values = {**base.as_dict(), **session, **(given or {})}
    return ChunkOptions(**values)
