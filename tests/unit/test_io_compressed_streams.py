"""Chunks compressed off the HDF5 thread (io.codecs, io.compressor, io.streams):
the bytes are what HDF5's own filters make (read back by h5py through its pipeline,
bit-exact), whatever the blocks, flushes in the middle of a chunk and resumes."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_writer_service.io._lowlevel import create_stream_dataset, filter_pipeline
from nexus_writer_service.io import codecs
from nexus_writer_service.io.codecs import (
    ChunkCodec, byte_shuffle, codec_for, codec_from_filters, deflate)
from nexus_writer_service.io.compressor import ChunkCompressor
from nexus_writer_service.io.layout import StreamPlan
from nexus_writer_service.io.nexus import NexusFile, filter_options
from nexus_writer_service.io.options import SCHEMES, SaveOptions
from nexus_writer_service.io.partial_chunks import PartialChunk, encode_partial
from nexus_writer_service.io.streams import Scratch, Stream
from tests.unit.test_io_streams import send

COMPRESSED = [s for s in SCHEMES if s != "none"]
ROWS = 16


def read_elsewhere(path: Path) -> list[float]:
    """The dataset as a reader in another process sees it while the file is open
    (with hdf5plugin's filters, as silx and PyMca read)."""
    code = ("import h5py, hdf5plugin, json, sys\n"
            "with h5py.File(sys.argv[1], 'r', locking=False) as f:\n"
            "    print(json.dumps(f['data'][()].tolist()))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def chunk_masks(dataset: h5py.Dataset) -> list[int]:
    """The filter mask of each chunk, in order (0: every filter applied)."""
    return [dataset.id.read_direct_chunk((row,) + (0,) * (dataset.ndim - 1))[0]
            for row in range(0, dataset.shape[0], dataset.chunks[0])]


def counts(n: int, dtype: Any = "f8", point: tuple[int, ...] = (), seed: int = 0
           ) -> np.ndarray:
    """Realistic detector counts (Poisson), which compress as real data does."""
    return np.random.default_rng(seed).poisson(1000, (n,) + point).astype(dtype)


@pytest.mark.parametrize("scheme", COMPRESSED)
@pytest.mark.parametrize("dtype, point, rows", [
    ("f8", (), 1000), ("u4", (5,), 7), ("i2", (), 1), ("u1", (3, 2), 100), ("?", (), 64),
    (">i4", (), 33), ("c16", (), 10),
])
def test_a_chunk_encoded_here_reads_back_through_hdf5s_filters(
        tmp_path: Path, scheme: str, dtype: str, point: tuple[int, ...], rows: int) -> None:
    """Same filter ids and parameters as HDF5 gives the dataset; the same bytes as
    HDF5's pipeline stores, but for deflate (ISA-L's, not zlib's) and zstd (another
    library build may compress differently); every chunk read back bit-exact."""
    chunk = counts(rows, dtype, point)
    with h5py.File(tmp_path / "codec.h5", "w") as f:
        reference = f.create_dataset("hdf5", data=chunk, chunks=chunk.shape,
                                     **filter_options(scheme))
        direct = f.create_dataset("here", shape=chunk.shape, dtype=chunk.dtype,
                                  chunks=chunk.shape, **filter_options(scheme))
        codec = codec_for(scheme)
        assert codec is not None
        assert codec_from_filters(filter_pipeline(direct), chunk.dtype.itemsize) == codec
        encoded = bytes(codec.encode(chunk))
        direct.id.write_direct_chunk((0,) * chunk.ndim, encoded, 0)
        if scheme not in ("zstd-bitshuffle", "gzip", "gzip-byteshuffle"):
            assert encoded == reference.id.read_direct_chunk((0,) * chunk.ndim)[1]
    with h5py.File(tmp_path / "codec.h5", "r") as f:
        assert filter_pipeline(f["here"]) == filter_pipeline(f["hdf5"])
        np.testing.assert_array_equal(f["here"][()], chunk)


def test_filters_not_encoded_exactly_are_left_to_hdf5() -> None:
    assert codec_from_filters([], 8) is None
    assert codec_from_filters([(2, (4,))], 8) is None  # shuffle of another element size
    assert codec_from_filters([(32008, (0, 4, 8, 256, 2))], 8) is None  # not the default block
    assert codec_from_filters([(32015, (3,))], 8) is None  # plain zstd
    assert codec_from_filters([(2, (8,)), (1, (6,))], 8) == ChunkCodec(shuffle=True, deflate=6)


def compressed_stream(file: h5py.File, scheme: str, compressor: ChunkCompressor,
                      point: tuple[int, ...] = (), dtype: Any = "f8") -> Stream:
    plan = StreamPlan(path="data", channel="data", dtype=np.dtype(dtype).str,
                      point_shape=point, chunk_rows=ROWS, compression=scheme)
    dataset = create_stream_dataset(file, "data", (0,) + point, (None,) + point,
                                    (ROWS,) + point, np.dtype(dtype), None,
                                    filter_options(scheme))
    return Stream(dataset, plan, None, Scratch(), (0, np.dtype(dtype), False),
                  codec_for(scheme), compressor)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 3 * ROWS + 5), min_size=1, max_size=6),
       npoints=st.integers(1, 6 * ROWS + 3), flush_every=st.integers(1, 5),
       scheme=st.sampled_from(COMPRESSED))
def test_every_point_lands_bit_exact_whatever_the_blocks_and_flushes(
        tmp_path_factory: pytest.TempPathFactory, sizes: list[int], npoints: int,
        flush_every: int, scheme: str) -> None:
    path = tmp_path_factory.mktemp("compressed") / "scan.h5"
    values = counts(npoints, "u4", (3,), seed=npoints)
    compressor = ChunkCompressor(2)
    try:
        with h5py.File(path, "w") as f:
            stream = compressed_stream(f, scheme, compressor, (3,), "u4")
            start = 0
            for i, size in enumerate(itertools.cycle(sizes)):
                if start >= npoints:
                    break
                stream.add(start, values[start:start + size])
                start += size
                if i % flush_every == 0:
                    stream.flush()
                    compressor.drain()
            stream.flush()
            compressor.drain()
            assert compressor.pending == 0 and compressor.chunks >= -(-npoints // ROWS)
    finally:
        compressor.close()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data"][()], values)
        assert chunk_masks(f["data"]) == [0] * -(-npoints // ROWS)  # all compressed


@pytest.mark.parametrize("scheme", COMPRESSED)
def test_a_reader_sees_every_flushed_point_of_a_partial_chunk(tmp_path: Path, scheme: str
                                                              ) -> None:
    """A slow scan flushed every few points: the chunk begun is written whole (padded,
    compressed) at each flush, and again when it fills up; a reader elsewhere sees
    every point."""
    path = tmp_path / "scan.h5"
    values = counts(2 * ROWS + 5)
    compressor = ChunkCompressor(2)
    try:
        with h5py.File(path, "w") as f:
            stream = compressed_stream(f, scheme, compressor)
            for start in range(0, len(values), 3):
                stream.add(start, values[start:start + 3])
                stream.flush()
                compressor.drain()
                f.flush()
                if start in (3, ROWS + 3):
                    assert read_elsewhere(path) == values[:start + 3].tolist()
                    assert chunk_masks(f["data"]) == [0] * (start // ROWS + 1)
            stream.flush()
            compressor.drain()
    finally:
        compressor.close()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data"][()], values)
        assert chunk_masks(f["data"]) == [0, 0, 0]


def test_chunks_are_encoded_on_the_compressors_threads(tmp_path: Path) -> None:
    seen: set[str] = set()

    class Spy(ChunkCodec):
        def encode(self, chunk: Any) -> Any:
            seen.add(threading.current_thread().name)
            return super().encode(chunk)

    compressor = ChunkCompressor(2)
    try:
        with h5py.File(tmp_path / "scan.h5", "w") as f:
            stream = compressed_stream(f, "gzip-byteshuffle", compressor)
            stream.codec = Spy(shuffle=True, deflate=4)
            send(stream, counts(10 * ROWS), [ROWS * 2])
            compressor.drain()
    finally:
        compressor.close()
    assert seen and all(name.startswith("chunk-compressor") for name in seen), seen
    with h5py.File(tmp_path / "scan.h5", "r") as f:
        np.testing.assert_array_equal(f["data"][()], counts(10 * ROWS))


def test_a_compressor_holds_at_most_its_bytes_of_chunks(tmp_path: Path) -> None:
    compressor = ChunkCompressor(1, max_pending_bytes=3 * ROWS * 8)
    try:
        with h5py.File(tmp_path / "scan.h5", "w") as f:
            stream = compressed_stream(f, "gzip", compressor)
            for start in range(0, 40 * ROWS, ROWS):
                stream.add(start, counts(ROWS, seed=start))
                assert compressor.pending <= 3
            stream.flush()
            compressor.drain()
    finally:
        compressor.close()


@pytest.mark.parametrize("scheme", COMPRESSED)
@pytest.mark.parametrize("threads", [2, 0])
def test_a_resumed_file_is_completed_bit_exact(tmp_path: Path, scheme: str, threads: int
                                               ) -> None:
    """A writer restarted after a scan file got part of its points (the last chunk
    partial) reopens the dataset, takes its filters from it, and writes the scan again
    from its first point; ``compression_threads=0``: HDF5 compresses on its own."""
    options = SaveOptions(allowed_roots=(str(tmp_path),), compression_threads=threads)
    plan = StreamPlan(path="/1.1/x", channel="x", dtype="<f8", point_shape=(),
                      chunk_rows=ROWS, compression=scheme)
    values = counts(5 * ROWS + 3)
    first = NexusFile(str(tmp_path / "scan.h5"), options)
    try:
        first._create_stream(plan)
        first.add_points("x", 0, values[:2 * ROWS + 5])
        first.flush()
    finally:
        first.close()
    again = NexusFile(str(tmp_path / "scan.h5"), options)
    try:
        again._open_stream(dataclasses.replace(plan, compression="none"))
        stream = again._streams["x"]
        assert (stream.codec is not None) is (threads > 0)
        for start in range(0, len(values), 7):
            again.add_points("x", start, values[start:start + 7])
    finally:
        again.close()
    with h5py.File(tmp_path / "scan.h5", "r") as f:
        assert filter_pipeline(f["/1.1/x"])[-1][0] in (1, 2, 32008)
        np.testing.assert_array_equal(f["/1.1/x"][()], values)


@contextlib.contextmanager
def scan_file(path: Path) -> Iterator[tuple[h5py.File, ChunkCompressor]]:
    """A new HDF5 file at ``path`` and a compressor of one thread, both closed after
    (the file first)."""
    compressor = ChunkCompressor(1)
    try:
        with h5py.File(path, "w") as f:
            yield f, compressor
    finally:
        compressor.close()


def test_a_flush_without_new_points_does_not_compress_the_partial_chunk_again(
        tmp_path: Path) -> None:
    with scan_file(tmp_path / "scan.h5") as (f, compressor):
        stream = compressed_stream(f, "gzip", compressor)
        stream.add(0, counts(5))
        for _ in range(3):
            stream.flush()
            compressor.drain()
        assert compressor.chunks == 1
        stream.add(5, counts(2, seed=1))
        stream.flush()
        compressor.drain()
        assert compressor.chunks == 2
    with h5py.File(tmp_path / "scan.h5", "r") as f:
        np.testing.assert_array_equal(f["data"][()], np.concatenate([counts(5),
                                                                     counts(2, seed=1)]))


def big_stream(f: h5py.File, compressor: ChunkCompressor, rows: int, scheme: str = "gzip"
               ) -> Stream:
    """A ``scheme`` stream of points of 5 float64, chunks of ``rows`` points."""
    plan = StreamPlan(path="data", channel="data", dtype="<f8", point_shape=(5,),
                      chunk_rows=rows, compression=scheme)
    dataset = create_stream_dataset(f, "data", (0, 5), (None, 5), (rows, 5),
                                    np.dtype("f8"), None, filter_options(scheme))
    return Stream(dataset, plan, None, Scratch(), (0, np.dtype("f8"), False),
                  codec_for(scheme), compressor)


@pytest.mark.parametrize("scheme", ["gzip", "gzip-byteshuffle"])
def test_the_last_flush_compresses_the_chunk_begun_at_once(tmp_path: Path, scheme: str
                                                           ) -> None:
    """A flush writes a chunk begun as pieces (see io.partial_chunks); the flush
    before closing compresses it at once, as a whole chunk is."""
    codec = codec_for(scheme)
    assert codec is not None
    big = ROWS * 1024  # points of 5 float64: chunks of 640 KiB, over MIN_CHUNK_BYTES
    values = counts(big + 300, point=(5,))
    with scan_file(tmp_path / "scan.h5") as (f, compressor):
        stream = big_stream(f, compressor, big, scheme)
        dataset = stream.dataset
        stream.add(0, values)
        stream.flush()
        compressor.drain()
        at_once = bytes(codec.encode(np.concatenate(
            [values[big:], np.zeros((big - 300, 5))])))
        _, pieces = dataset.id.read_direct_chunk((big, 0))
        assert pieces != at_once and zlib.decompress(pieces) == zlib.decompress(at_once)
        stream.flush(final=True)
        compressor.drain()
        _, last = dataset.id.read_direct_chunk((big, 0))
        assert last == at_once
    with h5py.File(tmp_path / "scan.h5", "r") as f:
        np.testing.assert_array_equal(f["data"][()], values)


@pytest.mark.parametrize("scheme", ["gzip", "gzip-byteshuffle"])
def test_a_chunk_filled_after_flushes_keeps_the_pieces_they_compressed(
        tmp_path: Path, scheme: str) -> None:
    """The points the flushes compressed as pieces are not compressed again when the
    chunk fills up: it is written as those pieces and one for the points after them."""
    codec = codec_for(scheme)
    assert codec is not None
    big = ROWS * 1024
    values = counts(big + 10, point=(5,))
    with scan_file(tmp_path / "scan.h5") as (f, compressor):
        stream = big_stream(f, compressor, big, scheme)
        dataset = stream.dataset
        before = PartialChunk()
        for start, stop in ((0, 300), (300, 1000)):
            stream.add(start, values[start:stop])
            stream.flush()
            compressor.drain()
            before = encode_partial(codec, values[:stop], big, before)
        stream.add(1000, values[1000:])
        compressor.drain()
        _, whole = dataset.id.read_direct_chunk((0, 0))
        assert whole == encode_partial(codec, values[:big], big, before).encoded
        assert whole != bytes(codec.encode(values[:big]))
        stream.flush(final=True)
        compressor.drain()
    with h5py.File(tmp_path / "scan.h5", "r") as f:
        np.testing.assert_array_equal(f["data"][()], values)


def test_a_chunk_begun_that_fills_before_the_next_flush_is_left_for_it(tmp_path: Path
                                                                       ) -> None:
    """At the rate points came since the last flush, a chunk begun that fills up before
    the next flush is not written in pieces: it is written whole when it fills, and the
    stream says the mark of its first point meanwhile. A slow stream, or points held
    for a whole period already, are written at the flush."""
    rows, period = ROWS * 1024, 0.1
    values = counts(3 * rows, point=(5,))
    with scan_file(tmp_path / "scan.h5") as (f, compressor):
        stream = big_stream(f, compressor, rows)
        stream.flush(period=period, now=0.0)
        stream.add(0, values[:10000], (1, 0.05))
        stream.flush(period=period, now=0.1)  # 1e5 points/s: fills in 0.064 s
        compressor.drain()
        assert stream.unflushed == (1, 0.05) and f["data"].shape[0] == 0
        stream.add(10000, values[10000:rows + 100], (2, 0.15))
        stream.flush(period=period, now=0.2)  # slower now: the 100 points written
        compressor.drain()
        assert stream.unflushed is None and f["data"].shape[0] == rows + 100
        _, first = f["data"].id.read_direct_chunk((0, 0))
        assert first == bytes(codec_for("gzip").encode(values[:rows]))  # at once
        stream.add(rows + 100, values[rows + 100:rows + 9000], (3, 0.21))
        stream.flush(period=period, now=0.3)  # fast, but held since 0.21
        assert stream.unflushed == (3, 0.21)
        stream.add(rows + 9000, values[rows + 9000:rows + 16000], (4, 0.35))
        stream.flush(period=period, now=0.4)  # fills soon, but the first held
        compressor.drain()                    # came 0.19 s ago: written
        assert stream.unflushed is None and f["data"].shape[0] == rows + 16000
        stream.flush(final=True)
        compressor.drain()
    with h5py.File(tmp_path / "scan.h5", "r") as f:
        np.testing.assert_array_equal(f["data"][()], values[:rows + 16000])


@pytest.mark.parametrize("level", [0, 1, 4, 6, 9])
def test_deflate_gives_a_zlib_stream_at_every_level(level: int) -> None:
    """What :func:`deflate` gives (ISA-L's deflate) inflates with zlib, as HDF5's
    filter does, to the bytes given, at every zlib level."""
    data = counts(5000, "u4", (3,)).tobytes() + bytes(range(256)) * 40
    encoded = deflate(data, level)
    assert zlib.decompress(encoded) == data
    if level:
        assert len(encoded) < len(data) / 2  # it compresses


@pytest.mark.parametrize("dtype", ["u1", "i2", "<u4", ">i4", "f8", ">f8", "c16", "V3", "S5"])
@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 33, 4097])
def test_byte_shuffle_is_hdf5s_with_and_without_the_vectorised_transposition(
        monkeypatch: pytest.MonkeyPatch, dtype: str, n: int) -> None:
    """bitshuffle's SSE2/NEON byte transposition (used where built) gives what numpy's
    transposition gives: byte j of every element, for j in order."""
    itemsize = np.dtype(dtype).itemsize
    values = np.random.default_rng(n).integers(0, 256, n * itemsize, dtype=np.uint8)
    chunk = values.view(dtype)
    expected = values.reshape(n, itemsize).T.reshape(-1)
    assert codecs._vector_byte_shuffle() is not None  # this machine has SSE2 or NEON
    fast = byte_shuffle(chunk)
    monkeypatch.setattr(codecs, "_vector_byte_shuffle", lambda: None)
    slow = byte_shuffle(chunk)
    for shuffled in (fast, slow):
        assert shuffled.dtype == np.uint8 and shuffled.shape == (n * itemsize,)
        np.testing.assert_array_equal(shuffled, expected)


def test_zlib_levels_become_isal_levels() -> None:
    """1-4 (h5py's and BLISS's default 4 among them), 5-7 and 8-9: ISA-L's 1, 2, 3."""
    assert [codecs._isal_level(level) for level in range(1, 10)] == [1, 1, 1, 1, 2, 2, 2, 3, 3]
