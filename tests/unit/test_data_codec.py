"""The pure scan event model: codec and stream entry encoding, without Redis."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest

from nexus_writer_service.data import codec, events
from nexus_writer_service.errors import MalformedEventError

DTYPES = ["bool", "int8", "uint8", "<i2", ">i2", "<u4", "<i8", "<u8", "<f2", "<f4", ">f8",
          "<c8", "<c16", "S7", "<U5", "<M8[us]", "<m8[ns]", [("x", "<f4"), ("n", "<i2")]]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (1, 2, 2)], ids=str)
def test_fixed_shape_blocks_round_trip_bit_exact(dtype, shape):
    dt = np.dtype(dtype)
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=4 * dt.itemsize * int(np.prod(shape)), dtype=np.uint8)
    block = raw.view(dt).reshape((4,) + shape)
    descr = codec.dtype_to_text(dt)
    back_dt = codec.dtype_from_text(codec.from_json(codec.to_json(descr), "t"), "t")
    assert back_dt == dt
    payload, n = codec.array_to_bytes(block, back_dt, shape, "t")
    assert n == 4
    back = events.decode_block(back_dt, shape, payload, None, "t")
    assert back.tobytes() == block.tobytes()
    assert back.shape == block.shape


def test_variable_length_points_round_trip():
    points = [np.arange(n, dtype="<f4") for n in (0, 3, 1, 7)]
    payload, lengths, n = codec.ragged_to_bytes(points, np.dtype("<f4"), "t")
    back = events.decode_block(np.dtype("<f4"), (-1,), payload, lengths, "t")
    assert n == 4 and [p.tolist() for p in back] == [p.tolist() for p in points]


def test_object_dtype_is_refused():
    with pytest.raises(TypeError, match="Python objects"):
        codec.dtype_to_text(object)


def test_lossy_cast_is_refused_and_exact_cast_accepted():
    with pytest.raises(ValueError, match="declared uint8 without changing values"):
        codec.array_to_bytes([1, 300], np.dtype("uint8"), (), "channel 'x'")
    payload, n = codec.array_to_bytes([1, 200], np.dtype("uint8"), (), "channel 'x'")
    assert payload == b"\x01\xc8" and n == 2


def test_wrong_point_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(4,\)"):
        codec.array_to_bytes(np.zeros((3, 2)), np.dtype("f8"), (4,), "channel 'mca'")


def test_truncated_block_is_malformed():
    with pytest.raises(MalformedEventError, match="whole number of 8-byte points"):
        codec.array_from_bytes(b"\0" * 12, np.dtype("f8"), (), "entry 1-0")


def test_negative_shape_is_refused():
    with pytest.raises(ValueError, match="negative dimension"):
        codec.check_point_shape((2, -3), "channel 'x'")


def test_scan_info_converts_numpy_and_keeps_structure():
    info = {"a": np.float32(1.5), "b": np.arange(3), "c": (1, "x"), "d": {"e": [np.int64(2)]},
            "nan": float("nan")}
    back = codec.from_json(codec.to_json(info), "t")
    assert back == {"a": 1.5, "b": [0, 1, 2], "c": [1, "x"], "d": {"e": [2]}, "nan": "nan"}


def test_scan_info_refuses_unknown_types_and_deep_nesting():
    with pytest.raises(TypeError, match="datetime"):
        codec.to_json({"t": datetime.datetime.now()})
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(ValueError, match="nested deeper"):
        codec.to_json(deep)


def test_entries_round_trip():
    fields = events.encode_node("diode", events.NodeType.CHANNEL, 3, {"dtype": "<f8"})
    entry = events.decode_entry(fields, "t")
    assert entry.node == events.NodeDeclaration("diode", events.NodeType.CHANNEL, 3,
                                                {"dtype": "<f8"})
    entry = events.decode_entry(events.encode_end(events.EndReason.ABORTED, "stop"), "t")
    assert entry.end == (events.EndReason.ABORTED, "stop")
    progress = events.LimaProgress(9, 7)
    assert events.decode_entry(events.encode_lima("cam", progress), "t").lima == ("cam", progress)


@pytest.mark.parametrize("fields, match", [
    ({b"t": b"bogus"}, "unknown entry kind"),
    ({b"t": b"node", b"n": b"x", b"y": b"planet", b"x": b"1"}, "unknown node type"),
    ({b"t": b"node", b"n": b"x", b"y": b"channel", b"x": b"one"}, "not an integer"),
    ({b"t": b"node", b"y": b"channel", b"x": b"1"}, "'n' is missing"),
    ({b"t": b"end", b"r": b"MAYBE"}, "unknown end reason"),
    ({b"t": b"data", b"d1": b"abc"}, "no valid first index"),
    ({b"t": b"data", b"d1": b"abc", b"f1": b"-4"}, "negative first index"),
    ({b"t": b"node", b"n": b"x", b"y": b"channel", b"x": b"1", b"i": b"{"}, "not valid JSON"),
])
def test_malformed_entries_name_the_entry(fields, match):
    with pytest.raises(MalformedEventError, match=match) as info:
        events.decode_entry(fields, "key:events entry 5-0")
    assert "key:events entry 5-0" in str(info.value)


@pytest.mark.parametrize("raw", [
    b'{"name": "\\ud800"}',                     # lone surrogate, escaped
    '{"name": "\\uDFFF x"}',                    # the same, as text
    b'["\xed\xa0\x80"]',                       # a surrogate encoded in the bytes
    '["\ud800"]',                              # one in the text itself
    b'{"\\udc00": 1}',                          # in a key
    b"[" * 67 + b"]" * 67,                     # nested too deep
    '{"a":' * 66 + "1" + "}" * 66,
])
def test_json_read_from_redis_refuses_invalid_text_and_deep_nesting(raw):
    with pytest.raises(MalformedEventError, match="the field"):
        codec.from_json(raw, "the field")


@pytest.mark.parametrize("value", [
    {"title": "scan", "npoints": 10, "motors": ["x", "y"], "é": "ü → 😀"},
    [[[[1]]]] * 40,                            # many brackets, shallow
    {"text": "a \\ud800 written out, not an escape"},
    {"deep": json.loads("[" * 63 + "]" * 63)},  # as deep as allowed
])
def test_json_read_from_redis_takes_what_the_publisher_sends(value):
    raw = codec.to_json(value)
    assert codec.from_json(raw, "t") == json.loads(raw)
    assert codec.from_json(raw.decode(), "t") == json.loads(raw)
