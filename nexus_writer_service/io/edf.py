"""EDF files as Lima saves them: building and parsing frame headers (numpy only, no h5py).

An EDF file is a sequence of frames; each frame is an ASCII header ``{\\n``,
``Key = value ;`` lines, spaces, ``}\\n`` (a multiple of 512 bytes in all), followed
by ``Size`` bytes of raw data (``Dim_2`` rows of ``Dim_1`` values of ``DataType``,
``ByteOrder``). The writer needs the offset of each frame's data to link it as an
HDF5 external-storage segment, and the data itself to copy it.

Nothing here is thread-safe; :class:`EdfFileIndex` belongs to its caller's thread.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np

from ..errors import NexusWriterError

__all__ = [
    "EDF_BLOCK",
    "EdfFormatError",
    "EdfFrame",
    "EdfFileIndex",
    "edf_data_type",
    "edf_header",
    "parse_edf_header",
    "read_edf_data",
]

#: Headers are padded to a multiple of this many bytes.
EDF_BLOCK = 512
#: The longest header accepted when parsing (a guard against reading a non-EDF file whole).
MAX_HEADER_BYTES = 1 << 20

#: EDF DataType written for each numpy dtype (byte order apart).
_DATA_TYPES = {
    "u1": "UnsignedByte", "i1": "SignedByte",
    "u2": "UnsignedShort", "i2": "SignedShort",
    "u4": "UnsignedInteger", "i4": "SignedInteger",
    "u8": "Unsigned64", "i8": "Signed64",
    "f4": "FloatValue", "f8": "DoubleValue",
}
#: Every DataType name read, with the aliases other EDF writers use.
_DTYPES_READ = dict({name.lower(): code for code, name in _DATA_TYPES.items()}, **{
    "unsignedchar": "u1", "signedchar": "i1", "unsignedlong": "u4", "signedlong": "i4",
    "float": "f4", "floatieee32": "f4", "double": "f8", "doubleieee64": "f8",
})
_BYTE_ORDERS = {"lowbytefirst": "<", "highbytefirst": ">"}


class EdfFormatError(NexusWriterError, ValueError):
    """Bytes that should be an EDF frame header are not one (or not a complete one)."""


class EdfFrame(NamedTuple):
    """One frame of an EDF file: where its data is and what the header says of it."""

    image: int
    offset: int
    nbytes: int
    dtype: np.dtype[Any]
    shape: tuple[int, int]
    compression: str | None

    @property
    def end(self) -> int:
        return self.offset + self.nbytes


def edf_data_type(dtype: Any) -> str:
    """The EDF ``DataType`` of ``dtype``; raises ValueError for types EDF cannot hold."""
    dtype = np.dtype(dtype)
    code = f"{dtype.kind}{dtype.itemsize}"
    try:
        return _DATA_TYPES[code]
    except KeyError:
        raise ValueError(
            f"dtype {dtype} cannot be saved in EDF; use one of "
            f"{', '.join(str(np.dtype(c)) for c in _DATA_TYPES)}") from None


def edf_header(image: int, frame: np.ndarray[Any, Any], extra: dict[str, Any] | None = None
               ) -> bytes:
    """The header of a 2D ``frame`` saved as image ``image`` (1-based) of its file,
    little-endian, padded to a multiple of :data:`EDF_BLOCK` bytes."""
    if frame.ndim != 2:
        raise ValueError(f"EDF frames are 2D, got shape {frame.shape}")
    height, width = frame.shape
    values: dict[str, Any] = {
        "HeaderID": f"EH:{image:06d}:000000:000000", "Image": image,
        "ByteOrder": "LowByteFirst", "DataType": edf_data_type(frame.dtype),
        "Dim_1": width, "Dim_2": height, "Size": frame.nbytes,
    }
    values.update(extra or {})
    text = "{\n" + "".join(f"{key} = {value} ;\n" for key, value in values.items())
    padding = -(len(text) + 2) % EDF_BLOCK
    return (text + " " * padding + "}\n").encode("ascii")


def _dtype_of(values: dict[str, str], where: str) -> np.dtype[Any]:
    name = values.get("DataType", "")
    code = _DTYPES_READ.get(name.replace(" ", "").lower())
    if code is None:
        raise EdfFormatError(f"{where}: unknown DataType {name!r}")
    order = _BYTE_ORDERS.get(values.get("ByteOrder", "LowByteFirst").lower())
    if order is None:
        raise EdfFormatError(f"{where}: unknown ByteOrder {values.get('ByteOrder')!r}")
    return np.dtype(order + code)


def _int_of(values: dict[str, str], key: str, where: str) -> int:
    try:
        value = int(values[key])
    except KeyError:
        raise EdfFormatError(f"{where}: no {key} in the header") from None
    except ValueError:
        raise EdfFormatError(f"{where}: {key} = {values[key]!r} is not an integer") from None
    if value < 0:
        raise EdfFormatError(f"{where}: {key} = {value} is negative")
    return value


def parse_edf_header(raw: bytes, start: int = 0, where: str = "EDF header") -> EdfFrame:
    """The frame whose header begins at ``raw[start]``.

    :raises EdfFormatError: ``raw`` does not hold a complete, valid header there
        (the message says what is wrong)
    """
    if raw[start:start + 1] != b"{":
        raise EdfFormatError(f"{where}: a frame header must begin with '{{'")
    close = raw.find(b"}\n", start)
    if close < 0:
        raise EdfFormatError(f"{where}: the header is incomplete (no closing '}}')")
    try:
        text = raw[start + 1:close].decode("ascii")
    except UnicodeDecodeError:
        raise EdfFormatError(f"{where}: the header is not ASCII text") from None
    values: dict[str, str] = {}
    for line in text.replace(";", "\n").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    dtype = _dtype_of(values, where)
    shape = (_int_of(values, "Dim_2", where), _int_of(values, "Dim_1", where))
    expected = dtype.itemsize * math.prod(shape)
    compression = values.get("Compression") or values.get("compression")
    if compression and compression.lower() in ("none", "no", "0"):
        compression = None
    nbytes = _int_of(values, "Size", where) if "Size" in values else expected
    if compression is None and nbytes != expected:
        raise EdfFormatError(
            f"{where}: Size = {nbytes} does not match Dim_1 x Dim_2 x {dtype} = {expected} bytes")
    image = _int_of(values, "Image", where) if "Image" in values else 1
    return EdfFrame(image, close + 2, nbytes, dtype, shape, compression)


class EdfFileIndex:
    """The frames of one EDF file, parsed once and extended as the file grows.

    :meth:`update` parses the frames appended since the last call; a frame whose
    header or data is not complete yet is left for a later call, and
    :attr:`problem` says what was found there instead.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.frames: list[EdfFrame] = []
        self.problem: str | None = None
        self._size = -1

    def update(self) -> list[EdfFrame]:
        """Parse what was appended to the file; returns every complete frame.

        :raises OSError: the file cannot be read (missing, no permission)
        """
        size = os.path.getsize(self.path)
        if size == self._size:
            return self.frames
        if size < self._size:  # rewritten: start again
            self.frames = []
        self._size = size
        self.problem = None
        position = self.frames[-1].end if self.frames else 0
        with open(self.path, "rb") as file:
            while position < size:
                file.seek(position)
                raw = file.read(min(size - position, MAX_HEADER_BYTES))
                where = f"frame {len(self.frames) + 1} of {self.path} (byte {position})"
                try:
                    frame = parse_edf_header(raw, 0, where)
                except EdfFormatError as exc:
                    self.problem = str(exc)
                    break
                frame = frame._replace(offset=position + frame.offset)
                if frame.end > size:
                    self.problem = (f"{where}: truncated file, the frame needs "
                                    f"{frame.end} bytes and the file has {size}")
                    break
                self.frames.append(frame)
                position = frame.end
        return self.frames


def read_edf_data(path: str, frame: EdfFrame) -> np.ndarray[Any, Any]:
    """The data of an uncompressed ``frame`` of the file ``path``, in the file's dtype.

    :raises EdfFormatError: the frame is compressed or the file is shorter than it says
    :raises OSError: the file cannot be read
    """
    if frame.compression is not None:
        raise EdfFormatError(
            f"{path}: image {frame.image} is compressed ({frame.compression}), which this "
            "writer does not read; save uncompressed EDF")
    with open(path, "rb") as file:
        file.seek(frame.offset)
        raw = file.read(frame.nbytes)
    if len(raw) != frame.nbytes:
        raise EdfFormatError(
            f"{path}: truncated file, image {frame.image} needs {frame.nbytes} bytes at "
            f"byte {frame.offset}, the file holds {len(raw)}")
    return np.frombuffer(raw, dtype=frame.dtype).reshape(frame.shape)
