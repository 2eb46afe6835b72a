"""Chunks compressed as HDF5's filter pipeline would, outside HDF5 (no h5py).

A :class:`ChunkCodec` turns the bytes of one whole chunk into what HDF5 stores for
it with the filters of a compression scheme (see :data:`~.options.SCHEMES`), so
the chunk can be written with a direct chunk write (filter mask 0) and read back by
any HDF5 reader through its own pipeline:

* byte shuffle (HDF5 filter 2): the bytes of the elements transposed, by the
  ``bitshuffle`` package's vectorised byte transposition (SSE2 on x86-64, NEON on
  ARM: 4-6 times faster than numpy's strided copy) where it has one, else by numpy;
* deflate (filter 1, level ``cd_values[0]``): a zlib stream, from ISA-L's deflate
  (the ``isal`` package, :func:`deflate`) where it is installed, else from :mod:`zlib`.
  ISA-L compresses 5 to 20 times faster than zlib, at the same ratio within 1 to 3 %
  on random float64 values and Poisson MCA spectra, 10 % lower on the float64 counts
  of benchmark scenario 9 (7.2 instead of 8.0), lower still on data that compresses
  very well (22 instead of 41 for a linear float64 ramp); any zlib
  inflates its stream, as HDF5's deflate filter does. Its levels are 0 to 3: zlib's
  1-4, 5-7 and 8-9 become 1, 2 and 3 (the level kept in the filter's parameters
  stays the zlib one asked for, which readers ignore). Level 4, h5py's and BLISS's
  default, becomes ISA-L's 1 rather than 2: ratios within 1 % of level 2's (Poisson
  MCA spectra 5.32 against 5.38, zlib's 4: 5.45; counts, random values, ramps the
  same; Poisson images 3.54 against 3.48), 15 to 20 % faster on spectra and images;
* bitshuffle (filter 32008, hdf5plugin's): bit-transposed blocks from the
  ``bitshuffle`` package; with LZ4 or zstd each block compressed, after the header
  the filter writes (the chunk's bytes, big-endian 64 bits; the block's bytes,
  big-endian 32 bits).

Thread-safety: :meth:`ChunkCodec.encode` keeps no state, takes no lock and, for
chunks of more than a few kilobytes, runs with the GIL released in ISA-L (or zlib),
numpy and bitshuffle: several threads encode in parallel (see :mod:`.compressor`).
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

_isal_zlib: Any
try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - a declared dependency
    _isal_zlib = None

__all__ = ["ChunkCodec", "codec_for", "codec_from_filters", "filter_options", "adler32",
           "deflate", "deflate_piece",
           "DEFLATE", "SHUFFLE", "BITSHUFFLE", "GZIP_LEVEL", "ZSTD_LEVEL"]

#: HDF5 filter ids
DEFLATE, SHUFFLE, BITSHUFFLE = 1, 2, 32008
#: bitshuffle's compressor codes (its filter's ``cd_values[4]``)
_BITSHUFFLE_COMPRESSORS = {0: "none", 2: "lz4", 3: "zstd"}
#: bitshuffle's default block, in bytes (bshuf_default_block_size)
_TARGET_BLOCK_BYTES = 8192
_MIN_BLOCK = 128
_BLOCK_MULTIPLE = 8
_ZSTD_DEFAULT_LEVEL = 3
#: The deflate level of gzip schemes: h5py's default, as the classic writer's.
GZIP_LEVEL = 4
#: The zstd level of zstd-bitshuffle: hdf5plugin's default.
ZSTD_LEVEL = _ZSTD_DEFAULT_LEVEL

Array = np.ndarray[Any, Any]


def _bitshuffle(compressor: str = "none") -> Any:
    """The bitshuffle package, or None when it is not installed or was built without
    ``compressor`` (chunks then go through HDF5's own pipeline)."""
    try:
        import bitshuffle
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    if compressor == "zstd" and not hasattr(bitshuffle, "compress_zstd"):
        return None  # pragma: no cover - the wheels have it
    return bitshuffle


def default_block(itemsize: int) -> int:
    """Elements in a bitshuffle block when the filter's block size is 0 (its default)."""
    block = _TARGET_BLOCK_BYTES // itemsize
    block = block // _BLOCK_MULTIPLE * _BLOCK_MULTIPLE
    return max(_MIN_BLOCK, block)


def deflate(data: Any, level: int) -> bytes:
    """``data`` as a zlib stream (what HDF5's deflate filter stores) at zlib's
    ``level``: ISA-L's where installed (its level 1 for zlib's 1-4, 2 for 5-7, 3 for
    8-9; 0 kept as 0: stored), else zlib's. Releases the GIL."""
    if _isal_zlib is not None and level > 0:
        return _isal_zlib.compress(data, _isal_level(level))
    return zlib.compress(data, level)


def _isal_level(level: int) -> int:
    """ISA-L's level for zlib's ``level`` (1 to 9): 1-4, 5-7 and 8-9 become 1, 2, 3."""
    return 1 if level <= 4 else min(3, (level + 1) // 3)


def adler32(data: Any, value: int = 1) -> int:
    """``zlib.adler32``, vectorised by ISA-L where installed (several times faster)."""
    if _isal_zlib is not None:
        return int(_isal_zlib.adler32(data, value))
    return zlib.adler32(data, value)


def deflate_piece(data: Any, level: int) -> bytes:
    """``data`` as an independent piece of a raw deflate stream (no zlib header,
    no final block, no checksum), ended by a *full flush*: byte-aligned and
    referring to nothing before it, so pieces put one after the other are a valid
    deflate stream of their data put one after the other. ISA-L's where installed
    (levels as :func:`deflate`), else zlib's. Releases the GIL."""
    if _isal_zlib is not None and level > 0:
        compressor = _isal_zlib.compressobj(_isal_level(level), _isal_zlib.DEFLATED, -15)
        return compressor.compress(data) + compressor.flush(_isal_zlib.Z_FULL_FLUSH)
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


@functools.lru_cache(maxsize=None)
def _vector_byte_shuffle() -> Any:
    """bitshuffle's vectorised byte transposition of this processor (``None``: none:
    not installed, or built for neither SSE2 nor NEON)."""
    bitshuffle = _bitshuffle()
    if bitshuffle is None:  # pragma: no cover - a declared dependency
        return None
    ext = bitshuffle.ext
    for name, built in (("trans_byte_elem_SSE", "using_SSE2"),
                        ("trans_byte_elem_NEON", "using_NEON")):
        function, is_built = getattr(ext, name, None), getattr(ext, built, None)
        if function is not None and is_built is not None and is_built():
            return function
    return None  # pragma: no cover - x86-64 always has SSE2


def byte_shuffle(chunk: Array) -> Array:
    """HDF5's shuffle filter: byte ``j`` of every element, for ``j`` in order
    (bytes, one dimension). Releases the GIL."""
    itemsize = chunk.dtype.itemsize
    data = chunk.reshape(-1).view(np.uint8)
    if itemsize == 1:
        return data
    transpose = _vector_byte_shuffle()
    if transpose is not None:
        return transpose(chunk.reshape(-1)).view(np.uint8).reshape(-1)
    return np.ascontiguousarray(data.reshape(-1, itemsize).T).reshape(-1)


@dataclass(frozen=True)
class ChunkCodec:
    """The filters of one dataset, applied to whole chunks of its dtype.

    ``shuffle``: byte shuffle first; ``deflate``: the zlib level (None: no deflate);
    ``bitshuffle``: its compressor (``"none"``, ``"lz4"``, ``"zstd"``; None: no
    bitshuffle), ``level`` the zstd level."""

    shuffle: bool = False
    deflate: int | None = None
    bitshuffle: str | None = None
    level: int = _ZSTD_DEFAULT_LEVEL

    def encode(self, chunk: Array) -> bytes | Array:
        """What HDF5 stores for the whole chunk ``chunk`` (C-contiguous, of the
        dataset's dtype and chunk shape). Releases the GIL in its heavy parts."""
        if self.bitshuffle is not None:
            return self._bitshuffled(chunk)
        data: Any = byte_shuffle(chunk) if self.shuffle else chunk
        if self.deflate is not None:
            return deflate(data, self.deflate)
        return data

    def _bitshuffled(self, chunk: Array) -> bytes | Array:
        bitshuffle = _bitshuffle()
        flat = chunk.reshape(-1)
        if self.bitshuffle == "none":
            return bitshuffle.bitshuffle(flat, 0)
        if self.bitshuffle == "lz4":
            body = bitshuffle.compress_lz4(flat, 0)
        else:
            body = bitshuffle.compress_zstd(flat, 0, self.level)
        itemsize = chunk.dtype.itemsize
        header = struct.pack(">QI", chunk.nbytes, default_block(itemsize) * itemsize)
        return header + body.tobytes()


def codec_for(scheme: str) -> ChunkCodec | None:
    """The codec of a compression scheme (None: ``none``, or a scheme this module
    cannot encode and that HDF5's pipeline must)."""
    if scheme in ("gzip", "gzip-byteshuffle"):
        return ChunkCodec(shuffle=scheme == "gzip-byteshuffle", deflate=GZIP_LEVEL)
    if scheme == "byteshuffle":
        return ChunkCodec(shuffle=True)
    compressor = {"bitshuffle": "none", "lz4-bitshuffle": "lz4",
                  "zstd-bitshuffle": "zstd"}.get(scheme)
    if compressor is not None and _bitshuffle(compressor) is not None:
        return ChunkCodec(bitshuffle=compressor, level=ZSTD_LEVEL)
    return None


def codec_from_filters(filters: Sequence[tuple[int, Sequence[int]]], itemsize: int
                       ) -> ChunkCodec | None:
    """The codec of a dataset whose filter pipeline is ``filters`` (``(id,
    cd_values)`` in order), for elements of ``itemsize`` bytes; None when it has no
    filter or filters this module does not encode exactly."""
    ids = [code for code, _ in filters]
    values = [tuple(cd) for _, cd in filters]
    if ids == [DEFLATE] and len(values[0]) == 1:
        return ChunkCodec(deflate=values[0][0])
    if ids == [SHUFFLE] and values[0] == (itemsize,):
        return ChunkCodec(shuffle=True)
    if ids == [SHUFFLE, DEFLATE] and values[0] == (itemsize,) and len(values[1]) == 1:
        return ChunkCodec(shuffle=True, deflate=values[1][0])
    if ids == [BITSHUFFLE]:
        cd = values[0]
        # (major, minor, element size, block size, compressor[, zstd level])
        if len(cd) >= 5 and cd[2] == itemsize and cd[3] == 0 \
                and cd[4] in _BITSHUFFLE_COMPRESSORS \
                and _bitshuffle(_BITSHUFFLE_COMPRESSORS[cd[4]]) is not None:
            level = cd[5] if len(cd) > 5 else _ZSTD_DEFAULT_LEVEL
            return ChunkCodec(bitshuffle=_BITSHUFFLE_COMPRESSORS[cd[4]], level=level)
    return None


@functools.lru_cache(maxsize=None)
def _filter_options(scheme: str) -> tuple[tuple[str, Any], ...]:
    if scheme in ("gzip", "gzip-byteshuffle"):
        options = {"compression": "gzip", "compression_opts": GZIP_LEVEL,
                   "shuffle": scheme == "gzip-byteshuffle"}
    elif scheme == "byteshuffle":
        options = {"shuffle": True}
    elif scheme == "bitshuffle":
        import hdf5plugin

        options = dict(hdf5plugin.Bitshuffle(nelems=0, cname="none"))
    elif scheme == "lz4-bitshuffle":
        import hdf5plugin

        options = dict(hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    elif scheme == "zstd-bitshuffle":
        import hdf5plugin

        options = dict(hdf5plugin.Bitshuffle(nelems=0, cname="zstd", clevel=ZSTD_LEVEL))
    else:
        options = {}
    return tuple(options.items())


def filter_options(scheme: str) -> dict[str, Any]:
    """The h5py ``create_dataset`` keywords of a compression scheme (see
    :data:`~.options.SCHEMES`): what the classic writer gives, zstd at level 3."""
    return dict(_filter_options(scheme))
