"""Pure encoding of what travels through Redis: JSON metadata and raw numpy bytes.

No pickle, no I/O. ``scan_info`` and node descriptions are JSON (numpy scalars and
arrays are converted to plain numbers and lists); channel data is the raw bytes of a
C-contiguous array whose dtype and per-point shape were declared beforehand.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import MalformedEventError

__all__ = [
    "to_json",
    "from_json",
    "jsonable",
    "dtype_to_text",
    "dtype_from_text",
    "check_point_shape",
    "array_to_bytes",
    "array_from_bytes",
    "ragged_to_bytes",
    "ragged_from_bytes",
]

MAX_JSON_DEPTH = 64
#: Largest point rank: HDF5 datasets have at most 32 dimensions, one is the point index.
MAX_POINT_DIMS = 31
#: Most values in one point: far beyond what one Redis value (512 MB) can carry.
MAX_POINT_VALUES = 2**32


def _unicode(text: str, what: str) -> str:
    """``text`` if it can be written as UTF-8 (no lone surrogates), else ``ValueError``."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what}: text {text!r} is not valid Unicode ({exc.reason} at "
                         f"position {exc.start}); send UTF-8 text") from None
    return text


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` with numpy scalars/arrays, tuples and sets turned into JSON types.

    Raises ``TypeError`` naming the offending type for anything else that JSON
    cannot hold, and ``ValueError`` for structures nested deeper than 64 levels.
    """
    if _depth > MAX_JSON_DEPTH:
        raise ValueError(f"metadata nested deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return _unicode(value, "scan metadata")
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return jsonable(value.item(), _depth + 1)
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return [jsonable(v, _depth + 1) for v in value.tolist()]
        return jsonable(value.tolist(), _depth + 1)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                key = str(jsonable(key, _depth + 1))
            out[_unicode(key, "scan metadata key")] = jsonable(item, _depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, _depth + 1) for v in value]
    raise TypeError(
        f"cannot store a {type(value).__name__} in scan metadata: use str, numbers, "
        "lists, dicts or numpy values"
    )


def to_json(value: Any) -> bytes:
    """Compact JSON bytes of ``value`` after :func:`jsonable`."""
    return json.dumps(jsonable(value), separators=(",", ":"), allow_nan=False).encode()


def from_json(raw: bytes | str, what: str) -> Any:
    """Parse JSON read from Redis; ``what`` names the key/field in the error."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEventError(f"{what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise MalformedEventError(
            f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    _check_loaded(value, what)
    return value


def _check_loaded(value: Any, what: str) -> None:
    """Refuse what :func:`jsonable` would not have sent: nesting deeper than
    :data:`MAX_JSON_DEPTH` and text that is not valid Unicode (JSON escapes of lone
    surrogates). Iterative, so hostile input cannot exhaust the stack. Where each
    value is (``trail``: its parent's trail and its key or index) is only spelled
    out for the error."""
    stack: list[tuple[Any, int, Any]] = [(value, 0, None)]
    while stack:
        item, depth, trail = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise MalformedEventError(
                f"{what} is nested deeper than {MAX_JSON_DEPTH} levels "
                f"(at {_trail_path(trail)[:200]})")
        if isinstance(item, str):
            _check_text(item, what, "", trail)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, what, "key ", trail)
                stack.append((child, depth + 1, (trail, key)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1, (trail, i)) for i, child in enumerate(item))


def _check_text(text: str, what: str, kind: str, trail: Any) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        where = _trail_path(trail) or "top level"
        try:
            _unicode(text, f"{what}: {kind}at {where}" if kind else f"{what} at {where}")
        except ValueError as exc:
            raise MalformedEventError(str(exc)) from None


def _trail_path(trail: Any) -> str:
    """``[key][index]...`` from the root to the value of ``trail``."""
    steps = []
    while trail is not None:
        trail, step = trail
        steps.append(f"[{step!r}]")
    return "".join(reversed(steps))


def _listify(descr: Any) -> Any:
    if isinstance(descr, (list, tuple)):
        return [_listify(d) for d in descr]
    return descr


def _tuplify(descr: Any) -> Any:
    if isinstance(descr, list):
        items = [_tuplify(d) for d in descr]
        if descr and all(isinstance(d, tuple) for d in items):
            return items
        return tuple(items)
    return descr


def dtype_to_text(dtype: Any) -> Any:
    """A JSON-able description of a numpy dtype (plain, structured or subarray).

    Object dtypes are refused: their bytes are pointers, not data.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"not a numpy dtype: {dtype!r} ({exc})") from None
    if dt.hasobject:
        raise TypeError(f"dtype {dt} holds Python objects: only numeric/string dtypes travel")
    return _listify(np.lib.format.dtype_to_descr(dt))


def dtype_from_text(descr: Any, what: str) -> np.dtype[Any]:
    """Inverse of :func:`dtype_to_text`; ``what`` names the source in the error."""
    try:
        descr = _tuplify(descr)
        if isinstance(descr, tuple):
            descr = list(descr)
        dt = np.lib.format.descr_to_dtype(descr)
    except (TypeError, ValueError) as exc:
        raise MalformedEventError(f"{what}: invalid dtype description {descr!r} ({exc})") \
            from None
    if dt.hasobject:
        raise MalformedEventError(f"{what}: object dtype is not accepted")
    return dt


def check_point_shape(shape: Sequence[Any] | None, what: str) -> tuple[int, ...]:
    """Validate a per-point shape. ``-1`` as the only dimension means variable length."""
    if shape is None:
        return ()
    try:
        dims = tuple(int(d) for d in shape)
        integral = all(d == given for d, given in zip(dims, shape))
    except (TypeError, ValueError, OverflowError):
        integral = False
    if not integral:
        raise ValueError(f"{what}: shape must be a sequence of integers, got {shape!r}")
    if dims == (-1,):
        return dims
    if any(d < 0 for d in dims):
        raise ValueError(
            f"{what}: negative dimension in shape {dims}; use (-1,) for variable-length 1D"
        )
    if len(dims) > MAX_POINT_DIMS or math.prod(dims) > MAX_POINT_VALUES:
        raise ValueError(
            f"{what}: points of shape {dims} cannot be stored (at most {MAX_POINT_DIMS} "
            f"dimensions and {MAX_POINT_VALUES} values per point)"
        )
    return dims


def _cast_exactly(arr: np.ndarray[Any, Any], dtype: np.dtype[Any], what: str
                  ) -> np.ndarray[Any, Any]:
    """``arr`` as ``dtype`` when no value changes on the way, else ``ValueError``."""
    if not arr.dtype.hasobject and np.can_cast(arr.dtype, dtype, casting="safe"):
        return arr.astype(dtype)
    refused = ValueError(
        f"{what}: data of dtype {arr.dtype} cannot be stored as the declared {dtype} "
        "without changing values; send data of the declared dtype"
    )
    if arr.dtype.hasobject or arr.dtype.kind not in "biuf" or dtype.kind not in "biuf":
        raise refused
    with np.errstate(all="ignore"):
        cast = arr.astype(dtype)
        if not np.array_equal(cast.astype(arr.dtype), arr, equal_nan=arr.dtype.kind == "f"):
            raise refused
    return cast


def array_to_bytes(data: Any, dtype: np.dtype[Any], shape: tuple[int, ...], what: str
                   ) -> tuple[bytes, int]:
    """Raw bytes and number of points of a block of fixed-shape points.

    ``data`` is one point or a sequence of points; values are cast to ``dtype``
    only when numpy calls that cast safe (no silent truncation).
    """
    arr = np.asarray(data)
    if arr.dtype != dtype:
        arr = _cast_exactly(arr, dtype, what)
    if arr.shape == shape:
        arr = arr.reshape((1,) + shape)
    if arr.shape[1:] != shape:
        raise ValueError(
            f"{what}: block of shape {arr.shape} does not hold points of the declared "
            f"shape {shape}"
        )
    return np.ascontiguousarray(arr).tobytes(), int(arr.shape[0])


def array_from_bytes(raw: bytes, dtype: np.dtype[Any], shape: tuple[int, ...], what: str
                     ) -> np.ndarray[Any, Any]:
    """The block of points stored by :func:`array_to_bytes` (read-only view)."""
    point_size = dtype.itemsize * math.prod(shape)
    if point_size == 0:
        raise MalformedEventError(f"{what}: points of zero size cannot be decoded")
    if len(raw) % point_size:
        raise MalformedEventError(
            f"{what}: {len(raw)} bytes is not a whole number of {point_size}-byte points"
        )
    return np.frombuffer(raw, dtype=dtype).reshape((-1,) + shape)


def ragged_to_bytes(data: Any, dtype: np.dtype[Any], what: str) -> tuple[bytes, bytes, int]:
    """Bytes of variable-length 1D points, their lengths (int64 bytes) and their count."""
    if isinstance(data, np.ndarray) and data.ndim == 1 and not data.dtype.hasobject:
        data = [data]
    points = []
    for point in data:
        raw, n = array_to_bytes(point, dtype, (len(np.atleast_1d(point)),), what)
        points.append(np.frombuffer(raw, dtype=dtype))
    lengths = np.array([len(p) for p in points], dtype="<i8")
    # concatenate gives native byte order: cast back, so the bytes are in the declared one
    joined = np.concatenate(points).astype(dtype, copy=False) if points \
        else np.empty(0, dtype=dtype)
    return joined.tobytes(), lengths.tobytes(), len(points)


def ragged_from_bytes(raw: bytes, raw_lengths: bytes, dtype: np.dtype[Any], what: str
                      ) -> list[np.ndarray[Any, Any]]:
    """The list of 1D arrays stored by :func:`ragged_to_bytes`."""
    if len(raw_lengths) % 8:
        raise MalformedEventError(f"{what}: point lengths are not int64 values")
    lengths = np.frombuffer(raw_lengths, dtype="<i8")
    flat = array_from_bytes(raw, dtype, (), what).reshape(-1)
    if (lengths < 0).any() or int(lengths.sum()) != flat.size:
        raise MalformedEventError(
            f"{what}: point lengths add up to {int(lengths.sum())} values, block holds {flat.size}"
        )
    bounds = np.cumsum(lengths)[:-1]
    return list(np.split(flat, bounds)) if len(lengths) else []
