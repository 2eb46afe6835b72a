"""The first points of a deflate-compressed chunk, encoded again at each flush
without compressing again what the last flush compressed (pure: no h5py).

A flush writes the chunk begun as a whole chunk: its points, then zeros (the
padding, past the dataset's end). With HDF5's deflate filter (schemes ``gzip`` and
``gzip-byteshuffle``) what is stored is one zlib stream of the (byte-shuffled)
chunk. Deflate lets a stream be made of independent pieces (each ended by a *full
flush*: byte-aligned, no reference to what came before), so the stream of a
partial chunk is put together from:

* per byte plane (one plane without shuffle), the pieces of the points each flush
  added, compressed once, when they came, by ISA-L where installed, as whole chunks
  are (:func:`.codecs.deflate_piece`), else by zlib;
* a run of zeros, made of pieces compressed once per process (runs of 2**k bytes);
  these by zlib (once: its speed does not matter);
* the zlib header, the final block and the Adler-32 checksum of the whole chunk,
  computed here (ISA-L's where installed; the zeros' part by formula).

Any inflater reads it as it reads what zlib makes of the padded chunk at once.
When the chunk fills up, it is put together the same way: the pieces of the flushes
and one piece per plane for the points after them, so what the flushes compressed
is not compressed again (ISA-L's pieces per plane came out 0.5 to 10 % smaller than
the chunk compressed at once, each plane having Huffman tables of its own: MCA
spectra, counts, images, random values). The chunk begun when the file is closed is
compressed at once (:meth:`.Stream.flush`, ``final``).

(Storing the new points instead, deflate's stored blocks, and compressing them only
with the whole chunk, was measured on an MCA at 1 kHz whose chunks fill up in 64
ms: 0.1 CPU s less in the compression threads, 0.1 CPU s more in the HDF5 thread
writing the larger pieces, and a file 3 % larger.)

Thread-safety: :func:`encode_partial` keeps no state of its own (the pieces of
earlier flushes are given and returned); the cache of zero runs is shared and
filled under a lock.
"""

from __future__ import annotations

import struct
import threading
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codecs import ChunkCodec, adler32, byte_shuffle, deflate_piece

__all__ = ["PartialChunk", "encode_partial", "partial_encodable", "MAX_PIECES",
           "MIN_CHUNK_BYTES"]

Array = np.ndarray[Any, Any]
_ADLER_MOD = 65521
#: The longest run of zeros compressed at once (longer runs repeat it).
_LONGEST_RUN = 1 << 20
#: Pieces of a plane before it is compressed again in one (each piece costs some
#: bytes: a slow scan flushed at every point would make a chunk of pieces bigger
#: than its points).
MAX_PIECES = 8
#: Smaller chunks are compressed at once, padded: that is cheap, and their pieces'
#: bytes would come close to the compressor's worst-case overhead the disk-space
#: check counts (1/64 and 64 bytes; incompressible chunks of 64 KiB flushed at every
#: point stay 600 bytes under it).
MIN_CHUNK_BYTES = 64 << 10
_zero_runs: dict[tuple[int, int], bytes] = {}
_zero_runs_lock = threading.Lock()


@dataclass(frozen=True)
class PartialChunk:
    """What earlier flushes compressed of a chunk: its first ``points`` points, as
    the compressed pieces of each byte plane."""

    points: int = 0
    planes: tuple[bytes, ...] = ()
    #: pieces in each plane
    pieces: int = 0
    #: the encoded chunk (zlib stream), as it is written
    encoded: bytes = b""

    @property
    def nbytes(self) -> int:
        return len(self.encoded)


def partial_encodable(codec: ChunkCodec) -> bool:
    """Whether :func:`encode_partial` encodes chunks of ``codec`` (deflate, with or
    without byte shuffle)."""
    return codec.deflate is not None and codec.bitshuffle is None


def _zlib_piece(level: int, data: Any) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


def _zero_run(level: int, nbytes: int) -> bytes:
    """Independent deflate pieces holding ``nbytes`` zeros."""
    pieces = []
    while nbytes:
        size = min(_LONGEST_RUN, 1 << (nbytes.bit_length() - 1))
        key = (level, size)
        piece = _zero_runs.get(key)
        if piece is None:
            with _zero_runs_lock:
                piece = _zero_runs.get(key)
                if piece is None:
                    piece = _zero_runs[key] = _zlib_piece(level, bytes(size))
        pieces.append(piece)
        nbytes -= size
    return b"".join(pieces)


def _adler_zeros(adler: int, nbytes: int) -> int:
    """Adler-32 of what ``adler`` summed, followed by ``nbytes`` zeros."""
    a, b = adler & 0xFFFF, adler >> 16
    return ((b + nbytes % _ADLER_MOD * a) % _ADLER_MOD) << 16 | a


def encode_partial(codec: ChunkCodec, held: Array, rows: int, before: PartialChunk
                   ) -> PartialChunk:
    """The chunk of ``rows`` points whose first ``len(held)`` are ``held`` (the
    others zeros), encoded by ``codec`` (see :func:`partial_encodable`), given what
    the last flush encoded of the same chunk (``before``: its first points, the same
    as ``held``'s; ``PartialChunk()`` for the first flush). Every :data:`MAX_PIECES`
    flushes, the points are compressed again in one piece."""
    assert codec.deflate is not None
    if before.pieces >= MAX_PIECES:
        before = PartialChunk()
    level = codec.deflate
    points = len(held)
    values = held.reshape(-1)
    itemsize = held.dtype.itemsize
    per_point = values.size // points if points else 0
    shuffle = codec.shuffle and itemsize > 1
    if shuffle:
        real = byte_shuffle(values).reshape(itemsize, -1)  # plane j: byte j of each
        start = before.points * per_point
        pad = (rows - points) * per_point
    else:
        real = values.view(np.uint8).reshape(1, -1)
        start = before.points * per_point * itemsize
        pad = (rows - points) * per_point * itemsize
    planes = before.planes or (b"",) * len(real)
    zeros = _zero_run(level, pad)
    new_planes = []
    pieces = [zlib.compress(b"", level)[:2]]  # the zlib header of that level
    adler = 1
    for plane, done in zip(real, planes):
        done += deflate_piece(plane[start:], level)
        new_planes.append(done)
        pieces += [done, zeros]
        adler = _adler_zeros(adler32(plane.data, adler), pad)
    pieces.append(zlib.compressobj(level, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))
    pieces.append(struct.pack(">I", adler))
    return PartialChunk(points, tuple(new_planes), before.pieces + 1, b"".join(pieces))
