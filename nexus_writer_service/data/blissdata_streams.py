"""The streams of one blissdata scan: which are read, in which order, and how.

* :func:`readable_streams`: the numeric streams, the statuses of the lima
  detectors whose frames are saved and the scans of a sequence; the others are
  logged and left out.
* :func:`stream_order`: the order in which a position counts the points of each
  stream. blissdata lets a publisher create streams after PREPARED (its
  ``create_stream`` has no state check; a new stream enters the scan document at the
  next state change, STARTED, STOPPED or CLOSED), so the order cannot be sorted names
  alone: every reader of a scan shares one append-only list in a key of ours,
  ``nws-blissdata:<scan key>:streams``, the streams seen at PREPARED in name order,
  then those that came later, in the order a reader first saw them. A position
  written before a stream came counts fewer streams: the ones it lacks start at 0.
* :class:`Cursors`: blissdata's cursor groups over streams that may grow in number
  (one group per batch of streams; a new group reads its streams from their start).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from blissdata.exceptions import EndOfStream, IndexNoMoreThereError
from blissdata.redis_engine.scan import Scan
from blissdata.streams import CursorGroup
from blissdata.streams.default import Stream

from ..errors import MalformedEventError
from .blissdata_lima import is_lima_info, lima_node_info
from .connection import Client, redis_errors

__all__ = ["Cursors", "encoding_problems", "first_kept", "is_lima", "is_scans",
           "readable_streams", "stream_order", "subscans"]

logger = logging.getLogger(__name__)

#: Appends the names (ARGV[2:]) missing from the list KEYS[1], sets its time to live
#: (ARGV[1] seconds) and returns the list: one round trip, atomic for every reader.
_ORDER_SCRIPT = """
local have = {}
for _, name in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do have[name] = true end
for i = 2, #ARGV do
  if not have[ARGV[i]] then
    redis.call('RPUSH', KEYS[1], ARGV[i])
    have[ARGV[i]] = true
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return redis.call('LRANGE', KEYS[1], 0, -1)
"""


def is_lima(stream: Any) -> bool:
    """Whether ``stream`` (of :func:`readable_streams`) gives the statuses of a lima
    detector."""
    return bool(getattr(stream, "lima", False))


def is_scans(stream: Any) -> bool:
    """Whether ``stream`` (of :func:`readable_streams`) names the scans of a sequence."""
    return bool(getattr(stream, "scans", False))


class _ScanReferences(Stream):
    """The scans of a sequence (blissdata's ``scan_sequence`` plugin): its JSON events
    ``{"key", "scan_number"}`` read as they are (the plugin's view loads each scan,
    and fails on one that is gone: those are named in the file instead)."""

    scans = True


class _LimaStatuses(Stream):
    """The statuses of a lima detector's stream: its JSON events, read as they are
    (blissdata's ``LimaStream`` turns them into frames, which are never read here)."""

    lima = True


def readable_streams(scan: Scan, key: str) -> dict[str, Any]:
    """The numeric streams of ``scan``, the statuses of its lima detectors whose
    frames are saved and the scans of a sequence, by name; the others are logged and
    left out.

    :raises MalformedEventError: a stream's encoding cannot be read, or a lima stream
        is not as blissdata writes them"""
    streams: dict[str, Any] = {}
    for name, stream in sorted(scan.streams.items()):
        problem = _encoding_problem(getattr(stream.event_stream, "encoding", None))
        if problem:
            raise MalformedEventError(f"stream {name!r} ({stream.key}) of scan {key}: "
                                      f"{problem}")
        info = stream.info if isinstance(stream.info, dict) else {}
        if is_lima_info(info):
            what = f"lima stream {name!r} ({stream.key}) of scan {key}"
            if lima_node_info(info, "", what) is not None:
                streams[name] = _LimaStatuses(stream.event_stream)
            else:
                logger.warning("scan %s: %s is not written: its frames are not saved", key,
                               what)
        elif isinstance(stream, Stream) and stream.kind == "array":
            streams[name] = stream
        elif getattr(stream, "plugin", None) == "scan_sequence":
            streams[name] = _ScanReferences(stream.event_stream)
        else:
            logger.warning("scan %s: stream %r (%s, plugin %r) is not written: only numeric "
                           "streams are", key, name, type(stream).__name__,
                           getattr(stream, "plugin", None))
    return streams


def stream_order(client: Client, key: str, streams: Mapping[str, Any], retention: int
                 ) -> list[Any]:
    """``streams`` (by name) in the order positions count them (see the module): the
    shared list of ``key``'s streams, those it lacks appended in name order."""
    order_key = f"nws-blissdata:{key}:streams"
    with redis_errors(f"reading {order_key}"):
        raw = client.eval(_ORDER_SCRIPT, 1, order_key, str(int(retention)), *sorted(streams))
    names = [name.decode() if isinstance(name, bytes) else str(name) for name in raw]
    return [streams[name] for name in names if name in streams]


class Cursors:
    """Reads streams with blissdata's cursor groups; streams may be added."""

    def __init__(self, streams: Sequence[Any], key: str) -> None:
        self._key = key
        self._groups = [CursorGroup(list(streams))] if streams else []

    def add(self, streams: Sequence[Any]) -> None:
        """Read ``streams`` too, from their start."""
        if streams:
            self._groups.append(CursorGroup(list(streams)))

    def read(self, timeout: float | None) -> tuple[dict[Any, Any], bool]:
        """New views of the streams (waiting up to ``timeout`` seconds for some when
        there are none; None: not at all), and whether every stream is sealed and was
        read to its end."""
        views: dict[Any, Any] = {}
        still_open = []
        for group in self._groups:
            found = self._read(group, None)
            if found is not None:
                still_open.append(group)
                views.update(found)
        if views or not still_open or timeout is None:
            return views, not still_open
        found = self._read(still_open[0], timeout)
        if found is None:  # it was read to its end meanwhile
            return views, len(still_open) == 1
        return found, False

    def _read(self, group: CursorGroup, timeout: float | None) -> dict[Any, Any] | None:
        """One read of ``group`` (None: read to its end)."""
        try:
            if timeout is None:
                return dict(group.read(block=False))
            return dict(group.read(block=True, timeout=max(float(timeout), 0.001)))
        except EndOfStream:
            return None
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEventError(f"scan {self._key}: a stream cannot be read ({exc})") \
                from None


def _kept(stream: Any, index: int) -> bool:
    """Whether point ``index`` of ``stream`` is still in Redis (or not published yet)."""
    try:
        stream[index]
    except IndexNoMoreThereError:
        return False
    except IndexError:  # not yet there, or never will be: nothing trimmed there
        return True
    return True


def first_kept(stream: Any, start: int) -> int:
    """The first point from ``start`` on that blissdata still holds for ``stream``
    (``start`` when nothing from there was trimmed; its memory tracker trims the oldest
    points of a stream first). A few reads when something was trimmed, one otherwise."""
    if _kept(stream, start):
        return start
    low, high = start + 1, max(len(stream), start + 1)  # [low, high]: the first kept
    while low < high:
        middle = (low + high) // 2
        if _kept(stream, middle):
            high = middle
        else:
            low = middle + 1
    return low


def _encoding_problem(encoding: Any) -> str:
    """What is wrong with a stream model's ``encoding`` as blissdata 2.4 reads it
    (``""``: nothing)."""
    if not isinstance(encoding, dict):
        return f"its encoding {encoding!r:.100} is not an object"
    kind = encoding.get("type")
    if kind == "json":
        return ""
    if kind != "numeric":
        return f"its encoding type {kind!r:.100} is neither 'numeric' nor 'json'"
    try:
        dtype = np.dtype(encoding.get("dtype_str"))
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biufc":
        return f"its encoding dtype_str {encoding.get('dtype_str')!r:.100} is not a numeric dtype"
    shape = encoding.get("shape")
    if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= -1 for n in shape):
        return f"its encoding shape {shape!r:.100} is not a list of sizes"
    return ""


def encoding_problems(streams: Any) -> list[str]:
    """The streams of a scan document's ``data_streams`` (raw JSON) whose encoding
    blissdata cannot read, each named with what is wrong."""
    if not isinstance(streams, dict):
        return [f"its data_streams {streams!r:.100} is not an object of streams"]
    found = []
    for name, model in streams.items():
        problem = _encoding_problem(model.get("encoding") if isinstance(model, dict)
                                    else None)
        if problem:
            found.append(f"stream {name!r}: {problem}")
    return found


def _chain_problem(key: str, value: Any, expected: str) -> MalformedEventError:
    return MalformedEventError(f"scan_info {key!r} is {value!r:.200} ({type(value).__name__}), "
                               f"not {expected}: the acquisition program sent a malformed "
                               "scan_info")


def subscans(info: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The top masters of the acquisition chain (``["main"]`` without one), and the one
    each channel named there belongs to.

    :raises MalformedEventError: the chain is not as BLISS writes it (the key named)"""
    chain = info.get("acquisition_chain")
    if chain is None or chain == {}:
        return ["main"], {}
    if not isinstance(chain, dict):
        raise _chain_problem("acquisition_chain", chain, "an object of top masters")
    placement: dict[str, str] = {}
    for top, entry in chain.items():
        if not isinstance(entry, dict):
            raise _chain_problem(f"acquisition_chain/{top}", entry, "an object")
        master = entry.get("master", {})
        if not isinstance(master, dict):
            raise _chain_problem(f"acquisition_chain/{top}/master", master, "an object")
        for part, where in ((entry, f"acquisition_chain/{top}"),
                            (master, f"acquisition_chain/{top}/master")):
            for kind in ("scalars", "spectra", "images"):
                names = part.get(kind, [])
                if not isinstance(names, list):
                    raise _chain_problem(f"{where}/{kind}", names, "a list of channel names")
                for name in names:
                    placement.setdefault(str(name), str(top))
    return [str(top) for top in chain], placement
