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
* :class:`Cursors`: reads the entries of every stream in one ``XREAD`` and decodes
  them as blissdata's own reader does, into blissdata's own views; streams may be
  added (read from their start).

Why :class:`Cursors` reads the Redis streams itself instead of through blissdata's
``CursorGroup``: the group reads at most 100 entries of each stream per ``XREAD``
and makes three Python objects per entry (redis-py's field dict, blissdata's
``StreamEntry`` and its run-time type-checked ``EncodedBatch``). Reading a
10-channel scan of 1e6 float64 points sent in blocks of 100 (100,000 entries) took
0.46 to 0.51 CPU s with the group, 0.26 to 0.31 s here (blocks of 1000: 0.11 to
0.17 s, 0.07 s), most of which is now hiredis parsing the replies. Here the server's
reply is taken as hiredis parses it (no redis-py callback), the payloads of a
numeric stream are joined and viewed as one array (as blissdata's
``NumericStreamEncoder`` does), and as many entries are asked at once as fit in
:data:`READ_BYTES`. What blissdata writes is read exactly as it reads it: each
entry ``<index>-1`` with ``payload`` and ``len`` (1 when absent), the seal
``18446744073709551615-18446744073709551615`` with the stream's length in ``id``,
JSON payloads for JSON streams (lima statuses, the scans of a sequence), and
blissdata's own decoder for numeric streams of variable shape.
``tests/integration/test_blissdata_streams.py`` checks it against blissdata's
``CursorGroup`` on the same streams.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import redis
from blissdata.exceptions import IndexNoMoreThereError
from blissdata.redis_engine.scan import Scan
from blissdata.streams import EventRange
from blissdata.streams.default import Stream, View
from blissdata.streams.encoding import EncodedBatch
from blissdata.streams.encoding.numeric import NumericStreamEncoder

from ..errors import MalformedEventError
from .blissdata_lima import is_lima_info, lima_node_info
from ._fast_redis import DIRECT_BYTES, DirectCommand
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


#: Bytes of entries a read asks for at most (shared by the streams read, at least one
#: entry of each): ``XREAD``'s count follows the size of the entries seen so far.
READ_BYTES = 16 * 1024 * 1024
#: Entries of each stream a read asks for before any entry was seen (blissdata's own
#: count), and at most.
FIRST_COUNT, MAX_COUNT = 100, 1000
#: The ID of the entry that seals a blissdata stream (its field ``id``: the length).
SEAL_ID = b"18446744073709551615-18446744073709551615"


def _decoder(stream: Any) -> Callable[[list[bytes], list[int]], Any]:
    """How the payloads of ``stream``'s entries (and the points in each) become its
    points, as blissdata's encoder of the stream decodes them."""
    encoding = stream.event_stream.encoding
    kind = encoding.get("type") if isinstance(encoding, Mapping) else None
    if kind == "json":
        return lambda payloads, _: [json.loads(_bytes(payload)) for payload in payloads]
    if kind != "numeric":
        raise ValueError(f"unknown encoding {encoding!r}")
    dtype = np.dtype(encoding["dtype_str"])
    shape = tuple(int(n) for n in encoding["shape"])
    if -1 in shape:  # each payload says its shape: blissdata's own decoder
        encoder = NumericStreamEncoder.from_info(encoding)
        return lambda payloads, lens: encoder.decode(
            [EncodedBatch(_bytes(payload), n) for payload, n in zip(payloads, lens)])
    size = dtype.itemsize * math.prod(shape)

    def numeric(payloads: list[bytes], lens: list[int]) -> Any:
        # read-only points; the payload of a single entry is not copied (blissdata's
        # decoder copies every payload into a bytearray)
        buffer = payloads[0] if len(payloads) == 1 else b"".join(payloads)
        if len(buffer) != size * sum(lens):
            raise ValueError(f"{len(buffer)} bytes for {sum(lens)} points of {dtype} "
                             f"{shape}")
        return np.frombuffer(buffer, dtype=dtype).reshape((-1,) + shape)

    return numeric


def _bytes(payload: Any) -> bytes:
    """A payload as bytes (large ones are read into arrays, see :class:`Cursors`)."""
    return payload if isinstance(payload, bytes) else bytes(payload)


class _Reading:
    """Where the reading of one stream is: ``position`` the index of the next point
    (the first entry after it is read next), ``done`` once its seal was read."""

    __slots__ = ("stream", "key", "position", "done", "decode")

    def __init__(self, stream: Any, position: int) -> None:
        self.stream = stream
        self.key = stream.key
        self.position = position
        self.done = False
        self.decode = _decoder(stream)

    def view(self, entries: Sequence[Any]) -> tuple[Any, int]:
        """blissdata's view of ``entries`` (as ``XREAD`` gives them), None when they
        hold only the seal, with nothing missing before it; and the bytes of their
        payloads. A view starts at ``position``: the points from there to the first
        entry's are gone (trimmed), and raise :class:`IndexNoMoreThereError` when
        asked for, as blissdata's do."""
        if not entries:
            return None, 0
        if entries[-1][0] == SEAL_ID:
            self.done = True
            seal = int(_fields(entries[-1][1])[b"id"])
            entries = entries[:-1]
        payloads: list[bytes] = []
        lens: list[int] = []
        for _, fields in entries:  # [b"payload", p] or [b"payload", p, b"len", n]
            if len(fields) == 4 and fields[0] == b"payload" and fields[2] == b"len":
                payloads.append(fields[1])
                lens.append(int(fields[3]))
            elif len(fields) == 2 and fields[0] == b"payload":
                payloads.append(fields[1])
                lens.append(1)
            else:
                values = _fields(fields)
                payloads.append(values[b"payload"])
                lens.append(int(values.get(b"len", 1)))
        # only the first entry's index is read: blissdata numbers the entries of a
        # stream by their first point, each after the one before
        first = int(entries[0][0].split(b"-", 1)[0]) if entries else seal
        data = self.decode(payloads, lens) if payloads else []
        expected, self.position = self.position, first + len(data)
        event_range = EventRange(expected, first - expected, data, self.done)
        return (View(event_range) if len(event_range) else None), sum(map(len, payloads))


def _fields(raw: Any) -> dict[bytes, Any]:
    """The fields of a stream entry as the server sends them (a flat list in RESP2)."""
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2]))


class Cursors:
    """Reads blissdata streams (see the module); streams may be added.

    ``client``: a redis-py client of the Redis of the streams (its connection pool
    is used, not its reply callbacks). ``start``: the point of each stream from which
    to read (0: its start); it is read from the entry holding that point."""

    def __init__(self, streams: Sequence[Any], key: str, client: Any,
                 start: Sequence[int] = ()) -> None:
        self._key = key
        self._redis = redis.Redis(connection_pool=client.connection_pool)
        for command in ("XREAD", "XREVRANGE"):  # the replies as hiredis parses them
            self._redis.set_response_callback(command, lambda reply, **_: reply)
        # entries of DIRECT_BYTES or more: received straight into their arrays (see
        # _fast_redis)
        self._xread = DirectCommand(client)
        self._readings: dict[bytes, _Reading] = {}
        self._entry_bytes = 0.0
        #: whether the last read took every entry there was (no stream gave as many
        #: entries as asked for)
        self.caught_up = True
        self._add(streams, start)

    def add(self, streams: Sequence[Any]) -> None:
        """Read ``streams`` too, from their start."""
        self._add(streams, ())

    def _add(self, streams: Sequence[Any], start: Sequence[int]) -> None:
        try:
            readings = [_Reading(stream, 0) for stream in streams]
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEventError(f"scan {self._key}: a stream cannot be read ({exc})") \
                from None
        points = list(start) + [0] * (len(readings) - len(start))
        resumed = [(reading, n) for reading, n in zip(readings, points) if n > 0]
        if resumed:
            pipe = self._redis.pipeline(transaction=False)
            for reading, n in resumed:  # the last entry starting at or before point n
                pipe.xrevrange(reading.key, max=f"{n}-1", min="-", count=1)
            for (reading, n), found in zip(resumed, pipe.execute()):
                reading.position = n
                if found:
                    first = int(found[0][0].split(b"-", 1)[0])
                    if first + int(_fields(found[0][1]).get(b"len", 1)) > n:
                        reading.position = first
        for reading in readings:
            self._readings[reading.key.encode()] = reading

    def read(self, timeout: float | None) -> tuple[dict[Any, Any], bool]:
        """New views of the streams, by stream (waiting up to ``timeout`` seconds for
        some when there are none; None: not at all), and whether every stream was
        read to its seal."""
        open_ = [reading for reading in self._readings.values() if not reading.done]
        if not open_:
            return {}, True
        count = self._count(len(open_))
        args: list[Any] = ["COUNT", count]
        if timeout is not None:
            args += ["BLOCK", max(1, int(timeout * 1000))]
        args += ["STREAMS", *(r.key for r in open_), *(f"{r.position}-0" for r in open_)]
        if self._entry_bytes >= DIRECT_BYTES:  # large entries: straight into arrays
            reply = self._xread("XREAD", *args)
        else:  # small ones: hiredis parses them faster than Python can
            reply = self._redis.execute_command("XREAD", *args)
        views: dict[Any, Any] = {}
        self.caught_up = True
        if not reply:
            return views, False
        nbytes = nentries = 0
        try:
            for raw_key, entries in (reply.items() if isinstance(reply, dict) else reply):
                reading = self._readings[raw_key]
                view, size = reading.view(entries)
                if len(entries) >= count:
                    self.caught_up = False
                nentries += len(entries)
                nbytes += size
                if view is not None:
                    views[reading.stream] = view
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise MalformedEventError(f"scan {self._key}: a stream cannot be read ({exc})") \
                from None
        if nentries:
            self._entry_bytes = max(self._entry_bytes * 0.5, nbytes / nentries)
        return views, all(reading.done for reading in self._readings.values())

    def close(self) -> None:
        """Close the connection the reads took (the client's pool stays)."""
        self._xread.close()

    def _count(self, nstreams: int) -> int:
        """Entries of each stream to ask for (see :data:`READ_BYTES`)."""
        if not self._entry_bytes:
            return FIRST_COUNT
        return max(1, min(MAX_COUNT, int(READ_BYTES / nstreams / self._entry_bytes)))


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
