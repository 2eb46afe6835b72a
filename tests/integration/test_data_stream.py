"""The scan data stream over a real Redis server: publish, walk, resume, leases, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from nexus_writer_service.data import (
    EndReason,
    EventType,
    LimaProgress,
    Publisher,
    get_scan_node,
    get_session_node,
)
from nexus_writer_service.data.events import encode_data
from nexus_writer_service.errors import (
    ConfigurationError,
    DataLostError,
    EventTimeout,
    ForeignKeyError,
    MalformedEventError,
    NodeNotFoundError,
    ScanStateError,
)


def _collect(scan_node, **kwargs):
    """Every channel's data concatenated, plus the event sequence."""
    data: dict[str, list] = {}
    sequence = []
    for event, node, event_data in scan_node.walk_events(timeout=10, **kwargs):
        sequence.append((event, node.name))
        if event is EventType.NEW_DATA and node.type.value == "channel":
            chunks = data.setdefault(node.name, [])
            assert event_data.first_index == sum(len(c) for c in chunks)
            chunks.append(event_data.data)
    return data, sequence


def _until_idle(session_node):
    out = []
    try:
        for item in session_node.walk_events(timeout=0.3, poll_interval=0.05):
            out.append(item)
    except EventTimeout:
        pass
    return out


@pytest.fixture
def publisher(redis_url):
    with Publisher("sess", redis_url, lease=2.0, retention=60) as pub:
        yield pub


DTYPES = ["bool", "int8", "<u2", ">i4", "<u8", "<f4", ">f8", "<c16", "S4", "<M8[ms]",
          [("x", "<f4"), ("flag", "u1")]]


def test_every_dtype_and_shape_round_trips_bit_exact(publisher, redis_url):
    rng = np.random.default_rng(7)
    sent = {}
    with publisher.create_scan({"title": "dtypes"}) as scan:
        for i, dtype in enumerate(DTYPES):
            for shape in [(), (3,), (2, 2)]:
                name = f"c{i}_{len(shape)}"
                dt = np.dtype(dtype)
                scan.add_channel(name, dt, shape)
                nbytes = 5 * dt.itemsize * int(np.prod(shape))
                block = rng.integers(0, 256, nbytes, dtype=np.uint8).view(dt)
                sent[name] = block.reshape((5,) + shape)
        scan.add_channel("ragged", "<i2", (-1,))
        scan.prepare()
        scan.send({name: arr[0:3] for name, arr in sent.items()})
        scan.send({name: arr[3:5] for name, arr in sent.items()})
        ragged = [np.arange(n, dtype="<i2") for n in (4, 0, 2)]
        scan.send({"ragged": ragged})
    received, _ = _collect(get_scan_node(scan.key, redis_url))
    for name, arr in sent.items():
        blocks = received[name]
        assert all(block.dtype == arr.dtype for block in blocks)
        assert [block.shape for block in blocks] == [(3,) + arr.shape[1:], (2,) + arr.shape[1:]]
        assert b"".join(block.tobytes() for block in blocks) == arr.tobytes()
    assert [b.tolist() for b in received["ragged"][0]] == [r.tolist() for r in ragged]


def test_events_come_in_model_order_with_end_reason(publisher, redis_url):
    scan = publisher.create_scan({"title": "order", "acquisition_chain": {"timer": {}, "p201": {}}})
    scan.add_channel("t", "f8", subscan="timer")
    scan.add_lima("cam", directory="/tmp/x", prefix="cam_", dtype="u2", shape=(4, 4),
                  subscan="p201")
    scan.prepare()
    scan.send({"t": [0.1, 0.2]})
    scan.update_lima("cam", 1, 0)
    scan.end(EndReason.ABORTED, "stopped by user")
    node = get_scan_node(scan.key, redis_url)
    events = list(node.walk_events(timeout=5))
    kinds = [(e.value, n.name) for e, n, _ in events]
    assert kinds == [("NEW_NODE", "timer"), ("NEW_NODE", "p201"), ("NEW_NODE", "t"),
                     ("NEW_NODE", "cam"), ("PREPARED_SCAN", node.name), ("NEW_DATA", "t"),
                     ("NEW_DATA", "cam"), ("END_SCAN", node.name)]
    assert events[-2][2].data == LimaProgress(1, 0)
    assert events[-1][2].reason is EndReason.ABORTED
    assert events[-1][2].message == "stopped by user"
    assert events[2][1].subscan == "timer" and events[3][1].subscan == "p201"
    assert node.end_reason is EndReason.ABORTED


def test_lima_references_are_computed(publisher, redis_url):
    scan = publisher.create_scan({})
    scan.add_lima("cam", directory="/data/id00/cam", prefix="scan0001_", suffix=".h5",
                  frames_per_file=10, first_file_number=2)
    scan.end()
    cam = get_scan_node(scan.key, redis_url).nodes()["cam"]
    ref = cam.image_reference(25)
    assert ref.filename == "/data/id00/cam/scan0001_0004.h5"
    assert ref.index_in_file == 5 and ref.path_in_file == "/entry_0000/measurement/data"


def test_scan_info_is_read_back_as_a_dict(publisher, redis_url):
    info = {"title": "ascan samy 0 1 10 0.1", "npoints": np.int64(11),
            "positioners": {"samy": [0.0, 1.0]}, "arr": np.arange(3.0)}
    scan = publisher.create_scan(info)
    scan.end()
    node = get_scan_node(scan.key, redis_url)
    assert node.info["title"] == "ascan samy 0 1 10 0.1"
    assert node.info["npoints"] == 11 and node.info["arr"] == [0.0, 1.0, 2.0]
    assert node.info["positioners"] == {"samy": [0.0, 1.0]}


@pytest.mark.slow
def test_slow_reader_loses_nothing_of_a_million_points(publisher, redis_url):
    n, block = 1_000_000, 1000
    values = np.arange(n, dtype="f8")
    scan = publisher.create_scan({"title": "long"})
    scan.add_channel("x", "f8")
    scan.prepare()
    node = get_scan_node(scan.key, redis_url)
    received = []
    errors = []

    def slow_reader():
        try:
            for event, _, data in node.walk_events(timeout=30):
                if event is EventType.NEW_DATA:
                    received.append(data.data.copy())
                    if len(received) % 100 == 0:
                        time.sleep(0.01)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=slow_reader)
    thread.start()
    try:
        for start in range(0, n, block):
            scan.send({"x": values[start:start + block]})
        scan.end()
    finally:
        thread.join(60)
    assert not errors
    assert np.array_equal(np.concatenate(received), values)


def test_from_next_skips_old_scans_and_catches_new_ones(publisher, redis_url):
    old = publisher.create_scan({"title": "old"})
    old.end()
    session = get_session_node("sess", redis_url)
    walk = session.walk_on_new_events(include_filter="scan", from_next=True, timeout=5)
    new = publisher.create_scan({"title": "new"})
    event, node, _ = next(walk)
    assert event is EventType.NEW_NODE and node.key == new.key and node.info["title"] == "new"
    new.end(EndReason.SUCCESS)
    event, node, data = next(walk)
    assert event is EventType.END_SCAN and node.key == new.key
    assert data.reason is EndReason.SUCCESS
    walk.close()
    replay = [(e, n.key) for e, n, _ in _until_idle(session)]
    assert replay[0] == (EventType.NEW_NODE, old.key)


def test_filters_select_node_types(publisher, redis_url):
    scan = publisher.create_scan({})
    scan.add_channel("a", "f8")
    scan.add_lima("cam", directory="/d", prefix="p")
    scan.send({"a": [1.0]})
    scan.update_lima("cam", 0, 0)
    scan.end()
    node = get_scan_node(scan.key, redis_url)
    names = {(e.value, n.name) for e, n, _ in node.walk_events(include_filter="lima", timeout=5)}
    assert ("NEW_NODE", "cam") in names and ("NEW_DATA", "cam") in names
    assert not any(name == "a" for _, name in names)
    walk = node.walk_events(exclude_filter=["lima", "subscan"], timeout=5)
    names = {n.name for e, n, _ in walk}
    assert "cam" not in names and "a" in names and "main" not in names
    with pytest.raises(ValueError, match="unknown node types.*planet"):
        next(node.walk_events(include_filter="planet"))


def test_walk_honours_stop_handle_and_timeout(publisher, redis_url):
    scan = publisher.create_scan({})
    node = get_scan_node(scan.key, redis_url)
    stop = threading.Event()
    walk = node.walk_events(stop=stop, poll_interval=0.05)
    assert next(walk)[0] is EventType.NEW_NODE
    stop.set()
    t0 = time.monotonic()
    assert list(walk) == []
    assert time.monotonic() - t0 < 0.5
    t0 = time.monotonic()
    with pytest.raises(EventTimeout, match="within 0.2 s"):
        list(node.walk_events(timeout=0.2, poll_interval=0.05))
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(ValueError, match="timeout must be a number"):
        list(node.walk_events(timeout="soon"))
    scan.end()


READER_SCRIPT = textwrap.dedent("""
    import json, sys
    from nexus_writer_service.data import get_scan_node, EventType
    url, key, position, out = sys.argv[1:5]
    node = get_scan_node(key, url)
    with open(out, "a") as f:
        for event, n, data in node.walk_events(from_position=position or None, timeout=20):
            if event is EventType.NEW_DATA:
                f.write(json.dumps([data.position, data.first_index, data.data.tolist()]) + "\\n")
                f.flush()
""")


@pytest.mark.slow
def test_reader_killed_and_restarted_resumes_without_loss_or_duplicates(
        publisher, redis_url, tmp_path):
    scan = publisher.create_scan({})
    scan.add_channel("x", "i8")
    out = tmp_path / "read.jsonl"
    argv = [sys.executable, "-c", READER_SCRIPT, redis_url, scan.key, "", str(out)]
    reader = subprocess.Popen(argv)
    try:
        for i in range(200):
            scan.send({"x": [i]})
        deadline = time.monotonic() + 20
        while (not out.exists() or out.read_text().count("\n") < 50) and \
                time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        reader.kill()
        reader.wait()
    lines = out.read_text().splitlines()
    complete = [json.loads(line) for line in lines if line.endswith("]")]
    out.write_text("".join(json.dumps(r) + "\n" for r in complete))
    last_position = complete[-1][0]
    for i in range(200, 300):
        scan.send({"x": [i]})
    scan.end()
    argv[-2] = last_position
    subprocess.run(argv, check=True, timeout=60)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r[1] for r in rows] == list(range(300))
    assert [r[2] for r in rows] == [[i] for i in range(300)]


def test_merged_blocks_give_the_same_points_and_positions_safe_to_resume_from(
        publisher, redis_url):
    rng = np.random.default_rng(3)
    sent = {"a": rng.random(3000), "b": rng.integers(0, 9, (3000, 2)).astype("u2")}
    ragged = [np.arange(i % 5, dtype="i4") for i in range(3000)]
    with publisher.create_scan({"title": "merge"}) as scan:
        scan.add_channel("a", "f8")
        scan.add_channel("b", "u2", (2,))
        scan.add_channel("r", "i4", (-1,))
        scan.prepare()
        for first in range(0, 3000, 7):  # 429 entries of 7 points
            scan.send({"a": sent["a"][first:first + 7], "b": sent["b"][first:first + 7],
                       "r": ragged[first:first + 7]})
        scan.add_channel("late", "f8")
        scan.send({"late": [1.0]})
    node = get_scan_node(scan.key, redis_url)
    plain = list(node.walk_events(timeout=10))
    merged = list(node.walk_events(timeout=10, merge_blocks=True))
    data_events = [e for e in merged if e[0] is EventType.NEW_DATA]
    # one event per channel and read, in the order the channels first appear
    names = [n.name for _, n, _ in data_events]
    assert names[-1] == "late" and names[:-1] == ["a", "b", "r"] * (len(names) // 3)
    assert len(names) < 3 * 429 // 10
    assert len([e for e in plain if e[0] is EventType.NEW_DATA]) == 3 * 429 + 1
    assert [(e, n.name) for e, n, _ in merged if e is not EventType.NEW_DATA] == \
        [(e, n.name) for e, n, _ in plain if e is not EventType.NEW_DATA]
    got: dict[str, list] = {}
    for _, n, d in data_events:
        assert d.first_index == sum(len(part) for part in got.get(n.name, []))
        got.setdefault(n.name, []).append(d.data)
    assert np.concatenate(got["a"]).tobytes() == sent["a"].tobytes()
    b = np.concatenate(got["b"])
    assert b.dtype == np.dtype("u2") and np.array_equal(b, sent["b"])
    assert [p.tolist() for part in got["r"] for p in part] == [p.tolist() for p in ragged]
    # resuming from any event's position never skips a point of any channel
    for _, resume_node, resume_data in data_events[:3]:
        seen: dict[str, int] = {}
        for event, n, d in node.walk_events(timeout=10, from_position=resume_data.position,
                                            merge_blocks=True):
            if event is EventType.NEW_DATA:
                seen.setdefault(n.name, d.first_index)
        done = {n.name: d.last_index for _, n, d in data_events[:data_events.index(
            (EventType.NEW_DATA, resume_node, resume_data)) + 1]}
        for name in ("a", "b", "r"):
            assert seen.get(name, 3000) <= done.get(name, 0), (resume_node.name, name, seen)


def test_merged_blocks_are_given_out_in_pieces_of_bounded_size(publisher, redis_url):
    from nexus_writer_service.data.parser import MERGE_BYTES
    with publisher.create_scan({"title": "big"}) as scan:
        scan.add_channel("x", "f8", (1000,))
        block = np.ones((100, 1000))
        for _ in range(10):  # 8 MB in 10 entries: one page
            scan.send({"x": block})
    node = get_scan_node(scan.key, redis_url)
    sizes = [d.data.nbytes for e, _, d in node.walk_events(timeout=10, merge_blocks=True)
             if e is EventType.NEW_DATA]
    assert sum(sizes) == 10 * block.nbytes
    assert len(sizes) > 1 and max(sizes) <= MERGE_BYTES + block.nbytes


PUBLISHER_SCRIPT = textwrap.dedent("""
    import sys, time
    from nexus_writer_service.data import Publisher
    pub = Publisher("sess", sys.argv[1], lease=1.0)
    scan = pub.create_scan({"title": "doomed"})
    scan.add_channel("x", "f8")
    scan.send({"x": [1.0, 2.0]})
    print(scan.key, flush=True)
    time.sleep(600)
""")


@pytest.mark.slow
def test_publisher_sigkill_ends_scan_with_publisher_lost_within_lease(redis_url):
    session = get_session_node("sess", redis_url)
    walk = session.walk_on_new_events(from_next=True, timeout=20, poll_interval=0.1)
    process = subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT, redis_url],
                               stdout=subprocess.PIPE, text=True)
    try:
        key = process.stdout.readline().strip()
        event, scan, _ = next(walk)
        assert event is EventType.NEW_NODE and scan.key == key
        os.kill(process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        event, scan, data = next(walk)
        assert event is EventType.END_SCAN and data.reason is EndReason.PUBLISHER_LOST
        assert time.monotonic() - killed_at < 1.0 + 0.5
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        walk.close()
    events = list(get_scan_node(key, redis_url).walk_events(timeout=5))
    assert events[-1][2].reason is EndReason.PUBLISHER_LOST
    # the reader cannot tell a dead publisher from one cut off from Redis: it names both
    assert "stopped renewing its lease of 1 s" in events[-1][2].message
    assert "died or hung, or it could not reach Redis" in events[-1][2].message
    points = [e[2].data for e in events if e[0] is EventType.NEW_DATA]
    assert np.array_equal(np.concatenate(points), [1.0, 2.0])


def test_two_sessions_never_see_each_others_scans(redis_url):
    with Publisher("alpha", redis_url) as pa, Publisher("beta", redis_url) as pb:
        keys_a = {pa.create_scan({}).key for _ in range(3)}
        keys_b = {pb.create_scan({}).key for _ in range(3)}
        seen_a = {n.key for e, n, _ in _until_idle(get_session_node("alpha", redis_url))}
        seen_b = {n.key for e, n, _ in _until_idle(get_session_node("beta", redis_url))}
    assert seen_a == keys_a and seen_b == keys_b


def test_ended_scan_keys_expire_after_retention(redis_url, redis_client):
    with Publisher("sess", redis_url, retention=1) as pub:
        scan = pub.create_scan({})
        scan.add_channel("x", "f8")
        scan.send({"x": [1.0]})
        assert redis_client.ttl(scan.key) == -1
        scan.end()
        assert 0 < redis_client.ttl(scan.key) <= 1
        assert 0 < redis_client.ttl(scan.keys.events) <= 1
    deadline = time.monotonic() + 5
    while redis_client.exists(scan.key) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(NodeNotFoundError, match="retention"):
        get_scan_node(scan.key, redis_url).info


def test_acknowledged_data_is_trimmed_and_unacknowledged_kept(redis_url, redis_client):
    session = get_session_node("sess", redis_url)
    session.register_reader("writer")
    with Publisher("sess", redis_url, lease=1.0) as pub:
        scan = pub.create_scan({})
        scan.add_channel("x", "f8")
        for i in range(10):
            scan.send({"x": [float(i)]})
        node = get_scan_node(scan.key, redis_url)
        pub.trim()
        assert redis_client.xlen(scan.keys.events) == 12  # nothing acknowledged yet
        walk = node.walk_events(ack_as="writer", timeout=5)
        seen = [next(walk) for _ in range(12)]
        for i in range(10, 20):
            scan.send({"x": [float(i)]})
        seen.append(next(walk))  # the reader acknowledges its first batch
        pub.trim()
        assert redis_client.xlen(scan.keys.events) < 12
        with pytest.raises(DataLostError, match="trimmed"):
            next(node.walk_events(timeout=1))
        rest = []
        scan.end()
        rest = list(walk)
    values = [d.data[0] for e, _, d in seen + rest if e is EventType.NEW_DATA]
    assert values == [float(i) for i in range(20)]
    session.unregister_reader("writer")


def test_published_scan_refuses_bad_use(publisher):
    scan = publisher.create_scan({"acquisition_chain": {"timer": {}}})
    scan.add_channel("x", "f8")
    with pytest.raises(ValueError, match="'x' is already declared"):
        scan.add_channel("x", "f8")
    with pytest.raises(ValueError, match="'nope' is not declared"):
        scan.send({"nope": [1]})
    with pytest.raises(ValueError, match="unknown subscan 'p201'"):
        scan.add_channel("y", "f8", subscan="p201")
    with pytest.raises(TypeError, match="Python objects"):
        scan.add_channel("z", object)
    with pytest.raises(ValueError, match="file_format 'tiff'"):
        scan.add_lima("cam", directory="/d", prefix="p", file_format="tiff")
    with pytest.raises(ValueError, match="PUBLISHER_LOST is reserved"):
        scan.end(EndReason.PUBLISHER_LOST)
    scan.end()
    with pytest.raises(ScanStateError, match="already ended"):
        scan.send({"x": [1.0]})
    assert scan.end() is False


def test_bad_arguments_name_the_argument(redis_url, monkeypatch):
    with pytest.raises(ConfigurationError, match="invalid session name 'a b'"):
        Publisher("a b", redis_url)
    with pytest.raises(ConfigurationError, match="lease"):
        Publisher("s", redis_url, lease=0)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        get_session_node("s")
    with pytest.raises(ConfigurationError, match="expected redis://"):
        get_session_node("s", "http://localhost")
    with Publisher("s", redis_url) as pub:
        with pytest.raises(TypeError, match="scan_info must be a dict"):
            pub.create_scan(["not", "a", "dict"])
        with pytest.raises(TypeError, match="cannot store a object"):
            pub.create_scan({"x": object()})


def test_foreign_and_corrupt_keys_name_the_key(redis_url, redis_client):
    redis_client.set("nws:other:scans", "a string")
    with pytest.raises(ForeignKeyError, match="nws:other:scans"):
        next(get_session_node("other", redis_url).walk_events(timeout=1))
    with Publisher("sess", redis_url) as pub:
        scan = pub.create_scan({})
        scan.add_channel("x", "f8")
        redis_client.xadd(scan.keys.events, {"t": "data", "d9": b"12345678", "f9": "0"})
        with pytest.raises(MalformedEventError,
                           match=r"scan:1:events entry .*undeclared channel #9"):
            list(get_scan_node(scan.key, redis_url).walk_events(timeout=1))
    redis_client.hset(scan.key, "scan_info", "{broken")
    with pytest.raises(MalformedEventError, match="scan_info of nws:sess:scan:1"):
        get_scan_node(scan.key, redis_url).info
    with pytest.raises(NodeNotFoundError, match="nws:sess:scan:99"):
        list(get_scan_node("nws:sess:scan:99", redis_url).walk_events(timeout=1))
    with pytest.raises(ConfigurationError, match="not a scan key"):
        get_scan_node("foo:bar", redis_url)


def test_gap_in_a_channel_is_reported(redis_url, redis_client):
    with Publisher("sess", redis_url) as pub:
        scan = pub.create_scan({})
        scan.add_channel("x", "f8")
        scan.send({"x": [1.0]})
        index = 1  # the channel's index after the subscan
        redis_client.xadd(scan.keys.events, encode_data([(index, 5, np.zeros(1).tobytes(),
                                                          None)]))
        with pytest.raises(MalformedEventError, match="starts at point 5, expected 1 .gap"):
            list(get_scan_node(scan.key, redis_url).walk_events(timeout=1))


@pytest.mark.parametrize("key, value", [("nws:sess:readers", "not a set"),
                                        ("nws:sess:scan_counter", "abc")])
def test_foreign_session_keys_are_named_when_creating_a_scan(redis_url, redis_client, key, value):
    redis_client.set(key, value)
    with Publisher("sess", redis_url) as pub:
        with pytest.raises(ForeignKeyError, match=key):
            pub.create_scan({})


def test_a_reader_caught_up_waits_read_interval_and_a_reader_behind_reads_on(redis_client):
    """After a page that is not full, the next read waits ``read_interval`` (a stream
    written to all the time is read in pages of some size); after a full page it
    comes at once."""
    from nexus_writer_service.data.reader import FIRST_BATCH, read_raw_pages
    key, interval = "interval_test", 0.3
    for i in range(FIRST_BATCH + 3):
        redis_client.xadd(key, {"i": i})
    pages = read_raw_pages(redis_client, key, "0-0", stop=None, timeout=10,
                           poll_interval=0.05, read_interval=interval)
    times, sizes = [], []
    for page in pages:
        times.append(time.monotonic())
        sizes.append(len(page))
        if len(sizes) == 2:  # caught up: the next entry comes while the reader waits
            redis_client.xadd(key, {"i": "late"})
        if len(sizes) == 3:
            break
    pages.close()
    assert sizes == [FIRST_BATCH, 3, 1]
    assert times[1] - times[0] < interval / 2, "a full page: the next read at once"
    assert times[2] - times[1] >= interval * 0.9, "caught up: the next read waits"


def test_data_after_many_declarations_is_read_in_pages_of_bounded_size(
        publisher, redis_url, monkeypatch):
    """Hundreds of small channel declarations, then entries a thousand times
    larger: the first read after the declarations asks for a few entries, not as
    many as the size of the declarations would allow, so no page holds the whole
    scan in memory at once."""
    from nexus_writer_service.data import _fast_redis
    from nexus_writer_service.data.parser import PAGE_BYTES, PROBE_BATCH
    nch, entries = 200, 30
    block = np.ones((512, 1))  # 4 KiB per channel and entry: 800 KiB per entry
    with publisher.create_scan({"title": "wide"}) as scan:
        for i in range(nch):
            scan.add_channel(f"c{i}", "f8", (1,))
        for _ in range(entries):
            scan.send({f"c{i}": block for i in range(nch)})
    pages: list[int] = []
    raw_xread = _fast_redis.raw_xread

    def measured(client):
        read = raw_xread(client)

        def xread(*args):
            page = read(*args)
            pages.append(sum(len(v) for _, fields in page for v in fields))
            return page
        return xread

    monkeypatch.setattr(_fast_redis, "raw_xread", measured)
    node = get_scan_node(scan.key, redis_url)
    points = sum(len(d.data) for e, n, d in node.walk_events(timeout=10, merge_blocks=True)
                 if e is EventType.NEW_DATA)
    assert points == nch * entries * len(block)
    entry = nch * block.nbytes
    assert entries * entry > 2 * PAGE_BYTES > max(pages), "never the whole scan at once"
    assert max(pages) <= max(PROBE_BATCH * entry, PAGE_BYTES + entry)
    assert len(pages) < nch // PROBE_BATCH + entries, "data pages of many entries each"


def test_many_channels_behind_get_blocks_merged_over_several_pages(
        publisher, redis_url, monkeypatch):
    """A reader behind a scan of many channels merges each channel's blocks over
    several pages (while more entries wait), into fewer, larger blocks."""
    from nexus_writer_service.data import parser
    monkeypatch.setattr(parser, "PAGE_BYTES", 256 << 10)
    monkeypatch.setattr(parser, "MERGE_MOST_BYTES", 1 << 20)
    nch, entries = 64, 64
    block = np.arange(16.0)  # 128 B per channel and entry: 8 KiB per entry
    with publisher.create_scan({"title": "wide"}) as scan:
        for i in range(nch):
            scan.add_channel(f"c{i}", "f8")
        for k in range(entries):
            scan.send({f"c{i}": block + k * len(block) for i in range(nch)})
    node = get_scan_node(scan.key, redis_url)
    data, _ = _collect(node, merge_blocks=True)
    assert set(data) == {f"c{i}" for i in range(nch)}
    for chunks in data.values():
        np.testing.assert_array_equal(np.concatenate(chunks), np.arange(entries * 16.0))
        # one page is 256 KiB / 64 channels = 4 KiB per channel; held over pages,
        # a channel's blocks reach MERGE_CHANNEL_BYTES or the 1 MiB in all
        assert max(c.nbytes for c in chunks) > 4096


def test_blocks_held_over_a_full_page_come_out_when_the_stream_pauses(
        publisher, redis_url, redis_client):
    """The scan pauses right after a full page: what the reader holds is given out
    at the next read that finds nothing, while the scan is still running."""
    from nexus_writer_service.data.parser import PROBE_BATCH
    scan = publisher.create_scan({"title": "paused"})
    scan.add_channel("x", "f8")
    sent = 0
    while redis_client.xlen(scan.keys.events) < PROBE_BATCH:
        scan.send({"x": [float(sent)]})
        sent += 1
    assert redis_client.xlen(scan.keys.events) == PROBE_BATCH  # the first page, full
    node = get_scan_node(scan.key, redis_url)
    received: list[float] = []
    started = time.monotonic()
    walk = node.walk_events(merge_blocks=True, poll_interval=0.05, timeout=5)
    for event, _, event_data in walk:
        if event is EventType.NEW_DATA:
            received.extend(event_data.data.tolist())
        if len(received) == sent:
            break
    walk.close()
    assert received == [float(i) for i in range(sent)]
    assert time.monotonic() - started < 2, "given out at the first idle read"
    scan.end()
