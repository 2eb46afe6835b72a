"""The safe codec: round trips, refusals, size limit, pickle only on request."""

from __future__ import annotations

import datetime
import enum
import pickle

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.codec import Codec, default_codec
from channels.errors import (
    ChannelsError,
    DecodeError,
    EncodeError,
    InvalidArgumentError,
    ValueTooLargeError,
)

_scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
            | st.floats(allow_nan=False) | st.text() | st.binary())
_values = st.recursive(
    _scalars,
    lambda children: (st.lists(children) | st.tuples(children, children)
                      | st.dictionaries(st.text() | st.integers(-2**63, 2**63 - 1), children)),
    max_leaves=20,
)


@given(_values)
def test_safe_codec_round_trips_plain_values(value):
    assert default_codec.decode(default_codec.encode(value)) == value


def test_tuples_stay_tuples_inside_lists_and_dict_keys():
    value = {(1, 2): [(3, "a")], "k": ()}
    decoded = default_codec.decode(default_codec.encode(value))
    assert decoded == value
    assert isinstance(decoded["k"], tuple) and isinstance(decoded[(1, 2)][0], tuple)


@pytest.mark.parametrize("array", [
    numpy.arange(12, dtype="int16").reshape(3, 4),
    numpy.linspace(0, 1, 5, dtype=">f8"),
    numpy.zeros((0, 3), dtype="uint8"),
    numpy.array([True, False]),
    numpy.array(["ab", "c"]),
    numpy.arange(6).reshape(2, 3).T,
])
def test_numpy_arrays_keep_dtype_shape_and_values(array):
    decoded = default_codec.decode(default_codec.encode(array))
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    numpy.testing.assert_array_equal(decoded, array)
    assert decoded.flags.writeable


def test_numpy_scalars_and_datetimes_round_trip():
    aware = datetime.datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=datetime.timezone.utc)
    naive = datetime.datetime(2024, 5, 1, 12, 0)
    for value in (numpy.float32(1.5), numpy.int64(-3), numpy.bool_(True), aware, naive):
        decoded = default_codec.decode(default_codec.encode(value))
        assert decoded == value and type(decoded) is type(value)


def test_subclasses_of_native_types_are_encoded_as_the_base_type():
    class Color(enum.IntEnum):
        RED = 1

    assert default_codec.decode(default_codec.encode(Color.RED)) == 1


@pytest.mark.parametrize("value", [
    object(), {1, 2}, numpy.array([object()]), 2**64, lambda: 0,
    numpy.zeros(2, dtype=[("a", "i4")]),
])
def test_unencodable_values_raise_type_error_naming_the_remedy(value):
    with pytest.raises(TypeError) as info:
        default_codec.encode(value)
    assert isinstance(info.value, EncodeError) and isinstance(info.value, ChannelsError)
    assert "allow_pickle" in str(info.value) or "64 bits" in str(info.value)


def test_value_over_the_size_limit_raises_value_error():
    codec = Codec(max_size=100)
    codec.encode(b"x" * 50)
    with pytest.raises(ValueError) as info:
        codec.encode(b"x" * 200)
    assert isinstance(info.value, ValueTooLargeError)
    assert "max_size" in str(info.value)


def test_pickle_is_refused_unless_allowed():
    trusted = Codec(allow_pickle=True)
    data = trusted.encode({1, 2})
    assert trusted.decode(data) == {1, 2}
    with pytest.raises(DecodeError, match="pickle"):
        default_codec.decode(data)


def test_raw_pickle_bytes_are_never_unpickled_by_the_safe_codec():
    with pytest.raises(DecodeError):
        default_codec.decode(pickle.dumps([1]))


@pytest.mark.parametrize("data", [b"", b"m\xc1", b"m\xd4\x63\x00", b"zzz"])
def test_corrupt_payloads_raise_decode_error(data):
    with pytest.raises(ValueError):
        default_codec.decode(data)


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_bad_max_size_is_refused(size):
    with pytest.raises(InvalidArgumentError):
        Codec(max_size=size)
