"""A channel's points buffered and written chunk by chunk into a real HDF5 file: every
point lands at its index whatever the block sizes, through the direct chunk write
(uncompressed chunks of whole points) and through HDF5's chunk cache (the others)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_writer_service.io.layout import StreamPlan
from nexus_writer_service.io._lowlevel import (
    create_stream_dataset, open_uncached, stored_as_given)
from nexus_writer_service.io.files import CHUNK_CACHE_SLOTS, open_or_create
from nexus_writer_service.io.nexus import NexusFile
from nexus_writer_service.io.streams import Scratch, Stream
from nexus_writer_service.io.options import SaveOptions

ROWS = 16
GZIP = {"compression": "gzip", "compression_opts": 1}


def new_stream(file: h5py.File, dtype: Any = "f8", point: tuple[int, ...] = (),
               compression: dict[str, Any] | None = None, scratch: Scratch | None = None,
               name: str = "data", cached: bool = True) -> Stream:
    dataset = create_stream_dataset(file, name, (0,) + point, (None,) + point,
                                    (ROWS,) + point, np.dtype(dtype), None, compression,
                                    cached=cached)
    plan = StreamPlan(path=name, channel=name, dtype=str(np.dtype(dtype)), point_shape=point,
                      chunk_rows=ROWS)
    return Stream(dataset, plan, None, scratch or Scratch())


def send(stream: Stream, values: np.ndarray, sizes: list[int], first: int = 0) -> None:
    """``values`` in blocks of ``sizes`` (cycled), each a read-only view of its own
    bytes, as the reader hands them over."""
    start, i = 0, 0
    while start < len(values):
        stop = min(len(values), start + sizes[i % len(sizes)])
        block = np.frombuffer(values[start:stop].tobytes(), dtype=values.dtype
                              ).reshape((stop - start,) + values.shape[1:])
        stream.add(first + start, block)
        start, i = stop, i + 1
    stream.flush()


def read_elsewhere(path: Path) -> list[float]:
    """The dataset as a reader in another process sees it while the file is open."""
    code = ("import h5py, json, sys\n"
            "with h5py.File(sys.argv[1], 'r', locking=False) as f:\n"
            "    print(json.dumps(f['data'][()].tolist()))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def read(path: Path, name: str = "data") -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][()]


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 3 * ROWS + 5), min_size=1, max_size=8),
       npoints=st.integers(1, 7 * ROWS + 3), compressed=st.booleans())
def test_every_point_lands_at_its_index_whatever_the_blocks(
        tmp_path_factory: pytest.TempPathFactory, sizes: list[int], npoints: int,
        compressed: bool) -> None:
    path = tmp_path_factory.mktemp("streams") / "scan.h5"
    values = np.random.default_rng(npoints).random(npoints)
    with h5py.File(path, "w") as f:
        stream = new_stream(f, compression=GZIP if compressed else None)
        assert stream.direct is not compressed
        send(stream, values, sizes)
    np.testing.assert_array_equal(read(path), values)


def test_streams_sharing_one_scratch_buffer_keep_their_own_points(tmp_path: Path) -> None:
    """Chunks put together in the shared buffer, alternately for two datasets, one
    going through the chunk cache: no chunk sees another's points."""
    path = tmp_path / "scan.h5"
    rng = np.random.default_rng(1)
    a, b = rng.random(10 * ROWS), rng.random(10 * ROWS)
    scratch = Scratch()
    with h5py.File(path, "w") as f:
        sa = new_stream(f, scratch=scratch, name="a")
        sb = new_stream(f, compression=GZIP, scratch=scratch, name="b")
        for start in range(0, len(a), 5):
            for stream, values in ((sa, a), (sb, b)):
                stream.add(start, np.frombuffer(values[start:start + 5].tobytes()))
        sa.flush()
        sb.flush()
    np.testing.assert_array_equal(read(path, "a"), a)
    np.testing.assert_array_equal(read(path, "b"), b)


@pytest.mark.parametrize("cached", [True, False])
def test_a_chunk_flushed_in_part_then_completed_holds_every_point(
        tmp_path: Path, cached: bool) -> None:
    """Readers see a partial chunk (flushed through the chunk cache, or written in
    place without one); the complete chunk written later straight to the file
    replaces it, and closing the file does not bring the partial one back."""
    path = tmp_path / "scan.h5"
    values = np.arange(3 * ROWS, dtype="f8")
    with h5py.File(path, "w") as f:
        stream = new_stream(f, cached=cached)
        assert (stream.dataset.id.get_access_plist().get_chunk_cache()[1] == 0) is not cached
        stream.add(0, values[:5])
        stream.flush()
        f.flush()
        assert read_elsewhere(path) == values[:5].tolist()
        # the writer resumes from the start of the chunk (a replay gives the same points)
        send(stream, values, [ROWS + 3])
    np.testing.assert_array_equal(read(path), values)


def test_a_replayed_scan_rewrites_whole_chunks_in_place(tmp_path: Path) -> None:
    path = tmp_path / "scan.h5"
    first, second = np.zeros(4 * ROWS), np.arange(4 * ROWS, dtype="f8")
    with h5py.File(path, "w") as f:
        send(new_stream(f), first, [ROWS])
    with h5py.File(path, "r+") as f:
        dataset = f["data"]
        stream = Stream(dataset, new_plan(), None, Scratch())
        assert stream.written == 4 * ROWS
        send(stream, second, [7])
        size = dataset.id.get_storage_size()
    np.testing.assert_array_equal(read(path), second)
    assert size == second.nbytes, "chunks rewritten in place, none added"


def test_a_replay_flushed_in_part_keeps_the_later_points_already_in_the_file(
        tmp_path: Path) -> None:
    """A resumed writer replays points from the start of a chunk and flushes part of
    it: the points after that part, written before, stay in the file."""
    path = tmp_path / "scan.h5"
    values = np.arange(2 * ROWS, dtype="f8")
    with h5py.File(path, "w") as f:
        send(new_stream(f, cached=False), values, [ROWS])
    with h5py.File(path, "r+") as f:
        stream = Stream(open_uncached(f, "data"), new_plan(), None, Scratch())
        assert stream.direct
        stream.add(ROWS, values[ROWS:ROWS + 3])
        stream.flush()
        f.flush()
        assert read_elsewhere(path) == values.tolist()
    np.testing.assert_array_equal(read(path), values)


@pytest.mark.parametrize("pieces", [[5], [2, 3], [ROWS + 5], [ROWS + 2, 3]])
def test_the_first_part_of_a_new_chunk_goes_straight_to_the_file_padded(
        tmp_path: Path, pieces: list[int]) -> None:
    """Flushing the first points of a chunk writes the whole chunk at once (the
    points, then zeros past the dataset's end), from one received block or from
    several put together; the next points then land after them."""
    path = tmp_path / "scan.h5"
    values = np.random.default_rng(5).random(3 * ROWS)
    with h5py.File(path, "w") as f:
        stream = new_stream(f, cached=False)
        start = 0
        for size in pieces:
            stream.add(start, np.frombuffer(values[start:start + size].tobytes()))
            start += size
        stream.flush()
        f.flush()
        assert read_elsewhere(path) == values[:start].tolist()
        chunk = start // ROWS * ROWS
        written = f["data"].id.read_direct_chunk((chunk,))[1]
        assert np.frombuffer(written, dtype="f8").tolist() == (
            values[chunk:start].tolist() + [0.0] * (chunk + ROWS - start))
        send(stream, values[start:], [4], first=start)
    np.testing.assert_array_equal(read(path), values)


def new_plan() -> StreamPlan:
    return StreamPlan(path="data", channel="data", dtype="float64", point_shape=(),
                      chunk_rows=ROWS)


@pytest.mark.parametrize("dtype", [">f8", "<i2", "u4", "bool", "complex64"])
def test_numbers_of_any_byte_order_and_kind_are_stored_as_numbers(
        tmp_path: Path, dtype: str) -> None:
    path = tmp_path / "scan.h5"
    values = (np.arange(3 * ROWS + 2) % 3).astype(dtype)
    with h5py.File(path, "w") as f:
        stream = new_stream(f, dtype=dtype)
        assert stream.direct
        send(stream, values, [ROWS])
    got = read(path)
    assert got.dtype == values.dtype.newbyteorder("=") or got.dtype == values.dtype
    np.testing.assert_array_equal(got, values)


def test_points_with_a_shape_are_written_whole_chunks_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "scan.h5"
    values = np.arange((5 * ROWS + 3) * 12, dtype="u4").reshape(-1, 3, 4)
    with h5py.File(path, "w") as f:
        stream = new_stream(f, dtype="u4", point=(3, 4))
        assert stream.direct
        send(stream, values, [5, ROWS * 2, 1])
    np.testing.assert_array_equal(read(path), values)


def test_chunks_split_across_a_point_are_written_through_the_cache(tmp_path: Path) -> None:
    """A dataset whose chunks cut its points (made by another program) is not
    written chunk by chunk as stored."""
    path = tmp_path / "scan.h5"
    values = np.arange(4 * ROWS * 8, dtype="f8").reshape(-1, 8)
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset("data", shape=(0, 8), maxshape=(None, 8), dtype="f8",
                                   chunks=(ROWS, 4))
        plan = StreamPlan(path="data", channel="data", dtype="float64", point_shape=(8,),
                          chunk_rows=ROWS)
        stream = Stream(dataset, plan, None, Scratch())
        assert not stream.direct
        send(stream, values, [ROWS])
    np.testing.assert_array_equal(read(path), values)


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("dtype,point", [("f8", ()), (">i4", (3,)), ("bool", ()),
                                         ("u2", (2, 5))])
def test_a_new_stream_knows_without_asking_what_hdf5_would_say(
        tmp_path: Path, compression: str, dtype: str, point: tuple[int, ...]) -> None:
    options = SaveOptions(allowed_roots=(str(tmp_path),))
    nexus_file = NexusFile(str(tmp_path / "scan.h5"), options)
    try:
        plan = StreamPlan(path="/1.1/data", channel="x", dtype=np.dtype(dtype).str,
                          point_shape=point, chunk_rows=ROWS, compression=compression)
        nexus_file._create_stream(plan)
        stream = nexus_file._streams["x"]
        dataset = stream.dataset
        assert (stream.written, stream.dtype, stream.direct) == (
            dataset.shape[0], dataset.dtype, stored_as_given(dataset))
        assert stream.direct is (compression == "none")
    finally:
        nexus_file.close()


def test_new_streams_of_one_type_and_shape_in_files_one_after_another_are_alike(
        tmp_path: Path) -> None:
    """Datasets created in one file after another (the type and dataspace HDF5 copies
    from are shared) each get the dtype, shape and maximum shape asked for."""
    asked = [("<f8", (0,), (None,)), ("<i4", (0, 3), (None, 3)), (">u2", (0,), (None,)),
             ("<f8", (0, 3), (None, 3))]
    for i in range(3):
        path = tmp_path / f"scan{i}.h5"
        with h5py.File(path, "w") as f:
            for j, (dtype, shape, maxshape) in enumerate(asked):
                create_stream_dataset(f, f"d{j}", shape, maxshape, (ROWS,) + shape[1:],
                                      np.dtype(dtype), cached=bool(j % 2))
                f[f"d{j}"].resize(i + 1, axis=0)
        with h5py.File(path, "r") as f:
            assert [(f[f"d{j}"].dtype.str, f[f"d{j}"].shape, f[f"d{j}"].maxshape)
                    for j in range(len(asked))] == [
                (dtype, (i + 1,) + shape[1:], maxshape) for dtype, shape, maxshape in asked]


def test_blocks_of_another_dtype_or_layout_are_converted_by_h5py(tmp_path: Path) -> None:
    path = tmp_path / "scan.h5"
    values = np.arange(3 * ROWS + 5, dtype="f8")
    with h5py.File(path, "w") as f:
        stream = new_stream(f)
        stream.add(0, values[:ROWS + 3].astype("f4"))
        stream.add(ROWS + 3, np.repeat(values[ROWS + 3:], 2)[::2])  # not contiguous
        stream.flush()
    np.testing.assert_array_equal(read(path), values)


def test_datasets_of_a_file_opened_for_writing_get_a_small_chunk_cache_table(
        tmp_path: Path) -> None:
    """HDF5 2.0 allocates 8191 hash slots (64 KiB) for every dataset opened; the
    writer opens its files with CHUNK_CACHE_SLOTS, the cache's size unchanged."""
    path = tmp_path / "scan.h5"
    with h5py.File(tmp_path / "defaults.h5", "w") as f:
        default_bytes = f.id.get_access_plist().get_cache()[2]
    file, created = open_or_create(str(path), 0.0)
    try:
        assert created is not None
        stream = new_stream(file)
        assert stream.dataset.id.get_access_plist().get_chunk_cache()[:2] == (
            CHUNK_CACHE_SLOTS, default_bytes)
        send(stream, np.arange(5 * ROWS + 3, dtype="f8"), [7])
        reopened = file["data"]
        assert reopened.id.get_access_plist().get_chunk_cache()[0] == CHUNK_CACHE_SLOTS
    finally:
        file.close()
    np.testing.assert_array_equal(read(path), np.arange(5 * ROWS + 3, dtype="f8"))


def test_partial_chunks_written_without_a_cache_land_in_place_flush_after_flush(
        tmp_path: Path) -> None:
    """A slow stream flushed every few points, as a live scan is: each flush adds
    the new points of the chunk at their place, a reader elsewhere sees them all."""
    path = tmp_path / "scan.h5"
    values = np.random.default_rng(3).random(2 * ROWS + 5)
    with h5py.File(path, "w") as f:
        stream = new_stream(f, cached=False)
        for start in range(0, len(values), 3):
            stream.add(start, np.frombuffer(values[start:start + 3].tobytes()))
            stream.flush()
            f.flush()
            if start in (3, ROWS + 3):
                assert read_elsewhere(path) == values[:start + 3].tolist()
    np.testing.assert_array_equal(read(path), values)


def test_a_scan_file_opens_streams_of_whole_point_chunks_without_a_chunk_cache(
        tmp_path: Path) -> None:
    """New and reopened (resumed) datasets alike; compressed ones keep their cache."""
    options = SaveOptions(allowed_roots=(str(tmp_path),))
    plans = [StreamPlan(path=f"/1.1/{name}", channel=name, dtype=dtype, point_shape=(),
                        chunk_rows=ROWS) for name, dtype in (("x", "<f8"), ("n", "<i4"))]

    def cache_bytes(nexus_file: NexusFile) -> dict[str, int]:
        return {name: stream.dataset.id.get_access_plist().get_chunk_cache()[1]
                for name, stream in nexus_file._streams.items()}

    nexus_file = NexusFile(str(tmp_path / "scan.h5"), options)
    try:
        for plan in plans:
            nexus_file._create_stream(plan)
        assert cache_bytes(nexus_file) == {"x": 0, "n": 0}
        nexus_file.add_points("x", 0, np.arange(ROWS + 2, dtype="<f8"))
    finally:
        nexus_file.close()
    nexus_file = NexusFile(str(tmp_path / "scan.h5"), options)
    try:
        for plan in plans:
            nexus_file._open_stream(plan)
        assert cache_bytes(nexus_file) == {"x": 0, "n": 0}
        nexus_file.add_points("x", ROWS + 2, np.arange(ROWS + 2, 2 * ROWS, dtype="<f8"))
    finally:
        nexus_file.close()
    np.testing.assert_array_equal(read(tmp_path / "scan.h5", "/1.1/x"),
                                  np.arange(2 * ROWS, dtype="<f8"))
    compressed = NexusFile(str(tmp_path / "gzip.h5"), options)
    try:
        compressed._create_stream(dataclasses.replace(plans[0], compression="gzip"))
        assert cache_bytes(compressed)["x"] > 0
    finally:
        compressed.close()
