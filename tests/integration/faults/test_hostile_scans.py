"""Hostile and malformed scans published into a session a real writer listens to.

Each test starts one real ``NexusSessionWriter`` (in the test's main thread, real
Redis, real files under ``tmp_path``) and a *bystander*: a normal scan published
with the public ``Publisher`` that runs while the hostile examples are written, one
point per example. Hypothesis then publishes malformed scans into the same
session, most of them written entry by entry with raw redis-py commands (the
product's own encoders build the valid parts). Every example must end with its
scan in FAULT, with a reason that names the channel, field or stream entry at
fault, or written correctly; the session writer stays ON, and at the end the
bystander and one scan published after all the hostile ones are written
completely and bit-exact.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nexus_writer_service.data import EndReason, Publisher, ScanPublisher
from nexus_writer_service.data import codec
from nexus_writer_service.data.events import (
    NodeType,
    encode_data,
    encode_end,
    encode_node,
    encode_prepared,
    encode_session_new,
)
from nexus_writer_service.data.keys import ScanKeys, SessionKeys
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import NexusSessionWriter, ScanRecord, SubscriberState
from tests.writer_support import session_writer, wait_until

SESSION = "hostile"
TIME = "timer:elapsed_time"
DIODE = "diode:diode1"
OPTIONS = SaveOptions(flush_period=0.05, required_disk_space=0, recommended_disk_space=0)


def examples(n: int) -> settings:
    """Hypothesis settings for examples that each publish and write a scan."""
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def info_for(filename: Path, npoints: int = 4, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "title": f"hostile {npoints}", "npoints": npoints, "filename": str(filename),
        "acquisition_chain": {"timer": {"master": {"scalars": [TIME]},
                                        "scalars": [DIODE]}},
    }
    info.update(extra)
    return info


# -- raw scans: every entry written with redis-py ------------------------------------


class RawScan:
    """A scan written key by key with redis-py, so any entry can be malformed.

    The valid parts use the product's encoders; ``entry`` appends anything to the
    scan's stream. ``lease_ms=None`` creates no lease: the scan's publisher is gone.
    """

    def __init__(self, client: redis.Redis, session: str, number: int, info: Any, *,
                 meta: Mapping[str, Any] | None = None, lease_ms: int | None = 60_000):
        self.client = client
        self.session_keys = SessionKeys(session)
        self.keys: ScanKeys = self.session_keys.scan(int(client.incr(self.session_keys.counter)))
        raw_info = info if isinstance(info, bytes) else codec.to_json(info)
        fields: dict[str, Any] = {"name": "raw", "number": number, "session": session,
                                  "scan_info": raw_info, "retention": 60, "lease": 2}
        fields.update(meta or {})
        if lease_ms is not None:
            client.set(self.keys.lease, b"1", px=lease_ms)
        client.hset(self.keys.info, mapping=fields)
        self.nindex = 0
        self.declare("timer", NodeType.SUBSCAN, {"index": 1})
        client.xadd(self.session_keys.stream,
                    encode_session_new(self.keys.base, "raw", number))

    @property
    def key(self) -> str:
        return self.keys.base

    def declare(self, name: str, node_type: NodeType, info: Mapping[str, Any]) -> int:
        index = self.nindex
        fields = encode_node(name, node_type, index, info)
        self.client.hset(self.keys.nodes, name,
                         fields[b"y"] + b"|" + fields[b"x"] + b"|" + fields[b"i"])
        self.client.xadd(self.keys.events, fields)
        self.nindex += 1
        return index

    def channel(self, name: str, dtype: Any, shape: Sequence[int] = ()) -> int:
        return self.declare(name, NodeType.CHANNEL, {
            "dtype": codec.dtype_to_text(dtype), "shape": list(shape), "subscan": "timer"})

    def data(self, index: int, first: int, raw: bytes) -> None:
        """One block of fixed-size points, encoded as the publisher does."""
        self.entry(encode_data([(index, first, raw, None)]))

    def prepare(self) -> None:
        self.entry(encode_prepared())

    def entry(self, fields: Mapping[bytes, bytes]) -> None:
        self.client.xadd(self.keys.events, dict(fields))

    def end(self, reason: EndReason = EndReason.SUCCESS) -> None:
        self.entry(encode_end(reason))
        self.client.hset(self.keys.info, "end_reason", reason.value)
        self.client.delete(self.keys.lease)


# -- the session under attack ---------------------------------------------------------


@dataclass
class Bystander:
    """A normal scan running beside the hostile ones, one point per example."""

    scan: ScanPublisher
    filename: Path
    sent: dict[str, list[float]] = field(default_factory=lambda: {TIME: [], DIODE: []})

    def step(self) -> None:
        n = len(self.sent[TIME])
        point = {TIME: n * 0.5, DIODE: math.sin(n) * 1e3}
        self.scan.send({name: [value] for name, value in point.items()})
        for name, value in point.items():
            self.sent[name].append(value)


@dataclass
class Session:
    writer: NexusSessionWriter
    publisher: Publisher
    client: redis.Redis
    root: Path
    bystander: Bystander
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(2))

    def new_file(self) -> tuple[int, Path]:
        number = next(self.numbers)
        return number, self.root / f"scan{number}.h5"

    def raw_scan(self, info: Any = None, **kwargs: Any) -> tuple[RawScan, Path]:
        number, filename = self.new_file()
        scan = RawScan(self.client, SESSION, number,
                       info_for(filename) if info is None else info, **kwargs)
        return scan, filename

    def record(self, key: str, timeout: float = 60.0) -> ScanRecord:
        """The record of scan ``key`` once its writer has finished; the session goes on."""
        def finished() -> bool:
            return any(r.key == key and r.writer.done() for r in self.writer.scans())
        wait_until(lambda: finished() or self.writer.done(), timeout,
                   f"scan {key} written")
        assert self.writer.state is SubscriberState.ON, self.writer.state_reason
        if not self.bystander.scan.ended:
            self.bystander.step()
        return next(r for r in self.writer.scans() if r.key == key)


@contextlib.contextmanager
def hostile_session(redis_url: str, root: Path) -> Iterator[Session]:
    """A session writer, a publisher and a bystander scan; at the end, the bystander
    and a scan published after every hostile one must be written completely."""
    client = redis.Redis.from_url(redis_url)
    try:
        with session_writer(redis_url, SESSION, OPTIONS, poll_interval=0.05) as writer:
            with Publisher(SESSION, redis_url, lease=2.0, retention=60) as publisher:
                filename = root / "bystander.h5"
                scan = publisher.create_scan(info_for(filename, 0), name="bystander",
                                             number=1)
                scan.add_channel(TIME, "float64", subscan="timer", unit="s")
                scan.add_channel(DIODE, "float64", subscan="timer")
                scan.prepare()
                session = Session(writer, publisher, client, root, Bystander(scan, filename))
                yield session
                scan.end()
                check_bystander(session)
                check_scan_after(session)
    finally:
        client.close()


def check_bystander(session: Session) -> None:
    bystander = session.bystander
    record = session.record(bystander.scan.key)
    assert record.state is SubscriberState.OFF, record.as_dict()
    assert record.writer.status.value == "SUCCEEDED", record.as_dict()
    for name, values in bystander.sent.items():
        written = channel_data(bystander.filename, "1.1", name)
        np.testing.assert_array_equal(written, np.array(values), err_msg=name)
    assert entry_status(bystander.filename, "1.1") == "SUCCEEDED"


def check_scan_after(session: Session) -> None:
    number, filename = session.new_file()
    scan = session.publisher.create_scan(info_for(filename, 5), name="after", number=number)
    scan.add_channel(TIME, "float64", subscan="timer")
    scan.add_channel(DIODE, "float64", subscan="timer")
    scan.prepare()
    sent = {TIME: np.arange(5) * 0.1, DIODE: np.arange(5.0) ** 2}
    scan.send(sent)
    scan.end()
    record = session.record(scan.key)
    assert record.state is SubscriberState.OFF, record.as_dict()
    for name, values in sent.items():
        np.testing.assert_array_equal(channel_data(filename, f"{number}.1", name), values)


# -- reading files back ---------------------------------------------------------------


def channel_dataset(h5: h5py.File, entry: str, channel: str) -> h5py.Dataset:
    """The dataset the writer made for ``channel`` (found by its ``channel`` attribute)."""
    found: list[h5py.Dataset] = []

    def visit(_: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and text(obj.attrs.get("channel", "")) == channel:
            found.append(obj)

    h5[f"{entry}/instrument"].visititems(visit)
    assert len(found) == 1, f"{channel}: {[d.name for d in found]}"
    return found[0]


def channel_data(filename: Path, entry: str, channel: str) -> np.ndarray:
    with h5py.File(filename, "r", locking=False) as h5:
        return channel_dataset(h5, entry, channel)[()]


def entry_status(filename: Path, entry: str) -> str:
    with h5py.File(filename, "r", locking=False) as h5:
        return text(h5[f"{entry}/writer/status"][()])


def assert_fault(record: ScanRecord, *words: str) -> str:
    """FAULT, with every one of ``words`` in the reason; the file (if any) says FAILED."""
    assert record.state is SubscriberState.FAULT, record.as_dict()
    reason = record.writer.state_reason
    for word in words:
        assert word in reason, (word, reason)
    if record.writer.filename and Path(record.writer.filename).exists():
        for entry in record.writer.entries:
            assert entry_status(Path(record.writer.filename), entry) == "FAILED"
    return reason


# -- strategies -----------------------------------------------------------------------

DTYPES = ["float64", "float32", "int32", "uint16", "int64", "complex64", "int8"]
dtypes = st.sampled_from(DTYPES).map(np.dtype)
point_shapes = st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple)


def _float_bits(dtype: np.dtype, specials: Sequence[int]) -> st.SearchStrategy[Any]:
    bits = dtype.itemsize * 8
    return st.one_of(st.integers(0, 2**bits - 1), st.sampled_from(specials))


def float_points(dtype: str) -> st.SearchStrategy[np.ndarray]:
    """Points whose bit patterns are often NaN (any payload, both signs), inf, -0.0 or
    subnormal: every pattern is valid data and must come back unchanged."""
    dt = np.dtype(dtype)
    bits = dt.itemsize * 8
    mant = {16: 10, 32: 23, 64: 52}[bits]
    exp_all = ((1 << (bits - 1 - mant)) - 1) << mant
    sign = 1 << (bits - 1)
    specials = [exp_all, exp_all | sign, exp_all | 1, exp_all | (1 << (mant - 1)),
                exp_all | sign | 12345, exp_all | ((1 << mant) - 1), sign, 1, sign | 1]
    unsigned = np.dtype(f"<u{dt.itemsize}")
    shape = st.tuples(st.integers(1, 12)) | st.tuples(st.integers(1, 6), st.integers(1, 3))
    return hnp.arrays(unsigned, shape, elements=_float_bits(dt, specials)).map(
        lambda a: a.view(dt))


# -- A. data that does not match its declaration --------------------------------------


@pytest.mark.slow
def test_data_not_matching_the_declared_dtype_or_shape_faults_naming_the_channel(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        @examples(25)
        @given(dtype=dtypes, shape=point_shapes, good=st.integers(0, 3),
               wrong=st.sampled_from(DTYPES).map(np.dtype), count=st.integers(1, 7))
        def example(dtype: np.dtype, shape: tuple[int, ...], good: int, wrong: np.dtype,
                    count: int) -> None:
            point = dtype.itemsize * math.prod(shape)
            assume(point > 1)  # any number of bytes is a whole number of 1-byte points
            raw = np.ones(count, dtype=wrong).tobytes()
            if len(raw) % point == 0:
                raw += b"\0"  # a whole number of points would be indistinguishable
            scan, filename = session.raw_scan()
            index = scan.channel(DIODE, dtype, list(shape))
            scan.prepare()
            first = np.arange(good * math.prod(shape)).astype(dtype).reshape((good,) + shape)
            if good:
                scan.data(index, 0, first.tobytes())
            scan.data(index, good, raw)  # other dtype, or a point shape changed mid-scan
            scan.end()
            record = session.record(scan.key)
            assert_fault(record, repr(DIODE), f"{len(raw)} bytes", f"{point}-byte points",
                         scan.key)
            if good:
                entry = record.writer.entries[0]
                np.testing.assert_array_equal(channel_data(filename, entry, DIODE), first)

        example()


def test_publisher_refuses_data_it_cannot_store_exactly_naming_the_channel(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        number, filename = session.new_file()
        scan = session.publisher.create_scan(info_for(filename, 3), name="api", number=number)
        scan.add_channel(DIODE, "int32", shape=(2,), subscan="timer")
        scan.prepare()
        cases = [([[0.5, 1.0]], "int32"), ([[2**40, 1]], "int32"),
                 ([[1, 2, 3]], "shape"), (["a", "b"], "int32")]
        for data, word in cases:
            with pytest.raises(ValueError) as info:
                scan.send({DIODE: data})
            assert repr(DIODE) in str(info.value) and word in str(info.value), info.value
        scan.send({DIODE: np.array([[1, 2], [3, 4]], dtype=np.int16)})
        scan.end()
        record = session.record(scan.key)
        assert record.state is SubscriberState.OFF, record.as_dict()
        np.testing.assert_array_equal(channel_data(filename, f"{number}.1", DIODE),
                                      [[1, 2], [3, 4]])


BAD_SHAPES = st.one_of(
    st.lists(st.integers(-2**70, -1), min_size=1, max_size=3).filter(lambda s: s != [-1]),
    st.lists(st.integers(2**33, 2**80), min_size=1, max_size=2),
    st.lists(st.just(2**17), min_size=2, max_size=3),
    st.lists(st.just(1), min_size=32, max_size=40),
    st.lists(st.integers(0, 3), min_size=1, max_size=3).filter(lambda s: 0 in s),
    st.sampled_from(["abc", [2.5], [[1]], {"a": 1}, 7, [None], [True, "x"]]),
)
BAD_DTYPES = st.sampled_from(["|O", "<U4", "<m8[s]", "<M8[D]", "zz", "", [["a", "<f8"]],
                              [["a", "|O"]], "|V0", "|S0", 12])


@pytest.mark.slow
def test_impossible_channel_declarations_fault_naming_the_channel(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        @examples(30)
        @given(case=st.one_of(st.tuples(st.just("<f8"), BAD_SHAPES),
                              st.tuples(BAD_DTYPES, st.just([]))),
               data=st.booleans())
        def example(case: tuple[Any, Any], data: bool) -> None:
            dtype, shape = case
            scan, _ = session.raw_scan()
            index = scan.declare(DIODE, NodeType.CHANNEL,
                                 {"dtype": dtype, "shape": shape, "subscan": "timer"})
            scan.prepare()
            if data:
                scan.data(index, 0, b"\0" * 64)
            scan.end()
            reason = assert_fault(session.record(scan.key), repr(DIODE), scan.key)
            assert any(word in reason for word in ("shape", "dtype", "zero size")), reason

        example()


# -- A. points out of order, duplicated, or far away ----------------------------------


@pytest.mark.slow
def test_points_out_of_order_duplicated_or_far_away_fault_naming_the_channel(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        @examples(25)
        @given(good=st.integers(0, 6),
               first=st.one_of(st.integers(0, 12), st.integers(2**31, 2**62),
                               st.integers(-2**62, -1)))
        def example(good: int, first: int) -> None:
            if first == good:
                first += 1  # the only valid start
            scan, filename = session.raw_scan()
            index = scan.channel(DIODE, "float64")
            scan.prepare()
            sent = np.arange(good, dtype=np.float64) + 0.25
            if good:
                scan.data(index, 0, sent.tobytes())
            scan.data(index, first, np.ones(3).tobytes())
            scan.end()
            record = session.record(scan.key)
            if first < 0:
                words: tuple[str, ...] = ("negative first index", str(first))
            else:
                kind = "gap" if first > good else "duplicate"
                words = (repr(DIODE), f"starts at point {first}", f"expected {good}", kind)
            assert_fault(record, scan.key, *words)
            if good:
                np.testing.assert_array_equal(
                    channel_data(filename, record.writer.entries[0], DIODE), sent)

        example()


# -- A. NaN, inf and every other bit pattern -------------------------------------------


@pytest.mark.slow
def test_nan_inf_and_any_float_bit_pattern_are_written_bit_exact(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        @examples(25)
        @given(dtype=st.sampled_from(["<f8", "<f4", "<f2", ">f8"]), data=st.data())
        def example(dtype: str, data: st.DataObject) -> None:
            points = data.draw(float_points(dtype.replace(">", "<")))
            points = points.astype(dtype) if dtype.startswith(">") else points
            shape = points.shape[1:]
            blocks = data.draw(st.integers(1, 3))
            number, filename = session.new_file()
            scan = session.publisher.create_scan(info_for(filename, len(points)),
                                                 name="floats", number=number)
            scan.add_channel(DIODE, dtype, shape=shape, subscan="timer")
            scan.add_channel("mca:spectrum_det0", dtype, shape=(-1,), subscan="timer")
            scan.prepare()
            rows = [row.reshape(-1) for row in points]
            for part in np.array_split(np.arange(len(points)), blocks):
                if len(part):
                    scan.send({DIODE: points[part],
                               "mca:spectrum_det0": [rows[i] for i in part]})
            scan.end()
            record = session.record(scan.key)
            assert record.state is SubscriberState.OFF, record.as_dict()
            entry = f"{number}.1"
            with h5py.File(filename, "r", locking=False) as h5:
                written = channel_dataset(h5, entry, DIODE)[()]
                ragged = channel_dataset(h5, entry, "mca:spectrum_det0")[()]
            assert written.dtype == np.dtype(dtype) and written.shape == points.shape
            assert written.tobytes() == points.tobytes()
            width = max(len(r) for r in rows)
            assert ragged.shape == (len(rows), width)
            native = np.dtype(dtype).newbyteorder("=")
            for row, values in zip(ragged, rows):
                assert row.dtype.kind == "f" and row.itemsize == values.itemsize
                assert (row[:len(values)].astype(native).tobytes()
                        == values.astype(native).tobytes())

        example()


# -- A. text that is not UTF-8, metadata too deep or huge -----------------------------

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
valid_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
                     min_size=1, max_size=20)
#: What a publisher accepts as a node name: one line of any valid text.
name_text = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20)


@pytest.mark.slow
def test_text_that_is_not_utf8_faults_naming_the_field(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        @examples(25)
        @given(where=st.sampled_from(["scan name", "scan_info bytes", "scan_info text",
                                      "scan_info key", "channel name", "channel info"]),
               junk=st.binary(min_size=1, max_size=8).map(lambda b: b"\xff" + b),
               bad=st.builds(lambda a, s, b: a + s + b, valid_text, surrogates, valid_text))
        def example(where: str, junk: bytes, bad: str) -> None:
            _, filename = session.new_file()
            info = info_for(filename)
            meta: dict[str, Any] = {}
            raw_info: Any = info
            if where == "scan name":
                meta["name"] = junk
            elif where == "scan_info bytes":
                raw_info = codec.to_json(info)[:-1] + b',"title2":"' + junk + b'"}'
            elif where == "scan_info text":
                raw_info = json.dumps(dict(info, title=bad)).encode()
            elif where == "scan_info key":
                raw_info = json.dumps(dict(info, positioners={bad: 1.0})).encode()
            scan = RawScan(session.client, SESSION, 9, raw_info, meta=meta)
            if where == "channel name":
                scan.entry({b"t": b"node", b"n": b"diode:" + junk, b"y": b"channel",
                            b"x": b"1", b"i": b'{"dtype":"<f8","shape":[]}'})
            elif where == "channel info":
                scan.entry({b"t": b"node", b"n": DIODE.encode(), b"y": b"channel",
                            b"x": b"1", b"i": json.dumps({"dtype": "<f8", "shape": [],
                                                          "unit": bad}).encode()})
            scan.end()
            record = session.record(scan.key)
            if where.startswith("scan_info"):
                assert not filename.exists()
            words = {
                "scan name": ("name of scan", "not UTF-8"),
                "scan_info bytes": ("scan_info", "not valid JSON"),
                "scan_info text": ("scan_info", "['title']", "not valid Unicode"),
                "scan_info key": ("scan_info", "key at ['positioners']", "not valid Unicode"),
                "channel name": ("field 'n'", "not UTF-8"),
                "channel info": ("node info", "['unit']", "not valid Unicode"),
            }[where]
            assert_fault(record, scan.key, *words)

        example()


@pytest.mark.slow
def test_any_valid_unicode_in_names_units_and_scan_info_is_written_unchanged(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        @examples(20)
        @given(title=valid_text, unit=valid_text, suffix=name_text, note=valid_text)
        def example(title: str, unit: str, suffix: str, note: str) -> None:
            number, filename = session.new_file()
            name = f"ctl:{suffix}"
            info = info_for(filename, 2, title=title, comment={note: [note, 1.5]})
            scan = session.publisher.create_scan(info, name="unicode", number=number)
            scan.add_channel(name, "float64", subscan="timer", unit=unit)
            scan.prepare()
            scan.send({name: [1.0, 2.0]})
            scan.end()
            record = session.record(scan.key)
            assert record.state is SubscriberState.OFF, record.as_dict()
            with h5py.File(filename, "r", locking=False) as h5:
                entry = h5[f"{number}.1"]
                assert text(entry["title"][()]) == title
                dataset = channel_dataset(h5, f"{number}.1", name)
                assert text(dataset.attrs["units"]) == unit
                np.testing.assert_array_equal(dataset[()], [1.0, 2.0])
                stored = json.loads(text(entry["writer/scan_info"][()]))
            assert stored["comment"] == {note: [note, 1.5]} and stored["title"] == title

        example()


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.slow
def test_scan_info_nested_too_deep_faults_and_large_scan_info_is_written(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        cases = {
            "arrays 100000 deep": b"[" * 100_000 + b"]" * 100_000,
            "objects 500 deep": json.dumps(nested(500)).encode(),
            "objects 65 deep": json.dumps(dict(info_for(tmp_path / "x.h5"),
                                               deep=nested(65))).encode(),
        }
        for what, raw in cases.items():
            scan = RawScan(session.client, SESSION, 9, raw)
            scan.end()
            assert_fault(session.record(scan.key), scan.key, "scan_info",
                         "nested deeper than 64 levels")
        with pytest.raises(ValueError, match="nested deeper than 64"):
            session.publisher.create_scan(info_for(tmp_path / "y.h5", deep=nested(70)))

        number, filename = session.new_file()
        title = "x" * 2_000_000
        many = {f"motor{i}": float(i) for i in range(20_000)}
        info = info_for(filename, 1, title=title, deep=nested(60), many=many)
        scan = session.publisher.create_scan(info, name="large", number=number)
        scan.add_channel(DIODE, "float64", subscan="timer")
        scan.prepare()
        scan.send({DIODE: [7.0]})
        scan.end()
        record = session.record(scan.key)
        assert record.state is SubscriberState.OFF, record.as_dict()
        with h5py.File(filename, "r", locking=False) as h5:
            assert text(h5[f"{number}.1/title"][()]) == title
            stored = json.loads(text(h5[f"{number}.1/writer/scan_info"][()]))
        assert stored["many"] == many and stored["deep"] == nested(60)


# -- A. a publisher that goes away ------------------------------------------------------


def test_scan_whose_publisher_is_gone_ends_publisher_lost_with_its_points(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        scan, filename = session.raw_scan(lease_ms=300)
        index = scan.channel(DIODE, "float64")
        scan.prepare()
        sent = np.array([np.nan, np.inf, -0.0, 1.5])
        scan.data(index, 0, sent.tobytes())
        # no END_SCAN, and nobody renews the lease
        record = session.record(scan.key, timeout=30)
        assert record.state is SubscriberState.OFF, record.as_dict()
        assert record.writer.end_reason == "PUBLISHER_LOST"
        entry = record.writer.entries[0]
        assert channel_data(filename, entry, DIODE).tobytes() == sent.tobytes()
        with h5py.File(filename, "r", locking=False) as h5:
            assert "lease" in text(h5[f"{entry}/writer/message"][()])
            assert text(h5[f"{entry}/writer/end_reason"][()]) == "PUBLISHER_LOST"


# -- A. unknown kinds, undeclared nodes, garbage entries -------------------------------


UNKNOWN = [
    ({b"t": b"node", b"n": b"x", b"y": b"bogus", b"x": b"3", b"i": b"{}"},
     ("unknown node type 'bogus'",)),
    ({b"t": b"node", b"n": b"x", b"y": b"scan", b"x": b"3", b"i": b"{}"},
     ("'x'", "cannot appear inside a scan")),
    ({b"t": b"node", b"n": b"x", b"y": b"session", b"x": b"3", b"i": b"{}"},
     ("'x'", "cannot appear inside a scan")),
    ({b"t": b"node", b"n": b"x", b"y": b"channel", b"x": b"three", b"i": b"{}"},
     ("field 'x'='three' is not an integer",)),
    ({b"t": b"node", b"n": b"x", b"y": b"channel", b"x": b"3", b"i": b"[1]"},
     ("node info is not a JSON object",)),
    ({b"t": b"zzz"}, ("unknown entry kind b'zzz'",)),
    ({b"x": b"y"}, ("unknown entry kind None",)),
    ({b"t": b"end", b"r": b"EXPLODED"}, ("unknown end reason 'EXPLODED'",)),
    ({b"t": b"data", b"d9": b"\0" * 8, b"f9": b"0"}, ("data for undeclared channel #9",)),
    ({b"t": b"data", b"d1": b"\0" * 8}, ("no valid first index",)),
    ({b"t": b"data", b"dx": b"\0" * 8, b"fx": b"0"}, ("no valid first index",)),
    ({b"t": b"lima", b"n": b"cam", b"a": b"1", b"s": b"1"}, ("undeclared lima 'cam'",)),
    ({b"t": b"lima", b"n": b"cam", b"a": b"one", b"s": b"1"}, ("is not an integer",)),
]


@pytest.mark.parametrize("fields, words", UNKNOWN, ids=[
    "node-type", "scan-in-scan", "session-in-scan", "node-index", "node-info", "kind",
    "no-kind", "end-reason", "undeclared-channel", "no-first-index", "bad-channel-index",
    "undeclared-lima", "lima-progress"])
def test_unknown_kinds_and_undeclared_nodes_fault_naming_the_entry(
        redis_url: str, tmp_path: Path, fields: dict[bytes, bytes],
        words: Sequence[str]) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        scan, filename = session.raw_scan()
        index = scan.channel(DIODE, "float64")
        scan.prepare()
        scan.data(index, 0, np.arange(3.0).tobytes())
        scan.entry(fields)
        scan.end()
        record = session.record(scan.key)
        assert_fault(record, scan.key, *words)
        np.testing.assert_array_equal(
            channel_data(filename, record.writer.entries[0], DIODE), np.arange(3.0))


garbage_fields = st.dictionaries(
    st.one_of(st.binary(max_size=6), st.sampled_from([b"t", b"d1", b"f1", b"l1", b"n",
                                                      b"y", b"x", b"i", b"r", b"a", b"s"])),
    st.one_of(st.binary(max_size=24),
              st.sampled_from([b"data", b"node", b"lima", b"end", b"prep", b"channel",
                               b"0", b"-1", b"1", b"SUCCESS", b"{}", b"\xff\xfe"])),
    min_size=1, max_size=6)


@pytest.mark.slow
def test_garbage_stream_entries_fault_the_scan_or_are_harmless(
        redis_url: str, tmp_path: Path) -> None:
    with hostile_session(redis_url, tmp_path) as session:
        @examples(40)
        @given(fields=garbage_fields)
        def example(fields: dict[bytes, bytes]) -> None:
            scan, filename = session.raw_scan()
            index = scan.channel(DIODE, "float64")
            scan.prepare()
            sent = np.arange(4.0) - 1.5
            scan.data(index, 0, sent.tobytes())
            scan.entry(fields)
            scan.end()
            record = session.record(scan.key)
            if record.state is SubscriberState.FAULT:
                reason = assert_fault(record, scan.key)
                assert "Error: " in reason and len(reason) > len(scan.key) + 30, reason
            else:
                assert record.state is SubscriberState.OFF, record.as_dict()
                assert record.writer.status.value == "SUCCEEDED"
            written = channel_data(filename, record.writer.entries[0], DIODE)
            np.testing.assert_array_equal(written[:4], sent)

        example()


@pytest.mark.slow
def test_garbage_in_the_session_stream_is_logged_and_ignored(
        redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="nexus_writer_service")
    stream = SessionKeys(SESSION).stream
    with hostile_session(redis_url, tmp_path) as session:
        @examples(25)
        @given(fields=st.one_of(
            garbage_fields,
            st.fixed_dictionaries({b"t": st.sampled_from([b"new", b"end"]),
                                   b"k": st.sampled_from([b"garbage", b"nws:other:scan:1",
                                                          b"\xff", b"nws:hostile:scan:x"]),
                                   b"r": st.sampled_from([b"SUCCESS", b"NOPE"])})))
        def example(fields: dict[bytes, bytes]) -> None:
            caplog.clear()
            position = session.client.xadd(stream, fields).decode()
            scan, filename = session.raw_scan()
            index = scan.channel(DIODE, "float64")
            scan.prepare()
            scan.data(index, 0, np.arange(2.0).tobytes())
            scan.end()
            record = session.record(scan.key)
            assert record.state is SubscriberState.OFF, record.as_dict()
            np.testing.assert_array_equal(
                channel_data(filename, record.writer.entries[0], DIODE), np.arange(2.0))
            logged = [r.getMessage() for r in caplog.records]
            assert any(f"{stream} entry {position} ignored" in m for m in logged) or (
                fields.get(b"k") == b"nws:hostile:scan:x"), logged

        example()
