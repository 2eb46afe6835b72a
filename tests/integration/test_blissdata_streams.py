"""Our reading of blissdata's streams (:class:`~.blissdata_streams.Cursors`, which reads
the Redis streams itself) against blissdata's own reader (``CursorGroup``) on the
same streams, published with blissdata's own publisher: every numeric dtype and
point shape BLISS publishes (variable shapes too), points sent one by one and in
blocks, JSON streams (lima statuses, the scans of a sequence), empty streams, the
seal, reading from a point within an entry, and trimmed points."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import redis
from blissdata.exceptions import EndOfStream, IndexNoMoreThereError
from blissdata.redis_engine.store import DataStore
from blissdata.streams import CursorGroup
from blissdata.streams.default import Stream
from blissdata.streams.scan_sequence import ScanStream

from nexus_writer_service.data import blissdata_streams
from nexus_writer_service.data.blissdata_streams import Cursors, readable_streams
from nexus_writer_service.errors import MalformedEventError
from tests.blissdata_support import lima_definition

#: name -> (dtype, point shape): every kind blissdata's numeric encoder takes
NUMERIC: dict[str, tuple[str, tuple[int, ...]]] = {
    "b:bool": ("?", ()),
    "i:int8": ("i1", ()),
    "i:int16": ("i2", ()),
    "i:int32": ("i4", ()),
    "i:int64": ("i8", ()),
    "i:int32_big_endian": (">i4", ()),
    "u:uint8": ("u1", ()),
    "u:uint16": ("u2", ()),
    "u:uint32": ("u4", ()),
    "u:uint64": ("u8", ()),
    "f:float16": ("f2", ()),
    "f:float32": ("f4", ()),
    "f:float64": ("f8", ()),
    "c:complex128": ("c16", ()),
    "mca:spectrum": ("u4", (128,)),
    "img:small": ("u2", (6, 5)),
    "mca:variable": ("f8", (-1,)),
    "img:variable": ("i4", (-1, 3)),
}
#: points per send: one point (no ``len`` field), then blocks of several
SENDS = [1, 1, 3, 7, 1, 50, 2, 200, 1, 11]
NPOINTS = sum(SENDS)


def _values(name: str, dtype: str, shape: tuple[int, ...], n: int, seed: int
            ) -> np.ndarray:
    """``n`` points (variable shapes: a point's free dimension varies per block)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    fixed = tuple(1 + seed % 4 if d == -1 else d for d in shape)
    if dt.kind == "b":
        return rng.integers(0, 2, (n,) + fixed).astype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, (n,) + fixed, dtype=dt.newbyteorder("="),
                            endpoint=True).astype(dt)
    if dt.kind == "c":
        return (rng.standard_normal((n,) + fixed)
                + 1j * rng.standard_normal((n,) + fixed)).astype(dt)
    return rng.standard_normal((n,) + fixed).astype(dt)


def _publish(url: str, *, seal: bool = True) -> tuple[Any, dict[str, list[Any]], Any]:
    """A scan with every :data:`NUMERIC` stream, a lima stream, the scans of a
    sequence and an empty stream, all sent :data:`SENDS`; what was sent, and the
    publisher's scan (to stop when not ``seal``: its sending threads end then)."""
    store = DataStore(url)
    scan = store.create_scan({"name": "ascan", "number": 1, "data_policy": "no_policy",
                              "session": "demo", "path": "/tmp/x.h5"}, info={"save": True})
    streams = {name: scan.create_stream(Stream.make_definition(name, np.dtype(dtype), shape))
               for name, (dtype, shape) in NUMERIC.items()}
    streams["cam:image"] = scan.create_stream(lima_definition(
        "cam:image", "/tmp/lima/img_%04d.h5", frames_per_file=10, frames_per_acquisition=0))
    streams["seq:SUBSCANS"] = scan.create_stream(ScanStream.make_definition("seq:SUBSCANS"))
    streams["e:empty"] = scan.create_stream(Stream.make_definition("e:empty", "f8", ()))
    scan.prepare()
    scan.start()
    sent: dict[str, list[Any]] = {name: [] for name in streams}
    for seed, n in enumerate(SENDS):
        for name, (dtype, shape) in NUMERIC.items():
            block = _values(name, dtype, shape, n, seed)
            streams[name].send(block if n > 1 else np.asarray(block[0], dtype=block.dtype))
            sent[name].extend(block)
        for _ in range(n):
            last = len(sent["cam:image"])
            status = {"last_index": last, "last_index_saved": last - 1}
            streams["cam:image"].send(status)
            sent["cam:image"].append(status)
        reference = {"key": f"esrf:scan:{seed:026d}", "scan_number": seed}
        streams["seq:SUBSCANS"].send(reference)
        sent["seq:SUBSCANS"].append(reference)
    if seal:
        scan.stop()
    else:
        for stream in streams.values():
            stream.join()
    return store.load_scan(scan.key), sent, scan


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _ours(url: str, scan: Any, start: dict[str, int] | None = None
          ) -> dict[str, list[tuple[int, Any]]]:
    """(index, data) of every view our reader gives, per stream, until every stream
    is sealed, or nothing comes."""
    streams = readable_streams(scan, scan.key)
    streams["e:empty"] = scan.streams["e:empty"]
    names = sorted(streams)
    cursors = Cursors([streams[n] for n in names], scan.key, _client(url),
                      [(start or {}).get(n, 0) for n in names])
    got: dict[str, list[tuple[int, Any]]] = {name: [] for name in names}
    while True:
        views, sealed = cursors.read(0.05)
        for stream, view in views.items():
            got[stream.name].append((view.index, view.get_data()))
        if sealed or not views:
            return got


def _theirs(scan: Any) -> dict[str, list[tuple[int, Any]]]:
    """The same with blissdata's ``CursorGroup``, on the plain streams (lima and
    sequence streams as JSON, as we read them)."""
    streams = readable_streams(scan, scan.key)
    streams["e:empty"] = scan.streams["e:empty"]
    group = CursorGroup(list(streams.values()))
    got: dict[str, list[tuple[int, Any]]] = {name: [] for name in streams}
    while True:
        try:
            views = group.read(block=False)
        except EndOfStream:
            return got
        if not views:
            return got
        for stream, view in views.items():
            got[stream.name].append((view.index, view.get_data()))


def _points(views: list[tuple[int, Any]]) -> tuple[int, list[Any]]:
    """The first index and the points of consecutive views."""
    if not views:
        return 0, []
    points: list[Any] = []
    for index, data in views:
        assert index == views[0][0] + len(points), "views are not consecutive"
        points.extend(data)
    return views[0][0], points


def _assert_same(ours: list[Any], theirs: list[Any], name: str) -> None:
    assert len(ours) == len(theirs), name
    for a, b in zip(ours, theirs):
        if isinstance(b, np.ndarray) or isinstance(b, np.generic):
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert a.tobytes() == b.tobytes(), name  # bit-exact
        else:
            assert a == b, name


@pytest.fixture()
def small_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads of a few entries at a time: entries and seals at every read boundary."""
    monkeypatch.setattr(blissdata_streams, "FIRST_COUNT", 3)
    monkeypatch.setattr(blissdata_streams, "READ_BYTES", 2000)


@pytest.mark.parametrize("reads", ["large", "small", "direct"])
def test_every_stream_reads_as_blissdatas_own_reader_reads_it(blissdata_url, request, reads,
                                                              monkeypatch):
    """``direct``: every read's reply parsed from the socket (``DirectCommand``; the
    200-point blocks of the 128-channel MCA come as arrays), as reads of large
    entries are."""
    if reads == "small":
        request.getfixturevalue("small_reads")
    if reads == "direct":
        monkeypatch.setattr(blissdata_streams, "DIRECT_BYTES", 0)
    scan, sent, _ = _publish(blissdata_url)
    ours, theirs = _ours(blissdata_url, scan), _theirs(scan)
    assert set(ours) == set(theirs) == set(sent)
    for name in sent:
        first, points = _points(ours[name])
        their_first, their_points = _points(theirs[name])
        assert first == their_first == 0, name
        _assert_same(points, their_points, name)
        _assert_same(points, sent[name], name)
        if name in NUMERIC and -1 not in NUMERIC[name][1]:
            for _, data in ours[name]:  # one array per view, as blissdata's
                assert isinstance(data, np.ndarray) and data.dtype == np.dtype(NUMERIC[name][0])
    assert len(sent["e:empty"]) == 0 and ours["e:empty"] == []


def test_an_open_stream_reads_what_was_sent_and_is_not_sealed(blissdata_url, request):
    scan, sent, publisher = _publish(blissdata_url, seal=False)
    request.addfinalizer(publisher.stop)
    streams = readable_streams(scan, scan.key)
    cursors = Cursors(list(streams.values()), scan.key, _client(blissdata_url))
    counts: dict[str, int] = {}
    while True:
        views, sealed = cursors.read(None)
        assert not sealed
        if not views:
            break
        for stream, view in views.items():
            counts[stream.name] = counts.get(stream.name, 0) + len(view)
    assert counts == {name: NPOINTS if name != "seq:SUBSCANS" else len(SENDS)
                      for name in streams if name != "e:empty"}
    assert cursors.read(0.01) == ({}, False)  # nothing more: waited, then nothing


@pytest.mark.parametrize("start", [1, 2, 5, 12, 13, NPOINTS - 1, NPOINTS])
def test_reading_from_a_point_within_an_entry_gives_the_points_from_that_entry(
        blissdata_url, start):
    """Resumed at point ``start``: each numeric stream from the entry holding it (its
    first index at most ``start``), the same points as blissdata's stream slice."""
    scan, sent, _ = _publish(blissdata_url)
    ours = _ours(blissdata_url, scan, {name: start for name in NUMERIC})
    entry_starts = list(np.cumsum([0] + SENDS))
    for name in NUMERIC:
        first, points = _points(ours[name])
        if start == NPOINTS:
            assert points == [], name
            continue
        assert first == max(s for s in entry_starts if s <= start), name
        _assert_same(points[start - first:], list(scan.streams[name][start:]), name)


def test_trimmed_points_are_missing_as_in_blissdatas_views(blissdata_url):
    """Points trimmed from a stream (blissdata's memory tracker) raise
    IndexNoMoreThereError when asked for, in our views as in blissdata's; the
    points kept are the same."""
    scan, sent, _ = _publish(blissdata_url)
    client = redis.Redis.from_url(blissdata_url)
    try:
        client.xtrim(scan.streams["f:float64"].key, minid=12, approximate=False)
    finally:
        client.close()
    streams = {"f:float64": scan.streams["f:float64"]}
    cursors = Cursors(list(streams.values()), scan.key, _client(blissdata_url))
    (view,) = cursors.read(None)[0].values()
    group = CursorGroup(list(streams.values()))
    (their_view,) = group.read(block=False).values()
    for v in (view, their_view):
        assert (v.index, len(v)) == (0, NPOINTS)
        with pytest.raises(IndexNoMoreThereError):
            v.get_data(0, 3)
    _assert_same(list(view.get_data(12, None)), list(their_view.get_data(12, None)), "kept")
    _assert_same(list(view.get_data(12, None)), sent["f:float64"][12:], "kept")


def test_a_payload_that_does_not_fit_its_dtype_is_malformed_naming_the_scan(
        blissdata_url, request):
    scan, _, publisher = _publish(blissdata_url, seal=False)
    request.addfinalizer(publisher.stop)
    stream = scan.streams["f:float64"]
    client = redis.Redis.from_url(blissdata_url)
    try:
        client.xadd(stream.key, {"payload": b"12345"}, id=f"{NPOINTS}-1")
    finally:
        client.close()
    cursors = Cursors([stream], scan.key, _client(blissdata_url), [NPOINTS])
    with pytest.raises(MalformedEventError, match=f"scan {scan.key}: a stream cannot be read"):
        cursors.read(None)


def test_a_read_says_whether_it_took_every_entry_there_was(blissdata_url, small_reads):
    scan, _, _ = _publish(blissdata_url)
    streams = readable_streams(scan, scan.key)
    cursors = Cursors([streams["f:float64"]], scan.key, _client(blissdata_url))
    views, _ = cursors.read(None)
    assert views and not cursors.caught_up  # FIRST_COUNT (3) entries of more
    while views:
        views, _ = cursors.read(None)
    assert cursors.caught_up


def test_a_writers_walk_reads_at_most_every_read_gap_while_data_comes(blissdata_url):
    """Points sent every millisecond: the walk of a writer (``merge_blocks``) reads
    them in a few large reads, READ_GAP apart at least, and gives every point."""
    import threading
    import time

    from nexus_writer_service.data import blissdata_scan
    from nexus_writer_service.data.blissdata_source import BlissdataSession
    from nexus_writer_service.data.events import EventType

    store = DataStore(blissdata_url)
    published = store.create_scan({"name": "loopscan", "number": 1,
                                   "data_policy": "no_policy", "session": "demo",
                                   "path": "/tmp/x.h5"}, info={"save": True})
    stream = published.create_stream(Stream.make_definition("timer:epoch", "f8", ()))
    published.prepare()
    published.start()
    reads: list[float] = []
    real_read = Cursors.read

    def timed_read(self: Cursors, timeout: float | None) -> Any:
        reads.append(time.monotonic())
        return real_read(self, timeout)

    def send() -> None:
        for i in range(300):
            stream.send(np.array([float(i)]))
            time.sleep(0.001)
        published.stop()
        published.close()

    points = []
    sender = threading.Thread(target=send)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Cursors, "read", timed_read)
        scan = BlissdataSession("demo", blissdata_url).scan(published.key)
        sender.start()
        for event_type, _, data in scan.walk_events(poll_interval=0.05, merge_blocks=True):
            if event_type is EventType.NEW_DATA:
                points.extend(np.asarray(data.data).tolist())
    sender.join()
    assert points == [float(i) for i in range(300)]
    gaps = np.diff(reads)
    assert 3 <= len(reads) < 100  # not a read per point sent
    # every read after one that gave data soon follows the last by READ_GAP at least
    assert (gaps >= blissdata_scan.READ_GAP * 0.9).mean() > 0.8, gaps
