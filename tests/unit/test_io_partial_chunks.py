"""A deflate-compressed chunk begun, written at each flush without compressing again
the points an earlier flush compressed (io.partial_chunks, io.streams): the same
data as the padded chunk compressed at once, read back bit-exact by HDF5 and by a
reader in another process."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.io import codecs
from nexus_writer_service.io.codecs import codec_for, deflate_piece
from nexus_writer_service.io.compressor import ChunkCompressor
from nexus_writer_service.io.partial_chunks import (
    MAX_PIECES,
    MIN_CHUNK_BYTES,
    PartialChunk,
    encode_partial,
)
from tests.unit.test_io_compressed_streams import chunk_masks, compressed_stream, counts


@pytest.fixture(params=["isal", "zlib"])
def deflater(request: Any, monkeypatch: Any) -> str:
    """The pieces compressed by ISA-L (installed: a declared dependency) or, as
    where it is missing, by zlib."""
    assert codecs._isal_zlib is not None
    if request.param == "zlib":
        monkeypatch.setattr(codecs, "_isal_zlib", None)
    return str(request.param)


def padded(held: np.ndarray, rows: int) -> np.ndarray:
    chunk = np.zeros((rows,) + held.shape[1:], dtype=held.dtype)
    chunk[:len(held)] = held
    return chunk


@pytest.mark.parametrize("scheme", ["gzip", "gzip-byteshuffle"])
@pytest.mark.parametrize("dtype, point", [("f8", ()), ("u4", (5,)), (">i2", ()), ("u1", (3,))])
def test_pieces_inflate_to_the_padded_chunk_and_earlier_pieces_are_kept(
        scheme: str, dtype: str, point: tuple[int, ...], deflater: str) -> None:
    codec = codec_for(scheme)
    assert codec is not None
    rows = 1000
    values = counts(rows, dtype, point)
    state = PartialChunk()
    for n in (1, 7, 300, 301, 999):
        before = state
        state = encode_partial(codec, values[:n], rows, before)
        assert zlib.decompress(state.encoded) == zlib.decompress(
            bytes(codec.encode(padded(values[:n], rows))))
        # what the last flush compressed is reused as it is
        assert all(now.startswith(then) for now, then in zip(state.planes, before.planes))


def test_the_pieces_are_compressed_again_in_one_every_few_flushes(deflater: str) -> None:
    codec = codec_for("gzip-byteshuffle")
    assert codec is not None
    values = counts(400)
    state = PartialChunk()
    for n in range(1, MAX_PIECES + 2):
        state = encode_partial(codec, values[:n * 10], 400, state)
    assert state.pieces == 1  # the flush after MAX_PIECES started afresh
    one_go = encode_partial(codec, values[:(MAX_PIECES + 1) * 10], 400, PartialChunk())
    assert state.encoded == one_go.encoded


@pytest.mark.parametrize("level", [1, 4, 9])
def test_a_piece_is_isal_raw_deflate_where_installed_else_zlib(
        level: int, deflater: str) -> None:
    """Pieces of several calls, one after the other, are one deflate stream of their
    data; ISA-L makes them when installed, at the level whole chunks get."""
    data = counts(5000, "u4").tobytes()
    cuts = [0, 1, 777, 777, len(data)]
    pieces = [deflate_piece(data[a:b], level) for a, b in zip(cuts, cuts[1:])]
    if deflater == "isal":
        from isal import isal_zlib
        isal_level = {1: 1, 4: 1, 9: 3}[level]
        maker = isal_zlib.compressobj(isal_level, isal_zlib.DEFLATED, -15)
        flush = isal_zlib.Z_FULL_FLUSH
    else:
        maker = zlib.compressobj(level, zlib.DEFLATED, -15)
        flush = zlib.Z_FULL_FLUSH
    assert pieces[-1] == maker.compress(data[777:]) + maker.flush(flush)
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(b"".join(pieces)) == data
    # each piece ends byte-aligned, without the final block: the stream goes on
    assert not inflater.eof


@pytest.mark.parametrize("scheme", ["gzip", "gzip-byteshuffle"])
def test_incompressible_pieces_stay_within_the_space_claimed_for_a_chunk(
        scheme: str, deflater: str) -> None:
    """A chunk of random bytes flushed often takes no more than the compressors'
    worst case the disk-space check claims for it (1/64 and 64 bytes)."""
    codec = codec_for(scheme)
    assert codec is not None
    rows = MIN_CHUNK_BYTES // 8
    values = np.random.default_rng(1).integers(0, 2**63, rows, dtype="u8")
    claimed = MIN_CHUNK_BYTES + MIN_CHUNK_BYTES // 64 + 64
    state = PartialChunk()
    for n in list(range(1, 40)) + list(range(40, rows + 1, 97)):
        state = encode_partial(codec, values[:n], rows, state)
        assert state.nbytes <= claimed
    assert zlib.decompress(state.encoded) == zlib.decompress(
        bytes(codec.encode(padded(values[:n], rows))))


@pytest.mark.parametrize("scheme", ["gzip", "gzip-byteshuffle"])
def test_a_big_chunk_flushed_often_lands_bit_exact_and_a_reader_sees_each_flush(
        tmp_path: Path, scheme: str, monkeypatch: Any, deflater: str) -> None:
    """Chunks of MIN_CHUNK_BYTES (the pieces are used), flushed more than MAX_PIECES
    times each; the file is read in another process at some flushes."""
    from nexus_writer_service.io import streams
    from tests.unit import test_io_compressed_streams as helpers

    rows = MIN_CHUNK_BYTES // 8
    monkeypatch.setattr(helpers, "ROWS", rows)
    path = tmp_path / "scan.h5"
    values = counts(2 * rows + 1234)
    calls: list[int] = []
    real_encode = streams.encode_partial

    def spy(codec: Any, held: np.ndarray, nrows: int, before: PartialChunk) -> PartialChunk:
        calls.append(len(held) - before.points if before.pieces < MAX_PIECES else len(held))
        return real_encode(codec, held, nrows, before)

    monkeypatch.setattr(streams, "encode_partial", spy)
    compressor = ChunkCompressor(2)
    step = rows // (2 * MAX_PIECES) + 7
    try:
        with h5py.File(path, "w") as f:
            stream = compressed_stream(f, scheme, compressor)
            for i, start in enumerate(range(0, len(values), step)):
                stream.add(start, values[start:start + step])
                stream.flush()
                compressor.drain()
                f.flush()
                if i in (3, 2 * MAX_PIECES + 5):
                    seen = helpers.read_elsewhere(path)
                    assert seen == values[:start + step].tolist()
            stream.flush()
            compressor.drain()
    finally:
        compressor.close()
    assert calls and max(calls) <= rows  # a flush compresses its new points...
    assert sum(calls) < 2 * len(values)  # ...not the chunk begun again each time
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data"][()], values)
        assert chunk_masks(f["data"]) == [0, 0, 0]
