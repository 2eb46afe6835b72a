"""Encoding of channel values and events into bytes, and back.

The default codec is msgpack with a few extension types, so nothing read from Redis
can run code in the reader. Supported values: ``None``, ``bool``, ``int`` (64 bit),
``float``, ``str``, ``bytes``, ``list``, ``tuple``, ``dict``, ``datetime.datetime``,
numpy arrays (any non-object, non-structured dtype) and numpy scalars.

Pickle accepts any picklable object, but unpickling data from Redis lets whoever can
write to Redis run code in the reader. It is therefore an explicit choice of the
caller (``Codec(allow_pickle=True)``), meant for trusted deployments only.

Every encoded payload starts with one format byte (``m`` msgpack, ``p`` pickle), so
a reader always knows what it is looking at and refuses pickle unless allowed.

Pure module: no I/O, thread-safe, usable from any thread or greenlet.
"""

from __future__ import annotations

import datetime
import pickle
from typing import Any, Callable

import msgpack
import numpy

from .errors import DecodeError, EncodeError, InvalidArgumentError, ValueTooLargeError

__all__ = ["Codec", "DEFAULT_MAX_SIZE", "default_codec"]

DEFAULT_MAX_SIZE = 8 * 1024 * 1024
"""Largest encoded value, in bytes, accepted by default (8 MiB)."""

_MSGPACK = b"m"
_PICKLE = b"p"

_EXT_NDARRAY = 1
_EXT_NPSCALAR = 2
_EXT_TUPLE = 3
_EXT_DATETIME = 4


def _check_dtype(dtype: numpy.dtype) -> None:
    if dtype.hasobject or dtype.fields is not None:
        raise EncodeError(
            f"numpy dtype {dtype!r} cannot be encoded safely (object or structured dtype); "
            "convert it to a plain numeric array, or use Codec(allow_pickle=True)"
        )


def _default(obj: Any) -> Any:
    """msgpack hook for the types msgpack does not know natively."""
    if isinstance(obj, numpy.ndarray):
        _check_dtype(obj.dtype)
        payload = [obj.dtype.str, list(obj.shape), numpy.ascontiguousarray(obj).tobytes()]
        return msgpack.ExtType(_EXT_NDARRAY, _packb(payload))
    if isinstance(obj, numpy.generic):
        _check_dtype(obj.dtype)
        return msgpack.ExtType(_EXT_NPSCALAR, _packb([obj.dtype.str, obj.tobytes()]))
    if isinstance(obj, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _packb(list(obj)))
    if isinstance(obj, datetime.datetime):
        return msgpack.ExtType(_EXT_DATETIME, obj.isoformat().encode())
    # subclasses of the native types (IntEnum, OrderedDict, str enums, ...)
    converters: tuple[tuple[type, Callable[[Any], Any]], ...] = (
        (bool, bool), (int, int), (float, float), (str, str), (bytes, bytes),
        (list, list), (dict, dict))
    for base, convert in converters:
        if isinstance(obj, base):
            return convert(obj)
    raise EncodeError(
        f"cannot encode a value of type {type(obj).__name__!r}: the safe codec accepts None, "
        "bool, int, float, str, bytes, list, tuple, dict, datetime and numpy arrays/scalars; "
        "convert the value, or use Codec(allow_pickle=True) in a trusted deployment"
    )


def _packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True, strict_types=True)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_NDARRAY:
        dtype_str, shape, raw = _unpackb(data)
        return numpy.frombuffer(raw, dtype=numpy.dtype(dtype_str)).reshape(shape).copy()
    if code == _EXT_NPSCALAR:
        dtype_str, raw = _unpackb(data)
        return numpy.frombuffer(raw, dtype=numpy.dtype(dtype_str))[0]
    if code == _EXT_TUPLE:
        return tuple(_unpackb(data))
    if code == _EXT_DATETIME:
        return datetime.datetime.fromisoformat(data.decode())
    raise DecodeError(f"unknown msgpack extension type {code}: written by a newer version?")


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


class Codec:
    """Turns values into bytes and back; safe (msgpack) unless pickle is allowed.

    ``allow_pickle=True`` makes :meth:`encode` use pickle and :meth:`decode` accept
    pickle payloads. ``max_size`` bounds the encoded size (``ValueTooLargeError``,
    a ``ValueError``). Instances are immutable and thread-safe.
    """

    __slots__ = ("allow_pickle", "max_size")

    def __init__(self, *, allow_pickle: bool = False, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size <= 0:
            raise InvalidArgumentError(f"max_size must be a positive int, not {max_size!r}")
        self.allow_pickle = bool(allow_pickle)
        self.max_size = max_size

    def __repr__(self) -> str:
        return f"Codec(allow_pickle={self.allow_pickle}, max_size={self.max_size})"

    def encode(self, value: Any) -> bytes:
        """Bytes for ``value``; raises ``EncodeError`` (a TypeError) or ``ValueTooLargeError``."""
        if self.allow_pickle:
            try:
                data = _PICKLE + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                raise EncodeError(f"cannot pickle {type(value).__name__!r}: {exc}") from exc
        else:
            try:
                data = _MSGPACK + _packb(value)
            except EncodeError:
                raise
            except (TypeError, ValueError, OverflowError) as exc:
                raise EncodeError(
                    f"cannot encode a value of type {type(value).__name__!r}: {exc}; "
                    "ints must fit in 64 bits and dict keys must be hashable"
                ) from exc
        if len(data) > self.max_size:
            raise ValueTooLargeError(
                f"encoded value is {len(data)} bytes, over the limit of {self.max_size} bytes; "
                "send a smaller value, or raise max_size"
            )
        return data

    def decode(self, data: bytes) -> Any:
        """The value encoded in ``data``; raises ``DecodeError`` (a ValueError)."""
        tag, body = data[:1], data[1:]
        if tag == _MSGPACK:
            try:
                return _unpackb(body)
            except DecodeError:
                raise
            except Exception as exc:  # msgpack raises many unrelated types on bad input
                raise DecodeError(f"corrupt msgpack payload ({len(data)} bytes): {exc}") from exc
        if tag == _PICKLE:
            if not self.allow_pickle:
                raise DecodeError(
                    "value was written with the pickle codec, which is refused by default "
                    "(unpickling data from Redis can run code); read it with "
                    "Codec(allow_pickle=True) only if every writer is trusted"
                )
            try:
                return pickle.loads(body)
            except Exception as exc:
                raise DecodeError(f"cannot unpickle value: {exc}") from exc
        raise DecodeError(f"unknown payload format byte {tag!r}: not written by channels?")


default_codec = Codec()
"""The safe codec used when none is given."""
